use std::time::Duration;

use meshtrace_config::ForcedTenant;
use tokio::time::Instant;

use super::*;

#[test]
fn forced_tenant_overrides_parent_not_sampled() {
    let sampler = with_tenant(0.0, forced("acme", 1.0, 10.0));
    let input = Input {
        tenant: Some("acme"),
        parent: Some(false),
        ..root()
    };
    let decision = decide(&sampler, input);
    assert_eq!(decision, sampled(Reason::ForcedTenant, Some(1.0)));
}

#[test]
fn forced_tenant_keeps_parent_not_sampled_without_override_parent() {
    let tenant = ForcedTenant {
        override_parent: false,
        ..forced("acme", 1.0, 10.0)
    };
    let sampler = with_tenant(0.0, tenant);
    let input = Input {
        tenant: Some("acme"),
        parent: Some(false),
        ..root()
    };
    assert_eq!(decide(&sampler, input), not_sampled(Reason::Parent));
}

#[test]
fn forced_tenant_spends_no_budget_when_the_parent_decides() {
    let tenant = ForcedTenant {
        override_parent: false,
        ..forced("acme", 1.0, 1.0)
    };
    let sampler = with_tenant(0.0, tenant);
    let now = Instant::now();
    for parent in [Some(true), Some(false)] {
        let input = Input {
            tenant: Some("acme"),
            parent,
            ..root()
        };
        assert_eq!(sampler.decide(&input, now).reason, Reason::Parent);
    }
    let root = Input {
        tenant: Some("acme"),
        ..root()
    };
    assert_eq!(sampler.decide(&root, now).reason, Reason::ForcedTenant);
}

#[test]
fn forced_tenant_rate_decides_consistently() {
    let sampler = with_tenant(0.0, forced("acme", 0.5, 100.0));
    let kept = Input {
        tenant: Some("acme"),
        ..root()
    };
    let dropped = Input {
        trace_id: trace_id(DROPPED_AT_HALF),
        ..kept
    };
    let half = Some(0.5);
    assert_eq!(decide(&sampler, kept), sampled(Reason::ForcedTenant, half));
    assert_eq!(decide(&sampler, dropped), not_sampled(Reason::ForcedTenant));
}

#[test]
fn other_tenants_get_the_normal_decision() {
    let sampler = with_tenant(0.0, forced("acme", 1.0, 10.0));
    let input = Input {
        tenant: Some("acme-2"),
        ..root()
    };
    assert_eq!(decide(&sampler, input), not_sampled(Reason::Default));
}

#[test]
fn forced_tenant_budget_is_exhausted_then_refilled_over_time() {
    let sampler = with_tenant(0.0, forced("acme", 1.0, 2.0));
    let t0 = Instant::now();
    let input = Input {
        tenant: Some("acme"),
        ..root()
    };
    let reasons = |at: Duration, n: usize| -> Vec<Reason> {
        (0..n)
            .map(|_| sampler.decide(&input, t0 + at).reason)
            .collect()
    };
    use Reason::{BudgetExceeded as Over, ForcedTenant as Forced};
    assert_eq!(reasons(Duration::ZERO, 3), [Forced, Forced, Over]);
    assert_eq!(reasons(Duration::from_millis(499), 1), [Over]);
    assert_eq!(reasons(Duration::from_millis(500), 2), [Forced, Over]);
    assert_eq!(reasons(Duration::from_secs(60), 3), [Forced, Forced, Over]);
}

#[test]
fn over_budget_the_parent_or_rules_decide_with_reason_budget_exceeded() {
    let sampler = Sampler::new(&Sampling {
        forced_tenants: vec![forced("acme", 1.0, 1.0)],
        rules: vec![rule(RuleMatch::default(), 0.5)],
        ..sampling(0.0)
    });
    let now = Instant::now();
    let input = Input {
        tenant: Some("acme"),
        ..root()
    };
    assert_eq!(sampler.decide(&input, now).reason, Reason::ForcedTenant);
    let by_rule = sampler.decide(&input, now);
    assert_eq!(by_rule, sampled(Reason::BudgetExceeded, Some(0.5)));
    let parent_no = Input {
        parent: Some(false),
        ..input
    };
    let by_parent = sampler.decide(&parent_no, now);
    assert_eq!(by_parent, not_sampled(Reason::BudgetExceeded));
}

#[test]
fn a_reload_keeps_what_a_budget_has_spent() {
    use Reason::{BudgetExceeded as Over, ForcedTenant as Forced};
    let before = Sampler::new(&Sampling {
        forced_tenants: vec![forced("acme", 1.0, 2.0), forced("gone", 1.0, 1.0)],
        ..sampling(0.0)
    });
    let t0 = Instant::now();
    let reason = |sampler: &Sampler, tenant: &str, at: Duration| {
        let input = Input {
            tenant: Some(tenant),
            ..root()
        };
        sampler.decide(&input, t0 + at).reason
    };
    assert_eq!(reason(&before, "acme", Duration::ZERO), Forced);
    assert_eq!(reason(&before, "acme", Duration::ZERO), Forced);
    assert_eq!(reason(&before, "gone", Duration::ZERO), Forced);

    // The same tenant at a new rate, and a new tenant.
    let after = Sampler::reloaded(
        &Sampling {
            forced_tenants: vec![forced("acme", 1.0, 4.0), forced("new", 1.0, 1.0)],
            ..sampling(0.0)
        },
        &before,
    );
    assert_eq!(reason(&after, "acme", Duration::ZERO), Over);
    assert_eq!(reason(&after, "new", Duration::ZERO), Forced);
    // "acme" would have been full again 1 s after t0 at its old rate. That
    // second of debt is carried, so at 4/s it is empty now and gets its first
    // token back after 250 ms; it holds four again once the second is over.
    let reasons = |at: Duration, n: usize| -> Vec<Reason> {
        (0..n).map(|_| reason(&after, "acme", at)).collect()
    };
    assert_eq!(reasons(Duration::from_millis(249), 1), [Over]);
    assert_eq!(reasons(Duration::from_millis(250), 2), [Forced, Over]);
    let full = reasons(Duration::from_secs(3), 5);
    assert_eq!(full, [Forced, Forced, Forced, Forced, Over]);
}
