//! Upstream connection pools, one per target and protocol, built on hyper's
//! connection-level client.
//!
//! The sidecar must *preserve* the authority the application wrote (`reviews:9080`)
//! while connecting somewhere else (the original destination, or a route's
//! target), so a pool is keyed by the target it dials, never by the request URI.
//!
//! - **HTTP/1**: idle connections wait in a LIFO list (the most recently used is
//!   the warmest). A request takes one (or dials), and its response body gives the
//!   connection back when it ends — not when the head arrives, because the
//!   connection is busy until the body has been read. A body dropped before its end
//!   closes the connection; a 101 hands it to the upgrade. A request the pool could
//!   not even start on a reused connection (it closed under us) is retried once on
//!   the next one, like hyper-util's client does; a fresh connection's failure is
//!   final.
//! - **HTTP/2**: one connection carries every request; a closed one is replaced by
//!   the next request, one dial at a time.
//!
//! This replaces hyper-util's legacy client, whose per-request pool checkout
//! (a SipHash of the URI authority, a select between checkout and connect, a task
//! spawned to return each HTTP/1 connection) was a fifth of the sidecar's
//! instructions per request (benches/RESULTS.md).
//!
//! Pools live in a copy-on-write map read through `arc-swap`: looking one up is
//! lock-free; inserting (once per new target) copies the map. The map is capped:
//! past [`MAX_TARGETS`] it starts afresh (pools still in use live on). A reaper
//! closes connections idle past `timeouts.idle`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshtrace_config::HostPort;
use tokio::net::TcpStream;

use crate::listen;
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
    http2: bool,
}

type Pools = HashMap<Key, HttpClient>;

/// Every upstream pool of the sidecar; cheap to clone.
#[derive(Clone)]
pub struct Upstreams {
    pools: Arc<ArcSwap<Pools>>,
    connect_timeout: Duration,
}

/// The connections to one target in one protocol.
pub struct Pool {
    target: Arc<HostPort>,
    http2: bool,
    connect_timeout: Duration,
    state: Mutex<State>,
    /// Serialises HTTP/2 dials, so a burst on a cold pool opens one connection.
    h2_dial: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// HTTP/1 connections with no exchange in progress, most recent last.
    idle: Vec<Idle>,
    /// The HTTP/2 connection.
    h2: Option<http2::SendRequest<Incoming>>,
}

struct Idle {
    sender: http1::SendRequest<Incoming>,
    since: tokio::time::Instant,
}

