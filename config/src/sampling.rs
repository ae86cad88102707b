//! The `sampling` section: how the sidecar decides whether a trace is recorded.
//!
//! Decision order (first that applies wins):
//! 1. a trusted force signal (B3 debug, Datadog priority 2, `force_header`) —
//!    honoured only on trusted listeners, within `force_signal_budget`;
//! 2. a forced tenant within its budget (`forced_tenants`);
//! 3. the forced workload within its budget (`forced_workload`: an incident
//!    override of this service, which samples even when the caller said no);
//! 4. the parent's decision (W3C sampled flag, B3 sampled, Datadog priority);
//! 5. the first matching `rules` entry (reservoir, then rate), else `default_rate`.

use serde::{Deserialize, Serialize};

/// The `sampling` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Probability for root traces no rule matches, in [0, 1].
    pub default_rate: f64,
    /// A request header that forces sampling when present with a true value
    /// (`1`, `true`, `yes`), like Envoy's `x-envoy-force-trace`; trusted listeners only.
    pub force_header: Option<String>,
    /// Budget of traces force signals may force (per listener): a trusted caller
    /// that sets one on every request must not turn sampling off for the mesh.
    pub force_signal_budget: ForceSignalBudget,
    /// Where a request's tenant id is read from.
    pub tenant: TenantSource,
    /// Tenants traced regardless of the normal decision, within a budget.
    pub forced_tenants: Vec<ForcedTenant>,
    /// Every request of this workload traced regardless of the caller's decision,
    /// within a budget (what `meshtrace-control override add --service` sets).
    pub forced_workload: Option<ForcedWorkload>,
    /// Root-decision rules, first match wins.
    pub rules: Vec<SamplingRule>,
    /// Sidecar-local tail keep of requests that were not sampled.
    pub tail: TailKeep,
}

/// Tail keep: a request that was not head-sampled still gets its span recorded
/// (cheaply, in memory), and the span is exported if the response turned out
/// interesting. The decision sent downstream never changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TailKeep {
    /// Keep spans of HTTP 5xx responses and gRPC error statuses.
    pub errors: bool,
    /// Keep spans of requests slower than this (`null`: off).
    pub slow: Option<crate::Duration>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            default_rate: 1.0,
            force_header: Some("x-meshtrace-force-trace".into()),
            force_signal_budget: ForceSignalBudget::default(),
            tenant: TenantSource::default(),
            forced_tenants: Vec::new(),
            forced_workload: None,
            rules: Vec::new(),
            tail: TailKeep::default(),
        }
    }
}

/// Where the tenant id comes from: the first header present, else a W3C baggage key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSource {
    /// Header names, in order.
    pub headers: Vec<String>,
    /// A key of the W3C `baggage` header.
    pub baggage_key: Option<String>,
}

impl Default for TenantSource {
    fn default() -> Self {
        Self {
            headers: vec!["x-tenant-id".into()],
            baggage_key: None,
        }
    }
}

/// A tenant whose traces are recorded, within `traces_per_second`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedTenant {
    /// The tenant id.
    pub tenant: String,
    /// Probability of recording this tenant's requests, in [0, 1].
    #[serde(default = "one")]
    pub rate: f64,
    /// Sample even when the parent said "not sampled".
    #[serde(default = "yes")]
    pub override_parent: bool,
    /// Budget: at most this many forced traces per second (token bucket; the burst
    /// is one second's worth). Over budget, the normal decision applies.
    pub traces_per_second: f64,
}

/// The workload's own requests traced at `rate` even when the caller said "not
/// sampled", within `traces_per_second` (per listener; over budget, the normal
/// decision applies).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedWorkload {
    /// Probability of recording a request, in [0, 1].
    #[serde(default = "one")]
    pub rate: f64,
    /// Budget: at most this many forced traces per second (token bucket; the burst
    /// is one second's worth).
    pub traces_per_second: f64,
}

/// How many traces a second the trusted force signals (B3 debug, Datadog
/// priority 2, `force_header`) may force on one listener (token bucket; the burst
/// is one second's worth). Over budget, the signal is not honoured: the normal
/// decision applies, counted as `budget_exceeded`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForceSignalBudget {
    /// Forced traces per second.
    pub traces_per_second: f64,
}

impl Default for ForceSignalBudget {
    /// 100 a second, like the forced workload's documented budget: plenty for
    /// people debugging by hand, far below a caller that forces every request.
    fn default() -> Self {
        Self {
            traces_per_second: 100.0,
        }
    }
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// A root-decision rule.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingRule {
    /// Which requests (all given criteria must hold).
    #[serde(rename = "match", default)]
    pub matches: RuleMatch,
    /// Probability after the reservoir is used up, in [0, 1].
    pub rate: f64,
    /// Traces per second taken before `rate` applies (the AWS X-Ray model).
    #[serde(default)]
    pub reservoir_per_second: Option<u32>,
}

/// Request criteria of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleMatch {
    /// Exact `host:port`, case-insensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Host, any port, case-insensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// HTTP method, e.g. `GET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path prefix, e.g. `/api/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// gRPC service, `package.Service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_service: Option<String>,
    /// gRPC method name (within the service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_method: Option<String>,
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, "test.yaml")
    }

    #[test]
    fn force_signal_budget_defaults_to_100_a_second() {
        let config = load("").map(|c| c.sampling.force_signal_budget.traces_per_second);
        assert_eq!(config.ok(), Some(100.0));
    }

    #[test]
    fn force_signal_budget_must_be_positive() {
        for budget in ["0", "-1", ".nan"] {
            let text =
                format!("sampling:\n  force_signal_budget: {{traces_per_second: {budget}}}\n");
            let Err(ConfigError::Invalid { problems, .. }) = load(&text) else {
                panic!("budget {budget} was accepted");
            };
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(paths, ["sampling.force_signal_budget.traces_per_second"]);
        }
    }
}
