//! A WebSocket client (plain `ws://`, HTTP/1.1 Upgrade).

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::WebSocketStream;

use crate::bound::within;

/// A WebSocket message, re-exported so tests need no extra import.
pub use tokio_tungstenite::tungstenite::Message as WsMessage;

/// An open WebSocket: a `Stream` of received messages and a `Sink` to send.
pub type WsStream = WebSocketStream<TcpStream>;

/// Opens `ws://ADDR/path`; the `101` response is returned for its headers.
pub async fn ws_connect(addr: SocketAddr, path: &str) -> (WsStream, Response) {
    ws_connect_request(addr, format!("ws://{addr}{path}")).await
}

/// Opens a WebSocket on a TCP connection to `addr`, with a request built by the
/// test: another `Host` (`ws://svc:80/chat`), extra headers.
pub async fn ws_connect_request(
    addr: SocketAddr,
    request: impl IntoClientRequest,
) -> (WsStream, Response) {
    let request = request
        .into_client_request()
        .expect("a valid WebSocket request");
    let what = format!("a WebSocket handshake with {addr} for {}", request.uri());
    let stream = within(format!("connecting to {addr}"), TcpStream::connect(addr))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    within(&what, tokio_tungstenite::client_async(request, stream))
        .await
        .unwrap_or_else(|e| panic!("{what} failed: {e}"))
}
