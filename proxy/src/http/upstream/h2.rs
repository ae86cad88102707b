//! The HTTP/2 pool: requests share connections, at most
//! [`MAX_STREAMS_PER_CONNECTION`] streams each, so that no set of stalled
//! streams can use up a connection's receive window.
//!
//! A response body waits in the sidecar while its downstream client reads
//! nothing, and the bytes it holds count against the upstream connection's
//! receive window until it is read. With one connection and hyper's windows
//! (2 MiB per stream, 5 MiB per connection), three unread 2 MiB responses
//! stalled every other client's responses from that target. So each stream may
//! hold [`STREAM_WINDOW`] bytes, a connection carries at most
//! [`MAX_STREAMS_PER_CONNECTION`] streams, and its window is as large as all of
//! them together ([`CONNECTION_WINDOW`]): unread streams can fill their own
//! windows, never the connection's. A request that finds every connection full
//! opens another (one dial at a time: a burst on a cold pool opens one
//! connection, not one per request); extra connections close once idle
//! ([`super::reaper`]). Memory stays bounded by the streams open, not by the
//! window: at most [`STREAM_WINDOW`] per stream.
//!
//! Requests go straight to `h2`'s client, not through hyper's: hyper sends
//! each request over a channel to its connection task and spawns a task per
//! request to wait for the response (and another to send its body), two task
//! hops and ~9 k instructions a request (benches/RESULTS.md, issue 18). Here
//! the exchange that sends a request waits for its response in its own task,
//! and sends the request body there too ([`Upload`]) until the response head
//! arrives; only a body still going after that gets a task. The connection
//! itself runs in a task of its own, as with hyper.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use h2::{Reason, SendStream};
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::body::UpstreamBody;
use super::connect::UpstreamIo;
use super::{Pool, SendError};
use crate::http::coalesce::{Coalesced, Flushing};

/// Streams one upstream connection carries before the next request opens
/// another: the least `SETTINGS_MAX_CONCURRENT_STREAMS` RFC 9113 §6.5.2
/// recommends a server allow, so a conforming upstream never queues them.
pub(super) const MAX_STREAMS_PER_CONNECTION: usize = 100;

/// The receive window of each stream (hyper's default is 2 MiB): enough for
/// ~500 MB/s per stream at a 0.5 ms round trip.
const STREAM_WINDOW: u32 = 256 * 1024;

/// The receive window of each connection: every stream's window at once.
const CONNECTION_WINDOW: u32 = STREAM_WINDOW * MAX_STREAMS_PER_CONNECTION as u32;

/// The largest response head accepted, and the most request body bytes
/// buffered per connection: hyper's client defaults, kept as they were.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER_SIZE: usize = 1024 * 1024;

/// One upstream HTTP/2 connection and the streams open on it.
#[derive(Debug)]
pub(super) struct Shared {
    sender: SendRequest<Bytes>,
    /// Streams open now.
    pub(super) streams: AtomicUsize,
    /// `h2` refused a request on it: it is closing, or failed.
    broken: AtomicBool,
    /// Tied to the connection's task both ways: closed once the task ends (so
    /// the connection is gone), and dropped with the last handle, which wakes
    /// the task to close the connection: `h2` itself does not wake a parked
    /// connection when its last `SendRequest` goes.
    task: oneshot::Sender<()>,
}

/// A stream's place on its connection, given up when the exchange ends: with
/// the response body (read to its end, or dropped), or with a failed request.
#[derive(Debug)]
pub(super) struct StreamSlot(Arc<Shared>);

/// A pool's HTTP/2 connection, as the pool lists it.
#[derive(Debug)]
pub(super) struct Listed {
    pub(super) shared: Arc<Shared>,
    /// Streams started on it; the reaper tells a quiet connection by this.
    pub(super) started: u64,
    /// `started` at the reaper's last sweep, and since which sweep the
    /// connection has been found idle with nothing started in between.
    pub(super) quiet: (u64, Option<Instant>),
}

/// A request body on its way to the upstream, as hyper's client sends one: a
/// chunk at a time, each once the stream has send capacity (so at most one
/// chunk per stream waits in `h2`'s buffers), then trailers or an empty final
/// frame. A reset from the upstream ends it.
struct Upload {
    body: Incoming,
    stream: SendStream<Bytes>,
    /// A chunk read from the body, waiting for send capacity; whether it is
    /// the last.
    waiting: Option<(Bytes, bool)>,
}

/// Why an upload ended early.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    /// The downstream request body failed (the stream was reset).
    #[error("the request body failed: {0}")]
    Body(hyper::Error),
    /// The stream failed.
    #[error("{0}")]
    Stream(h2::Error),
}

// === impl Pool ===

