//! The sidecar's Prometheus metrics.
//!
//! Families are registered once; the request path never looks a label set up.
//! Each listener resolves the handles it needs when it starts ([`HttpMetrics`],
//! [`ConnMetrics`]) and afterwards only does relaxed atomic adds.

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::histogram::DurationHistogram;
use crate::propagation::{Format, Outcome};
use crate::sampling::Reason;
use crate::target::{Direction, Protocol};

/// Every metric family, plus the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<ProtocolLabels, DurationHistogram>,
    open_connections: Family<DirectionLabels, Gauge>,
    connections: Family<ProtocolLabels, Counter>,
    upstream_errors: Family<ErrorLabels, Counter>,
    trace_context: Family<TraceContextLabels, Counter>,
    trace_context_by_caller: Family<CallerLabels, Counter>,
    trace_context_written: Family<WrittenLabels, Counter>,
    sampling_decisions: Family<DecisionLabels, Counter>,
    /// Span export counters, shared with the exporter.
    pub spans: SpanMetrics,
}

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    direction: Direction,
    decision: DecisionLabel,
    reason: ReasonLabel,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct DecisionLabel(bool);

impl EncodeLabelValue for DecisionLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(if self.0 { "sampled" } else { "not_sampled" })
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct ReasonLabel(Reason);

impl EncodeLabelValue for ReasonLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceContextLabels {
    direction: Direction,
    format: FormatLabel,
    outcome: OutcomeLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallerLabels {
    caller: String,
    format: FormatLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WrittenLabels {
    direction: Direction,
    target: String,
    format: FormatLabel,
}

/// A trace-context format, or `none` for requests that carried no context.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct FormatLabel(Option<Format>);

impl EncodeLabelValue for FormatLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.0.map_or("none", Format::as_str))
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct OutcomeLabel(Outcome);

impl EncodeLabelValue for OutcomeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(match self.0 {
            Outcome::Valid => "valid",
            Outcome::Invalid => "invalid",
            Outcome::Conflict => "conflict",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    direction: Direction,
    protocol: Protocol,
    status_class: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    direction: Direction,
    protocol: Protocol,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    direction: Direction,
    kind: ErrorKind,
}

/// A response status class (`2xx`…), the `status_class` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct StatusClass(u8);

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        write!(encoder, "{}xx", self.0)
    }
}

const CLASSES: [StatusClass; 5] = [
    StatusClass(1),
    StatusClass(2),
    StatusClass(3),
    StatusClass(4),
    StatusClass(5),
];

/// Why the sidecar could not get a response from (or a connection to) an upstream:
/// the `kind` label of `meshtrace_upstream_errors_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorKind {
    /// The upstream actively refused the TCP connection.
    ConnectRefused = 0,
    /// The TCP connection was not established within `timeouts.connect`.
    ConnectTimeout,
    /// No route to the upstream host, or its name did not resolve.
    Unreachable,
    /// No response headers within `timeouts.request`.
    RequestTimeout,
    /// The upstream closed or reset the connection mid-request.
    UpstreamReset,
    /// Explicit mode: no route matches the authority.
    NoRoute,
    /// Transparent mode: the connection was addressed to the sidecar itself.
    LoopDetected,
    /// Transparent mode: the kernel has no original destination for the connection.
    NoOriginalDst,
}

impl ErrorKind {
    const ALL: [ErrorKind; 8] = [
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::Unreachable,
        Self::RequestTimeout,
        Self::UpstreamReset,
        Self::NoRoute,
        Self::LoopDetected,
        Self::NoOriginalDst,
    ];

    /// The label, log and `meshtrace-proxy-error` header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Unreachable => "unreachable",
            Self::RequestTimeout => "request_timeout",
            Self::UpstreamReset => "upstream_reset",
            Self::NoRoute => "no_route",
            Self::LoopDetected => "loop_detected",
            Self::NoOriginalDst => "no_original_dst",
        }
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

// === impl Metrics ===

