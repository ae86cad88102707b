//! Per-request sampling decision cost: one `Sampler::decide` with a typical
//! config (two rules, one forced tenant), for a root request the second rule
//! decides, a request whose parent decided, and a request of the forced tenant
//! (one compare-and-swap on its budget). Target: ≤ 50 ns for the root request.
//!
//! Adaptive sampling (issue 17), the same config with the second rule at a
//! `target_traces_per_second` and a boost: a root request it does not sample
//! (the common case: one threshold load, the root count), one it samples (the
//! cap's allowance too), a request of the route while it is boosted (the boost
//! budget's compare-and-swap), and `Routes::observe` feeding the boost window
//! (with the latency histogram).
//!
//! Run: `cargo bench -p meshtrace-benches --bench sampling`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use meshtrace_config::{Boost, ForcedTenant, LatencyTrigger, RuleMatch, Sampling, SamplingRule};
use meshtrace_proxy::propagation::TraceId;
use meshtrace_proxy::sampling::{Input, Sampler};
use tokio::time::Instant;

fn config() -> Sampling {
    Sampling {
        default_rate: 0.1,
        forced_tenants: vec![ForcedTenant {
            tenant: "acme".into(),
            rate: 1.0,
            override_parent: true,
            // Enough that the moving clock below never exhausts it.
            traces_per_second: 1e9,
        }],
        rules: vec![
            SamplingRule {
                matches: RuleMatch {
                    host: Some("reviews.default.svc.cluster.local".into()),
                    path_prefix: Some("/health".into()),
                    ..RuleMatch::default()
                },
                rate: Some(0.0),
                ..SamplingRule::default()
            },
            SamplingRule {
                matches: RuleMatch {
                    method: Some("GET".into()),
                    path_prefix: Some("/api/".into()),
                    ..RuleMatch::default()
                },
                rate: Some(0.25),
                ..SamplingRule::default()
            },
        ],
        ..Sampling::default()
    }
}

fn root() -> Input<'static> {
    Input {
        trusted: true,
        force_signal: false,
        tenant: Some("globex"),
        parent: None,
        trace_id: TraceId::new(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736).expect("non-zero"),
        authority: Some("reviews.default.svc.cluster.local:9080"),
        method: "GET",
        path: "/api/v1/reviews/42",
        grpc: None,
        probe: false,
    }
}

fn decide(c: &mut Criterion) {
    let sampler = Sampler::new(&config());
    let now = Instant::now();
    let mut group = c.benchmark_group("sampling_decide");
    let cases = [
        ("root_second_rule", root()),
        (
            "parent_decided",
            Input {
                parent: Some(true),
                ..root()
            },
        ),
    ];
    for (name, input) in cases {
        group.bench_function(name, |b| {
            b.iter(|| sampler.decide(black_box(&input), black_box(now)))
        });
    }
    let forced = Input {
        tenant: Some("acme"),
        ..root()
    };
    group.bench_function("forced_tenant_within_budget", |b| {
        let mut now = now;
        b.iter(|| {
            now += Duration::from_nanos(1);
            sampler.decide(black_box(&forced), black_box(now))
        })
    });
    group.finish();
}

/// [`config`] with the second rule adaptive at `target` traces a second, with a
/// boost on errors and latency.
fn adaptive(target: f64) -> Sampling {
    let mut config = config();
    if let Some(rule) = config.rules.get_mut(1) {
        rule.rate = None;
        rule.target_traces_per_second = Some(target);
        rule.boost = Some(Boost {
            error_ratio: Some(0.05),
            latency: Some(LatencyTrigger {
                percentile: 99.0,
                above: meshtrace_config::Duration::from_millis(500),
            }),
            window: meshtrace_config::Duration::from_secs(30),
            min_requests: 100,
            rate: 0.5,
            // Enough that the moving clock below never exhausts it.
            traces_per_second: 1e9,
            duration: meshtrace_config::Duration::from_secs(3600),
            decay: meshtrace_config::Duration::from_secs(60),
        });
    }
    config
}

/// The adaptive rule's id (the second rule).
const ADAPTIVE: usize = 1;

fn decide_adaptive(c: &mut Criterion) {
    let start = Instant::now();
    let period = Duration::from_secs(5);
    let mut group = c.benchmark_group("sampling_decide");
    // 1 000 roots in a period at a target of 10/s: p = 0.05, threshold 0.95 ·
    // 2^56; the trace id's randomness (0xce929d… ≈ 0.81 · 2^56) is below it.
    let sampler = Sampler::new(&adaptive(10.0));
    let routes = sampler.routes();
    for _ in 0..1_000 {
        routes.count_root(ADAPTIVE, false);
    }
    routes.tick(start + period);
    let now = start + period;
    group.bench_function("adaptive_root_not_sampled", |b| {
        b.iter(|| sampler.decide(black_box(&root()), black_box(now)))
    });
    // A target no traffic reaches: p = 1 and an allowance that never runs out.
    let sampled = Sampler::new(&adaptive(1e12));
    sampled.routes().tick(now);
    group.bench_function("adaptive_root_sampled", |b| {
        b.iter(|| sampled.decide(black_box(&root()), black_box(now)))
    });
    // Boosted: 100 failed requests in the window.
    for _ in 0..100 {
        routes.observe(ADAPTIVE, true, Duration::from_millis(3));
    }
    routes.tick(now + period);
    assert!(routes.boost_active(ADAPTIVE), "the boost started");
    group.bench_function("adaptive_root_boosted", |b| {
        let mut now = now + period;
        b.iter(|| {
            now += Duration::from_nanos(1);
            sampler.decide(black_box(&root()), black_box(now))
        })
    });
    group.finish();
    c.bench_function("routes_observe", |b| {
        b.iter(|| {
            routes.observe(
                black_box(ADAPTIVE),
                black_box(false),
                black_box(Duration::from_micros(4_321)),
            )
        })
    });
}

criterion_group!(benches, decide, decide_adaptive);
criterion_main!(benches);
