//! Opening a connection to an upstream target: the real TCP dial, or an injected
//! connector.
//!
//! The pools and the opaque TCP path never dial directly; they ask the
//! [`Connector`] of their [`super::Upstreams`]. The default dials TCP (each address a
//! name resolves to, in turn); tests give a [`Connect`] implementation that
//! returns in-memory IO (`tokio::io::duplex`) or never completes, so timeouts and
//! refusals are tested in-process with a paused clock. The real path stays a
//! plain [`TcpStream`] ([`UpstreamIo::Tcp`]): no box and no dynamic call per read.
//! A response read only in part is acknowledged at once ([`Dialled`]), so an
//! app with Nagle's algorithm on never waits out our delayed ACK.

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
    Tcp(Dialled),
    /// What an injected connector returned.
    Custom(Box<dyn Io>),
}

// === impl Connector ===

impl Connector {
    /// Connects to `target` within `timeout`; a timeout is an
    /// [`io::ErrorKind::TimedOut`] error, as the dial reports it.
    pub async fn connect(&self, target: &HostPort, timeout: Duration) -> io::Result<UpstreamIo> {
        match self {
            Self::Tcp => dial(target, timeout)
                .await
                .map(|stream| UpstreamIo::Tcp(Dialled::new(stream))),
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

impl UpstreamIo {
    /// Notes that the exchange's response was read whole: the upstream awaits
    /// no ACK from us (the next request carries it), so a read that finds
    /// nothing — the pool's probe of an idle connection — sends none.
    pub fn answered(&mut self) {
        if let Self::Tcp(io) = self {
            io.ack = Ack::Waiting;
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => io.poll_read(cx, buf),
            Self::Custom(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

/// A dialled upstream socket that acknowledges a partly read response at once.
///
/// An app with Nagle's algorithm on (Python's `http.server`, and any server that
/// does not set `TCP_NODELAY`) that writes a response's head and body in two
/// calls sends the body only once the head is acknowledged. A pooled connection
/// carries exchange after exchange, so Linux deems it interactive ("pingpong")
/// and delays its ACKs by 40 ms or more, to piggyback them on data we never
/// send: every response on a reused connection waited that long.
/// `TCP_QUICKACK` sends the pending ACK now and leaves pingpong mode. It is not
/// sticky: only our own writes bring the mode back (Linux enters it when we send
/// soon after receiving). Out of pingpong mode the kernel itself acknowledges a
/// small segment as soon as it is read.
///
/// So it is set when a read finds nothing more after one that returned data
/// since our last write: the upstream has sent part of its answer and may be
/// waiting for our ACK to send the rest. At most once per exchange. A response
/// read whole in one go needs no ACK of its own — it rides on the next request
/// — so the usual exchange makes no `setsockopt` and sends no bare ACK segment
/// (on loopback the kernel's work for that segment, both ends of it, cost more
/// than the rest of the exchange's syscalls).
pub struct Dialled {
    stream: TcpStream,
    ack: Ack,
}

/// Where an exchange stands for [`Dialled`]'s ACK.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// Nothing read since the last write.
    Waiting,
    /// Data read since the last write: the upstream may await our ACK of it.
    Owed,
    /// `TCP_QUICKACK` set since the last write.
    Sent,
}

impl Dialled {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            ack: Ack::Waiting,
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before && self.ack == Ack::Waiting => {
                self.ack = Ack::Owed;
            }
            Poll::Pending if self.ack == Ack::Owed => {
                self.ack = Ack::Sent;
                ack_now(&self.stream);
            }
            _ => {}
        }
        read
    }

    /// Notes a write's outcome: bytes sent start the next exchange.
    fn wrote(&mut self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(1..))) {
            self.ack = Ack::Waiting;
        }
        written
    }
}

/// Sets `TCP_QUICKACK` on `stream` ([`Dialled`]). A failure changes nothing but
/// the ACK's timing.
fn ack_now(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_quickack(true) {
        tracing::trace!(%error, "cannot set TCP_QUICKACK");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(io) => {
                let written = Pin::new(&mut io.stream).poll_write(cx, buf);
                io.wrote(written)
            }
            Self::Custom(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(io) => {
                let written = Pin::new(&mut io.stream).poll_write_vectored(cx, bufs);
                io.wrote(written)
            }
            Self::Custom(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(io) => io.stream.is_write_vectored(),
            Self::Custom(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(&mut io.stream).poll_flush(cx),
            Self::Custom(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(&mut io.stream).poll_shutdown(cx),
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

    fn stream(io: &UpstreamIo) -> &TcpStream {
        match io {
            UpstreamIo::Tcp(dialled) => &dialled.stream,
            UpstreamIo::Custom(_) => unreachable!("built as Tcp"),
        }
    }

    /// Polls `io` for a read once, without waiting.
    fn read_now(io: &mut UpstreamIo, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = ReadBuf::new(buf);
        Pin::new(io)
            .poll_read(&mut cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    /// Runs exchanges on one connection, as the pool carries them, until
    /// `checked` has been called on three in which Linux had deemed the
    /// connection interactive (pingpong mode, delayed ACKs) after the request.
    /// The app answers `first`, then, once `checked` has looked at the
    /// connection with `first` read, `rest`.
    async fn pingpong_exchanges(first: &[u8], rest: &[u8], checked: impl Fn(&mut UpstreamIo)) {
        let listener = listen::bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let client = listen::connect(listener.local_addr().unwrap(), BOUND)
            .await
            .unwrap();
        let (mut app, _) = listener.accept().await.unwrap();
        let mut io = UpstreamIo::Tcp(Dialled::new(client));
        let mut buf = [0u8; 7];
        let mut seen = 0;
        for round in 0.. {
            assert!(
                round < 200,
                "the connection entered pingpong mode only {seen} times"
            );
            io.write_all(b"request").await.unwrap();
            app.read_exact(&mut buf).await.unwrap();
            let delaying = !acks_at_once(stream(&io));
            send(&mut app, &mut io, first).await;
            if delaying {
                checked(&mut io);
            }
            send(&mut app, &mut io, rest).await;
            if delaying {
                seen += 1;
                if seen == 3 {
                    break;
                }
            }
        }
    }

    /// The app sends `bytes`; `io` reads them all.
    async fn send(app: &mut TcpStream, io: &mut UpstreamIo, bytes: &[u8]) {
        app.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; bytes.len()];
        tokio::time::timeout(BOUND, io.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, bytes);
    }

    #[tokio::test]
    async fn a_partly_read_response_is_acknowledged_at_once() {
        // The app sent a response's head; its body waits for our ACK (Nagle).
        // The read that finds nothing more must send that ACK.
        pingpong_exchanges(b"head", b"body", |io| {
            let mut buf = [0u8; 8];
            assert!(read_now(io, &mut buf).is_pending(), "nothing more was sent");
            assert!(
                acks_at_once(stream(io)),
                "the upstream socket still delays its ACK of a partly read response: \
                 an app with Nagle on waits 40 ms to send the rest of it"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_response_read_whole_leaves_its_ack_to_the_next_request() {
        // A bare ACK segment per exchange is kernel work on both ends: the
        // usual response, read whole, sets nothing.
        pingpong_exchanges(b"response", b"", |io| {
            // The pool takes the connection back, and later probes it for a
            // close before reusing it: a read that finds nothing.
            io.answered();
            let mut buf = [0u8; 8];
            assert!(read_now(io, &mut buf).is_pending(), "nothing more was sent");
            assert!(
                !acks_at_once(stream(io)),
                "a whole response was acknowledged on its own (TCP_QUICKACK set)"
            );
        })
        .await;
    }
}
