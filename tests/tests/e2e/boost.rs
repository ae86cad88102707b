//! The automatic incident boost through a real `meshtrace-proxy` process, a
//! real app and a real OTLP collector: a route traced at rate 0 whose upstream
//! starts failing 20 % of its requests is boosted within its window, the spans
//! of its failing requests are exported at the boost rate with
//! `meshtrace.sampling.reason=boost`, a flood is capped by the boost's budget,
//! and the boost decays and ends on its own — each step visible in the log and
//! in `meshtrace_sampling_boost_active{route}`.

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::Empty;
use meshtrace_config::{Boost, Config, Duration as ConfigDuration, RuleMatch, SamplingRule, Tag};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::H1Conn;
use meshtrace_tests::otlp::{OtlpReceiver, ReceivedSpan};
use meshtrace_tests::process::{probe, ProxyProcess};
use meshtrace_tests::sidecar;

const WAIT: Duration = Duration::from_secs(20);
/// The boost's window: the trigger must hold over it.
const WINDOW: Duration = Duration::from_secs(2);
/// The boost's budget, traces a second (and its burst).
const BUDGET: f64 = 50.0;

/// The route `checkout` (everything): rate 0, boosted to 1 when more than 10 %
/// of its requests fail over 2 s, 50 boosted traces a second, for 4 s, then a
/// decay of 1 s; adjusted every 200 ms.
fn boosted(c: &mut Config) {
    c.sampling.default_rate = 0.0;
    c.sampling.adaptive.period = ConfigDuration::from_millis(200);
    c.sampling.rules = vec![SamplingRule {
        name: Some("checkout".into()),
        matches: RuleMatch::default(),
        rate: Some(0.0),
        boost: Some(Boost {
            error_ratio: Some(0.1),
            latency: None,
            window: WINDOW.into(),
            min_requests: 20,
            rate: 1.0,
            traces_per_second: BUDGET,
            duration: ConfigDuration::from_secs(4),
            decay: ConfigDuration::from_secs(1),
        }),
        ..SamplingRule::default()
    }];
}

async fn start(app: &HttpApp, collector: &OtlpReceiver) -> ProxyProcess {
    let endpoint = collector.endpoint();
    sidecar::new()
        .inbound_to(app.addr())
        .configure(move |c| {
            c.workload.service = Some("checkout".into());
            c.export.endpoint = Some(endpoint);
            c.export.queue.delay = Some(ConfigDuration::from_millis(20));
            c.spans.tags = vec![Tag {
                name: "request.id".into(),
                value: None,
                env: None,
                header: Some("x-request-id".into()),
            }];
            boosted(c);
        })
        .spawn()
        .await
}

/// Sends `n` requests on `conn`, every `failing_every`th one failing
/// (`/status/500`), each marked `{tag}-{i}` in `x-request-id`.
async fn send(conn: &mut H1Conn, n: usize, failing_every: Option<usize>, tag: &str) {
    for i in 0..n {
        let fail = failing_every.is_some_and(|every| i % every == every - 1);
        let path = if fail { "/status/500" } else { "/status/200" };
        let req = Request::get(path)
            .header("host", "checkout")
            .header("x-request-id", format!("{tag}-{i}"))
            .body(Empty::<bytes::Bytes>::new())
            .expect("a valid request");
        let rsp = conn.send(req).await;
        let want = if fail {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        assert_eq!(rsp.status(), want, "{path}");
    }
}

async fn boost_gauge(proxy: &ProxyProcess) -> String {
    let (_, metrics) = probe::get(proxy.admin_addr(), "admin", "/metrics")
        .await
        .expect("the admin server answers /metrics");
    metrics
        .lines()
        .find(|l| l.starts_with("meshtrace_sampling_boost_active{route=\"checkout\"}"))
        .unwrap_or("no meshtrace_sampling_boost_active{route=\"checkout\"}")
        .to_string()
}

fn boosted_spans(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.attr_str("meshtrace.sampling.reason").as_deref() == Some("boost"))
        .collect()
}

