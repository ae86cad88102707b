#!/usr/bin/env bash
# Soak (issue 14): the release sidecar under steady load for a long time, with a hot
# reload every second and the collector restarted every few minutes. It must fail
# no request, and its memory and open file descriptors must stay flat.
#
#   bash benches/load/soak.sh                  # 30 minutes (the issue's figure)
#   MINUTES=3 RESTART_EVERY=60 bash benches/load/soak.sh   # a short rehearsal
#
# 1. Peak: `oha -z 10s -c 32` through the sidecar (1 worker, access log off, 1%
#    sampling exporting over OTLP/gRPC to target/release/otlp-sink, 1 KiB responses
#    from target/release/backend, all on loopback).
# 2. Soak: `oha -q <FRACTION x peak> -c 32` for MINUTES (open loop at a fixed rate),
#    while
#    - the config file is replaced atomically (write + rename) every RELOAD_EVERY
#      seconds, alternating `timeouts.request` between 30s and 31s (the sidecar
#      polls it every 200 ms; each change is a real reload, counted in
#      meshtrace_config_reloads_total);
#    - the collector is killed and started again on the same port every
#      RESTART_EVERY seconds (it is down for 2 s each time);
#    - the sidecar's VmRSS and open fds are sampled every 10 s.
# 3. Prints: requests, non-2xx and failed (oha's errors, apart from the requests oha
#    itself cancels in flight when the duration ends), reloads applied/rejected, spans
#    exported/dropped, and RSS/fd first, last, max and least-squares slope (per
#    minute, after the first minute's ramp-up and over the second half). Samples are
#    kept in $OUT (default
#    target/soak) as CSV.
#
# Needs oha (cargo install oha --locked), curl and python3. Sleeps are fine here:
# this is a harness run by hand, not a test.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${MINUTES:-30}
restart_every=${RESTART_EVERY:-300}
reload_every=${RELOAD_EVERY:-1}
fraction=${FRACTION:-0.7}
sample=${SAMPLE:-0.01}
out=${OUT:-target/soak}
export PATH="$HOME/.cargo/bin:$PATH"
for tool in oha curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 2; }
done
while read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)

bash benches/load/build.sh --bin backend --bin otlp-sink
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" "${sink_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_port=$(free_port); inbound_port=$(free_port); admin_port=$(free_port)
sink_otlp=$(free_port); sink_stats=$(free_port)

target/release/backend --listen "127.0.0.1:$backend_port" --workers 1 >"$tmp/backend.log" 2>&1 &
pids+=($!)
start_sink() {
  target/release/otlp-sink --listen "127.0.0.1:$sink_otlp" --stats "127.0.0.1:$sink_stats" \
    >>"$tmp/sink.log" 2>&1 &
  sink_pid=$!
}
start_sink

config() { # request timeout in seconds
  cat <<YAML
inbound: {listen: 127.0.0.1:$inbound_port, app_port: $backend_port}
outbound: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:$admin_port, health_listen: null, metrics_listen: null}
runtime: {workers: 1}
log: {access_log: false, level: warn}
control: {file_poll: 200ms}
sampling: {default_rate: $sample}
timeouts: {request: ${1}s}
export: {endpoint: "http://127.0.0.1:$sink_otlp", protocol: grpc}
YAML
}
config 30 >"$tmp/sidecar.yaml"
target/release/meshtrace-proxy run --config "$tmp/sidecar.yaml" >"$tmp/sidecar.log" 2>&1 &
sidecar=$!
pids+=($sidecar)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null
url="http://127.0.0.1:$inbound_port/"

metric() {
  curl -sf "http://127.0.0.1:$admin_port/metrics" |
    awk -v k="$1" 'index($0, k) == 1 {s += $NF} END {printf "%d\n", s}'
}

oha -z 10s -c 32 --no-tui --output-format json "$url" >"$out/peak.json"
peak=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"]))' "$out/peak.json")
rate=$(python3 -c "print(int($peak * $fraction))")
echo "peak $peak req/s; soaking at $rate req/s ($fraction) for $minutes min" >&2

