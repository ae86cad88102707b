//! Serving one downstream connection with hyper, and draining it on shutdown.
//!
//! hyper's own head limits (bytes, and HTTP/1 field count) sit well above the
//! configured ones, so an oversized head reaches [`super::limits`] and gets a 431
//! that says why; hyper's bare 431 is only for heads far beyond the limits.
//!
//! HTTP/1 connections keep alive (an idle one waiting for its next request is
//! closed after `timeouts.header_read`) and support upgrades; HTTP/2 connections
//! multiplex with flow control. On drain, HTTP/1 finishes its in-flight request
//! and closes; HTTP/2 sends GOAWAY and finishes its open streams.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Wire;
use crate::drain::Drain;

/// Per-connection server settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// HTTP/1 request-head deadline (and keep-alive idle limit).
    pub header_read: Duration,
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
    let io = TokioIo::new(io);
    let service = TowerToHyperService::new(service);
    let result = match wire {
        Wire::Http2 => {
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(settings.hard_limit()).unwrap_or(u32::MAX))
                .serve_connection(io, service);
            until_drained(conn, &drain, |conn| conn.graceful_shutdown()).await
        }
        Wire::Http1 => {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(settings.header_read)
                .max_buf_size(settings.hard_limit())
                .max_headers(settings.hard_count())
                .serve_connection(io, service)
                .with_upgrades();
            until_drained(conn, &drain, |conn| conn.graceful_shutdown()).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "downstream connection ended with an error");
    }
}

/// Runs `conn` to its end; once the drain starts, asks it to `shut_down`
/// gracefully (HTTP/1: after the request in flight; HTTP/2: GOAWAY) and lets it
/// finish.
async fn until_drained<C>(
    conn: C,
    drain: &Drain,
    shut_down: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = drain.signaled() => {
            shut_down(conn.as_mut());
            conn.await
        }
    }
}

#[cfg(test)]
mod tests;
