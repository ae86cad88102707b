//! Serving one downstream connection with hyper, and draining it on shutdown.
//!
//! hyper's own head limits (bytes, and HTTP/1 field count) sit well above the
//! configured ones, so an oversized head reaches [`super::limits`] and gets a 431
//! that says why; hyper's bare 431 is only for heads far beyond the limits.
//!
//! HTTP/1 connections keep alive and support upgrades; HTTP/2 connections
//! multiplex with flow control. A request head must complete within
//! `timeouts.header_read`; a connection with no request in flight closes after
//! `timeouts.idle` (HTTP/1: see [`deadline`]; HTTP/2: GOAWAY), so it outlives
//! the pools of common clients instead of racing their reuse. On drain, HTTP/1
//! finishes its in-flight request and closes; HTTP/2 sends GOAWAY and finishes
//! its open streams.
//!
//! HTTP/1 responses carry no `Keep-Alive: timeout=` hint: many pools ignore it
//! (Go's among them), and a header on every response is a cost; what prevents
//! the race is `timeouts.idle` above the clients' pool timeouts, so that they
//! close first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use self::deadline::Deadlines;
use self::inflight::{Counted, Requests};
use super::coalesce::Coalesced;
use super::Wire;
use crate::drain::Drain;

mod deadline;
mod inflight;

/// Per-connection server settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// HTTP/1 request-head deadline, from accept or from a head's first byte.
    pub header_read: Duration,
    /// How long a connection with no request in flight stays open
    /// (`timeouts.idle`).
    pub idle: Duration,
    /// The configured header limit; hyper's own hard limits sit above it.
    pub max_header_bytes: usize,
    /// The configured header-field count limit; hyper's sits above it too.
    pub max_header_count: usize,
}

impl ServerSettings {
    /// hyper's hard limit: room for the configured limit plus slack, so that
    /// oversize requests reach the limit layer and get an explanatory 431.
    fn hard_limit(self) -> usize {
        (self.max_header_bytes * 2 + 16 * 1024).max(8192)
    }

    /// hyper's HTTP/1 field-count limit (its default, 100, answers a bare 431):
    /// room for the configured count plus slack, so that a request with too many
    /// fields reaches the limit layer and gets an explanatory 431.
    fn hard_count(self) -> usize {
        self.max_header_count * 2 + 32
    }
}

/// Serves `io` as HTTP/1 or HTTP/2 (`wire`) until the peer leaves or the drain
/// completes it.
pub async fn serve<I, S, B>(io: I, wire: Wire, service: S, settings: ServerSettings, drain: Drain)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let requests = Arc::new(Requests::default());
    let service = Counted::new(service, requests.clone());
    let result = match wire {
        Wire::Http2 => {
            // One write per turn of the connection, not one per response.
            let (io, write_out) = Coalesced::new(io);
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(settings.hard_limit()).unwrap_or(u32::MAX))
                .serve_connection(TokioIo::new(io), service);
            let idle = inflight::idle(&requests, settings.idle);
            let conn = write_out.after(conn);
            until_closed(conn, &drain, idle, |conn| {
                conn.connection().graceful_shutdown();
            })
            .await
        }
        Wire::Http1 => {
            let io = Deadlines::new(io, requests, settings.header_read, settings.idle);
            // No hyper head deadline: it would also cut keep-alive waits, and
            // [`Deadlines`] keeps both with one timer per connection.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .max_buf_size(settings.hard_limit())
                .max_headers(settings.hard_count())
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            let idle = std::future::pending();
            until_closed(conn, &drain, idle, |conn| conn.graceful_shutdown()).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "downstream connection ended with an error");
    }
}

/// Runs `conn` to its end; once the drain starts or the connection has been
/// `idle` (HTTP/2), asks it to `shut_down` gracefully (HTTP/1: after the
/// request in flight; HTTP/2: GOAWAY) and lets it finish.
async fn until_closed<C>(
    conn: C,
    drain: &Drain,
    idle: impl Future<Output = ()>,
    shut_down: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(conn);
    tokio::select! {
        biased;
        result = conn.as_mut() => result,
        () = drain.signaled() => {
            shut_down(conn.as_mut());
            conn.await
        }
        () = idle => {
            tracing::debug!("idle connection closing");
            shut_down(conn.as_mut());
            conn.await
        }
    }
}

#[cfg(test)]
mod tests;
