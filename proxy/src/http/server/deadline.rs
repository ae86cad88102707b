//! The deadlines of a downstream HTTP/1 connection, kept apart: a request head
//! must complete within `timeouts.header_read`; a connection with nothing in
//! flight closes after `timeouts.idle`.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection
//! waits for its next request, so it closed pooled client connections after
//! 10 s while Go and other pools keep theirs 90 s and race the close with
//! their next request; and it allocates a timer per request. [`Deadlines`]
//! wraps the connection's IO instead, with one timer for the connection's
//! life, and only acts when the connection changes phase:
//!
//! - **head** (from accept, or from the first byte after a response): the
//!   timer is set to `header_read` once a read finds the head incomplete (a
//!   head that arrives whole never touches it); expiry fails the read, and
//!   hyper drops the connection (slow-loris protection);
//! - **busy** (the service was called, until the response body is done, see
//!   [`super::inflight`]): no deadline, the request timeouts govern;
//! - **idle** (the last response is done): the timer is set to `idle` when
//!   hyper flushes the response; expiry reads as a clean end of stream, so
//!   hyper closes the connection with a FIN, never mid-request. Bytes that
//!   arrive first always win: a request sent just before the deadline is
//!   served, and its head gets `header_read` to complete.
//!
//! Per request that is a few counter loads and one clock read; no lock.
//! A pipelined request read whole with the previous one is busy as soon as
//! hyper calls the service; a partial head read with it, though, has `idle`
//! rather than `header_read` to complete, as hyper buffers it out of sight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::inflight::Requests;

/// HTTP/1 IO that enforces the head and idle deadlines.
#[derive(Debug)]
pub(super) struct Deadlines<I> {
    io: I,
    requests: Arc<Requests>,
    /// The connection's one timer, set to the deadline of the phase.
    timer: Pin<Box<Sleep>>,
    phase: Phase,
    header_read: Duration,
    idle: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a head, after `started` requests; `timed` once the timer is
    /// set to its deadline.
    Head { started: usize, timed: bool },
    /// A request is in flight.
    Busy,
    /// Nothing in flight after `started` requests; the timer is set to the
    /// idle deadline. (A pipelined request read with the previous one starts
    /// without new bytes: `started` tells.)
    Idle { started: usize },
    /// A deadline expired; reads end.
    Closed,
}

// === impl Deadlines ===

impl<I> Deadlines<I> {
    /// `io`, just accepted: its first head is due within `header_read`.
    pub(super) fn new(
        io: I,
        requests: Arc<Requests>,
        header_read: Duration,
        idle: Duration,
    ) -> Self {
        Self {
            io,
            requests,
            timer: Box::pin(tokio::time::sleep(header_read)),
            phase: Phase::Head {
                started: 0,
                timed: true,
            },
            header_read,
            idle,
        }
    }

    /// Follows the requests: a head or idle connection whose next request
    /// reached the service is busy; a busy connection with nothing left in
    /// flight is idle from now. Returns whether the idle deadline was set.
    fn settle(&mut self) -> bool {
        if let Phase::Head { started, .. } | Phase::Idle { started } = self.phase {
            if self.requests.started() == started {
                return false;
            }
            self.phase = Phase::Busy;
        }
        if self.phase != Phase::Busy || self.requests.in_flight() > 0 {
            return false;
        }
        self.phase = Phase::Idle {
            started: self.requests.started(),
        };
        self.timer.as_mut().reset(Instant::now() + self.idle);
        true
    }

    /// A read found no bytes: whether the phase's deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.settle();
        match self.phase {
            Phase::Busy => return Poll::Pending,
            Phase::Head {
                started,
                timed: false,
            } => {
                self.timer.as_mut().reset(Instant::now() + self.header_read);
                self.phase = Phase::Head {
                    started,
                    timed: true,
                };
            }
            Phase::Head { .. } | Phase::Idle { .. } | Phase::Closed => {}
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        if let Phase::Idle { .. } = phase {
            tracing::debug!(idle = ?self.idle, "idle connection closed");
            return Poll::Ready(Ok(()));
        }
        tracing::debug!(header_read = ?self.header_read, "request head not complete in time");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "request head not complete within timeouts.header_read",
        )))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Deadlines<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.phase == Phase::Closed {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.poll_deadline(cx),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if let Phase::Idle { started } = this.phase {
                    this.phase = Phase::Head {
                        started,
                        timed: false,
                    };
                }
                Poll::Ready(Ok(()))
            }
            read => read,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Deadlines<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// hyper flushes after the end of every response, but reads again only
    /// when the client sends: this is where an idle connection starts its
    /// timer (and registers the task to be woken by it).
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.settle() && this.timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
