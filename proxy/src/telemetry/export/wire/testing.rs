//! For tests: a `SpanData` written with [`SpanWriter`], and an
//! [`EncodedSpan`] read back into a `SpanData` through opentelemetry-proto's
//! generated types, so tests check what a collector receives.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message;

use super::{EncodedSpan, LinkTo, SpanHead, SpanTail, SpanWriter};

/// `data` written as the request path writes its spans. It must carry what
/// meshtrace's spans may carry: no events, no trace state, string link
/// attributes.
pub(crate) fn write(data: &SpanData) -> EncodedSpan {
    assert!(data.events.events.is_empty(), "the writer writes no events");
    let context = &data.span_context;
    assert!(context.trace_state().header().is_empty());
    let parent = data.parent_span_id;
    let head = SpanHead {
        trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(context.span_id().to_bytes()),
        parent_id: (parent != SpanId::INVALID).then(|| u64::from_be_bytes(parent.to_bytes())),
        name: &[&data.name],
        kind: data.span_kind.clone(),
        start: data.start_time,
        end: data.end_time,
    };
    let mut writer = SpanWriter::new(&head, 64);
    for kv in &data.attributes {
        writer.kv(kv.key.as_str(), &kv.value);
    }
    for link in &data.links.links {
        let attributes: Vec<(String, String)> = link
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        let attributes: Vec<(&str, &str)> = attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let context = &link.span_context;
        writer.link(&LinkTo {
            trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(context.span_id().to_bytes()),
            trace_flags: context.trace_flags().to_u8(),
            remote: context.is_remote(),
            attributes: &attributes,
        });
    }
    writer.finish(&SpanTail {
        status: &data.status,
        trace_flags: context.trace_flags().to_u8(),
        parent_remote: data.parent_span_is_remote,
    })
}

impl EncodedSpan {
    /// The span as opentelemetry-proto decodes it.
    pub(crate) fn proto(&self) -> Span {
        Span::decode(self.bytes()).expect("a span decodes")
    }

    /// The span read back into a `SpanData` (scope `meshtrace-proxy`).
    pub(crate) fn decode(&self) -> SpanData {
        let span = self.proto();
        let trace_flags = TraceFlags::new(span.flags as u8);
        let context = SpanContext::new(
            TraceId::from_bytes(span.trace_id.clone().try_into().expect("16 bytes")),
            SpanId::from_bytes(span.span_id.clone().try_into().expect("8 bytes")),
            trace_flags,
            false,
            TraceState::NONE,
        );
        let parent = if span.parent_span_id.is_empty() {
            SpanId::INVALID
        } else {
            SpanId::from_bytes(span.parent_span_id.clone().try_into().expect("8 bytes"))
        };
        let mut links = SpanLinks::default();
        links.links = span
            .links
            .iter()
            .map(|l| {
                let context = SpanContext::new(
                    TraceId::from_bytes(l.trace_id.clone().try_into().expect("16 bytes")),
                    SpanId::from_bytes(l.span_id.clone().try_into().expect("8 bytes")),
                    TraceFlags::new(l.flags as u8),
                    l.flags & 0x200 != 0,
                    TraceState::NONE,
                );
                Link::new(context, attributes(&l.attributes), 0)
            })
            .collect();
        let status = match span.status.as_ref().map_or(0, |s| s.code) {
            1 => Status::Ok,
            2 => Status::error(
                span.status
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default(),
            ),
            _ => Status::Unset,
        };
        SpanData {
            span_context: context,
            parent_span_id: parent,
            parent_span_is_remote: span.flags & 0x200 != 0,
            span_kind: match span.kind {
                2 => SpanKind::Server,
                3 => SpanKind::Client,
                4 => SpanKind::Producer,
                5 => SpanKind::Consumer,
                _ => SpanKind::Internal,
            },
            name: span.name.clone().into(),
            start_time: time(span.start_time_unix_nano),
            end_time: time(span.end_time_unix_nano),
            attributes: attributes(&span.attributes),
            dropped_attributes_count: span.dropped_attributes_count,
            events: SpanEvents::default(),
            links,
            status,
            instrumentation_scope: InstrumentationScope::builder("meshtrace-proxy").build(),
        }
    }
}

fn time(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn attributes(kvs: &[ProtoKeyValue]) -> Vec<KeyValue> {
    kvs.iter()
        .map(|kv| {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            KeyValue::new(kv.key.clone(), value.map_or(Value::from(""), value_of))
        })
        .collect()
}

fn value_of(v: &V) -> Value {
    match v {
        V::StringValue(s) => Value::String(s.clone().into()),
        V::BoolValue(b) => Value::Bool(*b),
        V::IntValue(i) => Value::I64(*i),
        V::DoubleValue(f) => Value::F64(*f),
        V::ArrayValue(a) => {
            let strings: Vec<StringValue> = a
                .values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(V::StringValue(s)) => Some(s.clone().into()),
                    _ => None,
                })
                .collect();
            assert_eq!(strings.len(), a.values.len(), "only string arrays");
            Value::Array(Array::String(strings))
        }
        other => panic!("unexpected attribute value {other:?}"),
    }
}
