#!/usr/bin/env bash
# Builds the sidecar with profile-guided optimisation.
#
#   bash scripts/pgo.sh            # target/release/meshtrace-proxy (≈ 12 min on 2 cores)
#   bash scripts/pgo.sh image      # the profile for the images; then bash scripts/images.sh
#
# 1. an instrumented sidecar (`-Cprofile-generate`, in target/pgo/), built as
#    the profile will be used: the release build, or with `image` the images'
#    static build (scripts/image-build.sh);
# 2. the training load through it, on loopback, against target/release/backend
#    (1 KiB answers) and target/release/otlp-sink: HTTP/1.1 (wrk) and h2c
#    (h2load), untraced and sampled at 100 % with OTLP export, without trace
#    headers and with W3C, B3 and Datadog ones;
# 3. its counters merged by the llvm-profdata of rustc's own LLVM version
#    (Debian's `llvm-N`, installed when root and missing) into
#    target/pgo/meshtrace-proxy.profdata (`image`: meshtrace-proxy-image.profdata,
#    which scripts/images.sh uses when it is there);
# 4. the release build only: the sidecar rebuilt with `-Cprofile-use` into
#    target/release, where the README's `cargo run --release` and the load
#    harness find it. (A later build without the flag rebuilds it without the
#    profile.)
#
# A profile matches only the build it was trained on: the symbols' names carry
# cargo's metadata hash, which covers the profile and the target, so the images
# need their own (benches/RESULTS.md). The profile lays out and inlines the code
# the requests run, hyper's, h2's and tokio's included: instructions per proxied
# request fell 13–14 % on HTTP/1.1 and 11–16 % on h2c (benches/RESULTS.md,
# "Performance (issue 18): profile-guided optimisation"). Needs wrk, h2load and
# curl.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/load/lib.sh
need wrk:wrk h2load:nghttp2-client curl:curl
clear_otel_env

llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=
for candidate in "llvm-profdata-$llvm" llvm-profdata; do
  if command -v "$candidate" >/dev/null && "$candidate" --version 2>/dev/null | grep -q "LLVM version $llvm\."; then
    profdata=$candidate
    break
  fi
done
if [[ -z $profdata ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "llvm-profdata for LLVM $llvm is missing: apt-get install llvm-$llvm (rustc's LLVM is $llvm)" >&2
    exit 2
  fi
  echo "==> apt-get install llvm-$llvm (llvm-profdata for rustc's LLVM)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "llvm-$llvm" >/dev/null ||
    { apt-get update -qq && apt-get install -y -q --no-install-recommends "llvm-$llvm" >/dev/null; }
  profdata=llvm-profdata-$llvm
fi

build=${1:-release}
out=$PWD/target/pgo
raw=$out/raw-$build
case $build in
  release)
    flags=
    cargo_args=(--release -p meshtrace-proxy --bin meshtrace-proxy)
    profile=$out/meshtrace-proxy.profdata
    instrumented=$out/generate/release/meshtrace-proxy
    ;;
  image)
    # Exactly as scripts/images.sh builds it (scripts/image-build.sh).
    source scripts/image-build.sh
    flags=$image_rustflags
    cargo_args=("${image_cargo_args[@]}")
    profile=$PWD/$image_profile
    instrumented=$out/generate/$image_triple/image/meshtrace-proxy
    ;;
  *)
    echo "usage: bash scripts/pgo.sh [release|image]" >&2
    exit 2
    ;;
esac
rm -rf "$raw"
mkdir -p "$raw"
echo "==> the load's peers (target/release/backend, otlp-sink)"
cargo build --release -q -p meshtrace-benches --bin backend --bin otlp-sink
echo "==> an instrumented sidecar ($instrumented)"
RUSTFLAGS="$flags -Cprofile-generate=$raw" cargo build "${cargo_args[@]}" -q --target-dir "$out/generate"

echo "==> the training load"
scratch
backend=18980 sink=18988
target/release/backend --listen 127.0.0.1:$backend --workers 1 >"$tmp/backend.log" 2>&1 &
pids+=($!)
target/release/otlp-sink --listen 127.0.0.1:$sink --stats 127.0.0.1:18989 >"$tmp/sink.log" 2>&1 &
pids+=($!)
sidecar_yaml 18906 18900 $backend >"$tmp/plain.yaml"
sidecar_yaml 18907 18901 $backend $sink >"$tmp/traced.yaml"
sidecars=()
for name in plain traced; do
  "$instrumented" run --config "$tmp/$name.yaml" >"$tmp/$name.log" 2>&1 &
  sidecars+=($!)
done
for url in http://127.0.0.1:{18900,18901}/ready http://127.0.0.1:18989/; do
  for _ in $(seq 100); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
done
w3c=(-H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" -H "tracestate: rojo=00f067aa0ba902b7")
b3=(-H "x-b3-traceid: 4bf92f3577b34da6a3ce929d0e0e4736" -H "x-b3-spanid: 00f067aa0ba902b7" -H "x-b3-sampled: 1")
datadog=(-H "x-datadog-trace-id: 11803532876627986230" -H "x-datadog-parent-id: 67667974448284343"
  -H "x-datadog-sampling-priority: 1" -H "x-datadog-tags: _dd.p.tid=4bf92f3577b34da6")
for port in 18906 18907; do
  wrk -t1 -c32 -d6s "http://127.0.0.1:$port/" >/dev/null
  h2load -c32 -m10 -D6 "http://127.0.0.1:$port/" >/dev/null
  wrk -t1 -c32 -d3s "${w3c[@]}" "http://127.0.0.1:$port/" >/dev/null
  wrk -t1 -c32 -d3s "${b3[@]}" "http://127.0.0.1:$port/" >/dev/null
  wrk -t1 -c32 -d3s "${datadog[@]}" "http://127.0.0.1:$port/" >/dev/null
done
# The counters are written when the sidecars exit.
kill -TERM "${sidecars[@]}"
wait "${sidecars[@]}" || true

echo "==> $profdata merge"
"$profdata" merge -o "$profile" "$raw"/*.profraw
if [[ $build == image ]]; then
  echo "wrote $profile: bash scripts/images.sh builds the images with it"
  exit
fi
echo "==> the sidecar with the profile (target/release/meshtrace-proxy)"
RUSTFLAGS="-Cprofile-use=$profile" cargo build --release -q -p meshtrace-proxy --bin meshtrace-proxy
echo "built target/release/meshtrace-proxy with $profile"