impl Metrics {
    /// Registers every family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("meshtrace");
        let requests = Family::default();
        let durations = Family::default();
        let open_connections = Family::default();
        let connections = Family::default();
        let upstream_errors = Family::default();
        let trace_context = Family::default();
        let trace_context_by_caller = Family::default();
        let trace_context_written = Family::default();
        let sampling_decisions = Family::default();
        registry.register(
            "requests",
            "HTTP requests by direction, protocol and response status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request arrival to the end of the response body",
            durations.clone(),
        );
        registry.register(
            "open_connections",
            "Downstream connections currently open",
            open_connections.clone(),
        );
        registry.register(
            "connections",
            "Downstream connections accepted, by detected protocol",
            connections.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests or connections that failed upstream, by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "trace_context",
            "Trace context seen on requests, by format and outcome (none: no context at all)",
            trace_context.clone(),
        );
        registry.register(
            "trace_context_by_caller",
            "Inbound requests by calling workload (x-meshtrace-caller; unknown: no mesh caller, other: beyond the bound) and the formats they carried",
            trace_context_by_caller.clone(),
        );
        registry.register(
            "trace_context_written",
            "Requests forwarded by the formats the sidecar wrote, by target (app, default, or the propagation.upstreams rule); none: no trace header",
            trace_context_written.clone(),
        );
        registry.register(
            "sampling_decisions",
            "Sampling decisions by outcome and reason",
            sampling_decisions.clone(),
        );
        let exported = Counter::default();
        registry.register(
            "spans_exported",
            "Spans accepted by the collector",
            exported.clone(),
        );
        let dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "spans_dropped",
            "Spans lost: queue_full (the request never waits), export_failed (after retries), rejected (partial success)",
            dropped.clone(),
        );
        let drop = |reason| dropped.get_or_create_owned(&DropLabels { reason });
        let spans = SpanMetrics {
            exported,
            queue_full: drop("queue_full"),
            export_failed: drop("export_failed"),
            rejected: drop("rejected"),
        };
        Arc::new(Self {
            spans,
            registry,
            trace_context,
            trace_context_by_caller,
            trace_context_written,
            sampling_decisions,
            requests,
            durations,
            open_connections,
            connections,
            upstream_errors,
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
        HttpMetrics {
            by_class: Arc::new(CLASSES.map(|status_class| {
                self.requests.get_or_create_owned(&RequestLabels {
                    direction,
                    protocol,
                    status_class,
                })
            })),
            duration: self.durations.get_or_create_owned(&ProtocolLabels {
                direction,
                protocol,
            }),
        }
    }

    /// Handles for connections and upstream errors of one direction.
    pub fn conns(&self, direction: Direction) -> ConnMetrics {
        ConnMetrics {
            open: self
                .open_connections
                .get_or_create_owned(&DirectionLabels { direction }),
            by_protocol: Arc::new(Protocol::ALL.map(|protocol| {
                self.connections.get_or_create_owned(&ProtocolLabels {
                    direction,
                    protocol,
                })
            })),
            errors: Arc::new(ErrorKind::ALL.map(|kind| {
                self.upstream_errors
                    .get_or_create_owned(&ErrorLabels { direction, kind })
            })),
        }
    }
}

impl Metrics {
    /// Handles for trace-context outcomes of one direction.
    pub fn trace_context(&self, direction: Direction) -> TraceContextMetrics {
        const OUTCOMES: [Outcome; 3] = [Outcome::Valid, Outcome::Invalid, Outcome::Conflict];
        let counter = |format: Option<Format>, outcome: Outcome| {
            self.trace_context.get_or_create_owned(&TraceContextLabels {
                direction,
                format: FormatLabel(format),
                outcome: OutcomeLabel(outcome),
            })
        };
        TraceContextMetrics {
            by_format: Arc::new(Format::ALL.map(|f| OUTCOMES.map(|o| counter(Some(f), o)))),
            none: counter(None, Outcome::Valid),
        }
    }
}

impl Metrics {
    /// The `meshtrace_trace_context_by_caller_total` family, resolved per caller
    /// by [`crate::migration::caller::Callers`].
    pub fn by_caller(&self) -> FormatCounters {
        FormatCounters {
            family: self.trace_context_by_caller.clone(),
        }
    }

    /// Handles for `meshtrace_trace_context_written_total` of one direction:
    /// `targets[0]` is the default target, `targets[i + 1]` rule `i`'s.
    pub fn written(&self, direction: Direction, targets: &[String]) -> WrittenMetrics {
        let counters = targets
            .iter()
            .map(|target| {
                FORMAT_LABELS.map(|format| {
                    self.trace_context_written
                        .get_or_create_owned(&WrittenLabels {
                            direction,
                            target: target.clone(),
                            format,
                        })
                })
            })
            .collect();
        WrittenMetrics {
            by_target: Arc::new(counters),
        }
    }
}

