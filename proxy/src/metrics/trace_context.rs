//! Trace context, the migration's dashboard: which formats arrive (by outcome),
//! which callers send which formats, and which formats the sidecar writes
//! (`meshtrace_trace_context_total`, `…_by_caller_total`, `…_written_total`).

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::register;
use crate::propagation::extract::Formats;
use crate::propagation::{Format, Outcome};
use crate::target::Direction;

/// The trace-context families, resolved by the handle constructors below.
#[derive(Debug)]
pub(super) struct Families {
    seen: Family<TraceContextLabels, Counter>,
    by_caller: Family<CallerLabels, Counter>,
    written: Family<WrittenLabels, Counter>,
}

/// Pre-resolved `meshtrace_trace_context_total` counters for one direction.
#[derive(Clone, Debug)]
pub struct TraceContextMetrics {
    by_format: Arc<[[Counter; 3]; 5]>,
    none: Counter,
}

/// A per-format counter family keyed by one more label (the caller).
#[derive(Clone, Debug)]
pub struct FormatCounters {
    family: Family<CallerLabels, Counter>,
}

/// Pre-resolved `meshtrace_trace_context_written_total` counters of one
/// direction, per target.
#[derive(Clone, Debug)]
pub struct WrittenMetrics {
    by_target: Arc<Vec<[Counter; 6]>>,
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

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct OutcomeLabel(Outcome);

/// Every format label, then `none`: the order of per-format counter arrays.
const FORMAT_LABELS: [FormatLabel; 6] = [
    FormatLabel(Some(Format::TraceContext)),
    FormatLabel(Some(Format::B3Multi)),
    FormatLabel(Some(Format::B3Single)),
    FormatLabel(Some(Format::Datadog)),
    FormatLabel(Some(Format::Jaeger)),
    FormatLabel(None),
];

// === impl Families ===

impl Families {
    /// Registers the trace-context families.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            seen: register(
                registry,
                "trace_context",
                "Trace context seen on requests, by format and outcome (none: no context at all)",
            ),
            by_caller: register(
                registry,
                "trace_context_by_caller",
                "Inbound requests by calling workload (x-meshtrace-caller; unknown: no mesh caller, other: beyond the bound) and the formats they carried",
            ),
            written: register(
                registry,
                "trace_context_written",
                "Requests forwarded by the formats the sidecar wrote, by target (app, default, or the propagation.upstreams rule); none: no trace header",
            ),
        }
    }

    /// Handles for trace-context outcomes of one direction.
    pub(super) fn seen(&self, direction: Direction) -> TraceContextMetrics {
        const OUTCOMES: [Outcome; 3] = [Outcome::Valid, Outcome::Invalid, Outcome::Conflict];
        let counter = |format: Option<Format>, outcome: Outcome| {
            self.seen.get_or_create_owned(&TraceContextLabels {
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

    /// The by-caller family, resolved per caller by [`FormatCounters::get`].
    pub(super) fn by_caller(&self) -> FormatCounters {
        FormatCounters {
            family: self.by_caller.clone(),
        }
    }

    /// Handles for the formats written in one direction, one set per target.
    pub(super) fn written(&self, direction: Direction, targets: &[String]) -> WrittenMetrics {
        let counters = targets
            .iter()
            .map(|target| {
                FORMAT_LABELS.map(|format| {
                    self.written.get_or_create_owned(&WrittenLabels {
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

// === impl TraceContextMetrics ===

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

// === impl FormatCounters ===

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

// === impl WrittenMetrics ===

impl WrittenMetrics {
    /// Counts one request forwarded to `target` with `formats` written.
    pub fn count(&self, target: usize, formats: Formats) {
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

// === impl FormatLabel ===

impl EncodeLabelValue for FormatLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.0.map_or("none", Format::as_str))
    }
}

// === impl OutcomeLabel ===

impl EncodeLabelValue for OutcomeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(match self.0 {
            Outcome::Valid => "valid",
            Outcome::Invalid => "invalid",
            Outcome::Conflict => "conflict",
        })
    }
}
