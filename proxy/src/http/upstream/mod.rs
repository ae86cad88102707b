//! Upstream connection pools, one per target and protocol: HTTP/1 with a
//! client codec of our own ([`h1`]; hyper's client only for upgrade requests),
//! HTTP/2 on `h2`'s client driven directly ([`h2`]).
//!
//! The sidecar must *preserve* the authority the application wrote (`reviews:9080`)
//! while connecting somewhere else (the original destination, or a route's
//! target), so a pool is keyed by the target it dials, never by the request URI.
//!
//! - [`h1`]: idle HTTP/1 connections in a LIFO list, each given back by its
//!   response body when it ends ([`body`]);
//! - [`h2`]: shared HTTP/2 connections, each carrying at most 100 streams, so
//!   that unread responses cannot use up a connection's window;
//! - [`connect`]: how connections are opened — the TCP dial, or an injected
//!   [`Connect`] (in-memory IO in tests);
//! - [`reaper`]: closes connections idle past `timeouts.idle`.
//!
//! This replaces hyper-util's legacy client, whose per-request pool checkout
//! (a SipHash of the URI authority, a select between checkout and connect, a task
//! spawned to return each HTTP/1 connection) was a fifth of the sidecar's
//! instructions per request (benches/RESULTS.md).
//!
//! Pools live in a copy-on-write map read through `arc-swap`: looking one up is
//! lock-free; inserting (once per new target) copies the map. The map is capped:
//! past [`MAX_TARGETS`] it starts afresh (pools still in use live on).

mod body;
mod connect;
mod h1;
mod h2;
mod reaper;

#[cfg(test)]
pub(crate) mod mock;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future;
use http::{Request, Response};
use hyper::body::Incoming;
use meshtrace_config::HostPort;

pub use body::{BodyError, UpstreamBody};
pub use connect::{
    classify_connect, dial, Connect, Connecting, Connector, Dialled, Io, UpstreamIo,
};
pub use h1::{Http1Error, ProtocolError};

use super::Wire;
use crate::metrics::ErrorKind;

/// Distinct upstream targets kept before the map is reset.
const MAX_TARGETS: usize = 4096;

/// Idle HTTP/1 connections kept per target; more are closed when they go idle.
const MAX_IDLE_PER_TARGET: usize = 512;

/// A pool shared by every connection forwarding to its target.
pub type HttpClient = Arc<Pool>;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    target: Arc<HostPort>,
    wire: Wire,
}

type Pools = HashMap<Key, HttpClient>;

/// Every upstream pool of the sidecar; cheap to clone.
#[derive(Clone)]
pub struct Upstreams {
    pools: Arc<ArcSwap<Pools>>,
    connect_timeout: Duration,
    connector: Connector,
}

/// The connections to one target in one protocol.
pub struct Pool {
    target: Arc<HostPort>,
    wire: Wire,
    connect_timeout: Duration,
    connector: Connector,
    state: Mutex<State>,
    /// Serialises HTTP/2 dials, so a burst on a cold pool opens one connection.
    h2_dial: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// HTTP/1 connections with no exchange in progress, most recent last.
    idle: Vec<Idle>,
    /// The HTTP/2 connections, oldest first (requests fill the oldest).
    h2: Vec<h2::Listed>,
}

struct Idle {
    conn: h1::Conn,
    since: tokio::time::Instant,
}

