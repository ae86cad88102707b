//! The `spans` and `export` sections: what the sidecar's spans carry and where
//! they go.
//!
//! Export settings follow the OpenTelemetry convention that explicit configuration
//! beats the environment: a key set in the file wins; a key left `null` is taken
//! from the standard variable (`OTEL_EXPORTER_OTLP_TRACES_*`, then
//! `OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`), else the OpenTelemetry default. The
//! variables are applied when the config is loaded ([`otel`], beside
//! [`crate::env`]); [`Export::settings`] adds the defaults.

mod otel;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::types::Duration;

/// The `spans` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spans {
    /// Route templates (`/users/{id}/orders`, `/static/{path*}`), matched in order
    /// against the request path: a match names the span `{METHOD} {template}` and
    /// sets `http.route`; otherwise the span is named `{METHOD}` (never the raw path).
    pub routes: Vec<String>,
    /// Longest `url.path` / `url.query` / `url.full` value kept (longer is cut).
    pub max_path_length: usize,
    /// Longest custom tag or user-agent value kept.
    pub max_tag_length: usize,
    /// Extra span attributes.
    pub tags: Vec<Tag>,
    /// Values that never leave the pod.
    pub redact: Redact,
    /// gRPC attribute set: `stable` (`rpc.system.name`, `rpc.method`,
    /// `rpc.response.status_code`) or `dup` (those plus the deprecated `rpc.system`,
    /// `rpc.service`, `rpc.grpc.status_code`), as `OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup`
    /// selects for SDKs; that variable also switches it on.
    pub rpc_semconv: RpcSemconv,
}

impl Default for Spans {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            max_path_length: 1024,
            max_tag_length: 256,
            tags: Vec::new(),
            redact: Redact::default(),
            rpc_semconv: RpcSemconv::Stable,
        }
    }
}

/// One custom span attribute: exactly one of `value`, `env` and `header`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    /// The attribute key.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// An environment variable of the sidecar, read at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A request header (absent header: no attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// What is redacted from spans.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redact {
    /// Header tags from these headers carry `REDACTED` instead of the value.
    pub headers: Vec<String>,
    /// Query parameters whose values are replaced by `REDACTED` in `url.query` and
    /// `url.full` (case-insensitive names).
    pub query_params: Vec<String>,
    /// Drop the query string from spans altogether.
    pub drop_query: bool,
}

impl Default for Redact {
    fn default() -> Self {
        Self {
            headers: [
                "authorization",
                "cookie",
                "proxy-authorization",
                "x-api-key",
            ]
            .map(String::from)
            .to_vec(),
            // The semantic conventions' default list, plus common credential names.
            query_params: [
                "AWSAccessKeyId",
                "Signature",
                "sig",
                "X-Goog-Signature",
                "access_token",
                "api_key",
                "password",
                "token",
            ]
            .map(String::from)
            .to_vec(),
            drop_query: false,
        }
    }
}

/// Which gRPC semantic-convention attributes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcSemconv {
    /// The current conventions only.
    Stable,
    /// The current and the deprecated attributes together, during a migration.
    Dup,
}

/// The `export` section: OTLP export of spans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Export {
    /// The collector, e.g. `http://otel-collector:4317` (gRPC) or
    /// `http://otel-collector:4318/v1/traces` (HTTP). `null`: from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`; with
    /// neither, spans are not recorded at all.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (`null`: `OTEL_EXPORTER_OTLP_*PROTOCOL`, else `grpc`).
    pub protocol: Option<OtlpProtocol>,
    /// Extra request headers / gRPC metadata (e.g. an API key), added to
    /// `OTEL_EXPORTER_OTLP_*HEADERS`.
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export, retries included (`null`: `OTEL_EXPORTER_OTLP_*TIMEOUT`
    /// in milliseconds, else 10s).
    pub timeout: Option<Duration>,
    /// `none` or `gzip` (`null`: `OTEL_EXPORTER_OTLP_*COMPRESSION`, else none).
    pub compression: Option<Compression>,
    /// TLS to the collector (used for `https://` endpoints).
    pub tls: Tls,
    /// The span queue and batching.
    pub queue: Queue,
    /// Retries of retryable failures.
    pub retry: Retry,
    /// Resource attributes.
    pub resource: ResourceConfig,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Export compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
}

