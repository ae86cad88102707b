//! The control-plane wire protocol, defined once for both ends: the sidecar
//! (`meshtrace-proxy`, which must not depend on the control plane) and the
//! control plane's server and client.
//!
//! A sidecar opens `GET /v1/watch?service=S&namespace=N&pod=P&label=k%3Dv…`
//! (components [`encode()`]d) and reads a Server-Sent Events stream ([`sse`]):
//!
//! ```text
//! event: config
//! id: 17
//! data: {"version":17,"config":{…the workload's resolved config…}}
//!
//! : keepalive
//!
//! ```
//!
//! A `config` event carries a [`ConfigPush`]; an `error` event (the workload's
//! config cannot be resolved) carries `{"version", "error"}` and the sidecar
//! keeps its config. The server sends [`KEEPALIVE_COMMENT`] every [`KEEPALIVE`];
//! a client that hears nothing for [`SILENCE`] treats the stream as dead. The
//! sidecar answers each version with `POST /v1/ack` and an [`Ack`] body.

pub mod encode;
pub mod sse;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use encode::{decode, encode};
pub use sse::{SseError, SseEvent, SseParser};

/// How often the server writes a keep-alive comment on an idle stream (often
/// enough for NATs and proxies to keep the connection).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// The keep-alive comment, a whole SSE block.
pub const KEEPALIVE_COMMENT: &str = ": keepalive\n\n";

/// A stream with no byte (keep-alives included) for this long is dead: three
/// keep-alives missed.
pub const SILENCE: Duration = Duration::from_secs(45);

/// The SSE event name of a pushed config.
pub const CONFIG_EVENT: &str = "config";

/// The SSE event name of a config the control plane cannot resolve.
pub const ERROR_EVENT: &str = "error";

/// The `data` of a `config` event. `C` is how the reader wants the config: the
/// typed `Config`, or a `serde_json::Value` that the sidecar completes with its
/// local settings before typing it (so a config it cannot read is NACKed with
/// the reason, not dropped as an unreadable event).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct ConfigPush<C> {
    /// The control plane's global version when this config was resolved.
    pub version: u64,
    /// The workload's full config.
    pub config: C,
}

/// The `data` of an `error` event.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorPush {
    /// The control plane's global version.
    pub version: u64,
    /// Why the workload's config cannot be resolved.
    pub error: String,
}

/// The body of `POST /v1/ack`: what a sidecar did with one pushed version.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The sidecar's namespace.
    pub namespace: String,
    /// The sidecar's pod.
    pub pod: String,
    /// The version it applied or rejected.
    pub version: u64,
    /// `ack` or `nack`.
    pub status: AckStatus,
    /// Why it rejected the version (NACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a version was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Applied.
    Ack,
    /// Rejected; the sidecar keeps its last good config.
    Nack,
}

/// The SSE text of a `config` event whose config is already rendered as JSON
/// (the control plane renders each resolved config once, for every watcher).
pub fn config_event(version: u64, config_json: &str) -> String {
    let event = SseEvent {
        event: CONFIG_EVENT.into(),
        id: Some(version.to_string()),
        data: format!("{{\"version\":{version},\"config\":{config_json}}}"),
    };
    event.to_string()
}