reloads_before=$(metric 'meshtrace_config_reloads_total{source="file",result="applied"}')
oha -z "${minutes}m" -q "$rate" -c 32 --no-tui --output-format json "$url" >"$out/soak.json" &
load=$!
pids+=($load)

echo "seconds,rss_kib,fds" >"$out/samples.csv"
start=$(date +%s)
next_restart=$((start + restart_every))
next_sample=$start
timeout=30
restarts=0
while kill -0 "$load" 2>/dev/null; do
  now=$(date +%s)
  if ((now >= next_sample)); then
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$sidecar/status")
    fds=$(find "/proc/$sidecar/fd" -mindepth 1 -maxdepth 1 | wc -l)
    echo "$((now - start)),$rss,$fds" >>"$out/samples.csv"
    next_sample=$((next_sample + 10))
  fi
  if ((now >= next_restart)); then
    kill "$sink_pid"; wait "$sink_pid" 2>/dev/null || true
    sleep 2
    start_sink
    restarts=$((restarts + 1))
    next_restart=$((next_restart + restart_every))
  fi
  timeout=$((timeout == 30 ? 31 : 30))
  config "$timeout" >"$tmp/sidecar.yaml.new"
  mv "$tmp/sidecar.yaml.new" "$tmp/sidecar.yaml"
  sleep "$reload_every"
done
wait "$load" || true
sleep 6 # one batch delay (5 s), so the last spans are exported or counted

applied=$(($(metric 'meshtrace_config_reloads_total{source="file",result="applied"}') - reloads_before))
rejected=$(metric 'meshtrace_config_reloads_total{source="file",result="rejected"}')
exported=$(metric meshtrace_spans_exported_total)
dropped=$(curl -sf "http://127.0.0.1:$admin_port/metrics" |
  awk -F'[{}"]' '/^meshtrace_spans_dropped_total\{/ {split($0, f, " "); printf "%s=%s ", $3, f[2]}')
python3 - "$out" "$peak" "$rate" "$minutes" "$restarts" "$applied" "$rejected" "$exported" "$dropped" <<'PY'
import csv, json, sys
out, peak, rate, minutes, restarts, applied, rejected, exported, dropped = sys.argv[1:]
soak = json.load(open(f"{out}/soak.json"))
codes = soak.get("statusCodeDistribution", {})
errors = soak.get("errorDistribution", {})
total = sum(codes.values()) + sum(errors.values())
bad = sum(n for c, n in codes.items() if not c.startswith("2"))
# oha cancels the requests still in flight when -z runs out: not failures.
cut = errors.pop("aborted due to deadline", 0)
rows = [(int(r["seconds"]) / 60, int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(f"{out}/samples.csv"))]

def slope(points):
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else float("nan")

warm = [r for r in rows if r[0] >= 1]
half = [r for r in rows if r[0] >= rows[-1][0] / 2]
print(f"soak: {minutes} min at {rate} req/s (peak {peak} req/s), {restarts} collector restarts")
print(f"requests: {total}, non-2xx: {bad}, failed: {sum(errors.values())} {errors or ''}, "
      f"cut off in flight when the run ended: {cut}")
print(f"achieved: {soak['summary'].get('requestsPerSec', 0):.0f} req/s, success rate {soak['summary'].get('successRate', 0):.6f}")
print(f"reloads applied: {applied}, rejected: {rejected}; spans exported: {exported}, dropped by reason: {dropped}")
for name, i, unit in (("RSS", 1, "KiB"), ("fds", 2, "")):
    values = [r[i] for r in rows]
    print(f"{name}: first {values[0]} last {values[-1]} max {max(values)} {unit}; slope "
          f"{slope([(r[0], r[i]) for r in warm]):.2f}/min (after the first minute), "
          f"{slope([(r[0], r[i]) for r in half]):.2f}/min (second half)")
PY
