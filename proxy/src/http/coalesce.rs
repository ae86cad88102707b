//! One write per turn of an HTTP/2 connection's task, however many frames it
//! sends.
//!
//! `h2` encodes frames into a buffer, but a DATA frame of 256 bytes or more is
//! not copied there: it is chained behind the buffer and written with it, and
//! no further frame is encoded until that write is done. So a connection's
//! task that sends ten 1 KiB responses in one turn makes ten `writev` calls and
//! the kernel sends ten segments (benches/RESULTS.md, issue 18: 1.04 writes a
//! request against HAProxy's 0.33). [`Coalesced`] takes each write into a
//! buffer of its own and answers `h2`'s flushes at once; [`Flushing`], around
//! the connection's future, writes the buffer out after each poll of it. The
//! peer sees the same bytes in the same order, in fewer segments, and no later
//! than the end of the turn that produced them.
//!
//! The buffer is bounded: a write that would take it past [`LIMIT`] first
//! writes it out, and waits (`Pending`) until the socket has taken it all, so
//! a slow peer holds back the connection as before; a write larger than the
//! limit goes straight to the socket. A failed write out at the end of a turn
//! is kept and returned to the connection's next call.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held before a write goes out within the turn: four of
/// `h2`'s default 16 KiB frames.
const LIMIT: usize = 64 * 1024;

/// The buffer a connection keeps: allocated at its first write, and taken
/// back to this once written out when a burst grew it, so that a connection
/// that once sent a large burst does not hold the memory while idle.
const KEPT: usize = 16 * 1024;

/// The connection's IO, buffering its writes until the end of the turn.
pub struct Coalesced<I>(Arc<Mutex<Buffered<I>>>);

/// What writes a [`Coalesced`] IO's buffer out: given the connection's future
/// once there is one ([`WriteOut::after`]).
pub struct WriteOut<I>(Arc<Mutex<Buffered<I>>>);

pin_project_lite::pin_project! {
    /// A connection's future that writes out its [`Coalesced`] IO after each
    /// poll.
    pub struct Flushing<F, I> {
        #[pin]
        connection: F,
        io: Arc<Mutex<Buffered<I>>>,
    }
}

struct Buffered<I> {
    io: I,
    /// Bytes to write; those before `sent` are written.
    out: Vec<u8>,
    sent: usize,
    /// A write out after a poll failed: the connection's next call gets it.
    failed: Option<io::Error>,
}

fn lock<I>(shared: &Mutex<Buffered<I>>) -> MutexGuard<'_, Buffered<I>> {
    // Only the connection's own task takes it, so it is never contended; the
    // buffer is whole after any panic (bytes are appended or consumed whole).
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Buffered ===

impl<I: AsyncWrite + Unpin> Buffered<I> {
    /// Writes the buffer out; `Pending` while the socket takes no more of it.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.out.get(self.sent..).filter(|rest| !rest.is_empty()) {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        self.out.shrink_to(KEPT);
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: writes the buffer out first if they
    /// would take it past [`LIMIT`] (so it is empty when `len` alone is).
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Err(error));
        }
        if !self.out.is_empty() && self.out.len() + len > LIMIT {
            ready!(self.poll_write_out(cx))?;
        }
        if self.out.capacity() == 0 && len <= LIMIT {
            self.out.reserve(KEPT.max(len));
        }
        Poll::Ready(Ok(()))
    }
}

// === impl WriteOut ===

impl<I> WriteOut<I> {
    /// `connection`, the future that drives the IO, writing it out after each
    /// poll. Nothing is written until it is polled.
    pub fn after<F>(self, connection: F) -> Flushing<F, I> {
        Flushing {
            connection,
            io: self.0,
        }
    }
}

// === impl Flushing ===

impl<F: Future, I: AsyncWrite + Unpin> Future for Flushing<F, I> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let polled = this.connection.poll(cx);
        let mut buffered = lock(this.io);
        if buffered.failed.is_none() {
            if let Poll::Ready(Err(error)) = buffered.poll_write_out(cx) {
                // The connection learns of it on its next call; poll it again
                // so that there is one.
                buffered.failed = Some(error);
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

impl<F, I> Flushing<F, I> {
    /// The connection's future.
    pub fn connection(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().connection
    }
}

// === impl Coalesced ===

impl<I> Coalesced<I> {
    /// `io`, and what writes it out after each poll of its connection.
    pub fn new(io: I) -> (Self, WriteOut<I>) {
        let shared = Arc::new(Mutex::new(Buffered {
            io,
            out: Vec::new(),
            sent: 0,
            failed: None,
        }));
        (Self(shared.clone()), WriteOut(shared))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Coalesced<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Coalesced<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buffered = lock(&self.0);
        ready!(buffered.poll_room(cx, buf.len()))?;
        if buf.len() > LIMIT {
            // Nothing is buffered now: a write this large goes as it is.
            return Pin::new(&mut buffered.io).poll_write(cx, buf);
        }
        buffered.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum();
        let mut buffered = lock(&self.0);
        ready!(buffered.poll_room(cx, len))?;
        if len > LIMIT {
            return Pin::new(&mut buffered.io).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            buffered.out.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Done at the end of the turn ([`Flushing`]), not now.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).failed.take() {
            Some(error) => Poll::Ready(Err(error)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut buffered = lock(&self.0);
        if let Some(error) = buffered.failed.take() {
            return Poll::Ready(Err(error));
        }
        ready!(buffered.poll_write_out(cx))?;
        Pin::new(&mut buffered.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
