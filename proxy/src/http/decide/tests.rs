//! The sampling step as the trace layer runs it: what it reads from a request
//! (tenant, force header, gRPC method), whom it believes, and what it writes
//! into the context the sidecar forwards.

use http::Request;
use meshtrace_config::{Config, RuleMatch, SamplingRule};

use super::{apply, decide, SamplingHeaders};
use crate::propagation::{b3, DatadogMeta, Outgoing, Sampling, SpanId, TraceContext, TraceId};
use crate::sampling::{Decision, Reason, Sampler};
use crate::test_support::{config, request};

/// A trace id whose random bits sit exactly at rate 1/2's threshold: kept at
/// rates of 1/2 and above.
const KEPT_AT_HALF: u128 = 0x5eed_0000_0000_0000_0080_0000_0000_0000;

/// The context about to be forwarded, with no decision of its own yet.
fn context() -> TraceContext {
    let trace_id = TraceId::new(KEPT_AT_HALF).expect("non-zero trace id");
    let span_id = SpanId::new(0x1111).expect("non-zero span id");
    TraceContext::new(trace_id, span_id, Sampling::Deferred)
}

/// The sampler's decision for `req` as the trace layer asks for it: a root
/// (no parent decision) on a listener that does or does not trust its callers.
fn decision(config: &Config, trusted: bool, req: &Request<()>, context: &TraceContext) -> Decision {
    let sampler = Sampler::new(&config.sampling);
    let headers = SamplingHeaders::new(&config.sampling);
    let facts = headers.facts(req);
    let now = tokio::time::Instant::now();
    decide(&sampler, trusted, &facts, req, None, context, now)
}

/// The tenant `req` belongs to under `config`.
fn tenant(config: &Config, req: &Request<()>) -> Option<String> {
    let headers = SamplingHeaders::new(&config.sampling);
    headers.facts(req).tenant().map(String::from)
}

#[test]
fn tenant_comes_from_the_first_configured_header_present() {
    let config = config(|c| c.sampling.tenant.headers = vec!["x-tenant-id".into(), "x-org".into()]);
    let both = request("/", &[("x-org", "org-b"), ("x-tenant-id", "acme")]);
    assert_eq!(tenant(&config, &both).as_deref(), Some("acme"));
    let org_only = request("/", &[("x-org", "org-b")]);
    assert_eq!(tenant(&config, &org_only).as_deref(), Some("org-b"));
}

#[test]
fn tenant_falls_back_to_the_baggage_member_without_its_properties() {
    let config = config(|c| c.sampling.tenant.baggage_key = Some("tenant".into()));
    let req = request("/", &[("baggage", "user=7, tenant = acme;ttl=5")]);
    assert_eq!(tenant(&config, &req).as_deref(), Some("acme"));
    let empty = request("/", &[("baggage", "tenant=;ttl=5")]);
    assert_eq!(
        tenant(&config, &empty),
        None,
        "an empty member is no tenant"
    );
}

#[test]
fn decide_forced_sampling_header_from_trusted_caller_samples() {
    let config = config(|c| c.sampling.default_rate = 0.0);
    let req = request("/", &[("x-meshtrace-force-trace", "true")]);
    let decision = decision(&config, true, &req, &context());
    assert!(decision.sampled);
    assert_eq!(decision.reason, Reason::ForceSignal);
}

#[test]
fn decide_forced_sampling_header_from_untrusted_caller_is_ignored() {
    let config = config(|c| c.sampling.default_rate = 0.0);
    let req = request("/", &[("x-meshtrace-force-trace", "true")]);
    let decision = decision(&config, false, &req, &context());
    assert!(!decision.sampled);
    assert_eq!(decision.reason, Reason::Default);
}

#[test]
fn force_header_values_other_than_a_true_word_are_no_signal() {
    let config = config(|c| c.sampling.default_rate = 0.0);
    for value in ["0", "false", "on", "yes please"] {
        let req = request("/", &[("x-meshtrace-force-trace", value)]);
        let decision = decision(&config, true, &req, &context());
        assert_eq!(decision.reason, Reason::Default, "value {value:?}");
    }
}

#[test]
fn datadog_user_keep_priority_is_a_force_signal() {
    let config = config(|c| c.sampling.default_rate = 0.0);
    let mut context = context();
    context.datadog = Some(Box::new(DatadogMeta {
        priority: Some(2),
        ..DatadogMeta::default()
    }));
    let decision = decision(&config, true, &request("/", &[]), &context);
    assert!(decision.sampled);
    assert_eq!(decision.reason, Reason::ForceSignal);
}

