#!/usr/bin/env bash
# Times rendering and validating the Helm chart, as the chart tests do
# (tests/tests/e2e/chart/render.rs: the same six values sets): `helm template`
# of each, then `kubernetes-validate --strict` against Kubernetes 1.29, RUNS
# times (default 5), wall and CPU time of each phase. Needs the venv of
# scripts/test-all.sh (helm-binary, kubernetes-validate).
set -euo pipefail
cd "$(dirname "$0")/.."
helm=.venv/bin/helm
validate=.venv/bin/kubernetes-validate
[ -x "$helm" ] && [ -x "$validate" ] || { echo "run scripts/test-all.sh once: it creates .venv" >&2; exit 2; }
sets=(
  ""
  "--set injector.tls.mode=certManager"
  "--set sidecar.native=false --set sidecar.control.enabled=false"
  "--set store=file --set replicas=1 --set persistence.enabled=true --set token=s3cret"
  "--set image.repository=registry.example/mesh/control --set image.tag=1.2.3 --set sidecar.image.repository=registry.example/mesh/proxy --set sidecar.image.tag=1.2.4 --set sidecar.image.pullPolicy=Always --set injector.image.repository=registry.example/mesh/injector"
  "--set injector.failurePolicy=Fail --set injector.networkPolicy.from[0].ipBlock.cidr=10.0.0.0/24 --set sidecar.excludeOutboundPorts={5432,6379} --set sidecar.excludeOutboundCidrs={169.254.169.254/32,fd00::/8}"
)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render() {
  local i=0
  for s in "${sets[@]}"; do
    # shellcheck disable=SC2086 # each set is a list of flags
    "$helm" template meshtrace-control charts/meshtrace-control -n meshtrace $s >"$out/$i.yaml"
    i=$((i + 1))
  done
}
check() {
  for f in "$out"/*.yaml; do "$validate" --strict --quiet -k 1.29.0 "$f" >/dev/null 2>&1; done
}
TIMEFORMAT='%R s wall, %U s user + %S s sys'
for run in $(seq 1 "${RUNS:-5}"); do
  echo "run $run (load $(cut -d' ' -f1 /proc/loadavg), $(nproc) cores):"
  echo -n "  helm template x${#sets[@]}:        "; time render
  echo -n "  kubernetes-validate x${#sets[@]}:  "; time check
done
