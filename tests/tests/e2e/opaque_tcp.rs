//! Opaque TCP through the sidecar: bytes that are not HTTP are forwarded untouched
//! (the ones detection read included), server-speaks-first protocols on opaque
//! ports are never made to wait for detection, half-closes travel through, silent
//! connections are closed after `timeouts.idle`, and explicit mode sends non-HTTP
//! connections to `outbound.tcp_target`.

use std::time::Duration;

use meshtrace_tests::apps::{TcpBannerApp, TcpEchoApp, BANNER};
use meshtrace_tests::bound::within_for;
use meshtrace_tests::client::TcpConn;
use meshtrace_tests::sidecar;

/// The start of a TLS 1.2 ClientHello record: a handshake record (`0x16`),
/// version 3.1, a length, then binary handshake bytes. Not HTTP from byte one.
const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\x2e\x01\x00\x00\x2a\x03\x03\x00\xff\x10\x80\r\n\x00";

#[tokio::test]
async fn non_http_bytes_are_echoed_byte_for_byte_including_those_detection_read() {
    let app = TcpEchoApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut conn = TcpConn::connect(proxy.inbound_addr()).await;
    conn.write(CLIENT_HELLO).await;
    assert_eq!(conn.read_exact(CLIENT_HELLO.len()).await, CLIENT_HELLO);
    let after_detection = [0u8, 1, 2, 0xfe, 0xff];
    conn.write(&after_detection).await;
    assert_eq!(
        conn.read_exact(after_detection.len()).await,
        after_detection
    );
}

#[tokio::test]
async fn server_speaks_first_on_an_opaque_port_without_waiting_for_detection() {
    let app = TcpBannerApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .opaque_port(app.addr().port())
        .detect_timeout(30_000)
        .start()
        .await;
    let mut conn = TcpConn::connect(proxy.inbound_addr()).await;
    // Far below the detect timeout: a proxy that waited for the client to speak
    // first would fail here.
    let banner = within_for(
        Duration::from_secs(5),
        "the banner, before the client says anything",
        conn.read_exact(BANNER.len()),
    )
    .await;
    assert_eq!(banner, BANNER);
}

#[tokio::test]
async fn client_half_close_reaches_the_app_and_the_client_still_reads_the_rest() {
    let app = TcpEchoApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut conn = TcpConn::connect(proxy.inbound_addr()).await;
    // 64 KiB: more than one copy buffer of the proxy, less than the socket
    // buffers hold, so the echo waits for the client to read it.
    let sent: Vec<u8> = CLIENT_HELLO
        .iter()
        .copied()
        .cycle()
        .take(64 << 10)
        .collect();
    conn.write(&sent).await;
    conn.shutdown_write().await;
    // The app shuts its side down only once it read the client's FIN, so this
    // ends only if the half-close went through and the echo kept flowing back.
    let received = conn.read_to_end().await;
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "the echoed bytes differ from those sent");
}

#[tokio::test]
async fn opaque_connections_are_counted_as_protocol_tcp() {
    let app = TcpEchoApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut conn = TcpConn::connect(proxy.inbound_addr()).await;
    conn.write(CLIENT_HELLO).await;
    conn.read_exact(CLIENT_HELLO.len()).await;
    let metrics = proxy.metrics().await;
    let series = r#"meshtrace_connections_total{direction="inbound",protocol="tcp"}"#;
    let value = sidecar::metric_value(&metrics, series)
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{metrics}"));
    assert!(value > 0.0, "{series} is {value}");
}

#[tokio::test]
async fn explicit_mode_forwards_non_http_bytes_to_the_tcp_target() {
    let target = TcpEchoApp::start().await;
    let proxy = sidecar::new().tcp_target(target.addr()).start().await;
    let mut conn = TcpConn::connect(proxy.outbound_addr()).await;
    conn.write(CLIENT_HELLO).await;
    assert_eq!(conn.read_exact(CLIENT_HELLO.len()).await, CLIENT_HELLO);
    assert_eq!(target.connections(), 1);
}

#[tokio::test]
async fn silent_opaque_connection_is_closed_after_the_idle_timeout() {
    let app = TcpEchoApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .idle_timeout(300)
        .start()
        .await;
    let mut conn = TcpConn::connect(proxy.inbound_addr()).await;
    conn.write(CLIENT_HELLO).await;
    conn.read_exact(CLIENT_HELLO.len()).await;
    // Neither side sends anything more: only the idle timeout can end it.
    let rest = within_for(
        Duration::from_secs(5),
        "the proxy to close the idle connection",
        conn.try_read_to_end(),
    )
    .await;
    match rest {
        Ok(rest) => assert!(rest.is_empty(), "unexpected bytes: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}
