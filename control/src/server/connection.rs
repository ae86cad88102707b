//! One accepted connection, from its first byte to its close: the deadlines and
//! the idle timeout of [`super::limits`], around hyper's HTTP/1.1 + h2c server.
//!
//! The phases:
//!
//! 1. **First byte**: peek under [`ConnectionLimits::first_byte_timeout`] before
//!    hyper sees the socket (its protocol detection waits without a deadline).
//! 2. **First request**: until the service is first called — protocol detection,
//!    the HTTP/2 preface, the whole first head — under a deadline of
//!    [`ConnectionLimits::header_timeout`] from accept; past it the connection is
//!    dropped (nothing is in flight to finish).
//! 3. **Serving**: requests are counted in flight from the service call until
//!    their response body is dropped (a watch: until its stream ends). When none
//!    has been in flight for [`ConnectionLimits::idle_timeout`], or on shutdown,
//!    the connection is shut down gracefully and gets [`DRAIN`] to finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{sleep_until, timeout, Instant};

use super::limits::{
    ConnectionLimits, ConnectionStats, H2_MAX_STREAMS, H2_PING_INTERVAL, H2_PING_TIMEOUT,
};
use super::DRAIN;
use crate::api::Api;

/// What every connection shares.
pub(super) struct Shared {
    pub(super) api: Api,
    pub(super) limits: ConnectionLimits,
    pub(super) builder: auto::Builder<TokioExecutor>,
}

/// The HTTP server settings: hyper's HTTP/1 header timer and HTTP/2 pings and
/// stream bound.
pub(super) fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// Requests in flight on one connection, and how many were started.
#[derive(Clone, Copy, Debug, Default)]
struct Busy {
    in_flight: usize,
    started: u64,
}

/// Held by a request from the service call until its response body is dropped.
struct InFlight(Arc<watch::Sender<Busy>>);

impl InFlight {
    fn begin(busy: &Arc<watch::Sender<Busy>>) -> Self {
        busy.send_modify(|b| {
            b.in_flight += 1;
            b.started += 1;
        });
        Self(busy.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .send_modify(|b| b.in_flight = b.in_flight.saturating_sub(1));
    }
}

/// Serves one connection until it closes, a deadline passes, or shutdown has
/// drained it. `_slot` is its place under the connection bound.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) {
    let stats = shared.api.connections.clone();
    stats.opened();
    run(stream, peer, &shared).await;
    stats.closed();
}

async fn run(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let accepted = Instant::now();
    let (limits, stats) = (&shared.limits, &shared.api.connections);
    match timeout(limits.first_byte_timeout, stream.peek(&mut [0u8; 1])).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return, // closed by the peer, or broken
        Err(_) => {
            stats.first_byte_timeout();
            tracing::debug!(%peer, "closed a connection that sent nothing");
            return;
        }
    }
    let busy = Arc::new(watch::Sender::new(Busy::default()));
    let mut activity = busy.subscribe();
    let api = shared.api.clone();
    let service = service_fn(move |req| {
        let (api, in_flight) = (api.clone(), InFlight::begin(&busy));
        async move {
            let res = api.handle(req).await;
            // The body keeps the request in flight: a watch for as long as it streams.
            let res = res.map(|body| {
                body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                })
                .boxed_unsync()
            });
            Ok::<_, Infallible>(res)
        }
    });
    let conn = shared
        .builder
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let shutdown = &shared.api.shutdown;
    tokio::select! {
        // Our deadline first: hyper's HTTP/1 header timer, started just after it,
        // may expire on the same tick.
        biased;
        _ = sleep_until(accepted + limits.header_timeout) => {
            stats.header_timeout();
            tracing::debug!(%peer, "closed a connection whose first request head was not complete in time");
            return;
        }
        ended = conn.as_mut() => return log_end(peer, ended, stats),
        _ = activity.wait_for(|b| b.started > 0) => {}
        _ = shutdown.cancelled() => return,
    }
    tokio::select! {
        ended = conn.as_mut() => return log_end(peer, ended, stats),
        () = idle(&mut activity, limits) => {
            stats.idle();
            tracing::debug!(%peer, "closing an idle connection");
        }
        _ = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    match timeout(DRAIN, conn).await {
        Ok(ended) => log_end(peer, ended, stats),
        Err(_) => tracing::debug!(%peer, "closed a connection still busy after the drain period"),
    }
}

/// Resolves once no request has been in flight for the idle timeout.
async fn idle(activity: &mut watch::Receiver<Busy>, limits: &ConnectionLimits) {
    loop {
        if activity.wait_for(|b| b.in_flight == 0).await.is_err() {
            // The service (and the connection) is gone: the connection arm ends.
            return std::future::pending().await;
        }
        let started = activity.borrow().started;
        let busy_again = activity.wait_for(|b| b.in_flight > 0 || b.started != started);
        if timeout(limits.idle_timeout, busy_again).await.is_err() {
            return;
        }
    }
}

/// Logs how a connection ended; counts hyper's HTTP/1 header timer (a later
/// head too slow, or an HTTP/1 keep-alive idle for the header timeout).
fn log_end(
    peer: SocketAddr,
    ended: Result<(), Box<dyn std::error::Error + Send + Sync>>,
    stats: &ConnectionStats,
) {
    let Err(e) = ended else {
        return;
    };
    // hyper's header timeout is a timeout without a cause; its HTTP/2 keepalive
    // timeout has one (the unanswered ping) and is not a header timeout.
    let header_timer = |h: &hyper::Error| h.is_timeout() && std::error::Error::source(h).is_none();
    if e.downcast_ref::<hyper::Error>().is_some_and(header_timer) {
        stats.header_timeout();
    }
    tracing::debug!(%peer, error = %e, "connection ended with an error");
}
