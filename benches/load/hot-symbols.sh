#!/usr/bin/env bash
# Writes proxy/hot-symbols.txt: the functions a sidecar runs, hottest first, which
# proxy/build.rs has the linker place together at the start of the binary's text
# (the resident code of a running sidecar is then those pages, not ~70 % of the
# binary: benches/RESULTS.md, "code layout").
#
#   bash benches/load/build.sh
#   bash benches/load/hot-symbols.sh target/release/meshtrace-proxy target/release/backend
#   cargo build --release -p meshtrace-proxy     # relinks with the new list
#
# The release sidecar runs under callgrind twice, in front of benches' backend:
# untraced with the default config (start-up, HTTP/1.1 at 32 and 100
# connections, h2c and gRPC-shaped h2c at 32×10 streams, admin probes, metrics
# and config pages, then 12 s idle so the upstream reaper and the allocator trim
# run, then a drain), and sampling 100 % with OTLP/gRPC export to otlp-sink. Every
# function of the binary that ran is listed once, by its symbol (mangled, as the
# linker names it), ordered by the instructions it executed; another build's
# names carry other hashes, which proxy/link/hot-order.awk looks past. Regenerate it
# after changes to the data path or a dependency upgrade: names the code no
# longer has are skipped by the linker, so a stale list only loosens the layout.
# Needs valgrind, wrk, h2load, curl and nm. PORT_BASE (default 18900) moves the ports.
set -euo pipefail
proxy=$1; backend=$2
out=${OUT:-proxy/hot-symbols.txt}
base=${PORT_BASE:-18900}
admin=$base; inbound=$((base + 6)); sink=$((base + 8)); sink_stats=$((base + 9)); app=$((base + 80))
bin=$(dirname "$backend")
d=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT

"$backend" --listen 127.0.0.1:$app --workers 1 >"$d/backend.log" 2>&1 &
pids+=($!)
"$bin/otlp-sink" --listen 127.0.0.1:$sink --stats 127.0.0.1:$sink_stats >"$d/sink.log" 2>&1 &
pids+=($!)

# One profiled run: config $1 (appended to the common one), label $2, load $3.
profile() {
  local extra=$1 label=$2 load=$3
  cat >"$d/$label.yaml" <<YAML
inbound: {listen: 127.0.0.1:$inbound, app_port: $app}
outbound: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:$admin, health_listen: null, metrics_listen: null}
runtime: {workers: 1}
log: {access_log: false, level: warn}
$extra
YAML
  valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$d/$label.out" "$proxy" run --config "$d/$label.yaml" \
    >"$d/$label.log" 2>&1 &
  local vg=$!
  for _ in $(seq 300); do
    curl -sf http://127.0.0.1:$admin/ready >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -sf http://127.0.0.1:$admin/ready >/dev/null || { cat "$d/$label.log" >&2; exit 1; }
  "$load"
  kill -TERM $vg
  wait $vg || true
}

untraced_load() {
  curl -s http://127.0.0.1:$admin/live http://127.0.0.1:$admin/metrics \
    http://127.0.0.1:$admin/config >/dev/null
  wrk -t1 -c32 -d3s http://127.0.0.1:$inbound/ >/dev/null
  h2load -c32 -m10 -D3 http://127.0.0.1:$inbound/ >/dev/null
  h2load -c4 -m10 -D2 -H 'content-type: application/grpc' -H 'te: trailers' \
    http://127.0.0.1:$inbound/echo.Echo/Unary >/dev/null
  wrk -t1 -c100 -d3s http://127.0.0.1:$inbound/ >/dev/null
  curl -s http://127.0.0.1:$admin/metrics -o /dev/null
  sleep 12
  curl -s http://127.0.0.1:$admin/ready -o /dev/null
}

traced_load() {
  wrk -t1 -c32 -d3s http://127.0.0.1:$inbound/ >/dev/null
  h2load -c32 -m10 -D3 http://127.0.0.1:$inbound/ >/dev/null
  sleep 3
}

profile "" untraced untraced_load
profile "sampling: {default_rate: 1.0}
export: {endpoint: \"http://127.0.0.1:$sink\", protocol: grpc, compression: none}" traced traced_load

# Self instructions per function of the proxy binary, summed over both runs;
# the binary's own defined function symbols only (nm), hottest first.
nm --defined-only "$proxy" | awk '$2 ~ /^[tTwW]$/ {print $3}' >"$d/defined"
python3 - "$d/defined" "$proxy" "$d/untraced.out" "$d/traced.out" >"$out" <<'PY'
import collections, re, sys
defined = set(open(sys.argv[1]).read().split())
binary = sys.argv[2]
cost = collections.Counter()
for path in sys.argv[3:]:
    obs, fns = {}, {}
    ob = fn = None
    skip_next = False
    for line in open(path):
        line = line.rstrip("\n")
        m = re.match(r"^(c?)(ob|fn|fl|fi|fe)=\((\d+)\)(?: (.*))?$", line)
        if m:
            call, kind, i, name = m.groups()
            table = obs if kind == "ob" else fns if kind == "fn" else None
            if table is not None and name:
                table[i] = name
            if not call and kind == "ob":
                ob = obs[i]
            if not call and kind == "fn":
                fn = fns[i]
            continue
        if line.startswith("calls="):
            skip_next = True
            continue
        fields = line.split()
        if len(fields) >= 2 and (line[:1].isdigit() or line[:1] in "+-*"):
            if skip_next:
                skip_next = False
                continue
            if ob and ob.endswith(binary.rsplit("/", 1)[-1]) and fn in defined:
                cost[fn] += int(fields[-1])
for name, _ in sorted(cost.items(), key=lambda kv: (-kv[1], kv[0])):
    print(name)
PY
echo "$(wc -l <"$out") functions written to $out" >&2
