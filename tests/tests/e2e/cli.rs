//! The `meshtrace-proxy` command line: `check-config` and `default-config`.

use std::path::PathBuf;
use std::process::Output;

use meshtrace_config::Config;
use meshtrace_tests::process::proxy_binary;

/// Runs the binary with `args` and collects its output.
async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(proxy_binary().await)
        .args(args)
        .env_remove("MESHTRACE_APP_PORT")
        .output()
        .await
        .expect("run meshtrace-proxy")
}

/// A config file named after the test, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `yaml` to a fresh file named after the test.
fn config_file(name: &str, yaml: &str) -> ConfigFile {
    let name = format!("meshtrace-cli-{}-{name}.yaml", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, yaml).expect("write config");
    ConfigFile(path)
}

#[tokio::test]
async fn check_config_prints_ok_for_a_valid_file() {
    let file = config_file("valid", "inbound:\n  app_port: 9090\n");
    let out = run(&["check-config", file.path()]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK"));
}

#[tokio::test]
async fn check_config_names_file_line_column_and_path_of_a_parse_error() {
    let file = config_file("parse", "inbound:\n  app_port: 9090\n  listen: nowhere\n");
    let out = run(&["check-config", file.path()]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:3:", file.path());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("inbound.listen"), "{stderr}");
}

#[tokio::test]
async fn check_config_lists_every_semantic_problem() {
    let file = config_file(
        "semantic",
        "limits:\n  max_connections: 0\ntimeouts:\n  detect: 0s\n",
    );
    let out = run(&["check-config", file.path()]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("limits.max_connections: must be at least 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("timeouts.detect: must be greater than 0s"),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_config_reports_a_missing_file() {
    let out = run(&["check-config", "/nonexistent/meshtrace.yaml"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test]
async fn default_config_prints_the_embedded_default() {
    let out = run(&["default-config"]).await;
    assert!(out.status.success());
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        Config::from_yaml_str(&yaml, "stdout").expect("valid"),
        Config::default()
    );
}
