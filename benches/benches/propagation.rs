//! Per-request trace-context cost: extract every configured format (the default
//! order, all five), merge, start the sidecar's span, plan what to write toward
//! the app (stage `legacy`, the app known to speak the caller's format) and
//! write it — injecting the plan's formats and removing every other trace
//! header that arrived (the header-ownership invariant) — for a typical header
//! set of each format and for mixes that carry stale headers
//! (`extract_normalise_inject`). Then each codec on its own, so a change to one
//! format shows in its own figure: `codec_extract/<codec>` reads that format's
//! headers from the same request, `codec_inject/<codec>` writes the re-parented
//! context back over them (the common case: the caller's format goes on).
//! Run: `cargo bench -p meshtrace-benches --bench propagation`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::HeaderMap;
use meshtrace_benches::propagation::{cases, extract_normalise_inject};
use meshtrace_config::{MigrationStage, Propagation, PropagationFormat as Format};
use meshtrace_proxy::propagation::extract::{Extractor, Formats};
use meshtrace_proxy::propagation::inject::Injector;
use meshtrace_proxy::propagation::{b3, datadog, jaeger, start_span, w3c, Extracted, Outgoing};

fn propagate(c: &mut Criterion) {
    let defaults = Propagation::default();
    let extractor = Extractor::new(defaults.extract.clone(), defaults.on_conflict);
    let mut group = c.benchmark_group("extract_normalise_inject");
    for (name, format, template) in cases() {
        // The app speaks the case's format (learned from its own requests).
        let app = Formats::only(format);
        let batch = BatchSize::SmallInput;
        run(
            &mut group, name, &extractor, &defaults, app, &template, batch,
        );
    }
    group.finish();
    // A bench correction, not an optimisation: the group above clones its
    // template at exact capacity, so a format that adds a header pays a map
    // grow that the proxy does not (hyper hands a request's map over with room
    // to spare, reused across a connection). Here each iteration's map has room
    // for the headers injection adds, as a reused one does.
    let mut group = c.benchmark_group("extract_normalise_inject_spare_capacity");
    for (name, format, template) in cases() {
        if matches!(name, "tracecontext" | "datadog" | "every_format") {
            let app = Formats::only(format);
            let spare = with_spare_capacity(&template);
            let batch = BatchSize::SmallInput;
            run(&mut group, name, &extractor, &defaults, app, &spare, batch);
        }
    }
    group.finish();
    // A second bench correction: the groups above time batches of up to ~40 000
    // maps (criterion's `SmallInput` makes a tenth of a sample's iterations
    // first, ~1–2 KB a map: tens of MB), so most calls start on a map long
    // since evicted to L3 or memory.
    // The proxy's map is the one hyper parsed a moment before, still in L1/L2.
    // Here batches are 16 maps (~25 KB with their spare capacity): each call
    // still gets a map of its own, as in the groups above, but a warm one.
    let mut group = c.benchmark_group("extract_normalise_inject_hot");
    for (name, format, template) in cases() {
        if matches!(name, "tracecontext" | "datadog" | "every_format") {
            let app = Formats::only(format);
            let spare = with_spare_capacity(&template);
            run(
                &mut group,
                name,
                &extractor,
                &defaults,
                app,
                &spare,
                BatchSize::NumIterations(16),
            );
        }
    }
    group.finish();
    // Stage `w3c`: only W3C is written, so every other format that arrived is
    // removed — the invariant's own cost on the mixes that carry stale headers.
    let w3c = Propagation {
        stage: MigrationStage::W3c,
        ..Propagation::default()
    };
    let mut group = c.benchmark_group("extract_normalise_inject_w3c_stage");
    for (name, format, template) in cases() {
        if matches!(name, "w3c_with_stale_b3" | "every_format") {
            run(
                &mut group,
                name,
                &extractor,
                &w3c,
                Formats::only(format),
                &template,
                BatchSize::SmallInput,
            );
        }
    }
    group.finish();
}

/// Times `name` on maps made from `template`, `batch` of them made before
/// each timed batch.
fn run(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    extractor: &Extractor,
    config: &Propagation,
    app: Formats,
    template: &impl Template,
    batch: BatchSize,
) {
    let injector = Injector::inbound(config);
    group.bench_function(name, |b| {
        b.iter_batched_ref(
            || template.copy(),
            |headers| black_box(extract_normalise_inject(extractor, &injector, app, headers)),
            batch,
        )
    });
}

/// How an iteration's request headers are made from the case's.
trait Template {
    fn copy(&self) -> HeaderMap;
}

/// A clone: the entries at exact capacity (the first measurements' method).
impl Template for HeaderMap {
    fn copy(&self) -> HeaderMap {
        self.clone()
    }
}

/// The case's headers in a map with room for eight more.
struct SpareCapacity<'a>(&'a HeaderMap);

fn with_spare_capacity(template: &HeaderMap) -> SpareCapacity<'_> {
    SpareCapacity(template)
}

