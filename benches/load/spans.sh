#!/usr/bin/env bash
# The cost of spans and OTLP export on the data path (issue 5), in one run:
#
#  a. sampling 0% and 100% exporting to a local OTLP/gRPC sink, vs export off (no
#     endpoint): throughput, sidecar CPU per request, spans exported / dropped, in
#     alternating windows;
#  b. spans per second exported with no drops at 100% (the 100% windows; if they
#     drop, rate-limited windows below full speed until one has no drops);
#  c. collector down: 100% sampling towards a closed port vs export off and vs 100%
#     to the running sink (throughput, wrk latency, RSS, drops by reason), then the
#     sink starts on the closed port and export must resume.
#
#   bash benches/load/spans.sh [rounds] [seconds-per-window]
#   COMPRESSION=gzip bash benches/load/spans.sh   # export.compression (default none)
#   PACE=1 bash benches/load/spans.sh             # paced windows even without drops
#
# Sidecars: 1 worker, access log off, default export queue (16 MiB / 65 536 spans,
# batches of 512, 5 s delay, 4 exports in flight). wrk -t2 -c32, 1 KiB responses
# from target/release/backend, all on loopback. Needs wrk and curl. Bounded: with
# the defaults (3 rounds, 10 s) about 4-5 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/load/lib.sh
rounds=${1:-3}
secs=${2:-10}
compression=${COMPRESSION:-none}
need wrk:wrk curl:curl
clear_otel_env

bash benches/load/build.sh
scratch

backend_port=18280
sink_otlp=18291; sink_stats=18292         # the sink of parts a and b
down_otlp=18299; down_stats=18298         # closed in part c until the sink starts there
# mode -> inbound port, admin port, sampling rate, export endpoint
declare -A inbound=([off]=18216 [s0]=18226 [s100]=18236 [down]=18246)
declare -A admin=([off]=18210 [s0]=18220 [s100]=18230 [down]=18240)
declare -A rate=([off]=1.0 [s0]=0.0 [s100]=1.0 [down]=1.0)
declare -A endpoint=([off]="" [s0]="http://127.0.0.1:$sink_otlp"
  [s100]="http://127.0.0.1:$sink_otlp" [down]="http://127.0.0.1:$down_otlp")
declare -A label=([off]="export off" [s0]="sampling 0%" [s100]="sampling 100%"
  [down]="100%, collector down")
declare -A pid=()
# Modes measured after a settle (every span exported or dropped) and their sink.
declare -A settles=([s100]=1) sinkport=([s0]=$sink_stats [s100]=$sink_stats)
# A second name for a running sidecar, so a phase keeps its own lists of figures:
# alias_mode NEW OLD LABEL SETTLES SINK-STATS-PORT
alias_mode() {
  pid[$1]=${pid[$2]}; inbound[$1]=${inbound[$2]}; admin[$1]=${admin[$2]}
  rate[$1]=${rate[$2]}; endpoint[$1]=${endpoint[$2]}; label[$1]=$3
  settles[$1]=$4; sinkport[$1]=$5
}

# Every port must be free (part c needs $down_otlp closed until the sink starts).
for port in $backend_port $sink_otlp $sink_stats $down_otlp $down_stats "${inbound[@]}" "${admin[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use" >&2; exit 2
  fi
done

target/release/backend --listen 127.0.0.1:$backend_port --workers 1 >"$tmp/backend.log" &
pids+=($!)
target/release/otlp-sink --listen 127.0.0.1:$sink_otlp --stats 127.0.0.1:$sink_stats \
  >"$tmp/sink.log" 2>&1 &
pids+=($!)
pid[sink]=$!
for mode in off s0 s100 down; do
  {
    echo "inbound: {listen: 127.0.0.1:${inbound[$mode]}, app_port: $backend_port}"
    echo "outbound: {listen: 127.0.0.1:0}"
    echo "admin: {listen: 127.0.0.1:${admin[$mode]}, health_listen: null, metrics_listen: null}"
    echo "runtime: {workers: 1}"
    echo "log: {access_log: false, level: warn}"
    echo "sampling: {default_rate: ${rate[$mode]}}"
    if [[ -n ${endpoint[$mode]} ]]; then
      echo "export: {endpoint: \"${endpoint[$mode]}\", protocol: grpc, compression: $compression}"
    fi
  } >"$tmp/$mode.yaml"
  target/release/meshtrace-proxy run --config "$tmp/$mode.yaml" >"$tmp/$mode.log" 2>&1 &
  pid[$mode]=$!
  pids+=($!)
