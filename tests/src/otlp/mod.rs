//! An in-process OTLP trace collector: the place a sidecar under test exports its
//! spans to, so a test can assert on what the proxy reported.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use meshtrace_tests::otlp::OtlpReceiver;
//!
//! let collector = OtlpReceiver::start_grpc().await;
//! // … point a sidecar at `collector.endpoint()` and send it a request …
//! let spans = collector.wait_for_spans(1, Duration::from_secs(10)).await;
//! assert_eq!(spans[0].attr_str("http.request.method").as_deref(), Some("GET"));
//! # }
//! ```
//!
//! # Model
//!
//! A receiver speaks one transport ([`Mode`]): OTLP/gRPC, OTLP/gRPC over TLS with
//! a self-signed certificate, or OTLP/HTTP with protobuf bodies. Whatever the
//! transport, each export request goes through the same steps:
//!
//! 1. it is counted as an *attempt* and recorded as an [`ExportRequest`] (its
//!    headers, whether it was gzip-compressed, and the [`Answer`] chosen for it);
//! 2. the answer is the next scripted one ([`OtlpReceiver::fail_next`],
//!    [`OtlpReceiver::reject_next`]), in arrival order, else success;
//! 3. the receiver waits the configured [`OtlpReceiver::delay`], if any;
//! 4. unless the answer is a failure, the request's spans are stored, flattened
//!    into [`ReceivedSpan`]s, and the answer is sent.
//!
//! A client that gives up during the delay (an exporter timeout) cancels the
//! request, so its spans are not stored: what was stored is what a client could
//! believe delivered. Every step notifies waiters, so tests wait on events
//! ([`OtlpReceiver::wait_for_spans`], [`OtlpReceiver::wait_until`],
//! [`OtlpReceiver::wait_for_attempts`]), each bounded by a timeout that fails the
//! test with a summary of what did arrive.
//!
//! Stopping a receiver ([`OtlpReceiver::shutdown`], or dropping it) closes its
//! listener *and* its open connections, so an exporter holding a connection sees
//! the collector go away; a new receiver can then be started on the same address
//! ([`OtlpReceiver::start_grpc_on`], [`OtlpReceiver::start_http_on`],
//! [`OtlpReceiver::start_grpc_tls_on`]) to bring the collector back.

mod grpc;
mod http;
mod listen;
mod record;
mod script;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

pub use record::{Answer, ExportRequest, ReceivedSpan};
pub use script::Failure;
pub use tls::SelfSignedCert;

use listen::Listening;
use record::Recording;
use script::{Plan, Script};

/// Which OTLP transport a receiver speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// OTLP/gRPC over cleartext HTTP/2 (`http://`).
    Grpc,
    /// OTLP/gRPC over TLS (`https://`), with a [`SelfSignedCert`].
    GrpcTls,
    /// OTLP/HTTP: `POST /v1/traces` with `application/x-protobuf` bodies.
    Http,
}

/// A running in-process OTLP collector; stops (listener and connections) when
/// dropped or [shut down](OtlpReceiver::shutdown).
#[derive(Debug)]
pub struct OtlpReceiver {
    mode: Mode,
    cert: Option<SelfSignedCert>,
    collector: Arc<Collector>,
    listening: Listening,
}

/// What the transports share: the script that decides answers and the
/// recording tests read.
#[derive(Debug, Default)]
struct Collector {
    script: Script,
    recording: Recording,
}

/// How a transport must answer one export request.
enum Outcome {
    /// Answer success with this body.
    Accept(ExportTraceServiceResponse),
    /// Answer with this scripted failure.
    Fail(Failure),
}

// === impl OtlpReceiver ===

impl OtlpReceiver {
    /// Starts an OTLP/gRPC receiver on `127.0.0.1:0`.
    pub async fn start_grpc() -> Self {
        Self::start_grpc_on(loopback()).await
    }

