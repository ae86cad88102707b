//! opentelemetry-otlp's span exporter, built from the resolved export settings:
//! OTLP/gRPC through tonic or OTLP/HTTP protobuf through hyper, with the
//! configured headers, compression, retry policy and TLS.

use std::collections::BTreeMap;

use meshtrace_config::{Compression, OtlpProtocol, ResolvedExport, Retry};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SpanExporter as _;
use opentelemetry_sdk::Resource;

use super::tls::{https_connector, tonic_tls};
use super::ExportError;

/// opentelemetry-otlp's exporter for `settings`. Must run inside the runtime
/// that will drive it.
pub(super) fn exporter(
    settings: &ResolvedExport,
    headers: &BTreeMap<String, String>,
    retry: &Retry,
    resource: Resource,
) -> Result<opentelemetry_otlp::SpanExporter, ExportError> {
    let endpoint = settings.endpoint.clone().unwrap_or_default();
    let policy = opentelemetry_otlp::RetryPolicy::recommended()
        .with_max_retries(retry.max_retries)
        .with_initial_delay(retry.initial_backoff.get())
        .with_max_delay(retry.max_backoff.get());
    let compression = match settings.compression {
        Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
        Compression::None => None,
    };
    let mut exporter = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::new();
            for (name, value) in headers {
                let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                    .map_err(|e| ExportError::Build(format!("header {name}: {e}")))?;
                let value = value
                    .parse()
                    .map_err(|e| ExportError::Build(format!("header {name}: {e}")))?;
                metadata.insert(name, value);
            }
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata)
                .with_retry_policy(policy);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            if let Some(tls) = tonic_tls(settings, &endpoint)? {
                builder = builder.with_tls_config(tls);
            }
            builder.build()
        }
        OtlpProtocol::HttpProtobuf => {
            let client = opentelemetry_http::hyper::HyperClient::new(
                https_connector(settings)?,
                settings.timeout,
                None,
            );
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(settings.timeout)
                .with_http_client(client)
                .with_headers(headers.clone().into_iter().collect())
                .with_retry_policy(policy);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            builder.build()
        }
    }
    .map_err(|e| ExportError::Build(e.to_string()))?;
    exporter.set_resource(&resource);
    Ok(exporter)
}
