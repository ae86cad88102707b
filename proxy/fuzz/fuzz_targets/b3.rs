//! Zipkin B3, single (`b3`) and multi (`X-B3-*`).
//!
//! Input: tagged segments (see the crate doc); tags `'0'`..`'5'` are `b3`,
//! `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`,
//! `x-b3-flags`. Both extracts must not panic. A context either yields is
//! written with both encodings (64/128-bit ids, with and without a parent span
//! id; into an empty map and over the incoming headers) and must read back
//! with the same ids, sampling, debug flag and width.
#![no_main]

use http::{HeaderMap, HeaderName};
use libfuzzer_sys::fuzz_target;
use meshtrace_proxy::propagation::{b3, Extracted, Outgoing, TraceContext};
use meshtrace_proxy_fuzz::{assert_round_trip, reread, tagged_headers};

static NAMES: [&HeaderName; 6] = [
    &b3::B3,
    &b3::X_B3_TRACE_ID,
    &b3::X_B3_SPAN_ID,
    &b3::X_B3_PARENT_SPAN_ID,
    &b3::X_B3_SAMPLED,
    &b3::X_B3_FLAGS,
];

type Inject = fn(&Outgoing<'_>, &mut HeaderMap);
type Extract = fn(&HeaderMap) -> Extracted;

const ENCODINGS: [(&str, Inject, Extract); 2] = [
    ("b3 single", b3::inject_single, b3::extract_single),
    ("b3 multi", b3::inject_multi, b3::extract_multi),
];

fn round_trip(context: &TraceContext, incoming: &HeaderMap) {
    // `narrow_ids`: `id_width: auto` sets it for 64-bit ids, `id_width: 64`
    // for every id (a 128-bit one is truncated to its low 64 bits).
    for narrow_ids in [false, true] {
        for span_parent in [None, Some(context.parent_id)] {
            let out = Outgoing {
                context,
                span_parent,
                narrow_ids,
            };
            for (what, inject, extract) in ENCODINGS {
                for mut written in [HeaderMap::new(), incoming.clone()] {
                    inject(&out, &mut written);
                    let again = reread(what, extract(&written), &written);
                    assert_round_trip(what, &again, context, narrow_ids, &written);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let headers = tagged_headers(data, &NAMES);
    for (what, _, extract) in ENCODINGS {
        match extract(&headers) {
            Extracted::Context(context) => {
                assert!(
                    !context.debug || context.sampling.is_sampled(),
                    "{what}: debug without accept: {context:?}"
                );
                round_trip(&context, &headers);
            }
            Extracted::DecisionOnly { sampling, debug } => {
                assert!(
                    !debug || sampling.is_sampled(),
                    "{what}: debug without accept"
                );
            }
            Extracted::Absent | Extracted::Invalid(_) => {}
        }
    }
    let mut stripped = headers;
    b3::strip_single(&mut stripped);
    b3::strip_multi(&mut stripped);
    assert_eq!(b3::extract_single(&stripped), Extracted::Absent);
    assert_eq!(b3::extract_multi(&stripped), Extracted::Absent);
});
