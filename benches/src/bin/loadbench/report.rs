//! The report: per-round figures reduced to median (min–max), as Markdown tables,
//! the targets marked met / missed, and the splice into
//! `benches/RESULTS.md` between the `loadbench` markers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::callgrind::Counts;
use super::measure::{LatencyWindow, Recovery, Spans, Window, RECOVERY};
use super::stats::{show, Spread};
use super::targets::{Target, COMPARED, PROXIES, SAMPLED};
use super::{summary, verdict, verdict18, Error};

/// The figures of one round of alternating windows.
#[derive(Debug, Default)]
pub struct Round {
    /// wrk `-t1 -c32`, HTTP/1.1 keep-alive, per target.
    pub wrk: BTreeMap<Target, Window>,
    /// h2load `-c32 -m10`, h2c, per target.
    pub h2: BTreeMap<Target, Window>,
    /// oha at 1 000 requests/s, per target.
    pub oha: BTreeMap<Target, LatencyWindow>,
    /// gRPC unary: (direct, through the sidecar).
    pub grpc: Option<(Window, Window)>,
    /// Peak RSS under wrk -c100, KiB, per proxy.
    pub rss: BTreeMap<Target, u64>,
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Results {
    /// One entry per round.
    pub rounds: Vec<Round>,
    /// RSS after start, before any load, KiB.
    pub idle_kib: BTreeMap<Target, u64>,
    /// The exporting sidecars' counters at the end of the run, after settling.
    pub totals: BTreeMap<Target, Spans>,
    /// Spans the OTLP sink received over the run.
    pub sink_spans: Option<u64>,
    /// Each proxy's RSS for 30 s after its last load (the last round's).
    pub recovery: BTreeMap<Target, Recovery>,
    /// Instructions per request (the callgrind phase), if it ran.
    pub callgrind: Counts,
}

/// The header lines: date, machine, tool versions, command, window lengths.
#[derive(Debug, Default)]
pub struct Context {
    /// Lines, already Markdown.
    pub lines: Vec<String>,
}

pub(super) const DIRECT: Target = Target::Direct;
pub(super) const MESH: Target = Target::Meshtrace;
pub(super) const FULL: Target = Target::Sampled100;
const MIB: f64 = 1024.0;

// === impl Results ===

impl Results {
    /// A figure's median (min–max) over the rounds that have it.
    pub(super) fn spread(&self, f: impl Fn(&Round) -> Option<f64>) -> Option<Spread> {
        Spread::of(self.rounds.iter().filter_map(f))
    }

    /// Per-round ratio of a throughput to another target's in the same round.
    pub(super) fn ratio(
        &self,
        pick: fn(&Round) -> &BTreeMap<Target, Window>,
        t: Target,
        base: Target,
    ) -> Option<Spread> {
        self.spread(|r| {
            let (a, b) = (pick(r).get(&t)?, pick(r).get(&base)?);
            (b.load.rps > 0.0).then(|| a.load.rps / b.load.rps)
        })
    }

    /// Per-round added latency (target − direct), µs.
    pub(super) fn added(&self, t: Target, pct: fn(&LatencyWindow) -> f64) -> Option<Spread> {
        self.spread(|r| Some(pct(r.oha.get(&t)?) - pct(r.oha.get(&DIRECT)?)))
    }

    /// Whether any round measured `t` (the `before` build runs only with `BEFORE=`).
    pub(super) fn has(&self, t: Target) -> bool {
        self.idle_kib.contains_key(&t)
            || self
                .rounds
                .iter()
                .any(|r| r.wrk.contains_key(&t) || r.oha.contains_key(&t))
    }

    /// The targets of `list` this run measured.
    pub(super) fn present(&self, list: impl IntoIterator<Item = Target>) -> Vec<Target> {
        list.into_iter().filter(|&t| self.has(t)).collect()
    }