impl Template for SpareCapacity<'_> {
    fn copy(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.0.len() + 8);
        for (name, value) in self.0 {
            headers.append(name.clone(), value.clone());
        }
        headers
    }
}

/// The sidecar's own allocator (`proxy/src/main.rs`): a request's header
/// values and Datadog fields are priced as the proxy allocates them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Extract = fn(&HeaderMap) -> Extracted;
type Inject = fn(&Outgoing<'_>, &mut HeaderMap);

/// Each codec's own pair of functions, with the `cases()` header set it reads.
const CODECS: [(&str, &str, Extract, Inject); 5] = [
    ("w3c", "tracecontext", w3c::extract, w3c::inject),
    ("b3_multi", "b3multi", b3::extract_multi, b3::inject_multi),
    (
        "b3_single",
        "b3single",
        b3::extract_single,
        b3::inject_single,
    ),
    ("datadog", "datadog", datadog::extract, datadog::inject),
    ("jaeger", "jaeger", jaeger::extract, jaeger::inject),
];

fn codecs(c: &mut Criterion) {
    let cases = cases();
    let template = |case: &str| {
        let Some((_, _, headers)) = cases.iter().find(|(name, ..)| *name == case) else {
            panic!("no bench case {case:?}");
        };
        headers
    };
    let mut group = c.benchmark_group("codec_extract");
    for (name, case, extract, _) in CODECS {
        let headers = template(case);
        group.bench_function(name, |b| b.iter(|| extract(black_box(headers))));
    }
    group.finish();

    // The same codecs on headers they reject, each failing late (the whole
    // value read before the rule it breaks), so a rejection's cost shows.
    let mut group = c.benchmark_group("codec_extract_invalid");
    for (name, extract, pairs) in invalid_cases() {
        let headers = meshtrace_benches::propagation::headers(pairs);
        assert!(
            matches!(extract(&headers), Extracted::Invalid { .. }),
            "{name}: the bench headers must be rejected"
        );
        group.bench_function(name, |b| b.iter(|| extract(black_box(&headers))));
    }
    group.finish();

    let mut group = c.benchmark_group("codec_inject");
    for (name, case, extract, inject) in CODECS {
        let headers = template(case);
        // The caller's context as this codec reads it (W3C keeps its tracestate,
        // Datadog its origin and tags), re-parented onto the sidecar's span.
        let Extracted::Context(caller) = extract(headers) else {
            panic!("{name}: the bench headers must carry a whole context");
        };
        let (context, span_parent) = start_span(Some(caller), None);
        let out = Outgoing {
            context: &context,
            span_parent,
            narrow_ids: false,
        };
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || headers.clone(),
                |headers| inject(black_box(&out), headers),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A bench name, the codec's extract, and the request headers it reads.
type InvalidCase = (
    &'static str,
    Extract,
    &'static [(&'static str, &'static str)],
);

/// One rejected header set per codec, named after the rule it breaks.
fn invalid_cases() -> [InvalidCase; 5] {
    [
        (
            "w3c_upper_case_span_id",
            w3c::extract,
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            )],
        ),
        (
            "b3_multi_non_hex_trace_id",
            b3::extract_multi,
            &[
                ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e473g"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
                ("x-b3-sampled", "1"),
            ],
        ),
        (
            "b3_single_zero_span_id",
            b3::extract_single,
            &[("b3", "4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-1")],
        ),
        (
            "datadog_zero_trace_id",
            datadog::extract,
            &[
                ("x-datadog-trace-id", "0"),
                ("x-datadog-parent-id", "67667974448284343"),
                ("x-datadog-sampling-priority", "1"),
            ],
        ),
        (
            "jaeger_zero_trace_id",
            jaeger::extract,
            &[("uber-trace-id", "0:00f067aa0ba902b7:0:1")],
        ),
    ]
}

/// What the migration view costs a request: counting the formats it carried
/// (per direction, and inbound per calling workload), noting what the app sends
/// (outbound), and reading that back (inbound, toward the app).
fn migration(c: &mut Criterion) {
    use meshtrace_proxy::metrics::Metrics;
    use meshtrace_proxy::migration::Migration;

    let metrics = Metrics::new();
    let migration = Migration::new(&metrics);
    let b3: Formats = [Format::TraceContext, Format::B3Multi]
        .into_iter()
        .collect();
    let caller = http::HeaderValue::from_static("checkout.shop");
    let now = tokio::time::Instant::now();
    let hour = std::time::Duration::from_secs(3600);
    let mut group = c.benchmark_group("migration");
    group.bench_function("inbound_count_with_caller", |b| {
        b.iter(|| {
            migration
                .callers
                .count(Some(black_box(&caller)), black_box(b3))
        })
    });
    group.bench_function("outbound_count_and_learn", |b| {
        b.iter(|| {
            migration.outbound.count(black_box(b3));
            migration.app.observe(black_box(b3), now);
        })
    });
    group.bench_function("learned_formats", |b| {
        b.iter(|| migration.app.get(black_box(now), hour))
    });
    group.finish();
}

criterion_group!(benches, propagate, codecs, migration);
criterion_main!(benches);
