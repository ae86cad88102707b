//! Per-request trace-context cost: extract every configured format (the default
//! order, all five), merge, start the sidecar's span, and inject the caller's
//! format plus W3C — for a typical header set of each format.
//! Run: `cargo bench -p meshtrace-benches --bench propagation`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use meshtrace_config::{Injection, Propagation, PropagationFormat as Format};
use meshtrace_proxy::propagation::extract::Extractor;
use meshtrace_proxy::propagation::inject::{self, Plan};
use meshtrace_proxy::propagation::start_span;

/// The ordinary headers of an API call, which every lookup has to skip past.
const BASE: [(&str, &str); 6] = [
    ("host", "reviews.default.svc.cluster.local:9080"),
    ("user-agent", "okhttp/4.12.0"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("content-length", "512"),
    ("x-request-id", "9d3c2f4e-5a61-4b8e-8f0a-1c2d3e4f5a6b"),
];

fn headers(trace: &[(&'static str, &'static str)]) -> HeaderMap {
    BASE.iter()
        .chain(trace)
        .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
        .collect()
}

fn cases() -> Vec<(&'static str, Format, HeaderMap)> {
    vec![
        (
            "traceparent_only",
            Format::TraceContext,
            headers(&[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )]),
        ),
        (
            "tracecontext",
            Format::TraceContext,
            headers(&[
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            ]),
        ),
        (
            "b3multi",
            Format::B3Multi,
            headers(&[
                ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
                ("x-b3-parentspanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "1"),
            ]),
        ),
        (
            "b3single",
            Format::B3Single,
            headers(&[(
                "b3",
                "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-e457b5a2e4d86bd1",
            )]),
        ),
        (
            "datadog",
            Format::Datadog,
            headers(&[
                ("x-datadog-trace-id", "11803532876627986230"),
                ("x-datadog-parent-id", "67667974448284343"),
                ("x-datadog-sampling-priority", "1"),
                ("x-datadog-origin", "rum"),
                ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6,_dd.p.dm=-4"),
            ]),
        ),
        (
            "jaeger",
            Format::Jaeger,
            headers(&[(
                "uber-trace-id",
                "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
            )]),
        ),
    ]
}

fn propagate(c: &mut Criterion) {
    let defaults = Propagation::default();
    let extractor = Extractor::new(defaults.extract.clone(), defaults.on_conflict);
    let mut group = c.benchmark_group("extract_normalise_inject");
    for (name, format, template) in cases() {
        let mut formats = vec![Format::TraceContext];
        if format != Format::TraceContext {
            formats.push(format);
        }
        let plan = Plan::Write(Injection {
            inject: formats,
            ..Injection::default()
        });
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || template.clone(),
                |headers| {
                    let incoming = extractor.extract(headers, |f, o| {
                        black_box((f, o));
                    });
                    let (mut context, parent) = start_span(incoming.context, incoming.decision);
                    inject::write(&plan, &mut context, parent, incoming.formats, headers);
                    black_box(context.parent_id)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, propagate);
criterion_main!(benches);
