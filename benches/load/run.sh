#!/usr/bin/env bash
# The load harness (issue 7): direct vs meshtrace vs HAProxy vs nginx, in one run.
#
#   bash benches/load/run.sh                 # 3 rounds, 5 s windows: ~9-10 min after the build
#   bash benches/load/run.sh --quick         # smoke run: 1 round, 2 s windows, RESULTS.md untouched
#   bash benches/load/run.sh --rounds 5 --secs 10 [--no-write]
#
# Installs what is missing (as root: apt-get install haproxy nginx-light wrk
# nghttp2-client; cargo install oha --locked), builds the release binaries, then
# runs target/release/loadbench, which starts every process on free loopback
# ports, measures in alternating windows, prints the tables and replaces the
# `loadbench` section of benches/RESULTS.md. See benches/src/bin/loadbench.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# command -> Debian package
declare -A packages=([haproxy]=haproxy [nginx]=nginx-light [wrk]=wrk [h2load]=nghttp2-client [curl]=curl)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${packages[$cmd]}")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing: ${missing[*]} (run as root, or apt-get install -y ${missing[*]})" >&2
    exit 2
  fi
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
  # The packages' own nginx / haproxy services are not what we measure.
  for service in nginx haproxy; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$service" >/dev/null 2>&1 || true; fi
  done
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null 2>&1; then
  echo "installing oha (cargo install oha --locked; a few minutes)" >&2
  cargo install oha --locked -q
fi

cargo build --release -q -p meshtrace-proxy -p meshtrace-benches --bins
# exec: Ctrl-C and SIGTERM reach the harness, which stops every child it started.
exec target/release/loadbench "$@"
