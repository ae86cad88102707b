//! The trace-context benchmark's requests and per-request routine, shared by the
//! criterion bench (`benches/propagation.rs`) and the instruction-count loop
//! (`examples/ownership_loop.rs`), so both measure exactly the same thing.

use std::hint::black_box;

use http::{HeaderMap, HeaderName, HeaderValue};
use meshtrace_config::PropagationFormat as Format;
use meshtrace_proxy::propagation::extract::{self, Extractor, Formats};
use meshtrace_proxy::propagation::inject::{self, Injector};
use meshtrace_proxy::propagation::{start_span, SpanId};

/// The ordinary headers of an API call, which every lookup has to skip past.
pub const BASE: [(&str, &str); 6] = [
    ("host", "reviews.default.svc.cluster.local:9080"),
    ("user-agent", "okhttp/4.12.0"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("content-length", "512"),
    ("x-request-id", "9d3c2f4e-5a61-4b8e-8f0a-1c2d3e4f5a6b"),
];

/// `BASE` plus `trace`, the headers of one request.
pub fn headers(trace: &[(&'static str, &'static str)]) -> HeaderMap {
    BASE.iter()
        .chain(trace)
        .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
        .collect()
}

/// One benchmark case: its name, the format the app speaks, the request's headers.
pub type Case = (&'static str, Format, HeaderMap);

/// The W3C `traceparent` every case that carries one uses.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// The Jaeger header of the same trace and span.
const UBER_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1";

/// Every case: each format's typical headers, then mixes that carry stale
/// headers.
pub fn cases() -> Vec<Case> {
    let mut cases = single_format();
    cases.extend(mixed());
    cases
}

/// Each format alone, as a caller that speaks only it sends it.
fn single_format() -> Vec<Case> {
    vec![
        (
            "traceparent_only",
            Format::TraceContext,
            headers(&[("traceparent", TRACEPARENT)]),
        ),
        (
            "tracecontext",
            Format::TraceContext,
            headers(&[
                ("traceparent", TRACEPARENT),
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
            headers(&[("uber-trace-id", UBER_TRACE_ID)]),
        ),
    ]
}

/// What a migration puts on the wire: several formats on one request.
fn mixed() -> Vec<Case> {
    vec![
        // The migration's typical mess: a W3C caller that also forwards stale B3
        // (another span id, "not sampled") to a W3C app.
        (
            "w3c_with_stale_b3",
            Format::TraceContext,
            headers(&[
                ("traceparent", TRACEPARENT),
                ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "0"),
            ]),
        ),
        // Every format at once, toward an app that speaks B3 multi.
        (
            "every_format",
            Format::B3Multi,
            headers(&[
                ("traceparent", TRACEPARENT),
                ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
                ("x-b3-sampled", "1"),
                ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
                ("x-datadog-trace-id", "11803532876627986230"),
                ("x-datadog-parent-id", "67667974448284343"),
                ("uber-trace-id", UBER_TRACE_ID),
            ]),
        ),
    ]
}

/// One request's trace-context work toward the app: scan, extract, start the
/// sidecar's span, plan (the app known to speak `app`), and write — injecting
/// the plan's formats and removing every other trace header that arrived.
/// Never inlined, so that callgrind can count it alone.
#[inline(never)]
pub fn extract_normalise_inject(
    extractor: &Extractor,
    injector: &Injector,
    app: Formats,
    headers: &mut HeaderMap,
) -> SpanId {
    let scan = extract::scan(headers);
    let present = scan.present;
    let incoming = extractor.extract_scanned(headers, &scan, |f, o| {
        black_box((f, o));
    });
    let (mut context, parent) = start_span(incoming.context, incoming.decision);
    let plan = injector.plan(None, None, present.formats, || Some(app));
    inject::write(
        &plan,
        &mut context,
        parent,
        incoming.formats,
        present.formats,
        headers,
    );
    context.parent_id
}
