//! A batch of spans into the bytes of one `ExportTraceServiceRequest`, encoded
//! once.
//!
//! Each span arrives already encoded as the body of opentelemetry-proto's
//! `Span` ([`wire`], written on the thread that ended it); a batch copies
//! their bytes. The resource and the instrumentation scope are encoded once,
//! with prost, when the exporter starts; a batch copies their bytes too. The request's envelopes (`ResourceSpans`, `ScopeSpans`)
//! are written by hand around the spans, so prost measures each span once
//! (nesting the spans in the generated envelope types would measure them once
//! per level). Every retry sends the same bytes.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use prost::Message;

use super::wire::{self, EncodedSpan};

/// Field numbers of the envelopes written by hand (opentelemetry-proto's
/// `trace_service.proto` and `trace.proto`).
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;

/// The parts of every request that do not change: the resource's and the
/// scope's fields, already encoded.
#[derive(Debug, Clone)]
pub(super) struct Envelope {
    /// `ResourceSpans.resource` (field 1), key and length included.
    resource: Bytes,
    /// `ScopeSpans.scope` (field 1), key and length included.
    scope: Bytes,
}

// === impl Envelope ===

impl Envelope {
    /// The envelope for spans from `resource`, by meshtrace-proxy.
    pub(super) fn new(resource: &Resource) -> Self {
        let resource = ProtoResource {
            attributes: ResourceAttributesWithSchema::from(resource).attributes.0,
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        };
        let scope = InstrumentationScope {
            name: "meshtrace-proxy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        };
        Self {
            resource: field(RESOURCE_SPANS_RESOURCE, &resource),
            scope: field(SCOPE_SPANS_SCOPE, &scope),
        }
    }

    /// One `ExportTraceServiceRequest` holding `spans`, encoded.
    pub(super) fn encode(&self, spans: &[EncodedSpan]) -> Bytes {
        let spans_len: usize = spans
            .iter()
            .map(|span| wire::msg_len(SCOPE_SPANS_SPANS, span.bytes().len()))
            .sum();
        let scope_spans = self.scope.len() + spans_len;
        let resource_spans =
            self.resource.len() + wire::msg_len(RESOURCE_SPANS_SCOPE_SPANS, scope_spans);
        let mut buf = Vec::with_capacity(wire::msg_len(REQUEST_RESOURCE_SPANS, resource_spans));
        wire::header(REQUEST_RESOURCE_SPANS, resource_spans, &mut buf);
        buf.extend_from_slice(&self.resource);
        wire::header(RESOURCE_SPANS_SCOPE_SPANS, scope_spans, &mut buf);
        buf.extend_from_slice(&self.scope);
        for span in spans {
            wire::header(SCOPE_SPANS_SPANS, span.bytes().len(), &mut buf);
            buf.extend_from_slice(span.bytes());
        }
        Bytes::from(buf)
    }
}

/// A length-delimited field holding `message`, encoded.
fn field(tag: u32, message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(wire::msg_len(tag, len));
    wire::header(tag, len, &mut buf);
    message.encode_raw(&mut buf);
    Bytes::from(buf)
}

#[cfg(test)]
mod tests;
