//! Writing trace headers: each value is built on the stack ([`Buf`]) and
//! copied once into its `HeaderValue`, and a header that already holds exactly
//! that value is left alone (the common case for every field but the span id
//! when the caller's format goes on), so an unchanged field costs a compare
//! instead of an allocation and a replacement. [`set`] writes one header by a
//! hashed lookup; [`set_all`] writes a format's headers with one pass over a
//! small map, settling in place the headers the request already carries, and
//! [`first_values`] reads a format's headers in the same kind of pass.

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

use super::hex;

/// Longest value built on the stack: a B3 single header with a 128-bit trace
/// id, span, state and parent is 68 bytes.
const CAP: usize = 96;

/// A header value being built, on the stack, up to `N` bytes. Bytes that do
/// not fit are dropped and mark the value as overflowed, so it is never
/// written cut short.
pub(crate) struct Buf<const N: usize = CAP> {
    bytes: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Buf<N> {
    /// An empty value.
    pub(crate) const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// The bytes written so far.
    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    /// Appends `s`.
    pub(crate) fn extend(&mut self, s: &[u8]) {
        match self.bytes.get_mut(self.len..self.len + s.len()) {
            Some(slot) => {
                slot.copy_from_slice(s);
                self.len += s.len();
            }
            None => self.overflowed = true,
        }
    }

    /// Appends one byte.
    pub(crate) fn push(&mut self, b: u8) {
        self.extend(&[b]);
    }

    /// The value, or `None` when it did not fit.
    pub(crate) fn get(&self) -> Option<&[u8]> {
        (!self.overflowed).then(|| &self.bytes[..self.len])
    }
}

/// Where a format's codec writes its headers: the request's own map
/// ([`set`], [`set_all`]), or trace headers rendered for the next hop
/// ([`super::Rendered`]).
pub(crate) trait Sink {
    /// Sets `name` to the single value `new` ([`New::Remove`]: no value).
    fn set(&mut self, name: &'static HeaderName, new: New<'_>);

    /// Writes one format's headers; `prefix` and `arrived` as [`set_all`]
    /// reads them.
    fn set_all<const N: usize>(
        &mut self,
        prefix: &str,
        writes: [(&'static HeaderName, New<'_>); N],
        arrived: bool,
    );
}

impl Sink for HeaderMap {
    #[inline(always)]
    fn set(&mut self, name: &'static HeaderName, new: New<'_>) {
        set(self, name, new);
    }

