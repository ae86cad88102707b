//! The injector's work per AdmissionReview, without the network: the decision
//! and patch for a typed pod (`inject`), and the whole review → answer path
//! (`review::handle`: parse, decide, patch, serialise with the base64 patch).
//! `cargo bench -p meshtrace-benches --bench inject`.

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::Pod;
use meshtrace_control::inject::{inject, review, InjectorConfig};

const REVIEW: &str = include_str!("../../control/tests/inject/plain-pod.review.json");

fn benches(c: &mut Criterion) {
    let config = InjectorConfig::default();
    let value: serde_json::Value = serde_json::from_str(REVIEW).unwrap();
    let pod: Pod = serde_json::from_value(value["request"]["object"].clone()).unwrap();
    c.bench_function("inject/patch_for_typed_pod", |b| {
        b.iter(|| inject(&config, std::hint::black_box(&pod)))
    });
    c.bench_function("inject/review_to_answer", |b| {
        b.iter(|| review::handle(&config, std::hint::black_box(REVIEW.as_bytes())))
    });
}

criterion_group!(inject_benches, benches);
criterion_main!(inject_benches);
