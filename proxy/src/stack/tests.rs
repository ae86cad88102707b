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
use meshtrace_config::Config;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
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

/// A transparent outbound listener with spans on, its metrics and exported spans.
struct Outbound {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    spans: mpsc::Receiver<SpanData>,
    _stop: tokio_util::sync::DropGuard,
}

async fn outbound(orig_dst: MockOrigDst, upstream: Arc<MockConnect>) -> Outbound {
    let config = Arc::new(Config::default());
    let metrics = Metrics::new();
    let (queue, spans) = SpanQueue::for_test(16, metrics.spans.clone());
    let recorder = Arc::new(Recorder::new(&config, queue, &|_| None));
    let upstreams =
        Upstreams::new(Duration::from_secs(1), Duration::from_secs(60)).with_connector(upstream);
    let parts = ListenerParts {
        upstreams,
        metrics: metrics.clone(),
        migration: Arc::new(Migration::new(&metrics)),
        spans: Some(recorder),
        drain: Drain::default(),
        orig_dst: Arc::new(orig_dst),
    };
    let listener = Listener::from_parts(Direction::Outbound, config, parts);
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(listener.accept_loop(socket, stop.clone()));
    Outbound {
        addr,
        metrics,
        spans,
        _stop: stop.drop_guard(),
    }
}

/// Sends a sampled GET from the app through the sidecar.
async fn get(sidecar: &Outbound) -> hyper::Result<Response<Incoming>> {
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

#[tokio::test]
async fn a_connection_addressed_to_the_sidecar_itself_is_refused_and_counted() {
    let upstream = MockConnect::app(ok);
    let sidecar = outbound(MockOrigDst::Itself, upstream.clone()).await;
    assert!(
        get(&sidecar).await.is_err(),
        "a looping connection was served"
    );
    assert!(upstream.dialled().is_empty());
    let text = sidecar.metrics.render();
    let line = r#"meshtrace_upstream_errors_total{direction="outbound",kind="loop_detected"} 1"#;
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
    let span = tokio::time::timeout(BOUND, sidecar.spans.recv())
        .await
        .unwrap()
        .expect("a sampled span");
    let error_type = span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "error.type")
        .map(|kv| kv.value.clone());
    assert_eq!(error_type, Some(Value::from("500")));
}
