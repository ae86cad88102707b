#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (repeatable on a noisy
# machine, unlike wall-clock), for any proxy of the load harness: the proxy runs
# under valgrind in front of benches/src/bin/backend.rs (1 KiB bodies), is warmed
# up, then loaded by `wrk -t1 -c32 -d10s`; only that load window is counted
# (`callgrind_control -z` before it, `callgrind_control -d` after it), so start-up
# and shut-down are not in the figure. Prints one line:
#   LABEL requests=N instructions=I per_request=P kind=KIND wire=h1|h2
#
#   bash benches/load/build.sh
#   bash benches/load/callgrind.sh target/release/meshtrace-proxy target/release/backend after
#   bash benches/load/callgrind.sh haproxy target/release/backend haproxy
#   bash benches/load/callgrind.sh envoy target/release/backend envoy
#
# PROXY (the first argument) is a meshtrace-proxy binary, or one of `haproxy`,
# `nginx`, `envoy`, `envoy-traced` (OpenTelemetry tracer at 100 % exporting to
# otlp-sink). Those are configured exactly as the load harness runs them: their
# config and command line come from `loadbench --proxy-command KIND` (beside
# BACKEND), Envoy's from benches/load/envoy/envoy.yaml, Envoy itself from ENVOY or
# the repo's .venv (`bash benches/load/run.sh` installs it).
#
# Environment:
#   WIRE=h2        h2c instead: `h2load -c32 -m10 -D SECS` on the h2c listener
#   TRACED=1       meshtrace samples 100 % and exports OTLP/gRPC to otlp-sink
#   EXTRA_YAML     appended to meshtrace's config (e.g. a `sampling:` section)
#   TRACE_HEADERS  every request carries a caller's trace context, the header set
#                  of the propagation bench's case: `w3c` (traceparent + a 2-member
#                  tracestate) or `datadog` (ids, priority, origin, tags)
#   SECS=10        the counted load window; WARM=2 (Envoy: 10) s of warm-up before it
#   CONNS=32       connections (wrk -t1 -cCONNS; h2load -cCONNS -m10)
#   PORT_BASE      (default 18100) moves the loopback ports, so runs can share a machine
#   KEEP=DIR       copies the counted window's callgrind output(s) into DIR
#
# Compare two builds by alternating them (before, after, before, after). Needs
# valgrind, wrk, h2load (WIRE=h2) and curl.
set -u
proxy=$1; backend=$2; label=${3:-run}
base=${PORT_BASE:-18100}
admin_port=$base; listen_port=$((base + 6)); h2_port=$((base + 7))
sink_port=$((base + 8)); sink_stats=$((base + 9)); backend_port=$((base + 80))
secs=${SECS:-10}; conns=${CONNS:-32}; wire=${WIRE:-h1}
bin=$(dirname "$backend")
d=$(mktemp -d)
# nginx's worker runs as `nobody` when started by root: it writes its own dump here.
chmod 1777 "$d"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$d"
}
trap cleanup EXIT

case $proxy in
  haproxy | nginx | envoy | envoy-traced) kind=$proxy ;;
  *) kind=meshtrace; [[ ${TRACED:-0} != 0 ]] && kind=meshtrace-traced ;;
esac
case $kind in envoy*) warm=${WARM:-10} ;; *) warm=${WARM:-2} ;; esac

"$backend" --listen 127.0.0.1:$backend_port --workers 1 >"$d/backend.log" 2>&1 &
pids+=($!)
if [[ $kind == *traced ]]; then
  "$bin/otlp-sink" --listen 127.0.0.1:$sink_port --stats 127.0.0.1:$sink_stats >"$d/sink.log" 2>&1 &
  pids+=($!)
fi

if [[ $kind == meshtrace* ]]; then
  cat >"$d/sidecar.yaml" <<YAML
inbound: {listen: 127.0.0.1:$listen_port, app_port: $backend_port}
outbound: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:$admin_port, health_listen: null, metrics_listen: null}
runtime: {workers: 1}
log: {access_log: false, level: warn}
${EXTRA_YAML:-}
YAML
  if [[ $kind == meshtrace-traced ]]; then
    cat >>"$d/sidecar.yaml" <<YAML
