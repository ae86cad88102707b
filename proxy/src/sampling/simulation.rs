//! A traffic simulation of adaptive routes: root requests at a stepped rate,
//! spread evenly over each period with random trace ids, each decided by
//! [`Sampler::decide`], and a [`Routes::tick`](super::Routes::tick) at the end
//! of every period. It reads no clock: every instant is `start` plus an offset,
//! so it runs the same on tokio's paused clock (the unit tests) and in the
//! benchmark binary that prints the figures (`benches/src/bin/adaptive-sim.rs`).

use std::time::Duration;

use tokio::time::Instant;

use super::{Input, Sampler};
use crate::propagation::TraceId;

/// A stretch of constant traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    /// Root requests a second.
    pub requests_per_second: f64,
    /// How many adjustment periods it lasts.
    pub periods: u32,
}

/// What one period recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Period {
    /// Root requests decided.
    pub roots: u64,
    /// Of those, sampled.
    pub sampled: u64,
    /// The route's root probability during the period.
    pub rate: f64,
}

/// One phase's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseSummary {
    /// The phase's traffic.
    pub requests_per_second: f64,
    /// The period (1 = the phase's first) from which on the route's
    /// probability stays within 10 % of `clamp(aim / rate, min, max)`; `None`
    /// if it never settles.
    pub converged_in: Option<u32>,
    /// Sampled roots from that period to the phase's end, relative to the aim
    /// over the same time, minus one (0.03 = 3 % over).
    pub steady_error: f64,
    /// The most sampled roots one period of the phase recorded, relative to
    /// one period's aim.
    pub max_ratio: f64,
}

/// Runs `phases` of root requests like `template` (its trace id replaced by
/// random ones from `seed`) through `sampler` from `start`, ticking its routes
/// at the end of every period.
pub fn run(
    sampler: &Sampler,
    template: &Input<'_>,
    phases: &[Phase],
    start: Instant,
    seed: u64,
) -> Vec<Period> {
    let routes = sampler.routes();
    let period = routes.period();
    let route = sampler.route_of(template);
    let mut ids = SplitMix(seed);
    let mut records = Vec::new();
    let mut begin = start;
    for phase in phases {
        let n = (phase.requests_per_second * period.as_secs_f64()).round() as u64;
        for _ in 0..phase.periods {
            let mut record = Period {
                rate: routes.threshold(route).map_or(0.0, |t| t.rate()),
                ..Period::default()
            };
            for i in 0..n {
                let at = begin + period.mul_f64((i as f64 + 0.5) / n as f64);
                let input = Input {
                    trace_id: ids.trace_id(),
                    ..*template
                };
                record.roots += 1;
                record.sampled += u64::from(sampler.decide(&input, at).sampled);
            }
            begin += period;
            routes.tick(begin);
            records.push(record);
        }
    }
    records
}

/// The figures of each phase of a [`run`], for a route aiming at `aim` traces
/// a second with probabilities within `min_rate..=max_rate`.
pub fn summarize(
    records: &[Period],
    phases: &[Phase],
    aim: f64,
    (min_rate, max_rate): (f64, f64),
    period: Duration,
) -> Vec<PhaseSummary> {
    let per_period = aim * period.as_secs_f64();
    let mut rest = records;
    phases
        .iter()
        .map(|phase| {
            let (mine, later) = rest.split_at((phase.periods as usize).min(rest.len()));
            rest = later;
            let ideal = (aim / phase.requests_per_second).clamp(min_rate, max_rate);
            let off = |r: &Period| (r.rate - ideal).abs() > 0.1 * ideal;
            let settled = mine.iter().rposition(off).map_or(0, |i| i + 1);
            let steady = &mine[settled.min(mine.len())..];
            let sampled: u64 = steady.iter().map(|r| r.sampled).sum();
            let steady_error = sampled as f64 / (per_period * steady.len() as f64) - 1.0;
            let max = mine.iter().map(|r| r.sampled).max().unwrap_or(0);
            PhaseSummary {
                requests_per_second: phase.requests_per_second,
                converged_in: (settled < mine.len()).then(|| settled as u32 + 1),
                steady_error,
                max_ratio: max as f64 / per_period,
            }
        })
        .collect()
}

/// SplitMix64: random trace ids, reproducible from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn trace_id(&mut self) -> TraceId {
        loop {
            let id = (u128::from(self.next()) << 64) | u128::from(self.next());
            if let Some(id) = TraceId::new(id) {
                return id;
            }
        }
    }
}
