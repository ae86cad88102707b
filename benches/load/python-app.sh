#!/usr/bin/env bash
# Issue 16's "+40 ms behind a plain Python http.server": latency of N sequential
# requests (oha -c 1: one keep-alive connection, each request sent when the last
# answered) to tests/python/nagle_app.py — http.server's SimpleHTTPRequestHandler,
# HTTP/1.1, a 30-byte file — directly and through the release sidecar, with the
# app's Nagle on (Python's default) and off (`disable_nagle_algorithm`).
#
#   bash benches/load/python-app.sh [requests]          # default 200
#   BEFORE=/path/to/old/meshtrace-proxy bash benches/load/python-app.sh
#       # also through that build, for before/after figures
#
# Prints one line per case: p50 and p99 in milliseconds. Needs oha and python3.
# Loopback only; bounded: 4-6 cases x N requests.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200}
command -v oha >/dev/null || { echo "oha is not installed (cargo install oha --locked)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 2; }

cargo build --release -q -p meshtrace-proxy
tmp=$(mktemp -d)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
pids=()
trap cleanup EXIT
printf 'hello from a plain python app\n' >"$tmp/index.txt"

# Starts the app (argument: "" or nodelay); sets $app_port.
start_app() {
  python3 -u tests/python/nagle_app.py "$tmp" HTTP/1.1 $1 >"$tmp/app.out" 2>"$tmp/app.err" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q '^port ' "$tmp/app.out" 2>/dev/null && break
    sleep 0.1
  done
  app_port=$(awk '/^port /{print $2}' "$tmp/app.out")
  [[ -n $app_port ]] || { cat "$tmp/app.err" >&2; exit 1; }
}

# Starts sidecar binary $1 in front of $app_port on inbound port $2.
start_sidecar() {
  local admin=$(($2 + 1))
  cat >"$tmp/sidecar-$2.yaml" <<YAML
inbound: {listen: 127.0.0.1:$2, app_port: $app_port}
outbound: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:$admin, health_listen: null}
log: {access_log: false, level: warn}
YAML
  "$1" run --config "$tmp/sidecar-$2.yaml" >"$tmp/sidecar-$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && return
    sleep 0.1
  done
  cat "$tmp/sidecar-$2.log" >&2; exit 1
}

# N sequential requests to $2 on one connection; prints "$1: p50 p99" in ms.
measure() {
  oha -n "$n" -c 1 --no-tui --output-format json "$2" |
    python3 -c 'import json,sys; p=json.load(sys.stdin)["latencyPercentiles"]; print(sys.argv[1] + ":", *("%.2f" % (p[k]*1e3) for k in ("p50","p99")))' "$1"
}

for mode in nagle nodelay; do
  start_app "$([[ $mode == nodelay ]] && echo nodelay)"
  start_sidecar target/release/meshtrace-proxy 18206
  measure "app $mode, direct          " "http://127.0.0.1:$app_port/index.txt"
  measure "app $mode, sidecar         " "http://127.0.0.1:18206/index.txt"
  if [[ -n ${BEFORE:-} ]]; then
    start_sidecar "$BEFORE" 18306
    measure "app $mode, sidecar (BEFORE)" "http://127.0.0.1:18306/index.txt"
  fi
  kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
done
