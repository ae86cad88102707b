//! The hand-written envelopes decode as the request opentelemetry-proto's
//! types describe, with every span field in place.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;
use prost::Message;

use opentelemetry_proto::tonic::trace::v1::Span;

use super::super::wire::testing::write;
use super::super::wire::EncodedSpan;
use super::Envelope;

fn span(n: u64) -> EncodedSpan {
    write(&data(n))
}

fn data(n: u64) -> SpanData {
    let context = SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
        SpanId::from(n),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    let mut links = SpanLinks::default();
    links.links.push(Link::new(
        SpanContext::new(
            TraceId::from(7),
            SpanId::from(8),
            TraceFlags::default(),
            true,
            TraceState::NONE,
        ),
        vec![KeyValue::new(
            "meshtrace.link.reason",
            "propagation_conflict",
        )],
        0,
    ));
    SpanData {
        span_context: context,
        parent_span_id: SpanId::from(0x00f0_67aa_0ba9_02b7),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: format!("GET /items/{n}").into(),
        start_time: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        end_time: SystemTime::UNIX_EPOCH + Duration::from_secs(2),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 500_i64),
            KeyValue::new("url.path", format!("/items/{n}")),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status: Status::error(""),
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

#[test]
fn a_batch_decodes_as_one_resource_and_scope_with_every_span() {
    let resource = Resource::builder_empty()
        .with_attributes([KeyValue::new("service.name", "checkout")])
        .build();
    let envelope = Envelope::new(&resource);
    let bytes = envelope.encode(&[span(1), span(2), span(3)]);
    let request = ExportTraceServiceRequest::decode(bytes).unwrap();
    assert_eq!(request.resource_spans.len(), 1);
    let rs = &request.resource_spans[0];
    let attrs = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(attrs[0].key, "service.name");
    assert_eq!(
        attrs[0].value.as_ref().unwrap().value,
        Some(V::StringValue("checkout".into()))
    );
    assert_eq!(rs.scope_spans.len(), 1);
    let ss = &rs.scope_spans[0];
    assert_eq!(ss.scope.as_ref().unwrap().name, "meshtrace-proxy");
    assert_eq!(ss.spans.len(), 3);
    let s = &ss.spans[1];
    assert_eq!(s.name, "GET /items/2");
    assert_eq!(s.span_id, 2_u64.to_be_bytes());
    assert_eq!(s.trace_id.len(), 16);
    assert_eq!(s.parent_span_id, 0x00f0_67aa_0ba9_02b7_u64.to_be_bytes());
    // sampled | has-is-remote | is-remote
    assert_eq!(s.flags, 0x1 | 0x100 | 0x200);
    assert_eq!(s.kind, 2);
    assert_eq!(s.start_time_unix_nano, 1_000_000_000);
    assert_eq!(s.end_time_unix_nano, 2_000_000_000);
    assert_eq!(s.attributes.len(), 3);
    assert_eq!(
        s.attributes[1].value.as_ref().unwrap().value,
        Some(V::IntValue(500))
    );
    assert_eq!(s.status.as_ref().unwrap().code, 2);
    assert_eq!(s.links.len(), 1);
    assert_eq!(s.links[0].span_id, 8_u64.to_be_bytes());
    assert_eq!(s.links[0].attributes[0].key, "meshtrace.link.reason");
}

#[test]
fn an_empty_batch_is_a_valid_request() {
    let envelope = Envelope::new(&Resource::builder_empty().build());
    let request = ExportTraceServiceRequest::decode(envelope.encode(&[])).unwrap();
    assert!(request.resource_spans[0].scope_spans[0].spans.is_empty());
}

/// The byte budget counts a span's memory: never below its encoded size, and
/// within a small factor of it.
#[test]
fn a_span_s_size_bounds_its_encoded_size_within_a_small_factor() {
    let envelope = Envelope::new(&Resource::builder_empty().build());
    let empty = envelope.encode(&[]).len();
    let estimated = span(1).size();
    let real = envelope.encode(&[span(1)]).len() - empty;
    assert!(
        estimated >= real && estimated <= real * 8,
        "size {estimated} vs encoded {real}"
    );
}

/// The bytes written straight from the request's facts are exactly prost's
/// for the `Span` opentelemetry-proto's own `From<SpanData>` builds (the
/// conversion opentelemetry-otlp exported with), whatever the span carries:
/// links, string arrays, zero and negative integers, booleans, doubles, no
/// parent, an unset status.
#[test]
fn spans_are_written_exactly_as_prost_writes_the_proto_span() {
    let mut many = data(9);
    many.attributes.push(KeyValue::new(
        "meshtrace.propagation.formats",
        opentelemetry::Value::Array(opentelemetry::Array::String(vec![
            "w3c".into(),
            "b3".into(),
        ])),
    ));
    many.attributes.push(KeyValue::new("zero", 0_i64));
    many.attributes.push(KeyValue::new("neg", -3_i64));
    many.attributes.push(KeyValue::new("k", true));
    many.attributes.push(KeyValue::new("f", 1.5));
    many.attributes.push(KeyValue::new("empty", ""));
    let mut unset = data(10);
    unset.status = Status::Unset;
    unset.parent_span_id = SpanId::INVALID;
    unset.parent_span_is_remote = false;
    unset.span_kind = SpanKind::Client;
    unset.links = SpanLinks::default();
    for data in [data(1), many, unset] {
        let reference = Span::from(data.clone()).encode_to_vec();
        assert_eq!(write(&data).bytes(), &reference[..]);
    }
}

/// Each writer call lands as the field opentelemetry-proto decodes.
#[test]
fn the_writer_s_calls_decode_as_their_fields() {
    use super::super::wire::{LinkTo, SpanHead, SpanTail, SpanWriter};
    let head = SpanHead {
        trace_id: 7,
        span_id: 9,
        parent_id: None,
        name: &["GET", " ", "/users/{id}"],
        kind: SpanKind::Server,
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        end: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
    };
    // A buffer too small: it grows.
    let mut writer = SpanWriter::new(&head, 1);
    writer.str("a", "x");
    writer.parts("rpc.method", &["pkg.Svc", "/", "Get"]);
    writer.int("n", 300);
    writer.strs("formats", &["w3c", "", "datadog"]);
    writer.link(&LinkTo {
        trace_id: 1,
        span_id: 2,
        trace_flags: 1,
        remote: false,
        attributes: &[("why", "because")],
    });
    let span = writer
        .finish(&SpanTail {
            status: &Status::error("boom"),
            trace_flags: 0,
            parent_remote: false,
        })
        .proto();
    assert_eq!(span.name, "GET /users/{id}");
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.start_time_unix_nano, span.end_time_unix_nano);
    let value = |i: usize| span.attributes[i].value.as_ref().unwrap().value.clone();
    assert_eq!(value(0), Some(V::StringValue("x".into())));
    assert_eq!(value(1), Some(V::StringValue("pkg.Svc/Get".into())));
    assert_eq!(value(2), Some(V::IntValue(300)));
    let Some(V::ArrayValue(formats)) = value(3) else {
        panic!("{:?}", value(3));
    };
    let formats: Vec<_> = formats.values.into_iter().map(|v| v.value).collect();
    assert_eq!(
        formats,
        [
            Some(V::StringValue("w3c".into())),
            Some(V::StringValue(String::new())),
            Some(V::StringValue("datadog".into()))
        ]
    );
    assert_eq!(span.links[0].trace_id, 1_u128.to_be_bytes());
    assert_eq!(span.links[0].flags, 0x1 | 0x100);
    assert_eq!(span.links[0].attributes[0].key, "why");
    let status = span.status.unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "boom"));
    assert_eq!(span.flags, 0x100);
}
