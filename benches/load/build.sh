#!/usr/bin/env bash
# Builds the release sidecar the way users build it, then the benches' tools.
#
#   bash benches/load/build.sh                        # the sidecar, then every bench binary
#   bash benches/load/build.sh --bin backend --bin otlp-sink
#
# The sidecar is built on its own, as the README's `cargo run --release -p
# meshtrace-proxy` builds it. Built in one command with meshtrace-benches, cargo
# unifies the features of both, and the benches bring the full `regex` (every
# engine, the Unicode tables) into the sidecar through tracing-subscriber: that
# binary had 0.4 MB more code (.text 7.73 against 7.30 MB) and idled ~0.2 MB
# higher than the one the README builds (benches/RESULTS.md, "Performance (issue
# 18): memory after a load"). cargo keeps the benches' build of the proxy
# library apart (its own feature set), so the second command does not overwrite
# target/release/meshtrace-proxy.
#
#   PGO=1 bash benches/load/build.sh                  # the sidecar built by scripts/pgo.sh
#
# With PGO=1 the sidecar is the profile-guided build of scripts/pgo.sh (≈ 12
# min), built last: a plain release build after it would replace it.
set -euo pipefail
cd "$(dirname "$0")/../.."
if (($#)); then bins=("$@"); else bins=(--bins); fi
if [[ ${PGO:-0} == 1 ]]; then
  cargo build --release -q -p meshtrace-benches "${bins[@]}"
  bash scripts/pgo.sh
  exit
fi
cargo build --release -q -p meshtrace-proxy --bin meshtrace-proxy
cargo build --release -q -p meshtrace-benches "${bins[@]}"
