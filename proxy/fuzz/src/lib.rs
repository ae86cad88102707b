//! Helpers shared by the fuzz targets: turning fuzz bytes into header maps.
//!
//! Input scheme: the input is split on [`SEP`] (`0xFF`) into segments, one
//! header value each. `0xFF` is therefore never part of a value (other bytes
//! `0x80..=0xFE`, obs-text, still are). Values `HeaderValue::from_bytes`
//! rejects (control characters) are skipped.
//!
//! - Positional targets (`w3c`, `tracestate`, `jaeger`) give each segment a
//!   fixed role (see the target).
//! - Tagged targets (`b3`, `datadog`, `extract`) read a segment's first byte as
//!   the header it is for: `(byte - b'0') % names.len()`, so `'0'`, `'1'`, …
//!   select the first, second, … name; the rest of the segment is the value.
//!   A name can repeat (the value is appended, as a second header line).

pub mod head;
pub mod stack;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use meshtrace_proxy::propagation::{Extracted, TraceContext};

/// Separates header values in a fuzz input.
pub const SEP: u8 = 0xFF;

/// The input's segments.
pub fn segments(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == SEP)
}

/// The bytes as a header value; `None` where `http` rejects them.
pub fn value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

/// Which of `n` names a tag byte selects.
pub fn tag(byte: u8, n: usize) -> usize {
    usize::from(byte.wrapping_sub(b'0')) % n
}

/// Headers from tagged segments (see the module doc).
pub fn tagged_headers(data: &[u8], names: &[&HeaderName]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for segment in segments(data) {
        let Some((&t, rest)) = segment.split_first() else {
            continue;
        };
        if let Some(v) = value(rest) {
            headers.append(names[tag(t, names.len())].clone(), v);
        }
    }
    headers
}

/// The context re-read from headers the codec itself wrote; panics (a finding)
/// with the headers when the codec cannot read its own output.
pub fn reread(what: &str, extracted: Extracted, headers: &HeaderMap) -> TraceContext {
    match extracted {
        Extracted::Context(c) => c,
        other => panic!("{what}: cannot re-read what it wrote: {other:?} from {headers:?}"),
    }
}

/// Asserts that `again`, re-read from `written`, kept everything a codec with
/// 64/128-bit trace ids carries of `context` when written with `narrow_ids`: the
/// trace id (cut to its low 64 bits when narrowed — never an id whose low half is
/// zero, which would become all zero), the span id, the sampling decision, the
/// debug flag and the width.
pub fn assert_round_trip(
    what: &str,
    again: &TraceContext,
    context: &TraceContext,
    narrow_ids: bool,
    written: &HeaderMap,
) {
    let narrowed = narrow_ids && context.trace_id.low() != 0;
    let trace_id = if narrowed {
        u128::from(context.trace_id.low())
    } else {
        context.trace_id.get()
    };
    assert_eq!(
        again.trace_id.get(),
        trace_id,
        "{what} trace id: {written:?}"
    );
    assert_eq!(
        again.parent_id, context.parent_id,
        "{what} span id: {written:?}"
    );
    assert_eq!(
        again.sampling, context.sampling,
        "{what} sampling: {written:?}"
    );
    assert_eq!(again.debug, context.debug, "{what} debug: {written:?}");
    assert_eq!(again.narrow, narrowed, "{what} width: {written:?}");
}
