//! Zipkin B3, multi-header (`X-B3-*`) and single-header (`b3`) encodings.
//!
//! Both encodings carry the same fields, so they share one module: ids and
//! sampling state are parsed once, here.
//!
//! Fields (hex is lower-case on the wire; upper-case is accepted on read):
//!
//! - TraceId: 16 or 32 hex digits (64 or 128 bits). A 64-bit id is left-padded to
//!   128 bits and the context is marked `narrow`, so it can be written back as 16.
//! - SpanId: 16 hex digits, the caller's span: it becomes `context.parent_id`.
//! - ParentSpanId: optional, 16 hex digits, the caller's parent. Checked, then
//!   dropped: the sidecar's own span has the caller as its parent, and inject
//!   writes that ([`Outgoing::span_parent`]).
//! - No id may be zero.
//! - Sampling state: Defer (absent), Deny, Accept, or Debug, a forced accept.
//!
//! Multi-header, one header per field:
//!
//! - `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-ParentSpanId`.
//! - `X-B3-Sampled: 1` accept, `0` deny (legacy `true` / `false` are accepted
//!   on read), absent defer.
//! - `X-B3-Flags: 1` debug, which implies accept, so `X-B3-Sampled` is not sent
//!   with it; when both arrive, debug wins.
//! - When a header is repeated, the first value wins.
//! - Both ids, or neither: with neither, a lone sampling state is a decision
//!   without ids ([`Extracted::DecisionOnly`]).
//!
//! Single header, `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`:
//!
//! - SamplingState is one character: `1` accept, `0` deny, `d` debug; absent
//!   defers. ParentSpanId can only follow a sampling state.
//! - `b3: 0`, `b3: 1`, `b3: d` carry a decision without ids.
//! - Anything else (empty fields, trailing `-`, a fifth field) is invalid.
//!
//! Which of the two wins when both arrive (B3 says single) is for the policy.
//! Inject always writes lower-case header names (HTTP/2 requires them).

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::context::{Sampling, SpanId, TraceContext, TraceId};
use super::value::{first_values, Buf, New, Sink};
use super::{hex, Extracted, Invalid, Outgoing};

/// `x-b3-traceid`.
pub static X_B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// `x-b3-spanid`.
pub static X_B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// `x-b3-parentspanid`.
pub static X_B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// `x-b3-sampled`.
pub static X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// `x-b3-flags`.
pub static X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
/// `b3`.
pub static B3: HeaderName = HeaderName::from_static("b3");

const MULTI: [&HeaderName; 5] = [
    &X_B3_TRACE_ID,
    &X_B3_SPAN_ID,
    &X_B3_PARENT_SPAN_ID,
    &X_B3_SAMPLED,
    &X_B3_FLAGS,
];

/// A sampling decision and the debug flag, as B3 pairs them.
type State = (Sampling, bool);

const DEFER: State = (Sampling::Deferred, false);
const DEBUG: State = (Sampling::Sampled, true);

// === multi-header ===

/// Reads the `X-B3-*` headers.
pub fn extract_multi(headers: &HeaderMap) -> Extracted {
    let [trace, span, parent, sampled, flags] = first_values(headers, "x-b3-", MULTI);
    let state = match multi_state(sampled, flags) {
        Ok(state) => state,
        Err(invalid) => return Extracted::Invalid(invalid),
    };
    let ids = match (trace, span, parent) {
        (None, None, None) if sampled.is_none() && flags.is_none() => return Extracted::Absent,
        (None, None, None) => return decision(state),
        (Some(trace), Some(span), parent) => context(trace, span, parent, state, &MULTI_IDS),
        (Some(_), None, _) => Err(Invalid("x-b3-traceid without x-b3-spanid")),
        (None, Some(_), _) => Err(Invalid("x-b3-spanid without x-b3-traceid")),
        (None, None, Some(_)) => Err(Invalid(
            "x-b3-parentspanid without x-b3-traceid and x-b3-spanid",
        )),
    };
    ids.map_or_else(Extracted::Invalid, Extracted::Context)
}

