//! Sampling decisions by outcome and reason
//! (`meshtrace_sampling_decisions_total`).

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::register;
use crate::sampling::Reason;
use crate::target::Direction;

/// The sampling-decision family, resolved per direction by [`Families::handles`].
#[derive(Debug)]
pub(super) struct Families {
    decisions: Family<DecisionLabels, Counter>,
}

/// Pre-resolved `meshtrace_sampling_decisions_total` counters for one direction.
#[derive(Clone, Debug)]
pub struct SamplingMetrics {
    counters: Arc<[[Counter; 2]; Reason::ALL.len()]>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    direction: Direction,
    decision: DecisionLabel,
    reason: ReasonLabel,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct DecisionLabel(bool);

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct ReasonLabel(Reason);

// === impl Families ===

impl Families {
    /// Registers the family.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            decisions: register(
                registry,
                "sampling_decisions",
                "Sampling decisions by outcome and reason",
            ),
        }
    }

    /// Handles for sampling decisions of one direction.
    pub(super) fn handles(&self, direction: Direction) -> SamplingMetrics {
        let counter = |sampled: bool, reason: Reason| {
            self.decisions.get_or_create_owned(&DecisionLabels {
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

// === impl SamplingMetrics ===

impl SamplingMetrics {
    /// Counts one decision.
    pub fn count(&self, sampled: bool, reason: Reason) {
        let at = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.counters[at][usize::from(sampled)].inc();
    }
}

// === impl DecisionLabel ===

impl EncodeLabelValue for DecisionLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(if self.0 { "sampled" } else { "not_sampled" })
    }
}

// === impl ReasonLabel ===

impl EncodeLabelValue for ReasonLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}
