//! One downstream connection served over an in-memory duplex, with a hyper
//! client (or raw bytes) on the other end: both protocols, the header-read
//! deadline on the paused clock, the header limits, and the graceful drain.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::Layer;

use crate::drain::Drain;
use crate::http::limits::HeaderLimitLayer;
use crate::target::Protocol;
use crate::test_support::{app, body_text, h1_client, h2_client, response, Downstream, Gate};

/// The header-read deadline the timeout tests set (the default is 10s).
const HEADER_READ: Duration = Duration::from_secs(3);

/// HTTP/1 with the header-read deadline set to [`HEADER_READ`].
fn with_header_read() -> Downstream {
    Downstream {
        header_read: HEADER_READ,
        ..Downstream::http1()
    }
}

/// Bounds a wait that must end on its own (real clock).
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 5s"))
}

fn get(path: &str, pairs: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get(path).header("host", "app.local");
    for (k, v) in pairs {
        req = req.header(*k, *v);
    }
    req.body(Full::default()).expect("test request")
}

/// One HTTP/1 GET of `path` with extra headers over `io`: the response, or
/// the error of a connection that ended without one.
async fn get_over(
    io: DuplexStream,
    path: &str,
    pairs: &[(&str, &str)],
) -> hyper::Result<Response<Incoming>> {
    let (mut client, _conn) = h1_client(io).await;
    within("a response", client.send_request(get(path, pairs))).await
}

/// Once the `pending` request reached the gated app, starts the drain, then
/// lets the app answer; returns the response the client got.
async fn answered_while_draining(
    gate: &mut Gate,
    drain: &Drain,
    pending: JoinHandle<hyper::Result<Response<Incoming>>>,
) -> Response<Incoming> {
    within("the request to arrive", gate.arrived()).await;
    drain.start();
    gate.open();
    let res = within("the response", pending).await.expect("client task");
    res.expect("a response to the in-flight request")
}

#[tokio::test]
async fn http1_request_over_duplex_reaches_the_service() {
    let (service, seen) = app(|| response(StatusCode::OK, "hello"));
    let (io, _served) = Downstream::http1().serve(service);
    let res = get_over(io, "/hi", &[]).await.expect("HTTP/1 response");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res.into_body()).await, "hello");
    let head = seen.try_recv().expect("the service saw the request");
    assert_eq!((head.uri.path(), head.version), ("/hi", Version::HTTP_11));
}

#[tokio::test]
async fn h2_request_over_duplex_reaches_the_service() {
    let (service, seen) = app(|| response(StatusCode::OK, "hello"));
    let (io, _served) = Downstream::h2().serve(service);
    let (mut client, _conn) = h2_client(io).await;
    let req = Request::get("http://app.local/hi")
        .body(Full::default())
        .expect("request");
    let res = within("response", client.send_request(req))
        .await
        .expect("h2 response");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res.into_body()).await, "hello");
    let head = seen.try_recv().expect("the service saw the request");
    assert_eq!((head.uri.path(), head.version), ("/hi", Version::HTTP_2));
}

