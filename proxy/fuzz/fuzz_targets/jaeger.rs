//! Jaeger `uber-trace-id`.
//!
//! Input: every segment is one `uber-trace-id` line (two or more are invalid).
//! `jaeger::extract` must not panic; a context it yields is written with
//! `jaeger::inject` (64/128-bit ids, with and without a parent span id; into
//! an empty map and over the incoming headers) and must read back with the
//! same ids, sampling, debug flag and width.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use meshtrace_proxy::propagation::{jaeger, Extracted, Outgoing, Sampling};
use meshtrace_proxy_fuzz::{reread, segments, value};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for v in segments(data).filter_map(value) {
        headers.append(&jaeger::UBER_TRACE_ID, v);
    }
    let context = match jaeger::extract(&headers) {
        Extracted::Context(context) => context,
        Extracted::DecisionOnly { .. } => panic!("jaeger has no decision-only form"),
        Extracted::Absent | Extracted::Invalid => return,
    };
    assert_ne!(context.sampling, Sampling::Deferred, "jaeger never defers");
    assert!(
        !context.debug || context.sampling.is_sampled(),
        "debug implies sampled"
    );

    // `narrow_ids`: `id_width: auto` sets it for 64-bit ids, `id_width: 64`
    // for every id (a 128-bit one is truncated to its low 64 bits).
    for narrow_ids in [false, true] {
        // An id whose low 64 bits are zero is never narrowed (it would be all zero).
        let narrowed = narrow_ids && context.trace_id.low() != 0;
        let trace_id = if narrowed {
            u128::from(context.trace_id.low())
        } else {
            context.trace_id.get()
        };
        for span_parent in [None, Some(context.parent_id)] {
            let out = Outgoing {
                context: &context,
                span_parent,
                narrow_ids,
            };
            for mut written in [HeaderMap::new(), headers.clone()] {
                jaeger::inject(&out, &mut written);
                let again = reread("jaeger", jaeger::extract(&written), &written);
                assert_eq!(
                    again.trace_id.get(),
                    trace_id,
                    "jaeger trace id: {written:?}"
                );
                assert_eq!(
                    again.parent_id, context.parent_id,
                    "jaeger span id: {written:?}"
                );
                assert_eq!(
                    again.sampling, context.sampling,
                    "jaeger sampling: {written:?}"
                );
                assert_eq!(again.debug, context.debug, "jaeger debug: {written:?}");
                assert_eq!(again.narrow, narrowed, "jaeger width: {written:?}");

                jaeger::strip(&mut written);
                assert_eq!(jaeger::extract(&written), Extracted::Absent, "jaeger strip");
            }
        }
    }
});
