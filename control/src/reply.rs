//! The HTTP edge: JSON responses, error bodies, request bodies and query strings.
//!
//! Every error leaves as `{"error": "…"}` with an honest status code.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, LengthLimitError, Limited};
use serde::Serialize;

use meshtrace_config::wire::decode;
/// Query components are percent-encoded as the wire protocol says (the CLI and
/// tests build paths with it).
pub use meshtrace_config::wire::encode;

/// The response body type of every handler (JSON, YAML or an SSE stream).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Largest request body accepted (a base document or a patch).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// A handler's error: a status and a message.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The message for `{"error": …}`.
    pub message: String,
}

// === impl ApiError ===

impl ApiError {
    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        json(self.status, &serde_json::json!({ "error": self.message }))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::state::StateError;
        use crate::store::StoreError as E;
        let status = match &e {
            E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Persist(StateError::Conflict { .. }) => StatusCode::CONFLICT,
            E::Persist(StateError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            E::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            with_type(status, "application/json", full(bytes))
        }
        Err(e) => with_type(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            full(
                serde_json::json!({ "error": format!("cannot render response: {e}") }).to_string(),
            ),
        ),
    }
}

/// A response with a content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// Reads a request body (at most [`MAX_BODY`]) as UTF-8 text.
pub async fn read_text<B>(body: B) -> Result<String, ApiError>
where
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    read_text_limited(body, MAX_BODY).await
}

/// Reads a request body of at most `limit` bytes as UTF-8 text; a longer one is
/// a 413.
pub async fn read_text_limited<B>(body: B, limit: usize) -> Result<String, ApiError>
where
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {limit} bytes"),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes();
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))
}

/// Reads a JSON request body (at most [`MAX_BODY`]) into `T`.
pub async fn read_json<T, B>(body: B) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned,
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    read_json_limited(body, MAX_BODY).await
}

/// Reads a JSON request body of at most `limit` bytes into `T`.
pub async fn read_json_limited<T, B>(body: B, limit: usize) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned,
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let text = read_text_limited(body, limit).await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The decoded `key=value` pairs of a query string, in order.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

fn decode_component(s: &str) -> Result<String, ApiError> {
    decode(s)
        .ok_or_else(|| ApiError::bad_request(format!("invalid percent-encoding in query: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_and_keep_repeats() {
        let pairs = query_pairs(Some("label=tier%3Dweb&label=a=b&service=check+out")).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("label".into(), "tier=web".into()),
                ("label".into(), "a=b".into()),
                ("service".into(), "check out".into()),
            ]
        );
        assert!(query_pairs(Some("a=%zz")).is_err());
        assert_eq!(decode(&encode("a b=c/é")).unwrap(), "a b=c/é");
    }
}
