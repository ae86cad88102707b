//! The dashboard and the rules against a real sidecar: a real Prometheus,
//! relabeling as the README says, scrapes a sidecar that carried inbound and
//! outbound traffic under a control plane, and evaluates the rules; every panel
//! and variable query runs in it as Grafana would send it.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use meshtrace_control::testing;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::{http1_get, http1_get_with};
use meshtrace_tests::sidecar::{self, Proxy};
use serde_json::Value;

use super::grafana::{self, Choice};
use super::prometheus::{self, Prometheus};
use super::{all_rules, promql, rules_file};

#[tokio::test]
async fn every_dashboard_query_and_rule_runs_against_a_real_sidecar_scraped_by_prometheus() {
    let started = Instant::now();
    let app = HttpApp::start().await;
    // Outbound routes are mesh policy: the control plane pushes them. `down:80`
    // leads to a closed port, for an upstream error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let source = format!(
        "defaults:\n  sampling: {{default_rate: 1.0}}\n  outbound:\n    mode: explicit\n    \
         routes: [{{authority: 'svc:80', target: '{}'}}, {{authority: 'down:80', target: '{closed_addr}'}}]\n",
        app.addr()
    );
    let cp = testing::start(&source, None).await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .watching(&cp.url(), "checkout")
        .start()
        .await;
    proxy
        .applied("the pushed config", |c| !c.outbound.routes.is_empty())
        .await;
    traffic(&proxy).await;
    // What Kubernetes service discovery says of the pod: no
    // app.kubernetes.io/name label, so the README's relabeling falls back to `app`.
    let meta = [
        ("__meta_kubernetes_namespace", "shop"),
        ("__meta_kubernetes_pod_name", "checkout-1"),
        ("__meta_kubernetes_pod_label_app", "checkout"),
    ];
    let relabel = readme_relabeling();
    let name = "dashboards-prometheus";
    let target = proxy.admin_addr();
    let mut prom = Prometheus::start(name, target, &meta, &relabel, &rules_file()).await;
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

/// The relabeling the README's "Dashboards and alerts" tells users to use: its
/// YAML block that starts `relabel_configs:`.
fn readme_relabeling() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split_once("#### Dashboards and alerts")
        .map(|(_, s)| s)
        .expect("the README's Dashboards and alerts section");
    let block = section
        .split_once("```yaml\nrelabel_configs:")
        .and_then(|(_, b)| b.split_once("```"))
        .map(|(b, _)| b)
        .expect("its relabel_configs block");
    format!("relabel_configs:{block}")
}

/// Inbound and outbound requests with W3C, B3 and Datadog context and none, a
/// 5xx among them, and one to an upstream that refuses the connection.
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
    let refused = http1_get_with(proxy.outbound_addr(), "down:80", &[]).await;
    assert!(refused.status().is_server_error(), "{:?}", refused.status());
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
