//! The sidecar's Prometheus metrics.
//!
//! Families are registered once; the request path never looks a label set up.
//! Each listener resolves the handles it needs when it starts ([`HttpMetrics`],
//! [`ConnMetrics`]) and afterwards only does relaxed atomic adds.
//!
//! One module per concern, each owning its families, labels and handles:
//! `http` requests, `connections` (and upstream errors), `trace_context`
//! (the migration's per-format counters), `sampling` decisions, `spans`
//! export and config `reloads`. Families render in the order they are registered here.

mod connections;
mod http;
mod reloads;
mod sampling;
mod spans;
mod trace_context;

use std::sync::Arc;

use prometheus_client::registry::{Metric, Registry};

pub use connections::{ConnMetrics, ErrorKind, OpenGuard};
pub use http::HttpMetrics;
pub use sampling::SamplingMetrics;
pub use spans::SpanMetrics;
pub use trace_context::{FormatCounters, TraceContextMetrics, WrittenMetrics};

use crate::target::{Direction, Protocol};

/// Every metric family, plus the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http: http::Families,
    conns: connections::Families,
    trace_context: trace_context::Families,
    sampling: sampling::Families,
    /// Span export counters, shared with the exporter.
    pub spans: SpanMetrics,
    reloads: reloads::Families,
}

// === impl Metrics ===

impl Metrics {
    /// Registers every family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("meshtrace");
        let http = http::Families::register(&mut registry);
        let conns = connections::Families::register(&mut registry);
        let trace_context = trace_context::Families::register(&mut registry);
        let sampling = sampling::Families::register(&mut registry);
        let spans = SpanMetrics::register(&mut registry);
        let reloads = reloads::Families::register(&mut registry);
        Arc::new(Self {
            registry,
            http,
            conns,
            trace_context,
            sampling,
            spans,
            reloads,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            out = format!("# metrics encoding failed: {e}\n");
        }
        out
    }

    /// Handles for HTTP requests of one direction and protocol.
    pub fn http(&self, direction: Direction, protocol: Protocol) -> HttpMetrics {
        self.http.handles(direction, protocol)
    }

    /// Handles for connections and upstream errors of one direction.
    pub fn conns(&self, direction: Direction) -> ConnMetrics {
        self.conns.handles(direction)
    }

    /// Handles for trace-context outcomes of one direction.
    pub fn trace_context(&self, direction: Direction) -> TraceContextMetrics {
        self.trace_context.seen(direction)
    }

    /// The `meshtrace_trace_context_by_caller_total` family, resolved per caller
    /// by [`crate::migration::caller::Callers`].
    pub fn by_caller(&self) -> FormatCounters {
        self.trace_context.by_caller()
    }

    /// Handles for `meshtrace_trace_context_written_total` of one direction:
    /// `targets[0]` is the default target, `targets[i + 1]` rule `i`'s.
    pub fn written(&self, direction: Direction, targets: &[String]) -> WrittenMetrics {
        self.trace_context.written(direction, targets)
    }

    /// Handles for sampling decisions of one direction.
    pub fn sampling(&self, direction: Direction) -> SamplingMetrics {
        self.sampling.handles(direction)
    }

    /// Counts one configuration reload from `source` (`file`), applied or
    /// rejected.
    pub fn config_reload(&self, source: &'static str, applied: bool) {
        self.reloads.count(source, applied);
    }
}

/// Registers a new `M` as `meshtrace_{name}` and returns its handle: every
/// family is registered once, here, in the order `Metrics::new` calls it.
fn register<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

#[cfg(test)]
mod tests {
    use super::{ErrorKind, Metrics};
    use crate::target::{Direction, Protocol};

    /// Dashboards and alerts read these names: splitting the families across
    /// modules must not rename, drop or reorder one.
    #[test]
    fn every_family_renders_in_registration_order() {
        let metrics = Metrics::new();
        // A family renders once it has a series.
        metrics.http(Direction::Inbound, Protocol::Http1);
        metrics.conns(Direction::Inbound);
        metrics.trace_context(Direction::Inbound);
        metrics.by_caller().get("app");
        metrics.written(Direction::Inbound, &["app".to_string()]);
        metrics.sampling(Direction::Inbound);
        metrics.config_reload("file", true);
        let text = metrics.render();
        let families = [
            "meshtrace_requests",
            "meshtrace_request_duration_seconds",
            "meshtrace_open_connections",
            "meshtrace_connections",
            "meshtrace_upstream_errors",
            "meshtrace_trace_context",
            "meshtrace_trace_context_by_caller",
            "meshtrace_trace_context_written",
            "meshtrace_sampling_decisions",
            "meshtrace_spans_exported",
            "meshtrace_spans_dropped",
            "meshtrace_config_reloads",
        ];
        let at = families.map(|name| text.find(&format!("# TYPE {name} ")));
        assert!(at.iter().all(Option::is_some), "missing a family:\n{text}");
        assert!(at.is_sorted(), "families out of order:\n{text}");
    }

    /// A handle resolved at listener start counts into the labelled series.
    #[test]
    fn handles_count_into_their_labelled_series() {
        let metrics = Metrics::new();
        let conns = metrics.conns(Direction::Inbound);
        conns.error(ErrorKind::ConnectTimeout);
        metrics
            .http(Direction::Outbound, Protocol::Http1)
            .record(http::StatusCode::NOT_FOUND, std::time::Duration::ZERO);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"meshtrace_upstream_errors_total{direction="inbound",kind="connect_timeout"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"meshtrace_requests_total{direction="outbound",protocol="http1",status_class="4xx"} 1"#
            ),
            "{text}"
        );
    }
}
