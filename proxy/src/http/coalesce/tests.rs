//! The coalescing IO under a stand-in connection: what reaches the socket, in
//! how many writes, when the socket is slow, fails, or is shut down.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncReadExt, AsyncWrite};

use super::{Coalesced, KEPT, LIMIT};

/// A socket that records each write it takes, and can refuse or fail them.
#[derive(Clone, Default)]
struct Socket(Arc<Mutex<Recorded>>);

#[derive(Default)]
struct Recorded {
    writes: Vec<Vec<u8>>,
    shut: bool,
    /// Writes answer `Pending` while set.
    full: bool,
    /// Writes fail while set.
    broken: bool,
}

impl Socket {
    fn state(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().expect("socket state")
    }

    fn writes(&self) -> Vec<Vec<u8>> {
        self.state().writes.clone()
    }

    fn bytes(&self) -> Vec<u8> {
        self.writes().concat()
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.state();
        if state.broken {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if state.full {
            return Poll::Pending;
        }
        state.writes.push(buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state().shut = true;
        Poll::Ready(Ok(()))
    }
}

/// Writes `chunk` and flushes, as `h2` does for each chained DATA frame.
fn write_and_flush<I: AsyncWrite + Unpin>(
    io: &mut Coalesced<I>,
    cx: &mut Context<'_>,
    chunk: &[u8],
) -> Poll<io::Result<usize>> {
    let written = Pin::new(&mut *io).poll_write(cx, chunk);
    if let Poll::Ready(Ok(_)) = written {
        assert!(Pin::new(&mut *io).poll_flush(cx).is_ready());
    }
    written
}

fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Ten chunks, each one written and flushed, as a connection's turn that
/// sends ten 1 KiB responses.
fn ten_responses() -> Vec<Vec<u8>> {
    (0..10u8).map(|n| vec![n; 1033]).collect()
}

#[test]
fn a_turn_of_writes_and_flushes_reaches_the_socket_as_one_write() {
    let socket = Socket::default();
    let (mut io, write_out) = Coalesced::new(socket.clone());
    let chunks = ten_responses();
    let mut written = 0;
    let mut turn = write_out.after(poll_fn(|cx| {
        for chunk in &chunks {
            if let Poll::Ready(Ok(n)) = write_and_flush(&mut io, cx, chunk) {
                written += n;
            }
        }
        Poll::<()>::Pending
    }));
    assert!(poll_once(&mut turn).is_pending());
    drop(turn);
    assert_eq!(written, 10 * 1033, "every write is taken at once");
    assert_eq!(socket.writes().len(), 1, "one write for the turn");
    assert_eq!(socket.bytes(), chunks.concat(), "the same bytes, in order");
}

#[test]
fn nothing_reaches_the_socket_before_the_turn_ends() {
    let socket = Socket::default();
    let (mut io, write_out) = Coalesced::new(socket.clone());
    let seen = socket.clone();
    let mut turn = write_out.after(poll_fn(|cx| {
        let _ = write_and_flush(&mut io, cx, b"settings");
        assert!(seen.writes().is_empty(), "written before the turn ended");
        Poll::<()>::Pending
    }));
    assert!(poll_once(&mut turn).is_pending());
    assert_eq!(socket.writes(), vec![b"settings".to_vec()]);
}

#[test]
fn a_turn_that_writes_past_the_limit_writes_out_within_it() {
    let socket = Socket::default();
    let (mut io, write_out) = Coalesced::new(socket.clone());
    let chunk = vec![7u8; 16 * 1024 + 9];
    let mut turn = write_out.after(poll_fn(|cx| {
        for _ in 0..5 {
            assert!(write_and_flush(&mut io, cx, &chunk).is_ready());
        }
        Poll::<()>::Pending
    }));
    assert!(poll_once(&mut turn).is_pending());
    let writes = socket.writes();
    assert!(
        writes.iter().all(|write| write.len() <= LIMIT),
        "no write larger than the limit: {:?}",
        writes.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(writes.len(), 2, "four frames, then the fifth at the end");
    assert_eq!(socket.bytes(), chunk.repeat(5));
}

#[test]
fn a_write_larger_than_the_limit_goes_straight_to_the_socket() {
    let socket = Socket::default();
    let (mut io, _write_out) = Coalesced::new(socket.clone());
    let large = vec![1u8; LIMIT + 1];
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        Pin::new(&mut io).poll_write(&mut cx, &large),
        Poll::Ready(Ok(n)) if n == large.len()
    ));
    assert_eq!(socket.writes(), vec![large]);
}

#[test]
fn a_socket_that_takes_nothing_holds_the_connection_back_at_the_limit() {
    let socket = Socket::default();
    socket.state().full = true;
    let (mut io, write_out) = Coalesced::new(socket.clone());
    let chunk = vec![3u8; 1024];
    let chunks = LIMIT / chunk.len() + 1;
    let taken = Cell::new(0);
    let mut turn = write_out.after(poll_fn(|cx| {
        while taken.get() < chunks {
            match write_and_flush(&mut io, cx, &chunk) {
                Poll::Ready(Ok(_)) => taken.set(taken.get() + 1),
                _ => return Poll::<()>::Pending,
            }
        }
        Poll::Pending
    }));
    assert!(poll_once(&mut turn).is_pending());
    assert_eq!(
        taken.get() * chunk.len(),
        LIMIT,
        "buffered up to the limit, then held back"
    );
    assert!(socket.writes().is_empty());
    socket.state().full = false;
    assert!(poll_once(&mut turn).is_pending());
    assert_eq!(taken.get(), chunks);
    assert_eq!(socket.bytes(), chunk.repeat(chunks));
}

#[test]
fn a_failed_write_out_is_returned_to_the_connections_next_call() {
    let socket = Socket::default();
    let (mut io, write_out) = Coalesced::new(socket.clone());
    let mut turns = 0;
    let mut outcome = None;
    let mut turn = write_out.after(poll_fn(|cx| {
        turns += 1;
        match turns {
            1 => {
                let _ = write_and_flush(&mut io, cx, b"response");
                Poll::Pending
            }
            _ => {
                outcome = Some(Pin::new(&mut io).poll_write(cx, b"next"));
                Poll::Ready(())
            }
        }
    }));
    socket.state().broken = true;
    assert!(poll_once(&mut turn).is_pending());
    assert!(poll_once(&mut turn).is_ready());
    drop(turn);
    assert!(
        matches!(outcome, Some(Poll::Ready(Err(ref e))) if e.kind() == io::ErrorKind::ConnectionReset),
        "{outcome:?}"
    );
}

#[test]
fn shutdown_writes_out_what_is_buffered_first() {
    let socket = Socket::default();
    let (mut io, _write_out) = Coalesced::new(socket.clone());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut io).poll_write(&mut cx, b"goaway").is_ready());
    assert!(socket.writes().is_empty());
    assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
    assert_eq!(socket.writes(), vec![b"goaway".to_vec()]);
    assert!(socket.state().shut);
}

#[tokio::test]
async fn reads_pass_through() {
    let (mut peer, end) = tokio::io::duplex(64);
    let (mut io, _write_out) = Coalesced::new(end);
    tokio::io::AsyncWriteExt::write_all(&mut peer, b"frame")
        .await
        .expect("write to the duplex");
    let mut read = [0u8; 5];
    io.read_exact(&mut read).await.expect("read through");
    assert_eq!(&read, b"frame");
}

#[test]
fn a_burst_leaves_no_more_than_the_kept_buffer_behind() {
    let socket = Socket::default();
    let (mut io, write_out) = Coalesced::new(socket.clone());
    let frame = vec![5u8; 16 * 1024 + 9];
    let shared = io.0.clone();
    let mut turn = write_out.after(poll_fn(|cx| {
        for _ in 0..3 {
            assert!(write_and_flush(&mut io, cx, &frame).is_ready());
        }
        Poll::<()>::Pending
    }));
    assert!(poll_once(&mut turn).is_pending());
    assert_eq!(socket.bytes(), frame.repeat(3));
    let kept = super::lock(&shared).out.capacity();
    assert!(kept <= KEPT, "{kept} bytes kept after the burst");
}
