//! Connections that cost the server without asking anything: silent ones, heads
//! that never finish, idle keep-alives — closed by deadline — while watches, quiet
//! between pushes, stay open.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtrace_control::server::ConnectionLimits;
use meshtrace_control::testing::{start_with, within, Running};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short deadlines, so each test takes a few seconds. The idle timeout is
/// shorter than the head deadline, so an idle HTTP/1 connection is closed by the
/// idle timeout rather than by hyper's header timer.
const LIMITS: ConnectionLimits = ConnectionLimits {
    first_byte_timeout: Duration::from_millis(1000),
    header_timeout: Duration::from_millis(2000),
    idle_timeout: Duration::from_millis(1500),
    max_connections: 1024,
};

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: control\r\n\r\n";

async fn server() -> Running {
    start_with("defaults: {}\n", Some("t"), LIMITS).await
}

/// Reads until the server closes the connection (EOF or reset); returns what it
/// sent before.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until `needle` has arrived.
async fn until_seen(stream: &mut TcpStream, needle: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Writes `bytes` one at a time, `every` apart, then keeps trickling header
/// lines, until the server closes the connection; returns when it did.
async fn trickle_until_closed(stream: &mut TcpStream, bytes: &[u8], every: Duration) {
    let mut pending = bytes
        .iter()
        .copied()
        .chain(b"x-slow: 1\r\n".iter().copied().cycle());
    let mut tick = tokio::time::interval(every);
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => panic!("an answer to an unfinished head: {:?}", String::from_utf8_lossy(&buf[..n])),
            },
            _ = tick.tick() => {
                let byte = pending.next().unwrap_or(b'x');
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The server closed no earlier than `bound` after `since`.
fn waited_at_least(since: Instant, bound: Duration) {
    let waited = since.elapsed();
    assert!(waited >= bound, "closed after {waited:?}, before {bound:?}");
}

#[tokio::test]
async fn healthz_answers_with_300_silent_connections_open_and_they_are_closed_at_the_first_byte_deadline(
) {
    let cp = server().await;
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(cp.addr).await.unwrap());
    }

    let asked = Instant::now();
    let health: Value = within("/healthz", cp.client().get("/healthz"))
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    println!(
        "/healthz with 300 silent connections open: {:?}",
        asked.elapsed()
    );

    within("the silent connections to be closed", async {
        for stream in &mut silent {
            assert_eq!(until_closed(stream).await, b"");
        }
    })
    .await;
    waited_at_least(opened, LIMITS.first_byte_timeout);
    assert_eq!(cp.connections.counts().first_byte_timeouts, 300);
}