/// Every format label, then `none`: the order of per-format counter arrays.
const FORMAT_LABELS: [FormatLabel; 6] = [
    FormatLabel(Some(Format::TraceContext)),
    FormatLabel(Some(Format::B3Multi)),
    FormatLabel(Some(Format::B3Single)),
    FormatLabel(Some(Format::Datadog)),
    FormatLabel(Some(Format::Jaeger)),
    FormatLabel(None),
];

/// A per-format counter family keyed by one more label (the caller).
#[derive(Clone, Debug)]
pub struct FormatCounters {
    family: Family<CallerLabels, Counter>,
}

impl FormatCounters {
    /// The counters of `caller`: one per format, then `none`.
    pub fn get(&self, caller: &str) -> [Counter; 6] {
        FORMAT_LABELS.map(|format| {
            self.family.get_or_create_owned(&CallerLabels {
                caller: caller.to_string(),
                format,
            })
        })
    }
}

/// Pre-resolved `meshtrace_trace_context_written_total` counters of one
/// direction, per target.
#[derive(Clone, Debug)]
pub struct WrittenMetrics {
    by_target: Arc<Vec<[Counter; 6]>>,
}

impl WrittenMetrics {
    /// Counts one request forwarded to `target` with `formats` written.
    pub fn count(&self, target: usize, formats: crate::propagation::extract::Formats) {
        let Some(counters) = self.by_target.get(target) else {
            return;
        };
        if formats.is_empty() {
            counters[Format::ALL.len()].inc();
        }
        for format in formats.iter() {
            counters[format as usize].inc();
        }
    }
}

impl Metrics {
    /// Handles for sampling decisions of one direction.
    pub fn sampling(&self, direction: Direction) -> SamplingMetrics {
        let counter = |sampled: bool, reason: Reason| {
            self.sampling_decisions
                .get_or_create_owned(&DecisionLabels {
                    direction,
                    decision: DecisionLabel(sampled),
                    reason: ReasonLabel(reason),
                })
        };
        SamplingMetrics {
            counters: Arc::new(Reason::ALL.map(|r| [counter(false, r), counter(true, r)])),
        }
    }
}

/// Pre-resolved `meshtrace_sampling_decisions_total` counters for one direction.
#[derive(Clone, Debug)]
pub struct SamplingMetrics {
    counters: Arc<[[Counter; 2]; Reason::ALL.len()]>,
}

impl SamplingMetrics {
    /// Counts one decision.
    pub fn count(&self, sampled: bool, reason: Reason) {
        let at = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.counters[at][usize::from(sampled)].inc();
    }
}

/// Pre-resolved `meshtrace_trace_context_total` counters for one direction.
#[derive(Clone, Debug)]
pub struct TraceContextMetrics {
    by_format: Arc<[[Counter; 3]; 5]>,
    none: Counter,
}

impl TraceContextMetrics {
    /// Counts one format's outcome on one request.
    pub fn count(&self, format: Format, outcome: Outcome) {
        self.by_format[format as usize][outcome as usize].inc();
    }

    /// Counts a request that carried no trace context in any format read.
    pub fn none(&self) {
        self.none.inc();
    }
}

/// Pre-resolved request metrics for one direction and protocol.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    by_class: Arc<[Counter; 5]>,
    duration: DurationHistogram,
}

impl HttpMetrics {
    /// Records one finished request.
    pub fn record(&self, status: http::StatusCode, elapsed: std::time::Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed);
    }
}

/// Pre-resolved connection metrics for one direction.
#[derive(Clone, Debug)]
pub struct ConnMetrics {
    open: Gauge,
    by_protocol: Arc<[Counter; 4]>,
    errors: Arc<[Counter; 8]>,
}

impl ConnMetrics {
    /// Counts an open connection until the returned guard drops.
    pub fn open(&self) -> OpenGuard {
        self.open.inc();
        OpenGuard(self.open.clone())
    }

    /// Counts a connection's detected protocol.
    pub fn detected(&self, protocol: Protocol) {
        self.by_protocol[protocol as usize].inc();
    }

    /// Counts an upstream failure.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].inc();
    }
}

/// Decrements the open-connection gauge when the connection ends.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
