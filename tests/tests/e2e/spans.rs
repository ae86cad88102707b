//! The sidecar's spans at a real OTLP collector: one continuous trace across a
//! two-hop chain whatever the caller speaks, the semantic conventions, gRPC, tail
//! keeping, the binary's OpenTelemetry variables; and ([`export`]) export that a
//! dead, slow or picky collector can cost spans but never requests.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use meshtrace_config::{Config, Duration as ConfigDuration};
use meshtrace_tests::apps::{echoed, GrpcApp, HttpApp};
use meshtrace_tests::client::{grpc_client_for, http1_request};
use meshtrace_tests::otlp::{OtlpReceiver, ReceivedSpan};
use meshtrace_tests::pb::EchoRequest;
use meshtrace_tests::sidecar::{self, Builder, Proxy};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;

mod export;

use export::counter;

const WAIT: Duration = Duration::from_secs(10);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Export to `collector` quickly (small batch delay) as service `service`.
fn exporting(builder: Builder, collector: &OtlpReceiver, service: &str) -> Builder {
    let endpoint = collector.endpoint();
    let service = service.to_string();
    builder.configure(move |c: &mut Config| {
        c.workload.service = Some(service);
        c.workload.namespace = Some("shop".into());
        c.export.endpoint = Some(endpoint);
        c.export.queue.delay = Some(ConfigDuration::from_millis(20));
        c.export.timeout = Some(ConfigDuration::from_millis(2000));
        c.spans.routes = vec!["/status/{code}".into()];
    })
}

/// app ← sidecar B (inbound) ← sidecar A (outbound, host `svc-b`) ← the test.
struct Chain {
    a: Proxy,
    _b: Proxy,
}

async fn chain(collector: &OtlpReceiver, app: SocketAddr) -> Chain {
    let b = exporting(sidecar::new().inbound_to(app), collector, "b")
        .start()
        .await;
    let a = exporting(
        sidecar::new().host_route("svc-b", b.inbound_addr()),
        collector,
        "a",
    )
    .start()
    .await;
    Chain { a, _b: b }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response<Bytes> {
    let mut req = Request::get(path).header("host", "svc-b:8080");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = http1_request(addr, req.body(Empty::<Bytes>::new()).unwrap()).await;
    let (parts, body) = rsp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Response::from_parts(parts, body)
}

/// The spans of `trace`, once there are `n`.
async fn trace_spans(collector: &OtlpReceiver, trace: &str, n: usize) -> Vec<ReceivedSpan> {
    let spans = collector
        .wait_until(WAIT, |spans| {
            spans.iter().filter(|s| s.trace_id_hex() == trace).count() >= n
        })
        .await;
    spans
        .into_iter()
        .filter(|s| s.trace_id_hex() == trace)
        .collect()
}

fn service(span: &ReceivedSpan) -> String {
    span.resource_attr_str("service.name").unwrap_or_default()
}

fn one<'a>(spans: &'a [ReceivedSpan], service_name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| service(s) == service_name)
        .collect();
    assert_eq!(found.len(), 1, "one span from {service_name}: {spans:#?}");
    found[0]
}

/// (caller format, its headers, the trace id the app must see).
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

#[tokio::test]
async fn every_caller_format_gives_one_trace_app_to_a_to_b_to_app() {
    let collector = OtlpReceiver::start_grpc().await;
    let app = HttpApp::start().await;
    let chain = chain(&collector, app.addr()).await;
    let dd_trace = "0000000000000000a3ce929d0e0e4736";
    let b3_multi = [
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", CALLER_SPAN),
        ("x-b3-sampled", "1"),
    ];
    let datadog = [
        ("x-datadog-trace-id", "11803532876627986230"),
        ("x-datadog-parent-id", "67667974448284343"),
        ("x-datadog-sampling-priority", "1"),
    ];
    // Each case its own trace id, so its spans are told apart.
    let w3c_trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{w3c_trace}-{CALLER_SPAN}-01");
    let w3c = [("traceparent", tp.as_str())];
    let cases: [Case<'_>; 4] = [
        ("b3multi", &b3_multi, Some(TRACE)),
        ("datadog", &datadog, Some(dd_trace)),
        ("tracecontext", &w3c, Some(w3c_trace)),
        ("none", &[], None),
    ];
    for (format, headers, expected_trace) in cases {
        let rsp = get(chain.a.outbound_addr(), "/orders/42?page=2", headers).await;
        assert_eq!(rsp.status(), StatusCode::OK, "{format}");
        let app_tp = echoed(&rsp, "traceparent").expect("the app got a traceparent");
        let parts: Vec<&str> = app_tp.split('-').collect();
        let (trace, app_parent) = (parts[1], parts[2]);
        if let Some(expected) = expected_trace {
            assert_eq!(trace, expected, "{format}: the caller's trace continues");
        }
        let spans = trace_spans(&collector, trace, 2).await;
        assert_eq!(
            spans.len(),
            2,
            "{format}: exactly one span per hop: {spans:#?}"
        );
        let client = one(&spans, "a");
        let server = one(&spans, "b");
        assert_span_chain(format, expected_trace.is_some(), client, server, app_parent);
        if format != "none" {
            assert_eq!(formats(client), [format], "A read the caller's format");
            // A wrote traceparent and, rewritten under its own span, the format
            // the app sent (stage `legacy`): both agree.
            assert_eq!(formats(server)[0], "tracecontext", "B read what A wrote");
        }
        assert_http_conventions(client, server);
    }
}

