//! Sampling decisions by outcome and reason
//! (`meshtrace_sampling_decisions_total`).
//!
//! Not every (direction, decision, reason) can happen; [`happens`] is the one
//! place that says which, read from the sampler and the span recorder:
//!
//! - a trusted force signal always samples (`force_signal` is never
//!   `not_sampled`);
//! - tail keep (`tail_error`, `tail_slow`) keeps the span of an unsampled
//!   request, which is counted as `sampled`, and only SERVER spans — the inbound
//!   listener's — are tail-kept;
//! - a probe is never traced (`probe` is always `not_sampled`);
//! - every other reason can go either way in either direction.
//!
//! The handles of the other combinations count into no series. The possible
//! ones appear on first use.

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::family::{Family, Show};
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
    direction: Direction,
    counters: Arc<[[Counter; 2]; Reason::ALL.len()]>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct DecisionLabels {
    direction: Direction,
    decision: DecisionLabel,
    reason: ReasonLabel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DecisionLabel(bool);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReasonLabel(Reason);

/// Whether `direction` can count a decision `sampled` for `reason` (see the
/// module docs).
pub(crate) const fn happens(direction: Direction, sampled: bool, reason: Reason) -> bool {
    match reason {
        Reason::ForceSignal => sampled,
        Reason::Probe => !sampled,
        Reason::TailError | Reason::TailSlow => sampled && matches!(direction, Direction::Inbound),
        _ => true,
    }
}

// === impl Families ===

impl Families {
    /// Registers the family.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            decisions: Family::register(
                registry,
                "sampling_decisions",
                "Sampling decisions by outcome and reason",
            ),
        }
    }

    /// Handles for sampling decisions of one direction.
    pub(super) fn handles(&self, direction: Direction) -> SamplingMetrics {
        let counter = |sampled: bool, reason: Reason| {
            if !happens(direction, sampled, reason) {
                return Counter::default();
            }
            let labels = DecisionLabels {
                direction,
                decision: DecisionLabel(sampled),
                reason: ReasonLabel(reason),
            };
            self.decisions.get(labels, Show::WhenUsed)
        };
        SamplingMetrics {
            direction,
            counters: Arc::new(Reason::ALL.map(|r| [counter(false, r), counter(true, r)])),
        }
    }
}

// === impl SamplingMetrics ===

impl SamplingMetrics {
    /// Counts one decision.
    pub fn count(&self, sampled: bool, reason: Reason) {
        debug_assert!(
            happens(self.direction, sampled, reason),
            "{:?} {sampled} {reason:?}",
            self.direction
        );
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

impl ReasonLabel {
    /// The position in [`Reason::ALL`]: the order series render in.
    fn rank(self) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == self.0)
            .unwrap_or(usize::MAX)
    }
}

impl PartialOrd for ReasonLabel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ReasonLabel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl EncodeLabelValue for ReasonLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// Counting every possible combination renders exactly those series: no
    /// `not_sampled` force signal, no tail keep that is not sampled or not
    /// inbound.
    #[test]
    fn only_possible_decisions_have_series() {
        let metrics = Metrics::new();
        for direction in Direction::ALL {
            let handles = metrics.sampling(direction);
            for reason in Reason::ALL {
                for sampled in [false, true] {
                    if happens(direction, sampled, reason) {
                        handles.count(sampled, reason);
                    }
                }
            }
        }
        let text = metrics.render();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("meshtrace_sampling_decisions_total{"))
            .collect();
        // 7 reasons both ways in both directions, force_signal sampled and probe
        // not sampled in both, tail_error and tail_slow sampled inbound.
        assert_eq!(lines.len(), 7 * 2 * 2 + 2 + 2 + 2, "{text}");
        for impossible in [
            r#"decision="not_sampled",reason="tail_error""#,
            r#"decision="not_sampled",reason="force_signal""#,
            r#"direction="outbound",decision="sampled",reason="tail_slow""#,
            r#"decision="sampled",reason="probe""#,
        ] {
            assert!(!text.contains(impossible), "{impossible} in\n{text}");
        }
    }
}
