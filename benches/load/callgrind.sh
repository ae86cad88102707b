#!/usr/bin/env bash
# Instructions per proxied HTTP/1.1 request, counted by callgrind (repeatable on a
# noisy machine, unlike wall-clock): the release sidecar (1 worker, access log off)
# under valgrind, inbound in front of benches/src/bin/backend.rs, loaded by
# `wrk -t1 -c8 -d10s`; prints total instructions / requests completed.
#
#   cargo build --release -p meshtrace-proxy -p meshtrace-benches --bin meshtrace-proxy --bin backend
#   bash benches/load/callgrind.sh target/release/meshtrace-proxy target/release/backend after
#
# Compare two builds by alternating them (before, after, before, after). Needs
# valgrind, wrk and curl. With WIRE=h2 the load is h2c instead: `h2load -c8 -m10
# -D10` (nghttp2-client), so the sidecar's HTTP/2 server and upstream pool are
# measured. EXTRA_YAML is appended to the sidecar's config (e.g. a `sampling:`
# section), for the cost of a feature the default config leaves off. PORT_BASE
# (default 18100) moves the three loopback ports, so two runs can share a machine.
set -u
proxy=$1; backend=$2; label=${3:-run}
base=${PORT_BASE:-18100}
admin_port=$base; sidecar_port=$((base + 6)); backend_port=$((base + 80))
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$backend" --listen 127.0.0.1:$backend_port --workers 1 >"$d/backend.log" 2>&1 &
backend_pid=$!
cat >"$d/sidecar.yaml" <<YAML
inbound: {listen: 127.0.0.1:$sidecar_port, app_port: $backend_port}
outbound: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:$admin_port, health_listen: null, metrics_listen: null}
runtime: {workers: 1}
log: {access_log: false, level: warn}
${EXTRA_YAML:-}
YAML
valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.out" \
  "$proxy" run --config "$d/sidecar.yaml" >"$d/sidecar.log" 2>&1 &
sidecar_pid=$!
for _ in $(seq 200); do
  curl -sf http://127.0.0.1:$admin_port/ready >/dev/null 2>&1 && break
  sleep 0.2
done
if [[ ${WIRE:-h1} == h2 ]]; then
  h2load -c8 -m10 -D10 http://127.0.0.1:$sidecar_port/ >"$d/h2load.txt" 2>&1
else
  wrk -t1 -c8 -d10s http://127.0.0.1:$sidecar_port/ >"$d/wrk.txt" 2>&1
fi
kill -TERM "$sidecar_pid"
wait "$sidecar_pid" 2>/dev/null
kill "$backend_pid"
if [[ ${WIRE:-h1} == h2 ]]; then
  requests=$(grep -oE '^requests: [0-9]+ total, [0-9]+ started, [0-9]+ done, [0-9]+ succeeded' "$d/h2load.txt" | awk '{print $8}')
else
  requests=$(grep -oE '^ *[0-9]+ requests' "$d/wrk.txt" | awk '{print $1}')
fi
instructions=$(grep -E '^(summary|totals):' "$d/callgrind.out" | head -1 | awk '{print $2}')
echo "$label requests=$requests instructions=$instructions per_request=$((instructions / requests))"