/// The server's end of a connection, counting the writes made to it.
struct WriteCounted {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for WriteCounted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteCounted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// `h2` writes each DATA frame of 256 bytes or more alone: ten 1 KiB answers
/// were ten writes (ten segments on a socket). Answered together, they now go
/// in one.
#[tokio::test]
async fn h2_answers_ready_together_are_written_together() {
    const ANSWERS: usize = 10;
    let body = Bytes::from(vec![b'x'; 1024]);
    let (service, mut gate) = Gate::answering(body.clone());
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = WriteCounted {
        io: server_io,
        writes: writes.clone(),
    };
    let _served = Downstream::h2().serve_over(counted, service);
    let (client, _conn) = h2_client(client_io).await;
    let pending: Vec<_> = (0..ANSWERS)
        .map(|_| {
            let mut client = client.clone();
            let req = Request::get("http://app.local/")
                .body(Full::default())
                .expect("request");
            tokio::spawn(async move { client.send_request(req).await })
        })
        .collect();
    for _ in 0..ANSWERS {
        within("the requests to arrive", gate.arrived()).await;
    }
    let before = writes.load(Ordering::Relaxed);
    for _ in 0..ANSWERS {
        gate.open();
    }
    for answer in pending {
        let res = within("an answer", answer)
            .await
            .expect("client task")
            .expect("h2 response");
        assert_eq!(body_text(res.into_body()).await.len(), body.len());
    }
    let written = writes.load(Ordering::Relaxed) - before;
    assert_eq!(written, 1, "{ANSWERS} answers in {written} writes");
}

#[tokio::test(start_paused = true)]
async fn header_read_timeout_closes_a_silent_connection() {
    let (service, seen) = app(|| response(StatusCode::OK, ""));
    let (mut io, served) = with_header_read().serve(service);
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = io.read_to_end(&mut buf).await;
    assert_eq!(start.elapsed(), HEADER_READ);
    assert!(
        read.is_ok() && buf.is_empty(),
        "closed without a response: {read:?} {buf:?}"
    );
    assert!(served.await.is_ok());
    assert!(seen.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn header_read_timeout_cuts_off_a_request_head_that_never_ends() {
    let (service, seen) = app(|| response(StatusCode::OK, ""));
    let (mut io, _served) = with_header_read().serve(service);
    io.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n")
        .await
        .expect("write");
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = io.read_to_end(&mut buf).await;
    assert_eq!(start.elapsed(), HEADER_READ);
    assert!(
        seen.try_recv().is_err(),
        "the half head never reached the service"
    );
}

/// A connection speaking `protocol` with a 1 KiB header limit.
fn limited_to_1k(protocol: Protocol) -> Downstream {
    Downstream {
        protocol,
        max_header_bytes: 1024,
        max_header_count: 100,
        ..Downstream::http1()
    }
}

/// One GET carrying a `size`-byte header over `io`, speaking `protocol`.
async fn get_with_header_of(
    protocol: Protocol,
    io: DuplexStream,
    size: usize,
) -> hyper::Result<Response<Incoming>> {
    let big = "v".repeat(size);
    if protocol == Protocol::Http1 {
        return get_over(io, "/", &[("x-big", &big)]).await;
    }
    let (mut client, _conn) = h2_client(io).await;
    let req = Request::get("http://app.local/").header("x-big", big);
    let req = req.body(Full::default()).expect("request");
    within("a response", client.send_request(req)).await
}

#[tokio::test(start_paused = true)]
async fn idle_h2_connection_closes_after_the_idle_timeout() {
    let idle = meshtrace_config::Timeouts::default().idle.get();
    let (service, _seen) = app(|| response(StatusCode::OK, "first"));
    let (io, _served) = Downstream::h2().serve(service);
    let (mut client, conn) = h2_client(io).await;
    let req = Request::get("http://app.local/").body(Full::default());
    let res = client.send_request(req.expect("request")).await;
    assert_eq!(
        body_text(res.expect("first response").into_body()).await,
        "first"
    );
    let idle_since = Instant::now();
    let ended = tokio::time::timeout(idle * 2, conn).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "closed with GOAWAY, cleanly: {ended:?}"
    );
    assert_eq!(idle_since.elapsed(), idle);
}

#[tokio::test]
async fn header_block_over_the_configured_limit_reaches_the_limit_layer_for_its_431() {
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let (app, seen) = app(|| response(StatusCode::OK, ""));
        let limited = HeaderLimitLayer::new(1024, 100).layer(app);
        let (io, _served) = limited_to_1k(protocol).serve(limited);
        let res = get_with_header_of(protocol, io, 4000).await;
        let res = res.expect("a response, not a dropped connection");
        assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let text = body_text(res.into_body()).await;
        assert!(
            text.contains("over the limit of 1024 bytes"),
            "{protocol}: {text}"
        );
        assert!(seen.try_recv().is_err(), "{protocol}: the app never saw it");
    }
}

#[tokio::test]
async fn header_block_over_the_hard_limit_gets_a_bare_431_without_reaching_the_service() {
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let (service, seen) = app(|| response(StatusCode::OK, ""));
        let (io, _served) = limited_to_1k(protocol).serve(service);
        let res = get_with_header_of(protocol, io, 40 * 1024).await;
        let status = res.map(|r| r.status()).ok();
        assert_eq!(
            status,
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            "{protocol}"
        );
        assert!(
            seen.try_recv().is_err(),
            "{protocol}: the service never saw it"
        );
    }
}

