//! Reload: every way a new configuration reaches a running sidecar, and the one
//! place it is applied.
//!
//! # Where configurations come from
//!
//! - the control plane's watch stream ([`control_plane`]), beside which the
//!   sidecar sends its reports;
//! - without a control plane, the `--config` file, polled for changes ([`mod@file`]);
//! - at start-up, the last config the control plane pushed, cached on disk
//!   ([`cache`]), so a sidecar restarting while the control plane is down comes up
//!   with its last good config.
//!
//! A pushed or cached config is first completed with the pod's own settings
//! ([`local::local_view`]). Every variable of the environment, the `OTEL_*`
//! export variables included, was applied when the config was loaded
//! (`meshtrace_config::env`), so what [`Reloader::apply`](apply::Reloader::apply) receives is exactly
//! what the admin `/config` will show.
//!
//! # Applying
//!
//! [`Reloader::apply`](apply::Reloader::apply) takes a whole new configuration, validates it, and swaps
//! it in: propagation, sampling, spans and routes apply from the next request (on
//! open connections too), connection-level settings (destinations, opaque ports,
//! detection, header limits) from the next connection. A changed listen address is
//! bound first — a bind failure rejects the whole config — then the old listener
//! stops accepting while its connections finish. Changed export settings start a
//! new exporter; the old one flushes in the background.
//!
//! Settings fixed at start-up keep their running values whatever a new config
//! says (a restart applies them): `control`, `admin`, `runtime`, `log.format`,
//! `log.level`, `limits.backlog`, `limits.max_connections`, `timeouts.connect`,
//! `timeouts.idle` (`local::keep_startup_settings`).

pub mod apply;
pub mod cache;
pub mod control_plane;
pub mod file;
pub mod local;
pub(crate) mod running;

pub use apply::{ReloadError, Reloader};
pub use cache::startup_config;
pub use file::watch_file;
pub use running::StartError;
