//! Span export: how many spans the collector accepted and how many were lost,
//! and why (`meshtrace_spans_exported_total`, `meshtrace_spans_dropped_total`).
//!
//! Every series exists from the start, at zero: alerts take `rate()` of the
//! drops, and a counter that first appears at 1 hides its first increment.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::family::{Family, Show, Single};

/// `meshtrace_spans_exported_total` and `meshtrace_spans_dropped_total{reason}`.
#[derive(Clone, Debug)]
pub struct SpanMetrics {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans dropped because the export queue was full.
    pub queue_full: Counter,
    /// Spans of exports that failed (after retries) or timed out.
    pub export_failed: Counter,
    /// Spans the collector rejected in a partial success.
    pub rejected: Counter,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

// === impl SpanMetrics ===

impl SpanMetrics {
    /// Registers the span families; the exporter holds the counters.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let exported = Single::register(
            registry,
            "spans_exported",
            "Spans accepted by the collector",
        );
        let dropped: Family<DropLabels, Counter> = Family::register(
            registry,
            "spans_dropped",
            "Spans lost: queue_full (the request never waits), export_failed (after retries), rejected (partial success)",
        );
        let drop = |reason| dropped.get(DropLabels { reason }, Show::Always);
        Self {
            exported: exported.get(),
            queue_full: drop("queue_full"),
            export_failed: drop("export_failed"),
            rejected: drop("rejected"),
        }
    }
}
