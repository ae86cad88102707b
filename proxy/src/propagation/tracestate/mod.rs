//! W3C `tracestate` (Trace Context Level 2, §3.3).
//!
//! - A list of at most 32 `key=value` list-members, separated by commas with
//!   optional spaces/tabs around them; empty list-members (`a=1,,b=2`) are allowed
//!   and dropped. Several `tracestate` header lines are one list, joined in order.
//! - `key` is `(lcalpha / DIGIT) 0*255(lcalpha / DIGIT / _ - * / @)`: 1–256
//!   characters, starting with a lowercase letter or a digit. `@` is an ordinary
//!   key character, allowed anywhere after the first, any number of times; the
//!   earlier `tenant@system` rule (with its own 241/14-character limits) is gone.
//! - `value` is 1–256 printable ASCII characters except `,` and `=`, not ending in
//!   a space.
//! - Only one entry per key is allowed. When a key appears again (in the same
//!   line or a later one), the first, leftmost member is kept and the later ones
//!   are dropped; the rest of the list stays, in order. Vendors move the entry
//!   they update to the front, so the leftmost is the most recent position, and
//!   deleting an entry is an allowed mutation; dropping the whole list instead
//!   would lose every other vendor's entry over one vendor's mistake. A dropped
//!   duplicate must still be well-formed.
//! - A malformed member, or more than 32 members, makes the whole `tracestate`
//!   invalid: it is dropped (the `traceparent` still counts). Members are counted
//!   after dropping empty members and duplicates: the limit is on the list that
//!   is kept and sent on.
//! - Order is preserved. A member the sidecar updates moves to the front.
//! - Over 512 characters (commas included), members longer than 128 characters are
//!   removed first, then members from the end, until it fits.

use http::HeaderValue;

use super::swar;
use super::value::Buf;

/// Members allowed in one tracestate.
pub const MAX_MEMBERS: usize = 32;
/// Length above which the list is trimmed.
pub const MAX_LEN: usize = 512;
/// Members longer than this are trimmed first.
const LONG_MEMBER: usize = 128;
/// Longest key.
const MAX_KEY_LEN: usize = 256;
/// Longest value.
const MAX_VALUE_LEN: usize = 256;

