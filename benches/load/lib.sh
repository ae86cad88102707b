#!/usr/bin/env bash
# Shared by the scripts that start sidecars and their peers for a measurement
# (benches/load/spans.sh, benches/load/sink-cost.sh, scripts/pgo.sh): sourced,
# never run.

# need CMD:PACKAGE...: exits 2 naming the first command missing and the Debian
# package that has it.
need() {
  local want
  for want in "$@"; do
    command -v "${want%%:*}" >/dev/null ||
      { echo "${want%%:*} is not installed (apt-get install ${want#*:})" >&2; exit 2; }
  done
}

# sidecar_yaml LISTEN ADMIN APP_PORT [SINK_PORT]: a one-worker sidecar's config on
# loopback, access log off; with SINK_PORT, sampling 100 % and OTLP/gRPC export
# (no compression) to it.
sidecar_yaml() {
  cat <<YAML
inbound: {listen: 127.0.0.1:$1, app_port: $3}
outbound: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:$2, health_listen: null, metrics_listen: null}
runtime: {workers: 1}
log: {access_log: false, level: warn}
YAML
  if [[ -n ${4:-} ]]; then
    echo 'sampling: {default_rate: 1.0}'
    echo "export: {endpoint: \"http://127.0.0.1:$4\", protocol: grpc, compression: none}"
  fi
}

# The sidecar reads OTEL_* variables for keys its file leaves out: none here.
clear_otel_env() {
  while read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)
}

# A scratch directory in $tmp, and every process whose pid is added to `pids`
# (`pids+=($!)`) stopped, on exit, error or Ctrl-C.
scratch() {
  tmp=$(mktemp -d)
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
}