    #[inline(always)]
    fn set_all<const N: usize>(
        &mut self,
        prefix: &str,
        writes: [(&'static HeaderName, New<'_>); N],
        arrived: bool,
    ) {
        set_all(self, prefix, writes, arrived);
    }
}

/// Sets `name` to the single value `new`: nothing happens when the header
/// already holds exactly it, once; otherwise every value it had is replaced. A
/// value that is not a valid header value (or [`New::Remove`]) removes the
/// header rather than leave a stale one.
pub(crate) fn set(headers: &mut HeaderMap, name: &'static HeaderName, new: New<'_>) {
    match headers.entry(name) {
        Entry::Occupied(mut entry) => {
            let mut values = entry.iter();
            let unchanged = values.next().is_some_and(|v| new.holds(v)) && values.next().is_none();
            if !unchanged {
                match new.make() {
                    Some(v) => drop(entry.insert(v)),
                    None => drop(entry.remove_entry_mult()),
                }
            }
        }
        Entry::Vacant(entry) => {
            if let Some(v) = new.make() {
                entry.insert(v);
            }
        }
    }
}

/// A header's new value, for [`set_all`].
#[derive(Clone, Copy)]
pub(crate) enum New<'a> {
    /// Bytes, copied into a new value only when the header does not hold them.
    Bytes(&'a [u8]),
    /// Bytes the codec composed of digits and separators (`-`, `:`) alone, as
    /// [`New::Bytes`] — but a sink that checks the caller's text need not
    /// check these.
    Digits(&'a [u8]),
    /// A value already made (`from_static`, or shared with the request): never copied.
    Made(&'a HeaderValue),
    /// A number in decimal, compared by reading the header: written out only
    /// when the header does not hold it.
    Decimal(u64),
    /// No value: the header is removed.
    Remove,
}

impl<'a> New<'a> {
    /// Bytes built on the stack: a [`Buf`] that overflowed (`None`) removes the
    /// header rather than leave a stale one.
    #[inline(always)]
    pub(crate) fn bytes(value: Option<&'a [u8]>) -> Self {
        value.map_or(Self::Remove, Self::Bytes)
    }

    /// [`New::bytes`] for [`New::Digits`].
    #[inline(always)]
    pub(crate) fn digits(value: Option<&'a [u8]>) -> Self {
        value.map_or(Self::Remove, Self::Digits)
    }

    #[inline(always)]
    fn holds(self, value: &HeaderValue) -> bool {
        match self {
            Self::Bytes(bytes) | Self::Digits(bytes) => value.as_bytes() == bytes,
            Self::Made(made) => value == made,
            Self::Decimal(n) => hex::is_decimal(value.as_bytes(), n),
            Self::Remove => false,
        }
    }

    /// The value to write; `None` removes the header (and so does bytes that
    /// are not a valid header value).
    #[inline(always)]
    fn make(self) -> Option<HeaderValue> {
        match self {
            Self::Bytes(bytes) | Self::Digits(bytes) => HeaderValue::from_bytes(bytes).ok(),
            Self::Made(made) => Some(made.clone()),
            // Digits need no validation: measured ~60 instructions less than
            // formatting them and copying them into a checked value.
            Self::Decimal(n) => Some(HeaderValue::from(n)),
            Self::Remove => None,
        }
    }
}

/// Up to this many headers, one pass comparing names beats a hashed lookup
/// per header read or written.
pub(crate) const SCAN_MAX: usize = 16;

/// Whether `name` starts with `prefix`: most names differ in their first
/// byte, so a scan compares few of them with its list of names. (Comparing
/// every name with the list instead measured slower on maps carrying several
/// formats: more `HeaderName` comparisons of equal-length custom names.)
#[inline(always)]
fn has_prefix(name: &HeaderName, prefix: &str) -> bool {
    let name = name.as_str().as_bytes();
    name.first() == prefix.as_bytes().first() && name.starts_with(prefix.as_bytes())
}

/// The first value of each of `names` (as `HeaderMap::get` gives it), all of
/// which start with `prefix`, read in one pass over a small map instead of a
/// hashed lookup per name.
#[inline(always)]
pub(crate) fn first_values<'a, const N: usize>(
    headers: &'a HeaderMap,
    prefix: &str,
    names: [&'static HeaderName; N],
) -> [Option<&'a [u8]>; N] {
    if headers.keys_len() > SCAN_MAX {
        return names.map(|name| headers.get(name).map(HeaderValue::as_bytes));
    }
    let mut found = [None; N];
    for (name, value) in headers {
        if !has_prefix(name, prefix) {
            continue;
        }
        if let Some(i) = names.iter().position(|n| *n == name) {
            found[i] = found[i].or(Some(value.as_bytes()));
        }
    }
    found
}

/// Writes one format's headers, each as [`set`] would (a header that already
/// holds its value, once, is left alone; [`New::Remove`] removes it). When the
/// request may carry them (`arrived`), a small map is read in one pass, and a
/// header found once is settled in place, so the common case — the caller's
/// own headers, most unchanged — costs no hashed lookup at all. Only names
/// that start with `prefix` are compared with `writes`' names. Headers the
/// pass did not settle (absent, sent twice, to be removed) go the hashed way.
/// Inlined into each codec, whose list of headers is then a constant length
/// with mostly constant kinds: the loop and the dispatch fold away.
#[inline(always)]
pub(crate) fn set_all<const N: usize>(
    headers: &mut HeaderMap,
    prefix: &str,
    writes: [(&'static HeaderName, New<'_>); N],
    arrived: bool,
) {
    /// Found once and settled in the pass.
    const SETTLED: u8 = 1;
    /// Found once but to be removed, or found more than once.
    const UNSETTLED: u8 = 2;
    let mut found = [0u8; N];
    if arrived {
        if headers.len() > SCAN_MAX {
            for (name, new) in writes {
                set(headers, name, new);
            }
            return;
        }
        for (name, value) in headers.iter_mut() {
            if !has_prefix(name, prefix) {
                continue;
            }
            let Some(i) = writes.iter().position(|(n, _)| *n == name) else {
                continue;
            };
            found[i] = match found[i] {
                0 if writes[i].1.holds(value) => SETTLED,
                0 => match writes[i].1.make() {
                    Some(new) => {
                        *value = new;
                        SETTLED
                    }
                    None => UNSETTLED,
                },
                _ => UNSETTLED,
            };
        }
    }
    for ((name, new), found) in writes.into_iter().zip(found) {
        match (found, new) {
            (SETTLED, _) | (0, New::Remove) => {}
            _ => set(headers, name, new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NAME: HeaderName = HeaderName::from_static("x-b3-spanid");

    #[test]
    fn set_replaces_every_value_keeps_an_equal_one_and_removes_on_invalid() {
        let mut headers = HeaderMap::new();
        set(&mut headers, &NAME, New::Bytes(b"a"));
        assert_eq!(
            headers.get(&NAME).map(HeaderValue::as_bytes),
            Some(&b"a"[..])
        );
        headers.append(&NAME, HeaderValue::from_static("b"));
        set(&mut headers, &NAME, New::Bytes(b"a"));
        assert_eq!(headers.get_all(&NAME).iter().count(), 1, "duplicates go");
        set(&mut headers, &NAME, New::Bytes(b"a"));
        assert_eq!(
            headers.get(&NAME).map(HeaderValue::as_bytes),
            Some(&b"a"[..])
        );
        set(&mut headers, &NAME, New::Bytes(b"bad\n"));
        assert!(headers.get(&NAME).is_none(), "an invalid value removes it");
        set(&mut headers, &NAME, New::Remove);
        assert!(headers.is_empty());
    }

    #[test]
    fn a_made_value_replaces_duplicates() {
        let mut headers = HeaderMap::new();
        let v = HeaderValue::from_static("1");
        headers.append(&NAME, v.clone());
        headers.append(&NAME, v.clone());
        set(&mut headers, &NAME, New::Made(&v));
        assert_eq!(headers.get_all(&NAME).iter().count(), 1);
    }

    /// [`set_all`] against the same writes made one by one with hashed
    /// lookups, on maps holding each header absent, once (same value or
    /// another), twice, and beside enough other headers to pass the scan limit.
    #[test]
    fn set_all_writes_what_one_lookup_per_header_writes() {
        static OTHER: HeaderName = HeaderName::from_static("x-b3-sampled");
        static SHARED: HeaderValue = HeaderValue::from_static("s");
        let news = [
            New::Bytes(b"a"),
            New::Bytes(b"bad\n"),
            New::Made(&SHARED),
            New::Decimal(7),
            New::Remove,
        ];
        let holdings: [&[&str]; 7] = [&[], &["a"], &["s"], &["7"], &["07"], &["b"], &["a", "a"]];
        for filler in [0, SCAN_MAX] {
            for new in news {
                for other_new in news {
                    for held in holdings {
                        for other_held in holdings {
                            let mut headers = HeaderMap::new();
                            for i in 0..filler {
                                let name = format!("x-filler-{i}");
                                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                                headers.insert(name, HeaderValue::from_static("f"));
                            }
                            for v in held {
                                headers.append(&NAME, HeaderValue::from_static(v));
                            }
                            for v in other_held {
                                headers.append(&OTHER, HeaderValue::from_static(v));
                            }
                            let mut expected = headers.clone();
                            set(&mut expected, &NAME, new);
                            set(&mut expected, &OTHER, other_new);
                            let mut got = headers.clone();
                            set_all(&mut got, "x-b3-", [(&NAME, new), (&OTHER, other_new)], true);
                            assert_eq!(got, expected, "{held:?} {other_held:?} filler {filler}");
                        }
                    }
                }
            }
        }
        // A format that did not arrive has nothing to remove or compare.
        let mut headers = HeaderMap::new();
        set_all(
            &mut headers,
            "x-b3-",
            [(&NAME, New::Bytes(b"a")), (&OTHER, New::Remove)],
            false,
        );
        assert_eq!(headers.get(&NAME), Some(&HeaderValue::from_static("a")));
        assert_eq!(headers.len(), 1);
    }

    /// One pass finds what a hashed `get` per name finds: the first value, on
    /// maps below and above the scan limit.
    #[test]
    fn first_values_are_what_get_finds() {
        static OTHER: HeaderName = HeaderName::from_static("x-b3-sampled");
        for filler in [0, SCAN_MAX] {
            let mut headers = HeaderMap::new();
            for i in 0..filler {
                let name = HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap();
                headers.insert(name, HeaderValue::from_static("f"));
            }
            headers.append(&NAME, HeaderValue::from_static("1"));
            headers.append(&NAME, HeaderValue::from_static("2"));
            let got = first_values(&headers, "x-b3-", [&NAME, &OTHER]);
            assert_eq!(got, [Some(&b"1"[..]), None], "filler {filler}");
            let get = |n| headers.get(n).map(HeaderValue::as_bytes);
            assert_eq!(got, [get(&NAME), get(&OTHER)]);
        }
    }

    #[test]
    fn a_buf_that_overflows_is_never_written() {
        let mut buf: Buf = Buf::new();
        buf.extend(&[b'a'; CAP]);
        assert_eq!(buf.get().map(<[u8]>::len), Some(CAP));
        buf.push(b'b');
        assert_eq!(buf.get(), None);
    }
}
