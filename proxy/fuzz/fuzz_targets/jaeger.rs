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
use meshtrace_proxy_fuzz::{assert_round_trip, reread, segments, value};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for v in segments(data).filter_map(value) {
        headers.append(&jaeger::UBER_TRACE_ID, v);
    }
    let context = match jaeger::extract(&headers) {
        Extracted::Context(context) => context,
        Extracted::DecisionOnly { .. } => panic!("jaeger has no decision-only form"),
        Extracted::Absent | Extracted::Invalid(_) => return,
    };
    assert_ne!(context.sampling, Sampling::Deferred, "jaeger never defers");
    assert!(
        !context.debug || context.sampling.is_sampled(),
        "debug implies sampled"
    );

    // `narrow_ids`: `id_width: auto` sets it for 64-bit ids, `id_width: 64`
    // for every id (a 128-bit one is truncated to its low 64 bits).
    for narrow_ids in [false, true] {
        for span_parent in [None, Some(context.parent_id)] {
            let out = Outgoing {
                context: &context,
                span_parent,
                narrow_ids,
            };
            for mut written in [HeaderMap::new(), headers.clone()] {
                jaeger::inject(&out, &mut written);
                let again = reread("jaeger", jaeger::extract(&written), &written);
                assert_round_trip("jaeger", &again, &context, narrow_ids, &written);

                jaeger::strip(&mut written);
                assert_eq!(jaeger::extract(&written), Extracted::Absent, "jaeger strip");
            }
        }
    }
});
