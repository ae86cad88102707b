//! Per-connection and per-request costs of the data path that do not involve I/O:
//! protocol detection on a request's first bytes, hop-by-hop header stripping, and
//! the header-size check. Run: `cargo bench -p meshtrace-benches --bench data_path`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use meshtrace_proxy::detect;
use meshtrace_proxy::http::{headers, limits};

/// The header set of a typical proxied API call.
fn typical_headers() -> HeaderMap {
    [
        ("host", "reviews.default.svc.cluster.local:9080"),
        ("user-agent", "okhttp/4.12.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("content-type", "application/json"),
        ("content-length", "512"),
        ("x-request-id", "9d3c2f4e-5a61-4b8e-8f0a-1c2d3e4f5a6b"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("connection", "keep-alive"),
    ]
    .into_iter()
    .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
    .collect()
}

fn detection(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let request = b"GET /api/v1/reviews/42?limit=10 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n";
    c.bench_function("detect_http1_request_line", |b| {
        b.iter(|| {
            let mut io = &request[..];
            rt.block_on(detect::detect(&mut io, 65536, Duration::from_secs(10)))
        })
    });
}

fn hop_by_hop(c: &mut Criterion) {
    let template = typical_headers();
    c.bench_function("strip_hop_by_hop_typical", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| headers::strip_hop_by_hop(black_box(h), false),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn header_size(c: &mut Criterion) {
    let mut req = Request::get("/api/v1/reviews/42?limit=10")
        .body(())
        .expect("request");
    *req.headers_mut() = typical_headers();
    c.bench_function("header_block_size_typical", |b| {
        b.iter(|| limits::header_block_size(black_box(&req)))
    });
}

criterion_group!(benches, detection, hop_by_hop, header_size);
criterion_main!(benches);