    /// Starts an OTLP/gRPC receiver on `addr`: the address of a receiver that was
    /// shut down, to bring a collector back.
    pub async fn start_grpc_on(addr: SocketAddr) -> Self {
        let collector = Arc::<Collector>::default();
        let listening = Listening::bind(addr, grpc::serve(collector.clone(), None)).await;
        Self {
            mode: Mode::Grpc,
            cert: None,
            collector,
            listening,
        }
    }

    /// Starts an OTLP/gRPC receiver over TLS on `127.0.0.1:0`, with a fresh
    /// self-signed certificate for `localhost` and `127.0.0.1` (see
    /// [`OtlpReceiver::ca_pem`]).
    pub async fn start_grpc_tls() -> Self {
        Self::start_grpc_tls_on(loopback(), SelfSignedCert::localhost()).await
    }

    /// Starts an OTLP/gRPC receiver over TLS on `addr` presenting `cert`: pass a
    /// stopped receiver's [`OtlpReceiver::cert`] so clients that trust it
    /// reconnect.
    pub async fn start_grpc_tls_on(addr: SocketAddr, cert: SelfSignedCert) -> Self {
        let collector = Arc::<Collector>::default();
        let tls = Some(cert.acceptor());
        let listening = Listening::bind(addr, grpc::serve(collector.clone(), tls)).await;
        Self {
            mode: Mode::GrpcTls,
            cert: Some(cert),
            collector,
            listening,
        }
    }

    /// Starts an OTLP/HTTP (protobuf) receiver on `127.0.0.1:0`.
    pub async fn start_http() -> Self {
        Self::start_http_on(loopback()).await
    }

    /// Starts an OTLP/HTTP (protobuf) receiver on `addr`: the address of a
    /// receiver that was shut down, to bring a collector back.
    pub async fn start_http_on(addr: SocketAddr) -> Self {
        let collector = Arc::<Collector>::default();
        let listening = Listening::bind(addr, http::serve(collector.clone())).await;
        Self {
            mode: Mode::Http,
            cert: None,
            collector,
            listening,
        }
    }

    /// The transport this receiver speaks.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where the receiver listens.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// The URL an exporter is configured with: `http://ADDR` (gRPC),
    /// `https://localhost:PORT` (gRPC over TLS, the name the certificate is
    /// for), or `http://ADDR/v1/traces` (HTTP).
    pub fn endpoint(&self) -> String {
        let addr = self.addr();
        match self.mode {
            Mode::Grpc => format!("http://{addr}"),
            Mode::GrpcTls => format!("https://localhost:{}", addr.port()),
            Mode::Http => format!("http://{addr}/v1/traces"),
        }
    }

    /// The certificate a TLS receiver presents, or `None` for cleartext modes.
    pub fn cert(&self) -> Option<&SelfSignedCert> {
        self.cert.as_ref()
    }

    /// The PEM of the certificate a client must trust to reach a TLS receiver.
    ///
    /// # Panics
    ///
    /// If the receiver does not speak TLS: the test asked for a CA that does not
    /// exist.
    pub fn ca_pem(&self) -> &str {
        match &self.cert {
            Some(cert) => cert.ca_pem(),
            None => panic!(
                "a {:?} OTLP receiver has no CA: start it with TLS",
                self.mode
            ),
        }
    }

    /// Stops the receiver: closes the listener and every open connection, and
    /// returns once they are closed, so the port can be bound again.
    pub async fn shutdown(mut self) {
        self.listening.stop().await;
    }

    // --- scripting ---

