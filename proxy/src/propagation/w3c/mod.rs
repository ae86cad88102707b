//! W3C Trace Context Level 2: `traceparent` and `tracestate`.
//!
//! `traceparent: {version}-{trace-id}-{parent-id}-{trace-flags}`
//!
//! - All fields are lower-case hex: `version` 2, `trace-id` 32, `parent-id` 16,
//!   `trace-flags` 2 digits. Upper-case hex is invalid.
//! - Version `ff` is invalid. Version `00` is exactly 55 characters. A higher
//!   (future) version is parsed by the forward-compatibility rules: at least 55
//!   characters, the four known fields read as version 00 defines them, and, if
//!   longer, a `-` right after the flags (what follows is ignored).
//! - An all-zero trace-id or parent-id is invalid.
//! - `trace-flags`: bit 0 `sampled`, bit 1 `random` (Level 2: the trace-id's
//!   rightmost 7 bytes are random); other bits are ignored on read and written as 0.
//! - An invalid `traceparent` means no context: a new trace starts and the
//!   `tracestate` is dropped with it. A valid `traceparent` with an invalid
//!   `tracestate` keeps the context and drops only the tracestate.
//!
//! We always send version `00`. `tracestate` rules are in
//! [`super::tracestate`]; a `dd=` member is read into the context's Datadog
//! fields (see [`super::datadog`]) so W3C → Datadog loses nothing.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::context::{Sampling, SpanId, TraceContext, TraceId};
use super::tracestate::TraceState;
use super::value::{New, Sink, SCAN_MAX};
use super::{datadog, hex, Extracted, Invalid, Outgoing};

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

const SAMPLED: u8 = 0x01;
const RANDOM: u8 = 0x02;
const LEN_V00: usize = 55;

/// Reads `traceparent` (and, when it is valid, `tracestate`).
pub fn extract(headers: &HeaderMap) -> Extracted {
    extract_found(headers, Found::find(headers))
}

/// [`extract`] from the lines a pass over the request's headers already
/// found (`headers` is read again only for a `tracestate` sent as several
/// lines).
pub(crate) fn extract_found(headers: &HeaderMap, found: Found<'_>) -> Extracted {
    let value = match found.traceparent {
        Line::Absent => return Extracted::Absent,
        // Sent twice is ambiguous: invalid.
        Line::Many => return Extracted::Invalid(SENT_TWICE),
        Line::One(value) => value,
    };
    let mut context = match parse_traceparent(value.as_bytes()) {
        Ok(context) => context,
        Err(invalid) => return Extracted::Invalid(invalid),
    };
    // An invalid tracestate is dropped on its own; the traceparent stands.
    let tracestate = match found.tracestate {
        Line::Absent => Ok(TraceState::default()),
        Line::One(line) => TraceState::parse([line]),
        Line::Many => TraceState::parse(headers.get_all(&TRACESTATE)),
    };
    context.tracestate = tracestate.unwrap_or_default();
    if let Some(dd) = context.tracestate.get("dd") {
        context.datadog = Some(Box::new(datadog::from_tracestate_member(dd)));
    }
    Extracted::Context(context)
}

/// A header's lines: none, exactly one, or several.
#[derive(Clone, Copy, Debug, Default)]
enum Line<'a> {
    #[default]
    Absent,
    One(&'a HeaderValue),
    Many,
}

impl<'a> Line<'a> {
    fn of(mut lines: http::header::ValueIter<'a, HeaderValue>) -> Self {
        match (lines.next(), lines.next()) {
            (None, _) => Self::Absent,
            (Some(value), None) => Self::One(value),
            (Some(_), Some(_)) => Self::Many,
        }
    }

    fn add(&mut self, value: &'a HeaderValue) {
        *self = match self {
            Self::Absent => Self::One(value),
            Self::One(_) | Self::Many => Self::Many,
        };
    }
}

/// The request's `traceparent` and `tracestate` lines.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Found<'a> {
    traceparent: Line<'a>,
    tracestate: Line<'a>,
}

impl<'a> Found<'a> {
    fn find(headers: &'a HeaderMap) -> Self {
        if headers.keys_len() > SCAN_MAX {
            return Self {
                traceparent: Line::of(headers.get_all(&TRACEPARENT).iter()),
                tracestate: Line::of(headers.get_all(&TRACESTATE).iter()),
            };
        }
        let mut found = Self::default();
        for (name, value) in headers {
            if *name == TRACEPARENT {
                found.traceparent.add(value);
            } else if *name == TRACESTATE {
                found.tracestate.add(value);
            }
        }
        found
    }

