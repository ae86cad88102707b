//! The extraction policy over every format, and the injection policy after it:
//! what the sidecar reads, then writes, then its next hop reads.
//!
//! Input: byte 0 picks the conflict policy (bit 0), the id width (bits 1-2:
//! auto, 128, 64, auto) and the formats written (bits 3-7, one per format in
//! discriminant order: a set bit leaves that format out); byte 1 picks the extract
//! order (one of the 120 orders of the five formats); the rest is tagged
//! segments (see the crate doc) over every trace header: `'0'` traceparent,
//! `'1'` tracestate, `'2'` b3, `'3'`..`'7'` x-b3-traceid / spanid /
//! parentspanid / sampled / flags, `'8'`..`'<'` x-datadog-trace-id /
//! parent-id / sampling-priority / origin / tags, `'='` uber-trace-id.
//!
//! Checked: `Extractor::extract` does not panic and its result is consistent
//! (each format counted once, losers are conflicts with another trace id, a
//! decision only without a context). Then, as the sidecar does, the context is
//! re-parented onto the sidecar's span (or a new trace started), written in
//! the chosen formats over the incoming headers with `inject::write`, and
//! extracted again: every format written must read back valid, agreeing on the
//! trace id (unless `id_width: 64` truncated a 128-bit id for B3/Jaeger), with
//! the sidecar's span as parent and the same sampling, debug and random flags;
//! every format not written must be gone (header ownership: nothing stale
//! passes through).
#![no_main]

use http::{HeaderMap, HeaderName};
use libfuzzer_sys::fuzz_target;
use meshtrace_config::{ConflictPolicy, IdWidth};
use meshtrace_proxy::propagation::extract::{self, Extractor, Formats, Incoming};
use meshtrace_proxy::propagation::inject::{self, Plan};
use meshtrace_proxy::propagation::{
    b3, datadog, jaeger, w3c, Format, Outcome, Sampling, SpanId, TraceContext, TraceId,
};
use meshtrace_proxy_fuzz::tagged_headers;

static NAMES: [&HeaderName; 14] = [
    &w3c::TRACEPARENT,
    &w3c::TRACESTATE,
    &b3::B3,
    &b3::X_B3_TRACE_ID,
    &b3::X_B3_SPAN_ID,
    &b3::X_B3_PARENT_SPAN_ID,
    &b3::X_B3_SAMPLED,
    &b3::X_B3_FLAGS,
    &datadog::TRACE_ID,
    &datadog::PARENT_ID,
    &datadog::SAMPLING_PRIORITY,
    &datadog::ORIGIN,
    &datadog::TAGS,
    &jaeger::UBER_TRACE_ID,
];

/// The sidecar's own span id (fixed: fuzzing must be deterministic).
const SPAN: u64 = 0x5eed_0000_0000_5eed;
/// The trace id of a trace the sidecar starts.
const NEW_TRACE: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;

/// The `n`th (mod 120) order of the five formats.
fn order(n: u8) -> Vec<Format> {
    let mut pool = Format::ALL.to_vec();
    let mut n = usize::from(n) % 120;
    let mut out = Vec::with_capacity(pool.len());
    while !pool.is_empty() {
        let len = pool.len();
        out.push(pool.remove(n % len));
        n /= len;
    }
    out
}

fn extract(extractor: &Extractor, headers: &HeaderMap) -> (Incoming, Vec<(Format, Outcome)>) {
    let mut outcomes = Vec::new();
    let incoming = extractor.extract(headers, |f, o| outcomes.push((f, o)));
    for (i, (f, _)) in outcomes.iter().enumerate() {
        assert!(
            outcomes[..i].iter().all(|(g, _)| g != f),
            "{f:?} counted twice: {outcomes:?}"
        );
    }
    match &incoming.context {
        Some(c) => {
            assert!(
                incoming.decision.is_none(),
                "context and decision: {incoming:?}"
            );
            assert!(!incoming.formats.is_empty());
            for d in &incoming.discarded {
                assert_ne!(d.trace_id, c.trace_id, "discarded an agreeing context");
                assert!(outcomes.contains(&(d.format, Outcome::Conflict)));
                assert!(!incoming.formats.contains(d.format));
            }
            if !c.tracestate.is_empty() {
                assert!(
                    incoming.formats.contains(Format::TraceContext),
                    "{incoming:?}"
                );
            }
        }
        None => {
            assert!(incoming.discarded.is_empty());
            assert_eq!(incoming.decision.is_some(), !incoming.formats.is_empty());
            assert!(outcomes.iter().all(|(_, o)| *o != Outcome::Conflict));
        }
    }
    for f in incoming.formats.iter() {
        assert!(
            outcomes.contains(&(f, Outcome::Valid)),
            "{f:?} used, not valid"
        );
    }
    (incoming, outcomes)
}

