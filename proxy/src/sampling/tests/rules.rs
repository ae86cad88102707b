use std::time::Duration;

use meshtrace_config::{RuleMatch, SamplingRule};
use tokio::time::Instant;

use super::*;

#[test]
fn first_matching_rule_wins() {
    let sampler = with_rules(
        1.0,
        vec![
            rule(path("/api/"), 0.0),
            rule(path("/"), 0.5),
            rule(path("/api/users"), 1.0),
        ],
    );
    assert_eq!(decide(&sampler, root()), not_sampled(Reason::Rule));
    let other = Input {
        path: "/health",
        ..root()
    };
    assert_eq!(decide(&sampler, other), sampled(Reason::Rule, Some(0.5)));
}

#[test]
fn no_matching_rule_uses_the_default_rate() {
    let sampler = with_rules(0.5, vec![rule(path("/admin/"), 0.0)]);
    assert_eq!(
        decide(&sampler, root()),
        sampled(Reason::Default, Some(0.5))
    );
}

#[test]
fn rule_without_criteria_matches_every_request() {
    let sampler = with_rules(0.0, vec![rule(RuleMatch::default(), 1.0)]);
    assert_eq!(decide(&sampler, root()).reason, Reason::Rule);
}

#[test]
fn rule_matches_authority_exactly_ignoring_case() {
    let matches = RuleMatch {
        authority: Some("API.Example.com:8080".into()),
        ..RuleMatch::default()
    };
    let sampler = with_rules(0.0, vec![rule(matches, 1.0)]);
    let reason = |authority| by_authority(&sampler, authority);
    assert_eq!(reason(Some("api.example.com:8080")), Reason::Rule);
    assert_eq!(reason(Some("api.example.com:9090")), Reason::Default);
    assert_eq!(reason(Some("api.example.com")), Reason::Default);
    assert_eq!(reason(None), Reason::Default);
}

#[test]
fn rule_matches_host_on_any_port_ignoring_case() {
    let sampler = with_rules(0.0, vec![rule(host("api.example.com"), 1.0)]);
    let reason = |authority| by_authority(&sampler, authority);
    assert_eq!(reason(Some("API.example.com:8080")), Reason::Rule);
    assert_eq!(reason(Some("api.example.com")), Reason::Rule);
    assert_eq!(reason(Some("api.example.com.evil:80")), Reason::Default);
    assert_eq!(reason(None), Reason::Default);
}

#[test]
fn rule_matches_ipv6_host_with_or_without_brackets() {
    for configured in ["[::1]", "::1"] {
        let sampler = with_rules(0.0, vec![rule(host(configured), 1.0)]);
        let reason = |authority| by_authority(&sampler, authority);
        assert_eq!(reason(Some("[::1]:8080")), Reason::Rule);
        assert_eq!(reason(Some("[::1]")), Reason::Rule);
        assert_eq!(reason(Some("[::2]:8080")), Reason::Default);
    }
}

#[test]
fn rule_matches_method_ignoring_case() {
    let matches = RuleMatch {
        method: Some("post".into()),
        ..RuleMatch::default()
    };
    let sampler = with_rules(0.0, vec![rule(matches, 1.0)]);
    let reason = |method| decide(&sampler, Input { method, ..root() }).reason;
    assert_eq!(reason("POST"), Reason::Rule);
    assert_eq!(reason("GET"), Reason::Default);
}

#[test]
fn rule_matches_path_prefix_case_sensitively() {
    let sampler = with_rules(0.0, vec![rule(path("/api/"), 1.0)]);
    let reason = |path| decide(&sampler, Input { path, ..root() }).reason;
    assert_eq!(reason("/api/users"), Reason::Rule);
    assert_eq!(reason("/api/"), Reason::Rule);
    assert_eq!(reason("/apiv2/users"), Reason::Default);
    assert_eq!(reason("/API/users"), Reason::Default);
}

#[test]
fn rule_matches_grpc_service_and_method() {
    let service = RuleMatch {
        grpc_service: Some("shop.v1.Cart".into()),
        ..RuleMatch::default()
    };
    let method = RuleMatch {
        grpc_method: Some("Checkout".into()),
        ..service.clone()
    };
    let sampler = with_rules(0.0, vec![rule(method, 1.0), rule(service, 0.5)]);
    let decide_grpc = |grpc| decide(&sampler, Input { grpc, ..root() });
    let checkout = decide_grpc(Some(("shop.v1.Cart", "Checkout")));
    assert_eq!(checkout, sampled(Reason::Rule, Some(1.0)));
    let add = decide_grpc(Some(("shop.v1.Cart", "Add")));
    assert_eq!(add, sampled(Reason::Rule, Some(0.5)));
    assert_eq!(
        decide_grpc(Some(("shop.v1.Orders", "Checkout"))).reason,
        Reason::Default
    );
    assert_eq!(decide_grpc(None).reason, Reason::Default);
}

