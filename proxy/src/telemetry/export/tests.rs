//! The export thread against a loopback collector: batches leave on time and
//! never wait for the runtime that pushed them.

use std::io::Read;
use std::time::{Duration, SystemTime};

use meshtrace_config::{Compression, OtlpProtocol, ResolvedExport, Retry};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;

use super::{SpanExport, SpanQueue};
use crate::metrics::Metrics;

fn span() -> super::EncodedSpan {
    super::wire::testing::write(&data())
}

fn data() -> SpanData {
    let context = SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
        SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
        TraceFlags::SAMPLED,
        false,
        Default::default(),
    );
    SpanData {
        span_context: context,
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "GET".into(),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

/// A collector on a plain thread (it runs whatever the test's runtime does):
/// its endpoint, and the first request line it reads.
fn collector() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let (got_tx, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 256];
        let n = conn.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        let _ = got_tx.send(head.lines().next().unwrap_or_default().to_string());
    });
    (endpoint, got)
}

fn start(endpoint: String, batch_size: usize, delay: Duration) -> (SpanQueue, SpanExport) {
    let settings = ResolvedExport {
        endpoint: Some(endpoint),
        protocol: OtlpProtocol::HttpProtobuf,
        timeout: Duration::from_millis(500),
        compression: Compression::None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        queue_size: 8,
        queue_bytes: 1 << 20,
        batch_size,
        delay,
    };
    let metrics = Metrics::new();
    let spans = metrics.spans.clone();
    let resource = Resource::builder_empty().build();
    SpanExport::start(
        &settings,
        &Default::default(),
        &Retry::default(),
        resource,
        spans,
    )
    .unwrap()
}

/// The export must make progress while the runtime that pushed the span is
/// busy: on a one-worker sidecar that runtime is the whole data path.
#[tokio::test(flavor = "current_thread")]
async fn export_runs_while_the_pushing_runtime_is_blocked() {
    let (endpoint, got) = collector();
    let (queue, export) = start(endpoint, 1, Duration::from_millis(1));
    queue.push(span());
    // Blocks this runtime's only thread until the collector has the request.
    let line = got.recv_timeout(Duration::from_secs(10));
    assert_eq!(line.as_deref(), Ok("POST /v1/traces HTTP/1.1"));
    drop(queue);
    export.flush().await;
}

/// Waits (10 s at most, off the runtime) for the collector's request, then
/// flushes.
async fn posted_then_flush(
    got: std::sync::mpsc::Receiver<String>,
    queue: SpanQueue,
    export: SpanExport,
) {
    let line = tokio::task::spawn_blocking(move || got.recv_timeout(Duration::from_secs(10)));
    let line = line.await.unwrap();
    assert_eq!(line.as_deref(), Ok("POST /v1/traces HTTP/1.1"));
    drop(queue);
    export.flush().await;
}

/// The batcher sleeps on its delay without watching the queue; a full batch
/// must still wake it.
#[tokio::test]
async fn a_full_batch_is_sent_before_the_delay() {
    let (endpoint, got) = collector();
    let (queue, export) = start(endpoint, 3, Duration::from_secs(600));
    for _ in 0..3 {
        queue.push(span());
    }
    posted_then_flush(got, queue, export).await;
}

/// The span the batcher already holds while it waits counts toward the
/// batch: once it has taken the first span, two more make a batch of three
/// (counting only the channel's length, the batch waited out the delay —
/// the flake this test pins down).
#[tokio::test]
async fn the_span_the_batcher_holds_counts_toward_a_full_batch() {
    let (endpoint, got) = collector();
    let (queue, export) = start(endpoint, 3, Duration::from_secs(600));
    queue.push(span());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while queue.tx.capacity() < queue.tx.max_capacity() {
        assert!(
            std::time::Instant::now() < deadline,
            "the batcher never took the first span"
        );
        tokio::task::yield_now().await;
    }
    queue.push(span());
    queue.push(span());
    posted_then_flush(got, queue, export).await;
}

/// `OTEL_EXPORTER_OTLP_*HEADERS` are read as opentelemetry-otlp read them,
/// the signal's own variable first, and win over `export.headers`.
#[test]
fn headers_from_the_otel_variables_win() {
    let configured = [("x-a".to_string(), "file".to_string())].into();
    let var = |name: &str| match name {
        "OTEL_EXPORTER_OTLP_HEADERS" => Some("ignored=1".to_string()),
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS" => {
            Some("authorization=Bearer%20t0k, x-a=env,empty=,junk".to_string())
        }
        _ => None,
    };
    let headers = super::headers(&configured, &var);
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer t0k")
    );
    assert_eq!(headers.get("x-a").map(String::as_str), Some("env"));
    assert_eq!(headers.len(), 2, "{headers:?}");
}
