//! Datadog propagation: the `x-datadog-*` headers, and the `dd=` member Datadog
//! tracers keep in W3C `tracestate` (see [`tracestate_member`]).
//!
//! | header | value |
//! |---|---|
//! | `x-datadog-trace-id` | the trace id's low 64 bits, unsigned decimal |
//! | `x-datadog-parent-id` | the sender's span id, unsigned decimal |
//! | `x-datadog-sampling-priority` | -1 user drop, 0 auto drop, 1 auto keep, 2 user keep |
//! | `x-datadog-origin` | the product that started the trace (`synthetics`, `rum`) |
//! | `x-datadog-tags` | propagated trace tags: `_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000` |
//!
//! Reading:
//!
//! - Ids are 1–20 ASCII digits that fit a `u64` and are not zero: no sign, no
//!   spaces, no hex. A malformed id, one id without the other, or an id or
//!   priority header sent twice makes the context invalid.
//! - The priority is an integer (`-`? digits, fitting `i8`): above 0 keeps the
//!   trace, 0 and below drops it; the exact value is kept (2, user keep, is a
//!   force signal for the sampler, not `debug`). Malformed: invalid. Absent: the
//!   decision is deferred. A priority without ids is a decision only.
//! - `x-datadog-tags` is `tag *("," tag)`, `tag = key "=" value`; a key is
//!   printable ASCII without space, `,` and `=`; a value printable ASCII
//!   without `,`, trimmed of spaces, not empty. Only `_dd.p.*` keys propagate;
//!   a key repeated keeps its last value. A malformed header, or one over 512
//!   bytes (Datadog's limit), is ignored whole; the ids still count.
//! - `_dd.p.tid` carries the trace id's high 64 bits as exactly 16 lower-case
//!   hex digits: the ids form a 128-bit trace id. Without it the id arrived as
//!   64 bits (`narrow`). A malformed or all-zero `_dd.p.tid` is ignored.
//! - The parent id is also recorded as the last Datadog span (`p:` of `dd=`).
//!
//! Writing replaces every `x-datadog-*` header: the low 64 bits and the
//! sidecar's span id in decimal; the Datadog priority when it agrees with the
//! sampling decision (same keep/drop side), else 1/0 from the decision (2 when
//! `debug`), none when deferred without one; the origin; and `_dd.p.tid` (when
//! the high bits are not zero) followed by the other `_dd.p.*` tags, leaving out
//! any tag that would take the header over 512 bytes.
//!
//! Sources: dd-trace-py `propagation/http.py` (`_DatadogMultiHeader`) and
//! `internal/_tagset.pyx` (grammar, 512), dd-trace-go `ddtrace/tracer/textmap.go`
//! (`validateTID`, `composeTracestate`, `parseTracestate`, sanitizers).

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::context::{DatadogMeta, Sampling, SpanId, TraceContext, TraceId};
use super::value::{Buf, New, Sink};
use super::{hex, Extracted, Invalid, Outgoing};

mod member;

pub use member::{from_tracestate_member, tracestate_member};
pub(crate) use member::{member_str, write_member, Member};

/// `x-datadog-trace-id`.
pub static TRACE_ID: HeaderName = HeaderName::from_static("x-datadog-trace-id");
/// `x-datadog-parent-id`.
pub static PARENT_ID: HeaderName = HeaderName::from_static("x-datadog-parent-id");
/// `x-datadog-sampling-priority`.
pub static SAMPLING_PRIORITY: HeaderName = HeaderName::from_static("x-datadog-sampling-priority");
/// `x-datadog-origin`.
pub static ORIGIN: HeaderName = HeaderName::from_static("x-datadog-origin");
/// `x-datadog-tags`.
pub static TAGS: HeaderName = HeaderName::from_static("x-datadog-tags");

/// Every header this codec reads or writes.
static NAMES: [&HeaderName; 5] = [&TRACE_ID, &PARENT_ID, &SAMPLING_PRIORITY, &ORIGIN, &TAGS];

/// Datadog's limit on `x-datadog-tags`, read and written.
pub const MAX_TAGS_LEN: usize = 512;

/// The prefix of propagated tags.
const TAG_PREFIX: &str = "_dd.p.";
/// The tag (without prefix) carrying the high 64 bits.
const TID: &str = "tid";

