//! Adaptive routes through `Sampler::decide`: the simulation (a route
//! stepping 10 → 10 000 → 10 req/s), a fleet of two sidecars sharing a target,
//! the threshold written, and reloads.

use std::collections::BTreeMap;
use std::time::Duration;

use meshtrace_config::{Sampling, SamplingRule};
use tokio::time::Instant;

use super::*;
use crate::sampling::simulation::{self, Phase};

const TARGET: f64 = 10.0;
const PERIOD: Duration = Duration::from_secs(5);
const LIMITS: (f64, f64) = (meshtrace_config::DEFAULT_MIN_RATE, 1.0);

fn adaptive(target: f64) -> Sampling {
    Sampling {
        default: Some(SamplingRule {
            target_traces_per_second: Some(target),
            ..SamplingRule::default()
        }),
        ..Sampling::default()
    }
}

fn phase(requests_per_second: f64, periods: u32) -> Phase {
    Phase {
        requests_per_second,
        periods,
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_up_and_back_converges_within_the_documented_periods() {
    let sampler = Sampler::new(&adaptive(TARGET));
    let phases = [phase(10.0, 10), phase(10_000.0, 15), phase(10.0, 20)];
    let records = simulation::run(&sampler, &root(), &phases, Instant::now(), 17);
    let summary = simulation::summarize(&records, &phases, TARGET, LIMITS, PERIOD);
    // The module docs of `adaptive`: 1 period from the start (p starts at the
    // ceiling, which 10 req/s needs), 2 after the step up, 1 + ⌈log₂ 1000⌉ = 11
    // after the step down.
    let documented = [1, 2, 11];
    for (s, most) in summary.iter().zip(documented) {
        assert!(s.converged_in.is_some_and(|n| n <= most), "{s:?}");
        assert!(s.steady_error.abs() <= 0.10, "{s:?}");
        assert!(s.max_ratio <= 1.2, "{s:?}");
    }
    tokio::time::advance(PERIOD * 45).await;
}

#[tokio::test(start_paused = true)]
async fn two_sidecars_with_their_shares_record_the_fleet_target_together() {
    let start = Instant::now();
    // 6 000 and 4 000 req/s of one route: shares 6 and 4 of a target of 10.
    let halves = [(6_000.0, 6.0, 1), (4_000.0, 4.0, 2)];
    let mut fleet = vec![0u64; 12];
    for (rate, share, seed) in halves {
        let sampler = Sampler::new(&adaptive(TARGET));
        sampler
            .routes()
            .set_shares(&BTreeMap::from([("default".to_owned(), share)]));
        let records = simulation::run(&sampler, &root(), &[phase(rate, 12)], start, seed);
        for (sum, r) in fleet.iter_mut().zip(&records) {
            *sum += r.sampled;
        }
        let p = sampler.routes().threshold(DEFAULT_ROUTE).map(|t| t.rate());
        assert!(p.is_some_and(|p| (p - 0.001).abs() < 1e-9), "{p:?}");
    }
    let per_period = TARGET * PERIOD.as_secs_f64();
    assert!(
        fleet.iter().all(|&n| n as f64 <= 1.2 * per_period),
        "{fleet:?}"
    );
    // From the 2nd period on, each records its share.
    let steady: u64 = fleet[1..].iter().sum();
    let error = steady as f64 / (per_period * 11.0) - 1.0;
    assert!(error.abs() <= 0.10, "{error} {fleet:?}");
}

/// The default route's id in a config without rules.
const DEFAULT_ROUTE: RouteId = 0;

#[tokio::test(start_paused = true)]
async fn an_empty_share_map_means_the_whole_target_again() {
    let sampler = Sampler::new(&adaptive(TARGET));
    let routes = sampler.routes();
    routes.set_shares(&BTreeMap::from([("default".to_owned(), 2.0)]));
    let records = simulation::run(&sampler, &root(), &[phase(1_000.0, 2)], Instant::now(), 3);
    assert!((records[1].rate - 0.002).abs() < 1e-9, "{records:?}");
    routes.set_shares(&BTreeMap::new());
    let start = Instant::now() + PERIOD * 2;
    let records = simulation::run(&sampler, &root(), &[phase(1_000.0, 3)], start, 4);
    // p may at most double per period: 0.002 → 0.004 → 0.008 → 0.01.
    let rates: Vec<f64> = records.iter().map(|r| r.rate).collect();
    assert!((rates[2] - 0.008).abs() < 1e-9, "{rates:?}");
    let now = routes.threshold(DEFAULT_ROUTE).map(|t| t.rate());
    assert!(now.is_some_and(|p| (p - 0.01).abs() < 1e-9), "{now:?}");
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_decision_writes_the_live_threshold() {
    let sampler = Sampler::new(&adaptive(TARGET));
    simulation::run(&sampler, &root(), &[phase(1_000.0, 1)], Instant::now(), 5);
    let live = sampler.routes().threshold(DEFAULT_ROUTE);
    assert_eq!(live, Threshold::for_rate(0.01));
    // Two periods on: the cap, drained by the first period at the ceiling, is
    // full again.
    let later = Instant::now() + PERIOD * 3;
    let mut seen = 0;
    for randomness in [u64::MAX >> 8, (1 << 56) - (1 << 50), 0x00ff_ffff_ffff_ffff] {
        let input = Input {
            trace_id: trace_id(randomness),
            ..root()
        };
        let decision = sampler.decide(&input, later);
        assert_eq!(decision.reason, Reason::Default);
        if decision.sampled {
            assert_eq!(decision.threshold, live);
            seen += 1;
        }
    }
    assert!(seen > 0);
    let dropped = sampler.decide(
        &Input {
            trace_id: trace_id(1),
            ..root()
        },
        later,
    );
    assert_eq!(dropped, not_sampled(Reason::Default));
}

#[tokio::test(start_paused = true)]
async fn a_fixed_route_keeps_its_rate_through_ticks() {
    let sampler = Sampler::new(&sampling(0.5));
    simulation::run(&sampler, &root(), &[phase(1_000.0, 3)], Instant::now(), 6);
    assert_eq!(
        sampler.routes().threshold(DEFAULT_ROUTE),
        Threshold::for_rate(0.5)
    );
    let report = sampler.routes().report(Instant::now());
    let default = &report["default"];
    assert_eq!(
        (default.roots, default.target_traces_per_second),
        (15_000, None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_the_adaptive_state_counts_and_share() {
    let config = adaptive(TARGET);
    let sampler = Sampler::new(&config);
    let routes = sampler.routes();
    routes.set_shares(&BTreeMap::from([("default".to_owned(), 5.0)]));
    let start = Instant::now();
    simulation::run(&sampler, &root(), &[phase(1_000.0, 2)], start, 7);
    let reloaded = Sampler::reloaded(&config, &sampler);
    let next = reloaded.routes();
    assert_eq!(next.threshold(DEFAULT_ROUTE), Threshold::for_rate(0.005));
    assert_eq!(next.report(start)["default"].roots, 10_000);
    // The share and estimate carried: another period of the same traffic
    // changes nothing, where a fresh route would start again at the ceiling.
    let later = start + PERIOD * 2;
    let records = simulation::run(&reloaded, &root(), &[phase(1_000.0, 1)], later, 8);
    assert!((records[0].rate - 0.005).abs() < 1e-9, "{records:?}");
    assert_eq!(next.threshold(DEFAULT_ROUTE), Threshold::for_rate(0.005));
    // A reload with a new ceiling clamps the carried probability.
    let lower = Sampling {
        default: Some(SamplingRule {
            max_rate: Some(0.001),
            ..adaptive(TARGET).default.unwrap_or_default()
        }),
        ..Sampling::default()
    };
    let clamped = Routes::reloaded(&lower, next, later);
    assert_eq!(clamped.threshold(DEFAULT_ROUTE), Threshold::for_rate(0.001));
}

#[tokio::test(start_paused = true)]
async fn a_probe_is_not_traced_before_everything_and_not_counted() {
    let sampler = Sampler::new(&adaptive(TARGET));
    let probe = Input {
        probe: true,
        force_signal: true,
        parent: Some(true),
        ..root()
    };
    assert_eq!(
        sampler.decide(&probe, Instant::now()),
        not_sampled(Reason::Probe)
    );
    assert_eq!(sampler.routes().report(Instant::now())["default"].roots, 0);
    sampler.decide(&root(), Instant::now());
    assert_eq!(sampler.routes().report(Instant::now())["default"].roots, 1);
}