/// `X-B3-Sampled` and `X-B3-Flags`; `Err` when either is malformed.
fn multi_state(sampled: Option<&[u8]>, flags: Option<&[u8]>) -> Result<State, Invalid> {
    let debug = match flags {
        None | Some(b"0") => false,
        Some(b"1") => true,
        Some(_) => return Err(Invalid("x-b3-flags is neither 0 nor 1")),
    };
    let sampling = match sampled {
        None => Sampling::Deferred,
        Some(v) if v == b"1" || v.eq_ignore_ascii_case(b"true") => Sampling::Sampled,
        Some(v) if v == b"0" || v.eq_ignore_ascii_case(b"false") => Sampling::NotSampled,
        Some(_) => return Err(Invalid("x-b3-sampled is none of 0, 1, true, false")),
    };
    Ok(if debug { DEBUG } else { (sampling, false) })
}

/// Writes the `X-B3-*` headers, replacing any already there.
pub fn inject_multi(out: &Outgoing<'_>, headers: &mut HeaderMap) {
    write_multi(out, headers, true);
}

/// [`inject_multi`]; `arrived` says whether the request may carry `X-B3-*`
/// headers (without, the ones not written need no removing).
pub(crate) fn write_multi<S: Sink>(out: &Outgoing<'_>, headers: &mut S, arrived: bool) {
    let c = out.context;
    let mut trace = Buf::new();
    hex::push_trace_id(&mut trace, c.trace_id.get(), out.narrow_ids);
    let span = hex::u64_16(c.parent_id.get());
    let parent = out.span_parent.map(|p| hex::u64_16(p.get()));
    let parent = parent.as_ref().map_or(New::Remove, |p| New::Digits(p));
    // Debug implies accept: B3 sends the flag instead of `X-B3-Sampled`.
    let (sampled, flags) = match state_char(c) {
        Some(b'd') => (New::Remove, New::Made(&ONE)),
        Some(b'1') => (New::Made(&ONE), New::Remove),
        Some(_) => (New::Made(&ZERO), New::Remove),
        None => (New::Remove, New::Remove),
    };
    headers.set_all(
        "x-b3-",
        [
            (&X_B3_TRACE_ID, New::digits(trace.get())),
            (&X_B3_SPAN_ID, New::Digits(&span)),
            (&X_B3_PARENT_SPAN_ID, parent),
            (&X_B3_SAMPLED, sampled),
            (&X_B3_FLAGS, flags),
        ],
        arrived,
    );
}

static ONE: HeaderValue = HeaderValue::from_static("1");
static ZERO: HeaderValue = HeaderValue::from_static("0");

/// Removes every `X-B3-*` header.
pub fn strip_multi(headers: &mut HeaderMap) {
    for name in MULTI {
        headers.remove(name);
    }
}

// === single header ===

/// Reads the `b3` header.
pub fn extract_single(headers: &HeaderMap) -> Extracted {
    match headers.get(&B3) {
        None => Extracted::Absent,
        Some(value) => parse_single(value.as_bytes()).unwrap_or_else(Extracted::Invalid),
    }
}

/// Parses a `b3` value; `Err` names the rule it breaks.
fn parse_single(v: &[u8]) -> Result<Extracted, Invalid> {
    let mut fields = v.split(|&b| b == b'-');
    // `split` yields at least one (possibly empty) field.
    let first = fields.next().unwrap_or_default();
    let Some(span) = fields.next() else {
        return single_state(first).map(decision).ok_or(Invalid(
            "b3 with one field is not a sampling state 0, 1 or d",
        ));
    };
    let state = match fields.next() {
        None => DEFER,
        Some(state) => single_state(state).ok_or(Invalid("b3 sampling state is not 0, 1 or d"))?,
    };
    let parent = fields.next();
    if fields.next().is_some() {
        return Err(Invalid("b3 has more than 4 fields"));
    }
    context(first, span, parent, state, &SINGLE_IDS).map(Extracted::Context)
}

/// The one-character sampling state of `b3`.
fn single_state(v: &[u8]) -> Option<State> {
    match v {
        b"1" => Some((Sampling::Sampled, false)),
        b"0" => Some((Sampling::NotSampled, false)),
        b"d" => Some(DEBUG),
        _ => None,
    }
}

