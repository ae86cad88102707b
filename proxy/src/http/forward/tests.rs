//! Forwarding over in-memory upstreams, with tokio's paused clock: each failure
//! becomes the edge response its kind maps to, and what leaves the sidecar is
//! cleaned of hop-by-hop headers and of anything posing as the sidecar's error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use meshtrace_config::HostPort;

use super::Forward;
use crate::drain::Drain;
use crate::http::edge::PROXY_ERROR_HEADER;
use crate::http::server::{self, ServerSettings};
use crate::http::upstream::mock::{Behaviour, MockConnect};
use crate::http::upstream::Upstreams;
use crate::http::{Attachments, Wire};
use crate::metrics::Metrics;
use crate::target::{Destination, Direction};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A client connection to a sidecar forwarding everything to `10.0.0.1:8080`
/// through `connect`, and the sidecar's metrics.
async fn sidecar(connect: Arc<MockConnect>) -> (http1::SendRequest<Full<Bytes>>, Arc<Metrics>) {
    let metrics = Metrics::new();
    let upstreams =
        Upstreams::new(CONNECT_TIMEOUT, Duration::from_secs(60)).with_connector(connect);
    let target = Arc::new(HostPort::from(SocketAddr::from(([10, 0, 0, 1], 8080))));
    let forward = Forward::new(
        Destination::Fixed(target),
        upstreams,
        Wire::Http1,
        Some(REQUEST_TIMEOUT),
        metrics.conns(Direction::Outbound),
        Attachments::default(),
    );
    let settings = ServerSettings {
        header_read: Duration::from_secs(30),
        max_header_bytes: 16 * 1024,
    };
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(server::serve(
        server,
        Wire::Http1,
        forward,
        settings,
        Drain::default(),
    ));
    let (sender, conn) = http1::handshake(TokioIo::new(client)).await.unwrap();
    tokio::spawn(conn);
    (sender, metrics)
}

/// GETs `/` with `headers` through a sidecar in front of `connect`.
async fn get(
    connect: Arc<MockConnect>,
    headers: &[(&str, &str)],
) -> (Response<Incoming>, Arc<Metrics>) {
    let (mut sender, metrics) = sidecar(connect).await;
    let mut req = Request::get("/").header("host", "reviews:9080");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = sender
        .send_request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    (response, metrics)
}

/// The `meshtrace_upstream_errors_total` value for `kind`, outbound.
fn upstream_errors(metrics: &Metrics, kind: &str) -> String {
    let text = metrics.render();
    let prefix =
        format!(r#"meshtrace_upstream_errors_total{{direction="outbound",kind="{kind}"}} "#);
    text.lines().find(|l| l.starts_with(&prefix)).map_or_else(
        || format!("no {kind} line"),
        |l| l[prefix.len()..].to_string(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_never_completes_is_a_504_connect_timeout() {
    let (response, metrics) = get(MockConnect::new(Behaviour::Hang), &[]).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()[PROXY_ERROR_HEADER], "connect_timeout");
    assert_eq!(upstream_errors(&metrics, "connect_timeout"), "1");
}

#[tokio::test(start_paused = true)]
async fn an_upstream_silent_past_the_request_timeout_is_a_504_request_timeout() {
    let (response, metrics) = get(MockConnect::new(Behaviour::Silent), &[]).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()[PROXY_ERROR_HEADER], "request_timeout");
    assert_eq!(upstream_errors(&metrics, "request_timeout"), "1");
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_a_502_connect_refused() {
    let (response, metrics) = get(MockConnect::new(Behaviour::Refuse), &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()[PROXY_ERROR_HEADER], "connect_refused");
    assert_eq!(upstream_errors(&metrics, "connect_refused"), "1");
}

#[tokio::test(start_paused = true)]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let app = MockConnect::app(|req| {
        // The app says which hop-by-hop headers reached it, and sends its own.
        let arrived: Vec<&str> = ["connection", "keep-alive", "x-client-hop"]
            .into_iter()
            .filter(|h| req.headers().contains_key(*h))
            .collect();
        Response::builder()
            .header("x-arrived", arrived.join(","))
            .header("connection", "x-app-hop")
            .header("x-app-hop", "1")
            .header("keep-alive", "timeout=5")
            .body(Full::default())
            .unwrap()
    });
    let sent = [
        ("connection", "x-client-hop"),
        ("x-client-hop", "1"),
        ("keep-alive", "timeout=5"),
    ];
    let (response, _) = get(app, &sent).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-arrived"], "");
    assert!(!response.headers().contains_key("x-app-hop"));
    assert!(!response.headers().contains_key("keep-alive"));
}

#[tokio::test(start_paused = true)]
async fn an_upstream_cannot_pose_as_the_sidecars_error() {
    let app = MockConnect::app(|_| {
        Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(PROXY_ERROR_HEADER, "whatever")
            .body(Full::default())
            .unwrap()
    });
    let (response, _) = get(app, &[]).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!response.headers().contains_key(PROXY_ERROR_HEADER));
}
