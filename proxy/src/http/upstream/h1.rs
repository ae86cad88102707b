//! The HTTP/1 pool: idle connections wait in a LIFO list (the most recently used
//! is the warmest); a request takes one or dials, and its response body gives
//! the connection back when it ends ([`super::body`]).
//!
//! The exchange is our own ([`codec`]): the request head is written from the
//! request, the response head parsed with `httparse`, and the body framed by
//! the rules hyper's client follows. A connection has no task and no channel:
//! the downstream connection's task writes the request and reads the response
//! itself — the request future until the response head arrives, then the
//! response body. Against hyper's client driven the same way (on this task
//! too), this spares its request channel, its dispatcher's state machine and
//! its body channel: 38 078 → 33 200 instructions per proxied request
//! (benches/RESULTS.md, issue 18, "HTTP/1.1 — the upstream client codec").
//!
//! An upload still going when the response head arrives goes on in the
//! response body's polls; one still going when the response has ended is
//! abandoned with its connection (which is not reused). A connection idle in
//! the pool is not polled at all: one the upstream closed is found on
//! checkout, by a read that must find nothing to read.
//!
//! A request that needs an upgrade (WebSocket) is sent with hyper's client on a
//! connection of its own, never pooled: hyper completes the upgrade that the
//! forwarding layer tunnels.
//!
//! A request on a reused connection that got no byte of response because the
//! upstream closed the connection under it (it timed out the idle connection
//! as the request went out) is sent again on the next connection when that is
//! safe: nothing of it was written, or it is idempotent and has no body. A
//! fresh connection's failure is final.

mod codec;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use futures_util::future;
use http::header::UPGRADE;
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;

pub use codec::ProtocolError;

pub(super) use self::codec::{Decoded, Framing};
use self::codec::{Final, Head, Send};
use super::body::{Exchange, UpstreamBody};
use super::{Idle, Pool, SendError, UpstreamIo, MAX_IDLE_PER_TARGET};

/// Bytes read from the socket at a time, at least.
const READ_SIZE: usize = 8 * 1024;

/// An idle HTTP/1 connection, or one carrying an exchange.
pub(super) struct Conn {
    io: UpstreamIo,
    /// Bytes read and not yet consumed.
    read: BytesMut,
    /// Bytes to write; `written` of them are.
    write: Vec<u8>,
    written: usize,
    /// The upstream closed its side (a read returned nothing).
    eof: bool,
}

/// Why an HTTP/1 exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// Reading or writing the connection failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The upstream broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The request body did not match its `content-length`.
    #[error("the request body does not match its content-length")]
    BodyLength,
}

/// A failed upload: the connection's, or the downstream request body's.
enum UploadError {
    Conn(Http1Error),
    Body(hyper::Error),
}

/// The request body on its way to the upstream.
pub(super) struct Upload {
    body: Incoming,
    send: Send,
    /// For a chunked body: the trailers the request head declares (in
    /// `Trailer`), the only ones sent.
    declared: Vec<http::HeaderName>,
    /// Bytes of the body taken from the downstream.
    sent: u64,
    /// A frame of the body was taken: the request can no longer be replayed.
    started: bool,
}

// === impl Pool ===