impl Pool {
    pub(super) async fn send_h2(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let (slot, mut sender) = loop {
            let (slot, reused) = match self.claim_stream() {
                Some(slot) => (slot, true),
                None => Box::pin(self.dial_h2()).await?,
            };
            let mut sender = slot.0.sender.clone();
            match poll_fn(|cx| sender.poll_ready(cx)).await {
                Ok(()) => break (slot, sender),
                Err(error) => {
                    slot.0.broken.store(true, Ordering::Release);
                    self.forget_closed_h2();
                    if !reused {
                        return Err(SendError::Stream(error));
                    }
                }
            }
        };
        let (head, body) = req.into_parts();
        let mut head = Request::from_parts(head, ());
        crate::propagation::settle(&mut head);
        let end_of_stream = body.is_end_stream();
        if let Some(length) = body.size_hint().exact() {
            // As hyper's client does: a body of known length says so.
            if length != 0 || has_payload_semantics(head.method()) {
                head.headers_mut()
                    .entry(CONTENT_LENGTH)
                    .or_insert_with(|| HeaderValue::from(length));
            }
        }
        let (mut response, stream) = match sender.send_request(head, end_of_stream) {
            Ok(sent) => sent,
            Err(error) => {
                slot.0.broken.store(true, Ordering::Release);
                return Err(SendError::Stream(error));
            }
        };
        let mut upload = (!end_of_stream).then(|| Upload {
            body,
            stream,
            waiting: None,
        });
        let mut failed_upload = None;
        let response = poll_fn(|cx| {
            if let Some(sending) = &mut upload {
                if let Poll::Ready(ended) = sending.poll(cx) {
                    failed_upload = ended.err();
                    upload = None;
                }
            }
            Pin::new(&mut response).poll(cx)
        })
        .await;
        match response {
            Ok(response) => {
                if let Some(upload) = upload {
                    // The upstream answered before the body was all sent (a
                    // stream, or an early answer): it goes on by itself.
                    tokio::spawn(upload.finish(self.target.to_string()));
                }
                let (head, body) = response.into_parts();
                let body = UpstreamBody::h2(&head.headers, body, slot);
                Ok(Response::from_parts(head, body))
            }
            Err(error) => Err(match failed_upload {
                Some(UploadError::Body(cause)) => SendError::RequestBody(cause),
                _ => SendError::Stream(error),
            }),
        }
    }

    /// A stream on the first open connection with room for one.
    fn claim_stream(&self) -> Option<StreamSlot> {
        let mut state = self.lock();
        let listed = state.h2.iter_mut().find(|listed| {
            listed.shared.streams.load(Ordering::Acquire) < MAX_STREAMS_PER_CONNECTION
                && !listed.shared.is_closed()
        })?;
        listed.started += 1;
        listed.shared.streams.fetch_add(1, Ordering::AcqRel);
        Some(StreamSlot(listed.shared.clone()))
    }

    fn forget_closed_h2(&self) {
        self.lock().h2.retain(|listed| !listed.shared.is_closed());
    }

    /// A stream on a new connection, unless another request's dial just made
    /// room; the flag says whether it was already there.
    async fn dial_h2(&self) -> Result<(StreamSlot, bool), SendError> {
        let _dialing = self.h2_dial.lock().await;
        if let Some(slot) = self.claim_stream() {
            return Ok((slot, true));
        }
        let shared = Arc::new(self.handshake_h2(self.dial().await?).await?);
        shared.streams.store(1, Ordering::Release);
        let mut state = self.lock();
        state.h2.retain(|listed| !listed.shared.is_closed());
        state.h2.push(Listed {
            shared: shared.clone(),
            started: 1,
            quiet: (0, None),
        });
        Ok((StreamSlot(shared), false))
    }

    /// Opens an HTTP/2 connection on `io` and starts its task.
    pub(super) async fn handshake_h2(&self, io: UpstreamIo) -> Result<Shared, SendError> {
        // One write per turn of the connection task, not one per request body
        // (`coalesce`); the preface the handshake writes waits for the first.
        let (io, write_out) = Coalesced::new(io);
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .initial_max_send_streams(MAX_STREAMS_PER_CONNECTION)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .max_send_buffer_size(MAX_SEND_BUFFER_SIZE)
            .max_local_error_reset_streams(Some(1024))
            .enable_push(false)
            .handshake::<_, Bytes>(io);
        let (sender, connection) = match tokio::time::timeout(self.connect_timeout, handshake).await
        {
            Ok(result) => result.map_err(|e| SendError::Handshake(e.into()))?,
            Err(_) => {
                return Err(SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP/2 handshake timed out",
                )))
            }
        };
        let (task, released) = oneshot::channel();
        tokio::spawn(run(
            write_out.after(connection),
            released,
            self.target.to_string(),
        ));
        Ok(Shared {
            sender,
            streams: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
            task,
        })
    }
}

