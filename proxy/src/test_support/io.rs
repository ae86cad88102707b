//! In-memory IO for HTTP layer tests: a downstream connection served over
//! `tokio::io::duplex` with hyper clients on the other end, an app that holds
//! requests until the test lets them go, and the access log captured as JSON.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::drain::Drain;
use crate::http::server::{self, ServerSettings};
use crate::http::{ProxyBody, Wire};
use crate::target::Protocol;

use super::App;

/// Room for large header blocks without back-pressure games.
const DUPLEX_BUFFER: usize = 256 * 1024;

/// How the server serves one test connection: `settings` as a listener would
/// pass them, HTTP/1 unless set to HTTP/2.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// What the connection speaks.
    pub protocol: Protocol,
    /// The request-head deadline.
    pub header_read: Duration,
    /// The idle timeout (`timeouts.idle`).
    pub idle: Duration,
    /// `limits.max_header_bytes`.
    pub max_header_bytes: usize,
    /// `limits.max_header_count`.
    pub max_header_count: usize,
    /// The drain the connection watches.
    pub drain: Drain,
}

// === impl Downstream ===

impl Downstream {
    /// HTTP/1 with the config's default deadlines and header limit.
    pub fn http1() -> Self {
        let timeouts = meshtrace_config::Timeouts::default();
        Self {
            protocol: Protocol::Http1,
            header_read: timeouts.header_read.get(),
            idle: timeouts.idle.get(),
            max_header_bytes: 64 * 1024,
            max_header_count: 100,
            drain: Drain::default(),
        }
    }

    /// HTTP/2 (prior knowledge) with the same defaults.
    pub fn h2() -> Self {
        Self {
            protocol: Protocol::Http2,
            ..Self::http1()
        }
    }

    /// Serves `service` on a new connection; returns the client's end and the
    /// task serving it, which ends when the connection does.
    pub fn serve<S>(&self, service: S) -> (DuplexStream, JoinHandle<()>)
    where
        S: tower::Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>,
        S: Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let (client, server) = tokio::io::duplex(DUPLEX_BUFFER);
        (client, self.serve_over(server, service))
    }

    /// Serves `service` on `io`, the server's end of a connection; returns the
    /// task serving it.
    pub fn serve_over<I, S>(&self, io: I, service: S) -> JoinHandle<()>
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        S: tower::Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>,
        S: Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let settings = ServerSettings {
            header_read: self.header_read,
            idle: self.idle,
            max_header_bytes: self.max_header_bytes,
            max_header_count: self.max_header_count,
        };
        let wire = match self.protocol {
            Protocol::Http2 => Wire::Http2,
            _ => Wire::Http1,
        };
        let drain = self.drain.clone();
        tokio::spawn(server::serve(io, wire, service, settings, drain))
    }
}

/// A hyper HTTP/1 client over `io`; the task drives its connection.
pub async fn h1_client(
    io: DuplexStream,
) -> (
    http1::SendRequest<Full<Bytes>>,
    JoinHandle<hyper::Result<()>>,
) {
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP/1 handshake over duplex");
    (sender, tokio::spawn(conn))
}

/// A hyper HTTP/2 (prior knowledge) client over `io`; the task drives its
/// connection.
pub async fn h2_client(
    io: DuplexStream,
) -> (
    http2::SendRequest<Full<Bytes>>,
    JoinHandle<hyper::Result<()>>,
) {
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .expect("HTTP/2 handshake over duplex");
    (sender, tokio::spawn(conn))
}

/// An app that holds every request until the test opens the gate, and says
/// when one arrived — a synchronisation point instead of a sleep.
pub struct Gate {
    arrived: mpsc::UnboundedReceiver<()>,
    open: Arc<Semaphore>,
}

// === impl Gate ===

impl Gate {
    /// The gated app (answering 200 `done`) and its gate.
    pub fn app() -> (App<Incoming>, Self) {
        Self::answering(Bytes::from_static(b"done"))
    }

    /// The gated app answering 200 with `body`, and its gate.
    pub fn answering(body: Bytes) -> (App<Incoming>, Self) {
        let (tx, arrived) = mpsc::unbounded_channel();
        let open = Arc::new(Semaphore::new(0));
        let gate = open.clone();
        let service = tower::service_fn(move |_req| {
            let _ = tx.send(());
            let gate = gate.clone();
            let body = body.clone();
            async move {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                Ok(Response::new(Either::Right(Full::new(body))))
            }
        });
        (App::new(service), Self { arrived, open })
    }

    /// Waits until a request reached the app.
    pub async fn arrived(&mut self) {
        self.arrived.recv().await.expect("the gated app is alive");
    }

    /// Lets one held request answer.
    pub fn open(&self) {
        self.open.add_permits(1);
    }
}

/// Captures the `access` target's events, as JSON objects, for as long as it
/// lives (on the test's thread: tokio tests run on one).
pub struct AccessLog {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

/// Appends to the shared capture buffer.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// === impl AccessLog ===

impl AccessLog {
    /// Starts capturing.
    ///
    /// tracing caches each callsite's interest for the whole process, decided
    /// by the first thread that reaches it; while a single dispatcher exists,
    /// that thread's own default decides. A test thread without a subscriber
    /// would decide "never" and silence the callsite for this capture too. A
    /// global registry, installed once, makes every decision consult all
    /// dispatchers, so the capture's thread is asked on each event.
    pub fn capture() -> Self {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            // Fails only if a global subscriber exists: that serves as well.
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Every access-log line so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let buffer = self.buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buffer)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["target"] == "access")
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::AccessLog;

    /// An access-log event at a callsite of its own, so no other test reaches it.
    fn log_once() {
        tracing::info!(target: "access", complete = true, "access");
    }

    /// tracing caches each callsite's interest process-wide, decided by the
    /// first thread to reach it. A test thread without a subscriber must not
    /// decide "never" for a callsite another test is capturing.
    #[test]
    fn a_capture_sees_a_callsite_first_reached_on_a_thread_without_a_subscriber() {
        let log = AccessLog::capture();
        let other = std::thread::spawn(log_once).join();
        assert!(other.is_ok(), "the other thread logged");
        log_once();
        assert_eq!(log.lines().len(), 1, "the capture saw its own event");
    }
}