#[tokio::test]
async fn a_request_head_trickled_byte_by_byte_is_closed_at_the_head_deadline() {
    let cp = server().await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(cp.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    within(
        "the slow head to be closed",
        trickle_until_closed(&mut stream, b"", Duration::from_millis(100)),
    )
    .await;
    waited_at_least(start, LIMITS.header_timeout);
    assert_eq!(cp.connections.counts().header_timeouts, 1);
}

#[tokio::test]
async fn a_second_request_head_trickled_on_a_keep_alive_connection_is_closed() {
    let cp = server().await;
    let mut stream = TcpStream::connect(cp.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    within("/healthz", until_seen(&mut stream, "{\"status\":\"ok\"}")).await;
    let answered = Instant::now();
    let every = Duration::from_millis(100);
    let slow = trickle_until_closed(&mut stream, b"GET /healthz HTTP/1.1\r\n", every);
    within("the slow second head to be closed", slow).await;
    let bound = LIMITS.idle_timeout.min(LIMITS.header_timeout);
    waited_at_least(answered, bound);
}

#[tokio::test]
async fn an_http2_preface_trickled_byte_by_byte_is_closed_at_the_head_deadline() {
    let cp = server().await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(cp.addr).await.unwrap();
    // 24 bytes, 200 ms apart: complete only after twice the head deadline.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let every = Duration::from_millis(200);
    within(
        "the slow preface to be closed",
        trickle_until_closed(&mut stream, preface, every),
    )
    .await;
    waited_at_least(start, LIMITS.header_timeout);
    assert_eq!(cp.connections.counts().header_timeouts, 1);
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let cp = server().await;
    let mut stream = TcpStream::connect(cp.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    within("/healthz", until_seen(&mut stream, "{\"status\":\"ok\"}")).await;
    let answered = Instant::now();
    assert_eq!(
        within("the idle close", until_closed(&mut stream)).await,
        b""
    );
    waited_at_least(answered, LIMITS.idle_timeout);
    assert_eq!(cp.connections.counts().idle_closed, 1);
}

#[tokio::test]
async fn an_idle_http2_connection_is_sent_goaway_after_the_idle_timeout() {
    let cp = server().await;
    let tcp = TcpStream::connect(cp.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .method(Method::GET)
        .uri(format!("http://{}/healthz", cp.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = within("/healthz over h2", sender.send_request(req))
        .await
        .unwrap();
    let body = within("the body", res.into_body().collect()).await.unwrap();
    assert_eq!(
        body.to_bytes(),
        Bytes::from_static(b"{\"status\":\"ok\"}\n")
    );
    let answered = Instant::now();
    within("the idle GOAWAY", conn).await.unwrap().unwrap();
    waited_at_least(answered, LIMITS.idle_timeout);
    assert_eq!(cp.connections.counts().idle_closed, 1);
}

/// Returns once both the idle timeout and the head deadline have passed since it
/// was called, as the server saw them: an idle keep-alive connection and a
/// connection with an unfinished head, opened now, have both been closed.
async fn past_the_idle_and_head_deadlines(cp: &Running) {
    let mut idle = TcpStream::connect(cp.addr).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();
    let mut slow = TcpStream::connect(cp.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    within("/healthz", until_seen(&mut idle, "{\"status\":\"ok\"}")).await;
    within("the idle close", until_closed(&mut idle)).await;
    within("the head deadline", until_closed(&mut slow)).await;
    let counts = cp.connections.counts();
    assert_eq!((counts.idle_closed, counts.header_timeouts), (1, 1));
}

async fn add_override(cp: &Running) {
    let body = json!({"service": "checkout", "rate": 1.0, "for": "10m"});
    let client = cp.client();
    let add = client.send_json(Method::POST, "/v1/overrides", &body);
    let _: Value = within("add an override", add).await.unwrap();
}

#[tokio::test]
async fn an_http1_watch_stays_open_past_the_idle_and_head_deadlines_and_keeps_receiving_pushes() {
    let cp = server().await;
    let mut watch = cp.watch("checkout", "shop", "checkout-1", &[]).await;
    let first = within("the first config", watch.next_config())
        .await
        .unwrap()
        .unwrap();

    past_the_idle_and_head_deadlines(&cp).await;

    add_override(&cp).await;
    let pushed = within("the push", watch.next_config())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(pushed.version, first.version);
    assert!(pushed.config.sampling.forced_workload.is_some());
    assert_eq!(cp.sidecars.count(), 1);
}

/// Reads the SSE body into `seen` until it holds `n` config events.
async fn configs(body: &mut hyper::body::Incoming, seen: &mut String, n: usize) {
    while seen.matches("event: config").count() < n {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test]
async fn an_http2_watch_stays_open_past_the_idle_and_head_deadlines_and_keeps_receiving_pushes() {
    let cp = server().await;
    let tcp = TcpStream::connect(cp.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!(
        "http://{}/v1/watch?service=checkout&namespace=shop&pod=checkout-1",
        cp.addr
    );
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let res = within("the watch over h2", sender.send_request(req))
        .await
        .unwrap();
    let mut body = res.into_body();
    let mut seen = String::new();
    within("the first config", configs(&mut body, &mut seen, 1)).await;

    past_the_idle_and_head_deadlines(&cp).await;

    add_override(&cp).await;
    within("the push", configs(&mut body, &mut seen, 2)).await;
    assert!(seen.contains("forced_workload"), "{seen}");
    assert_eq!(cp.sidecars.count(), 1);
}

#[tokio::test]
async fn at_the_connection_bound_a_new_connection_waits_until_a_deadline_frees_a_slot() {
    let bound = ConnectionLimits {
        max_connections: 2,
        ..LIMITS
    };
    let cp = start_with("defaults: {}\n", None, bound).await;
    let opened = Instant::now();
    let _silent = [
        TcpStream::connect(cp.addr).await.unwrap(),
        TcpStream::connect(cp.addr).await.unwrap(),
    ];
    within("the server to accept both", async {
        while cp.connections.counts().open < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    // Not accepted until the silent ones are closed: it waits in the backlog.
    let mut third = TcpStream::connect(cp.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    within("/healthz", until_seen(&mut third, "{\"status\":\"ok\"}")).await;
    waited_at_least(opened, LIMITS.first_byte_timeout);
    let counts = cp.connections.counts();
    assert!(counts.first_byte_timeouts >= 1, "{counts:?}");
    assert!(counts.limit_reached >= 1, "{counts:?}");
    assert_eq!(counts.accepted, 3);
}
