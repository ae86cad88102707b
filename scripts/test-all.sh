#!/usr/bin/env bash
# Runs every test meshtrace has, installing what the tests need first.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages -------------------------------------------------------
# iptables + iproute2: the transparent-mode and init-step tests redirect traffic inside
# network namespaces they create. Installed when root; otherwise those tests say
# loudly that they cannot run.
# buildah, umoci, runc, ca-certificates: scripts/images.sh builds the container
# images without a daemon, and the e2e module `image::` runs the proxy's.
# prometheus (/usr/bin/prometheus, /usr/bin/promtool): the e2e module
# `dashboards::` checks and unit-tests the chart's alert rules with promtool and
# runs the Grafana dashboard's queries in a real Prometheus scraping a sidecar;
# `admin::` lints a real scrape with `promtool check metrics`.
# chromium: the e2e module `page::` loads the control plane's page in a real
# headless browser (driven over the DevTools protocol, tests/src/browser.rs).
need=()
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "WARNING: ${need[*]} missing and cannot be installed (not root): the transparent-mode and image tests will fail unless MESHTRACE_ALLOW_SKIP_NETNS=1; the dashboards tests (prometheus) and page tests (chromium) will fail" >&2
  fi
fi

# --- python venv for the interop tests ------------------------------------
# tests/tests/e2e/interop.rs drives real tracer libraries (OpenTelemetry, ddtrace)
# through tests/python/interop.py with /.venv/bin/python. Reinstalled only when
# tests/python/requirements.txt changes (its sha256 is stamped in the venv).
requirements=tests/python/requirements.txt
stamp=.venv/.requirements.sha
if [ ! -x .venv/bin/python ]; then
  echo "==> python3 -m venv .venv"
  python3 -m venv .venv
fi
want_sha=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_sha" ]; then
  echo "==> pip install -r $requirements"
  .venv/bin/python -m pip install -q -r "$requirements"
  echo "$want_sha" >"$stamp"
fi

# --- static checks ---------------------------------------------------------
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The fuzz targets' seam (proxy/src/fuzzing.rs) is behind a feature that nothing
# else builds: check it here so it cannot rot between fuzzing rounds.
cargo clippy -p meshtrace-proxy --lib --features fuzzing -- -D warnings

# --- tests -----------------------------------------------------------------
# The end-to-end tests start the real binary, so build it first.
echo "==> cargo build (binaries used by end-to-end tests)"
cargo build --workspace --bins
# The images (static release binaries, buildah, hadolint); `cargo test` then
# smoke-runs the proxy's (tests/tests/e2e/image.rs).
echo "==> scripts/images.sh"
bash scripts/images.sh
echo "==> cargo test"
cargo test --workspace
