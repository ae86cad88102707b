//! The record layer in front of a stand-in app: a request counts, by direction,
//! protocol and status class, when its response body ends or is dropped; the
//! access-log line names the sidecar's span; gRPC status from trailers reaches
//! the span.

use std::convert::Infallible;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use futures_util::FutureExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::mpsc;
use tower::Layer;

use super::Recorded;
use crate::target::{Direction, Protocol};
use crate::test_support::{call, config, request, span_info, AccessLog, Layers};

const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
const SPAN: u64 = 0x1111_1111_1111_1111;
const CALLER_SPAN: u64 = 0x00f0_67aa_0ba9_02b7;

const INBOUND_2XX: &str =
    r#"meshtrace_requests_total{direction="inbound",protocol="http1",status_class="2xx"}"#;
const INBOUND_4XX: &str =
    r#"meshtrace_requests_total{direction="inbound",protocol="http1",status_class="4xx"}"#;
const INBOUND_DURATIONS: &str =
    r#"meshtrace_request_duration_seconds_count{direction="inbound",protocol="http1"}"#;

type Frames = mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>;
type FrameStream = BoxStream<'static, Result<Frame<Bytes>, Infallible>>;

/// A response body the test streams frame by frame; it ends when the sender drops.
fn streamed() -> (Frames, StreamBody<FrameStream>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let frames = stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) });
    (tx, StreamBody::new(frames.boxed()))
}

/// Sends `req` through the record layer of a `protocol` connection whose app
/// answers `response`; returns the recorded response, body unread.
async fn record<R: Send + 'static>(
    layers: &Layers,
    protocol: Protocol,
    req: Request<()>,
    response: Response<R>,
) -> Response<Recorded<R>> {
    let once = Mutex::new(Some(response));
    let app = tower::service_fn(move |_req: Request<()>| {
        let response = once.lock().ok().and_then(|mut r| r.take());
        std::future::ready(Ok::<_, Infallible>(response.expect("one request")))
    });
    let mut recorded = layers.record(protocol, true).layer(app);
    call(&mut recorded, req).await
}

/// An inbound HTTP/1 `GET /` whose response body the test streams.
async fn record_streamed(layers: &Layers) -> (Frames, Response<Recorded<StreamBody<FrameStream>>>) {
    let (frames, body) = streamed();
    let req = request("/", &[]);
    (
        frames,
        record(layers, Protocol::Http1, req, Response::new(body)).await,
    )
}

fn ok(body: &'static str) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

fn inbound() -> Layers {
    Layers::new(Direction::Inbound, &config(|_| {}))
}

#[tokio::test]
async fn record_counts_the_response_when_the_body_ends_not_when_headers_arrive() {
    let layers = inbound();
    let (frames, response) = record_streamed(&layers).await;
    let mut body = response.into_body();
    assert_eq!(
        layers.count(INBOUND_2XX),
        0,
        "headers alone are not a request"
    );
    let _ = frames.send(Ok(Frame::data(Bytes::from_static(b"chunk"))));
    assert!(body.frame().await.is_some());
    assert_eq!(layers.count(INBOUND_2XX), 0, "the body is still streaming");
    drop(frames);
    assert!(body.frame().await.is_none());
    assert_eq!(layers.count(INBOUND_2XX), 1);
    assert_eq!(layers.count(INBOUND_DURATIONS), 1);
}

#[tokio::test]
async fn requests_are_counted_by_direction_protocol_and_status_class() {
    let layers = Layers::new(Direction::Outbound, &config(|_| {}));
    let mut unavailable = ok("down");
    *unavailable.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let response = record(&layers, Protocol::Http2, request("/", &[]), unavailable).await;
    let _ = response.into_body().collect().await;
    let outbound = |protocol: &str, class: &str| {
        let series = format!(
            r#"meshtrace_requests_total{{direction="outbound",protocol="{protocol}",status_class="{class}"}}"#
        );
        layers.count(&series)
    };
    assert_eq!(outbound("http2", "5xx"), 1);
    assert_eq!(outbound("http2", "2xx") + outbound("http1", "5xx"), 0);
}

#[tokio::test]
async fn grpc_requests_count_under_grpc_whatever_the_connection_speaks() {
    let layers = inbound();
    let req = request("/shop.Cart/Add", &[("content-type", "application/grpc")]);
    let response = record(&layers, Protocol::Http2, req, ok("")).await;
    let _ = response.into_body().collect().await;
    let grpc =
        r#"meshtrace_requests_total{direction="inbound",protocol="grpc",status_class="2xx"}"#;
    let http2 =
        r#"meshtrace_requests_total{direction="inbound",protocol="http2",status_class="2xx"}"#;
    assert_eq!((layers.count(grpc), layers.count(http2)), (1, 0));
}

#[tokio::test]
async fn abandoned_response_counts_when_dropped_and_logs_incomplete() {
    let log = AccessLog::capture();
    let layers = inbound();
    let (frames, response) = record_streamed(&layers).await;
    let _ = frames.send(Ok(Frame::data(Bytes::from_static(b"half"))));
    let mut body = response.into_body();
    assert!(body.frame().await.is_some());
    drop(body); // The client went away mid-body.
    assert_eq!(layers.count(INBOUND_2XX), 1);
    let lines = log.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0]["complete"].as_bool(), lines[0]["bytes"].as_u64()),
        (Some(false), Some(4))
    );
}

