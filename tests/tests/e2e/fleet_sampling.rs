//! A fleet target shared through the control plane: two sidecars of one
//! workload, one taking three times the other's traffic, each reporting its
//! root-request rate; the control plane answers each with its share of the
//! route's target, so both settle on the same probability — the fleet's
//! target over the fleet's traffic — and together record about the target.
//! Alone, the smaller one would adapt to the whole target on its own traffic
//! and keep four times as much.

use std::net::SocketAddr;
use std::time::Duration;

use meshtrace_config::Duration as ConfigDuration;
use meshtrace_control::testing;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::H1Conn;
use meshtrace_tests::sidecar::{self, Proxy};

/// The workload's default route keeps 40 root traces a second, fleet-wide.
const DOCUMENT: &str = "defaults:\n  sampling:\n    default: {target_traces_per_second: 40}\n    adaptive: {period: 1s}\n";
const TARGET: f64 = 40.0;
/// Root requests a second at the big and the small sidecar.
const BIG: u32 = 150;
const SMALL: u32 = 50;
/// How many seconds of traffic the shares may take to have effect.
const SETTLE_SECONDS: u32 = 20;

async fn sidecar(control: &str, app: SocketAddr, pod: &str) -> Proxy {
    let pod = pod.to_string();
    sidecar::new()
        .inbound_to(app)
        .watching(control, "checkout")
        .configure(move |c| {
            c.workload.pod_name = Some(pod);
            c.control.report_interval = ConfigDuration::from_secs(1);
        })
        .start()
        .await
}

/// Sends `per_second` requests a second on `conn` for `seconds` (paced by a
/// ticker: the load's shape, not a wait for anything).
async fn paced(conn: &mut H1Conn, per_second: u32, seconds: u32) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..per_second * seconds {
        ticks.tick().await;
        conn.get("/").await;
    }
}

/// One second of traffic at both sidecars, at the same time.
async fn second(big: &mut H1Conn, small: &mut H1Conn) {
    tokio::join!(paced(big, BIG, 1), paced(small, SMALL, 1));
}

/// A sample of the sidecar's scrape: the first value of the series starting
/// with `series`.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const RATE: &str = "meshtrace_sampling_route_rate{route=\"default\"}";
const SAMPLED: &str =
    "meshtrace_sampling_decisions_total{direction=\"inbound\",decision=\"sampled\",reason=\"default\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_share_the_fleet_target_through_the_control_plane() {
    let app = HttpApp::start().await;
    let cp = testing::start(DOCUMENT, None).await;
    let big = sidecar(&cp.url(), app.addr(), "checkout-big").await;
    let small = sidecar(&cp.url(), app.addr(), "checkout-small").await;
    let mut to_big = H1Conn::connect(big.inbound_addr()).await;
    let mut to_small = H1Conn::connect(small.inbound_addr()).await;

    // Both settle on the fleet's probability: 40 / 200 = 0.2 (alone, the
    // small one would keep 40 / 50 = 0.8, the big one 40 / 150 ≈ 0.27).
    let fleet = TARGET / f64::from(BIG + SMALL);
    let near = |r: f64| (r / fleet - 1.0).abs() <= 0.25;
    let mut rates = (1.0, 1.0);
    for _ in 0..SETTLE_SECONDS {
        second(&mut to_big, &mut to_small).await;
        rates = (
            value(&big.metrics().await, RATE),
            value(&small.metrics().await, RATE),
        );
        if near(rates.0) && near(rates.1) {
            break;
        }
    }
    assert!(
        near(rates.0) && near(rates.1),
        "after {SETTLE_SECONDS}s the rates are {rates:?}, not near the fleet's {fleet}"
    );

    // Together they record about the target: over 8 s of traffic (320 traces
    // expected, a binomial spread of about ±6 %), within ±25 %.
    let sampled = |big: &str, small: &str| value(big, SAMPLED) + value(small, SAMPLED);
    let before = sampled(&big.metrics().await, &small.metrics().await);
    let start = tokio::time::Instant::now();
    for _ in 0..8 {
        second(&mut to_big, &mut to_small).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = sampled(&big.metrics().await, &small.metrics().await);
    let per_second = (after - before) / elapsed;
    assert!(
        (per_second / TARGET - 1.0).abs() <= 0.25,
        "the fleet recorded {per_second:.1} root traces/s for a target of {TARGET} (rates {rates:?})"
    );
}
