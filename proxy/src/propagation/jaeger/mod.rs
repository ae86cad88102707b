//! Jaeger's native propagation format: `uber-trace-id`.
//!
//! `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}`
//!
//! - `trace-id`: 64 or 128 bits in hex, 1–32 digits, not necessarily padded
//!   (shorter values are zero-padded on the left). Zero is invalid. An id of at
//!   most 16 digits marks the context `narrow`, so it can be written back as 16.
//! - `span-id`: 64 bits in hex, 1–16 digits, the caller's span: it becomes
//!   `context.parent_id`. Zero is invalid.
//! - `parent-span-id`: deprecated; 1–16 hex digits, `0` meaning "root". Checked,
//!   then dropped: inject writes the sidecar span's own parent
//!   ([`Outgoing::span_parent`]) or `0`.
//! - `flags`: one byte as 1–2 hex digits. Bit 0x1 is "sampled" (0 is a decision
//!   not to sample: Jaeger never defers); bit 0x2 is "debug", which implies
//!   sampled. Other bits are unused and ignored.
//!
//!   Debug is read as *sampled*, not as a force signal: OpenTelemetry's Jaeger
//!   propagator sets 0x2 on every sampled span, so honouring it would turn all
//!   such traffic into B3 debug / Datadog user-keep traces downstream. (A debug
//!   decision from a format that means it — B3 — is still written as `3`.)
//! - Hex is lower-case on the wire; upper-case is accepted on read.
//! - Some clients send the value URL-encoded (`%3A` for `:`); such a value is
//!   percent-decoded first.
//! - All four fields are required; there is no flags-only form. Two
//!   `uber-trace-id` headers are ambiguous, so invalid.
//!
//! We send `{trace-id}:{span-id}:{parent-span-id or 0}:{flags}` with a 32-digit
//! trace id (16 when narrow ids are asked for), a 16-digit span id, and flags `1`,
//! `0`, or `3` (debug). A deferred decision is sent as `0`: the format has no way
//! to defer. Baggage (`uberctx-*`) is not this module's concern and passes through.

use http::header::{HeaderMap, HeaderName};

use super::context::{Sampling, SpanId, TraceContext, TraceId};
use super::value::{Buf, New, Sink};
use super::{hex, Extracted, Invalid, Outgoing};

/// `uber-trace-id`.
pub static UBER_TRACE_ID: HeaderName = HeaderName::from_static("uber-trace-id");

const SAMPLED: u8 = 0x01;
const DEBUG: u8 = 0x02;
/// The longest valid value: `{32}:{16}:{16}:{2}`.
const MAX_LEN: usize = 32 + 1 + 16 + 1 + 16 + 1 + 2;

/// Reads `uber-trace-id`.
pub fn extract(headers: &HeaderMap) -> Extracted {
    let mut lines = headers.get_all(&UBER_TRACE_ID).iter();
    match (lines.next(), lines.next()) {
        (None, _) => Extracted::Absent,
        (Some(value), None) => {
            parse(value.as_bytes()).map_or_else(Extracted::Invalid, Extracted::Context)
        }
        (Some(_), Some(_)) => {
            Extracted::Invalid(Invalid("uber-trace-id sent more than once (ambiguous)"))
        }
    }
}

const FIELDS: Invalid = Invalid("uber-trace-id is not trace-id:span-id:parent-span-id:flags");
const TRACE_ID_HEX: Invalid = Invalid("uber-trace-id trace-id is not 1 to 32 hex digits");
const TRACE_ID_ZERO: Invalid = Invalid("uber-trace-id trace-id is zero");
const SPAN_ID_HEX: Invalid = Invalid("uber-trace-id span-id is not 1 to 16 hex digits");
const SPAN_ID_ZERO: Invalid = Invalid("uber-trace-id span-id is zero");
const PARENT_HEX: Invalid = Invalid("uber-trace-id parent-span-id is not 1 to 16 hex digits");
const FLAGS_HEX: Invalid = Invalid("uber-trace-id flags is not 1 or 2 hex digits");