#[tokio::test]
async fn empty_body_hyper_never_polls_still_logs_complete() {
    let log = AccessLog::capture();
    let layers = inbound();
    let response = record(&layers, Protocol::Http1, request("/", &[]), ok("")).await;
    let body = response.into_body();
    assert!(
        body.is_end_stream(),
        "hyper asks, then drops without polling"
    );
    drop(body);
    let lines = log.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["complete"].as_bool(), Some(true));
}

#[tokio::test]
async fn access_log_line_carries_trace_and_parent_ids() {
    let log = AccessLog::capture();
    let layers = inbound();
    let mut req = request("/users/7?x=1", &[("host", "shop.example:8080")]);
    req.extensions_mut()
        .insert(span_info(TRACE, SPAN, Some(CALLER_SPAN), true));
    let response = record(&layers, Protocol::Http1, req, ok("hello")).await;
    let _ = response.into_body().collect().await;
    let lines = log.lines();
    let line = lines.first().expect("one access-log line");
    assert_eq!(line["trace_id"], format!("{TRACE:032x}"));
    assert_eq!(line["span_id"], format!("{SPAN:016x}"));
    assert_eq!(line["parent_id"], format!("{CALLER_SPAN:016x}"));
    assert_eq!(line["sampled"], true);
    assert_eq!(
        (&line["authority"], &line["path"]),
        (&"shop.example:8080".into(), &"/users/7".into())
    );
    assert_eq!(
        (&line["status"], &line["bytes"], &line["complete"]),
        (&200.into(), &5.into(), &true.into())
    );
    assert_eq!(
        (&line["direction"], &line["protocol"], &line["upstream"]),
        (&"inbound".into(), &"http1".into(), &"-".into())
    );
}

#[tokio::test]
async fn access_log_line_of_a_new_trace_has_a_dash_parent() {
    let log = AccessLog::capture();
    let layers = inbound();
    let mut req = request("/", &[]);
    req.extensions_mut()
        .insert(span_info(TRACE, SPAN, None, false));
    let response = record(&layers, Protocol::Http1, req, ok("")).await;
    let _ = response.into_body().collect().await;
    let lines = log.lines();
    let line = lines.first().expect("one access-log line");
    assert_eq!(
        (&line["parent_id"], &line["sampled"]),
        (&"-".into(), &false.into())
    );
    assert_eq!(
        line["authority"], "-",
        "neither the URI nor a Host names one"
    );
}

#[tokio::test]
async fn grpc_status_from_trailers_reaches_the_span() {
    let mut layers = Layers::with_spans(Direction::Inbound, &config(|_| {}));
    let mut req = request("/shop.Cart/Add", &[("content-type", "application/grpc")]);
    req.extensions_mut()
        .insert(span_info(TRACE, SPAN, None, true));
    let (frames, body) = streamed();
    let response = record(&layers, Protocol::Http2, req, Response::new(body)).await;
    let trailers = HeaderMap::from_iter([(
        http::HeaderName::from_static("grpc-status"),
        "14".parse().expect("value"),
    )]);
    let _ = frames.send(Ok(Frame::trailers(trailers)));
    drop(frames);
    let _ = response.into_body().collect().await;
    let span = layers.exported().expect("the sampled span was exported");
    let code = span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "rpc.response.status_code");
    assert_eq!(
        code.map(|kv| kv.value.to_string()).as_deref(),
        Some("UNAVAILABLE")
    );
}

