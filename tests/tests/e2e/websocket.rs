//! WebSocket through the sidecar's inbound listener: the HTTP/1.1 upgrade reaches
//! the app, and the upgraded connection is then a tunnel that carries text and
//! binary messages both ways until the closing handshake ends it.

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use meshtrace_tests::apps::WsEchoApp;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{self, WsMessage, WsStream};
use meshtrace_tests::sidecar::{self, Proxy};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

#[tokio::test]
async fn upgrade_is_answered_by_the_app_with_101() {
    let (_app, proxy) = inbound().await;
    let (_ws, rsp) = client::ws_connect(proxy.inbound_addr(), "/chat").await;
    assert_eq!(rsp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(rsp.headers()["x-echo-path"], "/chat");
    assert_eq!(rsp.headers()["x-echo-header-upgrade"], "websocket");
}

#[tokio::test]
async fn text_message_is_echoed_through_the_tunnel() {
    let (_app, proxy) = inbound().await;
    let (mut ws, _) = client::ws_connect(proxy.inbound_addr(), "/chat").await;
    send(&mut ws, WsMessage::text("hello, app")).await;
    assert_eq!(next(&mut ws).await, WsMessage::text("hello, app"));
}

#[tokio::test]
async fn binary_message_is_echoed_byte_for_byte() {
    let (_app, proxy) = inbound().await;
    let (mut ws, _) = client::ws_connect(proxy.inbound_addr(), "/bin").await;
    let payload: Vec<u8> = (0..=255).collect();
    send(&mut ws, WsMessage::binary(payload.clone())).await;
    assert_eq!(next(&mut ws).await, WsMessage::binary(payload));
}

#[tokio::test]
async fn many_round_trips_share_one_upgraded_connection() {
    let (app, proxy) = inbound().await;
    let (mut ws, _) = client::ws_connect(proxy.inbound_addr(), "/chat").await;
    for n in 0..20 {
        let message = WsMessage::text(format!("message {n}"));
        send(&mut ws, message.clone()).await;
        assert_eq!(next(&mut ws).await, message);
    }
    assert_eq!(app.connections(), 1);
}

#[tokio::test]
async fn large_binary_message_crosses_the_tunnel_intact() {
    let (_app, proxy) = inbound().await;
    let (mut ws, _) = client::ws_connect(proxy.inbound_addr(), "/bin").await;
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    send(&mut ws, WsMessage::binary(payload.clone())).await;
    assert!(next(&mut ws).await == WsMessage::binary(payload));
}

#[tokio::test]
async fn closing_handshake_completes_through_the_tunnel() {
    let (_app, proxy) = inbound().await;
    let (mut ws, _) = client::ws_connect(proxy.inbound_addr(), "/chat").await;
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    within("sending the close frame", ws.close(Some(close)))
        .await
        .expect("the close frame is sent");
    // The app answers with its own close frame, then the stream ends.
    let reply = next(&mut ws).await;
    let WsMessage::Close(Some(frame)) = reply else {
        panic!("expected the app's close frame, got {reply:?}");
    };
    assert_eq!(frame.code, CloseCode::Normal);
    let end = within("the end of the WebSocket", ws.next()).await;
    assert!(end.is_none(), "after the closing handshake: {end:?}");
}

// === helpers ===

/// The WebSocket echo app behind a default sidecar's inbound listener.
async fn inbound() -> (WsEchoApp, Proxy) {
    let app = WsEchoApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    (app, proxy)
}

async fn send(ws: &mut WsStream, message: WsMessage) {
    within("sending a WebSocket message", ws.send(message))
        .await
        .expect("the message is sent");
}

/// The next message; panics if the connection ends or fails instead.
async fn next(ws: &mut WsStream) -> WsMessage {
    within("the next WebSocket message", ws.next())
        .await
        .expect("a message, not the end of the connection")
        .expect("a message, not an error")
}
