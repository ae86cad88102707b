//! W3C `tracestate` (Trace Context Level 2, §3.3).
//!
//! - A list of at most 32 `key=value` list-members, separated by commas with
//!   optional spaces/tabs around them; empty list-members (`a=1,,b=2`) are allowed
//!   and dropped. Several `tracestate` header lines are one list, joined in order.
//! - `key` is a simple key (`lcalpha 0*255(lcalpha / DIGIT / _ - * /)`) or a
//!   multi-tenant key `tenant@system` (tenant: `(lcalpha / DIGIT) 0*240(…)`,
//!   system: `lcalpha 0*13(…)`).
//! - `value` is 1–256 printable ASCII characters except `,` and `=`, not ending in
//!   a space.
//! - A malformed member, a duplicated key, or more than 32 members makes the whole
//!   `tracestate` invalid: it is dropped (the `traceparent` still counts).
//! - Order is preserved. A member the sidecar updates moves to the front.
//! - Over 512 characters (commas included), members longer than 128 characters are
//!   removed first, then members from the end, until it fits.

use http::HeaderValue;

/// Members allowed in one tracestate.
pub const MAX_MEMBERS: usize = 32;
/// Length above which the list is trimmed.
pub const MAX_LEN: usize = 512;
/// Members longer than this are trimmed first.
const LONG_MEMBER: usize = 128;

/// Why a tracestate was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceStateError {
    /// A list-member does not match the grammar.
    Malformed,
    /// The same key appears twice.
    DuplicateKey,
    /// More than 32 list-members.
    TooManyMembers,
}

/// A validated, normalised tracestate (`k1=v1,k2=v2`, no spaces, no empty members).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState {
    /// The normalised list; `None` when empty.
    value: Option<HeaderValue>,
}

// === impl TraceState ===

impl TraceState {
    /// Parses every `tracestate` header line as one list.
    pub fn parse<'a>(
        lines: impl IntoIterator<Item = &'a HeaderValue>,
    ) -> Result<Self, TraceStateError> {
        let mut lines = lines.into_iter();
        let Some(first) = lines.next() else {
            return Ok(Self::default());
        };
        let second = lines.next();
        // The common case, one line already normalised, keeps the header value
        // (a reference-counted buffer) without copying it.
        if second.is_none() {
            let bytes = first.as_bytes();
            let (count, normalised) = validate(bytes)?;
            if count == 0 {
                return Ok(Self::default());
            }
            if normalised && bytes.len() <= MAX_LEN {
                return Ok(Self {
                    value: Some(first.clone()),
                });
            }
        }
        let mut joined = Vec::with_capacity(first.len());
        for line in std::iter::once(first).chain(second).chain(lines) {
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(line.as_bytes());
        }
        validate(&joined)?;
        Ok(Self::from_members(members(&joined).collect()))
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.value.is_none()
    }

    /// The members in order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        let bytes = self.value.as_ref().map_or(&b""[..], |v| v.as_bytes());
        members(bytes).filter_map(|m| {
            let m = std::str::from_utf8(m).ok()?;
            m.split_once('=')
        })
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members().count()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        // The stored list is normalised: members are split by bare commas.
        let list = self.value.as_ref()?.as_bytes();
        let member = list.split(|&b| b == b',').find(|m| has_key(m, key))?;
        std::str::from_utf8(member.get(key.len() + 1..)?).ok()
    }

    /// The header value to send, if any members remain.
    pub fn header_value(&self) -> Option<&HeaderValue> {
        self.value.as_ref()
    }

    /// Sets `key=value` as the first member (the sidecar's own, just updated),
    /// removing an older member with that key, then applies the limits. Returns
    /// false (and changes nothing) if `key` or `value` break the grammar.
    pub fn set_front(&mut self, key: &str, value: &str) -> bool {
        if !is_key(key.as_bytes()) || !is_value(value.as_bytes()) {
            return false;
        }
        let member = format!("{key}={value}");
        let mut list: Vec<&[u8]> = vec![member.as_bytes()];
        list.extend(self.member_slices().filter(|m| !has_key(m, key)));
        list.truncate(MAX_MEMBERS);
        *self = Self::from_members(list);
        true
    }

    /// Removes `key`'s member, if any.
    pub fn remove(&mut self, key: &str) {
        if self.get(key).is_some() {
            let list: Vec<&[u8]> = self.member_slices().filter(|m| !has_key(m, key)).collect();
            *self = Self::from_members(list);
        }
    }

    fn member_slices(&self) -> impl Iterator<Item = &[u8]> {
        members(self.value.as_ref().map_or(&b""[..], |v| v.as_bytes()))
    }

    /// Joins validated members, trimming to [`MAX_LEN`] per the spec.
    fn from_members(mut list: Vec<&[u8]>) -> Self {
        let len =
            |l: &[&[u8]]| l.iter().map(|m| m.len()).sum::<usize>() + l.len().saturating_sub(1);
        if len(&list) > MAX_LEN {
            list.retain(|m| m.len() <= LONG_MEMBER);
        }
        while len(&list) > MAX_LEN {
            list.pop();
        }
        if list.is_empty() {
            return Self::default();
        }
        let joined = list.join(&b","[..]);
        // Validated bytes are visible ASCII, always a valid header value.
        Self {
            value: HeaderValue::from_bytes(&joined).ok(),
        }
    }
}

