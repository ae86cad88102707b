//! The Datadog codec's tests: the headers read (`extract`), written (`inject`)
//! and the `dd=` tracestate member (`tracestate`), with shared setup here.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

mod extract;
mod inject;
mod tracestate;

/// A 64-bit Datadog context, as dd-trace sends it.
const DD_64: &[(&str, &str)] = &[
    ("x-datadog-trace-id", "1234567890123456789"),
    ("x-datadog-parent-id", "987654321"),
    ("x-datadog-sampling-priority", "1"),
];

pub(super) use crate::test_support::headers;

/// `DD_64` with `extra` added (or replacing a header of the same name).
fn dd_64_with(extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = headers(DD_64);
    for (name, value) in headers(extra) {
        h.insert(name.unwrap(), value);
    }
    h
}

fn context(h: &HeaderMap) -> TraceContext {
    match extract(h) {
        Extracted::Context(c) => c,
        other => panic!("expected a context, got {other:?}"),
    }
}

fn meta(c: &TraceContext) -> &DatadogMeta {
    c.datadog.as_ref().expect("datadog fields")
}

fn outgoing(c: &TraceContext) -> Outgoing<'_> {
    Outgoing {
        context: c,
        span_parent: None,
        narrow_ids: false,
    }
}

fn injected(c: &TraceContext) -> HeaderMap {
    let mut out = HeaderMap::new();
    inject(&outgoing(c), &mut out);
    out
}

fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
