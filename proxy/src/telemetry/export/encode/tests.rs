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

use super::super::wire::{put_span, span_len};
use super::{estimate, Envelope};

fn span(n: u64) -> SpanData {
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

/// The byte budget counts spans by an estimate of their memory: never below
/// their encoded size, and within a small factor of it.
#[test]
fn the_estimate_bounds_the_encoded_size_within_a_small_factor() {
    let envelope = Envelope::new(&Resource::builder_empty().build());
    let empty = envelope.encode(&[]).len();
    let estimated = estimate(&span(1));
    let real = envelope.encode(&[span(1)]).len() - empty;
    assert!(
        estimated >= real && estimated <= real * 8,
        "estimate {estimated} vs encoded {real}"
    );
}

/// The bytes written straight from the record are exactly prost's for the
/// `Span` opentelemetry-proto's own `From<SpanData>` builds (the conversion
/// opentelemetry-otlp exported with).
#[test]
fn spans_are_written_exactly_as_prost_writes_the_proto_span() {
    let mut with_event = span(9);
    with_event
        .events
        .events
        .push(opentelemetry::trace::Event::new(
            "ev",
            SystemTime::UNIX_EPOCH + Duration::from_millis(1500),
            vec![KeyValue::new("k", true), KeyValue::new("f", 1.5)],
            1,
        ));
    with_event.attributes.push(KeyValue::new(
        "meshtrace.propagation.formats",
        opentelemetry::Value::Array(opentelemetry::Array::String(vec![
            "w3c".into(),
            "b3".into(),
        ])),
    ));
    with_event.attributes.push(KeyValue::new("zero", 0_i64));
    with_event.attributes.push(KeyValue::new("neg", -3_i64));
    let mut unset = span(10);
    unset.status = Status::Unset;
    unset.parent_span_id = SpanId::INVALID;
    unset.parent_span_is_remote = false;
    unset.span_kind = SpanKind::Client;
    for data in [span(1), with_event, unset] {
        let reference = Span::from(data.clone()).encode_to_vec();
        let mut direct = Vec::new();
        put_span(&data, &mut direct);
        assert_eq!(span_len(&data), direct.len());
        assert_eq!(&direct[..], &reference[..]);
    }
}
