//! The response body of an upstream exchange, which returns its HTTP/1
//! connection to the pool when it ends.
//!
//! An HTTP/1 connection is busy until the response body has been read, so it is
//! given back when the body reports its end — not when the head arrives. A body
//! dropped half-read leaves the connection unusable: dropping the sender with it
//! closes the connection. A body the server never polls (empty, `HEAD`) still
//! ended, and gives its connection back when dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::Pool;

/// An HTTP/1 connection on its way back to its pool.
pub(super) struct GiveBack {
    pub(super) pool: Arc<Pool>,
    pub(super) sender: http1::SendRequest<Incoming>,
}

/// A response body from an upstream; an HTTP/1 connection returns to its pool
/// when the body ends.
pub struct UpstreamBody {
    inner: Incoming,
    give_back: Option<GiveBack>,
}

// === impl UpstreamBody ===

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, give_back: Option<GiveBack>) -> Self {
        Self { inner, give_back }
    }

    fn ended(&mut self) {
        if let Some(GiveBack { pool, sender }) = self.give_back.take() {
            pool.give_back(sender);
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
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended(),
            Poll::Ready(Some(Err(_))) => self.give_back = None,
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
            .field("pooled", &self.give_back.is_some())
            .finish_non_exhaustive()
    }
}
