//! What the collector received, flattened for assertions, and the waits on it.
//!
//! The recording lives in a `watch` channel: every arrival and every store
//! notifies, and a wait re-checks its condition on each notification, so no test
//! polls or sleeps.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::watch;

use super::script::{Failure, Plan};
use crate::bound::within_for;

/// One span as the collector stored it, with the resource and scope it was
/// exported under (OTLP nests spans in both; tests mostly want them flat).
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// The attributes of the span's resource (`service.name`, …).
    pub resource: Vec<KeyValue>,
    /// The name of the instrumentation scope the span was exported under.
    pub scope_name: String,
    /// The span itself, as received.
    pub span: Span,
}

/// One export request as the collector received it.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// The request's headers (gRPC: its metadata), e.g. a configured
    /// `authorization`.
    pub headers: HeaderMap,
    /// Whether the request was gzip-compressed (gRPC: `grpc-encoding: gzip`;
    /// HTTP: `Content-Encoding: gzip`).
    pub gzip: bool,
    /// How many spans the request carried.
    pub span_count: usize,
    /// How the collector answered (or, for a client that gave up during a
    /// delay, would have).
    pub answer: Answer,
}

/// How the collector answered one export request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Success: the spans were stored.
    Accepted,
    /// Success with a `partial_success`; the spans were stored anyway.
    Rejected {
        /// The `rejected_spans` the collector reported.
        rejected_spans: i64,
        /// The `error_message` the collector reported.
        message: String,
    },
    /// A scripted failure: nothing was stored.
    Failed(Failure),
    /// Not an export the collector could read (OTLP/HTTP: wrong path, method,
    /// content type, encoding or body), answered with a 4xx and the reason.
    /// gRPC requests tonic cannot decode never reach the collector.
    Refused(String),
}

/// The receiver's recording, shared by its connections and its handle.
#[derive(Debug)]
pub(super) struct Recording {
    tx: watch::Sender<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    spans: Vec<ReceivedSpan>,
    exports: Vec<ExportRequest>,
}

// === impl ReceivedSpan ===

impl ReceivedSpan {
    /// The trace id in lowercase hex (32 digits for a valid id).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id in lowercase hex (16 digits for a valid id).
    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id in lowercase hex, or `None` for a root span.
    pub fn parent_span_id_hex(&self) -> Option<String> {
        (!self.span.parent_span_id.is_empty()).then(|| hex(&self.span.parent_span_id))
    }

    /// The span's name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// The value of the span attribute `key`, if the span has it.
    pub fn attr(&self, key: &str) -> Option<&AnyValue> {
        find(&self.span.attributes, key)
    }

    /// The span attribute `key` as a string, when it is a string, an integer, a
    /// double or a boolean (`"200"`, `"true"`): what assertions compare.
    pub fn attr_str(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(render)
    }

    /// The resource attribute `key` as a string, like [`ReceivedSpan::attr_str`].
    pub fn resource_attr_str(&self, key: &str) -> Option<String> {
        find(&self.resource, key).and_then(render)
    }

    /// The span's kind (`UNSPECIFIED` for a value this version does not know).
    pub fn kind(&self) -> SpanKind {
        self.span.kind()
    }

    /// The span's status code (`UNSET` when the span has no status).
    pub fn status_code(&self) -> StatusCode {
        self.span
            .status
            .as_ref()
            .map_or(StatusCode::Unset, |status| status.code())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn render(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

// === impl Answer ===

impl Answer {
    /// Whether the request's spans were not stored.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Refused(_))
    }
}

impl From<Plan> for Answer {
    fn from(plan: Plan) -> Self {
        match plan {
            Plan::Accept => Self::Accepted,
            Plan::Reject {
                rejected_spans,
                message,
            } => Self::Rejected {
                rejected_spans,
                message,
            },
            Plan::Fail(failure) => Self::Failed(failure),
        }
    }
}

// === impl Recording ===

impl Default for Recording {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(Recorded::default()),
        }
    }
}

impl Recording {
    /// Records an export request as it arrives, before any delay.
    pub(super) fn arrived(
        &self,
        headers: HeaderMap,
        gzip: bool,
        span_count: usize,
        answer: Answer,
    ) {
        self.tx.send_modify(|recorded| {
            recorded.exports.push(ExportRequest {
                headers,
                gzip,
                span_count,
                answer,
            })
        });
    }

    /// Stores an accepted request's spans, flattened.
    pub(super) fn store(&self, request: ExportTraceServiceRequest) {
        let mut spans = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                let scope_name = scope_spans.scope.map(|s| s.name).unwrap_or_default();
                spans.extend(scope_spans.spans.into_iter().map(|span| ReceivedSpan {
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    span,
                }));
            }
        }
        self.tx.send_modify(|recorded| recorded.spans.extend(spans));
    }

    pub(super) fn spans(&self) -> Vec<ReceivedSpan> {
        self.tx.borrow().spans.clone()
    }

    pub(super) fn exports(&self) -> Vec<ExportRequest> {
        self.tx.borrow().exports.clone()
    }

    /// How many export requests were answered as `which` says.
    pub(super) fn count(&self, which: impl Fn(&Answer) -> bool) -> usize {
        self.tx
            .borrow()
            .exports
            .iter()
            .filter(|e| which(&e.answer))
            .count()
    }

    /// Waits until `done` holds for what was received, and returns it; after
    /// `timeout`, panics saying what the test waited for and what arrived.
    pub(super) async fn wait(
        &self,
        timeout: Duration,
        what: impl fmt::Display,
        mut done: impl FnMut(&[ReceivedSpan], &[ExportRequest]) -> bool,
    ) -> (Vec<ReceivedSpan>, Vec<ExportRequest>) {
        let mut rx = self.tx.subscribe();
        // `Summary` is rendered only if the wait times out, so the panic message
        // describes the recording at that moment.
        let what = Summary {
            what,
            recorded: &self.tx,
        };
        let waited = within_for(
            timeout,
            what,
            rx.wait_for(|recorded| done(&recorded.spans, &recorded.exports)),
        )
        .await;
        match waited {
            Ok(recorded) => (recorded.spans.clone(), recorded.exports.clone()),
            // The sender lives in `self`, which this call borrows.
            Err(_) => unreachable!("the recording's sender outlives its waits"),
        }
    }
}

/// A timed-out wait's message: what was awaited, then what the collector got.
struct Summary<'a, W> {
    what: W,
    recorded: &'a watch::Sender<Recorded>,
}

/// How many spans and requests a timeout message lists before eliding.
const LISTED: usize = 10;

impl<W: fmt::Display> fmt::Display for Summary<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recorded = self.recorded.borrow();
        write!(
            f,
            "{}; the collector stored {} span(s) from {} export request(s)",
            self.what,
            recorded.spans.len(),
            recorded.exports.len()
        )?;
        for span in recorded.spans.iter().take(LISTED) {
            write!(
                f,
                "\n  span {:?} ({}) trace={} span={} parent={}",
                span.name(),
                span.kind().as_str_name(),
                span.trace_id_hex(),
                span.span_id_hex(),
                span.parent_span_id_hex().as_deref().unwrap_or("-"),
            )?;
        }
        for export in recorded.exports.iter().take(LISTED) {
            write!(
                f,
                "\n  request: {} span(s), gzip={}, answered {:?}",
                export.span_count, export.gzip, export.answer
            )?;
        }
        if recorded.spans.len() > LISTED || recorded.exports.len() > LISTED {
            write!(f, "\n  …")?;
        }
        Ok(())
    }
}
