//! The chart's Grafana dashboard and Prometheus alert rules
//! (`charts/meshtrace-control/dashboards/`), checked with the real tools:
//!
//! * the rules: `promtool check rules`, and `promtool test rules` with unit
//!   tests (`dashboards/alerts.test.yaml`) in which each alert must fire and
//!   must not;
//! * the dashboard: its structure as Grafana reads it (schema version, the
//!   `${datasource}` variable, namespace/workload/pod variables on every query);
//! * both against a real sidecar: a real Prometheus scrapes a sidecar that
//!   carried traffic under a control plane and evaluates the rules; every panel
//!   query, with the variables substituted as Grafana does, must be valid and
//!   (when what it reads exists) return data, and every metric and label the
//!   dashboard or the rules name must be in the sidecar's real scrape.

mod grafana;
mod live;
mod prometheus;
mod promql;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prometheus::PROMTOOL;

/// A file of the chart.
fn chart_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/meshtrace-control")
        .join(path)
}

/// The alert rules file.
fn rules_file() -> PathBuf {
    chart_file("dashboards/meshtrace-alerts.yaml")
}

/// The promtool unit tests of the rules.
fn rule_tests_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dashboards/alerts.test.yaml")
}

/// The rules file's groups, parsed.
fn rules() -> serde_yaml::Value {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Every rule of the rules file.
fn all_rules() -> Vec<serde_yaml::Value> {
    let groups = rules()["groups"].as_sequence().cloned().unwrap_or_default();
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

async fn promtool(args: &[&str]) -> String {
    prometheus::require(PROMTOOL);
    let out = tokio::process::Command::new(PROMTOOL)
        .args(args)
        .current_dir(rule_tests_file().parent().unwrap())
        .kill_on_drop(true)
        .output();
    let out = meshtrace_tests::bound::within(format!("promtool {args:?}"), out)
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{report}");
    report
}

#[tokio::test]
async fn the_alert_rules_pass_promtool_and_each_alert_fires_and_stays_quiet_in_its_unit_tests() {
    let rules = rules_file().display().to_string();
    promtool(&["check", "rules", &rules]).await;
    promtool(&["test", "rules", "alerts.test.yaml"]).await;
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(rule_tests_file()).unwrap()).unwrap();
    let cases: Vec<serde_yaml::Value> = tests["tests"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            t["alert_rule_test"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let alerts: Vec<_> = all_rules()
        .into_iter()
        .filter(|r| r["alert"].is_string())
        .collect();
    assert_eq!(
        alerts.len(),
        4,
        "spans dropped, NACK, unreachable, legacy rising"
    );
    for rule in &alerts {
        let name = rule["alert"].as_str().unwrap();
        let of_this = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"].as_str() == Some(name)
                    && c["exp_alerts"]
                        .as_sequence()
                        .is_some_and(|a| a.is_empty() != firing)
            })
        };
        assert!(of_this(true), "{name}: no unit test in which it fires");
        assert!(
            of_this(false),
            "{name}: no unit test in which it stays quiet"
        );
        assert!(
            ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        for key in ["summary", "description", "runbook"] {
            let text = rule["annotations"][key].as_str().unwrap_or("");
            assert!(!text.trim().is_empty(), "{name}: no {key} annotation");
        }
    }
}

/// The selector every panel query applies to every metric it reads.
const SELECTOR: &str = r#"{namespace=~"$namespace",workload=~"$workload",pod=~"$pod""#;

#[test]
fn the_dashboard_is_a_grafana_dashboard_filtered_by_namespace_workload_and_pod() {
    let d = grafana::dashboard();
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
        "schemaVersion"
    );
    assert!(d["uid"].is_string() && d["title"].is_string());
    let variables = grafana::variables(&d);
    let names: Vec<_> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["datasource", "namespace", "workload", "pod"]);
    assert_eq!(variables[0]["type"], "datasource");
    assert_eq!(variables[0]["query"], "prometheus");
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for v in &variables[1..] {
        assert_eq!(v["type"], "query", "{}", v["name"]);
        assert_eq!(v["datasource"], datasource, "{}", v["name"]);
        assert!(
            grafana::label_values(v).is_some(),
            "{}: label_values(…)",
            v["name"]
        );
        assert_eq!(
            v["allValue"], ".*",
            "{}: All must match every value",
            v["name"]
        );
    }
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        assert!(
            p["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24),
            "{}",
            p["title"]
        );
    }
    for p in grafana::panels(&d) {
        assert_eq!(p["datasource"], datasource, "{}", p["title"]);
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{}: no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{}", p["title"]);
        }
    }
    for t in grafana::targets(&d) {
        for name in promql::metric_names(&t.expr) {
            let uses = t.expr.matches(name.as_str()).count();
            let filtered = t.expr.matches(&format!("{name}{SELECTOR}")).count();
            assert_eq!(
                uses, filtered,
                "{} {}: {name} without {SELECTOR}…}}",
                t.panel, t.ref_id
            );
        }
    }
}

#[test]
fn the_dashboard_shows_what_the_issue_asks_for() {
    let exprs: Vec<String> = grafana::targets(&grafana::dashboard())
        .into_iter()
        .map(|t| t.expr)
        .collect();
    let any = |all: &[&str]| {
        exprs
            .iter()
            .any(|e| all.iter().all(|part| e.contains(part)))
    };
    let wanted: &[(&str, &[&str])] = &[
        (
            "requests by direction and status class",
            &["meshtrace_requests_total", "direction, status_class"],
        ),
        (
            "p50 latency",
            &[
                "histogram_quantile(0.5,",
                "meshtrace_request_duration_seconds_bucket",
            ],
        ),
        (
            "p99 latency",
            &[
                "histogram_quantile(0.99,",
                "meshtrace_request_duration_seconds_bucket",
            ],
        ),
        (
            "sampling decisions by reason",
            &["meshtrace_sampling_decisions_total", "reason"],
        ),
        ("spans exported", &["meshtrace_spans_exported_total"]),
        ("spans dropped", &["meshtrace_spans_dropped_total"]),
        (
            "config versions across the fleet",
            &["count_values(\"version\", meshtrace_config_version"],
        ),
        (
            "reload rejections",
            &["meshtrace_config_reloads_total", "source, result"],
        ),
        (
            "control-plane connectivity",
            &["meshtrace_control_plane_connected"],
        ),
        (
            "legacy share",
            &[
                "meshtrace_trace_context_total",
                "b3multi|b3single|datadog|jaeger",
                "meshtrace_requests_total",
            ],
        ),
        (
            "stage per workload",
            &["meshtrace_migration_stage", "workload, stage"],
        ),
    ];
    for (what, parts) in wanted {
        assert!(any(parts), "no panel query for {what} ({parts:?})");
    }
}
