//! The `sampling` section: how the sidecar decides whether a trace is recorded.
//!
//! Decision order (first that applies wins):
//! 1. a trusted force signal (B3 debug, Datadog priority 2, `force_header`) —
//!    honoured only on trusted listeners, within `force_signal_budget`;
//! 2. a forced tenant within its budget (`forced_tenants`);
//! 3. the forced workload within its budget (`forced_workload`: an incident
//!    override of this service, which samples even when the caller said no);
//! 4. the parent's decision (W3C sampled flag, B3 sampled, Datadog priority);
//! 5. the first matching `rules` entry (reservoir, then rate), else the default
//!    route (`default`, else `default_rate`).
//!
//! Before all of them, a request that is a health check or probe (`probes`) is
//! not traced; and an active incident boost of the request's route (see
//! [`Boost`]) samples like the forced workload does, after it.
//!
//! A rule, and the default route, say how many traces they keep either as a fixed
//! `rate` or as `target_traces_per_second` (the sidecar adapts its probability,
//! within `min_rate`..`max_rate`; with a control plane, the fleet shares the
//! target), or through a `tier` whose defaults give the target, tail keep and
//! boost. [`Sampling::route`] resolves what one route does.

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
    /// The default route (requests no rule matches), when it is more than
    /// `default_rate`: a target rate, a tier, a boost. Its `rate`, target or tier
    /// wins over `default_rate`; it takes no `match` and no `name` (it is
    /// `default`).
    pub default: Option<SamplingRule>,
    /// The workload's tier (`critical`, `standard`, `background`, or one of
    /// `tiers`): the default of every route that names neither a rate, a target
    /// nor a tier of its own.
    pub tier: Option<String>,
    /// Tier definitions, on top of the built-in `critical`, `standard` and
    /// `background` (a tier given here replaces the built-in one of its name).
    pub tiers: std::collections::BTreeMap<String, Tier>,
    /// How adaptive routes adjust, and whether boosts may start.
    pub adaptive: Adaptive,
    /// Health checks and probes: not traced unless `trace: true`, counted instead.
    pub probes: Probes,
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
            default: None,
            tier: None,
            tiers: std::collections::BTreeMap::new(),
            adaptive: Adaptive::default(),
            probes: Probes::default(),
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

/// A root-decision rule: a route. It keeps traces at a fixed `rate`, or adapts
/// its rate to `target_traces_per_second`, or takes both from its `tier`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingRule {
    /// The route's name: the `route` label of its metrics and the key the
    /// control plane shares its target by (default `rules[<index>]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which requests (all given criteria must hold).
    #[serde(rename = "match", default)]
    pub matches: RuleMatch,
    /// Fixed probability after the reservoir is used up, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Adaptive instead of fixed: root traces a second this route should keep,
    /// fleet-wide (the sidecar adjusts its probability every `adaptive.period`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_traces_per_second: Option<f64>,
    /// The adaptive probability's floor (default: the tier's, else 0.00001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rate: Option<f64>,
    /// The adaptive probability's ceiling (default: the tier's, else 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    /// Traces per second taken before `rate` applies (the AWS X-Ray model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservoir_per_second: Option<u32>,
    /// The route's tier: its defaults for target, tail keep and boost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Automatic incident boost (default: the tier's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boost: Option<Boost>,
}

/// A criticality tier: what a route marked with it keeps by default.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Root traces a second the route keeps, fleet-wide (adaptive).
    pub target_traces_per_second: f64,
    /// The adaptive probability's floor.
    #[serde(default = "min_rate")]
    pub min_rate: f64,
    /// The adaptive probability's ceiling.
    #[serde(default = "one")]
    pub max_rate: f64,
    /// Tail keep for the route's requests, on top of `sampling.tail`.
    #[serde(default)]
    pub tail: TailKeep,
    /// The route's boost (`null`: none).
    #[serde(default)]
    pub boost: Option<Boost>,
}

/// An automatic incident boost: when a trigger holds over `window`, the route's
/// requests are sampled at `rate` (even when the caller said no, like the forced
/// workload), within `traces_per_second`, for `duration`; the rate then decays
/// back to the route's own over `decay`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Boost {
    /// Trigger: the share of the window's requests that failed (HTTP 5xx, gRPC
    /// server errors) is above this, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    /// Trigger: a latency percentile over the window is above a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyTrigger>,
    /// The sliding window triggers are evaluated over.
    #[serde(default = "boost_window")]
    pub window: crate::Duration,
    /// Fewer requests than this in the window trigger nothing.
    #[serde(default = "boost_min_requests")]
    pub min_requests: u32,
    /// The probability while boosted, in (0, 1].
    #[serde(default = "one")]
    pub rate: f64,
    /// Budget while boosted: at most this many boosted traces a second (token
    /// bucket, one second's burst); over it, the normal decision.
    #[serde(default = "boost_budget")]
    pub traces_per_second: f64,
    /// How long a boost lasts at `rate`.
    #[serde(default = "boost_duration")]
    pub duration: crate::Duration,
    /// How long the rate then takes to fall back to the route's own.
    #[serde(default = "boost_decay")]
    pub decay: crate::Duration,
}

/// A latency trigger: `percentile` of the window's durations above `above`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTrigger {
    /// The percentile, in (0, 100), e.g. 99.
    pub percentile: f64,
    /// The threshold, e.g. `500ms`.
    pub above: crate::Duration,
}

/// How adaptive routes adjust (per sidecar).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adaptive {
    /// The adjustment period: how often probabilities are recomputed and boost
    /// triggers evaluated.
    pub period: crate::Duration,
    /// Whether boosts may start (`meshtrace-control boost off` turns them off
    /// fleet-wide).
    pub boosts: bool,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            period: crate::Duration::from_secs(5),
            boosts: true,
        }
    }
}

/// Health checks and probes: requests matching are not traced (decision
/// reason `probe`, counted in `meshtrace_sampling_decisions_total`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Probes {
    /// Trace them anyway.
    pub trace: bool,
    /// `User-Agent` prefixes of probes (the kubelet's is `kube-probe/1.30`).
    pub user_agents: Vec<String>,
    /// Exact paths of health endpoints.
    pub paths: Vec<String>,
}

impl Default for Probes {
    fn default() -> Self {
        Self {
            trace: false,
            user_agents: vec![
                "kube-probe/".into(),
                "ELB-HealthChecker/".into(),
                "GoogleHC/".into(),
            ],
            paths: vec!["/healthz".into(), "/livez".into(), "/readyz".into()],
        }
    }
}

fn min_rate() -> f64 {
    DEFAULT_MIN_RATE
}

/// The adaptive floor when neither rule nor tier gives one (Jaeger's default
/// minimum sampling probability).
pub const DEFAULT_MIN_RATE: f64 = 0.000_01;

fn boost_window() -> crate::Duration {
    crate::Duration::from_secs(30)
}

fn boost_min_requests() -> u32 {
    20
}

fn boost_budget() -> f64 {
    50.0
}

fn boost_duration() -> crate::Duration {
    crate::Duration::from_secs(300)
}

fn boost_decay() -> crate::Duration {
    crate::Duration::from_secs(60)
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

mod routes;
pub use routes::{builtin_tiers, RateMode, RoutePolicy, DEFAULT_ROUTE};

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
