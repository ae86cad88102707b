//! Automatic incident boosts through `Routes::observe`, `Routes::tick` and
//! `Sampler::decide`: triggers, the boost rate and budget, decay, reloads.

use std::time::Duration;

use meshtrace_config::{Boost, LatencyTrigger, RuleMatch, Sampling, SamplingRule};
use tokio::time::Instant;

use super::*;

const PERIOD: Duration = Duration::from_secs(5);
const CHECKOUT: RouteId = 0;
const MS: Duration = Duration::from_millis(1);

fn boost() -> Boost {
    Boost {
        error_ratio: Some(0.05),
        latency: None,
        window: meshtrace_config::Duration::from_secs(30),
        min_requests: 100,
        rate: 0.5,
        traces_per_second: 1e6,
        duration: meshtrace_config::Duration::from_secs(60),
        decay: meshtrace_config::Duration::from_secs(30),
    }
}

fn config(boost: Option<Boost>) -> Sampling {
    Sampling {
        rules: vec![SamplingRule {
            name: Some("checkout".into()),
            matches: RuleMatch {
                path_prefix: Some("/checkout".into()),
                ..RuleMatch::default()
            },
            rate: Some(0.01),
            boost,
            ..SamplingRule::default()
        }],
        ..sampling(0.0)
    }
}

fn checkout(randomness: u64) -> Input<'static> {
    Input {
        path: "/checkout/pay",
        trace_id: trace_id(randomness),
        ..root()
    }
}

/// `n` finished requests of the route, `errors` of them failed.
fn observe(routes: &Routes, n: u32, errors: u32, elapsed: Duration) {
    for i in 0..n {
        routes.observe(CHECKOUT, i < errors, elapsed);
    }
}

/// A sampler whose checkout route was boosted at `start + PERIOD`.
fn boosted(config: &Sampling, start: Instant) -> Sampler {
    let sampler = Sampler::new(config);
    observe(sampler.routes(), 100, 20, MS);
    let events = sampler.routes().tick(start + PERIOD);
    assert!(
        matches!(events[..], [RouteEvent::BoostStarted { .. }]),
        "{events:?}"
    );
    sampler
}

#[tokio::test(start_paused = true)]
async fn the_error_ratio_starts_a_boost_at_the_first_tick_the_window_holds_it() {
    let start = Instant::now();
    let sampler = Sampler::new(&config(Some(boost())));
    let routes = sampler.routes();
    // Half of 60 failed, but 60 < min_requests: nothing.
    observe(routes, 60, 30, MS);
    assert_eq!(routes.tick(start + PERIOD), []);
    assert!(!routes.boost_active(CHECKOUT));
    observe(routes, 60, 0, MS);
    let events = routes.tick(start + PERIOD * 2);
    let started = RouteEvent::BoostStarted {
        route: "checkout".into(),
        trigger: "error ratio 0.25 > 0.05 over 30s (120 requests)".into(),
        rate: 0.5,
        duration: Duration::from_secs(60),
    };
    assert_eq!(events, [started]);
    assert!(routes.boost_active(CHECKOUT) && routes.any_boost());
    let report = routes.report(start + PERIOD * 3);
    let active = report["checkout"].boost.clone().unwrap_or_default();
    assert_eq!(
        (active.started_seconds_ago, active.ends_in_seconds),
        (5, 85)
    );
    assert_eq!(active.rate, 0.5);
}

