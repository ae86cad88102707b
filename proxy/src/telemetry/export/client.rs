//! Sending one encoded `ExportTraceServiceRequest` to the collector:
//! OTLP/gRPC through tonic (gzip by tonic's `send_compressed`) or OTLP/HTTP
//! protobuf through hyper (gzip once, before the first attempt), with the
//! configured headers, TLS and timeout, retried by [`super::retry`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshtrace_config::{Compression, OtlpProtocol, ResolvedExport, Retry};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, EncodeBuf};
use tonic::transport::Channel;

use super::retry::{self, Attempt};
use super::tls::{https_connector, tonic_tls};
use super::ExportError;

/// The gRPC method opentelemetry-proto's `TraceServiceClient::export` calls.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Longest response body read from an OTLP/HTTP collector.
const MAX_RESPONSE: usize = 64 * 1024;

type HttpClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The collector connection, cheap to clone (one per export in flight).
#[derive(Clone, Debug)]
pub(super) struct Client {
    transport: Transport,
    timeout: Duration,
    retry: Retry,
}

#[derive(Clone, Debug)]
enum Transport {
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        metadata: tonic::metadata::MetadataMap,
    },
    Http {
        /// Boxed: hyper's client is far larger than the gRPC variant.
        client: Box<HttpClient>,
        uri: http::Uri,
        headers: http::HeaderMap,
        gzip: bool,
    },
}

// === impl Client ===

impl Client {
    /// The client for `settings` (which must have an endpoint). Connects
    /// lazily; must be built inside the runtime that will drive it.
    pub(super) fn new(
        settings: &ResolvedExport,
        headers: &BTreeMap<String, String>,
        retry: &Retry,
    ) -> Result<Self, ExportError> {
        let endpoint = settings.endpoint.clone().unwrap_or_default();
        let bad =
            |what: &str, e: &dyn std::fmt::Display| ExportError::Build(format!("{what}: {e}"));
        let transport = match settings.protocol {
            OtlpProtocol::Grpc => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (name, value) in headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                        .map_err(|e| bad(&format!("header {name}"), &e))?;
                    let value = value
                        .parse()
                        .map_err(|e| bad(&format!("header {name}"), &e))?;
                    metadata.insert(key, value);
                }
                let mut channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| bad(&format!("invalid endpoint '{endpoint}'"), &e))?;
                if let Some(tls) = tonic_tls(settings, &endpoint)? {
                    channel = channel.tls_config(tls).map_err(|e| bad("tls", &e))?;
                }
                let channel = channel.timeout(settings.timeout).connect_lazy();
                let mut grpc = tonic::client::Grpc::new(channel);
                if settings.compression == Compression::Gzip {
                    grpc = grpc
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                Transport::Grpc { grpc, metadata }
            }
            OtlpProtocol::HttpProtobuf => {
                let uri = endpoint
                    .parse()
                    .map_err(|e| bad(&format!("invalid endpoint '{endpoint}'"), &e))?;
                let mut map = http::HeaderMap::new();
                map.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                for (name, value) in headers {
                    let key = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| bad(&format!("header {name}"), &e))?;
                    let value = HeaderValue::from_str(value)
                        .map_err(|e| bad(&format!("header {name}"), &e))?;
                    map.insert(key, value);
                }
                let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                    .build(https_connector(settings)?);
                Transport::Http {
                    client: Box::new(client),
                    uri,
                    headers: map,
                    gzip: settings.compression == Compression::Gzip,
                }
            }
        };
        Ok(Self {
            transport,
            timeout: settings.timeout,
            retry: retry.clone(),
        })
    }

    /// Exports `body` (one encoded request), retrying what the OTLP
    /// specification calls retryable within the export timeout. Returns the
    /// spans the collector rejected (its `partial_success`).
    pub(super) async fn export(&self, body: Bytes) -> Result<u64, String> {
        let body = match &self.transport {
            Transport::Http { gzip: true, .. } => gzip(&body).map_err(|e| format!("gzip: {e}"))?,
            _ => body,
        };
        retry::with_backoff(&self.retry, self.timeout, || self.send(body.clone())).await
    }

    /// One attempt.
    async fn send(&self, body: Bytes) -> Result<u64, Attempt> {
        match &self.transport {
            Transport::Grpc { grpc, metadata } => {
                let mut grpc = grpc.clone();
                grpc.ready()
                    .await
                    .map_err(|e| Attempt::retryable(format!("connect: {e}")))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
                match grpc.unary(request, path, RawCodec).await {
                    Ok(response) => Ok(rejected(response.into_inner())),
                    Err(status) => Err(retry::classify_grpc(&status)),
                }
            }
            Transport::Http {
                client,
                uri,
                headers,
                gzip,
            } => {
                let mut request = http::Request::post(uri.clone())
                    .body(Full::new(body))
                    .map_err(|e| Attempt::fatal(e.to_string()))?;
                *request.headers_mut() = headers.clone();
                if *gzip {
                    request
                        .headers_mut()
                        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                let send = async {
                    let response = client
                        .request(request)
                        .await
                        .map_err(|e| Attempt::retryable(format!("{e:?}")))?;
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let body = Limited::new(response.into_body(), MAX_RESPONSE)
                        .collect()
                        .await
                        .map_err(|e| Attempt::retryable(format!("response body: {e}")))?
                        .to_bytes();
                    if status.is_success() {
                        let decoded = ExportTraceServiceResponse::decode(body).unwrap_or_default();
                        Ok(rejected(decoded))
                    } else {
                        Err(retry::classify_http(
                            status.as_u16(),
                            retry_after.as_deref(),
                        ))
                    }
                };
                tokio::time::timeout(self.timeout, send)
                    .await
                    .unwrap_or_else(|_| Err(Attempt::retryable("timed out".into())))
            }
        }
    }
}

fn rejected(response: ExportTraceServiceResponse) -> u64 {
    response
        .partial_success
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

fn gzip(body: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    Ok(encoder.finish()?.into())
}

/// gRPC's codec for a request already encoded (the bytes are sent as they
/// are) and opentelemetry-proto's response.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<ExportTraceServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<ExportTraceServiceRequest, ExportTraceServiceResponse>::raw_decoder(
            BufferSettings::default(),
        )
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}
