//! An in-process control plane for tests (this crate's and the sidecar's).
//!
//! ```no_run
//! # async fn demo() {
//! let cp = meshtrace_control::testing::start("defaults: {sampling: {default_rate: 0.5}}", Some("t0ken")).await;
//! let mut watch = cp.watch("checkout", "shop", "checkout-1", &[]).await;
//! let first = watch.next_config().await; // wrap in tokio::time::timeout in real tests
//! # }
//! ```
//!
//! The server listens on `127.0.0.1:0`, keeps its source and state files in a
//! temporary directory removed on drop, polls the source every 50 ms, and is shut
//! down when the [`Running`] is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::Token;
use crate::client::{ControlClient, WatchStream};
use crate::overrides::DEFAULT_MAX_DURATION;
use crate::reply::encode;
use crate::reports::Reports;
use crate::server::{self, ConnectionLimits, ConnectionStats, ServeConfig};
use crate::sidecars::Sidecars;
use crate::store::Store;

/// How often the test server polls its source file.
pub const TEST_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running in-process control plane.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Holds `source.yaml` and `state.json`; removed on drop.
    pub state_dir: tempfile::TempDir,
    /// The source file.
    pub source_path: PathBuf,
    /// The state file.
    pub state_path: PathBuf,
    /// The write token, if any.
    pub token: Option<String>,
    /// The server's state (for assertions that bypass HTTP).
    pub store: Store,
    /// Connected sidecars.
    pub sidecars: Sidecars,
    /// What sidecars reported.
    pub reports: Reports,
    /// What the server did with its connections.
    pub connections: Arc<ConnectionStats>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A bare [`Store`] on `source_yaml` — no server — with its background tasks
/// (the source poll, hourly, and the expiry timer) running until it drops: for
/// tests of expiry on tokio's paused clock.
#[derive(Debug)]
pub struct StoreFixture {
    /// The store.
    pub store: Store,
    _dir: tempfile::TempDir,
    cancel: CancellationToken,
}

/// A [`StoreFixture`] serving `source_yaml`; panics (failing the test) if the
/// store cannot open.
pub fn store(source_yaml: &str) -> StoreFixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let source = dir.path().join("source.yaml");
    std::fs::write(&source, source_yaml).unwrap_or_else(|e| panic!("write source: {e}"));
    let state = crate::state::StateFile::new(dir.path().join("state.json"));
    let store = Store::open(&source, state).unwrap_or_else(|e| panic!("open the store: {e}"));
    let cancel = CancellationToken::new();
    store.spawn_background(Duration::from_secs(3600), cancel.clone());
    StoreFixture {
        store,
        _dir: dir,
        cancel,
    }
}

impl Drop for StoreFixture {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts a control plane serving `source_yaml`; panics (failing the test) if it
/// cannot start. `token: None` means writes are refused.
pub async fn start(source_yaml: &str, token: Option<&str>) -> Running {
    match try_start(source_yaml, token).await {
        Ok(running) => running,
        Err(e) => panic!("cannot start the test control plane: {e}"),
    }
}

/// Like [`start`], with connection deadlines and bounds other than the
/// defaults (short ones, for tests of the timeouts).
pub async fn start_with(
    source_yaml: &str,
    token: Option<&str>,
    limits: ConnectionLimits,
) -> Running {
    match try_start_with(source_yaml, token, limits).await {
        Ok(running) => running,
        Err(e) => panic!("cannot start the test control plane: {e}"),
    }
}

/// Like [`start`], returning the error.
pub async fn try_start(source_yaml: &str, token: Option<&str>) -> Result<Running, String> {
    try_start_with(source_yaml, token, ConnectionLimits::default()).await
}

async fn try_start_with(
    source_yaml: &str,
    token: Option<&str>,
    limits: ConnectionLimits,
) -> Result<Running, String> {
    let state_dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let source_path = state_dir.path().join("source.yaml");
    let state_path = state_dir.path().join("state.json");
    std::fs::write(&source_path, source_yaml).map_err(|e| format!("source file: {e}"))?;
    let token = token.map(String::from);
    let mut cfg = config(&source_path, &state_path, token.as_deref());
    cfg.limits = limits;
    let server = server::start(cfg).await?;
    Ok(Running {
        addr: server.addr,
        state_dir,
        source_path,
        state_path,
        token,
        store: server.store,
        sidecars: server.sidecars,
        reports: server.reports,
        connections: server.connections,
        limits,
        shutdown: server.shutdown,
        task: server.task,
    })
}

fn config(source: &std::path::Path, state: &std::path::Path, token: Option<&str>) -> ServeConfig {
    ServeConfig {
        source: source.to_path_buf(),
        state: state.to_path_buf(),
        kubernetes: None,
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        token: token.map_or_else(Token::none, Token::new),
        poll_interval: TEST_POLL_INTERVAL,
        max_override_duration: DEFAULT_MAX_DURATION,
        limits: ConnectionLimits::default(),
    }
}

// === impl Running ===

impl Running {
    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client that sends the token.
    pub fn client(&self) -> ControlClient {
        self.client_with(self.token.clone())
    }

    /// A client that sends `token` (or none).
    pub fn client_with(&self, token: Option<String>) -> ControlClient {
        match ControlClient::new(&self.url(), token) {
            Ok(client) => client,
            Err(e) => panic!("test client: {e}"),
        }
    }

    /// Opens a watch as sidecar `namespace/pod` of `service` with `labels`.
    pub async fn watch(
        &self,
        service: &str,
        namespace: &str,
        pod: &str,
        labels: &[(&str, &str)],
    ) -> WatchStream {
        let mut q = format!(
            "service={}&namespace={}&pod={}",
            encode(service),
            encode(namespace),
            encode(pod)
        );
        for (k, v) in labels {
            q.push_str(&format!("&label={}", encode(&format!("{k}={v}"))));
        }
        match tokio::time::timeout(Duration::from_secs(10), self.client().watch(&q)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => panic!("watch: {e}"),
            Err(_) => panic!("watch: timed out"),
        }
    }

    /// Replaces the source file the way a ConfigMap update does (a new file
    /// renamed into place), so the poller sees it.
    pub fn write_source(&self, yaml: &str) {
        let tmp = self.state_dir.path().join(".source.yaml.new");
        if let Err(e) =
            std::fs::write(&tmp, yaml).and_then(|()| std::fs::rename(&tmp, &self.source_path))
        {
            panic!("write source: {e}");
        }
    }

    /// Stops the server (watch streams end) and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        // Idempotent: a finished task must not be awaited again.
        if !self.task.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        }
    }

    /// Stops the server and starts a new one on the same files and the same
    /// port, as a restarted pod behind its Service would be: sidecars reconnect.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut cfg = config(&self.source_path, &self.state_path, self.token.as_deref());
        cfg.listen = self.addr;
        cfg.limits = self.limits;
        let server = match server::start(cfg).await {
            Ok(server) => server,
            Err(e) => panic!("restart: {e}"),
        };
        self.addr = server.addr;
        self.store = server.store;
        self.sidecars = server.sidecars;
        self.reports = server.reports;
        self.connections = server.connections;
        self.shutdown = server.shutdown;
        self.task = server.task;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

/// Awaits `fut` for at most 10 s, failing the test with `what` if it takes longer.
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after 10s: {what}"),
    }
}
