//! AdmissionReview v1 in, AdmissionReview v1 out, with kube's admission types.
//!
//! # The patch on the wire
//!
//! The API server reads `response.patch` as Go `[]byte`, which encoding/json
//! writes and reads as a **base64 string**. kube-core 5 holds it as
//! `Option<Vec<u8>>` with no serde adapter, so serialising its
//! [`AdmissionReview`] gives a JSON array of numbers (`"patch":[91,123,…]`),
//! which the API server refuses ("cannot unmarshal array into Go struct field
//! AdmissionResponse.response.patch of type string"). [`to_wire`] serialises
//! kube's review and replaces that array with the base64 of the same bytes, the
//! form the Kubernetes documentation shows.
//!
//! # Errors
//!
//! A review that cannot be used (not JSON, no request, not v1, not a pod) is
//! answered with `allowed: false`, code 400 and the request's uid whenever the
//! body has one, so the API server reports the reason against the right
//! request; a body without even a uid gets HTTP 400 and a one-line message.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, META_API_VERSION_V1, META_KIND,
};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use super::{inject, InjectorConfig, Outcome};

/// The answer to one `POST /inject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// 200 for any AdmissionReview answer; 400 when the body had no uid.
    pub status: u16,
    /// JSON (an AdmissionReview) for 200, one line of text for 400.
    pub body: Vec<u8>,
    /// What happened, for the log line.
    pub summary: String,
}

/// Answers the AdmissionReview in `body`.
pub fn handle(config: &InjectorConfig, body: &[u8]) -> Reply {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("the body is not JSON: {e}")),
    };
    let Some(uid) = value.pointer("/request/uid").and_then(Value::as_str) else {
        return bad_request("no request.uid: not an AdmissionReview request".into());
    };
    let uid = uid.to_string();
    let response = match review(config, value) {
        Ok(response) => response,
        Err(message) => {
            let mut invalid = AdmissionResponse::invalid(&message);
            invalid.uid = uid.clone();
            invalid.result = Status::failure(&message, "BadRequest").with_code(400);
            invalid
        }
    };
    let summary = summarise(&uid, &response);
    match to_wire(response.into_review()) {
        Ok(body) => Reply {
            status: 200,
            body,
            summary,
        },
        Err(e) => bad_request(format!("cannot serialise the response: {e}")),
    }
}

/// kube's review as the API server reads it: `response.patch` in base64.
pub fn to_wire(review: AdmissionReview<DynamicObject>) -> Result<Vec<u8>, serde_json::Error> {
    let patch = review.response.as_ref().and_then(|r| r.patch.clone());
    let mut value = serde_json::to_value(review)?;
    if let (Some(bytes), Some(slot)) = (patch, value.pointer_mut("/response/patch")) {
        *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    serde_json::to_vec(&value)
}

fn review(config: &InjectorConfig, value: Value) -> Result<AdmissionResponse, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    if review.types.api_version != META_API_VERSION_V1 || review.types.kind != META_KIND {
        return Err(format!(
            "expected {META_API_VERSION_V1} {META_KIND}, got {:?} {:?}",
            review.types.api_version, review.types.kind
        ));
    }
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| "the review has no request".to_string())?;
    let kind = &request.kind;
    if (
        kind.group.as_str(),
        kind.version.as_str(),
        kind.kind.as_str(),
    ) != ("", "v1", "Pod")
    {
        return Err(format!(
            "this webhook injects pods only, got {}/{} {}",
            kind.group, kind.version, kind.kind
        ));
    }
    let allowed = AdmissionResponse::from(&request);
    if request.operation != Operation::Create || request.sub_resource.is_some() {
        return Ok(allowed);
    }
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| "the request has no object".to_string())?;
    let pod: Pod = serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("the object is not a valid pod: {e}"))?;
    respond(allowed, inject(config, &pod))
}

fn respond(allowed: AdmissionResponse, outcome: Outcome) -> Result<AdmissionResponse, String> {
    let with_warnings = |mut r: AdmissionResponse, warnings: Vec<String>| {
        if !warnings.is_empty() {
            r.warnings = Some(warnings);
        }
        r
    };
    match outcome {
        Outcome::Skip { warnings, .. } => Ok(with_warnings(allowed, warnings)),
        Outcome::Patch { patch, warnings } => allowed
            .with_patch(patch)
            .map(|r| with_warnings(r, warnings))
            .map_err(|e| e.to_string()),
        Outcome::Deny { message } => {
            let mut denied = allowed.deny(&message);
            denied.result = Status::failure(&message, "Forbidden").with_code(403);
            Ok(denied)
        }
    }
}

fn summarise(uid: &str, r: &AdmissionResponse) -> String {
    match (r.allowed, &r.patch) {
        (true, Some(_)) => format!("uid={uid} injected"),
        (true, None) => format!("uid={uid} allowed unchanged"),
        (false, _) => format!("uid={uid} refused: {}", r.result.message),
    }
}

fn bad_request(message: String) -> Reply {
    let line = message.replace('\n', " ");
    Reply {
        status: 400,
        body: format!("{line}\n").into_bytes(),
        summary: format!("bad request: {line}"),
    }
}

#[cfg(test)]
mod tests;
