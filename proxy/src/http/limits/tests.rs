//! The header limit in front of a stand-in app: heads up to the limit pass,
//! larger ones get a 431 (gRPC: RESOURCE_EXHAUSTED) that says how large they
//! were and what the limit is, and never reach the app.

use http::{Request, StatusCode};
use tower::Layer;

use super::{header_block_size, HeaderLimit, HeaderLimitLayer, MeasureHead};
use crate::http::edge::PROXY_ERROR_HEADER;
use crate::http::trace::Trace;
use crate::target::Direction;
use crate::test_support::{app, body_text, call, config, request, response, Layers};

/// `GET / HTTP/1.1\r\n` (16 bytes) plus `host: a\r\n` (9 bytes).
const SMALL_HEAD: usize = 25;

fn small_request() -> Request<()> {
    request("/", &[("host", "a")])
}

#[test]
fn header_block_size_counts_the_request_line_and_fields_as_http1_sends_them() {
    assert_eq!(header_block_size(&small_request()), SMALL_HEAD);
    let with_query = request("/search?q=1", &[("host", "a"), ("x-k", "vv")]);
    // Target grows by 10, and `x-k: vv\r\n` adds 9.
    assert_eq!(header_block_size(&with_query), SMALL_HEAD + 10 + 9);
}

#[tokio::test]
async fn header_block_exactly_at_the_limit_reaches_the_app() {
    let (inner, seen) = app(|| response(StatusCode::OK, "app"));
    let mut limited = HeaderLimitLayer::new(SMALL_HEAD, 100).layer(inner);
    let response = call(&mut limited, small_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response.into_body()).await, "app");
    assert!(seen.try_recv().is_ok(), "the app saw the request");
}

#[tokio::test]
async fn oversized_header_block_gets_431_naming_the_size_and_the_limit() {
    let (inner, seen) = app(|| response(StatusCode::OK, "app"));
    let mut limited = HeaderLimitLayer::new(SMALL_HEAD - 1, 100).layer(inner);
    let response = call(&mut limited, small_request()).await;
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(response.headers()[PROXY_ERROR_HEADER], "headers_too_large");
    assert_eq!(
        body_text(response.into_body()).await,
        "meshtrace: request header block is 25 bytes, over the limit of 24 bytes\n"
    );
    assert!(seen.try_recv().is_err(), "the app never saw the request");
}

#[tokio::test]
async fn oversized_grpc_request_gets_trailers_only_resource_exhausted() {
    let (inner, seen) = app(|| response(StatusCode::OK, "app"));
    let mut limited = HeaderLimitLayer::new(32, 100).layer(inner);
    let req = request(
        "/shop.Cart/Add",
        &[("host", "a"), ("content-type", "application/grpc")],
    );
    let response = call(&mut limited, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "8");
    let message = response.headers()["grpc-message"].to_str().unwrap_or("");
    assert!(message.ends_with("over the limit of 32 bytes"), "{message}");
    assert_eq!(body_text(response.into_body()).await, "");
    assert!(seen.try_recv().is_err(), "the app never saw the request");
}

#[tokio::test]
async fn every_header_value_counts_toward_the_limit_not_only_the_first() {
    let (inner, seen) = app(|| response(StatusCode::OK, "app"));
    let mut limited = HeaderLimitLayer::new(SMALL_HEAD + 9, 100).layer(inner);
    // Two `x-k: vv` lines: 18 bytes over the small head, 9 over the limit.
    let req = request("/", &[("host", "a"), ("x-k", "vv"), ("x-k", "vv")]);
    let response = call(&mut limited, req).await;
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert!(seen.try_recv().is_err(), "the app never saw the request");
}

#[tokio::test]
async fn refusal_leaves_the_connection_ready_for_the_next_request() {
    let (inner, seen) = app(|| response(StatusCode::OK, "app"));
    let mut limited = HeaderLimitLayer::new(SMALL_HEAD, 100).layer(inner);
    let big = request("/", &[("host", "a"), ("x-big", &"v".repeat(64))]);
    let refused = call(&mut limited, big).await;
    assert_eq!(
        refused.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let next = call(&mut limited, small_request()).await;
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(seen.try_iter().count(), 1, "only the small request passed");
}

/// The limits around the trace layer, as the listener's stack composes them.
fn around_the_trace_layer<S>(
    bytes: usize,
    fields: usize,
    inner: S,
) -> MeasureHead<Trace<HeaderLimit<S>>> {
    let layers = Layers::new(Direction::Inbound, &config(|_| {}));
    let (measure, refuse) = HeaderLimitLayer::client_head(bytes, fields);
    measure.layer(layers.trace(false).layer(refuse.layer(inner)))
}

#[tokio::test]
async fn limit_measures_the_head_the_client_sent_not_the_trace_headers_the_sidecar_adds() {
    let (inner, seen) = app(|| response(StatusCode::OK, "app"));
    let mut stack = around_the_trace_layer(SMALL_HEAD, 2, inner);
    let response = call(&mut stack, small_request()).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the client sent 25 bytes"
    );
    assert!(seen.try_recv().is_ok(), "the app saw the request");
}

#[tokio::test]
async fn a_head_over_the_limit_is_refused_inside_the_trace_layer() {
    let (inner, seen) = app(|| response(StatusCode::OK, "app"));
    let mut stack = around_the_trace_layer(SMALL_HEAD - 1, 100, inner);
    let response = call(&mut stack, small_request()).await;
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(
        body_text(response.into_body()).await,
        "meshtrace: request header block is 25 bytes, over the limit of 24 bytes\n"
    );
    assert!(seen.try_recv().is_err(), "the app never saw the request");
}
