//! The `http1_stack` target's input: bytes to an HTTP/1 request (head, maybe a
//! body, maybe twice), biased toward trace headers.
//!
//! - byte 0, control: bits 0-1 the listener ([`crate::stack::Listener`]),
//!   bits 2-4 the stand-in's answer, bit 5 leaves out the default `host`,
//!   bit 6 sends the request twice (pipelined), bit 7 is raw mode: the rest
//!   of the input is written as is.
//! - byte 1: bits 0-3 the method ([`METHODS`]), bits 4-5 the version
//!   ([`VERSIONS`]).
//! - the rest, split on `0xFF`: segment 0 is the request target (`/` when
//!   empty); each further segment's first byte picks a header name from
//!   [`NAMES`] (`byte % (NAMES.len() + 1)`; the extra index is the body) and the
//!   rest is the value, written as is (CR and LF included: the value may end
//!   the head early or add lines).
//!
//! After the request comes [`SENTINEL`], an incomplete next request: it keeps
//! hyper's read buffer non-empty while the request is served, so that the
//! client's end of stream (sent right after) does not abort the exchange, and
//! the connection then ends at the end of stream.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::SEP;

/// Header names an input picks from: every trace header, the force and tenant
/// headers, and what frames or hops a request.
pub const NAMES: [&str; 40] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-datadog-origin",
    "x-datadog-tags",
    "uber-trace-id",
    "uberctx-user",
    "jaeger-debug-id",
    "baggage",
    "x-meshtrace-force-trace",
    "x-tenant-id",
    "host",
    "connection",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
    "expect",
    "keep-alive",
    "proxy-connection",
    "trailer",
    "content-type",
    "grpc-timeout",
    "user-agent",
    "x-request-id",
    "meshtrace-proxy-error",
    "forwarded",
    "x-forwarded-for",
    "http2-settings",
    "TraceParent",
    "X-B3-TraceId",
    "Host",
];

/// Request methods (`byte 1 & 15`, modulo the length).
pub const METHODS: [&str; 12] = [
    "GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "CONNECT", "PATCH", "TRACE", "PRI", "get",
    "M-SEARCH",
];

/// Request versions (`(byte 1 >> 4) & 3`).
pub const VERSIONS: [&str; 4] = ["HTTP/1.1", "HTTP/1.0", "HTTP/1.1", "HTTP/2.0"];

/// What follows every request: the first byte of a next one.
pub const SENTINEL: &[u8] = b"G";

/// The authority of the default `host`.
pub const HOST: &str = "reviews:9080";

/// A decoded input.
#[derive(Debug)]
pub struct Input {
    /// The control byte.
    pub control: u8,
    /// Everything written to the sidecar.
    pub bytes: Vec<u8>,
    /// The header fields that are valid header values (no CR/LF), as a
    /// well-behaved client's request would carry them.
    pub sent: HeaderMap,
    /// Whether the request target is in origin form (`/…`), so that the
    /// request's authority is its `host` (not raw mode).
    pub origin_form: bool,
}

impl Input {
    /// The input `data` describes; `None` when it is too short.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let (&control, rest) = data.split_first()?;
        let mut bytes = Vec::with_capacity(data.len() + 64);
        let mut sent = HeaderMap::new();
        let mut origin_form = false;
        if control & 0x80 != 0 {
            bytes.extend_from_slice(rest);
        } else {
            let (&shape, rest) = rest.split_first()?;
            origin_form = rest.first().is_none_or(|&b| b == b'/' || b == SEP);
            let request = request(control, shape, rest, &mut sent);
            bytes.extend_from_slice(&request);
            if control & 0x40 != 0 {
                bytes.extend_from_slice(&request);
            }
        }
        bytes.extend_from_slice(SENTINEL);
        Some(Self {
            control,
            bytes,
            sent,
            origin_form,
        })
    }
}

/// One request's bytes (see the module doc); its valid fields go to `sent`.
fn request(control: u8, shape: u8, rest: &[u8], sent: &mut HeaderMap) -> Vec<u8> {
    let mut segments = rest.split(|&b| b == SEP);
    let target = segments.next().filter(|t| !t.is_empty()).unwrap_or(b"/");
    let method = METHODS[usize::from(shape & 15) % METHODS.len()];
    let version = VERSIONS[usize::from((shape >> 4) & 3)];
    let mut head = Vec::with_capacity(rest.len() + 64);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target);
    head.push(b' ');
    head.extend_from_slice(version.as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut body: Vec<u8> = Vec::new();
    let mut host = false;
    for segment in segments {
        let Some((&tag, value)) = segment.split_first() else {
            continue;
        };
        let index = usize::from(tag) % (NAMES.len() + 1);
        let Some(name) = NAMES.get(index) else {
            body.extend_from_slice(value);
            continue;
        };
        host |= name.eq_ignore_ascii_case("host");
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            sent.append(n, v);
        }
    }
    if !host && control & 0x20 == 0 {
        head.extend_from_slice(b"host: ");
        head.extend_from_slice(HOST.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(&body);
    head
}
