//! The injector against golden files, in the style of Istio's and Linkerd's
//! injection tests: each `tests/inject/<case>.review.json` is an AdmissionReview
//! as the API server sends it (with `<case>.config.yaml`, when present, as the
//! injector config). The answer is checked as the API server would use it:
//!
//! * patched: the base64 `response.patch` is decoded and applied (json-patch) to
//!   the request's pod, the result is read as a typed k8s-openapi `Pod` and
//!   compared with `<case>.pod.yaml`;
//! * not patched (skipped, refused, malformed): the whole JSON answer is
//!   compared with `<case>.response.json`, or, when the API server would get
//!   HTTP 400, the status and body with `<case>.response.txt`.
//!
//! To regenerate the golden files after an intended change, run
//! `MESHTRACE_UPDATE_GOLDEN=1 cargo test -p meshtrace-control --test control inject::`
//! and review the diff.

use std::path::PathBuf;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use meshtrace_control::inject::review;
use meshtrace_control::inject::InjectorConfig;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/inject")
}

fn updating() -> bool {
    std::env::var_os("MESHTRACE_UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Checks `actual` against the golden file, or rewrites it when updating.
fn compare_text(file: &str, actual: &str) {
    let path = dir().join(file);
    if updating() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (MESHTRACE_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "{file} differs (MESHTRACE_UPDATE_GOLDEN=1 rewrites it)"
    );
}

fn golden(case: &str) {
    let review_text = std::fs::read(dir().join(format!("{case}.review.json"))).unwrap();
    let config_path = dir().join(format!("{case}.config.yaml"));
    let config = if config_path.exists() {
        InjectorConfig::load(Some(&config_path)).unwrap()
    } else {
        InjectorConfig::default()
    };
    let reply = review::handle(&config, &review_text);
    if reply.status != 200 {
        let text = format!(
            "{}\n{}",
            reply.status,
            String::from_utf8(reply.body).unwrap()
        );
        return compare_text(&format!("{case}.response.txt"), &text);
    }
    let answer: Value = serde_json::from_slice(&reply.body).unwrap();
    let Some(patch) = answer["response"]["patch"].as_str() else {
        let pretty = serde_json::to_string_pretty(&answer).unwrap() + "\n";
        return compare_text(&format!("{case}.response.json"), &pretty);
    };
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let request: Value = serde_json::from_slice(&review_text).unwrap();
    assert_eq!(answer["response"]["uid"], request["request"]["uid"]);
    assert_eq!(answer["response"]["allowed"], true);
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = request["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    let patched: Pod = serde_json::from_value(pod).unwrap();
    let file = format!("{case}.pod.yaml");
    if updating() {
        return compare_text(&file, &serde_yaml::to_string(&patched).unwrap());
    }
    let golden_text = std::fs::read_to_string(dir().join(&file)).unwrap();
    let expected: Pod = serde_yaml::from_str(&golden_text).unwrap();
    if expected != patched {
        let actual = serde_yaml::to_string(&patched).unwrap();
        assert_eq!(golden_text, actual, "{file}: the patched pod differs");
    }
}

#[test]
fn plain_pod_gets_a_native_sidecar_and_the_init_step() {
    golden("plain-pod");
}

#[test]
fn the_sidecar_goes_before_the_pods_own_init_containers() {
    golden("init-containers");
}

#[test]
fn a_pod_without_annotations_volumes_or_labels_is_patched_whole() {
    golden("no-annotations");
}

#[test]
fn a_pod_without_scrape_annotations_is_pointed_at_the_sidecars_metrics_port() {
    golden("scrape-annotations");
}

#[test]
fn a_pod_with_its_own_prometheus_annotations_keeps_them() {
    golden("own-prometheus-annotations");
}

#[test]
fn an_opted_out_pod_is_allowed_unchanged() {
    golden("opt-out");
}

#[test]
fn an_injected_pod_is_allowed_unchanged() {
    golden("already-injected");
}

#[test]
fn a_pod_with_a_meshtrace_proxy_container_is_allowed_unchanged() {
    golden("has-sidecar-container");
}

#[test]
fn a_host_network_pod_is_allowed_unchanged_with_a_warning() {
    golden("host-network");
}

#[test]
fn classic_mode_puts_the_sidecar_first_in_containers() {
    golden("classic");
}

#[test]
fn excluded_ports_and_cidrs_reach_the_init_step() {
    golden("excluded-ports");
}

#[test]
fn a_bad_excluded_port_refuses_the_pod() {
    golden("bad-excluded-ports");
}

#[test]
fn extra_config_is_passed_to_the_sidecar() {
    golden("extra-config");
}

#[test]
fn invalid_extra_config_refuses_the_pod() {
    golden("extra-config-invalid");
}

#[test]
fn a_review_of_another_kind_is_an_error_with_its_uid() {
    golden("wrong-kind");
}

#[test]
fn a_malformed_request_is_an_error_with_its_uid() {
    golden("malformed");
}

#[test]
fn a_body_that_is_not_json_is_a_400() {
    golden("not-json");
}

#[test]
fn every_review_file_has_a_test() {
    let mut cases: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".review.json").map(str::to_string))
        .collect();
    cases.sort();
    let source = include_str!("inject.rs");
    for case in cases {
        assert!(
            source.contains(&format!("golden(\"{case}\")")),
            "{case} has no test"
        );
    }
}
