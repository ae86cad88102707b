//! The HTTP/1.1 client codec, without IO: a request head written straight from
//! the `http::Request`, the response head parsed with `httparse`, and the
//! response body's framing (RFC 9112 §6.3) decoded from the connection's read
//! buffer. The connection ([`super`]) reads and writes; everything here is a
//! function of bytes, so every rule is tested on its own.
//!
//! The rules are hyper's client's (its `role.rs`), which this replaces on the
//! request path, so the upstream sees the same requests and the sidecar accepts
//! the same responses:
//!
//! - **Request framing** — a `content-length` the request carries is kept;
//!   otherwise a body of known length gets one (none when it is empty), and a
//!   body of unknown length is sent chunked, except for `GET`, `HEAD` and
//!   `CONNECT`, which are sent without a body. Trailers are sent only when the
//!   request declared them in `Trailer`.
//! - **Response framing** — 1xx (but 101), 204 and 304 responses, and any to
//!   `HEAD`, have no body; `transfer-encoding` ending in `chunked` is chunked,
//!   any other is read to the connection's end, and is refused in HTTP/1.0; a
//!   `content-length` must be one number, however often repeated; with neither,
//!   the body is read to the connection's end.
//! - **Limits** — at most [`MAX_HEADERS`] headers in a head of at most
//!   [`MAX_HEAD`] bytes; chunk extensions and trailers at most 16 KiB each.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRAILER, TRANSFER_ENCODING,
};
use http::request::Parts;
use http::{Method, Response, StatusCode, Version};

use crate::propagation::Rendered;

/// Most headers in a response head (hyper's default).
pub(super) const MAX_HEADERS: usize = 100;

/// Longest response head buffered (hyper's default read-buffer limit).
pub(super) const MAX_HEAD: usize = 8192 + 4096 * 100;

/// Most bytes of chunk extensions in one body, and of its trailers (hyper's
/// limits).
const MAX_EXTENSIONS: u64 = 16 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// `httparse` refused the head (or the trailers).
    #[error("malformed response head: {0}")]
    Head(#[from] httparse::Error),
    /// The head did not end within [`MAX_HEAD`] bytes.
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// A header name or value `http` refuses.
    #[error("response header {0:?} is not a valid header")]
    Header(String),
    /// `content-length` is not one number.
    #[error("invalid content-length")]
    ContentLength,
    /// HTTP/1.0 has no transfer codings.
    #[error("transfer-encoding in an HTTP/1.0 response")]
    TransferEncoding10,
    /// A 101 answered a request that asked for no upgrade.
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnexpectedUpgrade,
    /// The chunked framing is broken.
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    /// Chunk extensions past the limit.
    #[error("chunk extensions longer than {MAX_EXTENSIONS} bytes")]
    Extensions,
    /// Trailers past the limit.
    #[error("trailers larger than {MAX_TRAILERS} bytes")]
    TrailersTooLarge,
    /// The upstream closed the connection before the response ended.
    #[error("the connection closed before the response ended")]
    Incomplete,
}

// === Requests ===

/// How a request body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Send {
    /// Exactly this many bytes (`content-length`), or none at all.
    Length(u64),
    /// `transfer-encoding: chunked`, trailers allowed when `trailers`.
    Chunked { trailers: bool },
}

/// The request's framing (see the module's rules): `exact` is the body's exact
/// length when it knows it (`None` for a stream).
pub(super) fn request_framing(req: &Parts, exact: Option<u64>) -> Send {
    // One pass over the headers (a request has a few) rather than a hashed
    // lookup per name.
    let (mut length, mut valid, mut trailers) = (None, true, false);
    for (name, value) in &req.headers {
        if *name == CONTENT_LENGTH {
            valid &= add_length(&mut length, value.as_bytes()).is_some();
        } else if *name == TRAILER {
            trailers = true;
        }
    }
    match (length.filter(|_| valid), exact) {
        (Some(length), _) | (None, Some(length)) => Send::Length(length),
        (None, None) if matches!(req.method, Method::GET | Method::HEAD | Method::CONNECT) => {
            Send::Length(0)
        }
        (None, None) => Send::Chunked { trailers },
    }
}

