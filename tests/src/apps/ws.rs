//! The mock WebSocket application: a plain HTTP/1.1 `Upgrade: websocket` server
//! that echoes every text and binary message, for tests of the proxy's upgrade
//! path.
//!
//! Its `101 Switching Protocols` response carries the same `x-echo-*` headers as
//! the HTTP app's responses, so a test can check what the upgrade request looked
//! like when it arrived.

use std::net::SocketAddr;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::echo_headers;
use super::serve::Serving;

/// A running WebSocket echo server; stops when dropped.
#[derive(Debug)]
pub struct WsEchoApp {
    serving: Serving,
}

// === impl WsEchoApp ===

impl WsEchoApp {
    /// Starts the app on `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self {
            serving: Serving::bind(echo).await,
        }
    }

    /// Where the app listens (`ws://ADDR/any/path`).
    pub fn addr(&self) -> SocketAddr {
        self.serving.addr()
    }

    /// How many connections the app has accepted.
    pub fn connections(&self) -> usize {
        self.serving.accepted()
    }
}

async fn echo(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, add_echo_headers).await else {
        return;
    };
    // Pings are answered by tungstenite itself; a close is answered when it is
    // read, after which the stream ends.
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

/// Puts the echo headers on the `101` response. The signature is tungstenite's
/// callback; its large error type is not ours to shrink.
#[allow(clippy::result_large_err)]
fn add_echo_headers(req: &Request, mut rsp: Response) -> Result<Response, ErrorResponse> {
    rsp.headers_mut().extend(echo_headers(req));
    Ok(rsp)
}
