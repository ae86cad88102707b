//! The command line: `-o json`, warnings on stderr, update/extend, migration
//! moves, and `check` (run as the real binary for its exit status).

use std::process::Command as Process;

use clap::Parser;

use meshtrace_control::cli::{run_client, Cli, Command, Output};
use meshtrace_control::migration::MigrationView;
use meshtrace_control::overrides::Override;
use meshtrace_control::testing::{start, within, Running};
use serde_json::Value;

const SOURCE: &str = "defaults: {sampling: {default_rate: 0.1}}\n";
const BINARY: &str = env!("CARGO_BIN_EXE_meshtrace-control");

/// Runs a client command line in-process against `cp`.
pub(crate) async fn cli(cp: &Running, args: &[&str]) -> Output {
    let line = [&["meshtrace-control"], args].concat();
    let parsed = Cli::try_parse_from(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let Command::Client(command) = parsed.command else {
        panic!("{line:?} is not a client command");
    };
    within(&line.join(" "), run_client(&cp.client(), command))
        .await
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test]
async fn dash_o_json_prints_the_apis_json() {
    let cp = start(SOURCE, Some("t")).await;
    cli(
        &cp,
        &[
            "override", "add", "--tenant", "acme", "--rate", "1", "--for", "5m",
        ],
    )
    .await;

    let list = json(&cli(&cp, &["override", "list", "-o", "json"]).await);
    let list: Vec<Override> = serde_json::from_value(list).unwrap();
    assert_eq!(list.len(), 1);
    let status = json(&cli(&cp, &["status", "-o", "json"]).await);
    assert_eq!(status["status"]["override_count"], 1);
    assert!(status["sidecars"].is_array(), "{status}");
    let view = json(&cli(&cp, &["migration", "-o", "json"]).await);
    let view: MigrationView = serde_json::from_value(view).unwrap();
    assert_eq!(view.window_seconds, 300);
}

#[tokio::test]
async fn the_default_output_stays_a_table() {
    let cp = start(SOURCE, Some("t")).await;
    let list = cli(&cp, &["override", "list"]).await;
    assert!(list.stdout.starts_with("ID  "), "{}", list.stdout);
    let view = cli(&cp, &["migration"]).await;
    assert!(view.stdout.starts_with("WORKLOAD  "), "{}", view.stdout);
}

#[tokio::test]
async fn an_override_for_an_unknown_service_prints_a_warning_for_stderr() {
    let cp = start(SOURCE, Some("t")).await;
    let add = [
        "override",
        "add",
        "--service",
        "chekout",
        "--rate",
        "1",
        "--for",
        "5m",
    ];
    let out = cli(&cp, &add).await;
    assert!(out.stdout.starts_with("added ovr-"), "{}", out.stdout);
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains(r#"service "chekout""#),
        "{:?}",
        out.warnings
    );
}

#[tokio::test]
async fn update_and_extend_change_an_override_in_place() {
    let cp = start(SOURCE, Some("t")).await;
    cli(
        &cp,
        &[
            "override", "add", "--tenant", "acme", "--rate", "1", "--for", "5m",
        ],
    )
    .await;
    let o = &cp.store.overrides().await[0];
    let out = cli(
        &cp,
        &[
            "override", "update", &o.id, "--rate", "0.5", "--budget", "7",
        ],
    )
    .await;
    assert!(out
        .stdout
        .starts_with(&format!("updated {} (rate 0.5, budget 7/s", o.id)));
    cli(&cp, &["override", "extend", &o.id, "10m"]).await;
    let now = &cp.store.overrides().await[0];
    assert_eq!(
        now.expires_at.0,
        o.expires_at.0 + std::time::Duration::from_secs(600)
    );
    assert_eq!((now.rate, now.traces_per_second), (0.5, Some(7.0)));
}

#[tokio::test]
async fn migration_moves_print_one_line_each() {
    let cp = start(SOURCE, Some("t")).await;
    let target = ["--service", "checkout", "--namespace", "shop"];
    let advance = cli(&cp, &[&["migration", "advance"], &target[..]].concat()).await;
    let version = cp.store.snapshot().version;
    assert_eq!(
        advance.stdout,
        format!("checkout (shop): legacy -> dual (version {version})\n")
    );
    let rollback = cli(&cp, &[&["migration", "rollback"], &target[..]].concat()).await;
    assert!(rollback
        .stdout
        .starts_with("checkout (shop): dual -> legacy"));
    let set = [
        &["migration", "set"],
        &target[..],
        &["--stage", "w3c", "-o", "json"],
    ]
    .concat();
    assert_eq!(json(&cli(&cp, &set).await)["to"], "w3c");
}

#[tokio::test]
async fn the_binary_prints_warnings_to_stderr_and_exits_0() {
    let cp = start(SOURCE, Some("t")).await;
    let out = tokio::process::Command::new(BINARY)
        .args(["--server", &cp.url(), "--token", "t"])
        .args([
            "override",
            "add",
            "--service",
            "nobody",
            "--rate",
            "1",
            "--for",
            "5m",
        ])
        .env_remove("MESHTRACE_CONTROL_URL")
        .env_remove("MESHTRACE_CONTROL_TOKEN")
        .kill_on_drop(true)
        .output();
    let out = within("meshtrace-control override add", out).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("added ovr-"), "{stdout}");
    assert!(
        stderr
            .starts_with(r#"warning: no known workload or connected sidecar has service "nobody""#),
        "{stderr}"
    );
}

#[test]
fn check_exits_0_on_a_valid_file_and_1_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, SOURCE).unwrap();
    let out = Process::new(BINARY)
        .arg("check")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK "));

    let bad = dir.path().join("bad.yaml");
    let text = "workloads:\n  - config: {sampling: {default_rate: 2}}\n  - config: {limits: {max_header_bytes: 1}}\n";
    std::fs::write(&bad, text).unwrap();
    let out = Process::new(BINARY)
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = meshtrace_control::check::check(&bad).unwrap_err();
    assert!(stderr.starts_with(&format!("{expected}\n")), "{stderr}");
    assert!(
        stderr.contains("bad.yaml is not valid (2 problems)"),
        "{stderr}"
    );
}
