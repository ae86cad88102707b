//! Configuration reloads by source and result
//! (`meshtrace_config_reloads_total{source, result}`), so an operator sees a
//! rejected reload (an emptied or invalid file) without reading logs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::register;

/// The `meshtrace_config_reloads_total` family; reloads are rare, so each is
/// looked up when it happens (never on the request path).
#[derive(Debug)]
pub(super) struct Families {
    reloads: Family<ReloadLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    source: &'static str,
    result: &'static str,
}

// === impl Families ===

impl Families {
    /// Registers the family.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            reloads: register(
                registry,
                "config_reloads",
                "Configuration reloads by source (file) and result (applied, rejected)",
            ),
        }
    }

    /// Counts one reload from `source`: applied, or rejected (the running
    /// config stays).
    pub(super) fn count(&self, source: &'static str, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.reloads
            .get_or_create(&ReloadLabels { source, result })
            .inc();
    }
}
