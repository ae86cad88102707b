#!/usr/bin/env bash
# What the OTLP receiver's own decoding takes from the traced windows of the load
# harness (issue 18), where every process shares the same 2 cores: three sidecars
# side by side, in windows interleaved per round —
#
#   plain     no export;
#   decode    sampling 100 % → `otlp-sink`, which decodes every span into
#             opentelemetry-proto's types and counts them (the harness's sink);
#   discard   sampling 100 % → `otlp-sink --discard`, which reads each export and
#             answers success without decoding it (a receiver that costs next to
#             nothing).
#
# Per window: wrk requests/s, the sidecar's CPU µs per request (all its threads),
# and the receiver's CPU µs per request (= per span). At the end each sidecar's
# spans exported / dropped and what each receiver counted.
#
#   bash benches/load/sink-cost.sh [rounds] [seconds-per-window]
#
# Sidecars: 1 worker, access log off, default export queue, OTLP/gRPC without
# compression. wrk -t1 -c32, 1 KiB responses from target/release/backend, all on
# loopback. Needs wrk and curl. About rounds × 3 × seconds after the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/load/lib.sh
rounds=${1:-4}
secs=${2:-6}
need wrk:wrk curl:curl
clear_otel_env

bash benches/load/build.sh
scratch

backend=18780
target/release/backend --listen 127.0.0.1:$backend --workers 1 >"$tmp/backend.log" 2>&1 &
pids+=($!)
target/release/otlp-sink --listen 127.0.0.1:18788 --stats 127.0.0.1:18789 >"$tmp/decode-sink.log" 2>&1 &
decode_sink=$!
pids+=($!)
target/release/otlp-sink --listen 127.0.0.1:18798 --stats 127.0.0.1:18799 --discard >"$tmp/discard-sink.log" 2>&1 &
discard_sink=$!
pids+=($!)

# sidecar NAME LISTEN ADMIN [SINK]: starts it; its pid in $sidecar_pid.
sidecar() {
  sidecar_yaml "$2" "$3" "$backend" "${4:-}" >"$tmp/$1.yaml"
  target/release/meshtrace-proxy run --config "$tmp/$1.yaml" >"$tmp/$1.log" 2>&1 &
  sidecar_pid=$!
  pids+=($!)
}
sidecar plain 18706 18700
plain=$sidecar_pid
sidecar decode 18707 18701 18788
decode=$sidecar_pid
sidecar discard 18708 18702 18798
discard=$sidecar_pid
for url in http://127.0.0.1:{18700,18701,18702}/ready http://127.0.0.1:{18789,18799}/; do
  for _ in $(seq 100); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
done

# CPU ticks (user + system) of a process and all its threads.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_request() { printf '%.2f' "$(echo "scale=4; ($2 - $1) * 1000000 / $(getconf CLK_TCK) / $3" | bc)"; }

printf '| round | sidecar | req/s | ÷ plain | sidecar CPU µs/req | receiver CPU µs/span |\n|---|---|---|---|---|---|\n'
for round in $(seq "$rounds"); do
  plain_rps=
  for run in "plain $plain 18706 0" "decode $decode 18707 $decode_sink" "discard $discard 18708 $discard_sink"; do
    read -r name pid port sink <<<"$run"
    p0=$(ticks "$pid"); s0=0; [[ $sink != 0 ]] && s0=$(ticks "$sink")
    out=$(wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:$port/")
    p1=$(ticks "$pid"); s1=0; [[ $sink != 0 ]] && s1=$(ticks "$sink")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    [[ $name == plain ]] && plain_rps=$rps
    receiver=—
    [[ $sink != 0 ]] && receiver=$(per_request "$s0" "$s1" "$requests")
    printf '| %s | %s | %.0f | %.2f | %s | %s |\n' "$round" "$name" "$rps" \
      "$(echo "$rps / $plain_rps" | bc -l)" "$(per_request "$p0" "$p1" "$requests")" "$receiver"
  done
done

echo
for run in "decode 18701 18789" "discard 18702 18799"; do
  read -r name admin stats <<<"$run"
  metrics=$(curl -s "http://127.0.0.1:$admin/metrics")
  exported=$(awk '/^meshtrace_spans_exported_total / {print $2}' <<<"$metrics")
  dropped=$(awk '/^meshtrace_spans_dropped_total/ {s += $2} END {print s + 0}' <<<"$metrics")
  echo "$name: spans exported $exported, dropped $dropped; receiver: $(curl -s "http://127.0.0.1:$stats/" | tr '\n' ' ')"
done
