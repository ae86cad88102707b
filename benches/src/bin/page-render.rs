//! The control plane's page (issue 16): what it weighs and how long it takes
//! to show a fleet, measured in a real headless Chromium.
//!
//! ```text
//! cargo build --release -p meshtrace-benches --bin page-render
//! target/release/page-render            # --sidecars 100 --workloads 10 --overrides 5 --loads 20
//! ```
//!
//! An in-process control plane (`meshtrace_control::testing`, the `serve` code)
//! with `--sidecars` watch streams open (each its own SSE connection, acknowledged
//! as a sidecar does), `--overrides` active overrides and one report per sidecar
//! over `--workloads` workloads. Chromium (`meshtrace_tests::browser`, over the
//! DevTools protocol) loads `GET /` `--loads` times, a fresh navigation each time
//! (no cache: the server sends `Cache-Control: no-cache`, and the page fetches
//! with `cache: no-store`). Per load, from the page's Performance API:
//!
//! * **first contentful paint**: the `paint` entry (the page's frame, before any
//!   data);
//! * **fleet shown**: `performance.now()` in the `MutationObserver` callback that
//!   sees the sidecars table with all `--sidecars` rows (the DOM written, before
//!   the paint that follows it);
//! * **bytes**: the page's files (`navigation` + `resource` entries for the HTML,
//!   CSS and JS) and one refresh's four JSON answers, by `encodedBodySize`
//!   (nothing is compressed), and `transferSize` with headers.

#![forbid(unsafe_code)]

use clap::Parser;
use http::Method;
use meshtrace_config::report::{FormatCounts, Report};
use meshtrace_control::client::WatchStream;
use meshtrace_control::overrides::NewOverride;
use meshtrace_control::testing::{self, Running};
use meshtrace_tests::browser::Browser;
use serde_json::{json, Value};

const TOKEN: &str = "bench-token";

/// Page weight and time to show the fleet.
#[derive(Parser, Debug)]
struct Args {
    /// Sidecars connected (watch streams).
    #[arg(long, default_value_t = 100)]
    sidecars: usize,
    /// Workloads they belong to.
    #[arg(long, default_value_t = 10)]
    workloads: usize,
    /// Active overrides.
    #[arg(long, default_value_t = 5)]
    overrides: usize,
    /// Page loads measured.
    #[arg(long, default_value_t = 20)]
    loads: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let cp = testing::start("defaults: {sampling: {default_rate: 0.1}}\n", Some(TOKEN)).await;
    let _streams = fleet(&cp, &args).await;
    let mut browser = Browser::launch().await;
    let url = format!("{}/", cp.url());
    let rows = args.sidecars;
    let (mut fcp, mut shown) = (Vec::new(), Vec::new());
    let mut weight = Value::Null;
    for _ in 0..args.loads {
        browser.navigate(&url).await;
        let at = browser
            .wait_for(
                "every sidecar on the page",
                &format!("document.querySelectorAll('#sidecars tr[data-key]').length === {rows} && performance.now()"),
            )
            .await;
        shown.push(at.as_f64().unwrap_or(f64::NAN));
        let paint = browser.evaluate(FIRST_PAINT).await;
        fcp.push(paint.as_f64().unwrap_or(f64::NAN));
        weight = browser.evaluate(WEIGHT).await;
    }
    println!(
        "page-render: {} sidecars ({} workloads, {} overrides), {} loads in headless Chromium",
        args.sidecars, args.workloads, args.overrides, args.loads
    );
    println!("first contentful paint ms: {}", summary(&mut fcp));
    println!("fleet shown ms:            {}", summary(&mut shown));
    println!("bytes: {weight}");
}

/// The first contentful paint's time, once Chromium has recorded it (it may
/// come after the DOM is written); `null` if not within 10 s.
const FIRST_PAINT: &str = "new Promise((resolve) => {
  const found = (list) => list.find((e) => e.name === 'first-contentful-paint');
  const now = found(performance.getEntriesByType('paint'));
  if (now) return resolve(now.startTime);
  const timer = setTimeout(() => resolve(null), 10000);
  new PerformanceObserver((l) => { const e = found(l.getEntries()); if (e) { clearTimeout(timer); resolve(e.startTime); } })
    .observe({ type: 'paint', buffered: true });
})";

/// The bytes the page's files and its API answers took, by kind.
const WEIGHT: &str = "(() => {
  const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
  const sum = (f, key) => all.filter(f).reduce((n, e) => n + e[key], 0);
  const files = (e) => !e.name.includes('/v1/');
  const first = (e) => e.name.includes('/v1/') && all.filter((x) => x.name === e.name).indexOf(e) === 0;
  const byName = {};
  for (const e of all) { const k = e.name.replace(location.origin, ''); if (!(k in byName)) byName[k] = e.encodedBodySize; }
  return { files_body: sum(files, 'encodedBodySize'), files_transfer: sum(files, 'transferSize'),
           api_body_one_refresh: sum(first, 'encodedBodySize'), each: byName };
})()";

/// `median / p90 / min / max` of `samples`.
fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.1}, p90 {:.1}, min {:.1}, max {:.1}",
        at(0.5),
        at(0.9),
        at(0.0),
        at(1.0)
    )
}

/// Opens the watch streams (acknowledged), adds the overrides and posts the
/// reports; the streams stay open while they are kept.
async fn fleet(cp: &Running, args: &Args) -> Vec<WatchStream> {
    let client = cp.client();
    let mut streams = Vec::with_capacity(args.sidecars);
    for i in 0..args.sidecars {
        let service = format!("service-{}", i % args.workloads.max(1));
        let pod = format!("{service}-{i:04}");
        let mut watch = cp.watch(&service, "shop", &pod, &[]).await;
        let push = testing::within("a push", watch.next_config())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no config pushed to {pod}"));
        let ack =
            json!({"namespace": "shop", "pod": pod, "version": push.version, "status": "ack"});
        let body = Some(("application/json", ack.to_string().into()));
        let (status, _) = client
            .send(Method::POST, "/v1/ack", body)
            .await
            .unwrap_or_else(|e| panic!("ack: {e}"));
        assert!(status.is_success(), "ack: {status}");
        let counts = FormatCounts {
            requests: 100,
            legacy: 20,
            none: 0,
            formats: [
                (meshtrace_config::PropagationFormat::TraceContext, 80),
                (meshtrace_config::PropagationFormat::B3Multi, 20),
            ]
            .into(),
        };
        let report = Report {
            namespace: "shop".into(),
            pod,
            service: Some(service),
            boot: 1,
            uptime_seconds: Some(60),
            inbound: counts.clone(),
            outbound: counts,
            ..Report::default()
        };
        client
            .report(&report)
            .await
            .unwrap_or_else(|e| panic!("report: {e}"));
        streams.push(watch);
    }
    for i in 0..args.overrides {
        client
            .add_override(&NewOverride {
                service: Some(format!("service-{i}")),
                rate: 1.0,
                duration: Some(format!("{}m", 10 + i)),
                reason: Some(format!("incident {i}")),
                ..NewOverride::default()
            })
            .await
            .unwrap_or_else(|e| panic!("override: {e}"));
    }
    streams
}
