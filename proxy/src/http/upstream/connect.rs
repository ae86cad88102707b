//! Opening a connection to an upstream target: the real TCP dial, or an injected
//! connector.
//!
//! The pools and the opaque TCP path never dial directly; they ask the
//! [`Connector`] of their [`super::Upstreams`]. The default dials TCP (each address a
//! name resolves to, in turn); tests give a [`Connect`] implementation that
//! returns in-memory IO (`tokio::io::duplex`) or never completes, so timeouts and
//! refusals are tested in-process with a paused clock. The real path stays a
//! plain [`TcpStream`] ([`UpstreamIo::Tcp`]): no box and no dynamic call per read.
//! Each read from it that returns data is acknowledged at once ([`ack_now`]), so
//! an app with Nagle's algorithm on never waits out our delayed ACK.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use meshtrace_config::HostPort;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::listen;
use crate::metrics::ErrorKind;

/// IO an injected connector may return: anything a byte stream can be.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection being opened by an injected connector (boxed once per
/// connection, never per request).
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send + 'static>>;

/// Opens connections to upstream targets instead of the TCP dial: the seam that
/// lets the forwarding path run over in-memory IO in tests.
pub trait Connect: Send + Sync + 'static {
    /// Starts connecting to `target`. The caller bounds it by the connect
    /// timeout and classifies its error like a dial's ([`classify_connect`]).
    fn connect(&self, target: &HostPort) -> Connecting;
}

/// How [`super::Upstreams`] opens connections; cheap to clone.
#[derive(Clone, Default)]
pub enum Connector {
    /// The real dial ([`dial`]).
    #[default]
    Tcp,
    /// An injected connector.
    Custom(Arc<dyn Connect>),
}

/// An open upstream connection.
pub enum UpstreamIo {
    /// A dialled socket (the production path).
    Tcp(TcpStream),
    /// What an injected connector returned.
    Custom(Box<dyn Io>),
}

// === impl Connector ===

impl Connector {
    /// Connects to `target` within `timeout`; a timeout is an
    /// [`io::ErrorKind::TimedOut`] error, as the dial reports it.
    pub async fn connect(&self, target: &HostPort, timeout: Duration) -> io::Result<UpstreamIo> {
        match self {
            Self::Tcp => dial(target, timeout).await.map(UpstreamIo::Tcp),
            Self::Custom(connect) => tokio::time::timeout(timeout, connect.connect(target))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))?
                .map(UpstreamIo::Custom),
        }
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "Connector::Tcp",
            Self::Custom(_) => "Connector::Custom",
        })
    }
}

// === impl UpstreamIo ===

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => {
                let before = buf.filled().len();
                let read = Pin::new(&mut *io).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    ack_now(io);
                }
                read
            }
            Self::Custom(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

/// Acknowledges at once what a read just took from an upstream socket: sets
/// `TCP_QUICKACK`.
///
/// An app with Nagle's algorithm on (Python's `http.server`, and any server that
/// does not set `TCP_NODELAY`) that writes a response's head and body in two
/// calls sends the body only once the head is acknowledged. A pooled connection
/// carries exchange after exchange, so Linux deems it interactive ("pingpong")
/// and delays its ACKs by 40 ms or more, to piggyback them on data we never
/// send: every response on a reused connection waited that long. The option
/// sends the pending ACK now and leaves pingpong mode. It is not sticky (our
/// next request re-enters the mode), hence after every read that returned
/// data: one `setsockopt` per response in the common case. A failure changes
/// nothing but the ACK's timing.
fn ack_now(io: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(io).set_tcp_quickack(true) {
        tracing::trace!(%error, "cannot set TCP_QUICKACK");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = io;
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Self::Custom(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Custom(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(io) => io.is_write_vectored(),
            Self::Custom(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_flush(cx),
            Self::Custom(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Self::Custom(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// Dials an IP literal directly, or each address a name resolves to in turn.
pub async fn dial(target: &HostPort, timeout: Duration) -> io::Result<TcpStream> {
    if let Some(addr) = target.socket_addr() {
        return listen::connect(addr, timeout).await;
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host(), target.port()))
        .await
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve {target}: {e}"),
            )
        })?
        .collect();
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{target} resolved to no address"),
    );
    for addr in addrs {
        match listen::connect(addr, timeout).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Classifies a failed dial.
pub fn classify_connect(error: &io::Error) -> ErrorKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
        _ => ErrorKind::Unreachable,
    }
}

#[cfg(test)]
#[cfg(any(target_os = "linux", target_os = "android"))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    /// Whether Linux acknowledges received data at once on `stream`: reading
    /// `TCP_QUICKACK` tells whether it is out of "pingpong" (delayed-ACK) mode.
    fn acks_at_once(stream: &TcpStream) -> bool {
        socket2::SockRef::from(stream).tcp_quickack().unwrap()
    }

    #[tokio::test]
    async fn a_read_from_an_upstream_delays_no_ack() {
        let listener = listen::bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let mut client = listen::connect(listener.local_addr().unwrap(), BOUND)
            .await
            .unwrap();
        let (mut app, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        // Exchanges, as a pooled connection carries them, until Linux deems the
        // connection interactive and delays its ACKs (the request just written).
        for round in 0.. {
            client.write_all(b"request").await.unwrap();
            app.read_exact(&mut buf[..7]).await.unwrap();
            if !acks_at_once(&client) {
                break;
            }
            assert!(round < 100, "the connection never entered pingpong mode");
            app.write_all(b"response").await.unwrap();
            client.read_exact(&mut buf[..8]).await.unwrap();
        }
        // The app's response head, read as the pools read: through UpstreamIo.
        app.write_all(b"response").await.unwrap();
        let mut io = UpstreamIo::Tcp(client);
        let n = tokio::time::timeout(BOUND, io.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        let UpstreamIo::Tcp(client) = &io else {
            unreachable!("built as Tcp")
        };
        assert!(
            acks_at_once(client),
            "the upstream socket still delays its ACK of what was read: an app with \
             Nagle on waits 40 ms to send the rest of its response"
        );
    }
}