const USER_KEEP: i8 = 2;
const AUTO_KEEP: i8 = 1;
const AUTO_DROP: i8 = 0;

/// Reads the `x-datadog-*` headers.
pub fn extract(headers: &HeaderMap) -> Extracted {
    extract_fields(&Fields::scan(headers))
}

/// [`extract`] from the fields a pass over the request's headers already found.
pub(crate) fn extract_fields(fields: &Fields<'_>) -> Extracted {
    let (low, parent_id, priority) = match ids(fields) {
        Ok(Ids::Context(low, parent_id, priority)) => (low, parent_id, priority),
        Ok(Ids::Absent(priority)) => {
            return priority.map_or(Extracted::Absent, |p| Extracted::DecisionOnly {
                sampling: sampling_of(p),
                debug: false,
            })
        }
        Err(invalid) => return Extracted::Invalid(invalid),
    };
    // A bad tags header costs only the tags.
    let (tags, tid) = fields
        .tags
        .single()
        .ok()
        .flatten()
        .and_then(parse_tags)
        .unwrap_or_default();
    let high = tid.and_then(parse_tid);
    let Some(trace_id) = TraceId::new(u128::from(high.unwrap_or(0)) << 64 | u128::from(low)) else {
        return Extracted::Invalid(ZERO_TRACE_ID);
    };
    let origin = fields
        .origin
        .single()
        .ok()
        .flatten()
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|o| !o.is_empty())
        .map(str::to_owned);

    let sampling = priority.map_or(Sampling::Deferred, sampling_of);
    let mut context = TraceContext::new(trace_id, parent_id, sampling);
    context.narrow = high.is_none();
    context.datadog = Some(Box::new(DatadogMeta {
        priority,
        origin,
        last_parent: Some(parent_id),
        tags,
    }));
    Extracted::Context(context)
}

/// The `x-datadog-*` headers of a request, found in one pass over its
/// headers rather than a hashed lookup each.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fields<'a> {
    trace_id: Field<'a>,
    parent_id: Field<'a>,
    priority: Field<'a>,
    origin: Field<'a>,
    tags: Field<'a>,
}

/// One header's first value, and whether it came more than once.
#[derive(Clone, Copy, Debug, Default)]
struct Field<'a> {
    value: Option<&'a [u8]>,
    twice: bool,
}

impl<'a> Fields<'a> {
    fn scan(headers: &'a HeaderMap) -> Self {
        let mut fields = Self::default();
        for (name, value) in headers {
            fields.add(name.as_str(), value);
        }
        fields
    }

    /// Notes one header line, if it is an `x-datadog-*` one; returns whether
    /// it was (a field this codec does not read counts too: it is Datadog's).
    #[inline(always)]
    pub(crate) fn add(&mut self, name: &str, value: &'a HeaderValue) -> bool {
        let Some(rest) = name.strip_prefix("x-datadog-") else {
            return false;
        };
        let field = match rest {
            "trace-id" => &mut self.trace_id,
            "parent-id" => &mut self.parent_id,
            "sampling-priority" => &mut self.priority,
            "origin" => &mut self.origin,
            "tags" => &mut self.tags,
            _ => return true,
        };
        if field.value.is_some() {
            field.twice = true;
        } else {
            field.value = Some(value.as_bytes());
        }
        true
    }
}

impl<'a> Field<'a> {
    /// The header's one value: `Ok(None)` when absent, `Err` when sent twice.
    fn single(self) -> Result<Option<&'a [u8]>, ()> {
        if self.twice {
            Err(())
        } else {
            Ok(self.value)
        }
    }
}

/// What the id and priority headers hold, when they are valid.
enum Ids {
    /// Both ids (the trace id's low 64 bits, the parent), and the priority.
    Context(u64, SpanId, Option<i8>),
    /// Neither id; perhaps a priority on its own.
    Absent(Option<i8>),
}

const BAD_TRACE_ID: Invalid =
    Invalid("x-datadog-trace-id is not 1 to 20 decimal digits fitting a u64");
const ZERO_TRACE_ID: Invalid = Invalid("x-datadog-trace-id is zero");
const BAD_PARENT_ID: Invalid =
    Invalid("x-datadog-parent-id is not 1 to 20 decimal digits fitting a u64");
const ZERO_PARENT_ID: Invalid = Invalid("x-datadog-parent-id is zero");
const BAD_PRIORITY: Invalid =
    Invalid("x-datadog-sampling-priority is not an integer from -128 to 127");

