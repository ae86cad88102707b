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

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::body::UpstreamBody;
use super::connect::UpstreamIo;
use super::{Pool, SendError};

/// Streams one upstream connection carries before the next request opens
/// another: the least `SETTINGS_MAX_CONCURRENT_STREAMS` RFC 9113 §6.5.2
/// recommends a server allow, so a conforming upstream never queues them.
pub(super) const MAX_STREAMS_PER_CONNECTION: usize = 100;

/// The receive window of each stream (hyper's default is 2 MiB): enough for
/// ~500 MB/s per stream at a 0.5 ms round trip.
const STREAM_WINDOW: u32 = 256 * 1024;

/// The receive window of each connection: every stream's window at once.
const CONNECTION_WINDOW: u32 = STREAM_WINDOW * MAX_STREAMS_PER_CONNECTION as u32;

/// One upstream HTTP/2 connection and the streams open on it.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) sender: http2::SendRequest<Incoming>,
    /// Streams open now.
    pub(super) streams: AtomicUsize,
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

// === impl Pool ===

impl Pool {
    pub(super) async fn send_h2(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (slot, reused) = match self.claim_stream() {
                Some(slot) => (slot, true),
                None => Box::pin(self.dial_h2()).await?,
            };
            let mut sender = slot.0.sender.clone();
            if let Err(error) = sender.ready().await {
                self.forget_closed_h2();
                if reused {
                    continue;
                }
                return Err(SendError::Request(error));
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response.map(|body| UpstreamBody::h2(body, slot))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => {
                        self.forget_closed_h2();
                        req = unsent;
                    }
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    /// A stream on the first open connection with room for one.
    fn claim_stream(&self) -> Option<StreamSlot> {
        let mut state = self.lock();
        let listed = state.h2.iter_mut().find(|listed| {
            listed.shared.streams.load(Ordering::Acquire) < MAX_STREAMS_PER_CONNECTION
                && !listed.shared.sender.is_closed()
        })?;
        listed.started += 1;
        listed.shared.streams.fetch_add(1, Ordering::AcqRel);
        Some(StreamSlot(listed.shared.clone()))
    }

    fn forget_closed_h2(&self) {
        self.lock()
            .h2
            .retain(|listed| !listed.shared.sender.is_closed());
    }

    /// A stream on a new connection, unless another request's dial just made
    /// room; the flag says whether it was already there.
    async fn dial_h2(&self) -> Result<(StreamSlot, bool), SendError> {
        let _dialing = self.h2_dial.lock().await;
        if let Some(slot) = self.claim_stream() {
            return Ok((slot, true));
        }
        let sender = self.handshake_h2(self.dial().await?).await?;
        let shared = Arc::new(Shared {
            sender,
            streams: AtomicUsize::new(1),
        });
        let mut state = self.lock();
        state.h2.retain(|listed| !listed.shared.sender.is_closed());
        state.h2.push(Listed {
            shared: shared.clone(),
            started: 1,
            quiet: (0, None),
        });
        Ok((StreamSlot(shared), false))
    }

    async fn handshake_h2(
        &self,
        io: TokioIo<UpstreamIo>,
    ) -> Result<http2::SendRequest<Incoming>, SendError> {
        let handshake = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake(io);
        let (sender, conn) = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(result) => result.map_err(SendError::Handshake)?,
            Err(_) => {
                return Err(SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP/2 handshake timed out",
                )))
            }
        };
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%target, %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
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
        if self.shared.sender.is_closed() {
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
