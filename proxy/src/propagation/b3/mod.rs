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
use super::{hex, Extracted, Outgoing};

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
    let get = |name: &HeaderName| headers.get(name).map(HeaderValue::as_bytes);
    let (trace, span, parent) = (
        get(&X_B3_TRACE_ID),
        get(&X_B3_SPAN_ID),
        get(&X_B3_PARENT_SPAN_ID),
    );
    let (sampled, flags) = (get(&X_B3_SAMPLED), get(&X_B3_FLAGS));
    let Some(state) = multi_state(sampled, flags) else {
        return Extracted::Invalid;
    };
    match (trace, span, parent) {
        (None, None, None) if sampled.is_none() && flags.is_none() => Extracted::Absent,
        (None, None, None) => decision(state),
        (Some(trace), Some(span), parent) => {
            context(trace, span, parent, state).map_or(Extracted::Invalid, Extracted::Context)
        }
        _ => Extracted::Invalid,
    }
}

/// `X-B3-Sampled` and `X-B3-Flags`; `None` when either is malformed.
fn multi_state(sampled: Option<&[u8]>, flags: Option<&[u8]>) -> Option<State> {
    let debug = match flags {
        None | Some(b"0") => false,
        Some(b"1") => true,
        Some(_) => return None,
    };
    let sampling = match sampled {
        None => Sampling::Deferred,
        Some(v) if v == b"1" || v.eq_ignore_ascii_case(b"true") => Sampling::Sampled,
        Some(v) if v == b"0" || v.eq_ignore_ascii_case(b"false") => Sampling::NotSampled,
        Some(_) => return None,
    };
    Some(if debug { DEBUG } else { (sampling, false) })
}

/// Writes the `X-B3-*` headers, replacing any already there.
pub fn inject_multi(out: &Outgoing<'_>, headers: &mut HeaderMap) {
    let c = out.context;
    let mut trace = Vec::with_capacity(32);
    hex::push_trace_id(&mut trace, c.trace_id.get(), out.narrow_ids);
    insert(headers, &X_B3_TRACE_ID, &trace);
    insert(headers, &X_B3_SPAN_ID, &hex::u64_16(c.parent_id.get()));
    match out.span_parent {
        Some(parent) => insert(headers, &X_B3_PARENT_SPAN_ID, &hex::u64_16(parent.get())),
        None => drop(headers.remove(&X_B3_PARENT_SPAN_ID)),
    }
    // Debug implies accept: B3 sends the flag instead of `X-B3-Sampled`.
    let (set, clear) = match state_char(c) {
        Some(b'd') => (Some((&X_B3_FLAGS, "1")), &X_B3_SAMPLED),
        Some(b'1') => (Some((&X_B3_SAMPLED, "1")), &X_B3_FLAGS),
        Some(_) => (Some((&X_B3_SAMPLED, "0")), &X_B3_FLAGS),
        None => {
            headers.remove(&X_B3_SAMPLED);
            (None, &X_B3_FLAGS)
        }
    };
    headers.remove(clear);
    if let Some((name, value)) = set {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
}

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
        Some(value) => parse_single(value.as_bytes()).unwrap_or(Extracted::Invalid),
    }
}

/// Parses a `b3` value; `None` when invalid.
fn parse_single(v: &[u8]) -> Option<Extracted> {
    let mut fields = v.split(|&b| b == b'-');
    let first = fields.next()?;
    let Some(span) = fields.next() else {
        return single_state(first).map(decision);
    };
    let state = match fields.next() {
        None => DEFER,
        Some(state) => single_state(state)?,
    };
    let parent = fields.next();
    if fields.next().is_some() {
        return None;
    }
    context(first, span, parent, state).map(Extracted::Context)
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
    let c = out.context;
    let mut v = Vec::with_capacity(32 + 1 + 16 + 3 + 16);
    hex::push_trace_id(&mut v, c.trace_id.get(), out.narrow_ids);
    v.push(b'-');
    v.extend_from_slice(&hex::u64_16(c.parent_id.get()));
    if let Some(state) = state_char(c) {
        v.extend_from_slice(&[b'-', state]);
        if let Some(parent) = out.span_parent {
            v.push(b'-');
            v.extend_from_slice(&hex::u64_16(parent.get()));
        }
    }
    insert(headers, &B3, &v);
}

/// Removes the `b3` header.
pub fn strip_single(headers: &mut HeaderMap) {
    headers.remove(&B3);
}

// === shared by both encodings ===

/// A context from the id fields; `None` when any is malformed or zero.
fn context(
    trace: &[u8],
    span: &[u8],
    parent: Option<&[u8]>,
    (sampling, debug): State,
) -> Option<TraceContext> {
    let narrow = match trace.len() {
        16 => true,
        32 => false,
        _ => return None,
    };
    let trace_id = TraceId::new(hex::parse_u128(trace, true)?)?;
    let parent_id = span_id(span)?;
    if let Some(parent) = parent {
        span_id(parent)?;
    }
    let mut c = TraceContext::new(trace_id, parent_id, sampling);
    c.debug = debug;
    c.narrow = narrow;
    Some(c)
}

/// A 16-digit, non-zero span id.
fn span_id(v: &[u8]) -> Option<SpanId> {
    if v.len() != 16 {
        return None;
    }
    SpanId::new(hex::parse_u64(v, true)?)
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

fn insert(headers: &mut HeaderMap, name: &HeaderName, value: &[u8]) {
    // Hex, `-` and state characters: always a valid header value.
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name.clone(), value);
    }
}

#[cfg(test)]
mod tests;