/// Why a request got no response from its upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Dialling the target failed.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The HTTP/2 connection preface failed.
    #[error("HTTP/2 handshake: {0}")]
    Handshake(#[source] hyper::Error),
    /// The connection failed while the request was in flight.
    #[error("request: {0}")]
    Request(#[source] hyper::Error),
}

// === impl Upstreams ===

impl Upstreams {
    /// No pools yet; they are made on first use. Call from within the runtime: it
    /// starts the idle reaper, which ends with the last clone.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        let upstreams = Self {
            pools: Arc::default(),
            connect_timeout,
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reap(Arc::downgrade(&upstreams.pools), idle_timeout));
        }
        upstreams
    }

    /// The pool for `target` speaking HTTP/2 (`http2`) or HTTP/1.
    pub fn client(&self, target: &Arc<HostPort>, http2: bool) -> HttpClient {
        let key = Key {
            target: target.clone(),
            http2,
        };
        if let Some(pool) = self.pools.load().get(&key) {
            return pool.clone();
        }
        let pool = Arc::new(Pool {
            target: target.clone(),
            http2,
            connect_timeout: self.connect_timeout,
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

/// Closes connections idle longer than `idle_timeout`, until the pools are gone.
async fn reap(pools: Weak<ArcSwap<Pools>>, idle_timeout: Duration) {
    let period = (idle_timeout / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pools) = pools.upgrade() else { return };
        for pool in pools.load().values() {
            pool.reap(idle_timeout);
        }
    }
}

// === impl Pool ===

impl Pool {
    /// Sends `req` (its URI and `Host` already in the form this protocol needs)
    /// and returns the response head; the body streams from the connection.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if self.http2 {
            self.send_h2(req).await
        } else {
            self.send_h1(req).await
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                // Boxed: the dial is rare, and inline it would make every
                // request's future (moved at each layer) several times larger.
                None => (Box::pin(self.dial_h1()).await?, false),
            };
            // A reused connection is ready (checked) unless it closed since; a
            // fresh one once its task runs.
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Request(error));
            }
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                    let give_back = (!upgraded).then(|| GiveBack {
                        pool: self.clone(),
                        sender,
                    });
                    return Ok(response.map(|body| UpstreamBody::new(body, give_back)));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.shared_h2() {
                Some(sender) => (sender, true),
                None => Box::pin(self.dial_h2()).await?,
            };
            if let Err(error) = sender.ready().await {
                self.forget_h2();
                if reused {
                    continue;
                }
                return Err(SendError::Request(error));
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response.map(|body| UpstreamBody::new(body, None))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => {
                        self.forget_h2();
                        req = unsent;
                    }
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and an option, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that can take a request now. One
    /// still sending an earlier request's body (its response ended first, e.g. an
    /// early 413) stays listed until it can; waiting for it could take as long as
    /// that upload. Closed ones are dropped.
    fn checkout(&self) -> Option<http1::SendRequest<Incoming>> {
        let mut state = self.lock();
        let mut i = state.idle.len();
        while i > 0 {
            i -= 1;
            let sender = &state.idle[i].sender;
            if sender.is_closed() {
                state.idle.remove(i);
            } else if sender.is_ready() {
                return Some(state.idle.remove(i).sender);
            }
        }
        None
    }

    /// Takes back a connection whose exchange ended.
    fn give_back(&self, sender: http1::SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut state = self.lock();
        if state.idle.len() < MAX_IDLE_PER_TARGET {
            state.idle.push(Idle {
                sender,
                since: tokio::time::Instant::now(),
            });
        }
    }

    fn reap(&self, idle_timeout: Duration) {
        let expired: Vec<Idle> = {
            let mut state = self.lock();
            let (keep, expired) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|idle| idle.since.elapsed() < idle_timeout && !idle.sender.is_closed());
            state.idle = keep;
            expired
        };
        // Dropping the senders closes the connections, outside the lock.
        drop(expired);
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<Incoming>> {
        self.lock().h2.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    fn forget_h2(&self) {
        let mut state = self.lock();
        if state.h2.as_ref().is_some_and(http2::SendRequest::is_closed) {
            state.h2 = None;
        }
    }

    async fn dial_h1(&self) -> Result<http1::SendRequest<Incoming>, SendError> {
        let io = self.dial().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Handshake)?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%target, %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The shared HTTP/2 connection, dialled unless another request just did; the
    /// flag says whether it was already there.
    async fn dial_h2(&self) -> Result<(http2::SendRequest<Incoming>, bool), SendError> {
        let _dialing = self.h2_dial.lock().await;
        if let Some(sender) = self.shared_h2() {
            return Ok((sender, true));
        }
        let io = self.dial().await?;
        let handshake = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io);
        let (sender, conn) = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(result) => result.map_err(SendError::Handshake)?,
            Err(_) => {
                return Err(SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP/2 handshake timed out",
                )))
            }
        };
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%target, %error, "upstream connection ended with an error");
            }
        });
        self.lock().h2 = Some(sender.clone());
        Ok((sender, false))
    }

    async fn dial(&self) -> Result<TokioIo<TcpStream>, SendError> {
        dial(&self.target, self.connect_timeout)
            .await
            .map(TokioIo::new)
            .map_err(SendError::Connect)
    }
}

/// An HTTP/1 connection on its way back to its pool.
struct GiveBack {
    pool: Arc<Pool>,
    sender: http1::SendRequest<Incoming>,
}

/// A response body from an upstream; an HTTP/1 connection returns to its pool
/// when the body ends.
pub struct UpstreamBody {
    inner: Incoming,
    give_back: Option<GiveBack>,
}