#[test]
fn grpc_rules_match_the_service_and_method_of_a_grpc_request_only() {
    let config = config(|c| {
        c.sampling.default_rate = 0.0;
        c.sampling.rules = vec![SamplingRule {
            matches: RuleMatch {
                grpc_service: Some("shop.Cart".into()),
                grpc_method: Some("Add".into()),
                ..RuleMatch::default()
            },
            rate: Some(1.0),
            ..SamplingRule::default()
        }];
    });
    let grpc = request("/shop.Cart/Add", &[("content-type", "application/grpc")]);
    assert_eq!(
        decision(&config, true, &grpc, &context()).reason,
        Reason::Rule
    );
    let plain = request("/shop.Cart/Add", &[("content-type", "application/json")]);
    assert_eq!(
        decision(&config, true, &plain, &context()).reason,
        Reason::Default
    );
}

#[test]
fn apply_leaves_a_parent_decision_untouched() {
    let mut context = context();
    context.sampling = Sampling::NotSampled;
    let before = context.clone();
    let parent = Decision {
        sampled: true,
        reason: Reason::Parent,
        threshold: None,
    };
    apply(parent, &mut context);
    assert_eq!(context, before);
}

#[test]
fn apply_writes_a_probability_decision_with_its_threshold() {
    let config = config(|c| c.sampling.default_rate = 0.5);
    let mut context = context();
    let half = decision(&config, true, &request("/", &[]), &context);
    apply(half, &mut context);
    assert_eq!(context.sampling, Sampling::Sampled);
    assert_eq!(context.tracestate.get("ot"), Some("th:8"));
    let mut everything = self::context();
    let rate_one = decision(&Config::default(), true, &request("/", &[]), &everything);
    apply(rate_one, &mut everything);
    assert_eq!(everything.tracestate.get("ot"), None, "th:0 is implied");
}

#[test]
fn apply_marks_a_forced_datadog_trace_user_keep_by_manual_decision() {
    let mut context = context();
    context.datadog = Some(Box::new(DatadogMeta {
        priority: Some(0),
        tags: vec![("dm".into(), "-0".into())],
        ..DatadogMeta::default()
    }));
    let forced = Decision {
        sampled: true,
        reason: Reason::ForceSignal,
        threshold: None,
    };
    apply(forced, &mut context);
    let meta = context.datadog.unwrap_or_default();
    assert_eq!(meta.priority, Some(2));
    assert_eq!(meta.tags, vec![("dm".to_string(), "-4".to_string())]);
}

// === Force-signal budget ===

/// `n` requests like `req` with a caller context like `caller` (whose sampled
/// flag is the parent's decision), decided and applied at one instant by one
/// sampler with a budget of `budget` force signals a second: the contexts the
/// sidecar would forward, with the decisions.
fn forward_many(
    budget: f64,
    req: &Request<()>,
    caller: &TraceContext,
    n: usize,
) -> Vec<(Decision, TraceContext)> {
    let config = config(|c| {
        c.sampling.default_rate = 0.0;
        c.sampling.force_signal_budget.traces_per_second = budget;
    });
    let sampler = Sampler::new(&config.sampling);
    let headers = SamplingHeaders::new(&config.sampling);
    let facts = headers.facts(req);
    let parent = (caller.sampling != Sampling::Deferred).then(|| caller.sampling.is_sampled());
    let now = tokio::time::Instant::now();
    let forward = |_| {
        let mut context = caller.clone();
        let decision = decide(&sampler, true, &facts, req, parent, &context, now);
        apply(decision, &mut context);
        (decision, context)
    };
    (0..n).map(forward).collect()
}

fn reasons(forwarded: &[(Decision, TraceContext)]) -> Vec<Reason> {
    forwarded.iter().map(|(d, _)| d.reason).collect()
}

/// `forced` force signals, then `over` over budget.
fn forced_then_over(forced: usize, over: usize) -> Vec<Reason> {
    let mut reasons = vec![Reason::ForceSignal; forced];
    reasons.resize(forced + over, Reason::BudgetExceeded);
    reasons
}

/// The `b3` header the sidecar would write for `context`.
fn b3_written(context: &TraceContext) -> String {
    let mut headers = http::HeaderMap::new();
    b3::inject_single(&Outgoing::of(context), &mut headers);
    let value = headers.get("b3").and_then(|v| v.to_str().ok());
    value.unwrap_or_default().to_string()
}

