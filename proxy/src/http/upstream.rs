//! Pooled hyper clients, one per upstream target and protocol.
//!
//! hyper's pooling client keys connections by the request URI's authority, but the
//! sidecar must *preserve* the authority the application wrote (`reviews:9080`)
//! while connecting somewhere else (the original destination, or a route's
//! target). So each target gets its own client whose connector always dials that
//! target; the authority stays in the request untouched. HTTP/1 clients reuse
//! keep-alive connections; HTTP/2 clients multiplex every request over one
//! connection.
//!
//! Clients live in a copy-on-write map read through `arc-swap`: looking one up is
//! lock-free; inserting (once per new target) copies the map. The map is capped:
//! past [`MAX_TARGETS`] it starts afresh (clients still in use live on).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshtrace_config::HostPort;
use tokio::net::TcpStream;

use crate::listen;
use crate::metrics::ErrorKind;

/// Distinct upstream targets kept before the map is reset.
const MAX_TARGETS: usize = 4096;

/// A pooled client bound to one target (shared: a client is a few hundred bytes
/// of handles, too much to copy per request).
pub type HttpClient = Arc<Client<Dialer, Incoming>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    target: Arc<HostPort>,
    http2: bool,
}

/// Every upstream client of the sidecar; cheap to clone.
#[derive(Clone)]
pub struct Upstreams {
    clients: Arc<ArcSwap<HashMap<Key, HttpClient>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

// === impl Upstreams ===

impl Upstreams {
    /// No clients yet; they are made on first use.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            clients: Arc::default(),
            connect_timeout,
            idle_timeout,
        }
    }

    /// The client for `target` speaking HTTP/2 (`http2`) or HTTP/1.
    pub fn client(&self, target: &Arc<HostPort>, http2: bool) -> HttpClient {
        let key = Key {
            target: target.clone(),
            http2,
        };
        if let Some(client) = self.clients.load().get(&key) {
            return client.clone();
        }
        let client = self.build(target.clone(), http2);
        self.clients.rcu(|map| {
            let mut map = if map.len() >= MAX_TARGETS {
                HashMap::new()
            } else {
                HashMap::clone(map)
            };
            map.entry(key.clone()).or_insert_with(|| client.clone());
            map
        });
        client
    }

    fn build(&self, target: Arc<HostPort>, http2: bool) -> HttpClient {
        let dialer = Dialer {
            target,
            timeout: self.connect_timeout,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.idle_timeout)
            .http2_only(http2);
        Arc::new(builder.build(dialer))
    }
}

/// Connects to one fixed target whatever the request URI says.
#[derive(Clone, Debug)]
pub struct Dialer {
    target: Arc<HostPort>,
    timeout: Duration,
}

impl tower::Service<http::Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let target = self.target.clone();
        let timeout = self.timeout;
        Box::pin(async move { dial(&target, timeout).await.map(TokioIo::new) })
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

/// Classifies a client failure for metrics and the edge response.
pub fn classify(error: &hyper_util::client::legacy::Error) -> ErrorKind {
    if !error.is_connect() {
        return ErrorKind::UpstreamReset;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return classify_connect(io);
        }
        source = e.source();
    }
    ErrorKind::Unreachable
}

/// Classifies a failed dial.
pub fn classify_connect(error: &io::Error) -> ErrorKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
        _ => ErrorKind::Unreachable,
    }
}
