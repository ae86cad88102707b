//! Mock TCP applications for opaque forwarding: an echo server, and a
//! server-speaks-first one (like SMTP or MySQL) that greets before the client
//! says anything, which is what protocol detection must not wait for.

use std::net::SocketAddr;

use tokio::io::{self, AsyncWriteExt};
use tokio::net::TcpStream;

use super::serve::Serving;

/// The greeting [`TcpBannerApp`] sends on accept.
pub const BANNER: &[u8] = b"220 banner\r\n";

/// Echoes every byte back; when the client shuts down its write half, the app
/// shuts down its own, so a test sees half-closes travel both ways.
#[derive(Debug)]
pub struct TcpEchoApp {
    serving: Serving,
}

/// Writes [`BANNER`] as soon as a connection is accepted, then echoes like
/// [`TcpEchoApp`].
#[derive(Debug)]
pub struct TcpBannerApp {
    serving: Serving,
}

// === impl TcpEchoApp ===

impl TcpEchoApp {
    /// Starts the app on `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self {
            serving: Serving::bind(echo).await,
        }
    }

    /// Where the app listens.
    pub fn addr(&self) -> SocketAddr {
        self.serving.addr()
    }

    /// How many connections the app has accepted.
    pub fn connections(&self) -> usize {
        self.serving.accepted()
    }
}

// === impl TcpBannerApp ===

impl TcpBannerApp {
    /// Starts the app on `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self {
            serving: Serving::bind(|mut stream: TcpStream| async move {
                if stream.write_all(BANNER).await.is_ok() {
                    echo(stream).await;
                }
            })
            .await,
        }
    }

    /// Where the app listens.
    pub fn addr(&self) -> SocketAddr {
        self.serving.addr()
    }

    /// How many connections the app has accepted.
    pub fn connections(&self) -> usize {
        self.serving.accepted()
    }
}

async fn echo(mut stream: TcpStream) {
    let (mut read, mut write) = stream.split();
    if io::copy(&mut read, &mut write).await.is_ok() {
        let _ = write.shutdown().await;
    }
}