/// TLS to the collector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM CA bundle to trust (`null`: `OTEL_EXPORTER_OTLP_*CERTIFICATE`, else the
    /// system and web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (`OTEL_EXPORTER_OTLP_*CLIENT_CERTIFICATE`).
    pub cert_file: Option<PathBuf>,
    /// PEM client key for mutual TLS (`OTEL_EXPORTER_OTLP_*CLIENT_KEY`).
    pub key_file: Option<PathBuf>,
}

/// The bounded span queue. A full queue drops the span and counts it; the request
/// never waits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Queue {
    /// Spans held (`null`: `OTEL_BSP_MAX_QUEUE_SIZE`, else 65536; the byte
    /// budget, `max_bytes`, normally binds first).
    pub max_size: Option<usize>,
    /// Bytes of memory the queued spans may hold (`null`: 16 MiB; a typical
    /// span holds ~0.5 KiB). Bounds the queue's memory whatever the spans' size.
    /// Left out when unset, so a config the control plane resolves still loads
    /// in a sidecar that predates the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
    /// Spans per export request (`null`: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, else 512).
    pub batch_size: Option<usize>,
    /// Longest a span waits for a batch to fill (`null`: `OTEL_BSP_SCHEDULE_DELAY`,
    /// else 5s).
    pub delay: Option<Duration>,
}

/// Retries with exponential backoff and jitter, for failures the OTLP
/// specification calls retryable only (never for a partial-success rejection).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first attempt (0: none).
    pub max_retries: usize,
    /// Backoff before the first retry; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff (a server's `Retry-After` may ask for longer).
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1600),
        }
    }
}

/// Resource attributes of every span (besides the `workload` identity).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceConfig {
    /// `service.version` (`null`: `MESHTRACE_SERVICE_VERSION`, else unset).
    pub service_version: Option<String>,
    /// More attributes, e.g. `deployment.environment.name: prod`; the keys of
    /// `OTEL_RESOURCE_ATTRIBUTES` override these.
    pub attributes: BTreeMap<String, String>,
}

/// Export settings with the file, the environment and the defaults combined.
/// `OTEL_EXPORTER_OTLP_*HEADERS` is left to the exporter, which adds it to
/// [`Export::headers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedExport {
    /// The collector URL; `None`: spans are off.
    pub endpoint: Option<String>,
    /// The transport.
    pub protocol: OtlpProtocol,
    /// Deadline of one export, retries included.
    pub timeout: std::time::Duration,
    /// Body compression.
    pub compression: Compression,
    /// CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Client certificate.
    pub cert_file: Option<PathBuf>,
    /// Client key.
    pub key_file: Option<PathBuf>,
    /// Queue size in spans.
    pub queue_size: usize,
    /// Queue size in bytes (memory held by the queued spans).
    pub queue_bytes: usize,
    /// Spans per export.
    pub batch_size: usize,
    /// Batch delay.
    pub delay: std::time::Duration,
}

// === impl Export ===

impl Export {
    /// The settings to export with: this section as loaded (the `OTEL_*`
    /// variables already applied, see [`Export::apply_env`]) and the OpenTelemetry
    /// defaults for what is still `null`. Reads no environment, so a reload
    /// exports exactly as `/config` shows.
    pub fn settings(&self) -> ResolvedExport {
        let queue_size = self.queue.max_size.unwrap_or(65_536);
        let ms = std::time::Duration::from_millis;
        ResolvedExport {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol.unwrap_or(OtlpProtocol::Grpc),
            timeout: self.timeout.map_or(ms(10_000), Duration::get),
            compression: self.compression.unwrap_or(Compression::None),
            ca_file: self.tls.ca_file.clone(),
            cert_file: self.tls.cert_file.clone(),
            key_file: self.tls.key_file.clone(),
            queue_size,
            queue_bytes: self.queue.max_bytes.unwrap_or(16 << 20),
            batch_size: self.queue.batch_size.unwrap_or(512).min(queue_size),
            delay: self.queue.delay.map_or(ms(5000), Duration::get),
        }
    }

    /// The settings with the `OTEL_*` variables read through `var` applied to a
    /// copy of this section: [`Export::apply_env`], then [`Export::settings`].
    /// Malformed variables are reported (`env NAME: …`) and ignored.
    pub fn resolve(
        &self,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> (ResolvedExport, Vec<crate::Problem>) {
        let mut export = self.clone();
        let problems = export.apply_env(var);
        (export.settings(), problems)
    }
}
