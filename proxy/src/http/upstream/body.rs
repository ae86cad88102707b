//! The response body of an upstream exchange, which returns its HTTP/1
//! connection to the pool, or gives up its HTTP/2 stream's place on its
//! connection, when it ends.
//!
//! An HTTP/1 connection is busy until the response body has been read, so it is
//! given back when the body reports its end — not when the head arrives. Until
//! then the body reads the connection itself ([`Conn::poll_body`]), moving on
//! an upload still in progress as it goes. A body dropped half-read, or one
//! whose upload did not finish, leaves the connection unusable: dropping it
//! closes the connection. A body the server never polls (empty, `HEAD`) still
//! ended, and gives its connection back when dropped. The response to an
//! upgrade request is hyper's ([`super::h1`]) and returns nothing.
//!
//! An HTTP/2 body is `h2`'s stream, read as hyper's client reads one: each
//! chunk's bytes are given back to the flow-control window as soon as they are
//! read, then come the trailers, and a reset with `NO_ERROR` or `CANCEL` ends
//! the body rather than failing it. Dropped unfinished, `h2` resets the stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::{Reason, RecvStream};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1::{Conn, Decoded, Framing, Http1Error, Upload};
use super::h2::StreamSlot;
use super::Pool;

/// An HTTP/1 exchange whose response head has arrived: the connection, the
/// response body still to read, the upload still to send.
pub(super) struct Exchange {
    pub(super) pool: Arc<Pool>,
    pub(super) conn: Conn,
    pub(super) framing: Framing,
    pub(super) upload: Option<Upload>,
    /// The upstream lets the connection carry another request.
    pub(super) keep_alive: bool,
}

/// A response body from an upstream; an HTTP/1 connection returns to its pool
/// when the body ends.
pub struct UpstreamBody(Kind);

enum Kind {
    /// Boxed: the connection's buffers are moved with every response.
    Http1 {
        /// None once the body ended or failed.
        exchange: Option<Box<Exchange>>,
    },
    /// The response to an upgrade request, read by hyper's client.
    Upgrade(Incoming),
    Http2 {
        body: RecvStream,
        /// The data frames have all been read; the trailers are next.
        data_done: bool,
        /// What `content-length` says is still to come.
        remaining: Option<u64>,
        /// The stream's place on its connection, given up when dropped.
        _slot: StreamSlot,
    },
}

/// Why an upstream response body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The HTTP/1 connection failed.
    #[error(transparent)]
    Http1(#[from] Http1Error),
    /// hyper's HTTP/1 connection (of an upgrade request) failed.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// The HTTP/2 stream failed.
    #[error(transparent)]
    Http2(#[from] h2::Error),
}

// === impl UpstreamBody ===

impl UpstreamBody {
    /// An HTTP/1 response body, giving back its connection (when it can be
    /// reused) at the end.
    pub(super) fn h1(exchange: Exchange) -> Self {
        Self(Kind::Http1 {
            exchange: Some(Box::new(exchange)),
        })
    }

    /// The response to an upgrade request, read by hyper.
    pub(super) fn upgrade(body: Incoming) -> Self {
        Self(Kind::Upgrade(body))
    }

    /// An HTTP/2 response body (`head` its response's), holding its stream's
    /// place until dropped.
    pub(super) fn h2(head: &HeaderMap, body: RecvStream, slot: StreamSlot) -> Self {
        // h2 has checked the value (a malformed one resets the stream).
        let remaining = head
            .get(CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok()?.parse().ok());
        Self(Kind::Http2 {
            body,
            data_done: false,
            remaining,
            _slot: slot,
        })
    }

    /// Gives back the HTTP/1 connection of a body that ended, if it can
    /// carry another request.
    fn ended(&mut self) {
        if let Kind::Http1 { exchange } = &mut self.0 {
            if let Some(exchange) = exchange.take() {
                let Exchange {
                    pool,
                    conn,
                    upload,
                    keep_alive,
                    ..
                } = *exchange;
                if keep_alive && upload.is_none() && conn.is_clean() {
                    pool.give_back(conn);
                }
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = match &mut self.0 {
            Kind::Http1 { exchange: None } => Poll::Ready(None),
            Kind::Http1 {
                exchange: Some(exchange),
            } => {
                let Exchange {
                    conn,
                    framing,
                    upload,
                    ..
                } = &mut **exchange;
                match ready!(conn.poll_body(cx, framing, upload)) {
                    Ok(Decoded::Data(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    // `More` is never returned: the connection reads for it.
                    Ok(Decoded::End | Decoded::More) => Poll::Ready(None),
                    Err(error) => Poll::Ready(Some(Err(error.into()))),
                }
            }
            Kind::Upgrade(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(BodyError::Hyper))),
            Kind::Http2 {
                body,
                data_done,
                remaining,
                ..
            } => poll_h2(cx, body, data_done, remaining),
        };
        match &polled {
            Poll::Ready(None) => self.ended(),
            // A failed HTTP/1 connection is not reused: dropping it closes it.
            Poll::Ready(Some(Err(_))) => {
                if let Kind::Http1 { exchange } = &mut self.0 {
                    *exchange = None;
                }
            }
            // Trailers end the body: the connection can go back now.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => self.ended(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Http1 { exchange } => exchange.as_ref().is_none_or(|e| e.framing.is_done()),
            Kind::Upgrade(body) => body.is_end_stream(),
            Kind::Http2 { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Http1 { exchange: None } => SizeHint::with_exact(0),
            Kind::Http1 {
                exchange: Some(exchange),
            } => exchange
                .framing
                .remaining()
                .map_or_else(SizeHint::new, SizeHint::with_exact),
            Kind::Upgrade(body) => body.size_hint(),
            Kind::Http2 { remaining, .. } => {
                remaining.map_or_else(SizeHint::new, SizeHint::with_exact)
            }
        }
    }
}

/// The next frame of an HTTP/2 response body: data, then trailers.
fn poll_h2(
    cx: &mut Context<'_>,
    body: &mut RecvStream,
    data_done: &mut bool,
    remaining: &mut Option<u64>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    if !*data_done {
        match ready!(body.poll_data(cx)) {
            Some(Ok(chunk)) => {
                // The connection is never closed by a failed release: the
                // stream's own error shows on the next read.
                let _ = body.flow_control().release_capacity(chunk.len());
                if let Some(left) = remaining {
                    *left = left.saturating_sub(chunk.len() as u64);
                }
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            Some(Err(error)) => {
                return match error.reason() {
                    Some(Reason::NO_ERROR | Reason::CANCEL) => Poll::Ready(None),
                    _ => Poll::Ready(Some(Err(error.into()))),
                }
            }
            None => *data_done = true,
        }
    }
    match ready!(body.poll_trailers(cx)) {
        Ok(trailers) => Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers)))),
        Err(error) => Poll::Ready(Some(Err(error.into()))),
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.is_end_stream() {
            self.ended();
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pooled = matches!(&self.0, Kind::Http1 { exchange: Some(_) });
        f.debug_struct("UpstreamBody")
            .field("pooled", &pooled)
            .finish_non_exhaustive()
    }
}