/// Parses an `uber-trace-id` value, plain or URL-encoded; `Err` names the rule
/// it breaks.
fn parse(v: &[u8]) -> Result<TraceContext, Invalid> {
    let mut buf = [0; MAX_LEN];
    let v = percent_decode(v, &mut buf)?;
    let mut fields = v.split(|&b| b == b':');
    let (Some(trace), Some(span), Some(parent), Some(flags), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(FIELDS);
    };
    let trace_id = hex::parse_u128(trace, true).ok_or(TRACE_ID_HEX)?;
    let trace_id = TraceId::new(trace_id).ok_or(TRACE_ID_ZERO)?;
    let parent_id = hex::parse_u64(span, true).ok_or(SPAN_ID_HEX)?;
    let parent_id = SpanId::new(parent_id).ok_or(SPAN_ID_ZERO)?;
    hex::parse_u64(parent, true).ok_or(PARENT_HEX)?;
    if flags.len() > 2 {
        return Err(FLAGS_HEX);
    }
    let flags = hex::parse_u64(flags, true).ok_or(FLAGS_HEX)?;
    let debug = flags & u64::from(DEBUG) != 0;
    let sampled = debug || flags & u64::from(SAMPLED) != 0;
    let mut c = TraceContext::new(trace_id, parent_id, Sampling::from_bool(sampled));
    c.narrow = trace.len() <= 16;
    Ok(c)
}

const ESCAPE: Invalid = Invalid("uber-trace-id has a '%' not followed by 2 hex digits");
const DECODED_TOO_LONG: Invalid =
    Invalid("uber-trace-id, percent-decoded, is longer than any valid value");

/// `v` with `%XX` escapes decoded into `buf`, or `v` itself when it has none;
/// `Err` for a broken escape or a result longer than any valid value.
fn percent_decode<'a>(v: &'a [u8], buf: &'a mut [u8; MAX_LEN]) -> Result<&'a [u8], Invalid> {
    if !v.contains(&b'%') {
        return Ok(v);
    }
    let mut len = 0;
    let mut rest = v;
    while let Some((&b, tail)) = rest.split_first() {
        let (byte, tail) = match (b, tail) {
            (b'%', [hi, lo, tail @ ..]) => {
                let byte = hex::parse_u64(&[*hi, *lo], true).ok_or(ESCAPE)?;
                (u8::try_from(byte).map_err(|_| ESCAPE)?, tail)
            }
            (b'%', _) => return Err(ESCAPE),
            (b, tail) => (b, tail),
        };
        *buf.get_mut(len).ok_or(DECODED_TOO_LONG)? = byte;
        len += 1;
        rest = tail;
    }
    buf.get(..len).ok_or(DECODED_TOO_LONG)
}

/// Writes `uber-trace-id`, replacing any already there.
pub fn inject(out: &Outgoing<'_>, headers: &mut HeaderMap) {
    write(out, headers);
}

/// [`inject`], into any [`Sink`].
pub(crate) fn write<S: Sink>(out: &Outgoing<'_>, headers: &mut S) {
    let c = out.context;
    let mut v = Buf::new();
    hex::push_trace_id(&mut v, c.trace_id.get(), out.narrow_ids);
    v.push(b':');
    v.extend(&hex::u64_16(c.parent_id.get()));
    v.push(b':');
    match out.span_parent {
        Some(parent) => v.extend(&hex::u64_16(parent.get())),
        None => v.push(b'0'),
    }
    v.push(b':');
    // Flags as one hex digit: debug | sampled, sampled, or neither.
    v.push(match c.sampling {
        _ if c.debug => b'3',
        Sampling::Sampled => b'1',
        Sampling::NotSampled | Sampling::Deferred => b'0',
    });
    // Hex digits and `:`: always a valid header value.
    headers.set(&UBER_TRACE_ID, New::digits(v.get()));
}

/// Removes `uber-trace-id` (baggage headers stay).
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(&UBER_TRACE_ID);
}

#[cfg(test)]
mod tests;
