//! The forced workload: what an incident override of a service sets.

use meshtrace_config::{ForcedWorkload, Sampling};
use tokio::time::Instant;

use super::*;

fn with_workload(default_rate: f64, rate: f64, traces_per_second: f64) -> Sampler {
    Sampler::new(&Sampling {
        forced_workload: Some(ForcedWorkload {
            rate,
            traces_per_second,
        }),
        ..sampling(default_rate)
    })
}

#[test]
fn forced_workload_samples_a_request_whose_parent_said_not_sampled() {
    let sampler = with_workload(0.0, 1.0, 10.0);
    let input = Input {
        parent: Some(false),
        ..root()
    };
    assert_eq!(
        decide(&sampler, input),
        sampled(Reason::ForcedWorkload, Some(1.0))
    );
}

#[test]
fn forced_workload_spends_no_budget_on_a_sampled_parent() {
    let sampler = with_workload(0.0, 1.0, 1.0);
    let now = Instant::now();
    let sampled_parent = Input {
        parent: Some(true),
        ..root()
    };
    for _ in 0..5 {
        assert_eq!(sampler.decide(&sampled_parent, now).reason, Reason::Parent);
    }
    let unsampled = Input {
        parent: Some(false),
        ..root()
    };
    assert_eq!(
        sampler.decide(&unsampled, now).reason,
        Reason::ForcedWorkload
    );
}

#[test]
fn forced_workload_over_budget_falls_back_to_the_parent_and_says_so() {
    let sampler = with_workload(0.0, 1.0, 1.0);
    let now = Instant::now();
    let input = Input {
        parent: Some(false),
        ..root()
    };
    assert!(
        sampler.decide(&input, now).sampled,
        "the first is within budget"
    );
    let over = sampler.decide(&input, now);
    assert_eq!(
        over,
        Decision {
            sampled: false,
            reason: Reason::BudgetExceeded,
            threshold: None
        }
    );
}

#[test]
fn forced_tenant_over_budget_still_gets_the_forced_workload() {
    let sampler = Sampler::new(&Sampling {
        forced_tenants: vec![forced("acme", 1.0, 1.0)],
        forced_workload: Some(ForcedWorkload {
            rate: 1.0,
            traces_per_second: 10.0,
        }),
        ..sampling(0.0)
    });
    let now = Instant::now();
    let input = Input {
        tenant: Some("acme"),
        parent: Some(false),
        ..root()
    };
    assert_eq!(sampler.decide(&input, now).reason, Reason::ForcedTenant);
    assert_eq!(sampler.decide(&input, now).reason, Reason::ForcedWorkload);
}

#[test]
fn a_reload_keeps_what_the_forced_workload_budget_spent() {
    let first = with_workload(0.0, 1.0, 1.0);
    let now = Instant::now();
    let input = Input {
        parent: Some(false),
        ..root()
    };
    assert!(first.decide(&input, now).sampled);
    let reloaded = Sampler::reloaded(
        &Sampling {
            forced_workload: Some(ForcedWorkload {
                rate: 1.0,
                traces_per_second: 1.0,
            }),
            ..sampling(0.0)
        },
        &first,
    );
    assert_eq!(
        reloaded.decide(&input, now).reason,
        Reason::BudgetExceeded,
        "a reload grants no fresh burst"
    );
}
