//! Configuration cost: what a start or a reload spends before the first request.
//!
//! - `config/parse`: `Config::from_yaml_str` on a realistic sidecar file (YAML →
//!   schema, then validation; the crate has no public parse-only step, so
//!   `config/validate` is there to subtract).
//! - `config/parse_default`: the same on the embedded default (`default.yaml`).
//! - `config/report_broken`: `Config::from_yaml_str` on
//!   `config/testdata/broken.yaml` until it has every problem (the slow path:
//!   rounds of typed parses, positions, semantic checks), as `check-config` does.
//! - `config/validate`: `Config::problems` on the parsed file.
//! - `config/resolve`: `Config::finish` with a pod's environment (the downward-API
//!   and injector variables applied, then validation), as a control-plane push or
//!   a cache file is finished.
//! - `config/resolve_export`: `Export::resolve` with the usual `OTEL_*` variables.
//! - `config/route_templates`: compiling `spans.routes`, as the span recorder does.
//! - `config/trace_policy`: the config-derived parts of one listener's trace
//!   policy (extractor, injector, sampler, sampling headers), as `stack.rs`
//!   rebuilds them per listener on every reload; the outbound one, whose injector
//!   carries the upstream rules. (`stack.rs`'s builder is private; these are the
//!   public constructors it calls.)
//!
//! Run: `cargo bench -p meshtrace-benches --bench config`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use meshtrace_config::{Config, RouteTemplate};
use meshtrace_proxy::http::decide::SamplingHeaders;
use meshtrace_proxy::propagation::extract::Extractor;
use meshtrace_proxy::propagation::inject::Injector;
use meshtrace_proxy::sampling::Sampler;

/// A sidecar file as a team would write it: every section a real deployment
/// touches, defaults for the rest.
const SIDECAR_YAML: &str = r#"# reviews sidecar, bookinfo namespace
workload: {service: reviews, namespace: bookinfo}
inbound:
  listen: 0.0.0.0:15006
  app_port: 9080
  trusted: true
outbound:
  listen: 127.0.0.1:15001
  mode: explicit
  routes:
    - {authority: "ratings:9080", target: "10.0.0.7:9080"}
    - {host: details, target: "details.bookinfo.svc.cluster.local:9080"}
timeouts: {connect: 500ms, request: 10s, idle: 1m}
propagation:
  extract: [tracecontext, b3single, b3multi, datadog, jaeger]
  on_conflict: tracecontext
  stage: dual
  app_formats: [tracecontext, b3multi]
  upstreams:
    - match: {host: legacy-billing}
      inject: [tracecontext, datadog]
    - match: {host: api.partner.example}
      external: true
sampling:
  default_rate: 0.1
  tenant: {headers: [x-tenant-id], baggage_key: tenant}
  forced_tenants:
    - {tenant: acme, traces_per_second: 10}
  rules:
    - match: {host: reviews, path_prefix: /health}
      rate: 0.0
    - match: {method: POST, path_prefix: /api/}
      reservoir_per_second: 5
      rate: 0.25
  tail: {errors: true, slow: 2s}
spans:
  routes: ["/reviews/{id}", "/api/v1/products/{id}/reviews", "/static/{path*}"]
  tags:
    - {name: deployment.environment.name, value: prod}
    - {name: team, env: TEAM}
    - {name: request.class, header: x-request-class}
export:
  endpoint: http://otel-collector.observability:4317
  compression: gzip
  queue: {max_size: 4096, delay: 1s}
  resource: {service_version: "1.4.2", attributes: {k8s.cluster.name: prod-eu-1}}
log: {format: json, access_log: false}
"#;

/// The example of a broken file (`check-config` reports 10 problems in it).
const BROKEN_YAML: &str = include_str!("../../config/testdata/broken.yaml");

/// What Kubernetes and the injector set in a sidecar container.
const POD_ENV: [(&str, &str); 8] = [
    ("POD_NAME", "reviews-v2-7f9c8d6b5-x2x4q"),
    ("POD_NAMESPACE", "bookinfo"),
    ("NODE_NAME", "gke-prod-eu-1-pool-2-9a8b"),
    ("POD_IP", "10.4.2.17"),
    ("MESHTRACE_APP_PORT", "9080"),
    ("MESHTRACE_POD_LABELS", "app=reviews,version=v2"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "256"),
];

fn pod_env(name: &str) -> Option<String> {
    POD_ENV
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| (*v).to_string())
}

fn sidecar_config() -> Config {
    match Config::from_yaml_str(SIDECAR_YAML, "bench") {
        Ok(config) => config,
        Err(e) => panic!("the bench config must be valid: {e}"),
    }
}

fn config(c: &mut Criterion) {
    let parsed = sidecar_config();
    let mut group = c.benchmark_group("config");
    group.bench_function("parse", |b| {
        b.iter(|| Config::from_yaml_str(black_box(SIDECAR_YAML), "bench").is_ok())
    });
    group.bench_function("parse_default", |b| {
        b.iter(|| Config::from_yaml_str(black_box(meshtrace_config::DEFAULT_YAML), "bench").is_ok())
    });
    group.bench_function("report_broken", |b| {
        b.iter(|| Config::from_yaml_str(black_box(BROKEN_YAML), "bench").is_err())
    });
    group.bench_function("validate", |b| {
        b.iter(|| black_box(&parsed).problems().is_empty())
    });
    group.bench_function("resolve", |b| {
        b.iter_batched(
            || parsed.clone(),
            |config| config.finish("bench", &pod_env).is_ok(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("resolve_export", |b| {
        b.iter(|| black_box(&parsed).export.resolve(&pod_env))
    });
    group.bench_function("route_templates", |b| {
        b.iter(|| {
            black_box(&parsed)
                .spans
                .routes
                .iter()
                .filter_map(|r| RouteTemplate::parse(r).ok())
                .collect::<Vec<_>>()
        })
    });
    group.bench_function("trace_policy", |b| {
        b.iter(|| {
            let config = black_box(&parsed);
            let propagation = &config.propagation;
            (
                Extractor::new(propagation.extract.clone(), propagation.on_conflict),
                Injector::outbound(propagation),
                Sampler::new(&config.sampling),
                SamplingHeaders::new(&config.sampling),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, config);
criterion_main!(benches);
