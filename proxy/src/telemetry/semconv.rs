//! The semantic-convention rules the spans follow, as small pure functions.
//!
//! - HTTP ([HTTP spans], stable): span status is Error for 5xx on both kinds and
//!   for 4xx on CLIENT spans only; `error.type` is the status code then (or the
//!   sidecar's own error class when it answered itself); unknown methods are
//!   written `_OTHER` with `http.request.method_original`.
//! - gRPC ([gRPC spans]): `rpc.response.status_code` is the status name
//!   (`NOT_FOUND`); on CLIENT spans every code but `OK` is an error, on SERVER
//!   spans only `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`,
//!   `UNAVAILABLE` and `DATA_LOSS` are. A response without `grpc-status` is mapped
//!   from its HTTP status as gRPC's own [HTTP to gRPC status mapping] does.
//!
//! [HTTP spans]: https://opentelemetry.io/docs/specs/semconv/http/http-spans/
//! [gRPC spans]: https://opentelemetry.io/docs/specs/semconv/rpc/grpc/
//! [HTTP to gRPC status mapping]: https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md

use http::{Method, StatusCode};

/// The gRPC status names, indexed by code.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Whether a request is gRPC (`content-type: application/grpc[+proto|…]`): the
/// rule that picks RPC conventions over HTTP ones, and (re-exported as
/// `crate::http::is_grpc`) gRPC's edge responses and metrics.
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The name of gRPC status `code` (`UNKNOWN` for codes outside the spec).
pub fn grpc_code_name(code: u16) -> &'static str {
    GRPC_CODES
        .get(usize::from(code))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Whether gRPC status `code` makes the span an error.
pub fn grpc_is_error(code: u16, server: bool) -> bool {
    if server {
        // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS;
        // codes outside the spec count as UNKNOWN.
        matches!(code, 2 | 4 | 12 | 13 | 14 | 15) || code > 16
    } else {
        code != 0
    }
}

/// The gRPC code for a response that carried no `grpc-status`.
pub fn grpc_code_from_http(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// Whether an HTTP status makes the span an error.
pub fn http_is_error(status: StatusCode, server: bool) -> bool {
    status.is_server_error() || (!server && status.is_client_error())
}

/// `http.request.method`: the method when the conventions know it, else `_OTHER`
/// (the caller then adds `http.request.method_original`).
pub fn known_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

/// Splits a gRPC request path `/package.Service/Method`.
pub fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_table() {
        // Every non-OK code is an error on the client side.
        for code in 1..=16 {
            assert!(grpc_is_error(code, false), "{code}");
        }
        assert!(!grpc_is_error(0, false));
        let server_errors: Vec<&str> = (0..=16)
            .filter(|c| grpc_is_error(*c, true))
            .map(grpc_code_name)
            .collect();
        assert_eq!(
            server_errors,
            [
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS"
            ]
        );
        assert_eq!(grpc_code_name(5), "NOT_FOUND");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
        assert!(grpc_is_error(99, true));
    }

    #[test]
    fn http_status_rules() {
        let s = |n| StatusCode::from_u16(n).unwrap();
        assert!(http_is_error(s(500), true) && http_is_error(s(503), false));
        assert!(
            !http_is_error(s(404), true),
            "4xx is not a server-side error"
        );
        assert!(http_is_error(s(404), false), "4xx is a client-side error");
        assert!(!http_is_error(s(200), false) && !http_is_error(s(302), false));
        assert_eq!(grpc_code_from_http(s(503)), 14);
        assert_eq!(grpc_code_from_http(s(404)), 12);
        assert_eq!(grpc_code_from_http(s(418)), 2);
    }

    #[test]
    fn methods_and_grpc_paths() {
        assert_eq!(known_method(&Method::PATCH), Some("PATCH"));
        assert_eq!(known_method(&Method::from_bytes(b"PURGE").unwrap()), None);
        assert_eq!(
            grpc_method("/meshtrace.test.v1.Echo/Unary"),
            Some(("meshtrace.test.v1.Echo", "Unary"))
        );
        assert_eq!(grpc_method("/nope"), None);
        assert_eq!(grpc_method("/a/b/c"), None);
    }
}