/// Writes the `b3` header, replacing any already there. A parent is written only
/// after a sampling state (the grammar has no slot for it otherwise).
pub fn inject_single(out: &Outgoing<'_>, headers: &mut HeaderMap) {
    write_single(out, headers);
}

/// [`inject_single`], into any [`Sink`].
pub(crate) fn write_single<S: Sink>(out: &Outgoing<'_>, headers: &mut S) {
    let c = out.context;
    let mut v = Buf::new();
    hex::push_trace_id(&mut v, c.trace_id.get(), out.narrow_ids);
    v.push(b'-');
    v.extend(&hex::u64_16(c.parent_id.get()));
    if let Some(state) = state_char(c) {
        v.extend(&[b'-', state]);
        if let Some(parent) = out.span_parent {
            v.push(b'-');
            v.extend(&hex::u64_16(parent.get()));
        }
    }
    headers.set(&B3, New::digits(v.get()));
}

/// Removes the `b3` header.
pub fn strip_single(headers: &mut HeaderMap) {
    headers.remove(&B3);
}

// === shared by both encodings ===

/// The rules an id field can break, worded for one encoding's field names.
struct IdRules {
    trace_hex: Invalid,
    trace_zero: Invalid,
    span_hex: Invalid,
    span_zero: Invalid,
    parent_hex: Invalid,
    parent_zero: Invalid,
}

const MULTI_IDS: IdRules = IdRules {
    trace_hex: Invalid("x-b3-traceid is not 16 or 32 hex digits"),
    trace_zero: Invalid("x-b3-traceid is all zeros"),
    span_hex: Invalid("x-b3-spanid is not 16 hex digits"),
    span_zero: Invalid("x-b3-spanid is all zeros"),
    parent_hex: Invalid("x-b3-parentspanid is not 16 hex digits"),
    parent_zero: Invalid("x-b3-parentspanid is all zeros"),
};

const SINGLE_IDS: IdRules = IdRules {
    trace_hex: Invalid("b3 trace id is not 16 or 32 hex digits"),
    trace_zero: Invalid("b3 trace id is all zeros"),
    span_hex: Invalid("b3 span id is not 16 hex digits"),
    span_zero: Invalid("b3 span id is all zeros"),
    parent_hex: Invalid("b3 parent span id is not 16 hex digits"),
    parent_zero: Invalid("b3 parent span id is all zeros"),
};

/// A context from the id fields; `Err` names the first malformed or zero one.
fn context(
    trace: &[u8],
    span: &[u8],
    parent: Option<&[u8]>,
    (sampling, debug): State,
    rules: &IdRules,
) -> Result<TraceContext, Invalid> {
    let narrow = match trace.len() {
        16 => true,
        32 => false,
        _ => return Err(rules.trace_hex),
    };
    let trace_id = hex::parse_u128(trace, true).ok_or(rules.trace_hex)?;
    let trace_id = TraceId::new(trace_id).ok_or(rules.trace_zero)?;
    let parent_id = span_id(span, rules.span_hex, rules.span_zero)?;
    if let Some(parent) = parent {
        span_id(parent, rules.parent_hex, rules.parent_zero)?;
    }
    let mut c = TraceContext::new(trace_id, parent_id, sampling);
    c.debug = debug;
    c.narrow = narrow;
    Ok(c)
}

/// A 16-digit, non-zero span id.
fn span_id(v: &[u8], hex_rule: Invalid, zero_rule: Invalid) -> Result<SpanId, Invalid> {
    if v.len() != 16 {
        return Err(hex_rule);
    }
    SpanId::new(hex::parse_u64(v, true).ok_or(hex_rule)?).ok_or(zero_rule)
}

fn decision((sampling, debug): State) -> Extracted {
    Extracted::DecisionOnly { sampling, debug }
}

/// The context's sampling state as `b3` spells it: `d`, `1`, `0`; `None` to defer.
fn state_char(c: &TraceContext) -> Option<u8> {
    match c.sampling {
        _ if c.debug => Some(b'd'),
        Sampling::Sampled => Some(b'1'),
        Sampling::NotSampled => Some(b'0'),
        Sampling::Deferred => None,
    }
}

#[cfg(test)]
mod tests;