done
rss() { awk '/VmRSS/ {print $2}' "/proc/${pid[$1]}/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/${pid[$1]}/status"; }
wait_ready() {
  for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  curl -sf "$1" >/dev/null
}
for mode in off s0 s100 down; do wait_ready "http://127.0.0.1:${admin[$mode]}/ready"; done
wait_ready "http://127.0.0.1:$sink_stats/"
declare -A idle_rss=()
for mode in off s0 s100 down; do idle_rss[$mode]=$(rss "$mode"); done

# --- measuring helpers ---------------------------------------------------------

# Sum of the samples of a metric whose line starts with $2, on admin port $1.
metric() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk -v k="$2" 'index($0, k) == 1 {s += $NF} END {printf "%d\n", s}'
}
# One line: inbound-requests exported queue_full export_failed rejected.
snapshot() {
  local a=${admin[$1]}
  echo "$(metric "$a" 'meshtrace_requests_total{direction="inbound"')" \
    "$(metric "$a" meshtrace_spans_exported_total)" \
    "$(metric "$a" 'meshtrace_spans_dropped_total{reason="queue_full"}')" \
    "$(metric "$a" 'meshtrace_spans_dropped_total{reason="export_failed"}')" \
    "$(metric "$a" 'meshtrace_spans_dropped_total{reason="rejected"}')"
}
# Spans the sink on stats port $1 received (0 for none).
sink_spans() {
  [[ -n $1 ]] || { echo 0; return; }
  curl -sf "http://127.0.0.1:$1/" | awk '/^spans / {print $2}'
}
# At 100% every inbound request is one span: wait (at most 8 s, more than the 5 s
# batch delay) until each is exported or counted as dropped.
settle() {
  local s
  for _ in $(seq 80); do
    read -r -a s < <(snapshot "$1")
    ((s[1] + s[2] + s[3] + s[4] >= s[0])) && return 0
    sleep 0.1
  done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/${pid[$1]}/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
# One wrk window on $conns connections (extra wrk options in $2..); prints
# "req/s requests p50-ms p99-ms errors".
conns=32
window() {
  local url=$1; shift
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$url" | awk '
    function ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000; return v + 0 }
    /requests in/ {n = $1} /Requests\/sec/ {r = $2}
    /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)}
    /Non-2xx/ {e += $NF}
    /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10}
    END {printf "%s %d %.3f %.3f %d\n", r, n, p50, p99, e}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {print lo "-" hi}'; }
us_per() { awk -v t="$1" -v n="$2" -v u="$tick_us" 'BEGIN {if (n > 0) printf "%.1f", t * u / n; else print "nan"}'; }

# Results: one list per mode and quantity.
declare -A rps=() cpu=() sinkcpu=() p50=() p99=() exp=() expwin=() qf=() ef=() rej=() sink=() errs=()
add() { local k=$1; shift; eval "$k[\$1]=\"\${$k[\$1]:-} \$2\""; }
# A measured window on one sidecar; $2.. are extra wrk options.
measure() {
  local mode=$1; shift
  local b a w c0 c1 k0 k1 r n l50 l99 e s0 s1
  read -r -a b < <(snapshot "$mode"); k0=$(sink_spans "${sinkport[$mode]:-}")
  c0=$(cpu_ticks "$mode"); s0=$(cpu_ticks sink)
  read -r r n l50 l99 e < <(window "http://127.0.0.1:${inbound[$mode]}/" "$@")
  read -r -a w < <(snapshot "$mode")
  if [[ -n ${settles[$mode]:-} ]]; then settle "$mode"; fi
  c1=$(cpu_ticks "$mode"); s1=$(cpu_ticks sink); k1=$(sink_spans "${sinkport[$mode]:-}")
  read -r -a a < <(snapshot "$mode")
  add rps "$mode" "$r"; add p50 "$mode" "$l50"; add p99 "$mode" "$l99"; add errs "$mode" "$e"
  add cpu "$mode" "$(us_per $((c1 - c0)) "$n")"
  add expwin "$mode" "$(((w[1] - b[1]) / secs))"
  add exp "$mode" $((a[1] - b[1])); add qf "$mode" $((a[2] - b[2]))
  add ef "$mode" $((a[3] - b[3])); add rej "$mode" $((a[4] - b[4]))
  add sink "$mode" $((k1 - k0)); add sinkcpu "$mode" "$(us_per $((s1 - s0)) $((k1 - k0)))"
  printf '  %-22s %8s req/s  cpu %5s us/req  p50 %6.2f ms  p99 %6.2f ms  exported %7d (%6d/s in window, sink +%d)  dropped queue_full %d export_failed %d rejected %d  errors %d\n' \
    "${label[$mode]}" "$r" "$(us_per $((c1 - c0)) "$n")" "$l50" "$l99" \
    $((a[1] - b[1])) $(((w[1] - b[1]) / secs)) $((k1 - k0)) \
    $((a[2] - b[2])) $((a[3] - b[3])) $((a[4] - b[4])) "$e"
}
# "median (min-max; all)" of a mode's list.
stat() {
  local -n list=$1
  # shellcheck disable=SC2086
  set -- ${list[$2]}
  echo "$(median "$@") ($(range "$@"); all: $*)"
}

