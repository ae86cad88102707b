//! Idle downstream connections over real TCP (issue 14): a kept-alive HTTP/1
//! connection waits `timeouts.idle` for its next request, not
//! `timeouts.header_read`, and then ends with a FIN (a clean end of stream),
//! never a reset.

use std::time::{Duration, Instant};

use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::TcpConn;
use meshtrace_tests::sidecar;

/// Reads one response whose body has a `content-length`.
async fn read_response(conn: &mut TcpConn) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let more = conn.read_some().await;
        assert!(!more.is_empty(), "closed mid-response: {got:?}");
        got.extend(more);
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length = text[..end]
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse::<usize>().ok())
            .expect("a content-length");
        if got.len() >= end + 4 + length {
            return got;
        }
    }
}

#[tokio::test]
async fn an_idle_http1_connection_outlives_header_read_and_ends_with_a_fin() {
    let app = HttpApp::start().await;
    let (header_read, idle) = (Duration::from_millis(200), Duration::from_millis(1500));
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .header_read_timeout(200)
        .idle_timeout(1500)
        .start()
        .await;
    let mut conn = TcpConn::connect(proxy.inbound_addr()).await;
    conn.write(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n").await;
    let response = read_response(&mut conn).await;
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    let idle_since = Instant::now();
    let rest = conn.try_read_to_end().await;
    // The deadline started when the response was flushed, a little earlier
    // (so no upper bound here: the unit tests check it on the paused clock).
    let waited = idle_since.elapsed();
    assert!(
        matches!(&rest, Ok(rest) if rest.is_empty()),
        "a FIN, not a reset: {rest:?}"
    );
    assert!(
        waited > header_read * 3,
        "closed after {waited:?}: the idle timeout is {idle:?}"
    );
}
