#!/usr/bin/env bash
# First load figures for the data path: HTTP/1.1 keep-alive throughput direct vs
# through the sidecar (wrk, 32 connections, 1 KB responses, alternating windows in
# one run), and the sidecar's RSS idle and after load.
#
#   bash benches/load/quick.sh [rounds] [seconds-per-window]
#   WORKERS=2 bash benches/load/quick.sh     # sidecar worker threads (default 1)
#   BEFORE=/path/to/old/meshtrace-proxy bash benches/load/quick.sh
#       # also runs that build of the sidecar, in its own windows alternating with
#       # this one's, for before/after figures of an optimisation
#   SAMPLING=1.0 bash benches/load/quick.sh
#       # the sidecars sample at that rate and export OTLP/gRPC to target/release/otlp-sink
#   SAMPLING=1.0 RATIO=1 bash benches/load/quick.sh
#       # also an untraced sidecar of this build, in its own alternating windows:
#       # throughput traced ÷ untraced per round (the issue-18 target, without the
#       # whole harness)
#   LATENCY=1 bash benches/load/quick.sh
#       # also an open-loop window per sidecar: oha at 1000 req/s, p50/p99/p99.9
#
# Needs wrk (apt-get install wrk), and oha for LATENCY (cargo install oha --locked).
# Loopback only; bounded: rounds x (2-5) windows.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }

bash benches/load/build.sh
tmp=$(mktemp -d)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
pids=()
trap cleanup EXIT

backend_port=18180; inbound_port=18106; admin_port=18100
target/release/backend --listen 127.0.0.1:$backend_port --workers 1 >"$tmp/backend.log" &
pids+=($!)
cat >"$tmp/sidecar.yaml" <<YAML
inbound: {listen: 127.0.0.1:$inbound_port, app_port: $backend_port}
outbound: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:$admin_port, health_listen: null, metrics_listen: null}
runtime: {workers: ${WORKERS:-1}}
log: {access_log: false, level: warn}
YAML
cp "$tmp/sidecar.yaml" "$tmp/untraced.yaml"
if [[ -n ${SAMPLING:-} ]]; then
  sink_port=18191
  target/release/otlp-sink --listen 127.0.0.1:$sink_port --stats 127.0.0.1:18192 >"$tmp/sink.log" 2>&1 &
  pids+=($!)
  cat >>"$tmp/sidecar.yaml" <<YAML
sampling: {default_rate: $SAMPLING}
export: {endpoint: "http://127.0.0.1:$sink_port", protocol: grpc, compression: none}
YAML
fi
target/release/meshtrace-proxy run --config "$tmp/sidecar.yaml" >"$tmp/sidecar.log" 2>&1 &
sidecar=$!
pids+=($sidecar)
ready() {
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$1/ready" >/dev/null
}
ready $admin_port
if [[ -n ${BEFORE:-} ]]; then
  before_port=18116; before_admin=18110
  sed -e "s/:$inbound_port,/:$before_port,/" -e "s/:$admin_port,/:$before_admin,/" \
    "$tmp/sidecar.yaml" >"$tmp/before.yaml"
  "$BEFORE" run --config "$tmp/before.yaml" >"$tmp/before.log" 2>&1 &
  before=$!
  pids+=($before)
  ready $before_admin
fi

if [[ -n ${RATIO:-} ]]; then
  [[ -n ${SAMPLING:-} ]] || { echo "RATIO=1 needs SAMPLING" >&2; exit 2; }
  untraced_port=18126; untraced_admin=18120
  sed -i -e "s/:$inbound_port,/:$untraced_port,/" -e "s/:$admin_port,/:$untraced_admin,/" "$tmp/untraced.yaml"
  target/release/meshtrace-proxy run --config "$tmp/untraced.yaml" >"$tmp/untraced.log" 2>&1 &
  untraced=$!
  pids+=($untraced)
  ready $untraced_admin
fi

rss() { awk '/VmRSS/ {print $2}' "/proc/${1:-$sidecar}/status"; }
idle_rss=$(rss)

