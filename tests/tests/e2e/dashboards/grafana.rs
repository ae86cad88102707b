//! The Grafana dashboard `charts/meshtrace-control/dashboards/meshtrace.json`,
//! read as Grafana reads it: its variables, its panels and their queries, and
//! how Grafana substitutes the variables before a query reaches Prometheus.

use std::path::PathBuf;

use serde_json::Value;

/// The dashboard file.
pub fn path() -> PathBuf {
    super::chart_file("dashboards/meshtrace.json")
}

/// The dashboard, parsed.
pub fn dashboard() -> Value {
    let text = std::fs::read_to_string(path()).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path().display()))
}

/// One query of a panel.
#[derive(Clone, Debug)]
pub struct Target {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

/// The panels that are not rows, top-level or inside collapsed rows.
pub fn panels(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            all.extend(panel["panels"].as_array().into_iter().flatten().cloned());
        } else {
            all.push(panel.clone());
        }
    }
    all
}

/// Every panel query.
pub fn targets(dashboard: &Value) -> Vec<Target> {
    panels(dashboard)
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| Target {
                    panel: title.clone(),
                    ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                    expr: t["expr"].as_str().unwrap_or("").to_string(),
                })
        })
        .collect()
}

/// The template variables.
pub fn variables(dashboard: &Value) -> Vec<Value> {
    dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A query variable's `label_values(selector, label)`: (selector, label).
pub fn label_values(variable: &Value) -> Option<(String, String)> {
    let query = variable["query"]["query"]
        .as_str()
        .or(variable["query"].as_str())?;
    let args = query.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = args.rsplit_once(',')?;
    Some((selector.trim().to_string(), label.trim().to_string()))
}

/// Values for the dashboard's variables, as Grafana substitutes them: the
/// variable's "All" (its `allValue`) or one concrete value each.
pub struct Choice<'a> {
    pub namespace: &'a str,
    pub workload: &'a str,
    pub pod: &'a str,
    /// What `$__rate_interval` becomes: Grafana makes it at least four scrape
    /// intervals; the test's Prometheus scrapes every second.
    pub rate_interval: &'a str,
}

/// `expr` as Grafana sends it with `choice`.
pub fn substitute(expr: &str, choice: &Choice<'_>) -> String {
    expr.replace("$__rate_interval", choice.rate_interval)
        .replace("${namespace}", choice.namespace)
        .replace("$namespace", choice.namespace)
        .replace("${workload}", choice.workload)
        .replace("$workload", choice.workload)
        .replace("${pod}", choice.pod)
        .replace("$pod", choice.pod)
}
