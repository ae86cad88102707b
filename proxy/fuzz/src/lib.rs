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