/// Whether a request with `method` has a body by definition (hyper's rule
/// for writing a zero `content-length`).
fn has_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

/// Runs a connection until it ends. Once its last handle is gone
/// (`released`), it is polled once more, which sends `GOAWAY` and closes it.
async fn run(
    connection: Flushing<Connection<Coalesced<UpstreamIo>, Bytes>, UpstreamIo>,
    mut released: oneshot::Receiver<()>,
    target: String,
) {
    let mut waiting = true;
    tokio::pin!(connection);
    let ended = poll_fn(|cx| {
        if waiting && Pin::new(&mut released).poll(cx).is_ready() {
            waiting = false;
        }
        connection.as_mut().poll(cx)
    })
    .await;
    if let Err(error) = ended {
        tracing::debug!(%target, %error, "upstream connection ended with an error");
    }
}

// === impl Shared ===

impl Shared {
    /// Whether the connection takes no more requests: its task ended, or
    /// `h2` refused one.
    pub(super) fn is_closed(&self) -> bool {
        self.broken.load(Ordering::Acquire) || self.task.is_closed()
    }
}

// === impl Listed ===

impl Listed {
    /// Whether the connection can go, swept at `now`: closed, or quiet for
    /// `limit` — idle at every sweep since the first that found it idle, with
    /// no stream started in between. That first sweep is no earlier than the
    /// quiet began, so the connection was quiet at least `limit`, and it goes
    /// within `limit` and two sweep periods; the request path reads no clock.
    pub(super) fn sweep(&mut self, now: Instant, limit: Duration) -> bool {
        if self.shared.is_closed() {
            return true;
        }
        let idle = self.shared.streams.load(Ordering::Acquire) == 0;
        let (seen, since) = self.quiet;
        let since = match (idle, seen == self.started) {
            (true, true) => Some(since.unwrap_or(now)),
            (true, false) => Some(now),
            (false, _) => None,
        };
        self.quiet = (self.started, since);
        since.is_some_and(|since| now.duration_since(since) >= limit)
    }
}

// === impl StreamSlot ===

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Upload ===

impl Upload {
    /// Sends what the body has ready, as send capacity allows.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        loop {
            // Registered while waiting for the body or for capacity, so that a
            // reset from the upstream ends the wait.
            if let Poll::Ready(reason) = self.stream.poll_reset(cx).map_err(UploadError::Stream)? {
                return Poll::Ready(Err(UploadError::Stream(reason.into())));
            }
            if let Some((chunk, last)) = self.waiting.take() {
                while self.stream.capacity() == 0 {
                    let polled = self.stream.poll_capacity(cx);
                    match polled {
                        Poll::Pending => {
                            self.waiting = Some((chunk, last));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(error))) => {
                            return Poll::Ready(Err(UploadError::Stream(error)))
                        }
                        Poll::Ready(None) => {
                            return Poll::Ready(Err(UploadError::Stream(Reason::CANCEL.into())))
                        }
                    }
                }
                self.stream
                    .send_data(chunk, last)
                    .map_err(UploadError::Stream)?;
                if last {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // The next frame is read before any capacity is asked for: a
            // claim held while the body has nothing to send could starve the
            // connection's other streams (hyperium/hyper#4003).
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    let reason = std::error::Error::source(&error)
                        .and_then(|source| source.downcast_ref::<h2::Error>())
                        .and_then(h2::Error::reason)
                        .unwrap_or(Reason::INTERNAL_ERROR);
                    self.stream.send_reset(reason);
                    return Poll::Ready(Err(UploadError::Body(error)));
                }
                None => {
                    let ended = self.stream.send_data(Bytes::new(), true);
                    return Poll::Ready(ended.map_err(UploadError::Stream));
                }
            };
            match frame.into_data() {
                Ok(chunk) if chunk.is_empty() => {
                    // No capacity needed (an explicit end, say).
                    let last = self.body.is_end_stream();
                    self.stream
                        .send_data(chunk, last)
                        .map_err(UploadError::Stream)?;
                    if last {
                        return Poll::Ready(Ok(()));
                    }
                }
                Ok(chunk) => {
                    // One byte claimed: h2 raises the claim to what
                    // `send_data` buffers.
                    self.stream.reserve_capacity(1);
                    self.waiting = Some((chunk, self.body.is_end_stream()));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.stream.reserve_capacity(0);
                        let sent = self.stream.send_trailers(trailers);
                        return Poll::Ready(sent.map_err(UploadError::Stream));
                    }
                }
            }
        }
    }

    /// Sends the rest of the body in a task of its own.
    async fn finish(mut self, target: String) {
        if let Err(error) = poll_fn(|cx| self.poll(cx)).await {
            tracing::debug!(%target, %error, "request body not sent whole");
        }
    }
}