/// The ids and priority; `Err` names the rule they break.
fn ids(fields: &Fields<'_>) -> Result<Ids, Invalid> {
    let trace_id = fields
        .trace_id
        .single()
        .map_err(|()| Invalid("x-datadog-trace-id sent more than once (ambiguous)"))?;
    let parent_id = fields
        .parent_id
        .single()
        .map_err(|()| Invalid("x-datadog-parent-id sent more than once (ambiguous)"))?;
    let priority = fields
        .priority
        .single()
        .map_err(|()| Invalid("x-datadog-sampling-priority sent more than once (ambiguous)"))?;
    let priority = priority
        .map(|p| parse_priority(p).ok_or(BAD_PRIORITY))
        .transpose()?;
    match (trace_id, parent_id) {
        (Some(t), Some(p)) => {
            let low = hex::parse_decimal(t).ok_or(BAD_TRACE_ID)?;
            if low == 0 {
                return Err(ZERO_TRACE_ID);
            }
            let parent = hex::parse_decimal(p).ok_or(BAD_PARENT_ID)?;
            let parent = SpanId::new(parent).ok_or(ZERO_PARENT_ID)?;
            Ok(Ids::Context(low, parent, priority))
        }
        (None, None) => Ok(Ids::Absent(priority)),
        (Some(_), None) => Err(Invalid("x-datadog-trace-id without x-datadog-parent-id")),
        (None, Some(_)) => Err(Invalid("x-datadog-parent-id without x-datadog-trace-id")),
    }
}

/// Writes the `x-datadog-*` headers, replacing any already there. A trace id
/// whose low 64 bits are zero cannot be carried (`x-datadog-trace-id: 0` is
/// invalid), so for it nothing is written rather than something unreadable.
pub fn inject(out: &Outgoing<'_>, headers: &mut HeaderMap) {
    write(out, headers, true);
}

/// [`inject`]; `arrived` says whether the request may carry `x-datadog-*`
/// headers (without, the ones not written need no removing). Each header is
/// set in place: one that already holds the value to send is left alone.
pub(crate) fn write<S: Sink>(out: &Outgoing<'_>, headers: &mut S, arrived: bool) {
    let c = out.context;
    if c.trace_id.low() == 0 {
        if arrived {
            for name in NAMES {
                headers.set(name, New::Remove);
            }
        }
        return;
    }
    let meta = c.datadog.as_ref();
    let priority = outgoing_priority(meta.and_then(|m| m.priority), c.sampling, c.debug);
    // The four priorities Datadog defines are static values: no allocation.
    let known = priority.and_then(|p| PRIORITIES.get(usize::try_from(i16::from(p) + 1).ok()?));
    let mut digits = itoa::Buffer::new();
    let priority = match (known, priority) {
        (Some(value), _) => New::Made(value),
        (None, Some(p)) => New::Digits(digits.format(p).as_bytes()),
        (None, None) => New::Remove,
    };
    let origin = meta
        .and_then(|m| m.origin.as_deref())
        .filter(|o| !o.is_empty());
    let tags = meta.map_or(&[][..], |m| &m.tags[..]);
    let mut encoded = Buf::<MAX_TAGS_LEN>::new();
    encode_tags(c.trace_id.high(), tags, &mut encoded);
    let encoded = encoded.get().filter(|v| !v.is_empty());
    headers.set_all(
        "x-datadog-",
        [
            (&TRACE_ID, New::Decimal(c.trace_id.low())),
            (&PARENT_ID, New::Decimal(c.parent_id.get())),
            (&SAMPLING_PRIORITY, priority),
            (&ORIGIN, New::bytes(origin.map(str::as_bytes))),
            (&TAGS, New::bytes(encoded)),
        ],
        arrived,
    );
}

/// `x-datadog-sampling-priority` from -1 (user drop) to 2 (user keep).
static PRIORITIES: [HeaderValue; 4] = [
    HeaderValue::from_static("-1"),
    HeaderValue::from_static("0"),
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
];

/// Removes every `x-datadog-*` header this codec reads or writes.
pub fn strip(headers: &mut HeaderMap) {
    for name in NAMES {
        headers.remove(name);
    }
}

