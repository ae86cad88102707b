//! The sidecar's own spans and their OTLP export.
//!
//! One SERVER span per inbound request and one CLIENT span per outbound request,
//! with the ids the trace layer ([`crate::http::trace`]) already chose: the span's
//! parent is the incoming context and its id is the one written downstream, so
//! app span → sidecar A CLIENT → sidecar B SERVER → app span is one waterfall.
//!
//! - [`span`] builds a span from the request and response ([`semconv`] holds the
//!   semantic-convention rules);
//! - [`resource`] says who emitted it;
//! - [`export`] queues it without ever blocking the request, encodes batches
//!   into OTLP protobuf once and exports them on a thread of its own.
//!
//! With no collector configured (`export.endpoint` unset, and so the
//! `OTEL_EXPORTER_OTLP_*` endpoint variables, which fill it when the config is
//! loaded) nothing is recorded at all.

pub mod export;
pub mod info;
pub mod resource;
pub mod semconv;
pub mod span;

use std::sync::Arc;

use meshtrace_config::Config;

use crate::metrics::Metrics;
pub use export::{ExportError, SpanExport, SpanQueue};
pub use info::SpanInfo;
pub use span::{PeerAddress, Recorder, SpanEnd, SpanStart, Tail};

/// The span recorder shared by every listener, and the export task behind it.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// `None` when spans are off.
    pub recorder: Option<Arc<Recorder>>,
    export: Option<SpanExport>,
}

impl Telemetry {
    /// Starts the exporter on its own thread with the config's export settings
    /// (the `OTEL_*` export variables were applied when the config was loaded, so
    /// the exporter runs exactly as `/config` shows). `var` still supplies what is
    /// not config: `OTEL_SDK_DISABLED`, the resource variables, the semconv opt-in.
    pub fn start(
        config: &Config,
        metrics: &Metrics,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ExportError> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            tracing::info!("spans off: OTEL_SDK_DISABLED=true");
            return Ok(Self::default());
        }
        let settings = config.export.settings();
        let Some(endpoint) = settings.endpoint.clone() else {
            tracing::info!("spans off: no export.endpoint and no OTEL_EXPORTER_OTLP_ENDPOINT");
            return Ok(Self::default());
        };
        let resource = resource::resource(config, var);
        let (queue, export) = SpanExport::start(
            &settings,
            &export::headers(&config.export.headers, var),
            &config.export.retry,
            resource,
            metrics.spans.clone(),
        )?;
        let endpoint = meshtrace_config::redact::redact_urls(&endpoint);
        tracing::info!(
            %endpoint,
            protocol = ?settings.protocol,
            queue = settings.queue_size,
            batch = settings.batch_size,
            "exporting spans"
        );
        Ok(Self {
            recorder: Some(Arc::new(Recorder::new(config, queue, var))),
            export: Some(export),
        })
    }

    /// Exports what is queued and stops the exporter (bounded by the export timeout).
    pub async fn flush(self) {
        drop(self.recorder);
        if let Some(export) = self.export {
            export.flush().await;
        }
    }
}
