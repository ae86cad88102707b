//! The sampling part of an explanation: the decision the trace step made, and
//! the piece of config (or the caller) that made it.

use http::Request;
use meshtrace_config::{Config, RateMode, RoutePolicy};

use super::model::SamplingView;
use crate::http::decide;
use crate::http::trace::{TracePolicy, Traced};
use crate::propagation::TraceContext;
use crate::sampling::Reason;

/// The decision in `traced`, attributed. `req` is the request as forwarded (its
/// authority, method and path are what rules match); `read` is the context the
/// request carried, if any.
pub fn view<B>(
    config: &Config,
    policy: &TracePolicy,
    req: &Request<B>,
    traced: &Traced,
    read: Option<&TraceContext>,
) -> SamplingView {
    let sampling = &config.sampling;
    let decision = traced.decision;
    let tenant = traced.tenant.as_deref().map(str::to_string);
    let forced_tenant = tenant
        .as_deref()
        .and_then(|t| sampling.forced_tenants.iter().find(|f| f.tenant == t));
    let (decided_by, rate) = match decision.reason {
        Reason::Parent => (parent(traced), None),
        Reason::ForceSignal => (force_signal(config, read), None),
        Reason::ForcedTenant => (
            format!(
                "sampling.forced_tenants (tenant {:?})",
                tenant.as_deref().unwrap_or("")
            ),
            forced_tenant.map(|f| f.rate),
        ),
        Reason::ForcedWorkload => (
            "sampling.forced_workload".to_string(),
            sampling.forced_workload.as_ref().map(|w| w.rate),
        ),
        Reason::Rule | Reason::Default | Reason::BudgetExceeded => {
            root(config, policy, req, traced)
        }
        Reason::TailError | Reason::TailSlow => ("tail keep".to_string(), None),
        Reason::Boost => ("the route's incident boost".to_string(), None),
        Reason::Probe => ("sampling.probes: a health check or probe".to_string(), None),
    };
    let routes = policy.sampler.routes();
    let route = routes.policy(decide::route_of(&policy.sampler, req));
    SamplingView {
        sampled: decision.sampled,
        reason: decision.reason.as_str(),
        decided_by,
        tenant,
        rate,
        threshold: decision.threshold.map(|t| t.to_th()),
        route: route.map_or_else(String::new, |r| r.name.clone()),
        route_policy: route.map_or_else(String::new, describe),
    }
}

/// How a route keeps traces, in one line.
fn describe(route: &RoutePolicy) -> String {
    let mut parts = vec![match route.rate {
        RateMode::Fixed(rate) => format!("fixed rate {rate}"),
        RateMode::Target {
            traces_per_second,
            min_rate,
            max_rate,
        } => format!(
            "adaptive: {traces_per_second} traces/s fleet-wide, rate {min_rate}..{max_rate}; explain starts at {max_rate}"
        ),
    }];
    if let Some(tier) = &route.tier {
        parts.push(format!("tier {tier}"));
    }
    if let Some(boost) = &route.boost {
        let mut triggers = Vec::new();
        if let Some(ratio) = boost.error_ratio {
            triggers.push(format!("error ratio > {ratio}"));
        }
        if let Some(l) = &boost.latency {
            triggers.push(format!("p{} > {}", l.percentile, String::from(l.above)));
        }
        parts.push(format!(
            "boost on {} → rate {} within {}/s (not active here)",
            triggers.join(" or "),
            boost.rate,
            boost.traces_per_second
        ));
    }
    parts.join("; ")
}

fn parent(traced: &Traced) -> String {
    let formats = super::build::names_of(traced.incoming.formats);
    format!("the caller's decision (read from {})", formats.join(", "))
}

fn force_signal(config: &Config, read: Option<&TraceContext>) -> String {
    let signal = match read {
        Some(c) if c.debug => "the debug flag (B3 `d` / X-B3-Flags: 1 / Jaeger debug)".to_string(),
        Some(c) if c.datadog.as_ref().and_then(|m| m.priority) == Some(2) => {
            "Datadog priority 2 (user keep)".to_string()
        }
        _ => format!(
            "the {} header",
            config.sampling.force_header.as_deref().unwrap_or("force")
        ),
    };
    format!("force signal: {signal}, within sampling.force_signal_budget")
}

/// A root decision (or one after a spent budget): the parent's, the first
/// matching rule's, or the default rate's.
fn root<B>(
    config: &Config,
    policy: &TracePolicy,
    req: &Request<B>,
    traced: &Traced,
) -> (String, Option<f64>) {
    let over = if traced.decision.reason == Reason::BudgetExceeded {
        "a budget was spent, so: "
    } else {
        ""
    };
    if traced.parent.is_some() {
        return (format!("{over}the caller's decision"), None);
    }
    let facts = policy.sampling_headers.facts(req);
    let input = decide::input(policy.trusted, &facts, req, None, &traced.context);
    match policy.sampler.rule_for(&input) {
        Some(i) => {
            let rule = config.sampling.rules.get(i);
            let live = policy.sampler.routes().threshold(i).map(|t| t.rate());
            let reservoir = rule
                .and_then(|r| r.reservoir_per_second)
                .map(|n| format!(", reservoir {n}/s taken first"))
                .unwrap_or_default();
            (
                format!("{over}sampling.rules[{i}]{reservoir}"),
                rule.and_then(|r| r.rate).or(live),
            )
        }
        None => {
            let default = config.sampling.rules.len();
            let live = policy
                .sampler
                .routes()
                .threshold(default)
                .map_or(0.0, |t| t.rate());
            let (by, rate) = match config.sampling.default_route().rate {
                RateMode::Fixed(rate) if rate == config.sampling.default_rate => {
                    ("sampling.default_rate", rate)
                }
                RateMode::Fixed(rate) => ("sampling.default.rate", rate),
                RateMode::Target { .. } => ("the default route's adaptive rate", live),
            };
            (format!("{over}{by} (no rule matched)"), Some(rate))
        }
    }
}
