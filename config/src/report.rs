//! The sidecar's periodic report to the control plane (`POST /v1/report`): the
//! trace-context formats it has seen, so that the control plane can show, fleet
//! wide, which workloads still send or receive legacy formats.
//!
//! Counts are cumulative since the sidecar process started (`boot` changes on a
//! restart, when they start again from zero); the control plane keeps a window of
//! reports per sidecar and shows the differences. Both sides use this one type, so
//! they cannot disagree on the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::propagation::{MigrationStage, PropagationFormat};

/// The most calling workloads a sidecar counts by name; later ones count as
/// `other` (with `unknown`, a report names at most `MAX_CALLERS + 2`).
pub const MAX_CALLERS: usize = 100;

/// One report.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The sidecar's namespace (as in its watch).
    pub namespace: String,
    /// The sidecar's pod (as in its watch).
    pub pod: String,
    /// Its service, when known.
    #[serde(default)]
    pub service: Option<String>,
    /// Random per process start: a new value means the counts restarted.
    pub boot: u64,
    /// Seconds since the process started (when its counts began): a first
    /// report from a process younger than the view's window counts in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// The migration stage in force.
    #[serde(default)]
    pub stage: MigrationStage,
    /// Requests from the mesh (inbound), by the formats they carried.
    #[serde(default)]
    pub inbound: FormatCounts,
    /// Requests from the local app (outbound), by the formats they carried.
    #[serde(default)]
    pub outbound: FormatCounts,
    /// Inbound requests by calling workload (`service.namespace` as the calling
    /// sidecar names itself; `unknown` without a mesh caller, `other` beyond the
    /// cardinality bound).
    #[serde(default)]
    pub callers: BTreeMap<String, FormatCounts>,
    /// Formats the app sent within `propagation.learn_for`, with the seconds since
    /// each was last seen. Empty when the app sent requests without context;
    /// `None` when it has sent no request in that time.
    #[serde(default)]
    pub app_formats: Option<BTreeMap<PropagationFormat, u64>>,
    /// Sampling routes by name (`sampling.rules[].name`, `rules[<i>]`, `default`):
    /// what the control plane shares adaptive targets by, and active boosts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteReport>,
}

/// One sampling route in a [`Report`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteReport {
    /// Root requests (no caller decision) the route decided since the process
    /// started: cumulative, like the format counts (`boot` tells a restart).
    pub roots: u64,
    /// Of those, sampled.
    pub sampled: u64,
    /// The route's fleet-wide target when it is adaptive (`None`: a fixed rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_traces_per_second: Option<f64>,
    /// The probability in force for root requests.
    pub rate: f64,
    /// The route's boost, while one is active (boosted or decaying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boost: Option<BoostReport>,
}

/// An active boost, as a sidecar reports it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoostReport {
    /// What triggered it, e.g. `error ratio 0.21 > 0.05 over 30s (120 requests)`.
    pub trigger: String,
    /// Seconds since it started.
    pub started_seconds_ago: u64,
    /// Seconds until it has decayed back to the route's own rate.
    pub ends_in_seconds: u64,
    /// The boost's probability now (it falls during the decay).
    pub rate: f64,
}

/// The control plane's answer to a report.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct ReportReply {
    /// Always true: the report was recorded.
    pub recorded: bool,
    /// Per adaptive route: this sidecar's share of the route's fleet-wide target,
    /// in traces per second (the fleet's target split by each sidecar's share of
    /// the route's root requests). A route left out is adapted on the sidecar's
    /// own traffic alone, to the whole target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, f64>,
}

/// Requests counted by the trace-context formats they carried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormatCounts {
    /// Every request.
    pub requests: u64,
    /// Requests with at least one legacy format (B3, Datadog, Jaeger).
    pub legacy: u64,
    /// Requests with no trace context at all.
    pub none: u64,
    /// Requests carrying each format (a request may carry several).
    #[serde(default)]
    pub formats: BTreeMap<PropagationFormat, u64>,
}

impl FormatCounts {
    /// `self - earlier`, or `self` when a counter went backwards (a restart).
    pub fn since(&self, earlier: &FormatCounts) -> FormatCounts {
        let restarted = self.requests < earlier.requests
            || self.legacy < earlier.legacy
            || self.none < earlier.none
            || self
                .formats
                .iter()
                .any(|(f, n)| *n < earlier.formats.get(f).copied().unwrap_or(0));
        if restarted {
            return self.clone();
        }
        FormatCounts {
            requests: self.requests - earlier.requests,
            legacy: self.legacy - earlier.legacy,
            none: self.none - earlier.none,
            formats: self
                .formats
                .iter()
                .map(|(f, n)| (*f, n - earlier.formats.get(f).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &FormatCounts) {
        self.requests += other.requests;
        self.legacy += other.legacy;
        self.none += other.none;
        for (f, n) in &other.formats {
            *self.formats.entry(*f).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64, legacy: u64, b3: u64) -> FormatCounts {
        FormatCounts {
            requests,
            legacy,
            none: 0,
            formats: [(PropagationFormat::B3Multi, b3)].into_iter().collect(),
        }
    }

    #[test]
    fn since_subtracts_an_earlier_report() {
        let d = counts(10, 4, 4).since(&counts(6, 1, 1));
        assert_eq!(
            (d.requests, d.legacy, d.formats[&PropagationFormat::B3Multi]),
            (4, 3, 3)
        );
    }

    #[test]
    fn since_a_later_report_means_a_restart() {
        assert_eq!(counts(2, 1, 1).since(&counts(6, 1, 1)), counts(2, 1, 1));
    }

    #[test]
    fn a_report_round_trips_through_json_with_format_names_as_keys() {
        let mut report = Report {
            namespace: "shop".into(),
            pod: "checkout-1".into(),
            boot: 7,
            inbound: counts(3, 1, 1),
            app_formats: Some([(PropagationFormat::Datadog, 4)].into_iter().collect()),
            ..Report::default()
        };
        report.callers.insert("web.shop".into(), counts(1, 1, 1));
        let text = serde_json::to_string(&report).unwrap();
        assert!(text.contains(r#""b3multi":1"#), "{text}");
        assert!(text.contains(r#""datadog":4"#), "{text}");
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
    }
}
