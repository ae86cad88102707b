//! The outbound listener in transparent mode, in-process: a mock original
//! destination stands in for the kernel's redirect record (no root, no iptables)
//! and a mock connector for the network, so only the downstream connection is a
//! real (loopback) socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use meshtrace_config::{Config, Unidentified};
use opentelemetry::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Listener, ListenerParts};
use crate::drain::Drain;
use crate::http::edge::PROXY_ERROR_HEADER;
use crate::http::upstream::mock::{self, MockConnect};
use crate::http::upstream::Upstreams;
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::orig_dst::OrigDst;
use crate::target::Direction;
use crate::telemetry::export::EncodedSpan;
use crate::telemetry::{Recorder, SpanQueue};

/// Every step of a test is bounded by this.
const BOUND: Duration = Duration::from_secs(5);

/// Where the mock says connections were going.
enum MockOrigDst {
    /// Always this address.
    Fixed(SocketAddr),
    /// The listener itself: what a connection that was not redirected reports.
    Itself,
}

impl OrigDst for MockOrigDst {
    fn original_dst(&self, stream: &TcpStream) -> io::Result<SocketAddr> {
        match self {
            Self::Fixed(addr) => Ok(*addr),
            Self::Itself => stream.local_addr(),
        }
    }
}

/// A listener with spans on, its metrics and exported spans.
struct Sidecar {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    spans: mpsc::Receiver<EncodedSpan>,
    _stop: tokio_util::sync::DropGuard,
}

impl Sidecar {
    /// The `error.type` of the next exported span.
    async fn next_error_type(&mut self) -> Option<Value> {
        let span = tokio::time::timeout(BOUND, self.spans.recv())
            .await
            .unwrap()
            .expect("a sampled span")
            .decode();
        let error_type = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "error.type");
        error_type.map(|kv| kv.value.clone())
    }
}

/// A transparent outbound listener with the default config.
async fn outbound(orig_dst: MockOrigDst, upstream: Arc<MockConnect>) -> Sidecar {
    let config = Config::default();
    sidecar(Direction::Outbound, config, orig_dst, upstream).await
}

async fn sidecar(
    direction: Direction,
    config: Config,
    orig_dst: MockOrigDst,
    upstream: Arc<MockConnect>,
) -> Sidecar {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let (queue, spans) = SpanQueue::for_test(16, metrics.spans.clone());
    let recorder = Arc::new(Recorder::new(&config, queue, &|_| None));
    let upstreams =
        Upstreams::new(Duration::from_secs(1), Duration::from_secs(60)).with_connector(upstream);
    let parts = ListenerParts {
        upstreams,
        metrics: metrics.clone(),
        migration: Arc::new(Migration::new(&metrics)),
        adaptive: crate::adaptive::Adaptive::new(&config, metrics.clone()),
        spans: Some(recorder),
        drain: Drain::default(),
        orig_dst: Arc::new(orig_dst),
    };
    let listener = Listener::from_parts(direction, config, parts);
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(listener.accept_loop(socket, stop.clone()));
    Sidecar {
        addr,
        metrics,
        spans,
        _stop: stop.drop_guard(),
    }
}

/// Sends a sampled GET from the app through the sidecar.
async fn get(sidecar: &Sidecar) -> hyper::Result<Response<Incoming>> {
    let stream = TcpStream::connect(sidecar.addr).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("/reviews/1")
        .header("host", "reviews:9080")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Full::<Bytes>::default())
        .unwrap();
    tokio::time::timeout(BOUND, sender.send_request(req))
        .await
        .unwrap()
}

fn ok(_: &Request<Incoming>) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

#[tokio::test]
async fn a_redirected_connection_goes_to_its_original_destination() {
    let upstream = MockConnect::app(ok);
    let original = SocketAddr::from(([10, 1, 2, 3], 9080));
    let sidecar = outbound(MockOrigDst::Fixed(original), upstream.clone()).await;
    let response = get(&sidecar).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(upstream.dialled(), ["10.1.2.3:9080"]);
}

