//! Issue 18's view of a run: the side-by-side table (meshtrace, its `before`
//! build, HAProxy, nginx, Envoy), tracing at 100 % with OTLP export for
//! meshtrace and Envoy, and the instructions per request from the callgrind phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::callgrind::Wire;
use super::measure::{Recovery, Window};
use super::report::{h2, wrk, Results, Round, DIRECT};
use super::stats::{show, Spread};
use super::targets::{Target, TRACED};

const MIB: f64 = 1024.0;

/// The columns of the side-by-side table.
const COLUMNS: [Target; 5] = [
    Target::Meshtrace,
    Target::Before,
    Target::Haproxy,
    Target::Nginx,
    Target::Envoy,
];

/// A round's windows of one load generator.
pub(super) type Pick = fn(&Round) -> &BTreeMap<Target, Window>;

/// The traced variant of an untraced proxy (meshtrace, Envoy).
pub(super) fn traced_of(t: Target) -> Option<Target> {
    TRACED.iter().find(|p| p.1 == t).map(|p| p.0)
}

/// Per-round CPU µs/request of `t` in `pick`'s windows.
pub(super) fn cpu(res: &Results, pick: Pick, t: Target) -> Option<Spread> {
    res.spread(|r| pick(r).get(&t)?.cpu_us)
}

/// Per-round extra CPU µs/request of `traced` over `base`.
pub(super) fn extra_cpu(res: &Results, pick: Pick, traced: Target, base: Target) -> Option<Spread> {
    res.spread(|r| Some(pick(r).get(&traced)?.cpu_us? - pick(r).get(&base)?.cpu_us?))
}

/// Spans dropped at full speed (every wrk and h2load window of `t`): (dropped,
/// spans ended = exported + dropped, the largest share dropped in one window).
/// For Envoy, whose export is asynchronous to the windows: the whole run's
/// requests without a span at its sink.
pub(super) fn dropped(res: &Results, t: Target) -> Option<(u64, u64, f64)> {
    if t == Target::EnvoyTraced {
        let s = res.totals.get(&t)?;
        let share = if s.requests > 0 {
            s.dropped as f64 / s.requests as f64
        } else {
            0.0
        };
        return Some((s.dropped, s.requests, share));
    }
    let windows: Vec<_> = res
        .rounds
        .iter()
        .flat_map(|r| [r.wrk.get(&t), r.h2.get(&t)])
        .flatten()
        .filter_map(|w| w.spans)
        .collect();
    if windows.is_empty() {
        return None;
    }
    let d: u64 = windows.iter().map(|s| s.dropped).sum();
    let all: u64 = windows.iter().map(|s| s.dropped + s.exported).sum();
    let worst = windows
        .iter()
        .filter(|s| s.dropped + s.exported > 0)
        .map(|s| s.dropped as f64 / (s.dropped + s.exported) as f64)
        .fold(0.0, f64::max);
    Some((d, all, worst))
}

fn show_dropped(d: Option<(u64, u64, f64)>) -> String {
    d.map_or("n/a".into(), |(d, all, worst)| {
        let pct = if all > 0 {
            100.0 * d as f64 / all as f64
        } else {
            0.0
        };
        format!(
            "{d} of {all} ({pct:.2} %; worst window {:.2} %)",
            100.0 * worst
        )
    })
}

/// The callgrind count of `t` on `wire`.
pub(super) fn instr(res: &Results, t: Target, wire: Wire) -> Option<u64> {
    res.callgrind.get(&(t, wire)).map(|c| c.per_request)
}

fn show_instr(v: Option<u64>) -> String {
    v.map_or("—".into(), |v| v.to_string())
}

/// The table: one column per proxy, medians (min–max) over the rounds.
pub fn table(res: &Results) -> String {
    let cols = res.present(COLUMNS);
    let mut md = String::from("### Side by side (issue 18)\n\n|");
    for t in &cols {
        let _ = write!(md, " | {}", t.label());
    }
    md += " |\n|---|";
    md += &"---|".repeat(cols.len());
    md += "\n";
    let mut row = |name: &str, f: &dyn Fn(Target) -> String| {
        let _ = write!(md, "| {name}");
        for &t in &cols {
            let _ = write!(md, " | {}", f(t));
        }
        md += " |\n";
    };
    row("HTTP/1.1 throughput ÷ direct", &|t| {
        show(res.ratio(wrk, t, DIRECT), 2)
    });
    row("HTTP/1.1 CPU µs/request", &|t| show(cpu(res, wrk, t), 1));
    row("instructions/request (callgrind, HTTP/1.1)", &|t| {
        show_instr(instr(res, t, Wire::H1))
    });
    row("h2c throughput ÷ direct", &|t| {
        show(res.ratio(h2, t, DIRECT), 2)
    });
    row("h2c CPU µs/request", &|t| show(cpu(res, h2, t), 1));
    row("instructions/request (callgrind, h2c)", &|t| {
        show_instr(instr(res, t, Wire::H2))
    });
    row("added p50 at 1 000 req/s, µs", &|t| {
        show(res.added(t, |w| w.latency.p50), 0)
    });
    row("RSS idle / 100 conns / 30 s after, MiB", &|t| rss(res, t));
    // A traced row's cell: f(traced, untraced), or — for a proxy without a traced variant.
    let traced = |t: Target, f: &dyn Fn(Target) -> String| {
        traced_of(t).filter(|&x| res.has(x)).map_or("—".into(), f)
    };
    row(
        "100 % sampled + OTLP: HTTP/1.1 throughput ÷ untraced",
        &|t| traced(t, &|x| show(res.ratio(wrk, x, t), 2)),
    );
    row("100 % sampled + OTLP: h2c throughput ÷ untraced", &|t| {
        traced(t, &|x| show(res.ratio(h2, x, t), 2))
    });
    row("100 % sampled: HTTP/1.1 CPU µs/request (extra)", &|t| {
        traced(t, &|x| {
            let (c, e) = (cpu(res, wrk, x), extra_cpu(res, wrk, x, t));
            format!("{} (+{})", show(c, 1), show(e, 1))
        })
    });
    row(
        "100 % sampled: instructions/request (callgrind, HTTP/1.1)",
        &|t| traced(t, &|x| show_instr(instr(res, x, Wire::H1))),
    );
    row("spans dropped at full speed", &|t| {
        traced(t, &|x| show_dropped(dropped(res, x)))
    });
    md += "\nThroughput and CPU from the alternating wrk (`-t1 -c32`) and h2load (`-c32 -m10`) \
           windows below; instructions per request from the callgrind phase (last table); \
           RSS from section e.\n\n";
    md
}