# One wrk window; prints "req/s total-requests".
window() { wrk -t2 -c32 -d"${secs}s" "$1" | awk '/requests in/ {n=$1} /Requests\/sec/ {print $2, n}'; }
# The sidecar's CPU time so far (utime + stime), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
# One window through the sidecar process $1 on port $2; prints "req/s cpu-us/request".
proxied_window() {
  local t0 t1 p n
  t0=$(cpu_ticks "$1")
  read -r p n < <(window "http://127.0.0.1:$2/")
  t1=$(cpu_ticks "$1")
  echo "$p $(awk -v t=$((t1 - t0)) -v n="$n" -v u="$tick_us" 'BEGIN {printf "%.1f", t * u / n}')"
}
# One open-loop window (oha, 1000 req/s, latency from when each request was due);
# prints "p50 p99 p99.9" in microseconds.
latency() {
  oha -z "${secs}s" -q 1000 -c 32 --latency-correction --no-tui --output-format json "$1" |
    python3 -c 'import json,sys; p=json.load(sys.stdin)["latencyPercentiles"]; print(*(round(p[k]*1e6) for k in ("p50","p99","p99.9")))'
}
direct=(); proxied=(); cpu_us=(); old=(); old_cpu=(); ratios=(); old_ratios=()
for r in $(seq "$rounds"); do
  read -r d _ < <(window "http://127.0.0.1:$backend_port/")
  read -r p c < <(proxied_window "$sidecar" "$inbound_port")
  direct+=("$d"); proxied+=("$p"); cpu_us+=("$c")
  echo "round $r: direct $d req/s, meshtrace $p req/s, sidecar CPU $c us/request"
  if [[ -n ${BEFORE:-} ]]; then
    read -r p c < <(proxied_window "$before" "$before_port")
    old+=("$p"); old_cpu+=("$c")
    echo "         BEFORE build $p req/s, sidecar CPU $c us/request"
  fi
  if [[ -n ${RATIO:-} ]]; then
    read -r u c < <(proxied_window "$untraced" "$untraced_port")
    ratios+=("$(awk -v p="${proxied[-1]}" -v u="$u" 'BEGIN {printf "%.3f", p/u}')")
    [[ -z ${BEFORE:-} ]] || old_ratios+=("$(awk -v p="${old[-1]}" -v u="$u" 'BEGIN {printf "%.3f", p/u}')")
    echo "         untraced (this build) $u req/s, sidecar CPU $c us/request; traced ÷ untraced ${ratios[-1]}${BEFORE:+, BEFORE ${old_ratios[-1]}}"
  fi
  if [[ -n ${LATENCY:-} ]]; then
    echo "         latency p50/p99/p99.9 us at 1000 req/s: direct $(latency "http://127.0.0.1:$backend_port/")," \
      "meshtrace $(latency "http://127.0.0.1:$inbound_port/")" \
      "${BEFORE:+, BEFORE build $(latency "http://127.0.0.1:$before_port/")}"
  fi
done
peak_rss=$(awk '/VmHWM/ {print $2}' "/proc/$sidecar/status")
after_rss=$(rss)
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
md=$(median "${direct[@]}"); mp=$(median "${proxied[@]}")
echo
echo "median direct:    $md req/s   (all: ${direct[*]})"
echo "median meshtrace: $mp req/s   (all: ${proxied[*]})"
awk -v p="$mp" -v d="$md" 'BEGIN {printf "ratio:            %.2f of direct\n", p/d}'
echo "sidecar CPU:      $(median "${cpu_us[@]}") us/request median (all: ${cpu_us[*]})"
echo "sidecar RSS idle: ${idle_rss} KiB, peak: ${peak_rss} KiB, after load: ${after_rss} KiB"
# Where the sidecar's CPU went, by thread (all windows: wrk and oha).
threads() {
  for t in /proc/"$1"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done |
    awk '{n[$1] += $2; all += $2} END {for (k in n) printf "%s %.0f%%, ", k, all ? 100 * n[k] / all : 0; print ""}'
}
echo "sidecar CPU by thread: $(threads "$sidecar")"
if [[ -n ${BEFORE:-} ]]; then
  echo "BEFORE CPU by thread:  $(threads "$before")"
  mo=$(median "${old[@]}")
  echo "BEFORE build:     $mo req/s   (all: ${old[*]})"
  awk -v p="$mo" -v d="$md" 'BEGIN {printf "BEFORE ratio:     %.2f of direct\n", p/d}'
  echo "BEFORE CPU:       $(median "${old_cpu[@]}") us/request median (all: ${old_cpu[*]})"
  echo "BEFORE RSS after load: $(rss "$before") KiB"
fi
if [[ -n ${RATIO:-} ]]; then
  echo "traced ÷ untraced: $(median "${ratios[@]}") median per round (all: ${ratios[*]})"
  [[ -z ${BEFORE:-} ]] || echo "BEFORE traced ÷ this build's untraced: $(median "${old_ratios[@]}") (all: ${old_ratios[*]})"
fi