/// What the sidecar sends: the caller's context on the sidecar's span, or a
/// new trace (as `propagation::start_span`, minus the randomness).
fn start_span(incoming: &Incoming) -> (TraceContext, Option<SpanId>) {
    let span = SpanId::new(SPAN).unwrap();
    let resolve = |s| {
        if s == Sampling::Deferred {
            Sampling::Sampled
        } else {
            s
        }
    };
    match incoming.context.clone() {
        Some(mut c) => {
            let parent = c.parent_id;
            c.parent_id = span;
            c.sampling = resolve(c.sampling);
            (c, Some(parent))
        }
        None => {
            let (sampling, debug) = incoming.decision.unwrap_or((Sampling::Sampled, false));
            let mut c =
                TraceContext::new(TraceId::new(NEW_TRACE).unwrap(), span, resolve(sampling));
            c.debug = debug;
            c.random = true;
            (c, None)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [control, order_byte, rest @ ..] = data else {
        return;
    };
    let conflict = if control & 1 == 0 {
        ConflictPolicy::First
    } else {
        ConflictPolicy::Tracecontext
    };
    let id_width = match (control >> 1) & 3 {
        1 => IdWidth::Bits128,
        2 => IdWidth::Bits64,
        _ => IdWidth::Auto,
    };
    let extractor = Extractor::new(order(*order_byte), conflict);
    let headers = tagged_headers(rest, &NAMES);

    let (incoming, _) = extract(&extractor, &headers);
    let (mut context, span_parent) = start_span(&incoming);

    let chosen: Formats = Format::ALL
        .into_iter()
        .filter(|f| (control >> (3 + *f as u8)) & 1 == 0)
        .collect();
    let plan = Plan {
        formats: chosen,
        id_width,
        target: 0,
        external: false,
    };
    let present = extract::present(&headers).formats;
    let mut written = headers.clone();
    // (`write` may update the context's tracestate: the `dd=` member.)
    inject::write(
        &plan,
        &mut context,
        span_parent,
        incoming.formats,
        present,
        &mut written,
    );
    let (again, outcomes) = extract(&extractor, &written);

    // Nothing but the chosen formats is left.
    let left = extract::present(&written).formats;
    assert_eq!(left.minus(chosen), Formats::default(), "stale: {written:?}");
    if chosen.is_empty() {
        assert_eq!(again.context, None, "{written:?}");
        return;
    }

    // Every chosen format was written (Datadog only when the low 64 bits are
    // not zero: it cannot carry such an id), so every one must read back.
    let low_zero = context.trace_id.low() == 0;
    let unwritten = |f: Format| !chosen.contains(f) || (low_zero && f == Format::Datadog);
    if Format::ALL.into_iter().all(unwritten) {
        return;
    }
    let invalid: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Invalid)
        .collect();
    assert!(
        invalid.is_empty(),
        "wrote unreadable {invalid:?}: {written:?}"
    );
    let narrowable = [Format::B3Multi, Format::B3Single, Format::Jaeger]
        .into_iter()
        .any(|f| chosen.contains(f));
    let truncated =
        narrowable && id_width == IdWidth::Bits64 && !context.trace_id.is_64_bit() && !low_zero;
    let c = again
        .context
        .as_ref()
        .expect("wrote every format, read no context");
    assert_eq!(c.parent_id, context.parent_id, "parent id: {written:?}");
    assert_eq!(
        c.sampling.is_sampled(),
        context.sampling.is_sampled() || context.debug,
        "sampling: {context:?} -> {written:?} -> {c:?}"
    );
    if truncated {
        // B3 and Jaeger carry only the low 64 bits: another trace id to them.
        assert!(
            c.trace_id == context.trace_id
                || u128::from(context.trace_id.low()) == c.trace_id.get()
        );
    } else {
        for format in Format::ALL.into_iter().filter(|f| !unwritten(*f)) {
            assert!(
                outcomes.contains(&(format, Outcome::Valid)),
                "{format:?} not valid: {outcomes:?}: {written:?}"
            );
        }
        assert_eq!(c.trace_id, context.trace_id, "trace id: {written:?}");
        // Only B3 carries the debug flag, and only W3C the random flag.
        if chosen.contains(Format::B3Multi) || chosen.contains(Format::B3Single) {
            assert_eq!(c.debug, context.debug, "debug: {written:?}");
        }
        if chosen.contains(Format::TraceContext) {
            assert_eq!(c.random, context.random, "random: {written:?}");
        }
    }

    // A trust boundary leaves nothing to read.
    let mut stripped = written;
    let external = Plan {
        formats: Formats::default(),
        external: true,
        ..plan
    };
    let present = extract::present(&stripped).formats;
    inject::write(
        &external,
        &mut context,
        span_parent,
        incoming.formats,
        present,
        &mut stripped,
    );
    let (none, outcomes) = extract(&extractor, &stripped);
    assert_eq!(none, Incoming::default(), "{stripped:?}");
    assert!(outcomes.is_empty());
});
