//! Export that a dead, slow or picky collector can cost spans but never
//! requests: retries, drops that are counted, partial success, OTLP/HTTP and
//! TLS, and a flush on shutdown.

use std::time::Duration;

use http::StatusCode;
use meshtrace_config::{Duration as ConfigDuration, OtlpProtocol};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::H1Conn;
use meshtrace_tests::otlp::{Failure, OtlpReceiver};
use meshtrace_tests::sidecar::{self, Proxy};

use super::{exporting, get, WAIT};

/// Steady traffic through a sidecar whose collector is down, then back.
#[tokio::test]
async fn a_dead_collector_costs_spans_never_requests_and_export_resumes() {
    // A port that was a collector's and is now closed.
    let gone = OtlpReceiver::start_grpc().await;
    let addr = gone.addr();
    let endpoint = gone.endpoint();
    gone.shutdown().await;
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(move |c| {
            c.export.endpoint = Some(endpoint);
            c.export.timeout = Some(ConfigDuration::from_millis(300));
            c.export.queue.max_size = Some(64);
            c.export.queue.batch_size = Some(16);
            c.export.queue.delay = Some(ConfigDuration::from_millis(10));
        })
        .start()
        .await;
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(H1Conn::connect(proxy.inbound_addr()).await);
    }
    let load = conns.into_iter().map(|mut conn| {
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..100 {
                if conn.get("/").await.status() == StatusCode::OK {
                    ok += 1;
                }
            }
            ok
        })
    });
    let mut ok = 0;
    for task in load {
        ok += task.await.expect("load task");
    }
    assert_eq!(ok, 800, "every request succeeded with the collector down");
    let metrics = proxy.metrics().await;
    let dropped = counter(
        &metrics,
        "meshtrace_spans_dropped_total{reason=\"export_failed\"}",
    ) + counter(
        &metrics,
        "meshtrace_spans_dropped_total{reason=\"queue_full\"}",
    );
    assert!(dropped > 0, "drops are counted:\n{metrics}");
    assert_eq!(counter(&metrics, "meshtrace_spans_exported_total"), 0);

    // The collector comes back on the same port: export resumes.
    let back = OtlpReceiver::start_grpc_on(addr).await;
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
    let got = back.wait_until(WAIT, |spans| {
        spans.len() >= 5 || {
            // Keep traffic flowing while the exporter reconnects.
            false
        }
    });
    tokio::pin!(got);
    let spans = loop {
        tokio::select! {
            spans = &mut got => break spans,
            rsp = conn.get("/") => assert_eq!(rsp.status(), StatusCode::OK),
        }
    };
    assert!(spans.len() >= 5);
    let metrics = counter_reaches(&proxy, "meshtrace_spans_exported_total", 1).await;
    assert!(counter(&metrics, "meshtrace_spans_exported_total") > 0);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let collector = OtlpReceiver::start_grpc().await;
    collector.delay(Duration::from_millis(300));
    let app = HttpApp::start().await;
    let proxy = exporting(sidecar::new().inbound_to(app.addr()), &collector, "q")
        .configure(|c| {
            c.export.queue.max_size = Some(4);
            c.export.queue.batch_size = Some(2);
        })
        .start()
        .await;
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
    for _ in 0..50 {
        assert_eq!(conn.get("/").await.status(), StatusCode::OK);
    }
    let metrics = proxy.metrics().await;
    assert!(
        counter(
            &metrics,
            "meshtrace_spans_dropped_total{reason=\"queue_full\"}"
        ) > 0,
        "{metrics}"
    );
}

#[tokio::test]
async fn retryable_failures_are_retried_and_others_are_not() {
    let collector = OtlpReceiver::start_grpc().await;
    let app = HttpApp::start().await;
    let proxy = exporting(sidecar::new().inbound_to(app.addr()), &collector, "r")
        .configure(|c| {
            c.export.retry.initial_backoff = ConfigDuration::from_millis(10);
            c.export.retry.max_backoff = ConfigDuration::from_millis(20);
        })
        .start()
        .await;
    collector.fail_next(2, Failure::Grpc(tonic::Code::Unavailable));
    get(proxy.inbound_addr(), "/", &[]).await;
    collector.wait_for_spans(1, WAIT).await;
    assert_eq!(
        collector.attempts(),
        3,
        "two UNAVAILABLE answers, then the retry that landed"
    );

    collector.fail_next(1, Failure::Grpc(tonic::Code::InvalidArgument));
    get(proxy.inbound_addr(), "/", &[]).await;
    collector.wait_for_attempts(4, WAIT).await;
    let export_failed = "meshtrace_spans_dropped_total{reason=\"export_failed\"}";
    let metrics = counter_reaches(&proxy, export_failed, 1).await;
    assert_eq!(
        counter(&metrics, export_failed),
        1,
        "INVALID_ARGUMENT is not retried: {metrics}"
    );
    get(proxy.inbound_addr(), "/", &[]).await;
    collector.wait_for_spans(2, WAIT).await;
    assert_eq!(
        collector.attempts(),
        5,
        "no retry of the INVALID_ARGUMENT batch"
    );
}

#[tokio::test]
async fn partial_success_rejections_are_counted_not_retried() {
    let collector = OtlpReceiver::start_grpc().await;
    let app = HttpApp::start().await;
    let proxy = exporting(sidecar::new().inbound_to(app.addr()), &collector, "p")
        .start()
        .await;
    collector.reject_next(1, 1, "span too large");
    get(proxy.inbound_addr(), "/", &[]).await;
    collector.wait_for_spans(1, WAIT).await;
    let rejected = "meshtrace_spans_dropped_total{reason=\"rejected\"}";
    let metrics = counter_reaches(&proxy, rejected, 1).await;
    assert_eq!(counter(&metrics, rejected), 1, "{metrics}");
    assert_eq!(counter(&metrics, "meshtrace_spans_exported_total"), 0);
    assert_eq!(collector.attempts(), 1, "never retried");
}

