//! The events of the watch stream, as the control plane's client reads them.
//!
//! The parser and the event are the shared wire protocol
//! ([`meshtrace_config::wire`]): the sidecar reads the stream with the very same
//! code, so both ends agree on line endings, comments and size limits.

use meshtrace_config::wire::ConfigPush;
use meshtrace_config::Config;

pub use meshtrace_config::wire::sse::{Limits, SseError, SseEvent, SseParser};

/// The `data` of a `config` event, with the config typed.
pub type ConfigEvent = ConfigPush<Config>;
