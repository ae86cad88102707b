//! The real `meshtrace-control injector` over HTTPS, as the API server calls
//! it: TLS verified against the webhook's CA bundle (a test CA) under the
//! Service's name, HTTP/1.1 and HTTP/2, and the exact bytes of the answer
//! (`response.patch` a base64 string, as Go's `[]byte` reads it). The offline
//! `meshtrace-control inject` runs the same code from the command line.

use base64::Engine as _;
use http::{Method, StatusCode};
use meshtrace_tests::bound::within;
use meshtrace_tests::process::control_binary;
use meshtrace_tests::process::injector::{connect, InjectorProcess, TestCa};
use serde_json::Value;

const REVIEW: &str = include_str!("../../../control/tests/inject/plain-pod.review.json");
const UID: &str = "c1a9e6d2-0001-4f00-8000-000000000001";

async fn injected_over(h2: bool) {
    let injector = InjectorProcess::start(&format!("injector-wire-{h2}"), None).await;
    let mut client = within("connect", injector.connect(h2)).await.unwrap();
    let (status, content_type, body) = within(
        "POST /inject",
        client.send(Method::POST, "/inject", REVIEW.into()),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let text = std::str::from_utf8(&body).unwrap();
    let answer: Value = serde_json::from_str(text).unwrap();
    let patch = answer["response"]["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("response.patch is not a string: {text}"));
    // The exact wire form: nothing but these fields, the patch as base64 text.
    let expected = format!(
        concat!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","#,
            r#""response":{{"allowed":true,"patch":"{}","patchType":"JSONPatch","status":{{}},"uid":"{}"}}}}"#
        ),
        patch, UID
    );
    assert_eq!(text, expected);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&decoded).unwrap();
    let paths: Vec<&str> = ops.iter().map(|op| op["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations/meshtrace.io~1status",
            "/metadata/labels/meshtrace.io~1injected",
            "/spec/initContainers",
            "/spec/volumes/-"
        ]
    );
    let inits = &ops[2]["value"];
    assert_eq!(inits[0]["name"], "meshtrace-init");
    assert_eq!(inits[1]["name"], "meshtrace-proxy");
    assert_eq!(inits[1]["restartPolicy"], "Always");
}

#[tokio::test]
async fn a_review_over_http1_gets_a_base64_patch() {
    injected_over(false).await;
}

#[tokio::test]
async fn a_review_over_http2_gets_a_base64_patch() {
    injected_over(true).await;
}

#[tokio::test]
async fn healthz_answers_and_bad_requests_get_one_line() {
    let injector = InjectorProcess::start("injector-edges", None).await;
    let mut client = within("connect", injector.connect(false)).await.unwrap();
    let (status, _, body) = within(
        "GET /healthz",
        client.send(Method::GET, "/healthz", Vec::new()),
    )
    .await
    .unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (status, _, body) = within(
        "POST junk",
        client.send(Method::POST, "/inject", b"{junk".to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(std::str::from_utf8(&body).unwrap().lines().count(), 1);
    // Refused from its Content-Length, before it is read (on a connection of
    // its own: HTTP/2 ends the stream, the upload stops).
    let mut other = within("connect", injector.connect(true)).await.unwrap();
    let huge = vec![b' '; 8 * 1024 * 1024];
    let (status, _, _) = within("POST 8 MiB", other.send(Method::POST, "/inject", huge))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_client_trusting_another_ca_refuses_the_server() {
    let injector = InjectorProcess::start("injector-ca", None).await;
    let other = TestCa::new().client_config(&[b"h2"]);
    let err = within("connect", connect(injector.addr(), other, true))
        .await
        .unwrap_err();
    assert!(err.starts_with("TLS:"), "{err}");
    // The right CA still works after the refused handshake.
    assert!(within("connect", injector.connect(true)).await.is_ok());
}

#[tokio::test]
async fn the_offline_command_prints_the_injected_pod() {
    let dir = std::env::temp_dir().join(format!("meshtrace-inject-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let review: Value = serde_json::from_str(REVIEW).unwrap();
    let pod = dir.join("pod.json");
    std::fs::write(&pod, review["request"]["object"].to_string()).unwrap();
    std::fs::write(
        dir.join("injector.yaml"),
        "native_sidecar: false\nlog_level: debug\n",
    )
    .unwrap();
    let out = within(
        "meshtrace-control inject",
        tokio::process::Command::new(control_binary().await)
            .arg("inject")
            .arg("--config")
            .arg(dir.join("injector.yaml"))
            .arg("-f")
            .arg(&pod)
            .output(),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("meshtrace.io/status: injected"), "{stdout}");
    assert!(
        stdout.contains("- name: meshtrace-proxy") || stdout.contains("name: meshtrace-proxy"),
        "{stdout}"
    );
    assert!(stdout.contains("value: debug"), "{stdout}");
}
