//! Partial success: the collector accepted an export but rejected some of its
//! spans. opentelemetry-otlp reports the count only as a diagnostic `tracing`
//! event, so each export runs under the scoped subscriber here, which reads it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A `tracing` subscriber, scoped to one export, that reads the exporter's
/// partial-success diagnostic (`TonicTracesClient.PartialSuccess` /
/// `HttpTraceClient.PartialSuccess`, field `rejected_spans`). It is interested
/// in nothing else, so it adds no cost to any other log call site.
#[derive(Debug)]
pub(super) struct RejectCounter {
    rejected: Arc<AtomicI64>,
}

// === impl RejectCounter ===

impl RejectCounter {
    /// A dispatcher to run one export under, and the count of spans it read as
    /// rejected (reset it before each export).
    pub(super) fn dispatch() -> (tracing::Dispatch, Arc<AtomicI64>) {
        let rejected = Arc::new(AtomicI64::new(0));
        let subscriber = RejectCounter {
            rejected: rejected.clone(),
        };
        (tracing::Dispatch::new(subscriber), rejected)
    }

    fn wanted(meta: &tracing::Metadata<'_>) -> bool {
        meta.is_event()
            && meta.target() == "opentelemetry-otlp"
            && meta.name().ends_with(".PartialSuccess")
    }
}

impl tracing::Subscriber for RejectCounter {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        Self::wanted(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Visit<'a>(&'a AtomicI64);
        impl tracing::field::Visit for Visit<'_> {
            fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
                if field.name() == "rejected_spans" {
                    self.0.fetch_add(value, Ordering::Relaxed);
                }
            }
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                self.record_i64(field, i64::try_from(value).unwrap_or(i64::MAX));
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if Self::wanted(event.metadata()) {
            event.record(&mut Visit(&self.rejected));
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
