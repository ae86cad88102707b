//! The sampling step as the trace layer runs it: what it reads from a request
//! (tenant, force header, gRPC method), whom it believes, and what it writes
//! into the context the sidecar forwards.

use http::Request;
use meshtrace_config::{Config, RuleMatch, SamplingRule};

use super::{apply, decide, SamplingHeaders};
use crate::propagation::{DatadogMeta, Sampling, SpanId, TraceContext, TraceId};
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
    context.datadog = Some(DatadogMeta {
        priority: Some(2),
        ..DatadogMeta::default()
    });
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
            rate: 1.0,
            reservoir_per_second: None,
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
    context.datadog = Some(DatadogMeta {
        priority: Some(0),
        tags: vec![("dm".into(), "-0".into())],
        ..DatadogMeta::default()
    });
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