    /// Makes the next `n` export requests (after those already scripted) fail
    /// with `failure`. Their spans are not stored; they count as attempts.
    ///
    /// # Panics
    ///
    /// If `failure` is not of this receiver's transport (`Failure::Http` on a
    /// gRPC receiver or the reverse), or is not a valid HTTP status.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        failure.check_for(self.mode);
        self.collector.script.fail_next(n, failure);
    }

    /// Makes the next `n` export requests (after those already scripted) answer
    /// success with a `partial_success` of `rejected_spans` and `message`. Their
    /// spans are stored, and the requests counted by
    /// [`OtlpReceiver::rejected_requests`].
    pub fn reject_next(&self, n: usize, rejected_spans: i64, message: impl Into<String>) {
        self.collector
            .script
            .reject_next(n, rejected_spans, message.into());
    }

    /// Makes every export request from now on wait `delay` before it is
    /// answered (a slow collector); `Duration::ZERO` restores prompt answers.
    pub fn delay(&self, delay: Duration) {
        self.collector.script.set_delay(delay);
    }

    // --- what was received ---

    /// Every span stored so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.collector.recording.spans()
    }

    /// Every export request received so far, failed ones included.
    pub fn exports(&self) -> Vec<ExportRequest> {
        self.collector.recording.exports()
    }

    /// How many export requests were answered with success (partial or not).
    pub fn requests(&self) -> usize {
        self.collector
            .recording
            .count(|answer| !answer.is_failure())
    }

    /// How many export requests were received, failed ones included.
    pub fn attempts(&self) -> usize {
        self.collector.recording.count(|_| true)
    }

    /// How many export requests were answered with a `partial_success`.
    pub fn rejected_requests(&self) -> usize {
        self.collector
            .recording
            .count(|answer| matches!(answer, Answer::Rejected { .. }))
    }

    /// The headers (gRPC metadata) of every export request received so far,
    /// failed ones included, in arrival order.
    pub fn request_headers(&self) -> Vec<HeaderMap> {
        self.exports().into_iter().map(|e| e.headers).collect()
    }

    // --- waiting ---

    /// Waits until at least `n` spans are stored and returns them all.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what the receiver did get.
    pub async fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let what = format!("{n} span(s) at the OTLP collector");
        self.collector
            .recording
            .wait(timeout, what, |spans, _| spans.len() >= n)
            .await
            .0
    }

    /// Waits until `done` holds for the spans stored so far and returns them.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what the receiver did get.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let what = "the OTLP collector's spans to satisfy the test's condition";
        self.collector
            .recording
            .wait(timeout, what, |spans, _| done(spans))
            .await
            .0
    }

    /// Waits until at least `n` export requests (failed ones included) have
    /// arrived and returns them all: how a test sees retries, whose failed
    /// attempts store no spans.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what the receiver did get.
    pub async fn wait_for_attempts(&self, n: usize, timeout: Duration) -> Vec<ExportRequest> {
        let what = format!("{n} export request(s) at the OTLP collector");
        self.collector
            .recording
            .wait(timeout, what, |_, exports| exports.len() >= n)
            .await
            .1
    }
}

/// `127.0.0.1:0`.
fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// === impl Collector ===

impl Collector {
    /// One export request, whatever its transport: recorded and answered as the
    /// module documentation describes.
    async fn export(
        &self,
        headers: HeaderMap,
        gzip: bool,
        request: ExportTraceServiceRequest,
    ) -> Outcome {
        let (plan, delay) = self.script.next();
        self.recording.arrived(
            headers,
            gzip,
            span_count(&request),
            Answer::from(plan.clone()),
        );
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match plan {
            Plan::Fail(failure) => Outcome::Fail(failure),
            Plan::Accept => {
                self.recording.store(request);
                Outcome::Accept(ExportTraceServiceResponse::default())
            }
            Plan::Reject {
                rejected_spans,
                message,
            } => {
                self.recording.store(request);
                Outcome::Accept(ExportTraceServiceResponse {
                    partial_success: Some(ExportTracePartialSuccess {
                        rejected_spans,
                        error_message: message,
                    }),
                })
            }
        }
    }

    /// A request the transport could not read as an export: recorded so a test
    /// waiting for attempts sees it, then answered with an error by the caller.
    fn refused(&self, headers: HeaderMap, gzip: bool, reason: String) {
        self.recording
            .arrived(headers, gzip, 0, Answer::Refused(reason));
    }
}

fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}