/// The non-empty list-members of a raw list, trimmed of spaces and tabs.
fn members(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|m| !m.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn has_key(member: &[u8], key: &str) -> bool {
    member
        .strip_prefix(key.as_bytes())
        .is_some_and(|rest| rest.first() == Some(&b'='))
}

/// Checks a raw list; returns its member count and whether it is already
/// normalised (no spaces around members, no empty members).
fn validate(list: &[u8]) -> Result<(usize, bool), TraceStateError> {
    let mut keys: [&[u8]; MAX_MEMBERS] = [&[]; MAX_MEMBERS];
    let mut count = 0;
    let mut normalised = true;
    for raw in list.split(|&b| b == b',') {
        let member = trim_ows(raw);
        if member.len() != raw.len() || member.is_empty() {
            normalised = false;
        }
        if member.is_empty() {
            continue;
        }
        let key = member_key(member).ok_or(TraceStateError::Malformed)?;
        let value = member.get(key.len() + 1..).unwrap_or_default();
        if !is_value(value) {
            return Err(TraceStateError::Malformed);
        }
        if count == MAX_MEMBERS {
            return Err(TraceStateError::TooManyMembers);
        }
        if keys[..count].contains(&key) {
            return Err(TraceStateError::DuplicateKey);
        }
        keys[count] = key;
        count += 1;
    }
    Ok((count, normalised))
}

/// Character classes of the tracestate grammar, one table lookup per byte.
const KEY: u8 = 1; // lcalpha / DIGIT / _ - * /
const LOWER: u8 = 2; // lcalpha
const DIGIT: u8 = 4;
const NBLK: u8 = 8; // %x21-2B / %x2D-3C / %x3E-7E: printable, not `,` `=`

static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        if b != b',' as usize && b != b'=' as usize {
            t[b] = NBLK;
        }
        b += 1;
    }
    let mut b = b'a' as usize;
    while b <= b'z' as usize {
        t[b] |= KEY | LOWER;
        b += 1;
    }
    let mut b = b'0' as usize;
    while b <= b'9' as usize {
        t[b] |= KEY | DIGIT;
        b += 1;
    }
    t[b'_' as usize] |= KEY;
    t[b'-' as usize] |= KEY;
    t[b'*' as usize] |= KEY;
    t[b'/' as usize] |= KEY;
    t
}

fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

fn all_key_chars(s: &[u8]) -> bool {
    s.iter().all(|&b| class(b) & KEY != 0)
}

/// The key of a `key=value` member, checked in one pass; `None` if malformed.
fn member_key(member: &[u8]) -> Option<&[u8]> {
    let mut at = None;
    for (i, &b) in member.iter().enumerate() {
        match b {
            b'=' => {
                let key = member.get(..i)?;
                return valid_key_parts(key, at).then_some(key);
            }
            b'@' if at.is_none() => at = Some(i),
            _ if class(b) & KEY != 0 => {}
            _ => return None,
        }
    }
    None
}

/// Checks the first characters and lengths of a key whose characters are
/// already known to be key characters, with its `@` at `at`.
fn valid_key_parts(key: &[u8], at: Option<usize>) -> bool {
    let starts = |s: &[u8], classes: u8| s.first().is_some_and(|&b| class(b) & classes != 0);
    match at {
        None => starts(key, LOWER) && key.len() <= 256,
        Some(at) => {
            let (tenant, system) = key.split_at(at);
            let system = system.get(1..).unwrap_or_default();
            starts(tenant, LOWER | DIGIT)
                && tenant.len() <= 241
                && starts(system, LOWER)
                && system.len() <= 14
        }
    }
}

fn is_key(key: &[u8]) -> bool {
    let starts = |s: &[u8], classes: u8| s.first().is_some_and(|&b| class(b) & classes != 0);
    match key.iter().position(|&b| b == b'@') {
        None => starts(key, LOWER) && key.len() <= 256 && all_key_chars(key),
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            starts(tenant, LOWER | DIGIT)
                && tenant.len() <= 241
                && all_key_chars(tenant)
                && starts(system, LOWER)
                && system.len() <= 14
                && all_key_chars(system)
        }
    }
}

fn is_value(value: &[u8]) -> bool {
    value.last().is_some_and(|&b| class(b) & NBLK != 0)
        && value.len() <= 256
        && value.iter().all(|&b| b == b' ' || class(b) & NBLK != 0)
}

#[cfg(test)]
mod tests;
