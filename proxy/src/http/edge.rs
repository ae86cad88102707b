//! Responses the sidecar generates itself when it cannot forward a request.
//!
//! Each names its cause in a short plain-text body and in the
//! `meshtrace-proxy-error` header, so an operator can tell a sidecar's 502 from the
//! application's. The layers inside the sidecar never read that header: the
//! [`Refusal`] rides along as a response extension, and the header is stripped
//! from upstream responses ([`super::forward`]), so an application cannot pose
//! as its sidecar's error on the sidecar's span. gRPC callers get what gRPC clients understand: a trailers-only
//! response (HTTP 200, `grpc-status`, `grpc-message`) with the status code the
//! gRPC spec maps the failure to.

use std::fmt::Write;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use super::ProxyBody;
use crate::metrics::ErrorKind;

/// The header that marks sidecar-generated responses.
pub const PROXY_ERROR_HEADER: &str = "meshtrace-proxy-error";

/// [`PROXY_ERROR_HEADER`] as a name, parsed once: every forwarded response is
/// cleaned of it.
pub static PROXY_ERROR: HeaderName = HeaderName::from_static(PROXY_ERROR_HEADER);

/// Removes the `meshtrace-proxy-error` header from a response this sidecar did
/// not generate: only its own responses may say it failed. Most responses carry
/// none, and a scan of their few names costs a fifth of a hashed removal
/// (39 against 181 instructions on a five-header response, callgrind).
pub fn strip_impersonation(headers: &mut HeaderMap) {
    if headers.keys().any(|name| *name == PROXY_ERROR) {
        headers.remove(&PROXY_ERROR);
    }
}

/// gRPC status codes used here (grpc/doc/statuscodes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcCode {
    /// 4: the deadline passed before the operation completed.
    DeadlineExceeded = 4,
    /// 8: a resource (here: header space) is exhausted.
    ResourceExhausted = 8,
    /// 12: the method is not implemented.
    Unimplemented = 12,
    /// 13: internal error (malformed request).
    Internal = 13,
    /// 14: the service is currently unavailable; safe to retry.
    Unavailable = 14,
}

/// Why the sidecar answered instead of the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Forwarding failed.
    Upstream(ErrorKind),
    /// The request header block is over `limits.max_header_bytes`.
    HeadersTooLarge,
    /// The request's authority cannot be used.
    BadAuthority,
    /// The client's request body could not be read (e.g. malformed chunked
    /// framing): the client's error, so not an upstream one.
    BadRequestBody,
    /// `CONNECT`: the sidecar does not open tunnels, and says so rather than
    /// close the exchange empty.
    MethodNotAllowed,
    /// More than one `Host` field (RFC 9112 §3.2): which one the upstream
    /// would read is anyone's guess.
    DuplicateHost,
    /// HTTP/2 `:authority` and `host` disagree (RFC 9113 §8.3.1): a malformed
    /// request, refused rather than routed by one name and read by the other.
    AuthorityMismatch,
}

impl Refusal {
    fn status(self) -> (StatusCode, GrpcCode) {
        use ErrorKind::*;
        match self {
            Self::Upstream(ConnectTimeout | RequestTimeout) => {
                (StatusCode::GATEWAY_TIMEOUT, GrpcCode::DeadlineExceeded)
            }
            Self::Upstream(_) => (StatusCode::BAD_GATEWAY, GrpcCode::Unavailable),
            Self::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                GrpcCode::ResourceExhausted,
            ),
            Self::BadAuthority
            | Self::BadRequestBody
            | Self::DuplicateHost
            | Self::AuthorityMismatch => (StatusCode::BAD_REQUEST, GrpcCode::Internal),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, GrpcCode::Unimplemented),
        }
    }

    /// The error class: the `meshtrace-proxy-error` value and the span's
    /// `error.type`.
    pub fn cause(self) -> &'static str {
        match self {
            Self::Upstream(kind) => kind.as_str(),
            Self::HeadersTooLarge => "headers_too_large",
            Self::BadAuthority => "bad_authority",
            Self::BadRequestBody => "bad_request_body",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::DuplicateHost => "duplicate_host",
            Self::AuthorityMismatch => "authority_mismatch",
        }
    }
}

/// Builds the response for `refusal`; `message` is one human sentence.
pub fn respond(refusal: Refusal, grpc: bool, message: &str) -> Response<ProxyBody> {
    let (status, code) = refusal.status();
    let cause = HeaderValue::from_static(refusal.cause());
    let mut builder = Response::builder().header(PROXY_ERROR_HEADER, cause);
    let body = if grpc {
        builder = builder
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", (code as u8).to_string())
            .header(
                "grpc-message",
                percent_encode(&format!("meshtrace: {message}")),
            );
        Bytes::new()
    } else {
        builder = builder
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
        Bytes::from(format!("meshtrace: {message}\n"))
    };
    let mut response = builder
        .body(Either::Right(Full::new(body)))
        .unwrap_or_else(|_| fallback(status));
    response.extensions_mut().insert(refusal);
    response
}

/// A response that cannot fail to build (the builder above only fails on invalid
/// header values, which it never receives).
fn fallback(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

/// gRPC's `grpc-message` encoding: percent-encode bytes outside 0x20..=0x7E and `%`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_upstream_is_502_naming_the_cause() {
        let r = respond(
            Refusal::Upstream(ErrorKind::ConnectRefused),
            false,
            "upstream refused",
        );
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(r.headers()[PROXY_ERROR_HEADER], "connect_refused");
        let refusal = r.extensions().get::<Refusal>().copied();
        assert_eq!(refusal, Some(Refusal::Upstream(ErrorKind::ConnectRefused)));
    }

    #[test]
    fn grpc_timeout_is_trailers_only_deadline_exceeded() {
        let r = respond(
            Refusal::Upstream(ErrorKind::RequestTimeout),
            true,
            "no response in 1s",
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "4");
        assert_eq!(r.headers()["grpc-message"], "meshtrace: no response in 1s");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("100% \u{e9}"), "100%25 %C3%A9");
    }
}
