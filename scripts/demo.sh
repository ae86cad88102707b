#!/usr/bin/env bash
# One command, one local mesh: builds the release binaries, then runs the demo
# (the example tests/examples/demo/). It starts the control plane, two sidecars, a B3 app, a
# Datadog app and an in-process trace collector, all on 127.0.0.1; sends traffic;
# prints the resulting trace as a tree (one W3C trace across both legacy apps);
# then adds an incident override with the real CLI and shows it take effect.
#
#   bash scripts/demo.sh
#
# Configs and logs go to a temporary directory, removed afterwards unless the
# demo fails. Every process the demo starts is stopped when it ends, Ctrl-C
# included. MESHTRACE_BIN_DIR runs other meshtrace-proxy / meshtrace-control
# binaries than the ones just built.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo build --release (meshtrace-proxy, meshtrace-control, the demo example)"
cargo build --release -p meshtrace-proxy -p meshtrace-control -p meshtrace-tests --bins --example demo

workdir="$(mktemp -d "${TMPDIR:-/tmp}/meshtrace-demo.XXXXXX")"
status=0

cleanup() {
  # The demo stops its children itself; this reaps any it left behind because it
  # was killed outright. Only pids it recorded, and only if still a meshtrace binary.
  if [ -f "$workdir/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
      if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q 'meshtrace-'; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$workdir/pids"
  fi
  # After a failure the demo has said where its configs and logs are: keep them.
  if [ "$status" -eq 0 ] || [ "$status" -ge 130 ]; then
    rm -rf "$workdir"
  fi
}
trap cleanup EXIT

echo "==> target/release/examples/demo"
MESHTRACE_DEMO_DIR="$workdir" target/release/examples/demo &
demo=$!
# Ctrl-C reaches the demo too; a signal sent to this script alone is passed on.
# Either way the demo stops its processes, and this script waits until it has.
on_signal() {
  status=$1
  kill -TERM "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  exit "$status"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
wait "$demo" || status=$?
exit "$status"
