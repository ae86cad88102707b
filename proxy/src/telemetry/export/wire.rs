//! A span written straight into OTLP protobuf, on the thread that ends it:
//! the bytes prost would write for opentelemetry-proto's `Span`, without
//! building that `Span` or an intermediate record.
//!
//! A span used to cross to the export thread as an `opentelemetry_sdk`
//! `SpanData`: a vector of attributes with owned strings, built on the worker
//! and freed on the export thread, which is the allocator's slow path (a
//! traced request spent ~3 000 more instructions in jemalloc than an untraced
//! one), then converted to protobuf there. Now the worker writes the span's
//! fields once into one buffer, and the export thread only copies the buffers
//! of a batch into its request ([`super::encode`]): one allocation per span
//! crosses threads.
//!
//! Field numbers and types follow opentelemetry-proto's generated `trace.v1`
//! and `common.v1` types; fields are written in tag order, as prost writes
//! them, and the tests compare the bytes with prost's.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, StringValue, Value};
use prost::encoding::{encoded_len_varint, key_len};

/// One span's `Span` message body, encoded: what the export queue holds.
#[derive(Debug)]
pub struct EncodedSpan {
    body: Vec<u8>,
}

// === impl EncodedSpan ===

impl EncodedSpan {
    /// The `Span` message's body.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The memory it holds, for the queue's byte budget.
    pub(super) fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.body.capacity()
    }
}

/// The fields a span starts with: its identity, name, kind and times.
#[derive(Debug)]
pub struct SpanHead<'a> {
    /// The trace.
    pub trace_id: u128,
    /// The span.
    pub span_id: u64,
    /// The parent span, when there is one.
    pub parent_id: Option<u64>,
    /// The name, in parts written one after the other (`GET /users/{id}`
    /// without formatting it first).
    pub name: &'a [&'a str],
    /// The span's kind.
    pub kind: SpanKind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
}

/// The end of a span: its status and flags.
#[derive(Debug)]
pub struct SpanTail<'a> {
    /// The span's status.
    pub status: &'a Status,
    /// W3C trace flags (sampled).
    pub trace_flags: u8,
    /// Whether the parent is remote (a context that arrived with the request).
    pub parent_remote: bool,
}

/// Writes one span, field by field in tag order: [`SpanWriter::new`] (fields
/// 1–8), then the attributes (9), then the links (13), then
/// [`SpanWriter::finish`] (15, 16). The span carries no trace state (3),
/// events (11) or dropped counts, as none of meshtrace's spans do.
#[derive(Debug)]
pub struct SpanWriter {
    buf: Vec<u8>,
    /// The last field written, to keep tag order (checked in debug builds).
    last: u32,
}

// === impl SpanWriter ===

impl SpanWriter {
    /// A span starting with `head`, in a buffer of `capacity` bytes (it grows
    /// when the span needs more).
    pub fn new(head: &SpanHead<'_>, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        put_bytes(1, &head.trace_id.to_be_bytes(), &mut buf);
        put_bytes(2, &head.span_id.to_be_bytes(), &mut buf);
        if let Some(parent) = head.parent_id {
            put_bytes(4, &parent.to_be_bytes(), &mut buf);
        }
        put_parts(5, head.name, &mut buf);
        put_uint(6, kind(&head.kind), &mut buf);
        put_fixed64(7, nanos(head.start), &mut buf);
        put_fixed64(8, nanos(head.end), &mut buf);
        Self { buf, last: 8 }
    }

    fn field(&mut self, tag: u32) {
        debug_assert!(tag >= self.last, "field {tag} after {}", self.last);
        self.last = tag;
    }

    // The attribute writers are inlined into their callers, whose keys are
    // constants: the key's bytes and length then compile to a few stores
    // instead of a call to `memcpy` and a length's varint (a traced request
    // writes a dozen attributes; out of line they cost ~240 instructions each).

    /// A string attribute.
    #[inline(always)]
    pub fn str(&mut self, key: &str, value: &str) {
        self.parts(key, &[value]);
    }

    /// A string attribute whose value is `parts` one after the other.
    #[inline(always)]
    pub fn parts(&mut self, key: &str, parts: &[&str]) {
        self.field(9);
        put_str_kv(9, key, parts, &mut self.buf);
    }

