//! OTLP/HTTP with protobuf bodies: `POST /v1/traces`, `Content-Type:
//! application/x-protobuf`, optionally `Content-Encoding: gzip`, answered with an
//! `ExportTraceServiceResponse`. Anything else is refused with the 4xx a
//! collector would send (404 path, 405 method, 415 media type or encoding, 400 or
//! 413 body), and recorded as [`Answer::Refused`](super::Answer::Refused).

use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use flate2::read::GzDecoder;
use futures_util::future::BoxFuture;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::net::TcpStream;

use super::{Collector, Failure, Outcome};

/// The OTLP/HTTP traces path.
const TRACES_PATH: &str = "/v1/traces";
const PROTOBUF: &str = "application/x-protobuf";
/// The largest body (compressed or not) the receiver reads: far above any batch
/// a test sends, low enough that a runaway exporter fails fast.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The connection handler of an HTTP receiver (HTTP/1.1 or cleartext HTTP/2).
pub(super) fn serve(
    collector: Arc<Collector>,
) -> impl Fn(TcpStream) -> BoxFuture<'static, ()> + Send + 'static {
    move |stream| {
        let collector = collector.clone();
        Box::pin(async move {
            let service = service_fn(move |request| {
                let collector = collector.clone();
                async move { Ok::<_, Infallible>(handle(&collector, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        })
    }
}

/// Why a request is not an export, and the status that says so.
struct Refusal(StatusCode, String);

async fn handle(collector: &Collector, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let gzip = is_gzip(&parts.headers);
    let export = match read_export(&parts.method, parts.uri.path(), &parts.headers, body).await {
        Ok(export) => export,
        Err(Refusal(status, reason)) => {
            collector.refused(parts.headers, gzip, reason.clone());
            return reply(status, "text/plain", Bytes::from(reason));
        }
    };
    match collector.export(parts.headers, gzip, export).await {
        Outcome::Accept(response) => reply(
            StatusCode::OK,
            PROTOBUF,
            Bytes::from(response.encode_to_vec()),
        ),
        Outcome::Fail(Failure::Http {
            status,
            retry_after,
        }) => {
            // `OtlpReceiver::fail_next` checked the status is valid.
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = reply(status, "text/plain", Bytes::from("scripted failure"));
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        // `OtlpReceiver::fail_next` refuses gRPC failures on an HTTP receiver.
        Outcome::Fail(failure @ Failure::Grpc(_)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::from(format!("the test collector was scripted with {failure:?}")),
        ),
    }
}

/// The export request `POST /v1/traces` carries, or why there is none.
async fn read_export(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<ExportTraceServiceRequest, Refusal> {
    if path != TRACES_PATH {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("no such path {path:?}: OTLP/HTTP traces go to {TRACES_PATH}"),
        ));
    }
    if method != Method::POST {
        return Err(Refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {TRACES_PATH}: exports are POSTed"),
        ));
    }
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let media_type = content_type
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(PROTOBUF)) {
        return Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?}: this collector reads {PROTOBUF}"),
        ));
    }
    let encoding = headers.get(CONTENT_ENCODING);
    let gzip = is_gzip(headers);
    if encoding.is_some_and(|e| !gzip && e != "identity") {
        return Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content encoding {encoding:?}: this collector reads gzip or identity"),
        ));
    }
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?
        .to_bytes();
    let body = if gzip { gunzip(&body)? } else { body };
    ExportTraceServiceRequest::decode(body).map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("not an ExportTraceServiceRequest: {e}"),
        )
    })
}

fn is_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"gzip"))
}

fn gunzip(body: &[u8]) -> Result<Bytes, Refusal> {
    let mut out = Vec::new();
    GzDecoder::new(body)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("gunzipping the body: {e}")))?;
    if out.len() > MAX_BODY {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body inflates past {MAX_BODY} bytes"),
        ));
    }
    Ok(Bytes::from(out))
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
