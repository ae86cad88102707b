//! The wire form of the answers; the injected pods themselves are checked by
//! the golden files (`control/tests/control/inject.rs`).

use serde_json::{json, Value};

use super::*;

fn request(object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": object,
            "dryRun": false
        }
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}
    })
}

fn answer(body: &Value) -> (Reply, Value) {
    let reply = handle(&InjectorConfig::default(), body.to_string().as_bytes());
    let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply, value)
}

#[test]
fn kube_core_alone_would_send_the_patch_as_an_array_of_numbers() {
    // Why `to_wire` exists: serde gives Vec<u8> no base64 form.
    let mut response = AdmissionResponse::invalid("x");
    response.patch = Some(b"[]".to_vec());
    let plain = serde_json::to_value(response.into_review()).unwrap();
    assert_eq!(plain["response"]["patch"], json!([91, 93]));
}

#[test]
fn the_patch_is_a_base64_string_on_the_wire() {
    let (reply, value) = answer(&request(pod()));
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.clone()).unwrap();
    assert!(text.contains(r#""patch":"W3si"#), "{text}"); // base64 of `[{"`
    assert!(text.contains(r#""patchType":"JSONPatch""#), "{text}");
    let response = &value["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(value["kind"], "AdmissionReview");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    assert!(!patch.0.is_empty());
}

#[test]
fn an_unpatched_answer_has_no_patch_fields() {
    let mut object = pod();
    object["metadata"]["annotations"] = json!({"meshtrace.io/inject": "false"});
    let (_, value) = answer(&request(object));
    assert_eq!(value["response"]["allowed"], true);
    assert!(value["response"].get("patch").is_none(), "{value}");
    assert!(value["response"].get("patchType").is_none(), "{value}");
}

#[test]
fn a_refused_pod_is_denied_with_the_reason() {
    let mut object = pod();
    object["metadata"]["annotations"] = json!({"meshtrace.io/exclude-inbound-ports": "http"});
    let (reply, value) = answer(&request(object));
    assert_eq!(reply.status, 200);
    assert_eq!(value["response"]["allowed"], false);
    assert_eq!(value["response"]["status"]["code"], 403);
    let message = value["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("meshtrace.io/exclude-inbound-ports"),
        "{message}"
    );
}

#[test]
fn a_review_of_another_kind_is_an_error_carrying_the_uid() {
    let mut body = request(pod());
    body["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let (reply, value) = answer(&body);
    assert_eq!(reply.status, 200);
    assert_eq!(
        value["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(value["response"]["allowed"], false);
    assert_eq!(value["response"]["status"]["code"], 400);
    let message = value["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("apps/v1 Deployment"), "{message}");
}

#[test]
fn a_review_of_another_version_is_an_error_carrying_the_uid() {
    let mut body = request(pod());
    body["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (_, value) = answer(&body);
    assert_eq!(
        value["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(value["response"]["allowed"], false);
}

#[test]
fn a_malformed_request_with_a_uid_is_answered_with_that_uid() {
    let mut body = request(pod());
    body["request"]["operation"] = json!(42);
    let (_, value) = answer(&body);
    assert_eq!(
        value["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(value["response"]["allowed"], false);
    let message = value["response"]["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("not an AdmissionReview"), "{message}");
}

#[test]
fn a_body_without_a_uid_is_a_400_with_one_line() {
    for body in [&b"{not json"[..], br#"{"kind":"AdmissionReview"}"#] {
        let reply = handle(&InjectorConfig::default(), body);
        assert_eq!(reply.status, 400);
        let text = String::from_utf8(reply.body).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

#[test]
fn updates_are_allowed_unchanged() {
    let mut body = request(pod());
    body["request"]["operation"] = json!("UPDATE");
    let (_, value) = answer(&body);
    assert_eq!(value["response"]["allowed"], true);
    assert!(value["response"].get("patch").is_none());
}