/// Why a request got no response from its upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Dialling the target failed.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The connection's handshake failed (HTTP/2's preface).
    #[error("handshake: {0}")]
    Handshake(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP/1 exchange failed: the connection, or the upstream's response.
    #[error("request: {0}")]
    Http1(#[source] h1::Http1Error),
    /// hyper's HTTP/1 connection (of an upgrade request) failed.
    #[error("request: {0}")]
    Request(#[source] hyper::Error),
    /// The HTTP/2 stream or its connection failed.
    #[error("stream: {0}")]
    Stream(#[source] ::h2::Error),
    /// The downstream request body failed while it was being sent.
    #[error("request body: {0}")]
    RequestBody(#[source] hyper::Error),
}

// === impl Upstreams ===

impl Upstreams {
    /// No pools yet; they are made on first use. Call from within the runtime: it
    /// starts the idle reaper, which ends with the last clone.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        let upstreams = Self {
            pools: Arc::default(),
            connect_timeout,
            connector: Connector::Tcp,
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reaper::reap(Arc::downgrade(&upstreams.pools), idle_timeout));
        }
        upstreams
    }

    /// Opens every upstream connection with `connect` instead of the TCP dial
    /// (still bounded by the connect timeout): the seam for in-process tests of
    /// the forwarding path. Call before the first pool is made.
    pub fn with_connector(mut self, connect: Arc<dyn Connect>) -> Self {
        self.connector = Connector::Custom(connect);
        self
    }

    /// How upstream connections are opened (the opaque TCP path uses it too).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The pool for `target` speaking `wire`.
    pub fn client(&self, target: &Arc<HostPort>, wire: Wire) -> HttpClient {
        let key = Key {
            target: target.clone(),
            wire,
        };
        if let Some(pool) = self.pools.load().get(&key) {
            return pool.clone();
        }
        let pool = Arc::new(Pool {
            target: target.clone(),
            wire,
            connect_timeout: self.connect_timeout,
            connector: self.connector.clone(),
            state: Mutex::default(),
            h2_dial: tokio::sync::Mutex::new(()),
        });
        self.pools.rcu(|map| {
            let mut map = if map.len() >= MAX_TARGETS {
                HashMap::new()
            } else {
                HashMap::clone(map)
            };
            map.entry(key.clone()).or_insert_with(|| pool.clone());
            map
        });
        pool
    }
}

// === impl Pool ===

impl Pool {
    /// Sends `req` (its URI and `Host` already in the form this protocol needs,
    /// its hop-by-hop headers gone: [`super::headers::strip_hop_by_hop`];
    /// HTTP/2 refuses a request with any) and returns the response head; the
    /// body streams from the connection.
    ///
    /// Not an `async fn`: one would keep its own copy of the request beside
    /// the one the wire's future holds (an argument is never overlapped with
    /// what it awaits), and every move of the future copies it.
    pub fn send(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send + 'static {
        match self.wire {
            Wire::Http2 => future::Either::Left(self.send_h2(req)),
            Wire::Http1 => future::Either::Right(self.send_h1(req)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and an option, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn dial(&self) -> Result<UpstreamIo, SendError> {
        self.connector
            .connect(&self.target, self.connect_timeout)
            .await
            .map_err(SendError::Connect)
    }
}

/// Classifies a failed send for metrics and the edge response.
pub fn classify(error: &SendError) -> ErrorKind {
    match error {
        SendError::Connect(io) => classify_connect(io),
        SendError::Handshake(_) => ErrorKind::Unreachable,
        // A failed request body is the client's doing: the caller asks
        // `downstream_body_error` first, and answers it as the client's.
        SendError::Http1(_)
        | SendError::Request(_)
        | SendError::Stream(_)
        | SendError::RequestBody(_) => ErrorKind::UpstreamReset,
    }
}

/// The error of the request body being relayed — the downstream client's, read
/// as it is sent — when that body, not the upstream, failed the exchange: a
/// malformed chunked body, or a client gone mid-upload, is the client's fault.
///
/// Both protocols send the body themselves and say so
/// ([`SendError::RequestBody`]); hyper's HTTP/1 client (upgrade requests only)
/// reports a failing request body as a "user body" error caused by the body's
/// own error, the downstream's `Incoming`, so a `hyper::Error`.
pub fn downstream_body_error(error: &SendError) -> Option<&hyper::Error> {
    match error {
        SendError::Request(e) if e.is_user() => std::error::Error::source(e)?.downcast_ref(),
        SendError::RequestBody(e) => Some(e),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