impl Pool {
    /// Not an `async fn`: one would hold the request twice (its argument is
    /// never overlapped with the parts taken from it), in a future every move
    /// copies whole.
    pub(super) fn send_h1(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + std::marker::Send + 'static
    {
        if req.headers().contains_key(UPGRADE) {
            // Boxed: rare, and its future is large.
            return future::Either::Left(Box::pin(async move { self.send_upgrade(req).await }));
        }
        let (parts, body) = req.into_parts();
        let send = codec::request_framing(&parts, body.size_hint().exact());
        let upload = match send {
            Send::Length(0) => None,
            _ => Some(Upload {
                declared: match send {
                    Send::Chunked { trailers: true } => codec::trailer_names(&parts.headers),
                    _ => Vec::new(),
                },
                body,
                send,
                sent: 0,
                started: false,
            }),
        };
        future::Either::Right(self.exchange(parts, send, upload))
    }

    /// Sends the request of `parts` (framed as `send`, its body in `upload`)
    /// on a pooled connection, dialling one if none is idle, and reads the
    /// response head.
    async fn exchange(
        self: Arc<Self>,
        mut parts: Parts,
        send: Send,
        mut upload: Option<Upload>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let had_body = upload.is_some();
        // The head is encoded once, into the first connection's buffer, and
        // the request's headers dropped at once (as hyper does): held until
        // the response, a request's ~20 header allocations per exchange in
        // flight made the allocator's per-thread caches overflow and refill
        // (+2 k instructions per request, benches/RESULTS.md). A retry moves
        // the encoded head to the next connection.
        let mut encoded: Option<Vec<u8>> = None;
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                // Boxed: the dial is rare, and inline it would make every
                // request's future several times larger.
                None => (Box::pin(self.dial_h1()).await?, false),
            };
            conn.written = 0;
            if let Some(head) = encoded.take() {
                conn.write = head;
            } else {
                conn.write.clear();
                codec::encode_head(&parts, send, &mut conn.write);
                drop(std::mem::take(&mut parts.headers));
                parts.extensions.clear();
            }
            match poll_fn(|cx| conn.poll_head(cx, &parts.method, &mut upload)).await {
                Ok(Final {
                    head,
                    body: framing,
                    keep_alive,
                }) => {
                    let exchange = Exchange {
                        pool: self.clone(),
                        conn,
                        framing,
                        upload,
                        keep_alive,
                    };
                    return Ok(head.map(|()| UpstreamBody::h1(exchange)));
                }
                Err(UploadError::Body(error)) => return Err(SendError::RequestBody(error)),
                Err(UploadError::Conn(error)) => {
                    // Sent again only whole: a body not yet touched, or none.
                    let whole = match &upload {
                        Some(upload) => !upload.started,
                        None => !had_body,
                    };
                    // Untouched, the buffer still holds the head alone, and
                    // `written` counts the bytes of it the socket took.
                    let safe = conn.written == 0 || (idempotent(&parts.method) && !had_body);
                    if reused && conn.read.is_empty() && whole && safe && is_closed_under_us(&error)
                    {
                        encoded = Some(std::mem::take(&mut conn.write));
                        continue;
                    }
                    return Err(SendError::Http1(error));
                }
            }
        }
    }

    /// Sends a request that asks for an upgrade with hyper's client, on a
    /// connection of its own whose dispatcher runs in a task (the upgraded
    /// tunnel outlives this exchange).
    async fn send_upgrade(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        crate::propagation::settle(&mut req);
        let io = TokioIo::new(self.dial().await?);
        let (mut sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Handshake(e.into()))?;
        let target = self.target.to_string();
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%target, %error, "upstream connection ended with an error");
            }
        });
        sender.ready().await.map_err(SendError::Request)?;
        let response = sender.send_request(req).await.map_err(SendError::Request)?;
        Ok(response.map(UpstreamBody::upgrade))
    }

    /// The most recently used idle connection the upstream has not closed;
    /// closed ones are dropped.
    fn checkout(&self) -> Option<Conn> {
        let mut state = self.lock();
        while let Some(mut idle) = state.idle.pop() {
            if !idle.conn.is_closed() {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Takes back a connection whose exchange ended cleanly.
    pub(super) fn give_back(&self, mut conn: Conn) {
        conn.io.answered();
        let mut state = self.lock();
        if state.idle.len() < MAX_IDLE_PER_TARGET {
            state.idle.push(Idle {
                conn,
                since: tokio::time::Instant::now(),
            });
        }
    }

    pub(super) async fn dial_h1(&self) -> Result<Conn, SendError> {
        Ok(Conn::new(self.dial().await?))
    }
}

/// Whether `method` may be sent twice with the same effect (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether `error` is the upstream having closed the connection: the race of
/// a request with the upstream's idle timeout.
fn is_closed_under_us(error: &Http1Error) -> bool {
    match error {
        Http1Error::Protocol(ProtocolError::Incomplete) => true,
        Http1Error::Io(error) => matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

// === impl Conn ===

impl Conn {
    pub(super) fn new(io: UpstreamIo) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            written: 0,
            eof: false,
        }
    }

    /// Writes the request (its head is in the write buffer) and its body, and
    /// reads the response head: the final one (interim ones are skipped).
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
        upload: &mut Option<Upload>,
    ) -> Poll<Result<Final, UploadError>> {
        self.poll_upload(cx, upload)?;
        loop {
            match codec::parse_head(&mut self.read, method, false) {
                Ok(Head::Final(answer)) => return Poll::Ready(Ok(answer)),
                Ok(Head::Interim) => continue,
                Ok(Head::Partial) => {}
                Err(error) => return Poll::Ready(Err(UploadError::Conn(error.into()))),
            }
            if self.eof {
                return Poll::Ready(Err(UploadError::Conn(ProtocolError::Incomplete.into())));
            }
            ready!(self.poll_fill(cx)).map_err(|e| UploadError::Conn(e.into()))?;
        }
    }

    /// Moves the upload on as far as it can go now: writes what is buffered,
    /// then the body's next frames. Ends (`upload` becomes `None`) once the
    /// whole body is written. Pending says nothing of the response.
    fn poll_upload(
        &mut self,
        cx: &mut Context<'_>,
        upload: &mut Option<Upload>,
    ) -> Result<(), UploadError> {
        loop {
            match self.poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Err(UploadError::Conn(error.into())),
                Poll::Pending => return Ok(()),
            }
            let Some(current) = upload else {
                return Ok(());
            };
            match current.poll_next(cx, &mut self.write, &mut self.written) {
                Poll::Ready(Ok(true)) => *upload = None,
                Poll::Ready(Ok(false)) => {}
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Writes the write buffer out. What was written stays in the buffer
    /// until more is added ([`Self::poll_upload`]), so a request whose
    /// connection failed under it can be sent again from it.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.write.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what the socket has into the read buffer; `eof` when it closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.read.capacity() - self.read.len() < READ_SIZE {
            self.read.reserve(READ_SIZE);
        }
        if ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read
        ))? == 0
        {
            self.eof = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads the response body: the next frame, moving the upload on first.
    pub(super) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        framing: &mut Framing,
        upload: &mut Option<Upload>,
    ) -> Poll<Result<Decoded, Http1Error>> {
        match self.poll_upload(cx, upload) {
            Ok(()) => {}
            Err(UploadError::Conn(error)) => return Poll::Ready(Err(error)),
            // The response is under way: a body the client broke now breaks it.
            Err(UploadError::Body(error)) => {
                return Poll::Ready(Err(Http1Error::Io(io::Error::other(error))))
            }
        }
        loop {
            match framing.decode(&mut self.read, self.eof)? {
                Decoded::More => ready!(self.poll_fill(cx))?,
                decoded => return Poll::Ready(Ok(decoded)),
            }
        }
    }

    /// Whether the connection may carry another request: nothing is left
    /// unread, and nothing unwritten.
    pub(super) fn is_clean(&self) -> bool {
        self.read.is_empty() && !self.eof && self.written == self.write.len()
    }

    /// Whether the upstream closed the connection (or sent what no request
    /// asked for): a read that must find nothing finds something.
    pub(super) fn is_closed(&mut self) -> bool {
        if self.eof || !self.read.is_empty() {
            return true;
        }
        self.poll_fill(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }
}

// === impl Upload ===

impl Upload {
    /// Encodes the body's next frame into `out` (all of which is written:
    /// `written` bytes); `true` once the body ended (its end encoded). The
    /// head stays in `out` until the first frame replaces it, so a request
    /// whose body was not touched can be sent again from it.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<u8>,
        written: &mut usize,
    ) -> Poll<Result<bool, UploadError>> {
        let polled = ready!(Pin::new(&mut self.body).poll_frame(cx));
        self.started = true;
        out.clear();
        *written = 0;
        let frame = match polled {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Err(UploadError::Body(error))),
            None => return Poll::Ready(self.end(None, out).map(|()| true)),
        };
        match frame.into_data() {
            Ok(data) => {
                self.sent += data.len() as u64;
                match self.send {
                    Send::Length(length) if self.sent > length => {
                        return Poll::Ready(Err(UploadError::Conn(Http1Error::BodyLength)))
                    }
                    Send::Length(_) => out.extend_from_slice(&data),
                    Send::Chunked { .. } => codec::encode_chunk(&data, out),
                }
                Poll::Ready(Ok(false))
            }
            Err(frame) => {
                let trailers = frame.into_trailers().ok();
                Poll::Ready(self.end(trailers, out).map(|()| true))
            }
        }
    }

    /// Encodes the end of the body: checks a sized one's length, ends a
    /// chunked one with its declared trailers.
    fn end(
        &mut self,
        trailers: Option<http::HeaderMap>,
        out: &mut Vec<u8>,
    ) -> Result<(), UploadError> {
        match self.send {
            Send::Length(length) if self.sent != length => {
                Err(UploadError::Conn(Http1Error::BodyLength))
            }
            Send::Length(_) => Ok(()),
            Send::Chunked { .. } => {
                let declared =
                    trailers.map(|trailers| codec::declared_trailers(&self.declared, trailers));
                codec::encode_last_chunk(declared.as_ref(), out);
                Ok(())
            }
        }
    }
}