# --- a + b: sampling 0% / 100% / export off, alternating -----------------------

echo "== a. sampling 0% / 100% to the sink vs export off (${rounds} rounds x ${secs} s, compression $compression)"
for r in $(seq "$rounds"); do
  echo "round $r:"
  for mode in off s0 s100; do measure "$mode"; done
done

echo
echo "== b. spans/s exported with no drops at 100%"
# shellcheck disable=SC2086
full_drops=$(printf '%s\n' ${qf[s100]} ${ef[s100]} ${rej[s100]} | awk '{s += $1} END {print s}')
limited=()
if ((full_drops == 0)) && [[ -z ${PACE:-} ]]; then
  echo "  no drops in the full-speed 100% windows: nothing to rate-limit"
else
  # No wrk2/oha here: wrk's delay() (whole milliseconds, per connection) paces
  # 128 connections to about 128000 / (delay-ms + ~1 ms response) requests/s, a
  # finer step than 32 connections allow; the rate reported is wrk's measured one.
  full=$(median ${rps[s100]})
  alias_mode paced s100 "100%, paced" 1 $sink_stats
  conns=128
  for frac in 0.9 0.75 0.5; do
    d=$(awk -v f="$frac" -v r="$full" 'BEGIN {d = int(128000 / (f * r) - 1 + 0.5); print (d < 1 ? 1 : d)}')
    echo "function delay() return $d end" >"$tmp/pace.lua"
    echo " paced at ~${frac} of full speed (128 connections, delay ${d} ms each):"
    measure paced -s "$tmp/pace.lua"
    read -r -a lastq <<<"${qf[paced]}"; read -r -a laste <<<"${ef[paced]}"
    read -r -a lastr <<<"${rej[paced]}"; read -r -a lastp <<<"${rps[paced]}"
    drops=$((lastq[-1] + laste[-1] + lastr[-1]))
    limited+=("${lastp[-1]}:$drops")
    if ((drops == 0)); then break; fi
  done
  conns=32
fi

# --- c: collector down ---------------------------------------------------------

echo
echo "== c. 100% sampling, collector down (closed port $down_otlp) vs export off and 100% to the sink, ${secs} s windows"
# The lists of part c are kept apart from part a's.
alias_mode offc off "export off" "" ""
alias_mode upc s100 "100%, sink up" 1 $sink_stats
down_idle=$(rss down)
down_rss=()
read -r -a down_start < <(snapshot down)
for r in $(seq 3); do
  echo "round $r:"
  measure offc
  measure upc
  measure down
  down_rss+=("$(rss down)")
done
sleep 2
down_after=$(rss down); down_peak=$(hwm down); off_peak=$(hwm off)
read -r -a down_end < <(snapshot down)
echo "  down sidecar RSS: idle ${down_idle} KiB, after each window ${down_rss[*]} KiB, 2 s later ${down_after} KiB, peak ${down_peak} KiB (export-off sidecar peak ${off_peak} KiB)"

echo " the sink starts on $down_otlp:"
read -r -a rec0 < <(snapshot down)
started=$(date +%s.%N)
target/release/otlp-sink --listen 127.0.0.1:$down_otlp --stats 127.0.0.1:$down_stats \
  >"$tmp/sink-down.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$down_stats/"
