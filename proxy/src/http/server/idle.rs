//! When a downstream connection has waited long enough: the request-head
//! deadline and the idle timeout, kept apart.
//!
//! hyper's HTTP/1 `header_read_timeout` starts when it begins waiting for a
//! head, keep-alive waits included, so it would close a pooled connection after
//! `timeouts.header_read` (10 s) while clients keep theirs 90 s or longer and
//! race the close with their next request. HTTP/2 has no idle timeout at all.
//! So [`Activity`] watches the bytes (through [`Tracked`] IO) and the requests
//! in flight, and [`Activity::expired`] says which limit ran out:
//!
//! - a head in progress (HTTP/1: the first request from accept, or the first
//!   byte after a response) must complete within `header_read`;
//! - a connection with nothing in flight and no bytes moving closes after
//!   `idle`; a request that arrives before that restarts the wait.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Which limit a waiting connection ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expiry {
    /// A request head did not complete within `header_read`.
    Head,
    /// Nothing in flight and no bytes for `idle`.
    Idle,
}

/// What one connection is doing, shared by its IO, its service and its watch.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    /// Only HTTP/1 reads request heads between requests; HTTP/2 frames are not
    /// heads, so an h2 connection only ever waits `idle`.
    heads: bool,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    last_bytes: Instant,
    head_since: Option<Instant>,
}

/// Holds a request in flight, from the service call until its response body
/// is done with (dropped), so a long response is never counted as idle.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

/// IO that tells its [`Activity`] when bytes move.
#[derive(Debug)]
pub(super) struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
}

// === impl Activity ===

impl Activity {
    /// A new connection; an HTTP/1 one (`heads`) waits for its first head.
    pub(super) fn new(heads: bool) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                last_bytes: now,
                head_since: heads.then_some(now),
            }),
            changed: Notify::new(),
            heads,
        })
    }

    /// The state lock is held only for a few field updates, never across an
    /// await, so it cannot block the request path; poison cannot corrupt them.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) {
        let now = Instant::now();
        let mut state = self.state();
        state.last_bytes = now;
        if self.heads && state.in_flight == 0 && state.head_since.is_none() {
            state.head_since = Some(now);
            drop(state);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.state().last_bytes = Instant::now();
    }

    /// A request reached the service: no deadline runs until it is done.
    pub(super) fn request(self: &Arc<Self>) -> InFlight {
        {
            let mut state = self.state();
            state.in_flight += 1;
            state.head_since = None;
        }
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// The deadline that applies now, if any.
    fn deadline(&self, header_read: Duration, idle: Duration) -> Option<(Instant, Expiry)> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_since {
            Some(since) => (since + header_read, Expiry::Head),
            None => (state.last_bytes + idle, Expiry::Idle),
        })
    }

    /// Resolves once the connection has waited past a limit; until then it
    /// follows the activity (requests, bytes) and never fires early.
    pub(super) async fn expired(&self, header_read: Duration, idle: Duration) -> Expiry {
        loop {
            match self.deadline(header_read, idle) {
                None => self.changed.notified().await,
                Some((at, expiry)) if Instant::now() >= at => return expiry,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

// === impl InFlight ===

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.state();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.last_bytes = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

// === impl Tracked ===

impl<I> Tracked<I> {
    /// `io`, reporting to `activity`.
    pub(super) fn new(io: I, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