/// The caller's span (if it sent one) -> A's CLIENT span -> B's SERVER span ->
/// the app: each the parent of the next.
fn assert_span_chain(
    format: &str,
    continued: bool,
    client: &ReceivedSpan,
    server: &ReceivedSpan,
    app_parent: &str,
) {
    assert_eq!(client.kind(), SpanKind::Client, "{format}");
    assert_eq!(server.kind(), SpanKind::Server, "{format}");
    if continued {
        assert_eq!(
            client.parent_span_id_hex().as_deref(),
            Some(CALLER_SPAN),
            "{format}: A's span is a child of the app's span"
        );
    } else {
        assert_eq!(client.parent_span_id_hex(), None, "{format}: a root");
    }
    assert_eq!(
        server.parent_span_id_hex(),
        Some(client.span_id_hex()),
        "{format}: B's SERVER span is a child of A's CLIENT span"
    );
    assert_eq!(
        app_parent,
        server.span_id_hex(),
        "{format}: the app's parent is B's span"
    );
}

/// The OpenTelemetry HTTP conventions on both sides of `GET
/// http://svc-b:8080/orders/42?page=2`.
fn assert_http_conventions(client: &ReceivedSpan, server: &ReceivedSpan) {
    assert_eq!(client.name(), "GET");
    assert_eq!(server.name(), "GET");
    assert_eq!(
        client.attr_str("url.full").as_deref(),
        Some("http://svc-b:8080/orders/42?page=2")
    );
    assert_eq!(client.attr_str("server.address").as_deref(), Some("svc-b"));
    assert_eq!(server.attr_str("url.path").as_deref(), Some("/orders/42"));
    assert_eq!(server.attr_str("url.query").as_deref(), Some("page=2"));
    assert_eq!(
        server.attr_str("client.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        server.attr_str("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        server.attr_str("network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        server.attr_str("meshtrace.sampling.reason").as_deref(),
        Some("parent")
    );
    assert_eq!(
        server.resource_attr_str("k8s.namespace.name").as_deref(),
        Some("shop")
    );
    assert_eq!(server.scope_name, "meshtrace-proxy");
}

#[tokio::test]
async fn status_rules_and_route_names() {
    let collector = OtlpReceiver::start_grpc().await;
    let app = HttpApp::start().await;
    let chain = chain(&collector, app.addr()).await;
    for (code, client_error, server_error) in
        [(503, true, true), (404, true, false), (200, false, false)]
    {
        let tp = format!("00-{TRACE}-{CALLER_SPAN}-01");
        let trace = format!("{:032x}", 0xabc0_0000_u128 + code);
        let tp = tp.replace(TRACE, &trace);
        let rsp = get(
            chain.a.outbound_addr(),
            &format!("/status/{code}"),
            &[("traceparent", &tp)],
        )
        .await;
        assert_eq!(rsp.status().as_u16(), code as u16);
        let spans = trace_spans(&collector, &trace, 2).await;
        let (client, server) = (one(&spans, "a"), one(&spans, "b"));
        assert_eq!(server.name(), "GET /status/{code}");
        assert_eq!(
            server.attr_str("http.route").as_deref(),
            Some("/status/{code}")
        );
        let is_error = |s: &ReceivedSpan| s.status_code() == SpanStatus::Error;
        assert_eq!(is_error(client), client_error, "{code} on the CLIENT span");
        assert_eq!(is_error(server), server_error, "{code} on the SERVER span");
        let expected_type = client_error.then(|| code.to_string());
        assert_eq!(client.attr_str("error.type"), expected_type, "{code}");
    }
}

#[tokio::test]
async fn grpc_calls_get_rpc_spans_with_status_rules() {
    let collector = OtlpReceiver::start_grpc().await;
    let app = GrpcApp::start().await;
    let chain = chain(&collector, app.addr()).await;
    let mut client = grpc_client_for(chain.a.outbound_addr(), "svc-b:80").await;
    // OK, NOT_FOUND (an error only on the client side), INTERNAL (both sides).
    for (code, name, client_error, server_error) in [
        (0, "OK", false, false),
        (5, "NOT_FOUND", true, false),
        (13, "INTERNAL", true, true),
    ] {
        let trace = format!("{:032x}", 0xdef0_0000_u128 + code);
        let mut req = tonic::Request::new(EchoRequest {
            message: "hi".into(),
            fail_with_code: code as u32,
            ..Default::default()
        });
        req.metadata_mut().insert(
            "traceparent",
            format!("00-{trace}-{CALLER_SPAN}-01").parse().unwrap(),
        );
        let result = client.unary(req).await;
        assert_eq!(result.is_ok(), code == 0, "{result:?}");
        let spans = trace_spans(&collector, &trace, 2).await;
        let (c, s) = (one(&spans, "a"), one(&spans, "b"));
        for span in [c, s] {
            assert_eq!(span.name(), "meshtrace.test.v1.Echo/Unary");
            assert_eq!(span.attr_str("rpc.system.name").as_deref(), Some("grpc"));
            assert_eq!(
                span.attr_str("rpc.method").as_deref(),
                Some("meshtrace.test.v1.Echo/Unary")
            );
            assert_eq!(
                span.attr_str("rpc.response.status_code").as_deref(),
                Some(name)
            );
            assert_eq!(
                span.attr_str("network.protocol.version").as_deref(),
                Some("2")
            );
        }
        assert_eq!(
            c.status_code() == SpanStatus::Error,
            client_error,
            "{name} client"
        );
        assert_eq!(
            s.status_code() == SpanStatus::Error,
            server_error,
            "{name} server"
        );
        if client_error {
            assert_eq!(c.attr_str("error.type").as_deref(), Some(name));
        }
    }
}

#[tokio::test]
async fn tail_keep_exports_not_sampled_errors_and_slow_requests_only() {
    let collector = OtlpReceiver::start_grpc().await;
    let app = HttpApp::start().await;
    let proxy = exporting(sidecar::new().inbound_to(app.addr()), &collector, "t")
        .configure(|c| {
            c.sampling.tail.errors = true;
            c.sampling.tail.slow = Some(ConfigDuration::from_secs(30));
        })
        .start()
        .await;
    let not_sampled = |trace: &str| format!("00-{trace}-{CALLER_SPAN}-00");
    let ok_trace = format!("{:032x}", 0x7a11_0001_u128);
    let err_trace = format!("{:032x}", 0x7a11_0002_u128);
    let rsp = get(
        proxy.inbound_addr(),
        "/status/200",
        &[("traceparent", &not_sampled(&ok_trace))],
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let rsp = get(
        proxy.inbound_addr(),
        "/status/500",
        &[("traceparent", &not_sampled(&err_trace))],
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let tp = echoed(&rsp, "traceparent").expect("a traceparent");
    assert!(
        tp.ends_with("-00"),
        "the decision sent on is unchanged: {tp}"
    );
    let spans = trace_spans(&collector, &err_trace, 1).await;
    assert_eq!(
        spans[0].attr_str("meshtrace.sampling.reason").as_deref(),
        Some("tail_error")
    );
    // Spans leave in order: once a later sampled span arrived, the fine
    // not-sampled one would have too.
    let marker = format!("{:032x}", 0x7a11_0003_u128);
    get(
        proxy.inbound_addr(),
        "/",
        &[("traceparent", &format!("00-{marker}-{CALLER_SPAN}-01"))],
    )
    .await;
    trace_spans(&collector, &marker, 1).await;
    assert!(
        collector
            .spans()
            .iter()
            .all(|s| s.trace_id_hex() != ok_trace),
        "a fine not-sampled request is not exported"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(
        counter(&metrics, "meshtrace_sampling_decisions_total{direction=\"inbound\",decision=\"sampled\",reason=\"tail_error\"}"),
        1,
        "{metrics}"
    );
}

/// `meshtrace.propagation.formats`, a string array.
fn formats(span: &ReceivedSpan) -> Vec<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match span
        .attr("meshtrace.propagation.formats")
        .and_then(|v| v.value.as_ref())
    {
        Some(Value::ArrayValue(array)) => array
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("formats is not a string array: {other:?}"),
    }
}

/// The real binary configured only through the standard OpenTelemetry variables,
/// as a Kubernetes manifest would.
#[tokio::test]
async fn the_binary_takes_its_collector_and_resource_from_otel_variables() {
    let collector = OtlpReceiver::start_http().await;
    let app = HttpApp::start().await;
    let base = format!("http://{}", collector.addr());
    let mut proxy = sidecar::new()
        .inbound_to(app.addr())
        .process()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", base)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0k")
        .env("OTEL_BSP_SCHEDULE_DELAY", "20")
        .env("OTEL_SERVICE_NAME", "from-env")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        )
        .env("POD_NAME", "checkout-7d9f8c6b5-x2x9z")
        .spawn()
        .await;
    get(proxy.inbound_addr(), "/", &[]).await;
    let spans = collector.wait_for_spans(1, WAIT).await;
    let span = &spans[0];
    assert_eq!(
        span.resource_attr_str("service.name").as_deref(),
        Some("from-env")
    );
    assert_eq!(
        span.resource_attr_str("deployment.environment.name")
            .as_deref(),
        Some("test")
    );
    assert_eq!(
        span.resource_attr_str("k8s.pod.name").as_deref(),
        Some("checkout-7d9f8c6b5-x2x9z")
    );
    let headers = &collector.exports()[0].headers;
    assert_eq!(
        headers.get("authorization").map(|v| v.as_bytes()),
        Some(&b"Bearer t0k"[..])
    );
    proxy.signal_term();
    assert!(proxy.wait_exit(WAIT).await.success());
}
