//! The configuration in force and how it got there:
//! `meshtrace_config_reloads_total{source, result}` (so an operator sees a
//! rejected reload — an emptied file, a NACKed push — without reading logs),
//! `meshtrace_config_version`, `meshtrace_config_last_reload_timestamp_seconds`,
//! `meshtrace_control_plane_connected` and `meshtrace_migration_stage{stage}`.
//!
//! The reload counters of a source exist at zero from the moment the source
//! starts (the file watch, the control-plane watch): alerts take `rate()` of
//! the rejected ones. The gauges always exist, except the control-plane
//! connection, which exists only when a control plane is configured.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{SystemTime, UNIX_EPOCH};

use meshtrace_config::MigrationStage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::family::{Family, Show, Single};

/// The config families; reloads are rare, so each is looked up when it
/// happens (never on the request path).
#[derive(Debug)]
pub(super) struct Families {
    reloads: Family<ReloadLabels, Counter>,
    version: Gauge<i64, AtomicI64>,
    last_reload: Gauge<f64, AtomicU64>,
    connected: Single<Gauge<i64, AtomicI64>>,
    stage: Family<StageLabels, Gauge<i64, AtomicI64>>,
}

/// Where a configuration came from, the `source` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadSource {
    /// The `--config` file, polled for changes.
    File,
    /// A push on the control plane's watch stream.
    Control,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ReloadLabels {
    source: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// Every migration stage with its label, in migration order.
const STAGES: [(MigrationStage, &str); 3] = [
    (MigrationStage::Legacy, "legacy"),
    (MigrationStage::Dual, "dual"),
    (MigrationStage::W3c, "w3c"),
];

// === impl Families ===

impl Families {
    /// Registers the families.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let reloads = Family::register(
            registry,
            "config_reloads",
            "Configuration reloads by source (file, control) and result (applied, rejected: the running config stays)",
        );
        let version: Single<_> = Single::register(
            registry,
            "config_version",
            "Version of the running config as the control plane numbered it (a 53-bit content hash); 0 when it did not come from the control plane",
        );
        let last_reload: Single<_> = Single::register(
            registry,
            "config_last_reload_timestamp_seconds",
            "Unix time the running config was applied (process start counts as the first)",
        );
        let connected = Single::register(
            registry,
            "control_plane_connected",
            "1 while the watch stream to the control plane is up, else 0; only with a control plane configured",
        );
        let stage = Family::register(
            registry,
            "migration_stage",
            "The trace-header migration stage in force (propagation.stage): 1 for it, 0 for the others",
        );
        Self {
            reloads,
            version: version.get(),
            last_reload: last_reload.get(),
            connected,
            stage,
        }
    }

    /// Shows `source`'s reload counters at zero from now on.
    pub(super) fn source_started(&self, source: ReloadSource) {
        for result in ["applied", "rejected"] {
            let labels = ReloadLabels {
                source: source.as_str(),
                result,
            };
            self.reloads.get(labels, Show::Always);
        }
    }

    /// Counts one reload from `source`: applied, or rejected (the running
    /// config stays).
    pub(super) fn count(&self, source: ReloadSource, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        let labels = ReloadLabels {
            source: source.as_str(),
            result,
        };
        self.reloads.get(labels, Show::Always).inc();
    }

    /// Records the config now in force: its stage, its version (0 when it did
    /// not come from the control plane) and, when it replaced another, now as
    /// the last reload time.
    pub(super) fn in_force(&self, stage: MigrationStage, version: u64, replaced: bool) {
        self.version.set(i64::try_from(version).unwrap_or(i64::MAX));
        if replaced {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_reload.set(now);
        }
        for (each, label) in STAGES {
            let gauge = self.stage.get(StageLabels { stage: label }, Show::Always);
            gauge.set(i64::from(each == stage));
        }
    }

    /// The running config's version (0: not from the control plane).
    pub(super) fn version(&self) -> u64 {
        u64::try_from(self.version.get()).unwrap_or(0)
    }

    /// When the running config was applied, in Unix seconds.
    pub(super) fn last_reload(&self) -> f64 {
        self.last_reload.get()
    }

    /// The control-plane connection gauge, created (at 0) on the first call.
    pub(super) fn control_plane(&self) -> Gauge<i64, AtomicI64> {
        self.connected.get()
    }
}

// === impl ReloadSource ===

impl ReloadSource {
    /// The `source` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Control => "control",
        }
    }
}