#[tokio::test]
async fn failing_route_is_boosted_capped_and_decays_back() {
    let app = HttpApp::start().await;
    let collector = OtlpReceiver::start_grpc().await;
    let proxy = start(&app, &collector).await;
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;

    // Healthy: rate 0, nothing traced, no boost.
    send(&mut conn, 40, None, "healthy").await;
    assert!(boost_gauge(&proxy).await.ends_with(" 0"));

    // 20 % failing: boosted within the window.
    let failing_since = Instant::now();
    let started = async {
        loop {
            send(&mut conn, 10, Some(5), "failing").await;
            let lines = proxy.output().lines();
            if let Some(line) = lines.iter().find(|l| l.contains("sampling boost started")) {
                return line.clone();
            }
        }
    };
    let line = tokio::time::timeout(WAIT, started)
        .await
        .expect("a boost within the test's bound");
    let took = failing_since.elapsed();
    assert!(
        took <= WINDOW + Duration::from_millis(400),
        "boosted {took:?} after failures began; the window is {WINDOW:?}"
    );
    assert!(
        line.contains("checkout") && line.contains("error ratio"),
        "{line}"
    );
    assert!(boost_gauge(&proxy).await.ends_with(" 1"));

    // Boosted: the next 10 requests (2 failing) are all traced, at rate 1,
    // within the budget's burst.
    send(&mut conn, 10, Some(5), "boosted").await;
    let spans = collector
        .wait_until(WAIT, |spans| {
            spans.iter().filter(|s| tagged(s, "boosted-")).count() == 10
        })
        .await;
    let boosted: Vec<&ReceivedSpan> = spans.iter().filter(|s| tagged(s, "boosted-")).collect();
    assert!(boosted
        .iter()
        .all(|s| s.attr_str("meshtrace.sampling.reason").as_deref() == Some("boost")));
    let failed = boosted
        .iter()
        .filter(|s| s.attr_str("http.response.status_code").as_deref() == Some("500"))
        .count();
    assert_eq!(failed, 2, "both failing requests' spans are exported");

    // A flood: the budget caps what the boost keeps.
    let flood_start = Instant::now();
    send(&mut conn, 300, None, "flood").await;
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let cap = (BUDGET + BUDGET * flood_secs).ceil() as usize + 1;
    let marker = marker(&mut conn, &collector, "marker-flood").await;
    let flooded = marker.iter().filter(|s| tagged(s, "flood-")).count();
    assert!(
        flooded <= cap && flooded < 300,
        "{flooded} of 300 flood requests boosted in {flood_secs:.2}s; the budget allows {cap}"
    );

    // The boost runs out, decays and ends; then the route is back at rate 0.
    proxy
        .output()
        .wait_for_line("sampling boost decaying")
        .await;
    proxy.output().wait_for_line("sampling boost ended").await;
    assert!(boost_gauge(&proxy).await.ends_with(" 0"));
    send(&mut conn, 20, None, "quiet").await;
    let spans = marker_spans(&mut conn, &collector, "marker-end").await;
    let after = spans.iter().filter(|s| tagged(s, "quiet-")).count();
    assert_eq!(after, 0, "no span once the boost ended");
    assert!(!boosted_spans(&spans).is_empty());
}

/// Whether the span's request carried an `x-request-id` starting with `tag`.
fn tagged(span: &ReceivedSpan, tag: &str) -> bool {
    span.attr_str("request.id")
        .is_some_and(|id| id.starts_with(tag))
}

/// Sends one forced request tagged `tag` and returns every span once its span
/// arrived: spans leave the queue in order, so everything before it is there.
async fn marker(conn: &mut H1Conn, collector: &OtlpReceiver, tag: &str) -> Vec<ReceivedSpan> {
    marker_spans(conn, collector, tag).await
}

async fn marker_spans(conn: &mut H1Conn, collector: &OtlpReceiver, tag: &str) -> Vec<ReceivedSpan> {
    let req = Request::get("/status/200")
        .header("host", "checkout")
        .header("x-request-id", tag)
        .header("x-meshtrace-force-trace", "1")
        .body(Empty::<bytes::Bytes>::new())
        .expect("a valid request");
    assert_eq!(conn.send(req).await.status(), StatusCode::OK);
    collector
        .wait_until(WAIT, |spans| spans.iter().any(|s| tagged(s, tag)))
        .await
}
