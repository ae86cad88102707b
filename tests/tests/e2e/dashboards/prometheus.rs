//! A real Prometheus (Debian's `prometheus` package) scraping a sidecar, and its
//! HTTP API: the dashboard's queries and the alert rules run in it as they
//! would in a user's.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshtrace_tests::process::{probe, Group, Logs, Supervised};
use serde_json::Value;
use tokio::process::Command;

use super::promql::url_encode;

/// The Prometheus server and its rule checker, from Debian's `prometheus`.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// The job the sidecar is scraped as.
pub const JOB: &str = "meshtrace-sidecar";

/// How long Prometheus may take to start, scrape, or evaluate its rules.
const LIMIT: Duration = Duration::from_secs(60);

/// Fails the test, with the fix, when `tool` is not installed.
pub fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: install Debian's `prometheus` package \
         (`apt-get install prometheus`; bash scripts/test-all.sh installs it)"
    );
}

/// A `prometheus` process scraping one target every second; killed, and its
/// files removed, when dropped.
pub struct Prometheus {
    addr: SocketAddr,
    dir: PathBuf,
    process: Supervised,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` and evaluating `rule_file` every
    /// second. `meta` stands in for the target labels Kubernetes service
    /// discovery would give (`__meta_kubernetes_…`), `relabel_configs` is the
    /// scrape job's relabeling (a YAML block starting `relabel_configs:`).
    pub async fn start(
        name: &str,
        target: SocketAddr,
        meta: &[(&str, &str)],
        relabel_configs: &str,
        rule_file: &Path,
    ) -> Self {
        require(PROMETHEUS);
        let dir = std::env::temp_dir().join(format!("meshtrace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let meta: Vec<String> = meta.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
        let relabel: String = relabel_configs
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect();
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n\
             - job_name: {JOB}\n  static_configs:\n  - targets: ['{target}']\n    labels: {{{meta}}}\n\
             {relabel}",
            rules = rule_file.display().to_string(),
            meta = meta.join(", "),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // Prometheus cannot report a port it chose itself: take a free one, and
        // try another if something took it meanwhile (the process then exits).
        let mut failures = Vec::new();
        for _ in 0..3 {
            let addr = free_port();
            let mut process = spawn(&dir, addr);
            match process.ready(addr, "/-/ready", LIMIT).await {
                Ok(()) => return Self { addr, dir, process },
                Err(e) => failures.push(e),
            }
        }
        panic!("prometheus did not start:\n{}", failures.join("\n"));
    }

    /// `GET /api/v1/<path>`: the `data` of a success, else Prometheus's error.
    pub async fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = probe::get(self.addr, "localhost", &format!("/api/v1/{path}")).await?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: not JSON ({e}): {body}"))?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!(
                "{status}: {}: {}",
                answer["errorType"], answer["error"]
            ))
        }
    }

    /// An instant query's result (a vector, or a scalar as one sample).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self
            .api(&format!("query?query={}", url_encode(expr)))
            .await?;
        Ok(match &data["result"] {
            Value::Array(samples) => samples.clone(),
            other => vec![other.clone()],
        })
    }

    /// Waits (polling its API, at most [`LIMIT`]) until `expr` has a result.
    pub async fn wait_for(&mut self, what: &str, expr: &str) {
        let addr = self.addr;
        let expr = expr.to_string();
        let asked = self
            .process
            .wait_until(what, LIMIT, || {
                let path = format!("/api/v1/query?query={}", url_encode(&expr));
                async move {
                    probe::get(addr, "localhost", &path)
                        .await
                        .is_ok_and(|(_, body)| {
                            serde_json::from_str::<Value>(&body).is_ok_and(|v| {
                                v["data"]["result"]
                                    .as_array()
                                    .is_some_and(|r| !r.is_empty())
                            })
                        })
                }
            })
            .await;
        if let Err(e) = asked {
            panic!("{e}");
        }
    }

    /// Waits until every rule has been evaluated once; the rules as Prometheus
    /// reports them (name, health, lastError).
    pub async fn evaluated_rules(&mut self) -> Vec<Value> {
        let addr = self.addr;
        let asked = self
            .process
            .wait_until("every rule to be evaluated", LIMIT, || async move {
                probe::get(addr, "localhost", "/api/v1/rules")
                    .await
                    .is_ok_and(|(_, body)| {
                        serde_json::from_str::<Value>(&body).is_ok_and(|v| {
                            let rules = all_rules(&v["data"]);
                            !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")
                        })
                    })
            })
            .await;
        if let Err(e) = asked {
            panic!("{e}");
        }
        all_rules(&self.api("rules").await.unwrap())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn all_rules(data: &Value) -> Vec<Value> {
    data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn spawn(dir: &Path, addr: SocketAddr) -> Supervised {
    let mut command = Command::new(PROMETHEUS);
    command
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .current_dir(dir);
    Supervised::spawn("prometheus", command, Logs::Capture, Group::Inherit)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}
