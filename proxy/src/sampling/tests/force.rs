//! The force-signal budget: trusted force signals sample within it, and over it
//! the request is decided as if no signal had come, counted as over budget.

use std::time::Duration;

use meshtrace_config::{ForceSignalBudget, Sampling};
use tokio::time::Instant;

use super::*;

fn with_force_budget(default_rate: f64, traces_per_second: f64) -> Sampling {
    Sampling {
        force_signal_budget: ForceSignalBudget { traces_per_second },
        ..sampling(default_rate)
    }
}

/// A force signal on a root request that rate 0 drops.
fn forced_root() -> Input<'static> {
    Input {
        force_signal: true,
        ..root()
    }
}

/// How many of `n` decisions at `now` had each reason: (forced, over budget).
fn spend(sampler: &Sampler, input: &Input<'_>, n: usize, now: Instant) -> (usize, usize) {
    let reasons: Vec<Reason> = (0..n).map(|_| sampler.decide(input, now).reason).collect();
    let count = |r: Reason| reasons.iter().filter(|&&x| x == r).count();
    (count(Reason::ForceSignal), count(Reason::BudgetExceeded))
}

#[tokio::test(start_paused = true)]
async fn force_signals_force_only_their_budget_a_second() {
    let sampler = Sampler::new(&with_force_budget(0.0, 10.0));
    assert_eq!(
        spend(&sampler, &forced_root(), 25, Instant::now()),
        (10, 15)
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        spend(&sampler, &forced_root(), 25, Instant::now()),
        (10, 15),
        "a second refills one second's worth"
    );
}

#[test]
fn a_force_signal_over_budget_gets_the_normal_decision() {
    let sampler = Sampler::new(&with_force_budget(0.0, 1.0));
    let now = Instant::now();
    assert_eq!(
        sampler.decide(&forced_root(), now).reason,
        Reason::ForceSignal
    );
    assert_eq!(
        sampler.decide(&forced_root(), now),
        not_sampled(Reason::BudgetExceeded),
        "rate 0 decides, labelled over budget"
    );
    let sampled_parent = Input {
        parent: Some(true),
        ..forced_root()
    };
    assert_eq!(
        sampler.decide(&sampled_parent, now),
        sampled(Reason::BudgetExceeded, None),
        "the parent decides"
    );
}

#[test]
fn a_force_signal_over_budget_still_gets_a_forced_tenant() {
    let sampler = Sampler::new(&Sampling {
        forced_tenants: vec![forced("acme", 1.0, 10.0)],
        ..with_force_budget(0.0, 1.0)
    });
    let now = Instant::now();
    let input = Input {
        tenant: Some("acme"),
        ..forced_root()
    };
    assert_eq!(sampler.decide(&input, now).reason, Reason::ForceSignal);
    assert_eq!(sampler.decide(&input, now).reason, Reason::ForcedTenant);
}

#[test]
fn untrusted_force_signals_spend_no_budget() {
    let sampler = Sampler::new(&with_force_budget(0.0, 1.0));
    let now = Instant::now();
    let untrusted = Input {
        trusted: false,
        ..forced_root()
    };
    assert_eq!(spend(&sampler, &untrusted, 5, now), (0, 0));
    assert_eq!(
        sampler.decide(&forced_root(), now).reason,
        Reason::ForceSignal
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_what_the_force_signal_budget_spent() {
    let first = Sampler::new(&with_force_budget(0.0, 5.0));
    assert_eq!(spend(&first, &forced_root(), 5, Instant::now()), (5, 0));
    let reloaded = Sampler::reloaded(&with_force_budget(0.0, 5.0), &first);
    assert_eq!(
        spend(&reloaded, &forced_root(), 5, Instant::now()),
        (0, 5),
        "a reload grants no fresh burst"
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(spend(&reloaded, &forced_root(), 5, Instant::now()), (1, 4));
}