fn rss(res: &Results, t: Target) -> String {
    let idle = res
        .idle_kib
        .get(&t)
        .map_or("n/a".into(), |k| format!("{:.1}", *k as f64 / MIB));
    let load = res
        .spread(|r| r.rss.get(&t).map(|&k| k as f64 / MIB))
        .map_or("n/a".into(), |s| format!("{:.1}", s.median));
    let after = res
        .recovery
        .get(&t)
        .and_then(Recovery::at_end)
        .map_or("—".into(), |k| format!("{:.1}", k as f64 / MIB));
    format!("{idle} / {load} / {after}")
}

/// Tracing at 100 % with OTLP export: meshtrace and Envoy, against themselves untraced.
pub fn tracing(res: &Results) -> String {
    let mut md = String::from(
        "### Tracing at 100 % with OTLP export (meshtrace and Envoy)\n\n\
         | proxy | HTTP/1.1 ÷ untraced | h2c ÷ untraced | CPU µs/req, wrk (extra) | CPU µs/req, h2load (extra) | spans dropped at full speed |\n\
         |---|---|---|---|---|---|\n",
    );
    for (traced, base) in TRACED {
        if !res.has(traced) {
            continue;
        }
        let c = |pick: Pick| {
            format!(
                "{} (+{})",
                show(cpu(res, pick, traced), 1),
                show(extra_cpu(res, pick, traced, base), 1)
            )
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            traced.label(),
            show(res.ratio(wrk, traced, base), 2),
            show(res.ratio(h2, traced, base), 2),
            c(wrk),
            c(h2),
            show_dropped(dropped(res, traced)),
        );
    }
    md += "\nmeshtrace: sampling 1.0, `export: {protocol: grpc, compression: none}` to `otlp-sink`, \
           default queue; dropped = `meshtrace_spans_dropped_total` over every wrk and h2load window. \
           Envoy: `envoy.tracers.opentelemetry` over gRPC to its own `otlp-sink`, random / client / \
           overall sampling 100, batches of 512 spans (runtime `tracing.opentelemetry.min_flush_spans: 512`, \
           `max_cache_size: 1024`, flush every 5 s); dropped = requests (`http.{h1,h2c}.downstream_rq_completed`) \
           without a span at the sink after the run settled. Extra CPU = traced − untraced, per round.\n\n";
    md
}

/// Instructions per request, every proxy (the callgrind phase).
pub fn instructions(res: &Results) -> String {
    if res.callgrind.is_empty() {
        return "### Instructions per request (callgrind)\n\nNot measured in this run (`--no-callgrind`).\n\n".into();
    }
    let mut md = String::from(
        "### Instructions per request (callgrind): the repeatable figure\n\n\
         | proxy | HTTP/1.1 (wrk -t1 -c32) | requests counted | h2c (h2load -c32 -m10) | requests counted |\n\
         |---|---|---|---|---|\n",
    );
    let targets: Vec<Target> = res
        .callgrind
        .keys()
        .map(|k| k.0)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for t in targets {
        let cell = |w: Wire| {
            res.callgrind
                .get(&(t, w))
                .map_or(("—".into(), "—".into()), |c| {
                    (c.per_request.to_string(), c.requests.to_string())
                })
        };
        let ((h1, n1), (h2c, n2)) = (cell(Wire::H1), cell(Wire::H2));
        let _ = writeln!(md, "| {} | {h1} | {n1} | {h2c} | {n2} |", t.label());
    }
    md += "\n`bash benches/load/callgrind.sh PROXY target/release/backend LABEL` for each: the proxy \
           (configured as in the windows above, from `loadbench --proxy-command`) runs under \
           `valgrind --tool=callgrind`, is warmed up by the same load (2 s; Envoy 10 s), then \
           `callgrind_control -z` zeroes its counters, the load runs for the counted window, and \
           `callgrind_control -d` dumps them: start-up, warm-up and shut-down are not counted. \
           Instructions of every thread (nginx: master + worker) ÷ requests completed in the window. \
           Traced rows: meshtrace sampling 1.0 and Envoy's OpenTelemetry tracer, each exporting to `otlp-sink`.\n\n";
    md
}