    /// Spans dropped over every latency window of target `t`.
    pub(super) fn drops_at_rate(&self, t: Target) -> u64 {
        self.rounds
            .iter()
            .filter_map(|r| r.oha.get(&t)?.spans)
            .map(|s| s.dropped)
            .sum()
    }
}

/// A round's HTTP/1.1 (wrk) windows.
pub(super) fn wrk(r: &Round) -> &BTreeMap<Target, Window> {
    &r.wrk
}

/// A round's h2c (h2load) windows.
pub(super) fn h2(r: &Round) -> &BTreeMap<Target, Window> {
    &r.h2
}

/// Renders the whole section (Markdown), the targets checked.
pub fn render(res: &Results, ctx: &Context) -> String {
    let mut md = String::new();
    for line in &ctx.lines {
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md);
    md += &summary::table(res);
    md += &throughput(res);
    md += &latency(res);
    md += &memory(res);
    md += &sampling(res);
    md += &summary::tracing(res);
    md += &summary::instructions(res);
    md += &grpc(res);
    md += &verdict18::checks(res);
    md += &verdict::checks(res);
    md
}

fn throughput(res: &Results) -> String {
    let mut md = String::from(
        "### a, b, d. Throughput and CPU per request\n\n\
         | target | HTTP/1.1 req/s (wrk -t1 -c32) | ratio to direct | h2c req/s (h2load -c32 -m10) | ratio to direct | CPU µs/req, wrk | CPU µs/req, h2load |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let traced = [Target::Sampled100, Target::EnvoyTraced];
    for t in res.present(COMPARED.into_iter().chain(traced)) {
        let rps = |pick: fn(&Round) -> &BTreeMap<Target, Window>| {
            show(res.spread(|r| pick(r).get(&t).map(|w| w.load.rps)), 0)
        };
        let cpu = |pick: fn(&Round) -> &BTreeMap<Target, Window>| {
            show(res.spread(|r| pick(r).get(&t)?.cpu_us), 1)
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            t.label(),
            rps(wrk),
            show(res.ratio(wrk, t, DIRECT), 2),
            rps(h2),
            show(res.ratio(h2, t, DIRECT), 2),
            cpu(wrk),
            cpu(h2),
        );
    }
    let errors = window_errors(res);
    let _ = writeln!(
        md,
        "\nErrors (non-2xx, socket errors, failed streams) over all these windows: {errors}. \
         h2c: the backend and meshtrace accept h2 prior knowledge on their one listener; \
         HAProxy on a second `bind … proto h2` frontend, forwarding h2 to the backend \
         (`server … proto h2`, as meshtrace forwards h2); nginx on a second `listen … http2` \
         server block, forwarding over HTTP/1.1 (nginx cannot proxy h2 to an upstream); with 320 streams in flight \
         and `keepalive 64` idle upstream connections cached, nginx opens and closes \
         upstream connections during the h2c windows. Envoy: `--concurrency 1`, an `HTTP1` and an \
         `HTTP2` connection manager, the h2c one forwarding h2 (`explicit_http_config: \
         {{http2_protocol_options: {{}}}}`), no access log (`benches/load/envoy/envoy.yaml`). CPU is utime+stime of the proxy's process group (nginx: master + worker) over \
         the window ÷ requests completed.\n"
    );
    md
}

/// The errors of every wrk and h2load window, in all and by the target and
/// protocol they came from, in the tables' order: "0", or "240 (nginx, h2c: 240)".
fn window_errors(res: &Results) -> String {
    let mut by_target: BTreeMap<(Target, &str), u64> = BTreeMap::new();
    for round in &res.rounds {
        let windows = round.wrk.iter().map(|(t, w)| (t, "HTTP/1.1", w));
        for (t, wire, w) in windows.chain(round.h2.iter().map(|(t, w)| (t, "h2c", w))) {
            if w.load.errors > 0 {
                *by_target.entry((*t, wire)).or_default() += w.load.errors;
            }
        }
    }
    let total: u64 = by_target.values().sum();
    if total == 0 {
        return "0".to_string();
    }
    let parts: Vec<String> = by_target
        .iter()
        .map(|((target, wire), n)| format!("{}, {wire}: {n}", target.label()))
        .collect();
    format!("{total} ({})", parts.join("; "))
}

fn latency(res: &Results) -> String {
    let mut md = String::from(
        "### c. Latency at a fixed 1 000 req/s, open loop (oha -q 1000 -c 32 --latency-correction)\n\n\
         | target | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | added p99.9 µs | errors |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for t in res.present(
        COMPARED
            .into_iter()
            .chain(SAMPLED)
            .chain([Target::EnvoyTraced]),
    ) {
        let abs = |pct: fn(&LatencyWindow) -> f64| show(res.spread(|r| r.oha.get(&t).map(pct)), 0);
        let added = |pct: fn(&LatencyWindow) -> f64| {
            if t == DIRECT {
                "—".to_string()
            } else {
                show(res.added(t, pct), 0)
            }
        };
        let errors: u64 = res
            .rounds
            .iter()
            .filter_map(|r| r.oha.get(&t))
            .map(|w| w.latency.errors)
            .sum();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {errors} |",
            t.label(),
            abs(|w| w.latency.p50),
            abs(|w| w.latency.p99),
            abs(|w| w.latency.p999),
            added(|w| w.latency.p50),
            added(|w| w.latency.p99),
            added(|w| w.latency.p999),
        );
    }
    md += "\nAdded = the target's percentile − direct's, per round, then the median. On a \
           shared 2-core machine the tail (p99, p99.9) is dominated by scheduling noise; a \
           negative added value means the direct window was the noisier one.\n\n";
    md
}

fn memory(res: &Results) -> String {
    let mut md = format!(
        "### e. Memory (VmRSS, MiB; nginx: master + worker summed)\n\n\
         | target | idle, after start | under 100 connections (max of samples every 250 ms) | {} s after the load | first ≤ idle + 25 %, s after the load |\n\
         |---|---|---|---|---|\n",
        RECOVERY.as_secs()
    );
    for t in res.present(PROXIES.into_iter().chain(SAMPLED)) {
        let idle_kib = res.idle_kib.get(&t).map(|&k| k as f64);
        let idle = idle_kib.map_or("n/a".into(), |k| format!("{:.1}", k / MIB));
        let load = show(res.spread(|r| r.rss.get(&t).map(|&x| x as f64 / MIB)), 1);
        let rec = res.recovery.get(&t);
        let after = rec
            .and_then(Recovery::at_end)
            .map_or("—".into(), |k| format!("{:.1}", k as f64 / MIB));
        let back = match (rec, idle_kib) {
            (Some(r), Some(i)) => r
                .first_within(i * 1.25)
                .map_or("not within 30 s".into(), |s| format!("{s:.0}")),
            _ => "—".into(),
        };
        let _ = writeln!(md, "| {} | {idle} | {load} | {after} | {back} |", t.label());
    }
    md += "\nThe RSS after the load is followed once per proxy per run, after its 100-connection \
           window of the last round, sampled every second for 30 s (while the next proxies' \
           windows run).\n\n";
    md
}

fn sampling(res: &Results) -> String {
    let mut md = String::from(
        "### f. Spans: sampling 0 / 1 / 100 %, OTLP/gRPC to the local sink\n\n\
         | sidecar | HTTP/1.1 req/s | ratio to meshtrace without export | ratio to direct | CPU µs/req | spans exported / dropped per wrk window | at 1 000 req/s: exported / dropped per window |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for t in [MESH].into_iter().chain(SAMPLED) {
        let spans = |f: &dyn Fn(&Round) -> Option<Spans>| {
            let e = show(res.spread(|r| f(r).map(|s| s.exported as f64)), 0);
            let d = show(res.spread(|r| f(r).map(|s| s.dropped as f64)), 0);
            format!("{e} / {d}")
        };
        let (at_wrk, at_rate) = if t == MESH {
            ("— (export off)".to_string(), "—".to_string())
        } else {
            (
                spans(&|r| r.wrk.get(&t)?.spans),
                spans(&|r| r.oha.get(&t)?.spans),
            )
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {at_wrk} | {at_rate} |",
            t.label(),
            show(res.spread(|r| r.wrk.get(&t).map(|w| w.load.rps)), 0),
            show(res.ratio(wrk, t, MESH), 2),
            show(res.ratio(wrk, t, DIRECT), 2),
            show(res.spread(|r| r.wrk.get(&t)?.cpu_us), 1),
        );
    }
    md += "\nWhole run, after waiting for the export to settle: ";
    for (t, s) in &res.totals {
        let _ = write!(
            md,
            "{}: {} requests, {} spans exported, {} dropped; ",
            t.label(),
            s.requests,
            s.exported,
            s.dropped
        );
    }
    let _ = writeln!(
        md,
        "the sink received {} spans.\n",
        res.sink_spans.map_or("?".into(), |n| n.to_string())
    );
    md
}

fn grpc(res: &Results) -> String {
    let mut md = String::from(
        "### g. gRPC unary (tonic client, 32 calls in flight over 4 channels; tonic server)\n\n\
         | direct calls/s | through meshtrace calls/s | ratio | sidecar CPU µs/call | errors |\n\
         |---|---|---|---|---|\n",
    );
    let errors: u64 = res
        .rounds
        .iter()
        .filter_map(|r| r.grpc)
        .map(|(d, m)| d.load.errors + m.load.errors)
        .sum();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {errors} |\n",
        show(res.spread(|r| r.grpc.map(|g| g.0.load.rps)), 0),
        show(res.spread(|r| r.grpc.map(|g| g.1.load.rps)), 0),
        show(
            res.spread(|r| r
                .grpc
                .and_then(|(d, m)| (d.load.rps > 0.0).then(|| m.load.rps / d.load.rps))),
            2
        ),
        show(res.spread(|r| r.grpc?.1.cpu_us), 1),
    );
    md
}

