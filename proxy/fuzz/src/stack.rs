//! The `http1_stack` target's harness: the sidecar's in-process HTTP stack
//! ([`meshtrace_proxy::fuzzing::Stack`]) served over `tokio::io::duplex`, in
//! front of an upstream stand-in (a hyper server on in-memory IO) that answers
//! and keeps what was forwarded. One current-thread runtime and the four
//! listeners are built once and reused by every input.

use std::convert::Infallible;
use std::future::ready;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use meshtrace_config::{Config, HostPort};
use meshtrace_proxy::fuzzing::Stack;
use meshtrace_proxy::http::upstream::{Connect, Connecting, Io};
use meshtrace_proxy::target::{Destination, Direction};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;

/// How long one input may take before it counts as a hang (a finding): far
/// below every timeout the sidecar's config sets (header read 10 s, request
/// 15 s), since the client always ends its side.
pub const HANG: Duration = Duration::from_secs(5);

/// The value the stand-in puts in its own `meshtrace-proxy-error` header, which
/// must never reach the client.
pub const UPSTREAM_ERROR_VALUE: &str = "from-the-upstream";

/// The listeners an input can pick (`control & 3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Inbound, trusted (default config): toward the app every format.
    Inbound = 0,
    /// Inbound, `trusted: false`, default sampling rate 0.
    Untrusted = 1,
    /// Outbound, transparent, default config (legacy stage).
    Outbound = 2,
    /// Outbound with a rule writing all five formats to port 9080 (the
    /// default `host`'s; 128-bit ids) and a forced tenant (`x-tenant-id: acme`).
    AllFormats = 3,
}

impl Listener {
    /// The listener `control` picks.
    pub fn of(control: u8) -> Self {
        [
            Self::Inbound,
            Self::Untrusted,
            Self::Outbound,
            Self::AllFormats,
        ][usize::from(control & 3)]
    }
}

const UNTRUSTED: &str = "inbound:\n  trusted: false\nsampling:\n  default_rate: 0.0\n";
const ALL_FORMATS: &str = "\
propagation:
  upstreams:
    - name: all
      match: {port: 9080}
      inject: [tracecontext, b3multi, b3single, datadog, jaeger]
      id_width: \"128\"
sampling:
  forced_tenants:
    - tenant: acme
      traces_per_second: 1000000
";

/// A request head (and body) the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its version (HTTP/1.1 or HTTP/2).
    pub version: http::Version,
    /// Its header fields.
    pub headers: HeaderMap,
}

/// Every request the stand-in received since the input started.
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
/// How the stand-in answers (the input's `(control >> 2) & 7`).
static REPLY: AtomicU8 = AtomicU8::new(0);

/// The stand-in's answer of kind `kind`.
fn reply(kind: u8) -> Response<Full<Bytes>> {
    let (status, body): (u16, &'static [u8]) = match kind {
        1 => (204, b""),
        2 => (304, b""),
        3 => (404, b"nope"),
        4 => (500, b"broken"),
        7 => (200, &[b'x'; 8192]),
        _ => (200, b"ok"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    match kind {
        4 => {
            headers.insert(
                "meshtrace-proxy-error",
                UPSTREAM_ERROR_VALUE.parse().unwrap(),
            );
        }
        5 => {
            let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            headers.insert("traceparent", tp.parse().unwrap());
            headers.insert(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
                    .parse()
                    .unwrap(),
            );
        }
        6 => {
            headers.insert("connection", "close".parse().unwrap());
        }
        _ => {}
    }
    response
}

/// The upstream stand-in: every connection is a duplex stream served by hyper
/// (HTTP/1 or HTTP/2, as the sidecar speaks), answering per [`REPLY`] without
/// reading the body, and keeping each request head in [`SEEN`].
struct StandIn;

impl Connect for StandIn {
    fn connect(&self, _target: &HostPort) -> Connecting {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let service = service_fn(|req: Request<Incoming>| {
            let seen = Seen {
                version: req.version(),
                headers: req.headers().clone(),
            };
            SEEN.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(seen);
            ready(Ok::<_, Infallible>(reply(REPLY.load(Ordering::Relaxed))))
        });
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(far), service).await;
        });
        Box::pin(ready(Ok(Box::new(near) as Box<dyn Io>)))
    }
}

/// The runtime and the listeners, built once.
pub struct Harness {
    runtime: Runtime,
    stacks: Vec<Stack>,
}

/// The address the sidecar sees the client at.
const PEER: ([u8; 4], u16) = ([10, 0, 0, 7], 40000);

fn config(yaml: &str) -> Config {
    Config::from_yaml_str(yaml, "fuzz").unwrap()
}

impl Harness {
    /// The one harness of the process.
    pub fn get() -> &'static Self {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Self::build)
    }

    fn build() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let connect: Arc<dyn Connect> = Arc::new(StandIn);
        let app = Destination::Fixed(Arc::new(HostPort::from(SocketAddr::from((
            [127, 0, 0, 1],
            8080,
        )))));
        let original = Destination::Fixed(Arc::new(HostPort::from(SocketAddr::from((
            [10, 1, 2, 3],
            9080,
        )))));
        let stacks = runtime.block_on(async {
            vec![
                Stack::new(
                    Direction::Inbound,
                    config("{}"),
                    app.clone(),
                    connect.clone(),
                ),
                Stack::new(Direction::Inbound, config(UNTRUSTED), app, connect.clone()),
                Stack::new(
                    Direction::Outbound,
                    config("{}"),
                    original.clone(),
                    connect.clone(),
                ),
                Stack::new(Direction::Outbound, config(ALL_FORMATS), original, connect),
            ]
        });
        Self { runtime, stacks }
    }

    /// Writes `bytes` as one client connection to `listener` (then ends the
    /// client's side), with the stand-in answering `reply_kind`. Returns what
    /// the client read until the sidecar closed and what reached the stand-in,
    /// or `None` if that did not end within [`HANG`].
    pub fn exchange(
        &self,
        listener: Listener,
        reply_kind: u8,
        bytes: &[u8],
    ) -> Option<(Vec<u8>, Vec<Seen>)> {
        SEEN.lock().unwrap_or_else(PoisonError::into_inner).clear();
        REPLY.store(reply_kind, Ordering::Relaxed);
        let stack = &self.stacks[listener as usize];
        let (client, server) = tokio::io::duplex(64 * 1024);
        let run = async {
            let served = stack.serve(server, SocketAddr::from(PEER));
            let ((), back) = tokio::join!(served, client_side(client, bytes));
            back
        };
        let back = self
            .runtime
            .block_on(async { tokio::time::timeout(HANG, run).await.ok() })?;
        let seen = std::mem::take(&mut *SEEN.lock().unwrap_or_else(PoisonError::into_inner));
        Some((back, seen))
    }
}

/// Writes `bytes`, ends the write side, and reads until the sidecar closes.
async fn client_side(mut client: DuplexStream, bytes: &[u8]) -> Vec<u8> {
    let _ = client.write_all(bytes).await;
    let _ = client.shutdown().await;
    let mut back = Vec::new();
    let _ = client.read_to_end(&mut back).await;
    back
}
