//! Trace context, the migration's dashboard: which formats arrive (by outcome),
//! which callers send which formats, and which formats the sidecar writes
//! (`meshtrace_trace_context_total`, `…_by_caller_total`, `…_written_total`).
//!
//! Every series appears on first use: which formats arrive, from whom, and
//! which the sidecar writes depend on the traffic, and a zero line per format
//! per caller would bury the few that carry the migration's progress. `none`
//! is only ever `valid` (a request without context is not malformed).

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::family::{Family, Show};
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

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TraceContextLabels {
    direction: Direction,
    format: FormatLabel,
    outcome: OutcomeLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CallerLabels {
    caller: String,
    format: FormatLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct WrittenLabels {
    direction: Direction,
    target: String,
    format: FormatLabel,
}

/// A trace-context format, or `none` for requests that carried no context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FormatLabel(Option<Format>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
            seen: Family::register(
                registry,
                "trace_context",
                "Trace context seen on requests, by format and outcome (none: no context at all)",
            ),
            by_caller: Family::register(
                registry,
                "trace_context_by_caller",
                "Inbound requests by calling workload (x-meshtrace-caller; unknown: no mesh caller, other: beyond the bound) and the formats they carried",
            ),
            written: Family::register(
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
            let labels = TraceContextLabels {
                direction,
                format: FormatLabel(format),
                outcome: OutcomeLabel(outcome),
            };
            self.seen.get(labels, Show::WhenUsed)
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
                    let labels = WrittenLabels {
                        direction,
                        target: target.clone(),
                        format,
                    };
                    self.written.get(labels, Show::WhenUsed)
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
            let labels = CallerLabels {
                caller: caller.to_string(),
                format,
            };
            self.family.get(labels, Show::WhenUsed)
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

impl FormatLabel {
    /// The position in [`FORMAT_LABELS`]: the order series render in.
    fn rank(self) -> usize {
        self.0.map_or(Format::ALL.len(), |f| f as usize)
    }
}

impl PartialOrd for FormatLabel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FormatLabel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl EncodeLabelValue for FormatLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.0.map_or("none", Format::as_str))
    }
}

// === impl OutcomeLabel ===

impl PartialOrd for OutcomeLabel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OutcomeLabel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0 as u8).cmp(&(other.0 as u8))
    }
}

impl EncodeLabelValue for OutcomeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(match self.0 {
            Outcome::Valid => "valid",
            Outcome::Invalid => "invalid",
            Outcome::Conflict => "conflict",
        })
    }
}