sampling: {default_rate: 1.0}
export: {endpoint: "http://127.0.0.1:$sink_port", protocol: grpc, compression: none}
YAML
  fi
  cmd=("$proxy" run --config "$d/sidecar.yaml")
  h2_port=$listen_port # the sidecar detects h2 on its one listener
else
  if ! mapfile -t cmd < <("$bin/loadbench" --proxy-command "$kind" --dir "$d" \
    --backend-port $backend_port --h1-port $listen_port --h2-port $h2_port \
    --admin-port $admin_port --sink-port $sink_port) || ((${#cmd[@]} == 0)); then
    echo "$label: loadbench --proxy-command $kind failed" >&2
    exit 1
  fi
  # callgrind_control cannot reach a forked child: nginx runs its event loop in the
  # one process (`master_process off`), the worker's per-request work unchanged.
  [[ $kind == nginx ]] && sed -i 's/^master_process on;/master_process off;/' "$d/nginx.conf"
fi

valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.%p.out" "${cmd[@]}" >"$d/proxy.log" 2>&1 &
proxy_pid=$!
pids+=($proxy_pid)
url=http://127.0.0.1:$listen_port/
for _ in $(seq 600); do
  curl -sf -o /dev/null "$url" 2>/dev/null && break
  sleep 0.2
done
if ! curl -sf -o /dev/null "$url"; then
  echo "$label: $kind did not answer on $url; its log:" >&2
  tail -20 "$d/proxy.log" >&2
  exit 1
fi

headers=()
case ${TRACE_HEADERS:-} in
  "") ;;
  w3c) headers=(-H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    -H "tracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE") ;;
  datadog) headers=(-H "x-datadog-trace-id: 11803532876627986230"
    -H "x-datadog-parent-id: 67667974448284343" -H "x-datadog-sampling-priority: 1"
    -H "x-datadog-origin: rum" -H "x-datadog-tags: _dd.p.tid=4bf92f3577b34da6,_dd.p.dm=-4") ;;
  *) echo "TRACE_HEADERS is w3c or datadog, not ${TRACE_HEADERS}" >&2; exit 2 ;;
esac
load() {
  if [[ $wire == h2 ]]; then
    h2load -c"$conns" -m10 -D"$1" "${headers[@]}" "http://127.0.0.1:$h2_port/"
  else
    wrk -t1 -c"$conns" -d"$1s" "${headers[@]}" "$url"
  fi
}
load "$warm" >"$d/warm.txt" 2>&1
procs=("$proxy_pid")
for p in "${procs[@]}"; do callgrind_control -z "$p" >/dev/null 2>&1; done
load "$secs" >"$d/load.txt" 2>&1
for p in "${procs[@]}"; do callgrind_control -d "$p" >/dev/null 2>&1; done

if [[ $wire == h2 ]]; then
  requests=$(grep -oE '^requests: [0-9]+ total, [0-9]+ started, [0-9]+ done, [0-9]+ succeeded' "$d/load.txt" | awk '{print $8}')
else
  requests=$(grep -oE '^ *[0-9]+ requests' "$d/load.txt" | awk '{print $1}')
fi
# The dump `callgrind_control -d` wrote (callgrind.PID.out.1).
instructions=0
for f in "$d"/callgrind.*.out.[0-9]*; do
  [[ -e $f ]] || continue
  n=$(grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}')
  instructions=$((instructions + ${n:-0}))
done
if [[ -z $requests || $requests -eq 0 || $instructions -eq 0 ]]; then
  echo "$label: no figure (requests=${requests:-?} instructions=$instructions); load output:" >&2
  cat "$d/load.txt" >&2
  exit 1
fi
spans=""
if [[ $kind == *traced ]]; then
  spans=" sink_spans=$(curl -s "http://127.0.0.1:$sink_stats/" | awk '/^spans / {print $2}')"
fi
# KEEP=DIR keeps the load window's profile(s) for callgrind_annotate.
if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$d"/callgrind.*.out.[0-9]* "$KEEP"/; fi
echo "$label requests=$requests instructions=$instructions per_request=$((instructions / requests)) kind=$kind wire=$wire$spans"
