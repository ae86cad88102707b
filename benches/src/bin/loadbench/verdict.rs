//! The targets (issue 7), each checked against a median of the run and
//! marked met or missed: the last table of the report.

use std::fmt::Write as _;

use super::report::{h2, wrk, Results, DIRECT, FULL, MESH};
use super::stats::{show, Spread};
use super::targets::Target;

/// One target of the issue, checked against a median.
struct Check {
    what: &'static str,
    rule: String,
    measured: String,
    met: bool,
}

// === impl Check ===

impl Check {
    /// `value`'s median judged by `ok`; missed when there is no value.
    fn of(
        what: &'static str,
        rule: impl Into<String>,
        value: Option<Spread>,
        decimals: usize,
        ok: impl Fn(f64) -> bool,
    ) -> Self {
        Self {
            what,
            rule: rule.into(),
            measured: show(value, decimals),
            met: value.is_some_and(|v| ok(v.median)),
        }
    }
}

/// The targets as a table, each met or missed.
pub(super) fn checks(res: &Results) -> String {
    let mut list = speed_checks(res);
    list.extend(memory_checks(res));
    list.extend(export_checks(res));
    let mut md = String::from(
        "### Targets (issue 7), on the medians above\n\n| | target | measured (median, min–max) | |\n|---|---|---|---|\n",
    );
    for c in list {
        let verdict = if c.met { "**met**" } else { "**missed**" };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {verdict} |",
            c.what, c.rule, c.measured
        );
    }
    md
}

/// Targets a–d: throughput, added latency, CPU per request.
fn speed_checks(res: &Results) -> Vec<Check> {
    let h1 = res.ratio(wrk, MESH, DIRECT);
    let haproxy = res
        .ratio(wrk, Target::Haproxy, DIRECT)
        .map_or(f64::INFINITY, |s| s.median);
    let cpu = |t: Target| res.spread(|r| r.wrk.get(&t)?.cpu_us);
    vec![
        Check::of("a", "HTTP/1.1 throughput ≥ 0.60 of direct", h1, 2, |v| {
            v >= 0.60
        }),
        Check::of(
            "a",
            format!("HTTP/1.1 throughput ratio ≥ HAProxy's ({haproxy:.2})"),
            h1,
            2,
            |v| v >= haproxy,
        ),
        Check::of(
            "b",
            "h2c throughput ≥ 0.50 of direct",
            res.ratio(h2, MESH, DIRECT),
            2,
            |v| v >= 0.50,
        ),
        Check::of(
            "c",
            "added p50 ≤ 50 µs at 1 000 req/s",
            res.added(MESH, |w| w.latency.p50),
            0,
            |v| v <= 50.0,
        ),
        Check::of(
            "c",
            "added p99 ≤ 200 µs at 1 000 req/s",
            res.added(MESH, |w| w.latency.p99),
            0,
            |v| v <= 200.0,
        ),
        Check::of(
            "d",
            "CPU ≤ 30 µs/request (wrk windows)",
            cpu(MESH),
            1,
            |v| v <= 30.0,
        ),
        Check::of(
            "d",
            "CPU ≤ 45 µs/request at 100% sampling",
            cpu(FULL),
            1,
            |v| v <= 45.0,
        ),
    ]
}

/// Target e: resident memory idle, under load, and after it.
fn memory_checks(res: &Results) -> Vec<Check> {
    // MB read as 10^6 bytes: the stricter reading of "10 MB".
    let mb = |kib: f64| kib * 1024.0 / 1e6;
    let idle_kib = res.idle_kib.get(&MESH).map(|&k| k as f64);
    let idle = idle_kib.and_then(|k| Spread::of([mb(k)]));
    let load = res.spread(|r| r.rss.get(&MESH).map(|&x| mb(x as f64)));
    let after = res
        .recovery
        .get(&MESH)
        .and_then(|r| r.at_end())
        .and_then(|k| Spread::of([mb(k as f64)]));
    let limit = idle_kib.map_or(0.0, |k| mb(k) * 1.25);
    vec![
        Check::of("e", "RSS idle ≤ 10 MB (MB = 10⁶ bytes)", idle, 1, |v| {
            v <= 10.0
        }),
        Check::of("e", "RSS under 100 connections ≤ 25 MB", load, 1, |v| {
            v <= 25.0
        }),
        Check::of(
            "e",
            format!("RSS 30 s after load ≤ idle + 25 % ({limit:.1} MB)"),
            after,
            1,
            |v| v <= limit,
        ),
    ]
}

/// Target f: what exporting every span costs, and that none is dropped.
fn export_checks(res: &Results) -> Vec<Check> {
    let drops = res.drops_at_rate(FULL);
    vec![
        Check::of(
            "f",
            "100% sampling keeps ≥ 0.85 of export-off throughput",
            res.ratio(wrk, FULL, MESH),
            2,
            |v| v >= 0.85,
        ),
        Check {
            what: "f",
            rule: "0 spans dropped at 100% sampling, 1 000 req/s (all windows)".into(),
            measured: drops.to_string(),
            met: drops == 0 && res.rounds.iter().any(|r| r.oha.contains_key(&FULL)),
        },
    ]
}