/// Appends the request head to `out`: the request line (origin form: the
/// request's path and query), its headers in order, the trace headers rendered
/// for this hop ([`Rendered`], an extension), and the framing header `send`
/// needs when the request does not carry it.
pub(super) fn encode_head(req: &Parts, send: Send, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_length = false;
    for (name, value) in &req.headers {
        if name == TRANSFER_ENCODING {
            continue;
        }
        has_length |= name == CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(rendered) = req.extensions.get::<Rendered>() {
        out.extend_from_slice(rendered.lines());
    }
    match send {
        Send::Length(0) => {
            // An empty body needs no header, except where a body is expected.
            if !has_length && expects_body(&req.method) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        Send::Length(length) if !has_length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Send::Length(_) => {}
        Send::Chunked { .. } => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Methods whose requests normally carry a body: an empty one is announced.
fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Appends one chunk of a chunked body.
pub(super) fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return; // an empty chunk would end the body
    }
    let mut size = [0u8; 16];
    let digits = hex_digits(data.len() as u64, &mut size);
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the end of a chunked body, with the declared trailers.
pub(super) fn encode_last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The trailer names the request head declares in `Trailer`.
pub(super) fn trailer_names(head: &HeaderMap) -> Vec<HeaderName> {
    head.get_all(TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Only the trailers named in `declared` ([`trailer_names`]; hyper sends no
/// others: an undeclared trailer may not be expected by the upstream).
pub(super) fn declared_trailers(declared: &[HeaderName], trailers: HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    let mut last = None;
    for (name, value) in trailers {
        if let Some(name) = name {
            last = declared.contains(&name).then_some(name);
        }
        if let Some(name) = &last {
            kept.append(name.clone(), value);
        }
    }
    kept
}

fn hex_digits(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

// === Responses ===

/// A response head read from the buffer.
#[derive(Debug)]
pub(super) enum Head {
    /// Not all of it has arrived.
    Partial,
    /// An interim (1xx) response, consumed and skipped.
    Interim,
    /// The final response head.
    Final(Final),
}

/// A final response head, its body's framing, and whether the connection may
/// carry another request once this exchange ends.
#[derive(Debug)]
pub(super) struct Final {
    pub(super) head: Response<()>,
    pub(super) body: Framing,
    pub(super) keep_alive: bool,
}

/// Parses a response head from the start of `buf`, consuming it when complete.
/// `method` is the request's; `upgrade`, whether it asked for an upgrade.
pub(super) fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
) -> Result<Head, ProtocolError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let length = match parsed.parse(buf)? {
        httparse::Status::Complete(length) => length,
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            return Err(ProtocolError::HeadTooLarge)
        }
        httparse::Status::Partial => return Ok(Head::Partial),
    };
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| httparse::Error::Status)?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(length);
        return Ok(Head::Interim);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(ProtocolError::UnexpectedUpgrade);
    }
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each name and value lies in the head, so the values can be
    // slices of the head's bytes once taken from the buffer: no copy per value.
    let base = buf.as_ptr() as usize;
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let count = parsed.headers.len();
    for (span, header) in spans.iter_mut().zip(parsed.headers.iter()) {
        let name = header.name.as_ptr() as usize - base;
        let value = header.value.as_ptr() as usize - base;
        // The head is at most MAX_HEAD long: offsets fit in 32 bits.
        *span = (
            name as u32,
            header.name.len() as u32,
            value as u32,
            header.value.len() as u32,
        );
    }
    let bytes = buf.split_to(length).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut fields = FramingFields::default();
    for &(name, name_len, value, value_len) in &spans[..count] {
        let name = &bytes[name as usize..(name + name_len) as usize];
        let range = value as usize..(value + value_len) as usize;
        let invalid = || ProtocolError::Header(String::from_utf8_lossy(name).into_owned());
        let value =
            HeaderValue::from_maybe_shared(bytes.slice(range.clone())).map_err(|_| invalid())?;
        let name = HeaderName::from_bytes(name).map_err(|_| invalid())?;
        fields.note(&name, &bytes[range]);
        headers.append(name, value);
    }
    let body = framing(status, version, &fields, method)?;
    let keep_alive = keep_alive(version, &fields) && body != Framing::Eof;
    let mut head = Response::new(());
    *head.status_mut() = status;
    *head.version_mut() = version;
    *head.headers_mut() = headers;
    Ok(Head::Final(Final {
        head,
        body,
        keep_alive,
    }))
}

/// What the framing rules read from a response's headers, noted as the head is
/// parsed rather than looked up in the map again (a hashed lookup each).
#[derive(Debug, Default)]
struct FramingFields<'a> {
    /// The last `transfer-encoding` value.
    transfer_encoding: Option<&'a [u8]>,
    /// The `content-length` the values gave so far ([`add_length`]).
    content_length: Option<u64>,
    /// Whether some `content-length` value was invalid or disagreed.
    bad_length: bool,
    /// Whether `connection` lists `close`.
    close: bool,
    /// Whether `connection` lists `keep-alive`.
    keep_alive: bool,
}

impl<'a> FramingFields<'a> {
    /// Notes header `name: value`, called for each header in order.
    fn note(&mut self, name: &HeaderName, value: &'a [u8]) {
        if *name == TRANSFER_ENCODING {
            self.transfer_encoding = Some(value);
        } else if *name == CONTENT_LENGTH {
            self.bad_length |= add_length(&mut self.content_length, value).is_none();
        } else if *name == CONNECTION {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
}

/// The response body's framing (RFC 9112 §6.3; see the module's rules).
fn framing(
    status: StatusCode,
    version: Version,
    fields: &FramingFields<'_>,
    method: &Method,
) -> Result<Framing, ProtocolError> {
    if status == StatusCode::SWITCHING_PROTOCOLS
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || *method == Method::HEAD
        || (*method == Method::CONNECT && status.is_success())
    {
        return Ok(Framing::Empty);
    }
    if let Some(codings) = fields.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(ProtocolError::TransferEncoding10);
        }
        return Ok(if is_chunked(codings) {
            Framing::Chunked(Chunked::default())
        } else {
            Framing::Eof
        });
    }
    match fields.content_length {
        _ if fields.bad_length => Err(ProtocolError::ContentLength),
        None => Ok(Framing::Eof),
        Some(0) => Ok(Framing::Empty),
        Some(length) => Ok(Framing::Length(length)),
    }
}

/// Adds one `content-length` value to the `length` read so far; `None` when it
/// is invalid or disagrees. A message's `content-length` is one number,
/// however often repeated, comma-separated or in several fields.
fn add_length(length: &mut Option<u64>, value: &[u8]) -> Option<()> {
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if length.is_some_and(|l| l != n) {
            return None;
        }
        *length = Some(n);
    }
    Some(())
}

