//! Opening a connection to an upstream target: the real TCP dial, or an injected
//! connector.
//!
//! The pools and the opaque TCP path never dial directly; they ask the
//! [`Connector`] of their [`super::Upstreams`]. The default dials TCP (each address a
//! name resolves to, in turn); tests give a [`Connect`] implementation that
//! returns in-memory IO (`tokio::io::duplex`) or never completes, so timeouts and
//! refusals are tested in-process with a paused clock. The real path stays a
//! plain [`TcpStream`] ([`UpstreamIo::Tcp`]): no box and no dynamic call per read.

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
            Self::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Self::Custom(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
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