    /// An integer attribute.
    #[inline(always)]
    pub fn int(&mut self, name: &str, value: i64) {
        self.field(9);
        let any = key_len(3) + encoded_len_varint(value as u64);
        header(9, bytes_len(1, name.len()) + msg_len(2, any), &mut self.buf);
        put_bytes(1, name.as_bytes(), &mut self.buf);
        header(2, any, &mut self.buf);
        key(3, VARINT, &mut self.buf);
        varint(value as u64, &mut self.buf);
    }

    /// An attribute of any value.
    pub fn kv(&mut self, key: &str, value: &Value) {
        self.field(9);
        put_kv(9, key, value, &mut self.buf);
    }

    /// A string-array attribute.
    pub fn strs(&mut self, key: &str, values: &[&str]) {
        self.field(9);
        let array: usize = values
            .iter()
            .map(|v| msg_len(1, any_str_len(v.len())))
            .sum();
        let any = key_len(5) + encoded_len_varint(array as u64) + array;
        header(9, bytes_len(1, key.len()) + msg_len(2, any), &mut self.buf);
        put_bytes(1, key.as_bytes(), &mut self.buf);
        header(2, any, &mut self.buf);
        header(5, array, &mut self.buf);
        for v in values {
            header(1, any_str_len(v.len()), &mut self.buf);
            put_parts_always(1, &[v], &mut self.buf);
        }
    }

    /// A link to another span context, with string attributes.
    pub fn link(&mut self, link: &LinkTo<'_>) {
        self.field(13);
        let attrs: usize = link
            .attributes
            .iter()
            .map(|(k, v)| msg_len(4, str_kv_len(k, v.len())))
            .sum();
        let len = bytes_len(1, 16) + bytes_len(2, 8) + attrs + key_len(6) + 4;
        header(13, len, &mut self.buf);
        put_bytes(1, &link.trace_id.to_be_bytes(), &mut self.buf);
        put_bytes(2, &link.span_id.to_be_bytes(), &mut self.buf);
        for (k, v) in link.attributes {
            put_str_kv(4, k, &[v], &mut self.buf);
        }
        key(6, FIXED32, &mut self.buf);
        self.buf
            .extend_from_slice(&flags(link.remote, link.trace_flags).to_le_bytes());
    }

    /// Ends the span with its status and flags.
    pub fn finish(mut self, tail: &SpanTail<'_>) -> EncodedSpan {
        self.field(15);
        let buf = &mut self.buf;
        header(15, status_len(tail.status), buf);
        if let Status::Error { description } = tail.status {
            put_bytes(2, description.as_bytes(), buf);
        }
        put_uint(3, status_code(tail.status), buf);
        key(16, FIXED32, buf);
        buf.extend_from_slice(&flags(tail.parent_remote, tail.trace_flags).to_le_bytes());
        EncodedSpan { body: self.buf }
    }
}

/// A span link: the linked context and the link's attributes.
#[derive(Debug)]
pub struct LinkTo<'a> {
    /// The linked trace.
    pub trace_id: u128,
    /// The linked span.
    pub span_id: u64,
    /// The linked context's W3C trace flags.
    pub trace_flags: u8,
    /// Whether the linked context came from another process.
    pub remote: bool,
    /// The link's attributes, all strings.
    pub attributes: &'a [(&'a str, &'a str)],
}

fn status_len(status: &Status) -> usize {
    let message = match status {
        Status::Error { description } => bytes_len(2, description.len()),
        _ => 0,
    };
    message + uint_len(3, status_code(status))
}

fn status_code(status: &Status) -> u64 {
    match status {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { .. } => 2,
    }
}

