//! The response body of an upstream exchange, which returns its HTTP/1
//! connection to the pool, or gives up its HTTP/2 stream's place on its
//! connection, when it ends.
//!
//! An HTTP/1 connection is busy until the response body has been read, so it is
//! given back when the body reports its end — not when the head arrives. Until
//! then the body drives the connection ([`Conn::drive`]): reading the body
//! polls the dispatcher that receives it. A body dropped half-read leaves the
//! connection unusable: dropping it closes the connection. A body the server
//! never polls (empty, `HEAD`) still ended, and gives its connection back when
//! dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1::Conn;
use super::h2::StreamSlot;
use super::Pool;

/// An HTTP/1 connection on its way back to its pool.
pub(super) struct GiveBack {
    pub(super) pool: Arc<Pool>,
    pub(super) conn: Conn,
}

/// What a response body holds of its connection until it ends.
enum Held {
    /// Nothing (an upgraded HTTP/1 connection, or already given back).
    Nothing,
    /// An HTTP/1 connection, returned to its pool when the body ends.
    Connection(GiveBack),
    /// An HTTP/2 stream's place on its connection, given up when dropped.
    Stream(#[expect(dead_code, reason = "held for its Drop")] StreamSlot),
}

/// A response body from an upstream; an HTTP/1 connection returns to its pool
/// when the body ends.
pub struct UpstreamBody {
    inner: Incoming,
    held: Held,
}

// === impl UpstreamBody ===

impl UpstreamBody {
    /// An HTTP/1 response body, giving back its connection (when it can be
    /// reused) at the end.
    pub(super) fn h1(inner: Incoming, give_back: Option<GiveBack>) -> Self {
        let held = give_back.map_or(Held::Nothing, Held::Connection);
        Self { inner, held }
    }

    /// An HTTP/2 response body, holding its stream's place until the end.
    pub(super) fn h2(inner: Incoming, slot: StreamSlot) -> Self {
        let held = Held::Stream(slot);
        Self { inner, held }
    }

    fn ended(&mut self) {
        if let Held::Connection(GiveBack { pool, mut conn }) =
            std::mem::replace(&mut self.held, Held::Nothing)
        {
            conn.finish(&pool.target);
            pool.give_back(conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.held {
            // Frames come from the connection's dispatcher, driven here.
            Held::Connection(GiveBack { pool, conn }) if conn.is_inline() => {
                conn.poll_body(cx, &mut this.inner, &pool.target)
            }
            _ => Pin::new(&mut this.inner).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(None) => self.ended(),
            // A failed HTTP/1 connection is not reused: dropping it closes it.
            Poll::Ready(Some(Err(_))) => self.held = Held::Nothing,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.ended();
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &matches!(self.held, Held::Connection(_)))
            .finish_non_exhaustive()
    }
}