#[test]
fn rule_needs_every_criterion() {
    let matches = RuleMatch {
        method: Some("POST".into()),
        ..path("/api/")
    };
    let sampler = with_rules(0.0, vec![rule(matches, 1.0)]);
    assert_eq!(decide(&sampler, root()).reason, Reason::Default);
}

#[test]
fn reservoir_samples_n_a_second_then_the_rate() {
    let reservoir = SamplingRule {
        reservoir_per_second: Some(3),
        ..rule(RuleMatch::default(), 0.0)
    };
    let sampler = with_rules(0.0, vec![reservoir]);
    let t0 = Instant::now();
    let decisions = |at: Duration| -> Vec<Decision> {
        (0..4).map(|_| sampler.decide(&root(), t0 + at)).collect()
    };
    let by_reservoir = sampled(Reason::Rule, None);
    let by_rate = not_sampled(Reason::Rule);
    let second = [by_reservoir, by_reservoir, by_reservoir, by_rate];
    assert_eq!(decisions(Duration::ZERO), second);
    // One token takes a third of a second to refill.
    assert_eq!(decisions(Duration::from_millis(300)), [by_rate; 4]);
    assert_eq!(decisions(Duration::from_secs(1)), second);
}

#[test]
fn after_the_reservoir_the_rule_rate_decides_consistently() {
    let reservoir = SamplingRule {
        reservoir_per_second: Some(1),
        ..rule(RuleMatch::default(), 0.5)
    };
    let sampler = with_rules(0.0, vec![reservoir]);
    let dropped = Input {
        trace_id: trace_id(DROPPED_AT_HALF),
        ..root()
    };
    assert_eq!(decide(&sampler, dropped), sampled(Reason::Rule, None));
    assert_eq!(decide(&sampler, root()), sampled(Reason::Rule, Some(0.5)));
    assert_eq!(decide(&sampler, dropped), not_sampled(Reason::Rule));
}

fn path(prefix: &str) -> RuleMatch {
    RuleMatch {
        path_prefix: Some(prefix.into()),
        ..RuleMatch::default()
    }
}

fn host(host: &str) -> RuleMatch {
    RuleMatch {
        host: Some(host.into()),
        ..RuleMatch::default()
    }
}

/// The same behaviour on tokio's paused clock, as the request path sees it
/// (`Instant::now()`), advanced by hand: no sleeps.
#[tokio::test(start_paused = true)]
async fn reservoir_refills_as_the_paused_clock_advances() {
    let reservoir = SamplingRule {
        reservoir_per_second: Some(2),
        ..rule(RuleMatch::default(), 0.0)
    };
    let sampler = with_rules(0.0, vec![reservoir]);
    let now = || sampler.decide(&root(), Instant::now()).sampled;
    assert_eq!([now(), now(), now()], [true, true, false]);
    tokio::time::advance(Duration::from_millis(499)).await;
    assert!(!now(), "half a token is not a token");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(now(), "one token after half a second at 2/s");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        [now(), now(), now()],
        [true, true, false],
        "the burst is capped at one second's worth"
    );
}

#[test]
fn a_reload_keeps_what_a_reservoir_has_spent_when_the_rule_is_the_same() {
    let reservoir = |matches: RuleMatch| SamplingRule {
        reservoir_per_second: Some(1),
        ..rule(matches, 0.0)
    };
    let before = with_rules(0.0, vec![reservoir(path("/a")), reservoir(path("/b"))]);
    let t0 = Instant::now();
    let on = |p: &'static str| Input { path: p, ..root() };
    assert_eq!(before.decide(&on("/a"), t0), sampled(Reason::Rule, None));
    assert_eq!(before.decide(&on("/b"), t0), sampled(Reason::Rule, None));

    // "/a" is unchanged (moved to second place); "/b" now matches another path.
    let rules = vec![reservoir(path("/c")), reservoir(path("/a"))];
    let after = Sampler::reloaded(
        &Sampling {
            rules,
            ..sampling(0.0)
        },
        &before,
    );
    assert_eq!(after.decide(&on("/a"), t0), not_sampled(Reason::Rule));
    assert_eq!(after.decide(&on("/c"), t0), sampled(Reason::Rule, None));
}

/// The reason a root request to `authority` is decided with.
fn by_authority(sampler: &Sampler, authority: Option<&str>) -> Reason {
    decide(
        sampler,
        Input {
            authority,
            ..root()
        },
    )
    .reason
}
