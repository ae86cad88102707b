//! meshtrace-proxy: the sidecar. It accepts inbound (mesh → app) and outbound
//! (app → mesh) connections, detects HTTP/1.1, HTTP/2 and gRPC (anything else is
//! forwarded as opaque TCP), and forwards each request with pooled upstream
//! connections, timeouts and honest edge errors, recording a span per request
//! ([`telemetry`]) exported over OTLP.
//!
//! Start at [`stack`]: it assembles the per-connection flow in one place.
//! [`sidecar`] starts and stops the whole; [`reload`] is every way a new config
//! reaches it (control plane, file, disk cache) and the one place it is applied.
//! The binary (`main.rs`) only parses the command line, loads the config, installs
//! logging and signal handlers, and runs a [`Sidecar`].

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods)]
// Production code returns errors; tests may unwrap (clippy.toml `allow-*-in-tests`).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod adaptive;
pub mod admin;
pub mod detect;
pub mod drain;
pub mod explain;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod histogram;
pub mod http;
pub mod init;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod migration;
pub mod orig_dst;
pub mod propagation;
pub mod reload;
pub mod sampling;
pub mod sidecar;
pub mod stack;
pub mod target;
pub mod tcp;
pub mod telemetry;
pub mod trim;

pub use reload::{ReloadError, Reloader, StartError};
pub use sidecar::Sidecar;

#[cfg(test)]
mod test_support;
