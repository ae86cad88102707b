#!/usr/bin/env bash
# Builds the container images meshtrace-proxy and meshtrace-control without a
# Docker daemon, into OCI layouts under target/images/, and lints their
# Dockerfiles. The README's test command runs it before `cargo test`, whose
# e2e module `image::` smoke-runs the proxy image with runc.
#
#   bash scripts/images.sh          # build both, print their sizes, lint
#   bash scripts/images.sh lint     # only hadolint the Dockerfiles
#
# Output:
#   target/images/meshtrace-proxy    OCI layout, reference <version> (e.g. 0.1.0)
#   target/images/meshtrace-control  OCI layout, reference <version>
#   target/images/sizes.txt          compressed and unpacked size of each image
# Load one into a cluster's runtime with skopeo, e.g.
#   skopeo copy oci:target/images/meshtrace-proxy:0.1.0 \
#     docker-archive:proxy.tar:meshtrace/meshtrace-proxy:0.1.0
#
# Needs buildah (Debian's: storage driver vfs, isolation chroot, no daemon),
# python3, ldd, and hadolint in ./.venv (tests/python/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/images
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
source scripts/image-build.sh
triple=$image_triple
hadolint=.venv/bin/hadolint

lint() {
  if [ ! -x "$hadolint" ]; then
    echo "ERROR: $hadolint missing: bash scripts/test-all.sh installs it (tests/python/requirements.txt)" >&2
    exit 1
  fi
  echo "==> hadolint images/*.Dockerfile"
  "$hadolint" images/proxy.Dockerfile images/control.Dockerfile
}

# The static binaries (scripts/image-build.sh), with the profile `bash
# scripts/pgo.sh image` trained on this same build when it is there
# (profile-guided optimisation).
build_binaries() {
  local flags=$image_rustflags
  if [ -f "$image_profile" ]; then
    echo "==> with the profile $image_profile ($(date -r "$image_profile" '+%F %T'))"
    flags="$flags -Cprofile-use=$PWD/$image_profile"
  fi
  echo "==> cargo build ${image_cargo_args[*]} (static)"
  RUSTFLAGS="$flags" cargo build "${image_cargo_args[@]}"
  for bin in meshtrace-proxy meshtrace-control; do
    if ! ldd "target/$triple/image/$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
      echo "ERROR: target/$triple/image/$bin is not statically linked:" >&2
      ldd "target/$triple/image/$bin" >&2
      exit 1
    fi
  done
}

# iptables for the init step: both multi-call binaries (nft and legacy), the
# names the init step calls, the shared libraries they load (glibc included)
# and every xtables extension, at the paths Debian's loader searches.
iptables_runtime() {
  local dest=$1 lib=/usr/lib/x86_64-linux-gnu
  mkdir -p "$dest/usr/sbin" "$dest$lib" "$dest/lib64" "$dest/run"
  for multi in xtables-nft-multi xtables-legacy-multi; do
    cp -L "/usr/sbin/$multi" "$dest/usr/sbin/"
    ldd "/usr/sbin/$multi" | awk '/=> \//{print $3}' | while read -r so; do
      cp -L "$so" "$dest$lib/"
    done
  done
  cp -L /lib64/ld-linux-x86-64.so.2 "$dest/lib64/"
  cp -a "$lib/xtables" "$dest$lib/"
  local backend name
  for backend in nft legacy; do
    for name in iptables ip6tables; do
      for suffix in "" -save -restore; do
        ln -sf "xtables-$backend-multi" "$dest/usr/sbin/$name-$backend$suffix"
      done
    done
  done
  # The unsuffixed names follow Debian's default (nft), as the node's do.
  for name in iptables ip6tables; do
    for suffix in "" -save -restore; do
      ln -sf xtables-nft-multi "$dest/usr/sbin/$name$suffix"
    done
  done
}

# The build context of one image: its binary, etc/ and the CA bundle.
context() {
  local name=$1 dir="$out/context/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "target/$triple/image/meshtrace-$name" "$dir/"
  chmod 0555 "$dir/meshtrace-$name"
  cp -r "images/$name/etc" "$dir/"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/"
  if [ "$name" = proxy ]; then
    iptables_runtime "$dir/iptables"
  fi
}

# buildah with its own storage under target/images (vfs: no overlay mounts, no
# daemon, works in a container).
bah() {
  buildah --storage-driver vfs --root "$PWD/$out/storage" --runroot "$PWD/$out/run" "$@"
}

build_image() {
  local name=$1 tag="localhost/meshtrace/meshtrace-$1:$version"
  context "$name"
  echo "==> buildah build meshtrace-$name:$version"
  bah build --isolation chroot --layers=false --timestamp "$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -f "images/$name.Dockerfile" -t "$tag" "$out/context/$name" >/dev/null
  rm -rf "${out:?}/meshtrace-$name"
  bah push --quiet "$tag" "oci:$out/meshtrace-$name:$version"
  bah rmi --force "$tag" >/dev/null
}

# Compressed size: the layer blobs as stored; unpacked: the layers' tar streams.
sizes() {
  python3 - "$out" "$version" <<'PY'
import gzip, json, os, sys
out, version = sys.argv[1], sys.argv[2]
def blob(layout, digest):
    return os.path.join(layout, "blobs", *digest.split(":"))
print(f"{'image':34} {'compressed':>12} {'unpacked':>12}")
for name in ("meshtrace-proxy", "meshtrace-control"):
    layout = os.path.join(out, name)
    index = json.load(open(os.path.join(layout, "index.json")))
    manifest = json.load(open(blob(layout, index["manifests"][0]["digest"])))
    compressed = sum(l["size"] for l in manifest["layers"])
    unpacked = 0
    for layer in manifest["layers"]:
        opener = gzip.open if layer["mediaType"].endswith("gzip") else open
        with opener(blob(layout, layer["digest"]), "rb") as f:
            while chunk := f.read(1 << 20):
                unpacked += len(chunk)
    print(f"{name + ':' + version:34} {compressed:>12,} {unpacked:>12,}")
PY
}

case "${1:-all}" in
  lint) lint ;;
  all)
    lint
    why=""
    [ "$(id -u)" = 0 ] || why="not root (buildah's vfs storage and runc need it here)"
    command -v buildah >/dev/null 2>&1 || why="buildah is not installed (bash scripts/test-all.sh installs it when root)"
    if [ -n "$why" ]; then
      if [ -n "${MESHTRACE_ALLOW_SKIP_NETNS:-}" ]; then
        echo "!!! images NOT BUILT: $why (MESHTRACE_ALLOW_SKIP_NETNS is set) !!!" >&2
        exit 0
      fi
      echo "ERROR: cannot build the images: $why; set MESHTRACE_ALLOW_SKIP_NETNS=1 to skip knowingly" >&2
      exit 1
    fi
    start=$(date +%s)
    build_binaries
    built=$(date +%s)
    build_image proxy
    build_image control
    rm -rf "${out:?}/storage" "${out:?}/run"
    sizes | tee "$out/sizes.txt"
    echo "images: binaries $((built - start)) s, images $(($(date +%s) - built)) s"
    ;;
  *) echo "usage: $0 [all|lint]" >&2; exit 2 ;;
esac
