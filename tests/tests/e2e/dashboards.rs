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
mod prometheus;
mod promql;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use meshtrace_control::testing;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::{http1_get, http1_get_with};
use meshtrace_tests::sidecar::{self, Proxy};
use serde_json::Value;

use grafana::Choice;
use prometheus::{Prometheus, PROMTOOL};

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

#[tokio::test]
async fn every_dashboard_query_and_rule_runs_against_a_real_sidecar_scraped_by_prometheus() {
    let started = Instant::now();
    let app = HttpApp::start().await;
    // Outbound routes are mesh policy: the control plane pushes them.
    let cp = testing::start(
        &format!(
            "defaults:\n  sampling: {{default_rate: 1.0}}\n  \
             outbound: {{mode: explicit, routes: [{{authority: 'svc:80', target: '{}'}}]}}\n",
            app.addr()
        ),
        None,
    )
    .await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .watching(&cp.url(), "checkout")
        .start()
        .await;
    proxy
        .applied("the pushed config", |c| !c.outbound.routes.is_empty())
        .await;
    traffic(&proxy).await;
    let labels = [
        ("namespace", "shop"),
        ("workload", "checkout"),
        ("pod", "checkout-1"),
    ];
    let mut prom = Prometheus::start(
        "dashboards-prometheus",
        proxy.admin_addr(),
        &labels,
        &rules_file(),
    )
    .await;
    prom.wait_for(
        "three scrapes of the sidecar",
        &format!(
            "count_over_time(up{{job=\"{}\"}}[1m]) >= 3",
            prometheus::JOB
        ),
    )
    .await;
    let scraped = promql::scraped_names(&proxy.metrics().await);
    let mut problems = check_rules(&mut prom).await;
    problems.extend(check_variables(&prom).await);
    problems.extend(check_panels(&prom, &scraped).await);
    problems.extend(check_label_names(&prom).await);
    let missing = missing_metrics(&scraped);
    if !missing.is_empty() {
        problems.push(format!(
            "named by the dashboard or the rules but not exported by the sidecar: {missing:?}\n\
             (the sidecar exports: {scraped:?})"
        ));
    }
    eprintln!(
        "dashboards: {} panel queries, {} variables and {} rules checked in {:?}",
        grafana::targets(&grafana::dashboard()).len(),
        grafana::variables(&grafana::dashboard()).len() - 1,
        all_rules().len(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Inbound and outbound requests with W3C, B3 and Datadog context and none, a
/// 5xx among them.
async fn traffic(proxy: &Proxy) {
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers: [&[(&str, &str)]; 4] = [
        &[("traceparent", traceparent)],
        &[
            ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
            ("x-b3-spanid", "b7ad6b7169203331"),
            ("x-b3-sampled", "1"),
        ],
        &[
            ("x-datadog-trace-id", "1234567890"),
            ("x-datadog-parent-id", "987654321"),
        ],
        &[],
    ];
    for h in headers {
        http1_get_with(proxy.inbound_addr(), "checkout", h).await;
        http1_get_with(proxy.outbound_addr(), "svc:80", h).await;
    }
    http1_get(proxy.inbound_addr(), "/status/503").await;
}

/// The metric names the dashboard and the rules read that the scrape lacks.
fn missing_metrics(scraped: &BTreeSet<String>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for t in grafana::targets(&grafana::dashboard()) {
        named.extend(promql::metric_names(&t.expr));
    }
    for v in grafana::variables(&grafana::dashboard()) {
        if let Some((selector, _)) = grafana::label_values(&v) {
            named.extend(promql::metric_names(&selector));
        }
    }
    for r in all_rules() {
        named.extend(promql::metric_names(r["expr"].as_str().unwrap_or("")));
    }
    named.difference(scraped).cloned().collect()
}

/// Every rule loaded and evaluated without error against the real series.
async fn check_rules(prom: &mut Prometheus) -> Vec<String> {
    let evaluated = prom.evaluated_rules().await;
    let mut problems = Vec::new();
    if evaluated.len() != all_rules().len() {
        problems.push(format!(
            "prometheus loaded {} rules, the file has {}",
            evaluated.len(),
            all_rules().len()
        ));
    }
    for r in evaluated.iter().filter(|r| r["health"] != "ok") {
        problems.push(format!(
            "rule {}: {} {}",
            r["name"], r["health"], r["lastError"]
        ));
    }
    problems
}

/// Each variable's `label_values` selector is a valid query, and picks the
/// sidecar's series with the label the variable lists.
async fn check_variables(prom: &Prometheus) -> Vec<String> {
    let all = Choice {
        namespace: ".*",
        workload: ".*",
        pod: ".*",
        rate_interval: "1m",
    };
    let mut problems = Vec::new();
    for v in grafana::variables(&grafana::dashboard()) {
        let Some((selector, label)) = grafana::label_values(&v) else {
            continue;
        };
        let query = grafana::substitute(&selector, &all);
        match prom.query(&query).await {
            Err(e) => problems.push(format!("variable {}: {query}: {e}", v["name"])),
            Ok(series)
                if !series
                    .iter()
                    .any(|s| s["metric"][label.as_str()].is_string()) =>
            {
                problems.push(format!(
                    "variable {}: {query} has no series with {label}",
                    v["name"]
                ));
            }
            Ok(_) => {}
        }
    }
    problems
}

/// Each panel query, with All and with one value per variable, is valid; it
/// returns data whenever every metric it reads is exported.
async fn check_panels(prom: &Prometheus, scraped: &BTreeSet<String>) -> Vec<String> {
    let choices = [
        Choice {
            namespace: ".*",
            workload: ".*",
            pod: ".*",
            rate_interval: "1m",
        },
        Choice {
            namespace: "shop",
            workload: "checkout",
            pod: "checkout-1",
            rate_interval: "1m",
        },
    ];
    let mut problems = Vec::new();
    for t in grafana::targets(&grafana::dashboard()) {
        let exported = promql::metric_names(&t.expr).is_subset(scraped);
        for choice in &choices {
            let query = grafana::substitute(&t.expr, choice);
            let at = format!("panel {:?} {}: {query}", t.panel, t.ref_id);
            match prom.query(&query).await {
                Err(e) => problems.push(format!("{at}: {e}")),
                Ok(result) if exported && result.is_empty() => {
                    problems.push(format!(
                        "{at}: no data although the sidecar exports what it reads"
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    problems
}

/// Every label name the dashboard and the rules use exists in Prometheus (the
/// sidecar's labels and the scrape's target labels).
async fn check_label_names(prom: &Prometheus) -> Vec<String> {
    let known: BTreeSet<String> = match prom.api("labels").await {
        Ok(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(String::from))
            .collect(),
        other => return vec![format!("GET /api/v1/labels: {other:?}")],
    };
    let mut used = BTreeSet::new();
    for t in grafana::targets(&grafana::dashboard()) {
        used.extend(promql::label_names(&t.expr));
    }
    for r in all_rules() {
        used.extend(promql::label_names(r["expr"].as_str().unwrap_or("")));
    }
    used.difference(&known)
        .map(|l| format!("label {l} is used but no series has it"))
        .collect()
}
