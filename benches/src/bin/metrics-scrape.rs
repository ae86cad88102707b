//! What an operator's scrape of `/metrics` costs: series and bytes of an idle
//! sidecar and of one after a mixed load, and the time to answer a scrape.
//!
//! An in-process sidecar (the test harness's builder, ephemeral loopback ports)
//! in front of the mock HTTP app, with an explicit outbound route to it. The
//! mixed load: HTTP/1 and HTTP/2 requests in both directions, with W3C, B3,
//! Datadog or no trace headers, answered 200, 404 or 503, plus a request on an
//! unknown outbound authority (`no_route`). Each scrape is a `GET /metrics` on
//! the admin port over one kept-alive HTTP/1 connection; the time is the
//! median (and p99) of `--scrapes` of them.
//!
//! ```text
//! cargo run --release -p meshtrace-benches --bin metrics-scrape -- --scrapes 2000
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use http::Request;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::{empty, H1Conn, H2Conn};
use meshtrace_tests::sidecar;

#[derive(Parser)]
struct Args {
    /// Scrapes timed per state (idle, after load).
    #[arg(long, default_value_t = 1000)]
    scrapes: usize,
    /// Requests of the mixed load per combination of direction and protocol.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// Ask for OpenMetrics (`Accept: application/openmetrics-text`), as
    /// Prometheus does; without it the scrape is whatever `curl` gets.
    #[arg(long)]
    openmetrics: bool,
}

const HEADERS: [(&str, &str); 4] = [
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
    ("x-datadog-trace-id", "1234567890123"),
    ("x-no-trace", "1"),
];
const PATHS: [&str; 3] = ["/", "/status/404", "/status/503"];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .host_route("app.local", app.addr())
        .start()
        .await;
    let mut admin = H1Conn::connect(proxy.admin_addr()).await;
    report("idle", &mut admin, &args).await;
    load(&proxy, args.requests).await;
    report("after mixed load", &mut admin, &args).await;
}

/// The mixed load described in the module docs.
async fn load(proxy: &sidecar::Proxy, requests: usize) {
    let targets = [
        (proxy.inbound_addr(), "app.local"),
        (proxy.outbound_addr(), "app.local"),
    ];
    for (addr, authority) in targets {
        let mut h1 = H1Conn::connect(addr).await;
        let h2 = H2Conn::connect(addr).await;
        for i in 0..requests {
            let (name, value) = HEADERS[i % HEADERS.len()];
            let path = PATHS[i % PATHS.len()];
            let req = || {
                Request::get(format!("http://{authority}{path}"))
                    .header(name, value)
                    .body(empty())
                    .expect("request")
            };
            let _ = h1.send(req()).await;
            let _ = h2.send(req()).await;
        }
    }
    let unknown = Request::get("http://nowhere.local/")
        .body(empty())
        .expect("request");
    let _ = H1Conn::connect(proxy.outbound_addr())
        .await
        .send(unknown)
        .await;
}

/// One `GET /metrics`, asking for OpenMetrics when `openmetrics`.
async fn scrape(admin: &mut H1Conn, openmetrics: bool) -> String {
    let mut req = Request::get("/metrics");
    if openmetrics {
        req = req.header("accept", "application/openmetrics-text; version=1.0.0");
    }
    let rsp = admin.send(req.body(empty()).expect("request")).await;
    assert!(rsp.status().is_success());
    let body = http_body_util::BodyExt::collect(rsp.into_body()).await;
    String::from_utf8_lossy(&body.expect("body").to_bytes()).into_owned()
}

/// Prints series and bytes of one scrape and the time of `args.scrapes` more.
async fn report(state: &str, admin: &mut H1Conn, args: &Args) {
    let body = scrape(admin, args.openmetrics).await;
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    let mut times: Vec<Duration> = Vec::with_capacity(args.scrapes);
    for _ in 0..args.scrapes {
        let start = Instant::now();
        scrape(admin, args.openmetrics).await;
        times.push(start.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{state}: {series} series, {} bytes; scrape median {:?}, p99 {:?} ({} scrapes)",
        body.len(),
        at(0.5),
        at(0.99),
        args.scrapes
    );
}
