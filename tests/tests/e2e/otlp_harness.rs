//! The in-process OTLP collector, driven by real clients (tonic's generated
//! `TraceServiceClient`, plain and over TLS; hyper POSTing protobuf): it records
//! what it receives, answers as scripted, and can be stopped and brought back on
//! the same port. Proxy tests rely on it, so it is proven here on its own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use meshtrace_tests::bound::within;
use meshtrace_tests::client;
use meshtrace_tests::otlp::{Answer, Failure, OtlpReceiver};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

mod over_http;

/// How long a test waits for the collector to record something it was sent.
const WAIT: Duration = Duration::from_secs(10);

const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const PARENT_ID: [u8; 8] = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];

// === gRPC ===

#[tokio::test]
async fn grpc_export_is_recorded_flat_with_its_resource_and_scope() {
    let collector = OtlpReceiver::start_grpc().await;
    let mut client = grpc_client(&collector).await;

    within("the export", client.export(one_span("GET /hello")))
        .await
        .expect("the export succeeds");

    let spans = collector.wait_for_spans(1, WAIT).await;
    let span = &spans[0];
    assert_eq!(span.name(), "GET /hello");
    assert_eq!(span.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.span_id_hex(), "00f067aa0ba902b7");
    assert_eq!(
        span.parent_span_id_hex().as_deref(),
        Some("53995c3f42cd8ad8")
    );
    assert_eq!(span.kind(), SpanKind::Server);
    assert_eq!(span.status_code(), SpanStatusCode::Error);
    assert_eq!(span.attr_str("http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        span.attr_str("http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(span.attr_str("meshtrace.sampled").as_deref(), Some("true"));
    assert_eq!(span.attr_str("absent"), None);
    assert_eq!(
        span.resource_attr_str("service.name").as_deref(),
        Some("checkout")
    );
    assert_eq!(span.scope_name, "meshtrace");
    assert_eq!((collector.requests(), collector.attempts()), (1, 1));
}

#[tokio::test]
async fn grpc_export_records_its_metadata_and_gzip() {
    let collector = OtlpReceiver::start_grpc().await;
    let mut client = grpc_client(&collector)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let mut request = tonic::Request::new(one_span("compressed"));
    request.metadata_mut().insert(
        "authorization",
        "Bearer s3cret".parse().expect("valid metadata"),
    );

    within("the export", client.export(request))
        .await
        .expect("the gzip export succeeds");

    collector.wait_for_spans(1, WAIT).await;
    let exports = collector.exports();
    assert!(exports[0].gzip, "the request was gzip-compressed");
    assert_eq!(
        collector.request_headers()[0]["authorization"],
        "Bearer s3cret"
    );
}

#[tokio::test]
async fn grpc_fail_next_answers_the_status_then_succeeds() {
    let collector = OtlpReceiver::start_grpc().await;
    collector.fail_next(1, Failure::Grpc(Code::Unavailable));
    let mut client = grpc_client(&collector).await;

    let failed = within("the failed export", client.export(one_span("first")))
        .await
        .expect_err("the scripted failure");
    assert_eq!(failed.code(), Code::Unavailable);
    assert!(
        collector.spans().is_empty(),
        "a failed request stores nothing"
    );

    within("the retried export", client.export(one_span("retry")))
        .await
        .expect("the export after the failure succeeds");
    let spans = collector.wait_for_spans(1, WAIT).await;
    assert_eq!(spans[0].name(), "retry");
    assert_eq!((collector.requests(), collector.attempts()), (1, 2));
    assert_eq!(
        collector.exports()[0].answer,
        Answer::Failed(Failure::Grpc(Code::Unavailable))
    );
}

#[tokio::test]
async fn grpc_reject_next_answers_partial_success_and_stores_the_spans() {
    let collector = OtlpReceiver::start_grpc().await;
    collector.reject_next(1, 1, "span too large");
    let mut client = grpc_client(&collector).await;

    let response = within("the export", client.export(one_span("big")))
        .await
        .expect("a partial success is a success")
        .into_inner();

    let partial = response.partial_success.expect("a partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(partial.error_message, "span too large");
    assert_eq!(collector.wait_for_spans(1, WAIT).await.len(), 1);
    assert_eq!(collector.rejected_requests(), 1);
}

#[tokio::test]
async fn grpc_tls_export_is_recorded_by_a_client_trusting_the_ca() {
    let collector = OtlpReceiver::start_grpc_tls().await;
    assert!(collector.endpoint().starts_with("https://localhost:"));
    let mut client = grpc_tls_client(&collector).await;

    within("the TLS export", client.export(one_span("secure")))
        .await
        .expect("the export over TLS succeeds");

    assert_eq!(collector.wait_for_spans(1, WAIT).await[0].name(), "secure");
}

#[tokio::test]
async fn stopped_grpc_receiver_closes_connections_and_comes_back_on_its_port() {
    let collector = OtlpReceiver::start_grpc().await;
    let addr = collector.addr();
    let mut client = grpc_client(&collector).await;
    within("the first export", client.export(one_span("before")))
        .await
        .expect("the export before the stop succeeds");

    collector.shutdown().await;
    within(
        "an export to a stopped collector",
        client.export(one_span("down")),
    )
    .await
    .expect_err("a stopped collector answers nothing");

    let collector = OtlpReceiver::start_grpc_on(addr).await;
    assert_eq!(collector.addr(), addr);
    let mut client = grpc_client(&collector).await;
    within(
        "the export after the restart",
        client.export(one_span("after")),
    )
    .await
    .expect("the export to the restarted collector succeeds");
    assert_eq!(collector.wait_for_spans(1, WAIT).await[0].name(), "after");
}

#[tokio::test]
async fn stopped_tls_receiver_comes_back_with_the_same_certificate() {
    let collector = OtlpReceiver::start_grpc_tls().await;
    let (addr, cert) = (
        collector.addr(),
        collector.cert().expect("a TLS cert").clone(),
    );
    collector.shutdown().await;

    let collector = OtlpReceiver::start_grpc_tls_on(addr, cert).await;
    let mut client = grpc_tls_client(&collector).await;
    within("the TLS export", client.export(one_span("back")))
        .await
        .expect("the restarted TLS collector is trusted");
    assert_eq!(collector.wait_for_spans(1, WAIT).await.len(), 1);
}

// === delays and waits ===

#[tokio::test]
async fn delay_holds_every_answer_for_the_configured_time() {
    let collector = OtlpReceiver::start_grpc().await;
    let delay = Duration::from_millis(300);
    collector.delay(delay);
    let mut client = grpc_client(&collector).await;

    let started = Instant::now();
    within("the delayed export", client.export(one_span("slow")))
        .await
        .expect("a delayed export still succeeds");

    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(collector.spans().len(), 1);
}

#[tokio::test]
async fn export_abandoned_during_a_delay_is_an_attempt_without_spans() {
    let collector = OtlpReceiver::start_grpc().await;
    collector.delay(Duration::from_secs(3600));
    let mut slow = grpc_client(&collector).await;
    let abandoned = tokio::spawn(async move { slow.export(one_span("abandoned")).await });

    collector.wait_for_attempts(1, WAIT).await;
    abandoned.abort();
    collector.delay(Duration::ZERO);
    let mut client = grpc_client(&collector).await;
    within("the prompt export", client.export(one_span("prompt")))
        .await
        .expect("the export after the delay is lifted succeeds");

    let names: Vec<_> = collector
        .spans()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    assert_eq!(names, ["prompt"]);
    assert_eq!(collector.attempts(), 2);
}

#[tokio::test]
async fn wait_until_returns_once_the_condition_holds() {
    let collector = OtlpReceiver::start_grpc().await;
    let mut client = grpc_client(&collector).await;
    for name in ["a", "b", "c"] {
        within("an export", client.export(one_span(name)))
            .await
            .expect("the export succeeds");
    }

    let spans = collector
        .wait_until(WAIT, |spans| spans.iter().any(|s| s.name() == "c"))
        .await;
    assert_eq!(spans.len(), 3);
}

#[tokio::test]
#[should_panic(
    expected = "1 span(s) at the OTLP collector; the collector stored 0 span(s) from 1 export request(s)"
)]
async fn wait_for_spans_times_out_saying_what_arrived() {
    let collector = OtlpReceiver::start_grpc().await;
    collector.fail_next(1, Failure::Grpc(Code::ResourceExhausted));
    let mut client = grpc_client(&collector).await;
    let _ = within("the failed export", client.export(one_span("lost"))).await;

    collector
        .wait_for_spans(1, Duration::from_millis(100))
        .await;
}

// === helpers ===

/// An export request with one server span carrying a resource, a scope, a
/// parent, attributes of each scalar type and an error status.
fn one_span(name: &str) -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: SPAN_ID.to_vec(),
        parent_span_id: PARENT_ID.to_vec(),
        name: name.to_owned(),
        kind: SpanKind::Server as i32,
        attributes: vec![
            kv(
                "http.request.method",
                any_value::Value::StringValue("GET".into()),
            ),
            kv("http.response.status_code", any_value::Value::IntValue(503)),
            kv("meshtrace.sampled", any_value::Value::BoolValue(true)),
        ],
        status: Some(Status {
            code: SpanStatusCode::Error as i32,
            message: String::new(),
        }),
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("checkout".into()),
                )],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "meshtrace".into(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

async fn grpc_client(collector: &OtlpReceiver) -> TraceServiceClient<Channel> {
    connect(Endpoint::from_shared(collector.endpoint()).expect("a valid endpoint")).await
}

async fn grpc_tls_client(collector: &OtlpReceiver) -> TraceServiceClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(collector.ca_pem()))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(collector.endpoint())
        .expect("a valid endpoint")
        .tls_config(tls)
        .expect("a valid TLS config");
    connect(endpoint).await
}

async fn connect(endpoint: Endpoint) -> TraceServiceClient<Channel> {
    let channel = within("a gRPC connection to the collector", endpoint.connect())
        .await
        .expect("the collector accepts the connection");
    TraceServiceClient::new(channel)
}

fn protobuf(request: ExportTraceServiceRequest) -> Bytes {
    Bytes::from(request.encode_to_vec())
}

fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("gzip into memory");
    Bytes::from(encoder.finish().expect("gzip into memory"))
}

/// `POST path` with a protobuf body on a new HTTP/1.1 connection.
async fn post(
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    encoding: Option<&str>,
) -> Response<Bytes> {
    let mut request = Request::post(path).header("content-type", "application/x-protobuf");
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let request = request.body(client::full(body)).expect("a valid request");
    client::collect(client::http1_request(addr, request).await).await
}