#[tokio::test]
async fn otlp_http_with_gzip_headers_and_retry_after() {
    let collector = OtlpReceiver::start_http().await;
    let app = HttpApp::start().await;
    let proxy = exporting(sidecar::new().inbound_to(app.addr()), &collector, "h")
        .configure(|c| {
            c.export.protocol = Some(OtlpProtocol::HttpProtobuf);
            c.export.compression = Some(meshtrace_config::Compression::Gzip);
            c.export.headers.insert("x-api-key".into(), "k1".into());
        })
        .start()
        .await;
    collector.fail_next(
        1,
        Failure::Http {
            status: 503,
            retry_after: Some(0),
        },
    );
    get(proxy.inbound_addr(), "/", &[]).await;
    let spans = collector.wait_for_spans(1, WAIT).await;
    assert_eq!(
        spans[0].resource_attr_str("service.name").as_deref(),
        Some("h")
    );
    let exports = collector.exports();
    assert_eq!(exports.len(), 2, "the 503 was retried: {exports:?}");
    let last = &exports[1];
    assert!(last.gzip, "gzip-compressed");
    assert_eq!(
        last.headers.get("x-api-key").map(|v| v.as_bytes()),
        Some(&b"k1"[..])
    );
}

#[tokio::test]
async fn otlp_grpc_over_tls_with_a_configured_ca() {
    let collector = OtlpReceiver::start_grpc_tls().await;
    let ca = std::env::temp_dir().join(format!(
        "meshtrace-ca-{}-{}.pem",
        std::process::id(),
        collector.addr().port()
    ));
    std::fs::write(&ca, collector.ca_pem()).expect("write the CA");
    let app = HttpApp::start().await;
    let ca_path = ca.clone();
    let proxy = exporting(sidecar::new().inbound_to(app.addr()), &collector, "tls")
        .configure(move |c| c.export.tls.ca_file = Some(ca_path))
        .start()
        .await;
    get(proxy.inbound_addr(), "/", &[]).await;
    let spans = collector.wait_for_spans(1, WAIT).await;
    assert_eq!(
        spans[0].resource_attr_str("service.name").as_deref(),
        Some("tls")
    );
    let _ = std::fs::remove_file(ca);
}

#[tokio::test]
async fn shutdown_flushes_queued_spans() {
    let collector = OtlpReceiver::start_grpc().await;
    let app = HttpApp::start().await;
    let proxy = exporting(sidecar::new().inbound_to(app.addr()), &collector, "f")
        .configure(|c| c.export.queue.delay = Some(ConfigDuration::from_secs(60)))
        .start()
        .await;
    for _ in 0..3 {
        get(proxy.inbound_addr(), "/", &[]).await;
    }
    assert!(proxy.shutdown_and_wait().await);
    assert_eq!(
        collector.spans().len(),
        3,
        "queued spans were exported on shutdown"
    );
}

/// Scrapes `/metrics` until `name` counts at least `want`, for at most [`WAIT`],
/// and returns the last scrape. The exporter counts a batch when the collector's
/// answer reaches it, on its own thread, after the collector has the spans.
async fn counter_reaches(proxy: &Proxy, name: &str, want: u64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = proxy.metrics().await;
        if counter(&metrics, name) >= want || tokio::time::Instant::now() >= deadline {
            return metrics;
        }
        // A poll interval, not a wait for the event: the scrape decides.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The value of the sample `name` (with labels) in a Prometheus text exposition.
pub(super) fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A burst of requests much faster than the collector answers (1 s per
/// export) through the real binary, with the default queue settings: every
/// span must reach the collector, none dropped. The queue before issue 18
/// (2 048 spans, one export at a time) dropped most of this burst (run it
/// with `MESHTRACE_PROXY_BIN` pointing at an older release build).
#[tokio::test]
async fn a_burst_faster_than_the_collector_drops_nothing_with_the_default_queue() {
    const CONNS: usize = 32;
    const PER_CONN: usize = 160;
    let collector = OtlpReceiver::start_grpc().await;
    collector.delay(Duration::from_secs(1));
    let app = HttpApp::start().await;
    let endpoint = collector.endpoint();
    let mut proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(move |c| {
            c.workload.service = Some("burst".into());
            c.export.endpoint = Some(endpoint);
        })
        .process()
        .spawn()
        .await;
    let mut load = Vec::new();
    for _ in 0..CONNS {
        let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
        load.push(tokio::spawn(async move {
            for _ in 0..PER_CONN {
                assert_eq!(conn.get("/").await.status(), StatusCode::OK);
            }
        }));
    }
    for task in load {
        task.await.expect("load task");
    }
    let metrics = get(proxy.admin_addr(), "/metrics", &[]).await;
    let metrics = String::from_utf8_lossy(metrics.body()).into_owned();
    let queue_full = "meshtrace_spans_dropped_total{reason=\"queue_full\"}";
    assert_eq!(counter(&metrics, queue_full), 0, "{metrics}");
    // The last partial batch leaves after the default 5 s delay.
    let spans = collector
        .wait_for_spans(CONNS * PER_CONN, Duration::from_secs(20))
        .await;
    assert_eq!(spans.len(), CONNS * PER_CONN);
    proxy.signal_term();
    assert!(proxy.wait_exit(WAIT).await.success());
}
