//! The `meshtrace-proxy` command line: `check-config` and `default-config`.

use std::path::PathBuf;
use std::process::Output;

use meshtrace_config::Config;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::process::proxy_binary;
use meshtrace_tests::{client, sidecar};

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

/// The example broken file: every problem in one run, each once, with its
/// line, column, offending value and "did you mean".
#[tokio::test]
async fn check_config_reports_every_problem_of_a_broken_file_at_once() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/testdata/broken.yaml"
    );
    let out = run(&["check-config", path]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        "7:3: inbound.app_prot: unknown key `app_prot`; did you mean `app_port`?",
        "11:7: outbound.routes[0]: missing required key `target` (the rest of this entry is not checked)",
        "14:12: timeouts.conect: unknown key `conect`; did you mean `connect`?",
        "16:10: propagation.stage: unknown value `dule`; did you mean `dual`?",
        "17:27: propagation.extract[1]: unknown value `b3mutli`; did you mean `b3multi`?",
        "12:7: outbound.routes[1].authority: \"ratings\" has no port; use `host:` to match any port",
        "14:41: timeouts.idle: must be greater than 0s",
        "23:10: limits.max_connections: must be at least 1",
        "19:3: sampling.default_rate: 1.5 is not a rate in [0, 1]",
        "22:7: sampling.rules[0].rate: 2 is not a rate in [0, 1]",
    ];
    let expected: Vec<String> = expected.iter().map(|e| format!("{path}:{e}")).collect();
    assert_eq!(lines, expected, "{stderr}");
}

#[tokio::test]
async fn check_config_prints_warnings_and_then_ok() {
    let file = config_file(
        "warnings",
        "propagation:\n  extract: []\n  upstreams:\n  - {match: {host: pay}, external: true}\n  - {match: {authority: 'pay:443'}, inject: [b3multi]}\n",
    );
    let out = run(&["check-config", file.path()]).await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let p = file.path();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("{p}:2:3: warning: propagation.extract: no format is read: incoming trace context is dropped and every request starts a new trace"),
            format!("{p}:5:5: warning: propagation.upstreams[1]: never applies: propagation.upstreams[0] comes first and matches every upstream this rule matches"),
            format!("OK: {p}"),
        ]
    );
}

/// A config with a warning runs as written; the warning is in the log.
#[tokio::test]
async fn a_sidecar_logs_its_configs_warnings_and_still_serves() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.propagation.extract = Vec::new())
        .spawn()
        .await;
    let line = proxy.output().wait_for_line("no format is read").await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("propagation.extract"), "{line}");
    let response = client::http1_get(proxy.inbound_addr(), "/status/200").await;
    assert_eq!(response.status(), 200);
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