#[tokio::test]
async fn a_head_over_the_field_count_limit_gets_an_explained_431_not_hyper_s_bare_one() {
    let (app, seen) = app(|| response(StatusCode::OK, ""));
    let limited = HeaderLimitLayer::new(64 * 1024, 100).layer(app);
    let (io, _served) = Downstream::http1().serve(limited);
    let names: Vec<String> = (0..120).map(|i| format!("x-f{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    // About 1.3 KiB of header fields: 2% of the byte limit, but 120 fields.
    let res = get_over(io, "/", &pairs).await;
    let res = res.expect("a response, not a dropped connection");
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let text = body_text(res.into_body()).await;
    assert!(text.contains("over the limit of 100"), "{text}");
    assert!(seen.try_recv().is_err(), "the app never saw it");
}

#[tokio::test]
async fn a_head_at_the_field_count_limit_reaches_the_service() {
    let (app, seen) = app(|| response(StatusCode::OK, ""));
    let limited = HeaderLimitLayer::new(64 * 1024, 100).layer(app);
    let (io, _served) = Downstream::http1().serve(limited);
    // With the request's `host`, 99 more make exactly 100 fields.
    let names: Vec<String> = (0..99).map(|i| format!("x-f{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let res = get_over(io, "/", &pairs).await;
    assert_eq!(res.map(|r| r.status()).ok(), Some(StatusCode::OK));
    assert!(seen.try_recv().is_ok());
}

#[tokio::test]
async fn drain_lets_the_in_flight_http1_request_finish_then_closes() {
    let (service, mut gate) = Gate::app();
    let downstream = Downstream::http1();
    let drain = downstream.drain.clone();
    let (io, served) = downstream.serve(service);
    let (mut client, _conn) = h1_client(io).await;
    let pending = tokio::spawn(client.send_request(get("/", &[])));
    let res = answered_while_draining(&mut gate, &drain, pending).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res.into_body()).await, "done");
    assert!(within("the connection to close", served).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn drain_closes_an_idle_http1_connection_at_once() {
    let (service, _seen) = app(|| response(StatusCode::OK, ""));
    let downstream = Downstream::http1();
    let drain = downstream.drain.clone();
    let (io, served) = downstream.serve(service);
    let (mut client, _conn) = h1_client(io).await;
    let res = client.send_request(get("/", &[])).await.expect("response");
    let _ = body_text(res.into_body()).await;
    let start = Instant::now();
    drain.start();
    assert!(served.await.is_ok());
    assert!(
        start.elapsed() < downstream.header_read,
        "not left to the idle deadline"
    );
}

#[tokio::test]
async fn drain_sends_goaway_and_finishes_the_open_h2_stream() {
    let (service, mut gate) = Gate::app();
    let downstream = Downstream::h2();
    let drain = downstream.drain.clone();
    let (io, served) = downstream.serve(service);
    let (mut client, conn) = h2_client(io).await;
    let req = Request::get("http://app.local/")
        .body(Full::default())
        .expect("request");
    let pending = tokio::spawn(client.send_request(req));
    let res = answered_while_draining(&mut gate, &drain, pending).await;
    assert_eq!(body_text(res.into_body()).await, "done");
    assert!(within("the server side to finish", served).await.is_ok());
    let ended = within("the client connection to end", conn).await;
    assert!(
        matches!(ended, Ok(Ok(()))),
        "GOAWAY is a clean end: {ended:?}"
    );
}

mod idle;
