//! Datadog: the `x-datadog-*` headers and the `dd=` tracestate member.
//!
//! Input: tagged segments (see the crate doc); tags `'0'`..`'4'` are
//! `x-datadog-trace-id`, `-parent-id`, `-sampling-priority`, `-origin`,
//! `-tags`; tag `'5'` is not a header but a `dd=` member value (lossily UTF-8
//! decoded).
//!
//! Checked: `datadog::extract` does not panic, and a context it yields, written
//! with `datadog::inject` (into an empty map and over the incoming headers),
//! reads back identical, Datadog fields included. `from_tracestate_member`
//! does not panic; what `tracestate_member` writes (for every sampling
//! decision) is a valid tracestate value of at most 256 characters with
//! `dd=`, carries the reconciled priority and the last parent, and reads back
//! to a fixed point (read → write → read gives the same fields).
#![no_main]

use http::{HeaderMap, HeaderName};
use libfuzzer_sys::fuzz_target;
use meshtrace_proxy::propagation::datadog::{self, from_tracestate_member, tracestate_member};
use meshtrace_proxy::propagation::{DatadogMeta, Extracted, Outgoing, Sampling, TraceState};
use meshtrace_proxy_fuzz::{reread, segments, tag, value};

static NAMES: [&HeaderName; 5] = [
    &datadog::TRACE_ID,
    &datadog::PARENT_ID,
    &datadog::SAMPLING_PRIORITY,
    &datadog::ORIGIN,
    &datadog::TAGS,
];

/// The priority written for `meta` under `sampling` (module doc: the Datadog
/// one while it agrees with the decision, else 1/0; none when deferred without).
fn expected_priority(meta: Option<i8>, sampling: Sampling) -> Option<i8> {
    match (sampling, meta) {
        (Sampling::Deferred, p) => p,
        (s, Some(p)) if (p > 0) == s.is_sampled() => Some(p),
        (Sampling::Sampled, _) => Some(1),
        (Sampling::NotSampled, _) => Some(0),
    }
}

/// `tracestate_member` output is valid and re-readable; returns what it read.
fn member_round_trip(meta: &DatadogMeta, sampling: Sampling) -> Option<DatadogMeta> {
    let written = tracestate_member(meta, sampling)?;
    assert!(!written.is_empty());
    assert!(
        "dd=".len() + written.len() <= 256,
        "dd member too long: {written:?}"
    );
    let mut state = TraceState::default();
    assert!(
        state.set_front("dd", &written),
        "not a tracestate value: {written:?}"
    );
    assert_eq!(state.get("dd"), Some(&*written));

    let read = from_tracestate_member(&written);
    assert_eq!(
        read.priority,
        expected_priority(meta.priority, sampling),
        "dd member priority: {meta:?} -> {written:?}"
    );
    // However long the origin, `p:` survives.
    assert_eq!(
        read.last_parent, meta.last_parent,
        "dd member p: {written:?}"
    );
    let origin = meta.origin.as_deref().filter(|o| !o.is_empty());
    assert!(
        read.origin.is_none() || origin.is_some(),
        "dd member invented o: {written:?}"
    );
    // (An origin too long for the 256-character member is left out.)
    if origin.is_some_and(|o| o.len() <= 200) {
        assert!(
            read.origin.is_some(),
            "dd member lost o: {meta:?} -> {written:?}"
        );
    }
    assert!(
        read.tags.len() <= meta.tags.len(),
        "dd member invented tags: {written:?}"
    );
    // Escaping is lossy once; what we wrote must then be stable.
    let rewritten = tracestate_member(&read, sampling);
    let reread_meta = rewritten.as_deref().map(from_tracestate_member);
    assert_eq!(
        reread_meta.as_ref(),
        Some(&read),
        "dd member not a fixed point: {meta:?} -> {written:?} -> {rewritten:?}"
    );
    Some(read)
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    let mut members = Vec::new();
    for segment in segments(data) {
        let Some((&t, rest)) = segment.split_first() else {
            continue;
        };
        match NAMES.get(tag(t, NAMES.len() + 1)) {
            Some(name) => {
                if let Some(v) = value(rest) {
                    headers.append(*name, v);
                }
            }
            None => members.push(String::from_utf8_lossy(rest)),
        }
    }

    for member in &members {
        let meta = from_tracestate_member(member);
        for sampling in [Sampling::Sampled, Sampling::NotSampled, Sampling::Deferred] {
            member_round_trip(&meta, sampling);
        }
    }

    let context = match datadog::extract(&headers) {
        Extracted::Context(context) => context,
        Extracted::DecisionOnly { debug, .. } => {
            assert!(!debug, "datadog has no debug flag");
            return;
        }
        Extracted::Absent | Extracted::Invalid(_) => return,
    };
    let meta = context
        .datadog
        .as_ref()
        .expect("datadog context without Datadog fields");
    assert_eq!(meta.last_parent, Some(context.parent_id));
    assert!(
        meta.tags.iter().all(|(name, _)| name != "tid"),
        "tid kept as a tag: {meta:?}"
    );

    let out = Outgoing {
        context: &context,
        span_parent: None,
        narrow_ids: false,
    };
    for mut written in [HeaderMap::new(), headers.clone()] {
        datadog::inject(&out, &mut written);
        let again = reread("datadog", datadog::extract(&written), &written);
        assert_eq!(
            again.trace_id, context.trace_id,
            "datadog trace id: {written:?}"
        );
        assert_eq!(
            again.parent_id, context.parent_id,
            "datadog parent id: {written:?}"
        );
        assert_eq!(
            again.sampling, context.sampling,
            "datadog sampling: {written:?}"
        );
        assert_eq!(again.narrow, context.narrow, "datadog width: {written:?}");
        assert_eq!(
            again.datadog, context.datadog,
            "datadog fields: {written:?}"
        );
        assert_eq!(again, context, "datadog context: {written:?}");

        datadog::strip(&mut written);
        assert_eq!(
            datadog::extract(&written),
            Extracted::Absent,
            "datadog strip"
        );
    }

    // The same fields through the `dd=` member (Datadog -> W3C -> Datadog).
    if let Some(read) = member_round_trip(meta, context.sampling) {
        assert_eq!(read.priority, meta.priority, "dd member lost the priority");
    }
});
