//! The sidecar's Prometheus metrics.
//!
//! Families are registered once; the request path never looks a label set up.
//! Each listener resolves the handles it needs when it starts ([`HttpMetrics`],
//! [`ConnMetrics`]) and afterwards only does relaxed atomic adds.
//!
//! One module per concern, each owning its families, labels and handles:
//! `http` requests, `connections` (and upstream errors), `trace_context`
//! (the migration's per-format counters), `sampling` decisions, `routes` (each sampling route's boost and rate), `spans`
//! export, `reloads` (the config in force), and the process-wide
//! `memory_trims` ([`crate::trim`]). The README's metrics
//! reference documents each family; a test keeps the two in step.
//!
//! # What a scrape shows
//!
//! A scrape is read by people and alert rules, so it holds what either can use
//! ([`family`]):
//!
//! - families render in the order they are registered here, their series
//!   sorted by label values, so two scrapes list the same lines in the same
//!   order;
//! - every family renders its `HELP` and `TYPE` lines, so a scrape names every
//!   metric even before its first count;
//! - label combinations the code cannot produce have no series at all (the
//!   rules live beside their families: [`ErrorKind::happens`], and
//!   `sampling::happens`);
//! - series that alerts take a `rate()` of exist at zero from the start, since
//!   a counter that first appears at 1 hides its first increment: spans
//!   dropped and exported, and a reload source's applied and rejected counts
//!   from the moment it starts; so do the gauges (open connections per
//!   listener, the config version, its reload time, the migration stage, the
//!   control-plane connection when one is configured);
//! - everything else — requests by status class, connections by protocol,
//!   upstream errors, trace-context formats, sampling decisions — appears on
//!   first use: an idle sidecar's scrape is a page, not hundreds of zeros.

mod connections;
mod exposition;
mod family;
mod http;
mod reloads;
mod routes;
mod sampling;
mod spans;
mod trace_context;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use meshtrace_config::MigrationStage;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use connections::{ConnMetrics, ErrorKind, OpenGuard};
pub use exposition::{OPENMETRICS, PROMETHEUS_TEXT};
pub use http::HttpMetrics;
pub use reloads::ReloadSource;
pub use routes::RouteGauges;
pub use sampling::SamplingMetrics;
pub use spans::SpanMetrics;
pub use trace_context::{FormatCounters, TraceContextMetrics, WrittenMetrics};

use self::family::Single;
use crate::target::{Direction, Protocol};

/// Every metric family, plus the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http: http::Families,
    conns: connections::Families,
    trace_context: trace_context::Families,
    sampling: sampling::Families,
    routes: routes::Families,
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
        let routes = routes::Families::register(&mut registry);
        let spans = SpanMetrics::register(&mut registry);
        let reloads = reloads::Families::register(&mut registry);
        Single::register(
            &mut registry,
            "memory_trims",
            "Worker thread caches emptied back to the allocator after their traffic stopped",
        )
        .show(crate::trim::trims());
        Arc::new(Self {
            registry,
            http,
            conns,
            trace_context,
            sampling,
            routes,
            spans,
            reloads,
        })
    }

    /// The same exposition in the Prometheus text format 0.0.4, for scrapers
    /// that do not ask for OpenMetrics ([`exposition`]).
    pub fn render_prometheus_text(&self) -> String {
        exposition::prometheus_text(&self.render())
    }

    /// The OpenMetrics text exposition of every metric.
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

    /// Sets the sampling-route gauges to the running routes.
    pub fn routes(&self, routes: &[RouteGauges]) {
        self.routes.set(routes);
    }

    /// A reload source started watching: its applied and rejected counts
    /// show from now on, at zero.
    pub fn reload_source_started(&self, source: ReloadSource) {
        self.reloads.source_started(source);
    }

    /// Counts one configuration reload from `source`, applied or rejected.
    pub fn config_reload(&self, source: ReloadSource, applied: bool) {
        self.reloads.count(source, applied);
    }

    /// Records the configuration now in force: its migration `stage`, its
    /// control-plane `version` (0 when it came from elsewhere) and, when it
    /// `replaced` the running one (or is the first), now as the reload time.
    pub fn config_in_force(&self, stage: MigrationStage, version: u64, replaced: bool) {
        self.reloads.in_force(stage, version, replaced);
    }

    /// The running config's control-plane version (0: not from the control plane).
    pub fn config_version(&self) -> u64 {
        self.reloads.version()
    }

    /// When the running config was applied, in Unix seconds.
    pub fn last_reload_unix(&self) -> f64 {
        self.reloads.last_reload()
    }

    /// The `meshtrace_control_plane_connected` gauge: it exists (at 0) from
    /// the first call, which the control-plane watch makes when it starts.
    pub fn control_plane(&self) -> Gauge<i64, AtomicI64> {
        self.reloads.control_plane()
    }
}

#[cfg(test)]
mod tests;