/// The span's trace flags plus whether its parent is remote (OTLP's
/// `SpanFlags`), as opentelemetry-proto's conversion sets them.
fn flags(remote: bool, trace_flags: u8) -> u32 {
    // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
    let mut flags = u32::from(trace_flags) | 0x100;
    if remote {
        flags |= 0x200;
    }
    flags
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// --- KeyValue and AnyValue ---

/// The length of an `AnyValue` holding a string of `len` bytes.
fn any_str_len(len: usize) -> usize {
    key_len(1) + encoded_len_varint(len as u64) + len
}

/// The length of a `KeyValue` holding `key` and a string of `len` bytes.
fn str_kv_len(key: &str, len: usize) -> usize {
    bytes_len(1, key.len()) + msg_len(2, any_str_len(len))
}

/// A `KeyValue` field `tag` holding `key` and the string `parts` make.
#[inline(always)]
fn put_str_kv(tag: u32, key: &str, parts: &[&str], buf: &mut Vec<u8>) {
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    header(tag, str_kv_len(key, len), buf);
    put_bytes(1, key.as_bytes(), buf);
    header(2, any_str_len(len), buf);
    put_parts_always(1, parts, buf);
}

fn kv_len(key: &str, value: &Value) -> usize {
    bytes_len(1, key.len()) + msg_len(2, any_len(value))
}

fn put_kv(tag: u32, key: &str, value: &Value, buf: &mut Vec<u8>) {
    header(tag, kv_len(key, value), buf);
    put_bytes(1, key.as_bytes(), buf);
    header(2, any_len(value), buf);
    put_any(value, buf);
}

/// The length of an `AnyValue` message holding `value`.
fn any_len(value: &Value) -> usize {
    match value {
        // A oneof field is written even when it holds its type's default.
        Value::Bool(_) => key_len(2) + 1,
        Value::I64(v) => key_len(3) + encoded_len_varint(*v as u64),
        Value::F64(_) => key_len(4) + 8,
        Value::String(s) => any_str_len(s.as_str().len()),
        Value::Array(array) => {
            key_len(5) + {
                let len = array_len(array);
                encoded_len_varint(len as u64) + len
            }
        }
        _ => 0,
    }
}

fn put_any(value: &Value, buf: &mut Vec<u8>) {
    match value {
        Value::Bool(v) => {
            key(2, VARINT, buf);
            buf.push(u8::from(*v));
        }
        Value::I64(v) => {
            key(3, VARINT, buf);
            varint(*v as u64, buf);
        }
        Value::F64(v) => {
            key(4, FIXED64, buf);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        Value::String(s) => put_parts_always(1, &[s.as_str()], buf),
        Value::Array(array) => {
            header(5, array_len(array), buf);
            for_each_element(array, |v| {
                header(1, any_len(&v), buf);
                put_any(&v, buf);
            });
        }
        _ => {}
    }
}

/// The length of an `ArrayValue` message: one `AnyValue` per element.
fn array_len(array: &Array) -> usize {
    let mut len = 0;
    for_each_element(array, |v| len += msg_len(1, any_len(&v)));
    len
}

fn for_each_element(array: &Array, mut f: impl FnMut(Value)) {
    match array {
        Array::Bool(v) => v.iter().for_each(|x| f(Value::Bool(*x))),
        Array::I64(v) => v.iter().for_each(|x| f(Value::I64(*x))),
        Array::F64(v) => v.iter().for_each(|x| f(Value::F64(*x))),
        Array::String(v) => v
            .iter()
            .for_each(|x| f(Value::String(StringValue::clone(x)))),
        _ => {}
    }
}

// --- fields ---

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// A field's key (prost's `encode_key`, inlined).
#[inline(always)]
fn key(tag: u32, wire_type: u32, buf: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | wire_type), buf);
}

#[inline(always)]
fn varint(mut value: u64, buf: &mut Vec<u8>) {
    if value < 0x80 {
        // Every key, and most lengths.
        buf.push(value as u8);
        return;
    }
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

#[inline(always)]
pub(super) fn header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    key(tag, LEN, buf);
    varint(len as u64, buf);
}

/// A string or bytes field made of `parts`, written even when empty (a
/// oneof member).
#[inline(always)]
fn put_parts_always(tag: u32, parts: &[&str], buf: &mut Vec<u8>) {
    header(tag, parts.iter().map(|p| p.len()).sum(), buf);
    for part in parts {
        buf.extend_from_slice(part.as_bytes());
    }
}

/// A string field made of `parts`, left out when empty (proto3).
fn put_parts(tag: u32, parts: &[&str], buf: &mut Vec<u8>) {
    if parts.iter().any(|p| !p.is_empty()) {
        put_parts_always(tag, parts, buf);
    }
}

/// The bytes of a length-delimited field of `len` bytes, key and length included.
pub(super) fn msg_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A string or bytes field, left out when empty (proto3).
fn bytes_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        msg_len(tag, len)
    }
}

#[inline(always)]
fn put_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    if !bytes.is_empty() {
        header(tag, bytes.len(), buf);
        buf.extend_from_slice(bytes);
    }
}

fn uint_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

fn put_uint(tag: u32, value: u64, buf: &mut Vec<u8>) {
    if value != 0 {
        key(tag, VARINT, buf);
        varint(value, buf);
    }
}

fn put_fixed64(tag: u32, value: u64, buf: &mut Vec<u8>) {
    if value != 0 {
        key(tag, FIXED64, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
pub(crate) mod testing;