/// The priority to send: the Datadog one while it agrees with the decision
/// (same keep/drop side), else the plain keep/drop (user keep for `debug`).
fn outgoing_priority(meta: Option<i8>, sampling: Sampling, debug: bool) -> Option<i8> {
    if debug {
        return Some(meta.filter(|&p| p >= USER_KEEP).unwrap_or(USER_KEEP));
    }
    match (sampling, meta) {
        (Sampling::Deferred, p) => p,
        (s, Some(p)) if (p > 0) == s.is_sampled() => Some(p),
        (Sampling::Sampled, _) => Some(AUTO_KEEP),
        (Sampling::NotSampled, _) => Some(AUTO_DROP),
    }
}

fn sampling_of(priority: i8) -> Sampling {
    Sampling::from_bool(priority > 0)
}

/// An optional `-` and 1–3 digits fitting an `i8`.
fn parse_priority(s: &[u8]) -> Option<i8> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits
        .iter()
        .fold(0i16, |acc, &b| acc * 10 + i16::from(b - b'0'));
    i8::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// The `_dd.p.*` tags of `x-datadog-tags` (names without the prefix) but
/// `_dd.p.tid`, and the last `_dd.p.tid` value apart (read in place, never
/// copied); `None` when the header is over the limit or malformed. Read as
/// bytes: the grammar allows printable ASCII only, so only the tags kept are
/// made strings.
fn parse_tags(raw: &[u8]) -> Option<(Tags, Option<&[u8]>)> {
    if raw.len() > MAX_TAGS_LEN {
        return None;
    }
    let mut tags = Vec::new();
    let mut tid = None;
    if raw.is_empty() {
        return Some((tags, tid));
    }
    let mut rest = Some(raw);
    while let Some(list) = rest {
        let (tag, next) = match list.iter().position(|&b| b == b',') {
            Some(comma) => (&list[..comma], list.get(comma + 1..)),
            None => (list, None),
        };
        rest = next;
        let eq = tag.iter().position(|&b| b == b'=')?;
        let (key, value) = (&tag[..eq], trim_spaces(&tag[eq + 1..]));
        if !is_tag_key(key) || !is_tag_value(value) {
            return None;
        }
        match key.strip_prefix(TAG_PREFIX.as_bytes()) {
            Some(name) if name == TID.as_bytes() => tid = Some(value),
            Some(name) if !name.is_empty() => set_tag(
                &mut tags,
                std::str::from_utf8(name).ok()?,
                std::str::from_utf8(value).ok()?,
            ),
            _ => {}
        }
    }
    Some((tags, tid))
}

/// `s` without leading and trailing spaces.
fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Propagated tags, names without the `_dd.p.` prefix, in arrival order.
type Tags = Vec<(String, String)>;

/// The high 64 bits a `_dd.p.tid` value carries, when it is valid.
fn parse_tid(tid: &[u8]) -> Option<u64> {
    (tid.len() == 16)
        .then(|| hex::parse_u64(tid, false))
        .flatten()
        .filter(|&high| high != 0)
}

/// Sets `name` to `value`: in place if already there, else at the end.
fn set_tag(tags: &mut Vec<(String, String)>, name: &str, value: &str) {
    match tags.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = value.to_owned(),
        None => tags.push((name.to_owned(), value.to_owned())),
    }
}

/// `x-datadog-tags`: `_dd.p.tid` first, then the others, each only if valid
/// and if it fits in [`MAX_TAGS_LEN`].
fn encode_tags(high: u64, tags: &[(String, String)], out: &mut Buf<MAX_TAGS_LEN>) {
    let tid = hex::u64_16(high);
    let tid = (high != 0).then_some((TID.as_bytes(), &tid[..]));
    let others = tags
        .iter()
        .filter(|(name, _)| name != TID)
        .map(|(name, value)| (name.as_bytes(), trim_spaces(value.as_bytes())));
    for (name, value) in tid.into_iter().chain(others) {
        let comma: &[u8] = if out.len() == 0 { b"" } else { b"," };
        let len = comma.len() + TAG_PREFIX.len() + name.len() + 1 + value.len();
        if out.len() + len <= MAX_TAGS_LEN && is_tag_key(name) && is_tag_value(value) {
            for part in [comma, TAG_PREFIX.as_bytes(), name, b"=", value] {
                out.extend(part);
            }
        }
    }
}

fn is_tag_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',' && b != b'=')
}

fn is_tag_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests;