#[tokio::test(start_paused = true)]
async fn boosted_requests_are_decided_at_the_boost_rate_even_against_the_parent() {
    let start = Instant::now();
    let sampler = boosted(&config(Some(boost())), start);
    let at = start + PERIOD * 2;
    let mut kept = 0;
    let ids = (1..=10_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8);
    for (i, randomness) in ids.enumerate() {
        let parent = [None, Some(false)][i % 2];
        let decision = sampler.decide(
            &Input {
                parent,
                ..checkout(randomness)
            },
            at,
        );
        assert_eq!(decision.reason, Reason::Boost);
        if decision.sampled {
            assert_eq!(decision.threshold, Threshold::for_rate(0.5));
            kept += 1;
        }
    }
    assert!((4_700..=5_300).contains(&kept), "{kept}");
    let parent_sampled = Input {
        parent: Some(true),
        ..checkout(1)
    };
    assert_eq!(sampler.decide(&parent_sampled, at).reason, Reason::Parent);
    // Another route is not boosted; a probe is still not traced.
    assert_eq!(sampler.decide(&root(), at).reason, Reason::Default);
    let probe = Input {
        probe: true,
        ..checkout(1)
    };
    assert_eq!(sampler.decide(&probe, at), not_sampled(Reason::Probe));
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_a_flood_of_boosted_requests() {
    let start = Instant::now();
    let config = config(Some(Boost {
        rate: 1.0,
        traces_per_second: 100.0,
        ..boost()
    }));
    let sampler = boosted(&config, start);
    let at = start + PERIOD * 2;
    let reasons: Vec<Reason> = (0..10_000u64)
        .map(|i| {
            sampler
                .decide(&checkout(i << 20), at + MS * (i / 100) as u32)
                .reason
        })
        .collect();
    let boosted = reasons.iter().filter(|r| **r == Reason::Boost).count();
    // One second's burst (100) and 100 a second over the 0.1 s of the flood.
    assert!((100..=111).contains(&boosted), "{boosted}");
    let over = reasons
        .iter()
        .filter(|r| **r == Reason::BudgetExceeded)
        .count();
    assert_eq!(boosted + over, 10_000);
}

#[tokio::test(start_paused = true)]
async fn a_boost_decays_geometrically_then_ends() {
    let start = Instant::now();
    let sampler = boosted(&config(Some(boost())), start);
    let routes = sampler.routes();
    let tick = |periods: u32| routes.tick(start + PERIOD * periods);
    // Started at period 1; 60 s at 0.5, until period 13.
    for p in 2..13 {
        assert_eq!(tick(p), [], "period {p}");
    }
    let decaying = RouteEvent::BoostDecaying {
        route: "checkout".into(),
    };
    assert_eq!(tick(13), [decaying]);
    assert_eq!(tick(14), []);
    // 5 s into 30 s of decay from 0.5 to 0.01: 0.5 · 0.02^(1/6).
    let rate = routes.report(start + PERIOD * 14)["checkout"]
        .boost
        .as_ref()
        .map_or(0.0, |b| b.rate);
    assert!(
        (rate - 0.5 * 0.02f64.powf(1.0 / 6.0)).abs() < 1e-9,
        "{rate}"
    );
    let at = start + PERIOD * 14;
    let decision = sampler.decide(&checkout(u64::MAX >> 8), at);
    assert_eq!(decision.threshold, Threshold::for_rate(rate));
    for p in 15..19 {
        assert_eq!(tick(p), [], "period {p}");
    }
    let ended = RouteEvent::BoostEnded {
        route: "checkout".into(),
        why: "decayed",
    };
    assert_eq!(tick(19), [ended]);
    assert!(!routes.any_boost() && routes.report(at)["checkout"].boost.is_none());
    assert_eq!(sampler.decide(&checkout(1), at).reason, Reason::Rule);
}

#[tokio::test(start_paused = true)]
async fn a_latency_percentile_above_its_threshold_starts_a_boost() {
    let start = Instant::now();
    let latency = Boost {
        error_ratio: None,
        latency: Some(LatencyTrigger {
            percentile: 99.0,
            above: meshtrace_config::Duration::from_millis(500),
        }),
        ..boost()
    };
    let sampler = Sampler::new(&config(Some(latency)));
    let routes = sampler.routes();
    observe(routes, 118, 0, MS * 10);
    observe(routes, 2, 0, MS * 812);
    // p99 of 120 is the 119th: 812 ms, reported as its bucket's middle.
    let events = routes.tick(start + PERIOD);
    let [RouteEvent::BoostStarted { trigger, .. }] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(trigger, "p99 latency 819ms > 500ms over 30s (120 requests)");
}

#[tokio::test(start_paused = true)]
async fn a_window_below_both_triggers_starts_nothing() {
    let start = Instant::now();
    let latency = Boost {
        error_ratio: Some(0.5),
        latency: Some(LatencyTrigger {
            percentile: 99.0,
            above: meshtrace_config::Duration::from_millis(500),
        }),
        ..boost()
    };
    let sampler = Sampler::new(&config(Some(latency)));
    observe(sampler.routes(), 500, 100, MS * 400);
    assert_eq!(sampler.routes().tick(start + PERIOD), []);
}

#[tokio::test(start_paused = true)]
async fn boosts_off_or_removed_end_a_boost_at_the_next_tick() {
    let start = Instant::now();
    let on = config(Some(boost()));
    let sampler = boosted(&on, start);
    let mut off = on.clone();
    off.adaptive.boosts = false;
    let disabled = Sampler::reloaded(&off, &sampler);
    assert!(disabled.routes().boost_active(CHECKOUT));
    let ended = |why| RouteEvent::BoostEnded {
        route: "checkout".into(),
        why,
    };
    assert_eq!(
        disabled.routes().tick(start + PERIOD * 2),
        [ended("disabled")]
    );
    // Boosts off: the window still fills, but nothing starts.
    observe(disabled.routes(), 200, 200, MS);
    assert_eq!(disabled.routes().tick(start + PERIOD * 3), []);
    let removed = Sampler::reloaded(&config(None), &sampler);
    assert_eq!(
        removed.routes().tick(start + PERIOD * 2),
        [ended("removed")]
    );
    assert!(!removed.routes().any_boost());
}

#[tokio::test(start_paused = true)]
async fn a_reload_carries_the_boost_and_the_window() {
    let start = Instant::now();
    let on = config(Some(boost()));
    let sampler = boosted(&on, start);
    let reloaded = Sampler::reloaded(&on, &sampler);
    let routes = reloaded.routes();
    assert!(routes.any_boost());
    let at = start + PERIOD * 2;
    assert_eq!(
        reloaded.decide(&checkout(u64::MAX >> 8), at).reason,
        Reason::Boost
    );
    let report = routes.report(at)["checkout"]
        .boost
        .clone()
        .unwrap_or_default();
    assert!(
        report.trigger.starts_with("error ratio 0.20 > 0.05"),
        "{report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_the_window_and_what_old_requests_still_report() {
    let start = Instant::now();
    let on = config(Some(boost()));
    let sampler = Sampler::new(&on);
    observe(sampler.routes(), 80, 20, MS);
    let reloaded = Sampler::reloaded(&on, &sampler);
    // Requests that decided on the old sampler finish after the swap.
    observe(sampler.routes(), 10, 0, MS);
    observe(reloaded.routes(), 10, 0, MS);
    let events = reloaded.routes().tick(start + PERIOD);
    let [RouteEvent::BoostStarted { trigger, .. }] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(trigger, "error ratio 0.20 > 0.05 over 30s (100 requests)");
    // A window of another shape starts empty.
    let longer = config(Some(Boost {
        window: meshtrace_config::Duration::from_secs(60),
        ..boost()
    }));
    let other = Sampler::reloaded(&longer, &sampler);
    observe(other.routes(), 10, 0, MS);
    assert_eq!(other.routes().tick(start + PERIOD), []);
}
