//! A span record written straight into OTLP protobuf: the bytes prost would
//! write for opentelemetry-proto's `Span` built from it, without building that
//! `Span` (one string allocation per attribute key and value, then their drop,
//! were most of an export's cost). Field numbers and types follow
//! opentelemetry-proto's generated `trace.v1` and `common.v1` types; the
//! tests compare the bytes decoded with those types.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Event, Link, SpanId, SpanKind, Status};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents};
use prost::encoding::{encoded_len_varint, key_len};

/// The encoded length of `data` as a `Span` message.
pub(super) fn span_len(data: &SpanData) -> usize {
    let parent = data.parent_span_id != SpanId::INVALID;
    bytes_len(1, 16)
        + bytes_len(2, 8)
        + bytes_len(3, trace_state(data).len())
        + if parent { bytes_len(4, 8) } else { 0 }
        + key_len(16) + 4 // flags: never 0 (the has-is-remote bit)
        + bytes_len(5, data.name.len())
        + key_len(6) + 1 // kind: 1..=5
        + fixed64_len(7, nanos(data.start_time))
        + fixed64_len(8, nanos(data.end_time))
        + kvs_len(9, &data.attributes)
        + uint_len(10, data.dropped_attributes_count.into())
        + events_len(&data.events)
        + uint_len(12, data.events.dropped_count.into())
        + data.links.links.iter().map(|l| msg_len(13, link_len(l))).sum::<usize>()
        + uint_len(14, data.links.dropped_count.into())
        + msg_len(15, status_len(&data.status))
}

/// Writes `data` as the body of a `Span` message (`span_len(data)` bytes).
pub(super) fn put_span(data: &SpanData, buf: &mut Vec<u8>) {
    let context = &data.span_context;
    put_bytes(1, &context.trace_id().to_bytes(), buf);
    put_bytes(2, &context.span_id().to_bytes(), buf);
    put_bytes(3, trace_state(data).as_bytes(), buf);
    if data.parent_span_id != SpanId::INVALID {
        put_bytes(4, &data.parent_span_id.to_bytes(), buf);
    }
    put_bytes(5, data.name.as_bytes(), buf);
    put_uint(6, kind(&data.span_kind), buf);
    put_fixed64(7, nanos(data.start_time), buf);
    put_fixed64(8, nanos(data.end_time), buf);
    for kv in &data.attributes {
        put_kv(9, kv, buf);
    }
    put_uint(10, data.dropped_attributes_count.into(), buf);
    for event in &data.events.events {
        header(11, event_len(event), buf);
        put_fixed64(1, nanos(event.timestamp), buf);
        put_bytes(2, event.name.as_bytes(), buf);
        for kv in &event.attributes {
            put_kv(3, kv, buf);
        }
        put_uint(4, event.dropped_attributes_count.into(), buf);
    }
    put_uint(12, data.events.dropped_count.into(), buf);
    for link in &data.links.links {
        header(13, link_len(link), buf);
        put_link(link, buf);
    }
    put_uint(14, data.links.dropped_count.into(), buf);
    header(15, status_len(&data.status), buf);
    if let Status::Error { description } = &data.status {
        put_bytes(2, description.as_bytes(), buf);
    }
    put_uint(3, status_code(&data.status), buf);
    // Field 16 last: prost writes fields in tag order.
    key(16, FIXED32, buf);
    buf.extend_from_slice(
        &flags(data.parent_span_is_remote, context.trace_flags().to_u8()).to_le_bytes(),
    );
}

fn trace_state(data: &SpanData) -> String {
    data.span_context.trace_state().header()
}

fn events_len(events: &SpanEvents) -> usize {
    events
        .events
        .iter()
        .map(|e| msg_len(11, event_len(e)))
        .sum()
}

/// The length of an `Event` message's body.
fn event_len(event: &Event) -> usize {
    fixed64_len(1, nanos(event.timestamp))
        + bytes_len(2, event.name.len())
        + kvs_len(3, &event.attributes)
        + uint_len(4, event.dropped_attributes_count.into())
}

fn link_len(link: &Link) -> usize {
    bytes_len(1, 16)
        + bytes_len(2, 8)
        + bytes_len(3, link.span_context.trace_state().header().len())
        + kvs_len(4, &link.attributes)
        + uint_len(5, link.dropped_attributes_count.into())
        + key_len(6)
        + 4
}

fn put_link(link: &Link, buf: &mut Vec<u8>) {
    let context = &link.span_context;
    put_bytes(1, &context.trace_id().to_bytes(), buf);
    put_bytes(2, &context.span_id().to_bytes(), buf);
    put_bytes(3, context.trace_state().header().as_bytes(), buf);
    for kv in &link.attributes {
        put_kv(4, kv, buf);
    }
    put_uint(5, link.dropped_attributes_count.into(), buf);
    key(6, FIXED32, buf);
    buf.extend_from_slice(&flags(context.is_remote(), context.trace_flags().to_u8()).to_le_bytes());
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

/// The length of repeated `KeyValue` field `tag` holding `kvs`.
fn kvs_len(tag: u32, kvs: &[KeyValue]) -> usize {
    kvs.iter().map(|kv| msg_len(tag, kv_len(kv))).sum()
}

fn kv_len(kv: &KeyValue) -> usize {
    bytes_len(1, kv.key.as_str().len()) + msg_len(2, any_len(&kv.value))
}

fn put_kv(tag: u32, kv: &KeyValue, buf: &mut Vec<u8>) {
    header(tag, kv_len(kv), buf);
    put_bytes(1, kv.key.as_str().as_bytes(), buf);
    header(2, any_len(&kv.value), buf);
    put_any(&kv.value, buf);
}

/// The length of an `AnyValue` message holding `value`.
fn any_len(value: &Value) -> usize {
    match value {
        // A oneof field is written even when it holds its type's default.
        Value::Bool(_) => key_len(2) + 1,
        Value::I64(v) => key_len(3) + encoded_len_varint(*v as u64),
        Value::F64(_) => key_len(4) + 8,
        Value::String(s) => {
            key_len(1) + encoded_len_varint(s.as_str().len() as u64) + s.as_str().len()
        }
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
        Value::String(s) => {
            put_bytes_always(1, s.as_str().as_bytes(), buf);
        }
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
        Array::String(v) => v.iter().for_each(|x| f(Value::String(borrow(x)))),
        _ => {}
    }
}

/// A cheap copy of an array's string (an `Arc` or `'static` one is not
/// copied; an owned one is, rarely: our only string array is a handful of
/// propagation format names, all `'static`).
fn borrow(s: &StringValue) -> StringValue {
    s.clone()
}

// --- fields ---

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// A field's key (prost's `encode_key`, inlined: the buffer is sized
/// exactly, so a push is a store).
#[inline]
fn key(tag: u32, wire_type: u32, buf: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | wire_type), buf);
}

#[inline]
fn varint(mut value: u64, buf: &mut Vec<u8>) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

#[inline]
pub(super) fn header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    key(tag, LEN, buf);
    varint(len as u64, buf);
}

/// A string or bytes field, written even when empty (a oneof member).
#[inline]
fn put_bytes_always(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    header(tag, bytes.len(), buf);
    buf.extend_from_slice(bytes);
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

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    if !bytes.is_empty() {
        put_bytes_always(tag, bytes, buf);
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

fn fixed64_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + 8
    }
}

fn put_fixed64(tag: u32, value: u64, buf: &mut Vec<u8>) {
    if value != 0 {
        key(tag, FIXED64, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}