// === RESULTS.md ===

const BEGIN: &str = "<!-- loadbench:begin -->";
const END: &str = "<!-- loadbench:end -->";
const HEADING: &str = "## Load harness: direct vs meshtrace vs HAProxy vs nginx (issue 7)";

/// Replaces the text between the markers in `path` with `section`; adds the
/// heading and markers before the first `## ` section if they are missing.
pub fn splice(path: &Path, section: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => text,
        (None, None) => {
            let block = format!("{HEADING}\n\n{BEGIN}\n{END}\n\n");
            let at = text.find("\n## ").map_or(text.len(), |i| i + 1);
            format!("{}{block}{}", &text[..at], &text[at..])
        }
        _ => {
            return Err(format!(
                "{}: loadbench markers out of order or unpaired",
                path.display()
            )
            .into())
        }
    };
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!("{}: markers vanished", path.display()).into());
    };
    let out = format!("{}{BEGIN}\n{section}{}", &text[..b], &text[e..]);
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_reported_by_target_and_protocol() {
        use crate::tools::Throughput;
        let failed = |errors| Window {
            load: Throughput {
                errors,
                ..Throughput::default()
            },
            ..Window::default()
        };
        let mut res = Results::default();
        assert_eq!(window_errors(&res), "0");
        for n in [3, 4] {
            let mut round = Round::default();
            round.wrk.insert(Target::Meshtrace, failed(0));
            round.h2.insert(Target::Nginx, failed(n));
            round.wrk.insert(Target::Envoy, failed(1));
            res.rounds.push(round);
        }
        assert_eq!(
            window_errors(&res),
            format!(
                "9 ({}, h2c: 7; {}, HTTP/1.1: 2)",
                Target::Nginx.label(),
                Target::Envoy.label()
            )
        );
    }

    #[test]
    fn splice_adds_markers_before_the_first_section_and_replaces_between_them() {
        let dir = std::env::temp_dir().join(format!("loadbench-splice-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("RESULTS.md");
        let _ = std::fs::write(&path, "# Title\n\nIntro.\n\n## Old\n\nkept\n");
        assert!(splice(&path, "one\n").is_ok());
        assert!(splice(&path, "two\n").is_ok());
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            text,
            format!("# Title\n\nIntro.\n\n{HEADING}\n\n{BEGIN}\ntwo\n{END}\n\n## Old\n\nkept\n")
        );
    }
}
