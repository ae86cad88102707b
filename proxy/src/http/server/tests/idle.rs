//! The head and idle deadlines of downstream connections (issue 14), on the
//! paused clock: a kept-alive connection waits `timeouts.idle` for its next
//! request, not `header_read`; a head still has `header_read` to complete; a
//! request in flight is never idle.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{get, with_header_read, HEADER_READ};
use crate::test_support::{app, body_text, h1_client, h2_client, response, Downstream, Gate};

/// The idle timeout of [`Downstream`] (`timeouts.idle`'s default).
const IDLE: Duration = Duration::from_secs(120);

/// How long the server takes to close `io`, reading past what it sends.
async fn time_until_closed(io: &mut (impl AsyncRead + Unpin)) -> Duration {
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = io.read_to_end(&mut buf).await;
    start.elapsed()
}

/// Serves one request on a new HTTP/1 connection with the header-read
/// deadline set; returns the client, still connected, and its connection task.
async fn after_one_request() -> (SendRequest<Full<Bytes>>, JoinHandle<hyper::Result<()>>) {
    let (service, _seen) = app(|| response(StatusCode::OK, "ok"));
    let (io, _served) = with_header_read().serve(service);
    let (mut client, conn) = h1_client(io).await;
    let res = client.send_request(get("/", &[])).await;
    assert_eq!(
        body_text(res.expect("first response").into_body()).await,
        "ok"
    );
    (client, conn)
}

/// Writes a whole request and reads its (empty-bodied) response head.
async fn one_raw_request(io: &mut DuplexStream) {
    let request = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    io.write_all(request).await.expect("write to the server");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(io.read_u8().await.expect("the response"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_idle_longer_than_header_read_serves_its_next_request() {
    let (mut client, _conn) = after_one_request().await;
    tokio::time::sleep(HEADER_READ * 2).await;
    let res = client.send_request(get("/", &[])).await;
    let res = res.expect("served after waiting past header_read");
    assert_eq!(body_text(res.into_body()).await, "ok");
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_closes_cleanly_at_the_idle_timeout() {
    let (client, conn) = after_one_request().await;
    let idle_since = Instant::now();
    let ended = conn.await.expect("client task");
    assert!(ended.is_ok(), "an end of stream, not an error: {ended:?}");
    assert_eq!(idle_since.elapsed(), IDLE);
    assert!(client.is_closed(), "the client knows before reusing it");
}

#[tokio::test(start_paused = true)]
async fn a_request_reusing_the_connection_just_before_the_idle_boundary_is_served() {
    let (mut client, conn) = after_one_request().await;
    tokio::time::sleep(IDLE - Duration::from_millis(1)).await;
    let res = client.send_request(get("/", &[])).await;
    let res = res.expect("served, not cut by the idle close");
    assert_eq!(body_text(res.into_body()).await, "ok");
    let idle_since = Instant::now();
    assert!(matches!(conn.await, Ok(Ok(()))));
    assert_eq!(idle_since.elapsed(), IDLE, "the idle wait started over");
}

#[tokio::test(start_paused = true)]
async fn a_head_begun_on_a_kept_alive_connection_has_header_read_from_its_first_byte() {
    let (service, seen) = app(|| response(StatusCode::OK, ""));
    let (mut io, _served) = with_header_read().serve(service);
    one_raw_request(&mut io).await;
    tokio::time::sleep(IDLE / 2).await;
    let half = b"GET /half HTTP/1.1\r\n";
    io.write_all(half).await.expect("write to the server");
    assert_eq!(time_until_closed(&mut io).await, HEADER_READ);
    assert!(seen.try_recv().is_ok(), "the whole request was served");
    assert!(seen.try_recv().is_err(), "the half head never reached it");
}

#[tokio::test(start_paused = true)]
async fn a_head_trickled_byte_by_byte_is_cut_off_at_header_read_from_accept() {
    let (service, seen) = app(|| response(StatusCode::OK, ""));
    let (io, _served) = with_header_read().serve(service);
    let (mut from_server, mut to_server) = tokio::io::split(io);
    let head = b"GET / HTTP/1.1\r\nx-slow: ".iter().copied();
    let _trickle = tokio::spawn(async move {
        for byte in head.chain(std::iter::repeat(b'a')) {
            if to_server.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert_eq!(time_until_closed(&mut from_server).await, HEADER_READ);
    assert!(
        seen.try_recv().is_err(),
        "the head never reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn a_response_slower_than_the_idle_timeout_is_not_cut() {
    let (service, mut gate) = Gate::app();
    let (io, _served) = Downstream::http1().serve(service);
    let (mut client, _conn) = h1_client(io).await;
    let pending = tokio::spawn(client.send_request(get("/", &[])));
    gate.arrived().await;
    tokio::time::sleep(IDLE * 2).await;
    gate.open();
    let res = pending.await.expect("client task");
    let res = res.expect("the slow response");
    assert_eq!(body_text(res.into_body()).await, "done");
}

#[tokio::test(start_paused = true)]
async fn an_h2_stream_open_longer_than_the_idle_timeout_is_not_cut() {
    let (service, mut gate) = Gate::app();
    let (io, _served) = Downstream::h2().serve(service);
    let (mut client, _conn) = h2_client(io).await;
    let req = Request::get("http://app.local/").body(Full::default());
    let pending = tokio::spawn(client.send_request(req.expect("request")));
    gate.arrived().await;
    tokio::time::sleep(IDLE * 2).await;
    gate.open();
    let res = pending.await.expect("client task");
    let res = res.expect("the slow response");
    assert_eq!(body_text(res.into_body()).await, "done");
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_request_slower_than_the_idle_timeout_is_not_cut() {
    let (service, mut gate) = Gate::app();
    let (mut io, _served) = Downstream::http1().serve(service);
    let two = b"GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n";
    io.write_all(two).await.expect("write to the server");
    gate.arrived().await;
    gate.open();
    // The second head was read with the first: it starts as the first ends.
    gate.arrived().await;
    tokio::time::sleep(IDLE * 2).await;
    gate.open();
    let mut got = Vec::new();
    while got.windows(4).filter(|w| w == b"done").count() < 2 {
        let byte = io.read_u8().await.expect("both responses");
        got.push(byte);
    }
}