#[test]
fn force_header_forces_only_its_budget_then_the_default_decides() {
    let req = request("/", &[("x-meshtrace-force-trace", "1")]);
    let forwarded = forward_many(3.0, &req, &context(), 5);
    assert_eq!(reasons(&forwarded), forced_then_over(3, 2));
    let over = &forwarded[4];
    assert!(!over.0.sampled, "default_rate 0 decides over budget");
    assert_eq!(over.1.sampling, Sampling::NotSampled);
}

#[test]
fn b3_debug_over_budget_is_passed_on_as_plain_sampled() {
    let mut caller = context();
    caller.sampling = Sampling::Sampled;
    caller.debug = true;
    let forwarded = forward_many(3.0, &request("/", &[]), &caller, 5);
    assert_eq!(reasons(&forwarded), forced_then_over(3, 2));
    assert!(b3_written(&forwarded[0].1).ends_with("-d"), "within budget");
    let over = &forwarded[4].1;
    assert!(!over.debug, "the refused force is not passed on");
    assert!(b3_written(over).ends_with("-1"), "the parent's accept is");
}

#[test]
fn datadog_user_keep_over_budget_is_passed_on_as_auto_keep() {
    let mut caller = context();
    caller.sampling = Sampling::Sampled;
    caller.datadog = Some(Box::new(DatadogMeta {
        priority: Some(2),
        ..DatadogMeta::default()
    }));
    let forwarded = forward_many(3.0, &request("/", &[]), &caller, 5);
    assert_eq!(reasons(&forwarded), forced_then_over(3, 2));
    let priority = |c: &TraceContext| c.datadog.as_ref().and_then(|m| m.priority);
    assert_eq!(priority(&forwarded[0].1), Some(2), "within budget");
    assert_eq!(priority(&forwarded[4].1), Some(1), "over budget");
}

/// Whether `req` is a probe under `config`.
fn probe(config: &Config, req: &Request<()>) -> bool {
    SamplingHeaders::new(&config.sampling).is_probe(req)
}

#[test]
fn kubelet_probes_and_health_paths_are_probes_by_default() {
    let config = crate::test_support::config(|_| {});
    let kubelet = request("/ready", &[("user-agent", "kube-probe/1.30")]);
    assert!(probe(&config, &kubelet));
    let elb = request("/", &[("user-agent", "elb-healthchecker/2.0")]);
    assert!(
        probe(&config, &elb),
        "user agents compare case-insensitively"
    );
    assert!(probe(&config, &request("/healthz", &[])));
    assert!(
        !probe(&config, &request("/healthz/deep", &[])),
        "paths are exact"
    );
    let browser = request(
        "/api/cart",
        &[("user-agent", "Mozilla/5.0 kube-probe/1.30")],
    );
    assert!(!probe(&config, &browser), "a prefix, not a substring");
}

#[test]
fn probes_are_configurable_and_can_be_traced() {
    let custom = config(|c| {
        c.sampling.probes.paths = vec!["/ping".into()];
        c.sampling.probes.user_agents = vec!["Consul Health Check".into()];
    });
    assert!(probe(&custom, &request("/ping", &[])));
    assert!(!probe(&custom, &request("/healthz", &[])));
    let consul = request("/", &[("user-agent", "Consul Health Check")]);
    assert!(probe(&custom, &consul));
    let traced = config(|c| c.sampling.probes.trace = true);
    assert!(!probe(&traced, &request("/healthz", &[])));
}

#[test]
fn a_probe_is_not_traced_even_when_everything_else_would_be() {
    let all = config(|c| c.sampling.default_rate = 1.0);
    let req = request(
        "/healthz",
        &[
            ("user-agent", "kube-probe/1.30"),
            ("x-meshtrace-force-trace", "1"),
        ],
    );
    let probed = decision(&all, true, &req, &context());
    assert_eq!((probed.sampled, probed.reason), (false, Reason::Probe));
    let app = request("/api", &[("user-agent", "kube-probe/1.30")]);
    let traced = config(|c| {
        c.sampling.default_rate = 1.0;
        c.sampling.probes.trace = true;
    });
    assert!(decision(&traced, true, &app, &context()).sampled);
}

#[test]
fn tenant_is_the_first_configured_header_with_a_text_value() {
    let config = config(|c| c.sampling.tenant.headers = vec!["x-tenant-id".into(), "x-org".into()]);
    let mut req = request("/", &[("x-org", "org-b")]);
    let binary = http::HeaderValue::from_bytes(b"\xffacme").expect("an obs-text value");
    req.headers_mut().insert("x-tenant-id", binary);
    assert_eq!(tenant(&config, &req).as_deref(), Some("org-b"));
}
