//! The control plane's fleet shares (issue 17): what answering one report
//! costs when a workload has many sidecars.
//!
//! ```text
//! cargo build --release -p meshtrace-benches --bin fleet-shares
//! target/release/fleet-shares            # --sidecars 10,100,1000,10000 --batches 31
//! ```
//!
//! For each fleet size N: a `Reports` store (the `serve` code) holding N
//! sidecars of one workload (`checkout` in `shop`), each with three reports
//! 15 s apart of an adaptive route and a fixed one. Then, per batch, each of
//! the N sidecars reports once more (15 s later for the store's clock) as
//! `POST /v1/report` does after parsing: `Reports::record` then
//! `Reports::budgets` for the reporter. A batch's time / N is one report's
//! cost; printed: the median and the slowest of `--batches` batches, and the
//! CPU a full fleet reporting every 15 s costs (median × N / 15 s).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use meshtrace_config::report::{Report, RouteReport};
use meshtrace_control::reports::Reports;

/// Cost of a report's answer by fleet size.
#[derive(Parser, Debug)]
struct Args {
    /// Fleet sizes (sidecars of one workload), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    sidecars: Vec<usize>,
    /// Batches per size (each: every sidecar reports once).
    #[arg(long, default_value_t = 31)]
    batches: usize,
}

const INTERVAL: u64 = 15;

fn report(pod: usize, roots: u64) -> Report {
    let adaptive = RouteReport {
        roots,
        target_traces_per_second: Some(50.0),
        rate: 0.01,
        ..RouteReport::default()
    };
    let fixed = RouteReport {
        roots: roots / 2,
        rate: 0.1,
        ..RouteReport::default()
    };
    Report {
        namespace: "shop".into(),
        pod: format!("checkout-{pod}"),
        service: Some("checkout".into()),
        boot: 1,
        routes: [
            ("pay".to_string(), adaptive),
            ("default".to_string(), fixed),
        ]
        .into(),
        ..Report::default()
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// Per-report times (ns) of each batch, sorted.
fn measure(n: usize, batches: usize) -> (Vec<f64>, f64) {
    let reports = Reports::default();
    let mut t = 0;
    for round in 0..3u64 {
        for pod in 0..n {
            let roots = round * 100 * (1 + pod as u64 % 7);
            reports.record(report(pod, roots), at(t)).expect("recorded");
        }
        t += INTERVAL;
    }
    let mut per_report = Vec::with_capacity(batches);
    let mut checksum = 0.0;
    for round in 3..(3 + batches as u64) {
        let now = at(t);
        let started = Instant::now();
        for pod in 0..n {
            let roots = round * 100 * (1 + pod as u64 % 7);
            reports.record(report(pod, roots), now).expect("recorded");
            let budgets = reports.budgets("shop", &format!("checkout-{pod}"), now);
            checksum += budgets.get("pay").copied().unwrap_or_default();
        }
        per_report.push(started.elapsed().as_nanos() as f64 / n as f64);
        t += INTERVAL;
    }
    per_report.sort_by(f64::total_cmp);
    (per_report, checksum / batches as f64)
}

fn main() {
    let args = Args::parse();
    println!(
        "sidecars  median/report  slowest batch/report  fleet CPU (every {INTERVAL}s)  Σ shares"
    );
    for &n in &args.sidecars {
        let (times, shares) = measure(n, args.batches);
        let median = times[times.len() / 2];
        let worst = times[times.len() - 1];
        let cpu = median * n as f64 / (INTERVAL as f64 * 1e9) * 100.0;
        println!(
            "{n:>8}  {:>10.1} µs  {:>17.1} µs  {cpu:>20.3} %  {shares:>8.3}",
            median / 1000.0,
            worst / 1000.0
        );
    }
}
