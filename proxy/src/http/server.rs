//! Serving one downstream connection with hyper, and draining it on shutdown.
//!
//! hyper's own head limits (bytes, and HTTP/1 field count) sit well above the
//! configured ones, so an oversized head reaches [`super::limits`] and gets a 431
//! that says why; hyper's bare 431 is only for heads far beyond the limits.
//!
//! HTTP/1 connections keep alive and support upgrades; HTTP/2 connections
//! multiplex with flow control. A request head must complete within
//! `timeouts.header_read`; a connection with nothing in flight closes
//! gracefully after `timeouts.idle` (see [`idle`]), so it outlives the pools of
//! common clients instead of racing their reuse. On drain, HTTP/1 finishes its
//! in-flight request and closes; HTTP/2 sends GOAWAY and finishes its open
//! streams.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use self::idle::{Activity, Expiry, Tracked};
use super::Wire;
use crate::drain::Drain;

mod idle;

/// Per-connection server settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Request-head deadline (HTTP/1), from accept or from a head's first byte.
    pub header_read: Duration,
    /// How long a connection with nothing in flight stays open (`timeouts.idle`).
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
    let activity = Activity::new(wire == Wire::Http1);
    let io = TokioIo::new(Tracked::new(io, activity.clone()));
    let tracker = activity.clone();
    let service = TowerToHyperService::new(tower::service_fn(move |req| {
        let in_flight = tracker.request();
        let call = service.clone().oneshot(req);
        async move {
            let res = call.await?;
            // The response body holds the request in flight until it is done.
            Ok::<_, S::Error>(res.map(|body| {
                body.map_frame(move |frame| {
                    let _held = &in_flight;
                    frame
                })
            }))
        }
    }));
    let watch = Watch {
        drain: &drain,
        activity: &activity,
        settings,
    };
    let result = match wire {
        Wire::Http2 => {
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(settings.hard_limit()).unwrap_or(u32::MAX))
                .serve_connection(io, service);
            watch
                .until_closed(conn, |conn| conn.graceful_shutdown())
                .await
        }
        Wire::Http1 => {
            // No hyper head deadline: it would also cut keep-alive waits.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .max_buf_size(settings.hard_limit())
                .max_headers(settings.hard_count())
                .serve_connection(io, service)
                .with_upgrades();
            watch
                .until_closed(conn, |conn| conn.graceful_shutdown())
                .await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "downstream connection ended with an error");
    }
}

/// What ends a connection early: the drain, or a deadline of its [`Activity`].
struct Watch<'a> {
    drain: &'a Drain,
    activity: &'a Activity,
    settings: ServerSettings,
}

// === impl Watch ===

impl Watch<'_> {
    /// Runs `conn` to its end. Once the drain starts or the connection has
    /// been idle for `idle`, asks it to `shut_down` gracefully (HTTP/1: after
    /// the request in flight; HTTP/2: GOAWAY) and lets it finish; a request
    /// head that misses `header_read` drops the connection.
    async fn until_closed<C>(
        self,
        conn: C,
        shut_down: impl FnOnce(Pin<&mut C>),
    ) -> hyper::Result<()>
    where
        C: Future<Output = hyper::Result<()>>,
    {
        let ServerSettings {
            header_read, idle, ..
        } = self.settings;
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => result,
            () = self.drain.signaled() => {
                shut_down(conn.as_mut());
                conn.await
            }
            expiry = self.activity.expired(header_read, idle) => {
                if expiry == Expiry::Head {
                    tracing::debug!(?header_read, "request head not complete in time; closing");
                    return Ok(());
                }
                shut_down(conn.as_mut());
                conn.await
            }
        }
    }
}

#[cfg(test)]
mod tests;