/// Sends `req` through the record layer of an inbound HTTP/1 connection whose
/// app never answers, and drops the call before the response head: the client
/// went away.
fn abandon(layers: &Layers, req: Request<()>) {
    let app = tower::service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    });
    let mut recorded = layers.record(Protocol::Http1, true).layer(app);
    let pending = tower::Service::call(&mut recorded, req);
    assert!(pending.now_or_never().is_none(), "the app never answers");
}

#[tokio::test]
async fn request_abandoned_before_the_head_logs_499_client_closed() {
    let log = AccessLog::capture();
    let layers = inbound();
    abandon(&layers, request("/slow", &[]));
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "one line for the abandoned request");
    assert_eq!(
        (
            &lines[0]["status"],
            &lines[0]["complete"],
            &lines[0]["error"]
        ),
        (&499.into(), &false.into(), &"client_closed".into())
    );
}

#[tokio::test]
async fn request_abandoned_before_the_head_counts_as_4xx() {
    let layers = inbound();
    abandon(&layers, request("/slow", &[]));
    assert_eq!(layers.count(INBOUND_4XX), 1);
    assert_eq!(layers.count(INBOUND_DURATIONS), 1);
}

#[tokio::test]
async fn request_abandoned_before_the_head_exports_a_client_closed_error_span() {
    let mut layers = Layers::with_spans(Direction::Inbound, &config(|_| {}));
    let mut req = request("/slow", &[]);
    req.extensions_mut()
        .insert(span_info(TRACE, SPAN, None, true));
    abandon(&layers, req);
    let span = layers.exported().expect("the sampled span was exported");
    let attribute = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attribute("error.type").as_deref(), Some("client_closed"));
    assert_eq!(
        attribute("http.response.status_code"),
        None,
        "no status was ever sent"
    );
    assert_eq!(span.status, opentelemetry::trace::Status::error(""));
}

#[tokio::test]
async fn answered_request_is_not_also_recorded_as_abandoned() {
    let log = AccessLog::capture();
    let layers = inbound();
    let response = record(&layers, Protocol::Http1, request("/", &[]), ok("hi")).await;
    let _ = response.into_body().collect().await;
    assert_eq!(
        (layers.count(INBOUND_2XX), layers.count(INBOUND_4XX)),
        (1, 0)
    );
    let lines = log.lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].get("error").is_none(), "{}", lines[0]);
}

/// An inbound request whose span the trace layer did not sample, on a policy
/// where `config` decides its route's tail keep; whether its span is exported
/// when the app answers `status`.
async fn tail_kept(config: &meshtrace_config::Config, path: &str, status: StatusCode) -> bool {
    let mut layers = Layers::with_spans(Direction::Inbound, config);
    let mut req = request(path, &[]);
    req.extensions_mut()
        .insert(span_info(TRACE, SPAN, None, false));
    let mut response = ok("");
    *response.status_mut() = status;
    let recorded = record(&layers, Protocol::Http1, req, response).await;
    let _ = recorded.into_body().collect().await;
    layers.exported().is_some()
}

#[tokio::test]
async fn a_critical_route_keeps_the_spans_of_its_errors_when_the_workload_does_not() {
    let config = config(|c| {
        c.sampling.default_rate = 0.0;
        c.sampling.rules = vec![meshtrace_config::SamplingRule {
            name: Some("pay".into()),
            matches: meshtrace_config::RuleMatch {
                path_prefix: Some("/pay".into()),
                ..Default::default()
            },
            rate: Some(0.0),
            tier: Some("critical".into()),
            ..Default::default()
        }];
    });
    assert!(tail_kept(&config, "/pay", StatusCode::BAD_GATEWAY).await);
    assert!(!tail_kept(&config, "/pay", StatusCode::OK).await);
    assert!(
        !tail_kept(&config, "/browse", StatusCode::BAD_GATEWAY).await,
        "the default route keeps no tail: sampling.tail is off"
    );
}

#[tokio::test]
async fn a_probe_is_never_tail_kept() {
    let config = config(|c| c.sampling.tail.errors = true);
    let mut layers = Layers::with_spans(Direction::Inbound, &config);
    let mut req = request("/healthz", &[]);
    let mut info = span_info(TRACE, SPAN, None, false);
    info.sampling_reason = crate::sampling::Reason::Probe;
    req.extensions_mut().insert(info);
    let mut response = ok("");
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let recorded = record(&layers, Protocol::Http1, req, response).await;
    let _ = recorded.into_body().collect().await;
    assert!(
        layers.exported().is_none(),
        "a failing health check is not kept"
    );
    assert!(tail_kept(&config, "/api", StatusCode::SERVICE_UNAVAILABLE).await);
}

