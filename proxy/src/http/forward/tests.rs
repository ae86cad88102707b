//! Forwarding over in-memory upstreams, with tokio's paused clock: each failure
//! becomes the edge response its kind maps to, and what leaves the sidecar is
//! cleaned of hop-by-hop headers and of anything posing as the sidecar's error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtrace_config::HostPort;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::Forward;
use crate::drain::Drain;
use crate::http::edge::PROXY_ERROR_HEADER;
use crate::http::server::{self, ServerSettings};
use crate::http::upstream::mock::{self, Behaviour, MockConnect};
use crate::http::upstream::Upstreams;
use crate::http::{Attachments, Wire};
use crate::metrics::Metrics;
use crate::target::{Destination, Direction};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The client end of a `wire` connection to a sidecar forwarding everything to
/// `10.0.0.1:8080` through `connect`, and the sidecar's metrics.
fn sidecar_io(connect: Arc<MockConnect>, wire: Wire) -> (DuplexStream, Arc<Metrics>) {
    sidecar_io_draining(connect, wire, &Drain::default())
}

/// [`sidecar_io`] with the sidecar's `drain`.
fn sidecar_io_draining(
    connect: Arc<MockConnect>,
    wire: Wire,
    drain: &Drain,
) -> (DuplexStream, Arc<Metrics>) {
    let metrics = Metrics::new();
    let upstreams =
        Upstreams::new(CONNECT_TIMEOUT, Duration::from_secs(60)).with_connector(connect);
    let target = Arc::new(HostPort::from(SocketAddr::from(([10, 0, 0, 1], 8080))));
    let forward = Forward::new(
        Destination::Fixed(target),
        upstreams,
        wire,
        Some(REQUEST_TIMEOUT),
        metrics.conns(Direction::Outbound),
        Attachments::default(),
        drain.clone(),
    );
    let settings = ServerSettings {
        header_read: Duration::from_secs(30),
        idle: Duration::from_secs(90),
        max_header_bytes: 16 * 1024,
        max_header_count: 100,
    };
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(server::serve(
        server,
        wire,
        forward,
        settings,
        drain.clone(),
    ));
    (client, metrics)
}

