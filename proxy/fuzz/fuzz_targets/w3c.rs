//! W3C `traceparent` / `tracestate`.
//!
//! Input: segment 0 is the `traceparent` value, every further segment one
//! `tracestate` line. Whatever `w3c::extract` makes of it must not panic; a
//! context it yields, written with `w3c::inject` (into an empty map, and over
//! the incoming headers as the sidecar does), must read back identical.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use meshtrace_proxy::propagation::{w3c, Extracted, Outgoing};
use meshtrace_proxy_fuzz::{reread, segments, value};

fuzz_target!(|data: &[u8]| {
    let mut parts = segments(data);
    let mut headers = HeaderMap::new();
    if let Some(v) = parts.next().and_then(value) {
        headers.insert(&w3c::TRACEPARENT, v);
    }
    for v in parts.filter_map(value) {
        headers.append(&w3c::TRACESTATE, v);
    }

    let Extracted::Context(context) = w3c::extract(&headers) else {
        return;
    };
    // What W3C cannot carry is never set by its extract.
    assert!(!context.debug && !context.narrow, "w3c: {context:?}");
    for span_parent in [None, Some(context.parent_id)] {
        let out = Outgoing {
            context: &context,
            span_parent,
            narrow_ids: false,
        };
        for mut written in [HeaderMap::new(), headers.clone()] {
            w3c::inject(&out, &mut written);
            let again = reread("w3c", w3c::extract(&written), &written);
            assert_eq!(
                again.trace_id, context.trace_id,
                "w3c trace id: {written:?}"
            );
            assert_eq!(
                again.parent_id, context.parent_id,
                "w3c parent id: {written:?}"
            );
            assert_eq!(
                again.sampling, context.sampling,
                "w3c sampling: {written:?}"
            );
            assert_eq!(again.random, context.random, "w3c random flag: {written:?}");
            assert_eq!(
                again.tracestate, context.tracestate,
                "w3c tracestate: {written:?}"
            );
            assert_eq!(again, context, "w3c context: {written:?}");

            w3c::strip(&mut written);
            assert_eq!(w3c::extract(&written), Extracted::Absent, "w3c strip");
        }
    }
});
