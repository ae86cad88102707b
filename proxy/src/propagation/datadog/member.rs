//! The `dd=` list-member of W3C `tracestate`: Datadog's fields that
//! `traceparent` has no slot for, so Datadog → W3C → Datadog loses nothing.
//!
//! `dd=s:2;o:rum;p:00f067aa0ba902b7;t.dm:-4;t.usr.id:baz64`
//!
//! - Parts are `key:value`, separated by `;`; a value runs to the next `;` and
//!   may itself contain `:`. Written in the order `s`, `o`, `p`, then `t.*`.
//! - `s:` the sampling priority (as `x-datadog-sampling-priority`).
//! - `o:` the origin (as `x-datadog-origin`).
//! - `p:` the last Datadog span id, 16 lower-case hex digits, so Datadog can
//!   re-parent spans across hops that do not report to it.
//! - `t.<name>:` one per propagated `_dd.p.<name>` tag. `_dd.p.tid` is not
//!   written: `traceparent` carries all 128 bits.
//! - Escaping, as ddtrace does it (dd-trace-go `sanitizeTagKey`,
//!   `sanitizeTagValue`, `sanitizeOrigin`; dd-trace-py `w3c_encode_tag`):
//!   - tag values: `,` `;` `~` become `_`, `=` becomes `~`, and each run of
//!     characters outside printable ASCII becomes one `_`;
//!   - the origin: the same, and a space counts as outside printable ASCII;
//!   - tag names: `,` `=` and space become `_` (and, here, `;` and `:` too, so
//!     the part can be read back), runs outside printable ASCII one `_`.
//!
//!   Reading turns `~` back into `=` in values; the other replacements are lossy.
//! - The whole `dd=` member stays within 256 characters (dd-trace-go drops a
//!   longer one): `t.*` parts that would overflow are left out, and so is an
//!   origin too long to fit beside `p:` (which Datadog needs to re-parent).
//! - Reading ignores unknown keys, parts without `:`, empty values, a priority
//!   that is not an integer and a `p:` that is not 16 non-zero hex digits.

use std::borrow::Cow;

use super::{outgoing_priority, parse_priority, set_tag, TID};
use crate::propagation::context::{DatadogMeta, Sampling, SpanId};
use crate::propagation::hex;
use crate::propagation::value::Buf;

/// Longest value so that `dd=` + value is at most 256 characters.
const MAX_VALUE_LEN: usize = 256 - "dd=".len();

/// The `dd=` member value for `meta`, with `s:` reconciled with `sampling` the
/// way `x-datadog-sampling-priority` is; `None` when there is nothing to say.
/// Always a valid tracestate value (printable ASCII, no `,` or `=`).
pub fn tracestate_member(meta: &DatadogMeta, sampling: Sampling) -> Option<String> {
    let mut out = Member::new();
    write_member(meta, sampling, &mut out);
    member_str(&out).map(str::to_owned)
}

/// A `dd=` member value being built, on the stack.
pub(crate) type Member = Buf<MAX_VALUE_LEN>;

/// The value [`write_member`] wrote, if any.
pub(crate) fn member_str(out: &Member) -> Option<&str> {
    out.get()
        .filter(|v| !v.is_empty())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// [`tracestate_member`] into a buffer on the stack (the per-request path:
/// no allocation).
pub(crate) fn write_member(meta: &DatadogMeta, sampling: Sampling, out: &mut Member) {
    if let Some(p) = outgoing_priority(meta.priority, sampling, false) {
        push(out, "s:", itoa::Buffer::new().format(p));
    }
    if let Some(origin) = meta.origin.as_deref() {
        // `p:` must survive a long origin: without it Datadog cannot re-parent.
        let reserved = if meta.last_parent.is_some() {
            ";p:".len() + 16
        } else {
            0
        };
        push_within(
            out,
            "o:",
            &escape(origin, Part::Origin),
            MAX_VALUE_LEN - reserved,
        );
    }
    if let Some(parent) = meta.last_parent {
        let hex = hex::u64_16(parent.get());
        push(out, "p:", std::str::from_utf8(&hex).unwrap_or_default());
    }
    for (name, value) in meta.tags.iter().filter(|(name, _)| name != TID) {
        let name = escape(name, Part::Name);
        if !name.is_empty() {
            push_tag(out, &name, &escape(value.trim_matches(' '), Part::Value));
        }
    }
}

/// Reads a `dd=` member's value; anything unrecognised is skipped.
pub fn from_tracestate_member(value: &str) -> DatadogMeta {
    let mut meta = DatadogMeta::default();
    let parts = value.split(';').filter_map(|part| part.split_once(':'));
    for (key, value) in parts.filter(|(_, value)| !value.is_empty()) {
        match key {
            "s" => meta.priority = parse_priority(value.as_bytes()).or(meta.priority),
            "o" => meta.origin = Some(value.replace('~', "=")),
            "p" => meta.last_parent = parse_last_parent(value).or(meta.last_parent),
            _ => match key.strip_prefix("t.") {
                Some(name) if !name.is_empty() && name != TID => {
                    set_tag(&mut meta.tags, name, &value.replace('~', "="));
                }
                _ => {}
            },
        }
    }
    meta
}

fn parse_last_parent(value: &str) -> Option<SpanId> {
    let value = value.as_bytes();
    (value.len() == 16)
        .then(|| hex::parse_u64(value, false))
        .flatten()
        .and_then(SpanId::new)
}

/// Appends `t.<name>:<value>` if it fits.
fn push_tag(out: &mut Member, name: &str, value: &str) {
    let sep = usize::from(out.len() != 0);
    if !value.is_empty() && out.len() + sep + 2 + name.len() + 1 + value.len() <= MAX_VALUE_LEN {
        if sep == 1 {
            out.push(b';');
        }
        for part in ["t.", name, ":", value] {
            out.extend(part.as_bytes());
        }
    }
}

fn push(out: &mut Member, key: &str, value: &str) {
    push_within(out, key, value, MAX_VALUE_LEN);
}

/// Appends `key` + `value` if the result stays within `limit` characters.
fn push_within(out: &mut Member, key: &str, value: &str, limit: usize) {
    let sep = usize::from(out.len() != 0);
    if !value.is_empty() && out.len() + sep + key.len() + value.len() <= limit {
        if sep == 1 {
            out.push(b';');
        }
        out.extend(key.as_bytes());
        out.extend(value.as_bytes());
    }
}

/// Which part of the member a string is escaped for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Name,
    Value,
    Origin,
}

/// Applies the member's replacements (see the module doc).
fn escape(s: &str, part: Part) -> Cow<'_, str> {
    let outside = |c: char| !(' '..='~').contains(&c) || (c == ' ' && part == Part::Origin);
    let single = |c: char| match (part, c) {
        (Part::Name, ',' | '=' | ' ' | ';' | ':') => Some('_'),
        (Part::Value | Part::Origin, ',' | ';' | '~') => Some('_'),
        (Part::Value | Part::Origin, '=') => Some('~'),
        _ => None,
    };
    // Usually nothing needs replacing: checked a byte at a time (a byte
    // outside ASCII is outside printable ASCII too, so it goes the long way).
    if !s
        .bytes()
        .any(|b| outside(char::from(b)) || single(char::from(b)).is_some())
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if outside(c) {
            if !in_run {
                out.push('_');
            }
            in_run = true;
        } else {
            out.push(single(c).unwrap_or(c));
            in_run = false;
        }
    }
    Cow::Owned(out)
}
