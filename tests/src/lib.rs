//! The end-to-end test harness for meshtrace: mock applications, clients, and a
//! sidecar started in front of them, so that each test reads in a few lines.
//!
//! ```no_run
//! # async fn demo() {
//! use meshtrace_tests::{apps::HttpApp, client, sidecar};
//!
//! let app = HttpApp::start().await;
//! let proxy = sidecar::new().inbound_to(app.addr()).start().await;
//! let rsp = client::http1_get(proxy.inbound_addr(), "/hello").await;
//! assert_eq!(rsp.headers()["x-echo-path"], "/hello");
//! # }
//! ```
//!
//! Everything binds `127.0.0.1:0`, stops when its handle is dropped, and every
//! await that could hang is bounded (see [`bound`]): a broken proxy fails a test
//! with a message instead of stalling the suite. Nothing waits by sleeping; tests
//! synchronise on events (a request arrived at a [`apps::Gate`], a log line
//! appeared in a [`process::ProxyProcess`]'s output).
//!
//! Spans the sidecar exports land in an in-process OTLP collector
//! ([`otlp::OtlpReceiver`]: gRPC, gRPC over TLS, or HTTP), which records them and
//! can be scripted to fail, reject, or answer slowly.

#![forbid(unsafe_code)]

mod accept;
pub mod apps;
pub mod bound;
pub mod browser;
pub mod client;
pub mod fleet;
pub mod kube_api;
pub mod netns;
pub mod otlp;
pub mod process;
pub mod sidecar;

/// The code generated from `proto/echo.proto`: the mock gRPC application's
/// messages, its server trait and its client.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("meshtrace.test.v1");
}

/// The error type boxed bodies and helpers carry: tests only report errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