/// An HTTP/2 client connection to a sidecar in front of `connect`.
async fn http2_sidecar(connect: Arc<MockConnect>) -> http2::SendRequest<Full<Bytes>> {
    let (io, _) = sidecar_io(connect, Wire::Http2);
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/1 client connection to a sidecar in front of `connect`.
async fn sidecar(connect: Arc<MockConnect>) -> (http1::SendRequest<Full<Bytes>>, Arc<Metrics>) {
    let (io, metrics) = sidecar_io(connect, Wire::Http1);
    let (sender, conn) = http1::handshake(TokioIo::new(io)).await.unwrap();
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

/// What a sidecar whose upstream connections behave as `behaviour` answers: the
/// status, its `meshtrace-proxy-error`, and the `meshtrace_upstream_errors_total`
/// count of that error kind.
async fn refusal(behaviour: Behaviour) -> (StatusCode, String, String) {
    let (response, metrics) = get(MockConnect::new(behaviour), &[]).await;
    let kind = response.headers()[PROXY_ERROR_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    let text = metrics.render();
    let prefix =
        format!(r#"meshtrace_upstream_errors_total{{direction="outbound",kind="{kind}"}} "#);
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("no such line")
        .to_string();
    (response.status(), kind, count)
}

/// A `refusal` as expected: `status`, error `kind`, counted once.
fn expected(status: StatusCode, kind: &str) -> (StatusCode, String, String) {
    (status, kind.to_string(), "1".to_string())
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_never_completes_is_a_504_connect_timeout() {
    let answer = refusal(Behaviour::Hang).await;
    assert_eq!(
        answer,
        expected(StatusCode::GATEWAY_TIMEOUT, "connect_timeout")
    );
}

#[tokio::test(start_paused = true)]
async fn an_upstream_silent_past_the_request_timeout_is_a_504_request_timeout() {
    let answer = refusal(Behaviour::Silent).await;
    assert_eq!(
        answer,
        expected(StatusCode::GATEWAY_TIMEOUT, "request_timeout")
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_a_502_connect_refused() {
    let answer = refusal(Behaviour::Refuse).await;
    assert_eq!(answer, expected(StatusCode::BAD_GATEWAY, "connect_refused"));
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
async fn connection_cannot_strip_host_or_the_traceparent_set_for_this_hop() {
    let app = MockConnect::app(|req| {
        // The app echoes the two headers it must receive.
        let echo = |name: &str| req.headers().get(name).cloned();
        let mut response = Response::builder();
        for (name, value) in [("x-host", echo("host")), ("x-tp", echo("traceparent"))] {
            if let Some(value) = value {
                response = response.header(name, value);
            }
        }
        response.body(Full::default()).unwrap()
    });
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let sent = [
        ("connection", "host, traceparent"),
        ("traceparent", traceparent),
    ];
    let (response, _) = get(app, &sent).await;
    assert_eq!(response.headers().get("x-host").unwrap(), "reviews:9080");
    assert_eq!(response.headers().get("x-tp").unwrap(), traceparent);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_chunked_request_body_is_the_clients_400_not_an_upstream_error() {
    // The upstream reads the request and never answers, so only the body can fail.
    let (mut io, metrics) = sidecar_io(MockConnect::new(Behaviour::Silent), Wire::Http1);
    let request = "POST / HTTP/1.1\r\nhost: reviews:9080\r\n\
                   transfer-encoding: chunked\r\n\r\nzz\r\nbad\r\n";
    io.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut answer));
    read.await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("meshtrace-proxy-error: bad_request_body\r\n"));
    assert!(answer.contains("meshtrace: the request body could not be read: "));
    let text = metrics.render();
    let counted = text
        .lines()
        .filter(|l| l.starts_with("meshtrace_upstream_errors_total"))
        .any(|l| !l.ends_with(" 0"));
    assert!(!counted, "{text}");
}

#[tokio::test(start_paused = true)]
async fn connect_is_refused_with_a_405_naming_the_cause() {
    let app = MockConnect::app(|_| Response::new(Full::default()));
    let (mut sender, _) = sidecar(app.clone()).await;
    let req = Request::connect("reviews:9080")
        .header("host", "reviews:9080")
        .body(Full::default())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = StatusCode::METHOD_NOT_ALLOWED;
    let message = "CONNECT is not supported";
    assert_refused(response, &app, status, "method_not_allowed", message).await;
}

/// Asserts that the sidecar answered itself, with `status`, `cause` and a body
/// starting with `message`, and never dialled `app`.
async fn assert_refused(
    response: Response<Incoming>,
    app: &MockConnect,
    status: StatusCode,
    cause: &str,
    message: &str,
) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()[PROXY_ERROR_HEADER], cause);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.starts_with(&format!("meshtrace: {message}")), "{body}");
    assert!(app.dialled().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_upstream_cannot_pose_as_the_sidecars_error() {
    let app = MockConnect::app(mock::posing_as_the_sidecar);
    let (response, _) = get(app, &[]).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!response.headers().contains_key(PROXY_ERROR_HEADER));
}

#[tokio::test(start_paused = true)]
async fn http2_requests_keep_their_authority_and_share_one_upstream_connection() {
    let app = MockConnect::app(|req| {
        let seen = format!("{:?} {}", req.version(), req.uri());
        Response::new(Full::new(Bytes::from(seen)))
    });
    let mut sender = http2_sidecar(app.clone()).await;
    for path in ["/a", "/b"] {
        let uri = format!("http://reviews:9080{path}");
        let req = Request::get(&uri).body(Full::<Bytes>::default()).unwrap();
        let response = sender.send_request(req).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("HTTP/2.0 {uri}").as_bytes());
    }
    assert_eq!(app.dialled(), ["10.0.0.1:8080"]);
}

/// An app that answers with the `Host` values it received, comma-separated.
fn host_echo() -> Arc<MockConnect> {
    MockConnect::app(|req| {
        let hosts: Vec<&str> = req
            .headers()
            .get_all("host")
            .iter()
            .map(|h| h.to_str().unwrap())
            .collect();
        Response::new(Full::new(Bytes::from(hosts.join(","))))
    })
}

#[tokio::test(start_paused = true)]
async fn two_host_headers_are_a_400_and_nothing_is_dialled() {
    let app = host_echo();
    let (response, _) = get(app.clone(), &[("host", "evil:80")]).await;
    let message = "the request has more than one Host header";
    assert_refused(
        response,
        &app,
        StatusCode::BAD_REQUEST,
        "duplicate_host",
        message,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_absolute_form_target_replaces_the_clients_host() {
    let app = host_echo();
    let (mut sender, _) = sidecar(app).await;
    let req = Request::get("http://user@reviews:9080/a")
        .header("host", "evil:80")
        .body(Full::default())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "reviews:9080");
}

/// What a sidecar answers an HTTP/2 request to `http://reviews:9080/` carrying
/// `host: <host>`, and whether it dialled.
async fn http2_with_host(host: &str) -> (StatusCode, Option<String>, bool) {
    let app = host_echo();
    let mut sender = http2_sidecar(app.clone()).await;
    let req = Request::get("http://reviews:9080/")
        .header("host", host)
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let cause = response.headers().get(PROXY_ERROR_HEADER);
    let cause = cause.map(|c| c.to_str().unwrap().to_string());
    (response.status(), cause, !app.dialled().is_empty())
}

#[tokio::test(start_paused = true)]
async fn http2_authority_and_host_that_disagree_are_a_400() {
    let answer = http2_with_host("evil:80").await;
    let cause = Some("authority_mismatch".to_string());
    assert_eq!(answer, (StatusCode::BAD_REQUEST, cause, false));
    // The same origin in another case is no conflict.
    let answer = http2_with_host("Reviews:9080").await;
    assert_eq!(answer, (StatusCode::OK, None, true));
}

/// An app that switches protocols, as a WebSocket server does (the mock then
/// closes its end: the tunnel lives on while the client's end is open).
fn switching_protocols(_: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    response
}

#[tokio::test(start_paused = true)]
async fn an_upgraded_connection_keeps_the_drain_waiting_until_it_closes() {
    let drain = Drain::default();
    let connect = MockConnect::app(switching_protocols);
    let (io, _) = sidecar_io_draining(connect, Wire::Http1, &drain);
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::get("/chat")
        .header("host", "chat:80")
        .header("connection", "upgrade")
        .header("upgrade", "websocket");
    let sent = sender.send_request(req.body(Full::default()).unwrap());
    let mut res = sent.await.unwrap();
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    let tunnel = hyper::upgrade::on(&mut res)
        .await
        .expect("the client's end");
    drain.start();
    let waiting = drain.wait(Duration::from_secs(3600));
    tokio::pin!(waiting);
    // Longer than the idle and header-read deadlines: neither cuts a tunnel.
    let early = tokio::time::timeout(Duration::from_secs(200), waiting.as_mut()).await;
    assert!(early.is_err(), "the drain ended with the tunnel still open");
    drop(tunnel);
    assert!(waiting.await, "the drain ended when the tunnel closed");
}
