//! The opt-in monitoring objects: the Grafana dashboard's ConfigMap and the
//! Prometheus Operator's PrometheusRule. Both embed a file of the chart
//! (`dashboards/`), the one source of truth the suite's Prometheus and promtool
//! run (`dashboards::`): the renders must carry exactly those files.
//! kubernetes-validate has no schema for the PrometheusRule CRD, so its shape
//! is checked here against the CRD's fields.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_yaml::Value;

use super::render::{chart_dir, manifests, MONITORING, RELEASE};

/// The fields the PrometheusRule CRD (monitoring.coreos.com/v1) allows in a
/// rule group and in a rule.
const GROUP_FIELDS: &[&str] = &[
    "name",
    "interval",
    "rules",
    "limit",
    "partial_response_strategy",
    "query_offset",
];
const RULE_FIELDS: &[&str] = &[
    "alert",
    "record",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

fn chart_file(path: &str) -> String {
    std::fs::read_to_string(chart_dir().join(path)).unwrap()
}

#[tokio::test]
async fn the_dashboard_and_the_alert_rules_are_off_by_default() {
    let m = manifests(&[]).await;
    assert!(m.of_kind("PrometheusRule").next().is_none());
    assert!(!m.has("ConfigMap", &format!("{RELEASE}-dashboard")));
}

#[tokio::test]
async fn the_dashboard_configmap_carries_the_dashboard_file_for_grafanas_sidecar() {
    let m = manifests(MONITORING).await;
    let cm: ConfigMap = m.get("ConfigMap", &format!("{RELEASE}-dashboard"));
    assert_eq!(cm.metadata.namespace.as_deref(), Some("grafana"));
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1")
    );
    let data = cm.data.unwrap_or_default();
    let json = data.get("meshtrace.json").expect("meshtrace.json");
    let file = chart_file("dashboards/meshtrace.json");
    assert_eq!(
        json.trim_end(),
        file.trim_end(),
        "the dashboard file, unchanged"
    );
    let parsed: serde_json::Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(parsed["uid"], "meshtrace-sidecars");
}

#[tokio::test]
async fn the_prometheus_rule_carries_exactly_the_rules_file() {
    let m = manifests(MONITORING).await;
    let rule = m.operator_object("PrometheusRule");
    let spec = rule["spec"].as_mapping().expect("spec");
    let keys: Vec<_> = spec.keys().filter_map(Value::as_str).collect();
    assert_eq!(keys, ["groups"]);
    let file: Value =
        serde_yaml::from_str(&chart_file("dashboards/meshtrace-alerts.yaml")).unwrap();
    assert_eq!(
        rule["spec"]["groups"], file["groups"],
        "the rules file's groups, unchanged"
    );
    let groups = file["groups"].as_sequence().expect("groups");
    assert!(!groups.is_empty());
    for group in groups {
        assert_fields(group, GROUP_FIELDS, "group");
        assert!(group["name"].is_string());
        for r in group["rules"].as_sequence().expect("rules") {
            assert_fields(r, RULE_FIELDS, "rule");
            assert!(
                r["alert"].is_string() != r["record"].is_string(),
                "alert or record: {r:?}"
            );
            assert!(r["expr"].is_string(), "{r:?}");
            for duration in ["for", "keep_firing_for"] {
                if let Some(d) = r[duration].as_str() {
                    let digits = d.trim_end_matches(['s', 'm', 'h', 'd']);
                    assert!(
                        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
                        "{duration}: {d}"
                    );
                }
            }
            for map in ["labels", "annotations"] {
                if let Some(values) = r[map].as_mapping() {
                    assert!(
                        values.values().all(Value::is_string),
                        "{map} are strings: {r:?}"
                    );
                }
            }
        }
    }
}

fn assert_fields(object: &Value, allowed: &[&str], what: &str) {
    let map = object
        .as_mapping()
        .unwrap_or_else(|| panic!("a {what} is a mapping"));
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        assert!(
            allowed.contains(&key),
            "a {what} has {key}, which the CRD does not allow"
        );
    }
}