# Spans still queued from the down phase may go first; else a trickle of requests
# (one per 0.1 s) until the first span is accepted, at most 30 s.
first=""
for _ in $(seq 300); do
  read -r -a s < <(snapshot down)
  if ((s[1] > rec0[1])); then first=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'); break; fi
  curl -sf -o /dev/null "http://127.0.0.1:${inbound[down]}/" || true
  sleep 0.1
done
read -r -a rec_first < <(snapshot down)
echo "  first spans accepted ${first:-never (30 s)} s after the sink started: $((rec_first[1] - rec0[1])) exported by then ($((rec_first[0] - rec0[0])) new requests)"
alias_mode rec down "100%, sink back" 1 $down_stats
secs_c=$secs; secs=5
measure rec
secs=$secs_c
read -r -a rec1 < <(snapshot down)
rec_sink=$(sink_spans $down_stats)

# --- summary -------------------------------------------------------------------

echo
echo "== summary: median (min-max; all windows)"
printf '%-24s | %-40s | %-34s\n' "" "req/s" "sidecar CPU us/request"
for mode in off s0 s100; do
  printf '%-24s | %-40s | %-34s\n' "${label[$mode]}" "$(stat rps $mode)" "$(stat cpu $mode)"
done
echo
printf '%-24s | %-32s | %-32s | %s\n' "" "exported (metrics)" "sink received" "dropped qf / export_failed / rejected (all windows)"
for mode in s0 s100; do
  printf '%-24s | %-32s | %-32s | %s / %s / %s\n' "${label[$mode]}" "$(stat exp $mode)" "$(stat sink $mode)" \
    "${qf[$mode]# }" "${ef[$mode]# }" "${rej[$mode]# }"
done
echo "sink (parts a, b) CPU per received span at 100%: $(stat sinkcpu s100) us"
echo "RSS (KiB) idle / peak over the run: export off ${idle_rss[off]} / $(hwm off), sampling 0% ${idle_rss[s0]} / $(hwm s0), sampling 100% to the sink ${idle_rss[s100]} / $(hwm s100)"
echo
echo "b. 100% at full speed: exported $(stat expwin s100) spans/s during the window; drops in those windows: $full_drops"
if ((${#limited[@]} > 0)); then
  echo "   paced windows, 128 connections (measured req/s : drops): ${limited[*]}"
fi
echo
echo "c. collector down vs export off and 100% to the sink (3 windows each):"
printf '%-24s | %-34s | %-28s | %-28s\n' "" "req/s" "p50 ms" "p99 ms"
for mode in offc upc down; do
  printf '%-24s | %-34s | %-28s | %-28s\n' "${label[$mode]}" "$(stat rps $mode)" "$(stat p50 $mode)" "$(stat p99 $mode)"
done
echo "   CPU us/request: export off $(stat cpu offc); 100% sink up $(stat cpu upc); collector down $(stat cpu down)"
echo "   100% sink up: dropped qf / export_failed / rejected per window: ${qf[upc]# } / ${ef[upc]# } / ${rej[upc]# }"
echo "   dropped during the down phase (3 windows + 2 s): queue_full $((down_end[2] - down_start[2])), export_failed $((down_end[3] - down_start[3])); requests $((down_end[0] - down_start[0]))"
echo "   RSS (KiB): idle $down_idle, after windows ${down_rss[*]}, 2 s later $down_after, peak $down_peak; export-off peak $off_peak"
echo "   recovery: first export ${first:-never} s after the sink started; from before the sink started to after the 5 s window: exported $((rec1[1] - rec0[1])), sink $rec_sink, queue_full $((rec1[2] - rec0[2])), export_failed $((rec1[3] - rec0[3]))"
echo
echo "accounting at the end (100% sidecars: requests = exported + dropped when nothing is lost silently):"
for mode in s100 down; do
  read -r -a s < <(snapshot "$mode")
  echo "  ${label[$mode]}: requests ${s[0]}, exported ${s[1]}, queue_full ${s[2]}, export_failed ${s[3]}, rejected ${s[4]}, unaccounted $((s[0] - s[1] - s[2] - s[3] - s[4]))"
done
echo "  sink of parts a, b: $(sink_spans $sink_stats) spans; sink of part c: $rec_sink spans"
