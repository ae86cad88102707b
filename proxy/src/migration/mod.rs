//! Visibility for the legacy → W3C migration: which trace formats arrive, from
//! which calling workload, which the local app sends, and what the sidecar
//! writes — counted on the request path with relaxed atomics only, and
//! summarised in the periodic [`Report`] to the control plane.
//!
//! - [`caller::Callers`]: inbound requests (from the mesh) by calling workload,
//!   which the calling sidecar names in the [`caller::HEADER_NAME`] header —
//!   "who still sends me B3?" — with a bounded number of label values; the
//!   inbound totals are their sum.
//! - [`FormatCounts`] of outbound requests (from the local app), by the formats
//!   they carried.
//! - [`AppFormats`]: what the app speaks, learned from its outbound requests
//!   (it also decides what is written toward the app).
//!
//! One [`Migration`] lives for the whole process, shared by both listeners and
//! kept across reloads, so counts never restart on a config change.

pub mod caller;
mod counts;

use meshtrace_config::report::Report;
use meshtrace_config::Config;
use tokio::time::Instant;

pub use counts::FormatCounts;

use crate::metrics::Metrics;
use crate::propagation::learn::AppFormats;

/// The process-wide migration state.
#[derive(Debug)]
pub struct Migration {
    /// What the app was seen sending.
    pub app: AppFormats,
    /// Requests from the local app.
    pub outbound: FormatCounts,
    /// Requests from the mesh, by calling workload.
    pub callers: caller::Callers,
    /// Random per process: tells the control plane that counts restarted.
    boot: u64,
    /// When counting started.
    started: Instant,
}

// === impl Migration ===

impl Migration {
    /// Fresh counts, registered in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            app: AppFormats::default(),
            outbound: FormatCounts::default(),
            callers: caller::Callers::new(metrics),
            boot: fastrand::u64(..),
            started: Instant::now(),
        }
    }

    /// The report for the control plane under `config` (identity, stage and
    /// `learn_for`), as of `now`.
    pub fn report(&self, config: &Config, namespace: &str, pod: &str, now: Instant) -> Report {
        let propagation = &config.propagation;
        Report {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            service: config.workload.service.clone(),
            boot: self.boot,
            uptime_seconds: Some(now.saturating_duration_since(self.started).as_secs()),
            stage: propagation.stage,
            inbound: self.callers.total(),
            outbound: self.outbound.snapshot(),
            callers: self.callers.snapshot(),
            app_formats: self.app.ages(now, propagation.learn_for.get()),
            routes: std::collections::BTreeMap::new(),
        }
    }
}