/// Why a tracestate was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceStateError {
    /// A list-member does not match the grammar.
    Malformed,
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
        let Some(second) = lines.next() else {
            let bytes = first.as_bytes();
            // The common case, one line already normalised, keeps the header
            // value (a reference-counted buffer) without copying it.
            if bytes.len() <= MAX_LEN && is_normalised(bytes) {
                return Ok(Self {
                    value: Some(first.clone()),
                });
            }
            let list = validate(bytes, |_| {})?;
            if list.count == 0 {
                return Ok(Self::default());
            }
            // The common case, one line already normalised, keeps the header
            // value (a reference-counted buffer) without copying it.
            if list.normalised && bytes.len() <= MAX_LEN {
                return Ok(Self {
                    value: Some(first.clone()),
                });
            }
            return Ok(Self::from_members(kept_members(bytes)?));
        };
        let mut joined = Vec::with_capacity(first.len() + 1 + second.len());
        for line in [first, second].into_iter().chain(lines) {
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(line.as_bytes());
        }
        Ok(Self::from_members(kept_members(&joined)?))
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
        let member = list
            .split(|&b| b == b',')
            .find(|m| has_key(m, key.as_bytes()))?;
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
        // The common case, a list within the limits, is joined on the stack and
        // copied once into its header value.
        let fits = self.member_slices().count() < MAX_MEMBERS
            && key.len() + 1 + value.len() + 1 + self.value.as_ref().map_or(0, HeaderValue::len)
                <= MAX_LEN;
        if fits {
            let mut joined = Buf::<MAX_LEN>::new();
            for part in [key.as_bytes(), b"=", value.as_bytes()] {
                joined.extend(part);
            }
            for m in self.member_slices().filter(|m| !has_key(m, key.as_bytes())) {
                joined.push(b',');
                joined.extend(m);
            }
            // Validated bytes are visible ASCII, always a valid header value.
            self.value = joined.get().and_then(|v| HeaderValue::from_bytes(v).ok());
            return true;
        }
        let member = format!("{key}={value}");
        let mut list: Vec<&[u8]> = vec![member.as_bytes()];
        list.extend(self.member_slices().filter(|m| !has_key(m, key.as_bytes())));
        list.truncate(MAX_MEMBERS);
        *self = Self::from_members(list);
        true
    }

    /// Removes `key`'s member, if any.
    pub fn remove(&mut self, key: &str) {
        if self.get(key).is_some() {
            let list: Vec<&[u8]> = self
                .member_slices()
                .filter(|m| !has_key(m, key.as_bytes()))
                .collect();
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

fn has_key(member: &[u8], key: &[u8]) -> bool {
    member
        .strip_prefix(key)
        .is_some_and(|rest| rest.first() == Some(&b'='))
}

/// What [`validate`] found in a raw list.
struct Checked {
    /// Members kept: without empty members and later duplicates.
    count: usize,
    /// Whether the raw list is already what we would send: no spaces around
    /// members, no empty members, no duplicates.
    normalised: bool,
}

/// Checks a raw list in one pass, dropping empty members and every member
/// whose key an earlier member already has; `keep` sees each member kept, in
/// order. (A callback, not a returned list: the common single-line case keeps
/// the header value and needs no list at all.)
fn validate<'a>(
    list: &'a [u8],
    mut keep: impl FnMut(&'a [u8]),
) -> Result<Checked, TraceStateError> {
    let mut keys: [&[u8]; MAX_MEMBERS] = [&[]; MAX_MEMBERS];
    let mut checked = Checked {
        count: 0,
        normalised: true,
    };
    for raw in list.split(|&b| b == b',') {
        let member = trim_ows(raw);
        if member.len() != raw.len() || member.is_empty() {
            checked.normalised = false;
        }
        if member.is_empty() {
            continue;
        }
        let key = member_key(member).ok_or(TraceStateError::Malformed)?;
        let value = member.get(key.len() + 1..).unwrap_or_default();
        if !is_value(value) {
            return Err(TraceStateError::Malformed);
        }
        if keys[..checked.count].contains(&key) {
            checked.normalised = false;
            continue;
        }
        if checked.count == MAX_MEMBERS {
            return Err(TraceStateError::TooManyMembers);
        }
        keys[checked.count] = key;
        checked.count += 1;
        keep(member);
    }
    Ok(checked)
}

/// Whether a raw list is valid and already what we would send (the case
/// [`validate`] calls normalised): one scan over its bytes that gives up on
/// anything unusual — spaces, empty members, duplicate keys, too many
/// members — and leaves that to [`validate`]. It may say no to a valid list,
/// never yes to one [`validate`] would reject or change.
fn is_normalised(list: &[u8]) -> bool {
    // Each kept key as (start, end) in `list`; a list is at most `MAX_LEN`
    // bytes, so both fit a u16 (the caller checks the length first).
    let mut keys = [(0u16, 0u16); MAX_MEMBERS];
    let mut count = 0;
    let mut start = 0;
    loop {
        let Some(rest) = list.get(start..) else {
            return false;
        };
        // Runs are found with `position`: a tight loop over the bytes, with
        // no bounds check per byte.
        let key_len = rest
            .iter()
            .position(|&b| class(b) & KEY == 0)
            .unwrap_or(rest.len());
        let starts_well = rest.first().is_some_and(|&b| class(b) & KEY_START != 0);
        if !starts_well || key_len > MAX_KEY_LEN || rest.get(key_len) != Some(&b'=') {
            return false;
        }
        let value = &rest[key_len + 1..];
        // Value bytes without spaces: a space (allowed inside) goes the long way.
        let value_len = swar::run(value, value_bytes);
        if value_len == 0 || value_len > MAX_VALUE_LEN || count == MAX_MEMBERS {
            return false;
        }
        let key = &rest[..key_len];
        if keys[..count]
            .iter()
            .any(|&(s, e)| list.get(usize::from(s)..usize::from(e)) == Some(key))
        {
            return false;
        }
        let (Ok(key_start), Ok(key_end)) = (u16::try_from(start), u16::try_from(start + key_len))
        else {
            return false;
        };
        keys[count] = (key_start, key_end);
        count += 1;
        match value.get(value_len) {
            None => return true,
            // A comma ending the list leaves an empty member: the long way.
            Some(b',') if value_len + 1 < value.len() => start += key_len + 1 + value_len + 1,
            Some(_) => return false,
        }
    }
}

/// The high bit of each byte of `x` that is an `nblk` value byte, as
/// [`class`] has it: `%x21-2B / %x2D-3C / %x3E-7E`.
fn value_bytes(x: u64) -> u64 {
    let ascii = x & !swar::HIGH;
    let printable = swar::within(ascii, 0x21, 0x7e);
    let separator = swar::within(ascii, b',', b',') | swar::within(ascii, b'=', b'=');
    printable & !separator & !x
}

/// The members of a raw list that [`validate`] keeps.
fn kept_members(list: &[u8]) -> Result<Vec<&[u8]>, TraceStateError> {
    let mut kept = Vec::new();
    validate(list, |member| kept.push(member))?;
    Ok(kept)
}

const KEY_START: u8 = 1; // lcalpha / DIGIT
const KEY: u8 = 2; // keychar: lcalpha / DIGIT / _ - * / @
const NBLK: u8 = 4; // %x21-2B / %x2D-3C / %x3E-7E: printable, not `,` `=`

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
        t[b] |= KEY_START | KEY;
        b += 1;
    }
    let mut b = b'0' as usize;
    while b <= b'9' as usize {
        t[b] |= KEY_START | KEY;
        b += 1;
    }
    t[b'_' as usize] |= KEY;
    t[b'-' as usize] |= KEY;
    t[b'*' as usize] |= KEY;
    t[b'/' as usize] |= KEY;
    t[b'@' as usize] |= KEY;
    t
}

fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// The key rule, `(lcalpha / DIGIT) 0*255(keychar)`, in one pass over the
/// start of `s`: the key `s` begins with and what follows it, or `None` if `s`
/// does not begin with a valid key. The key ends at the first byte that is not
/// a keychar (in a member, the `=`).
fn split_key(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = s
        .iter()
        .position(|&b| class(b) & KEY == 0)
        .unwrap_or(s.len());
    let (key, rest) = s.split_at(len);
    let starts_well = key.first().is_some_and(|&b| class(b) & KEY_START != 0);
    (starts_well && key.len() <= MAX_KEY_LEN).then_some((key, rest))
}

/// The key of a `key=value` member; `None` if the key is malformed or there is
/// no `=` after it.
fn member_key(member: &[u8]) -> Option<&[u8]> {
    match split_key(member)? {
        (key, [b'=', ..]) => Some(key),
        _ => None,
    }
}

fn is_key(key: &[u8]) -> bool {
    split_key(key).is_some_and(|(_, rest)| rest.is_empty())
}

fn is_value(value: &[u8]) -> bool {
    value.last().is_some_and(|&b| class(b) & NBLK != 0)
        && value.len() <= MAX_VALUE_LEN
        && value.iter().all(|&b| b == b' ' || class(b) & NBLK != 0)
}

#[cfg(test)]
mod tests;
