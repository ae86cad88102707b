//! Per-request sampling decision cost: one `Sampler::decide` with a typical
//! config (two rules, one forced tenant), for a root request the second rule
//! decides, a request whose parent decided, and a request of the forced tenant
//! (one compare-and-swap on its budget). Target: ≤ 50 ns for the root request.
//! Run: `cargo bench -p meshtrace-benches --bench sampling`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use meshtrace_config::{ForcedTenant, RuleMatch, Sampling, SamplingRule};
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

criterion_group!(benches, decide);
criterion_main!(benches);