/// Whether the last of `codings` (a `transfer-encoding` value) is `chunked`.
fn is_chunked(codings: &[u8]) -> bool {
    codings
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether the connection stays open after this response: HTTP/1.1 unless it
/// says `close`, HTTP/1.0 only when it says `keep-alive`.
fn keep_alive(version: Version, fields: &FramingFields<'_>) -> bool {
    match version {
        Version::HTTP_11 => !fields.close,
        _ => fields.keep_alive,
    }
}

/// How a response body is delimited, and how much of it is still to come.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// This many bytes still to come.
    Length(u64),
    /// A chunked body, at this point of it.
    Chunked(Chunked),
    /// Everything until the connection closes.
    Eof,
}

/// What [`Framing::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailers; the body has ended.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    More,
}

/// The position inside a chunked body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
    /// Extension bytes seen so far in this body.
    extensions: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// At a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes still to come.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, at the trailers (or the final CRLF).
    Trailers,
    /// Ended.
    Done,
}

impl Framing {
    /// Whether the body has been read whole.
    pub fn is_done(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Length(left) => *left == 0,
            Self::Chunked(chunked) => chunked.state == ChunkState::Done,
            Self::Eof => false,
        }
    }

    /// The bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Self::Empty => Some(0),
            Self::Length(left) => Some(*left),
            _ => None,
        }
    }

    /// Decodes what `buf` holds of the body. `eof`: the connection has closed
    /// (nothing more will arrive).
    pub fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Decoded, ProtocolError> {
        match self {
            Self::Empty | Self::Length(0) => Ok(Decoded::End),
            Self::Length(left) => {
                if buf.is_empty() {
                    return if eof {
                        Err(ProtocolError::Incomplete)
                    } else {
                        Ok(Decoded::More)
                    };
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            Self::Eof => {
                if !buf.is_empty() {
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Ok(if eof { Decoded::End } else { Decoded::More })
            }
            Self::Chunked(chunked) => {
                let decoded = chunked.decode(buf)?;
                if decoded == Decoded::More && eof {
                    return Err(ProtocolError::Incomplete);
                }
                Ok(decoded)
            }
        }
    }
}

impl Chunked {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = find_crlf(buf) else {
                        return self.need_line(buf, MAX_EXTENSIONS as usize + 32);
                    };
                    let line = buf.split_to(end + 2);
                    let (size, extensions) = parse_size_line(&line[..end])?;
                    self.extensions += extensions as u64;
                    if self.extensions > MAX_EXTENSIONS {
                        return Err(ProtocolError::Extensions);
                    }
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtocolError::Chunked("chunk data longer than its size"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = ChunkState::Done;
                        return Ok(Decoded::End);
                    }
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let length = match httparse::parse_headers(buf, &mut slots)? {
                        httparse::Status::Complete((length, _)) => length,
                        httparse::Status::Partial => return self.need_line(buf, MAX_TRAILERS),
                    };
                    if length > MAX_TRAILERS {
                        return Err(ProtocolError::TrailersTooLarge);
                    }
                    let bytes = buf.split_to(length).freeze();
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut trailers = HeaderMap::new();
                    if let Ok(httparse::Status::Complete((_, fields))) =
                        httparse::parse_headers(&bytes, &mut slots)
                    {
                        for field in fields {
                            let name = HeaderName::from_bytes(field.name.as_bytes())
                                .map_err(|_| ProtocolError::Header(field.name.to_string()))?;
                            let value =
                                HeaderValue::from_maybe_shared(bytes.slice_ref(field.value))
                                    .map_err(|_| ProtocolError::Header(field.name.to_string()))?;
                            trailers.append(name, value);
                        }
                    }
                    self.state = ChunkState::Done;
                    return Ok(Decoded::Trailers(trailers));
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }

    /// More bytes are needed for a line, unless `buf` already holds more than
    /// `limit` of it.
    fn need_line(&self, buf: &BytesMut, limit: usize) -> Result<Decoded, ProtocolError> {
        if buf.len() > limit {
            return Err(match self.state {
                ChunkState::Trailers => ProtocolError::TrailersTooLarge,
                _ => ProtocolError::Extensions,
            });
        }
        Ok(Decoded::More)
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// A chunk-size line: hex digits, optional whitespace, then `;` extensions.
/// Returns the size and the extensions' length.
fn parse_size_line(line: &[u8]) -> Result<(u64, usize), ProtocolError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ProtocolError::Chunked("chunk size is not a hex number"));
    }
    if digits > 16 {
        return Err(ProtocolError::Chunked("chunk size too large"));
    }
    let mut size = 0u64;
    for &b in &line[..digits] {
        let digit = (b as char).to_digit(16).unwrap_or(0);
        size = size << 4 | u64::from(digit);
    }
    let rest = line[digits..].trim_ascii_start();
    match rest.first() {
        None => Ok((size, 0)),
        Some(b';') => {
            if rest.iter().any(|&b| b == b'\r' || b == b'\n') {
                return Err(ProtocolError::Chunked("bare CR or LF in a chunk extension"));
            }
            Ok((size, rest.len()))
        }
        Some(_) => Err(ProtocolError::Chunked("chunk size followed by junk")),
    }
}

#[cfg(test)]
mod tests;
