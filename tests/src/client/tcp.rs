//! A raw TCP client, for opaque forwarding and for requests too malformed for an
//! HTTP client library to send.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bound::within;

/// A TCP connection whose every read and write is bounded.
#[derive(Debug)]
pub struct TcpConn {
    stream: TcpStream,
    peer: SocketAddr,
}

// === impl TcpConn ===

impl TcpConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let (stream, _) = connect(addr).await;
        Self { stream, peer: addr }
    }

    /// The client side of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .expect("a connected socket's local address")
    }

    /// Writes all of `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) {
        let what = format!("writing {} bytes to {}", bytes.len(), self.peer);
        within(&what, self.stream.write_all(bytes))
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"));
    }

    /// Reads exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        let what = format!("reading {n} bytes from {}", self.peer);
        within(&what, self.stream.read_exact(&mut buf))
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"));
        buf
    }

    /// Reads whatever arrives next (empty once the peer closed its side).
    pub async fn read_some(&mut self) -> Vec<u8> {
        let mut buf = vec![0; 64 * 1024];
        let what = format!("reading from {}", self.peer);
        let n = within(&what, self.stream.read(&mut buf))
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"));
        buf.truncate(n);
        buf
    }

    /// Reads until the peer closes its side.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        self.try_read_to_end()
            .await
            .unwrap_or_else(|e| panic!("reading {} to its end failed: {e}", self.peer))
    }

    /// Reads until the peer closes its side; an error is a reset, for tests
    /// that expect the proxy to abort a connection.
    pub async fn try_read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let what = format!("{} to close the connection", self.peer);
        within(&what, self.stream.read_to_end(&mut buf)).await?;
        Ok(buf)
    }

    /// Closes the write half (sends FIN) and keeps reading possible: the
    /// half-close an opaque proxy must pass on.
    pub async fn shutdown_write(&mut self) {
        let what = format!("shutting down writes to {}", self.peer);
        within(&what, self.stream.shutdown())
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"));
    }

    /// The socket, for a test that needs more than these helpers.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

/// A bounded connect with `TCP_NODELAY`, returning the stream and its local
/// address; every client here starts with it.
pub(crate) async fn connect(addr: SocketAddr) -> (TcpStream, SocketAddr) {
    let stream = within(format!("connecting to {addr}"), TcpStream::connect(addr))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .expect("a connected socket's local address");
    (stream, local)
}
