//! The cost of `meshtrace-proxy explain`'s work, without process start-up and
//! config loading: `explain()` (a trace policy built from the config, the
//! request path's trace step run on the request, the answer assembled) and
//! rendering it as text and as JSON, for a typical header set — a W3C caller
//! with a tracestate, the same trace in B3 and Datadog, a stale B3 header and a
//! tenant. Run: `cargo bench -p meshtrace-benches --bench explain`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use meshtrace_config::Config;
use meshtrace_proxy::explain::{explain, text, Query};
use meshtrace_proxy::target::Direction;

const HEADERS: [(&str, &str); 8] = [
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
    ("x-datadog-trace-id", "11803532876627986230"),
    ("x-datadog-parent-id", "67667974448284343"),
    ("x-datadog-sampling-priority", "1"),
    ("x-b3-spanid", "1111111111111111"),
    ("x-tenant-id", "acme"),
];

fn query() -> Query {
    let mut headers = HeaderMap::new();
    for (name, value) in HEADERS {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    Query {
        direction: Direction::Inbound,
        method: Method::GET,
        authority: "reviews:9080".into(),
        path: "/api/reviews/1".into(),
        headers,
        app_sends: None,
    }
}

fn bench(c: &mut Criterion) {
    let config = Config::from_yaml_str(meshtrace_config::DEFAULT_YAML, "default").unwrap();
    let query = query();
    let mut group = c.benchmark_group("explain");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("explain", |b| {
        b.iter(|| explain(black_box(&config), black_box(&query)).unwrap())
    });
    let answer = explain(&config, &query).unwrap();
    group.bench_function("render_text", |b| b.iter(|| text(black_box(&answer))));
    group.bench_function("render_json", |b| {
        b.iter(|| serde_json::to_string_pretty(black_box(&answer)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