/// A client that dialled the listener itself (the kernel reports the listener
/// as the original destination) was not redirected: it is never forwarded to
/// the sidecar itself, and gets a 502 that says so and what to do.
#[tokio::test]
async fn a_connection_addressed_to_the_sidecar_itself_gets_a_502_that_explains_it() {
    let upstream = MockConnect::app(ok);
    let sidecar = outbound(MockOrigDst::Itself, upstream.clone()).await;
    let response = get(&sidecar).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()[PROXY_ERROR_HEADER], "no_original_dst");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("is the sidecar's own listener"), "{body}");
    assert!(body.contains("outbound.mode: explicit"), "{body}");
    assert!(upstream.dialled().is_empty());
    let text = sidecar.metrics.render();
    let line = r#"meshtrace_upstream_errors_total{direction="outbound",kind="no_original_dst"} 1"#;
    assert!(text.contains(line), "{text}");
}

#[tokio::test]
async fn an_upstream_error_header_reaches_neither_the_client_nor_the_span() {
    let upstream = MockConnect::app(mock::posing_as_the_sidecar);
    let original = SocketAddr::from(([10, 1, 2, 3], 9080));
    let mut sidecar = outbound(MockOrigDst::Fixed(original), upstream).await;
    let response = get(&sidecar).await.unwrap();
    assert!(!response.headers().contains_key(PROXY_ERROR_HEADER));
    response.into_body().collect().await.unwrap();
    assert_eq!(sidecar.next_error_type().await, Some(Value::from("500")));
}

// === connections not identified as HTTP (inbound.unidentified) ===

const UNIDENTIFIED_CLOSED: &str =
    r#"meshtrace_upstream_errors_total{direction="inbound",kind="unidentified_closed"} 1"#;

/// A TLS ClientHello's first bytes: not HTTP from the first byte.
const NOT_HTTP: &[u8] = b"\x16\x03\x01\x00\x05hello";

/// What a client that sent `bytes` to an inbound listener got: the sidecar's
/// bytes before it closed, what the mock app's connector dialled, the metrics.
#[derive(Debug)]
struct Outcome {
    back: Vec<u8>,
    dialled: Vec<String>,
    metrics: String,
}

impl Outcome {
    /// Nothing was dialled and the close was counted.
    fn closed_and_counted(&self) -> bool {
        self.dialled.is_empty() && self.metrics.contains(UNIDENTIFIED_CLOSED)
    }
}

/// Sends `bytes` to an inbound listener (config changed by `change`) in front
/// of a mock app, then reads until the sidecar's side ends (a close or a reset,
/// within the bound).
async fn send_inbound(change: impl FnOnce(&mut Config), bytes: &[u8]) -> Outcome {
    let mut config = Config::default();
    change(&mut config);
    let upstream = MockConnect::app(ok);
    let sidecar = sidecar(
        Direction::Inbound,
        config,
        MockOrigDst::Itself,
        upstream.clone(),
    )
    .await;
    let mut stream = TcpStream::connect(sidecar.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut back = Vec::new();
    let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut back)).await;
    assert!(read.is_ok(), "the connection was never closed");
    Outcome {
        back,
        dialled: upstream.dialled(),
        metrics: sidecar.metrics.render(),
    }
}

#[tokio::test]
async fn untrusted_inbound_closes_a_connection_that_is_not_http_and_counts_it() {
    let seen = send_inbound(|c| c.inbound.trusted = false, NOT_HTTP).await;
    assert!(seen.back.is_empty(), "{:?}", seen.back);
    assert!(seen.closed_and_counted(), "{seen:?}");
}

#[tokio::test]
async fn untrusted_inbound_closes_a_client_slower_than_the_detect_timeout() {
    let slow = |c: &mut Config| {
        c.inbound.trusted = false;
        c.timeouts.detect = meshtrace_config::Duration::from_millis(50);
    };
    let seen = send_inbound(slow, b"GET / HT").await;
    assert!(seen.closed_and_counted(), "{seen:?}");
}

#[tokio::test]
async fn trusted_inbound_forwards_what_is_not_http_unless_told_to_close() {
    let seen = send_inbound(|_| {}, NOT_HTTP).await;
    assert_eq!(seen.dialled, ["127.0.0.1:8080"]);
    let close = |c: &mut Config| c.inbound.unidentified = Unidentified::Close;
    let seen = send_inbound(close, NOT_HTTP).await;
    assert!(seen.dialled.is_empty(), "{:?}", seen.dialled);
}

mod h2_body;
mod stalled_h2;