impl UpstreamBody {
    fn new(inner: Incoming, give_back: Option<GiveBack>) -> Self {
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
        // A body the server never polls (empty, HEAD) still ended; one dropped
        // half-read leaves its connection unusable, and dropping the sender with
        // it closes the connection.
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

/// Dials an IP literal directly, or each address a name resolves to in turn.
pub async fn dial(target: &HostPort, timeout: Duration) -> io::Result<TcpStream> {
    if let Some(addr) = target.socket_addr() {
        return listen::connect(addr, timeout).await;
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host(), target.port()))
        .await
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve {target}: {e}"),
            )
        })?
        .collect();
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{target} resolved to no address"),
    );
    for addr in addrs {
        match listen::connect(addr, timeout).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Classifies a failed send for metrics and the edge response.
pub fn classify(error: &SendError) -> ErrorKind {
    match error {
        SendError::Connect(io) => classify_connect(io),
        SendError::Handshake(_) => ErrorKind::Unreachable,
        SendError::Request(_) => ErrorKind::UpstreamReset,
    }
}

/// Classifies a failed dial.
pub fn classify_connect(error: &io::Error) -> ErrorKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
        _ => ErrorKind::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    /// A raw HTTP/1 upstream answering `ok` to each request: it counts
    /// connections, reports each one's end, and with `close` drops the connection
    /// after every response without saying so (as a restarting app does).
    async fn upstream(close: bool) -> (SocketAddr, Arc<AtomicUsize>, mpsc::Receiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (ended, ends) = mpsc::channel(64);
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let ended = ended.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(reply).await.is_err() || close {
                                let _ = ended.send(()).await;
                                return;
                            }
                        }
                    }
                    let _ = ended.send(()).await;
                });
            }
        });
        (addr, accepted, ends)
    }

    /// A front server forwarding every request through `pool`, as the sidecar's
    /// stack does (its request bodies are hyper's `Incoming`).
    async fn front(pool: HttpClient) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let pool = pool.clone();
                let service = service_fn(move |req| {
                    let pool = pool.clone();
                    async move { pool.send(req).await }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    /// Sends `n` GETs one after another on one connection to `front`.
    async fn get_sequentially(front: SocketAddr, n: usize) {
        let stream = TcpStream::connect(front).await.unwrap();
        let (mut sender, conn) =
            http1::handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        for _ in 0..n {
            let req = Request::get("/")
                .header("host", "app")
                .body(Default::default())
                .unwrap();
            let response = tokio::time::timeout(BOUND, sender.send_request(req))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
    }

    /// The pool for `upstream`; the reaper runs while the `Upstreams` lives.
    fn pool(upstream: SocketAddr, idle: Duration) -> (Upstreams, HttpClient) {
        let upstreams = Upstreams::new(Duration::from_secs(1), idle);
        let pool = upstreams.client(&Arc::new(upstream.into()), false);
        (upstreams, pool)
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted, _) = upstream(false).await;
        let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
        let front = front(pool).await;
        get_sequentially(front, 20).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced_without_failing_a_request() {
        let (addr, accepted, _) = upstream(true).await;
        let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
        let front = front(pool).await;
        get_sequentially(front, 20).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn a_connection_still_sending_an_upload_is_not_handed_to_the_next_request() {
        let (addr, accepted, _) = upstream(false).await;
        let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
        let front = front(pool).await;
        // The upstream answers at once; the upload's body then stalls for good.
        let stream = TcpStream::connect(front).await.unwrap();
        let (mut uploader, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let chunk = futures_util::stream::once(async {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x")))
        });
        let stalled = http_body_util::StreamBody::new(futures_util::StreamExt::chain(
            chunk,
            futures_util::stream::pending(),
        ));
        let req = Request::post("/upload")
            .header("host", "app")
            .header("content-length", "10")
            .body(stalled)
            .unwrap();
        let response = tokio::time::timeout(BOUND, uploader.send_request(req))
            .await
            .unwrap()
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        // Another client's request gets a connection of its own, not a wait.
        get_sequentially(front, 1).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout() {
        let (addr, accepted, mut ends) = upstream(false).await;
        let (_upstreams, pool) = pool(addr, Duration::from_millis(200));
        let front = front(pool).await;
        get_sequentially(front, 3).await;
        // The reaper closes the idle connection: the upstream sees it end.
        tokio::time::timeout(BOUND, ends.recv()).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_dial_is_classified() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
        let Err(error) = pool.dial_h1().await else {
            panic!("dialled a closed port");
        };
        assert_eq!(classify(&error), ErrorKind::ConnectRefused);
    }
}
