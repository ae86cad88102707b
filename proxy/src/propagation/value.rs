//! Writing one trace header: the value is built on the stack ([`Buf`]) and
//! copied once into its `HeaderValue`, and [`set`] leaves a header that already
//! holds exactly that value alone (the common case for every field but the
//! span id when the caller's format goes on), so an unchanged field costs one
//! lookup and a compare instead of an allocation and a replacement.

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

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

/// Sets `name` to the single value `value`: nothing happens when the header
/// already holds exactly it, once; otherwise every value it had is replaced. A
/// value that is not a valid header value (or a [`Buf`] that overflowed,
/// `None`) removes the header rather than leave a stale one.
pub(crate) fn set(headers: &mut HeaderMap, name: &'static HeaderName, value: Option<&[u8]>) {
    let new = || value.and_then(|v| HeaderValue::from_bytes(v).ok());
    match headers.entry(name) {
        Entry::Occupied(mut entry) => {
            let mut values = entry.iter();
            let unchanged =
                values.next().map(HeaderValue::as_bytes) == value && values.next().is_none();
            if !unchanged {
                match new() {
                    Some(v) => drop(entry.insert(v)),
                    None => drop(entry.remove_entry_mult()),
                }
            }
        }
        Entry::Vacant(entry) => {
            if let Some(v) = new() {
                entry.insert(v);
            }
        }
    }
}

/// [`set`] when `value` is `Some`; when it is `None`, removes the header if
/// the request may carry it (`arrived`) — an absent header costs nothing.
pub(crate) fn put(
    headers: &mut HeaderMap,
    name: &'static HeaderName,
    value: Option<&[u8]>,
    arrived: bool,
) {
    if value.is_some() || arrived {
        set(headers, name, value);
    }
}

/// [`set`] with a value already made (`from_static`, or shared with the
/// request): compared the same way, never copied.
pub(crate) fn set_value(headers: &mut HeaderMap, name: &'static HeaderName, value: &HeaderValue) {
    match headers.entry(name) {
        Entry::Occupied(mut entry) => {
            let mut values = entry.iter();
            let unchanged = values.next() == Some(value) && values.next().is_none();
            if !unchanged {
                entry.insert(value.clone());
            }
        }
        Entry::Vacant(entry) => {
            entry.insert(value.clone());
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
        set(&mut headers, &NAME, Some(b"a"));
        assert_eq!(
            headers.get(&NAME).map(HeaderValue::as_bytes),
            Some(&b"a"[..])
        );
        headers.append(&NAME, HeaderValue::from_static("b"));
        set(&mut headers, &NAME, Some(b"a"));
        assert_eq!(headers.get_all(&NAME).iter().count(), 1, "duplicates go");
        set(&mut headers, &NAME, Some(b"a"));
        assert_eq!(
            headers.get(&NAME).map(HeaderValue::as_bytes),
            Some(&b"a"[..])
        );
        set(&mut headers, &NAME, Some(b"bad\n"));
        assert!(headers.get(&NAME).is_none(), "an invalid value removes it");
        set(&mut headers, &NAME, None);
        assert!(headers.is_empty());
    }

    #[test]
    fn set_value_replaces_duplicates() {
        let mut headers = HeaderMap::new();
        let v = HeaderValue::from_static("1");
        headers.append(&NAME, v.clone());
        headers.append(&NAME, v.clone());
        set_value(&mut headers, &NAME, &v);
        assert_eq!(headers.get_all(&NAME).iter().count(), 1);
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
