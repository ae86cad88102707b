use http::HeaderMap;

use super::*;

mod multi;
mod reasons;
mod single;

// The spec's examples. Its single-header example puts `05e3…` in the SpanId slot.
const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const SPAN: &str = "05e3ac9a4f6e3b90";
const PARENT: &str = "e457b5a2e4d86bd1";
const SINGLE: &str = "80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-1-e457b5a2e4d86bd1";
const MULTI_TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const MULTI_SPAN: &str = "a2fb4a1d1a96d312";
const MULTI_PARENT: &str = "0020000000000001";

pub(super) use crate::test_support::headers;

fn multi(trace: &str, span: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-b3-traceid", trace.to_owned()),
        ("x-b3-spanid", span.to_owned()),
    ]
}

fn multi_headers(pairs: &[(&str, String)]) -> HeaderMap {
    headers(
        &pairs
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
}

fn single(value: &str) -> Extracted {
    extract_single(&headers(&[("b3", value)]))
}

fn context(e: Extracted) -> TraceContext {
    match e {
        Extracted::Context(c) => c,
        other => panic!("expected a context, got {other:?}"),
    }
}

fn outgoing<'a>(c: &'a TraceContext, span_parent: Option<&str>, narrow_ids: bool) -> Outgoing<'a> {
    Outgoing {
        context: c,
        span_parent: span_parent.map(|p| SpanId::new(u64::from_str_radix(p, 16).unwrap()).unwrap()),
        narrow_ids,
    }
}

fn new_context(sampling: Sampling) -> TraceContext {
    TraceContext::new(
        TraceId::new(0x80f198ee56343ba864fe8b2a57d3eff7).unwrap(),
        SpanId::new(0x05e3ac9a4f6e3b90).unwrap(),
        sampling,
    )
}

fn written(inject: fn(&Outgoing<'_>, &mut HeaderMap), out: &Outgoing<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    inject(out, &mut h);
    h
}