/// A workload whose every request is route `api`, boosted when more than 10 %
/// of at least 5 requests fail.
fn boostable() -> meshtrace_config::Config {
    config(|c| {
        c.sampling.rules = vec![meshtrace_config::SamplingRule {
            name: Some("api".into()),
            rate: Some(0.0),
            boost: Some(meshtrace_config::Boost {
                error_ratio: Some(0.1),
                latency: None,
                window: meshtrace_config::Duration::from_secs(5),
                min_requests: 5,
                rate: 1.0,
                traces_per_second: 10.0,
                duration: meshtrace_config::Duration::from_secs(60),
                decay: meshtrace_config::Duration::from_secs(10),
            }),
            ..Default::default()
        }];
    })
}

/// Sends `n` requests for `path` through the record layer, each answered with
/// `status` (and, when given, a `grpc-status` trailer), bodies read to the end.
async fn answered(layers: &Layers, path: &str, n: usize, status: StatusCode, grpc: Option<&str>) {
    for _ in 0..n {
        let headers: &[(&str, &str)] = match grpc {
            Some(_) => &[("content-type", "application/grpc")],
            None => &[],
        };
        let req = request(path, headers);
        let (frames, body) = streamed();
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let response = record(layers, Protocol::Http2, req, response).await;
        if let Some(code) = grpc {
            let trailers = HeaderMap::from_iter([(
                http::HeaderName::from_static("grpc-status"),
                code.parse().expect("value"),
            )]);
            let _ = frames.send(Ok(Frame::trailers(trailers)));
        }
        drop(frames);
        let _ = response.into_body().collect().await;
    }
}

/// Whether the next tick of the layers' routes starts a boost.
fn boost_starts(layers: &Layers) -> bool {
    let policy = layers.policy.load();
    let events = policy.sampler.routes().tick(tokio::time::Instant::now());
    events
        .iter()
        .any(|e| matches!(e, crate::sampling::RouteEvent::BoostStarted { .. }))
}

#[tokio::test]
async fn server_errors_of_a_route_feed_its_boost_trigger() {
    let layers = Layers::new(Direction::Inbound, &boostable());
    answered(&layers, "/api", 8, StatusCode::OK, None).await;
    answered(&layers, "/api", 2, StatusCode::BAD_GATEWAY, None).await;
    assert!(boost_starts(&layers), "2 of 10 requests failed");

    let grpc = Layers::new(Direction::Inbound, &boostable());
    answered(&grpc, "/shop.Cart/Add", 8, StatusCode::OK, Some("0")).await;
    answered(&grpc, "/shop.Cart/Add", 2, StatusCode::OK, Some("14")).await;
    assert!(
        boost_starts(&grpc),
        "UNAVAILABLE in the trailers is a failure"
    );

    let clients = Layers::new(Direction::Inbound, &boostable());
    answered(&clients, "/api", 8, StatusCode::OK, None).await;
    answered(&clients, "/api", 2, StatusCode::NOT_FOUND, None).await;
    answered(&clients, "/api", 2, StatusCode::OK, Some("5")).await;
    assert!(
        !boost_starts(&clients),
        "4xx and NOT_FOUND are the client's"
    );
}

#[tokio::test]
async fn failing_probes_start_no_boost() {
    let layers = Layers::new(Direction::Inbound, &boostable());
    answered(&layers, "/api", 8, StatusCode::OK, None).await;
    answered(
        &layers,
        "/healthz",
        10,
        StatusCode::SERVICE_UNAVAILABLE,
        None,
    )
    .await;
    assert!(
        !boost_starts(&layers),
        "a failing health check is no incident"
    );
}

#[test]
fn durations_print_as_the_decimal_milliseconds_they_are() {
    use std::time::Duration;
    for (nanos, printed) in [
        (106_138, "0.106138"),
        (1_000, "0.001"),
        (2_345_678_901, "2345.678901"),
        (30_000_000_000, "30000"),
    ] {
        assert_eq!(
            super::millis(Duration::from_nanos(nanos)).to_string(),
            printed
        );
    }
}
