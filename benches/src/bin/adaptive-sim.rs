//! Adaptive sampling (issue 17): the figures of the traffic simulation the unit
//! tests assert on (`meshtrace_proxy::sampling::simulation`), over many seeds.
//!
//! ```text
//! cargo run --release -p meshtrace-benches --bin adaptive-sim   # --seeds 20
//! ```
//!
//! 1. **Steps**: one sidecar, the default route at `target_traces_per_second:
//!    10`, 5 s periods, root requests stepping 10 → 10 000 → 10 req/s (20, 20
//!    and 30 periods), spread evenly over each period with random trace ids,
//!    each decided by `Sampler::decide`, a tick at the end of every period.
//! 2. **Fleet**: two sidecars with 6 000 and 4 000 req/s of the route, given the
//!    control plane's shares (6 and 4 a second) with `Routes::set_shares`.
//!
//! Per phase: the period from which on the probability stays within 10 % of
//! `target / rate`, the steady-state error of the sampled roots from then on,
//! and the most sampled roots one period recorded (× one period's target). The
//! simulation reads no clock: every instant is a start plus an offset, so the
//! figures are the same on a paused clock (the unit tests) and here.

#![forbid(unsafe_code)]

use clap::Parser;
use meshtrace_config::{Sampling, SamplingRule, DEFAULT_MIN_RATE};
use meshtrace_proxy::propagation::TraceId;
use meshtrace_proxy::sampling::simulation::{self, Phase, PhaseSummary};
use meshtrace_proxy::sampling::{Input, Sampler};
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// How many seeds (random trace-id sequences) to run each scenario with.
    #[arg(long, default_value_t = 20)]
    seeds: u64,
}

const TARGET: f64 = 10.0;

fn main() {
    let args = Args::parse();
    let config = Sampling {
        default: Some(SamplingRule {
            target_traces_per_second: Some(TARGET),
            ..SamplingRule::default()
        }),
        ..Sampling::default()
    };
    let period = config.adaptive.period.get();
    let phases = [phase(10.0, 20), phase(10_000.0, 20), phase(10.0, 30)];
    let limits = (DEFAULT_MIN_RATE, 1.0);
    println!(
        "steps: target {TARGET}/s, period {period:?}, {} seeds",
        args.seeds
    );
    let mut all: Vec<Vec<PhaseSummary>> = Vec::new();
    for seed in 0..args.seeds {
        let sampler = Sampler::new(&config);
        let records = simulation::run(&sampler, &input(), &phases, Instant::now(), seed);
        all.push(simulation::summarize(
            &records, &phases, TARGET, limits, period,
        ));
    }
    for (i, phase) in phases.iter().enumerate() {
        let of = |f: fn(&PhaseSummary) -> f64| all.iter().map(|s| f(&s[i])).collect::<Vec<_>>();
        let converged = of(|s| s.converged_in.map_or(f64::NAN, f64::from));
        let errors = of(|s| s.steady_error * 100.0);
        let ratios = of(|s| s.max_ratio);
        println!(
            "  {:>6} req/s: converged in period {} (max over seeds); steady-state error {:+.1} % mean, [{:+.1}, {:+.1}] %; max period {:.2} x target",
            phase.requests_per_second,
            max(&converged),
            mean(&errors),
            min(&errors),
            max(&errors),
            max(&ratios),
        );
    }
    fleet(&config, args.seeds);
}

/// Two sidecars sharing the route by the control plane's shares.
fn fleet(config: &Sampling, seeds: u64) {
    let period = config.adaptive.period.get();
    let per_period = TARGET * period.as_secs_f64();
    let (mut errors, mut worst) = (Vec::new(), 0f64);
    for seed in 0..seeds {
        let mut sums = [0u64; 20];
        for (rate, share) in [(6_000.0, 6.0), (4_000.0, 4.0)] {
            let sampler = Sampler::new(config);
            let shares = [("default".to_owned(), share)].into_iter().collect();
            sampler.routes().set_shares(&shares);
            let records = simulation::run(
                &sampler,
                &input(),
                &[phase(rate, 20)],
                Instant::now(),
                seed * 2 + u64::from(share == 4.0),
            );
            for (sum, r) in sums.iter_mut().zip(&records) {
                *sum += r.sampled;
            }
        }
        let steady: u64 = sums[1..].iter().sum();
        errors.push((steady as f64 / (per_period * 19.0) - 1.0) * 100.0);
        let most = sums.iter().copied().max().unwrap_or(0);
        worst = worst.max(most as f64 / per_period);
    }
    println!(
        "fleet: 6 000 + 4 000 req/s, shares 6 + 4 of {TARGET}/s: steady-state error (periods 2-20) {:+.1} % mean, [{:+.1}, {:+.1}] %; max period {:.2} x target",
        mean(&errors),
        min(&errors),
        max(&errors),
        worst,
    );
}

fn phase(requests_per_second: f64, periods: u32) -> Phase {
    Phase {
        requests_per_second,
        periods,
    }
}

fn input() -> Input<'static> {
    Input {
        trusted: true,
        force_signal: false,
        tenant: None,
        parent: None,
        trace_id: TraceId::new(1).unwrap_or_else(|| unreachable!("1 is not zero")),
        authority: Some("checkout.default.svc.cluster.local:8080"),
        method: "POST",
        path: "/checkout",
        grpc: None,
        probe: false,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}
