//! Trace headers rendered once for the next hop, instead of written into the
//! request's header map.
//!
//! A sidecar that knows nothing yet of the app it fronts writes every format
//! toward it: ten headers or more. Each one written into a `HeaderMap` costs a
//! hashed insert, a checked copy into an allocation of its own, and a free when
//! the map goes — about 7.6 k instructions per request, more than a fifth of
//! a proxied HTTP/1.1 request (benches/RESULTS.md). Yet the HTTP/1 client
//! only turns them back into bytes.
//!
//! So [`inject::render`](super::inject::render) writes them here instead: one
//! buffer of field lines (`name: value\r\n`), exactly as HTTP/1.1 sends them,
//! which the request carries as an extension. The HTTP/1 client appends
//! [`Rendered::lines`] to the head it encodes; the other ways a request leaves
//! an HTTP/1 connection (hyper's client for upgrades; HTTP/2 had a listener
//! render) first call [`settle`], which writes them into the header map as
//! [`inject::write`] would have. Only connections whose requests leave through
//! the HTTP/1 client render (`http::Attachments::rendered`).
//!
//! [`inject::write`]: super::inject::write

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Request;

use super::swar::{within, HIGH};
use super::value::{New, Sink};

/// Room reserved up front: every format for a 128-bit trace with a short
/// `tracestate` and Datadog's `_dd.p.tid` fits, so the buffer grows only for
/// long `tracestate`s and tag sets.
const RESERVE: usize = 512;

/// A request's trace headers as field lines. Nothing else: which header is
/// where is read back from the lines on the rare way out that needs the
/// headers one by one ([`settle`]), rather than tracked on every request.
#[derive(Clone, Debug)]
pub struct Rendered {
    lines: Vec<u8>,
}

impl Rendered {
    /// Nothing rendered yet.
    pub(crate) fn new() -> Self {
        Self { lines: Vec::new() }
    }

    /// Whether nothing was rendered.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The headers as HTTP/1.1 field lines, each ending in CRLF.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Each header's name and value, in the order they were rendered. (Every
    /// line is one [`Sink::set`] wrote: a name, `: `, a value without CR or
    /// LF, CRLF.)
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_suffix(b"\r"))
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let (name, value) = line.split_at(colon);
                Some((name, value.get(2..).unwrap_or_default()))
            })
    }

    /// Writes the headers into `headers`, each replacing any value there.
    pub fn write_into(&self, headers: &mut HeaderMap) {
        for (name, value) in self.fields() {
            // Checked when rendered: never fails.
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.insert(name, value);
            }
        }
    }
}

/// Moves the trace headers rendered for `req` (if any) into its header map, for
/// a way out that does not encode the head itself.
pub fn settle<B>(req: &mut Request<B>) {
    if let Some(rendered) = req.extensions_mut().remove::<Rendered>() {
        rendered.write_into(req.headers_mut());
    }
}

impl Sink for Rendered {
    /// Appends `name: value`; a value that is not a valid field value (or
    /// [`New::Remove`]) writes nothing, as [`super::value::set`] removes it.
    fn set(&mut self, name: &'static HeaderName, new: New<'_>) {
        let mut digits = itoa::Buffer::new();
        let value = match new {
            New::Bytes(bytes) if is_field_value(bytes) => bytes,
            New::Digits(bytes) => {
                debug_assert!(
                    bytes
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || b"-:".contains(b)),
                    "{name}: not digits: {bytes:?}"
                );
                bytes
            }
            New::Made(made) => made.as_bytes(),
            New::Decimal(n) => digits.format(n).as_bytes(),
            New::Bytes(_) | New::Remove => return,
        };
        let line = name.as_str().len() + value.len() + 4;
        // The first header reserves room for a usual request's all.
        let room = if self.lines.capacity() == 0 {
            line.max(RESERVE)
        } else {
            line
        };
        self.lines.reserve(room);
        self.lines.extend_from_slice(name.as_str().as_bytes());
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// Appends each header: nothing is rendered before a format writes, so
    /// there is nothing to settle in place.
    #[inline(always)]
    fn set_all<const N: usize>(
        &mut self,
        _prefix: &str,
        writes: [(&'static HeaderName, New<'_>); N],
        _arrived: bool,
    ) {
        for (name, new) in writes {
            self.set(name, new);
        }
    }
}

/// Whether `bytes` is a field value `HeaderValue` accepts: visible ASCII,
/// spaces, tabs and obs-text, but no other control character (CR and LF above
/// all, which would end the line). Eight bytes at a time: a byte at a time was
/// a quarter of the rendering's cost (ids are 16 to 55 bytes).
fn is_field_value(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let all_valid = words.all(|word| {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        valid_bytes(u64::from_le_bytes(w)) == HIGH
    });
    // The last fewer than eight, padded with spaces.
    let mut tail = [b' '; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    all_valid && valid_bytes(u64::from_le_bytes(tail)) == HIGH
}

/// The high bit of each byte of `x` that may be in a field value: obs-text
/// (the high bit already set), or below it a tab or 0x20..=0x7e.
fn valid_bytes(x: u64) -> u64 {
    let low = x & !HIGH;
    (within(low, 0x20, 0x7e) | within(low, b'\t', b'\t') | x) & HIGH
}

#[cfg(test)]
mod tests;