    /// Notes one header line, if it is W3C's; returns whether it was.
    #[inline(always)]
    pub(crate) fn add(&mut self, name: &str, value: &'a HeaderValue) -> bool {
        let line = match name {
            "traceparent" => &mut self.traceparent,
            "tracestate" => &mut self.tracestate,
            _ => return false,
        };
        line.add(value);
        true
    }
}

const SENT_TWICE: Invalid = Invalid("traceparent sent more than once (ambiguous)");
const TOO_SHORT: Invalid = Invalid("traceparent is shorter than 55 characters");
const VERSION_HEX: Invalid = Invalid("traceparent version is not 2 lower-case hex digits");
const VERSION_FF: Invalid = Invalid("traceparent version ff is forbidden");
const V00_LENGTH: Invalid = Invalid("traceparent version 00 is not exactly 55 characters");
const FUTURE_DELIMITER: Invalid =
    Invalid("traceparent of a future version has no '-' after trace-flags");
const DELIMITER: Invalid =
    Invalid("traceparent fields are not separated by '-' at positions 2, 35 and 52");
const TRACE_ID_HEX: Invalid = Invalid("trace-id is not 32 lower-case hex digits");
const TRACE_ID_ZERO: Invalid = Invalid("trace-id is all zeros");
const PARENT_ID_HEX: Invalid = Invalid("parent-id is not 16 lower-case hex digits");
const PARENT_ID_ZERO: Invalid = Invalid("parent-id is all zeros");
const FLAGS_HEX: Invalid = Invalid("trace-flags is not 2 lower-case hex digits");

/// Parses a `traceparent` value; `Err` names the rule it breaks.
pub fn parse_traceparent(v: &[u8]) -> Result<TraceContext, Invalid> {
    // The fields sit at fixed offsets of the first 55 bytes, read as arrays
    // of their own lengths (the hex reader takes 2 or 16 digits exactly).
    let Some(head) = v.first_chunk::<LEN_V00>() else {
        return Err(TOO_SHORT);
    };
    let version = hex::parse_2([head[0], head[1]]).ok_or(VERSION_HEX)?;
    if version == 0xff {
        return Err(VERSION_FF);
    }
    if version == 0 && v.len() != LEN_V00 {
        return Err(V00_LENGTH);
    }
    if v.len() > LEN_V00 && v[LEN_V00] != b'-' {
        return Err(FUTURE_DELIMITER);
    }
    if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
        return Err(DELIMITER);
    }
    let sixteen = |at: usize| {
        let digits = head.get(at..at + 16)?.try_into().ok()?;
        hex::parse_16(digits, false)
    };
    let high = sixteen(3).ok_or(TRACE_ID_HEX)?;
    let low = sixteen(19).ok_or(TRACE_ID_HEX)?;
    let trace_id = TraceId::new(u128::from(high) << 64 | u128::from(low)).ok_or(TRACE_ID_ZERO)?;
    let parent_id = sixteen(36).ok_or(PARENT_ID_HEX)?;
    let parent_id = SpanId::new(parent_id).ok_or(PARENT_ID_ZERO)?;
    let flags = hex::parse_2([head[53], head[54]]).ok_or(FLAGS_HEX)?;
    let mut context = TraceContext::new(
        trace_id,
        parent_id,
        Sampling::from_bool(flags & SAMPLED != 0),
    );
    context.random = flags & RANDOM != 0;
    Ok(context)
}

/// Writes `traceparent` (version 00) and the context's `tracestate`.
pub fn inject(out: &Outgoing<'_>, headers: &mut HeaderMap) {
    write(out, headers, true);
}

/// [`inject`]; `arrived` says whether the request may carry W3C headers
/// (without, no `tracestate` needs removing).
pub(crate) fn write<S: Sink>(out: &Outgoing<'_>, headers: &mut S, arrived: bool) {
    let c = out.context;
    let mut flags = 0;
    if c.sampling.is_sampled() || c.debug {
        flags |= SAMPLED;
    }
    if c.random {
        flags |= RANDOM;
    }
    let mut v = [0u8; LEN_V00];
    v[..3].copy_from_slice(b"00-");
    hex::write(c.trace_id.get(), &mut v[3..35]);
    v[35] = b'-';
    hex::write(u128::from(c.parent_id.get()), &mut v[36..52]);
    v[52] = b'-';
    hex::write(u128::from(flags), &mut v[53..55]);
    // Usually the caller's own tracestate, kept as it came.
    let tracestate = c.tracestate.header_value().map_or(New::Remove, New::Made);
    headers.set_all(
        "trace",
        [(&TRACEPARENT, New::Digits(&v)), (&TRACESTATE, tracestate)],
        arrived,
    );
}

/// Removes `traceparent` and `tracestate`.
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(&TRACEPARENT);
    headers.remove(&TRACESTATE);
}

#[cfg(test)]
mod tests;
