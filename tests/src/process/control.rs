//! Runs the real `meshtrace-control serve`, for what only its binary shows: the
//! CLI against a live server, its write token, its files.
//!
//! The server listens on an ephemeral port, which only it knows: it announces
//! the address (`control plane listening addr=…`), and it is ready once
//! `GET /healthz` answers 200.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use super::binary::control_binary;
use super::{Group, Logs, Supervised};
use crate::bound::within;

/// How long the server has to load its document, listen and answer.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// A `meshtrace-control serve` process; killed, and its files removed, when
/// dropped.
#[derive(Debug)]
pub struct ControlProcess {
    addr: SocketAddr,
    dir: PathBuf,
    _process: Supervised,
}

// === impl ControlProcess ===

impl ControlProcess {
    /// Serves `source` (a control-plane document) with write token `token`,
    /// its files in a scratch directory named after `name` (unique per test).
    pub async fn serve(name: &str, source: &str, token: &str) -> Self {
        Self::serve_with(name, source, token, None).await
    }

    /// Like [`Self::serve`], with the state in ConfigMap
    /// `meshtrace-control-state` of namespace `mesh`, through the API server
    /// `kubeconfig` points at (`--store kubernetes`).
    pub async fn serve_kubernetes(
        name: &str,
        source: &str,
        token: &str,
        kubeconfig: &std::path::Path,
    ) -> Self {
        Self::serve_with(name, source, token, Some(kubeconfig)).await
    }

    async fn serve_with(
        name: &str,
        source: &str,
        token: &str,
        kubeconfig: Option<&std::path::Path>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("meshtrace-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let (source_file, token_file) = (dir.join("source.yaml"), dir.join("token"));
        write(&source_file, source);
        write(&token_file, &format!("{token}\n"));
        let mut command = Command::new(control_binary().await);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--source"])
            .arg(&source_file)
            .arg("--token-file")
            .arg(&token_file)
            .env_remove("MESHTRACE_CONTROL_TOKEN")
            .env("NO_COLOR", "1");
        match kubeconfig {
            None => {
                command.arg("--state").arg(dir.join("state.json"));
            }
            Some(kubeconfig) => {
                command
                    .args(["--store", "kubernetes"])
                    .env("KUBECONFIG", kubeconfig)
                    .env("POD_NAMESPACE", "mesh")
                    .env_remove("KUBERNETES_SERVICE_HOST");
            }
        }
        let mut process = Supervised::spawn(
            "meshtrace-control serve",
            command,
            Logs::Capture,
            Group::Inherit,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let addr = listening(&process).await;
        process
            .ready(addr, "/healthz", READY_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            addr,
            dir,
            _process: process,
        }
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs a client command line against this server; returns (success,
    /// stdout, stderr). The caller's `MESHTRACE_CONTROL_*` are not inherited.
    pub async fn cli(&self, token: Option<&str>, line: &str) -> (bool, String, String) {
        let mut command = Command::new(control_binary().await);
        command
            .args(["--server", &self.url()])
            .args(line.split_whitespace())
            .env_remove("MESHTRACE_CONTROL_URL")
            .env_remove("MESHTRACE_CONTROL_TOKEN")
            .kill_on_drop(true);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let out = within(format!("meshtrace-control {line}"), command.output())
            .await
            .unwrap_or_else(|e| panic!("cannot run meshtrace-control: {e}"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The address the server announces once it listens.
async fn listening(process: &Supervised) -> SocketAddr {
    const PREFIX: &str = "control plane listening addr=";
    let line = process
        .announced("its address", READY_LIMIT, |line| line.contains(PREFIX))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    line.split_once(PREFIX)
        .and_then(|(_, addr)| addr.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read the address from {line:?}"))
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
