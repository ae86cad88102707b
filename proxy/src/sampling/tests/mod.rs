use meshtrace_config::{ForcedTenant, RuleMatch, Sampling, SamplingRule};
use tokio::time::Instant;

use super::*;

mod adaptive;
mod boost;
mod force;
mod rules;
mod tenants;
mod workload;

/// Randomness exactly at the threshold of rate 1/2: kept at 1/2 and above.
const KEPT_AT_HALF: u64 = 0x80_0000_0000_0000;
/// Randomness just below it: dropped at 1/2 and below.
const DROPPED_AT_HALF: u64 = 0x7f_ffff_ffff_ffff;

fn trace_id(randomness: u64) -> TraceId {
    TraceId::new(0x5eed_0000_0000_0000_0000_0000_0000_0000 | u128::from(randomness)).unwrap()
}

fn sampling(default_rate: f64) -> Sampling {
    Sampling {
        default_rate,
        ..Sampling::default()
    }
}

fn with_tenant(default_rate: f64, tenant: ForcedTenant) -> Sampler {
    Sampler::new(&Sampling {
        forced_tenants: vec![tenant],
        ..sampling(default_rate)
    })
}

fn forced(id: &str, rate: f64, traces_per_second: f64) -> ForcedTenant {
    ForcedTenant {
        tenant: id.into(),
        rate,
        override_parent: true,
        traces_per_second,
    }
}

fn with_rules(default_rate: f64, rules: Vec<SamplingRule>) -> Sampler {
    Sampler::new(&Sampling {
        rules,
        ..sampling(default_rate)
    })
}

fn rule(matches: RuleMatch, rate: f64) -> SamplingRule {
    SamplingRule {
        matches,
        rate: Some(rate),
        ..SamplingRule::default()
    }
}

/// A root HTTP request on a trusted listener, kept at rates of 1/2 and above.
fn root() -> Input<'static> {
    Input {
        trusted: true,
        force_signal: false,
        tenant: None,
        parent: None,
        trace_id: trace_id(KEPT_AT_HALF),
        authority: Some("api.example.com:8080"),
        method: "GET",
        path: "/api/users",
        grpc: None,
        probe: false,
    }
}

fn decide(sampler: &Sampler, input: Input<'_>) -> Decision {
    sampler.decide(&input, Instant::now())
}

fn sampled(reason: Reason, threshold: Option<f64>) -> Decision {
    let threshold = threshold.and_then(Threshold::for_rate);
    Decision {
        sampled: true,
        reason,
        threshold,
    }
}

fn not_sampled(reason: Reason) -> Decision {
    Decision {
        sampled: false,
        reason,
        threshold: None,
    }
}

// === Decision order ===

#[test]
fn trusted_force_signal_samples_despite_parent_not_sampled() {
    let sampler = Sampler::new(&sampling(0.0));
    let input = Input {
        force_signal: true,
        parent: Some(false),
        ..root()
    };
    assert_eq!(decide(&sampler, input), sampled(Reason::ForceSignal, None));
}

#[test]
fn untrusted_force_signal_is_ignored() {
    let sampler = Sampler::new(&sampling(0.0));
    let input = Input {
        trusted: false,
        force_signal: true,
        ..root()
    };
    assert_eq!(decide(&sampler, input), not_sampled(Reason::Default));
}

#[test]
fn parent_sampled_is_followed() {
    let sampler = Sampler::new(&sampling(0.0));
    let input = Input {
        parent: Some(true),
        ..root()
    };
    assert_eq!(decide(&sampler, input), sampled(Reason::Parent, None));
}

#[test]
fn parent_not_sampled_is_followed() {
    let sampler = with_rules(1.0, vec![rule(RuleMatch::default(), 1.0)]);
    let input = Input {
        parent: Some(false),
        ..root()
    };
    assert_eq!(decide(&sampler, input), not_sampled(Reason::Parent));
}

// === Consistency ===

fn random_ids(n: usize) -> impl Iterator<Item = TraceId> {
    let mut rng = fastrand::Rng::with_seed(0x6d65_7368);
    std::iter::from_fn(move || TraceId::new(rng.u128(..))).take(n)
}

fn root_with(trace_id: TraceId) -> Input<'static> {
    Input { trace_id, ..root() }
}

#[test]
fn rate_of_a_tenth_samples_a_tenth_of_random_ids() {
    let sampler = Sampler::new(&sampling(0.1));
    let kept = random_ids(100_000)
        .filter(|&id| decide(&sampler, root_with(id)).sampled)
        .count();
    assert!((9_000..=11_000).contains(&kept), "{kept} of 100 000");
}

#[test]
fn independent_samplers_agree_on_every_id() {
    let (a, b) = (Sampler::new(&sampling(0.3)), Sampler::new(&sampling(0.3)));
    for id in random_ids(10_000) {
        assert_eq!(decide(&a, root_with(id)), decide(&b, root_with(id)));
    }
}

#[test]
fn a_lower_rate_keeps_a_subset_of_what_a_higher_rate_keeps() {
    let rates = [1.0, 0.9, 0.5, 1.0 / 3.0, 0.25, 0.1, 0.01, 0.001];
    let samplers: Vec<Sampler> = rates.iter().map(|&r| Sampler::new(&sampling(r))).collect();
    for id in random_ids(20_000) {
        let kept: Vec<bool> = samplers
            .iter()
            .map(|s| decide(s, root_with(id)).sampled)
            .collect();
        // Rates descend, so once an id is dropped it stays dropped.
        assert!(kept.windows(2).all(|w| w[0] || !w[1]), "{id:?}: {kept:?}");
    }
}

// === API ===

#[test]
fn reason_labels_cover_every_reason() {
    let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let expected = [
        "parent",
        "force_signal",
        "forced_tenant",
        "forced_workload",
        "budget_exceeded",
        "rule",
        "default",
        "tail_error",
        "tail_slow",
        "boost",
        "probe",
    ];
    assert_eq!(labels, expected);
}

#[test]
fn sampler_is_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Sampler>();
}
