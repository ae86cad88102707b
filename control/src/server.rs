//! Accepting connections: HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on one port.
//!
//! What a connection may cost — deadlines for its first byte and request head, an
//! idle timeout that spares watches, a bound on how many are open — is described
//! on [`ConnectionLimits`] (`server/limits.rs`); one connection's life is in
//! `server/connection.rs`.
//!
//! On shutdown the listener closes, every watch stream ends (sidecars reconnect to
//! another replica or retry), and in-flight requests get [`DRAIN`] to finish.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::auth::Token;
use crate::reports::Reports;
use crate::sidecars::Sidecars;
use crate::state::{ConfigMapState, StateFile};
use crate::store::{Store, StoreOptions};

mod connection;
mod limits;

pub use self::limits::{
    ConnectionCounts, ConnectionLimits, ConnectionStats, FD_RESERVE, H2_MAX_STREAMS,
    H2_PING_INTERVAL, H2_PING_TIMEOUT,
};

/// How long in-flight requests may take after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Connections the kernel may hold that the server has not accepted yet (capped
/// by `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 1024;

/// How often "at the connection bound" may be logged.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// What `meshtrace-control serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The source YAML file.
    pub source: PathBuf,
    /// The state file (used when `kubernetes` is `None`).
    pub state: PathBuf,
    /// Keep the state in this ConfigMap of the pod's namespace instead of the
    /// state file (`--store kubernetes --store-name NAME`).
    pub kubernetes: Option<String>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The write token.
    pub token: Token,
    /// How often the source file is polled.
    pub poll_interval: Duration,
    /// The longest an incident override may last.
    pub max_override_duration: Duration,
    /// Deadlines and bounds for connections.
    pub limits: ConnectionLimits,
}

/// A started server.
#[derive(Debug)]
pub struct Server {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The state.
    pub store: Store,
    /// Connected sidecars.
    pub sidecars: Sidecars,
    /// What sidecars reported.
    pub reports: Reports,
    /// What happened to connections.
    pub connections: Arc<ConnectionStats>,
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// Ends when the server has shut down.
    pub task: tokio::task::JoinHandle<()>,
}

/// Opens the state, binds, and starts serving in the background.
pub async fn start(config: ServeConfig) -> Result<Server, String> {
    config.limits.validate()?;
    let store = open_store(&config).await?;
    let listener =
        bind(config.listen).map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    store.spawn_background(config.poll_interval, shutdown.clone());
    let api = Api {
        store: store.clone(),
        sidecars: Sidecars::default(),
        reports: Reports::default(),
        token: Arc::new(config.token),
        shutdown: shutdown.clone(),
        connections: Arc::default(),
    };
    let (sidecars, reports) = (api.sidecars.clone(), api.reports.clone());
    let connections = api.connections.clone();
    let task = tokio::spawn(serve(listener, api, config.limits));
    tracing::info!(%addr, "control plane listening");
    Ok(Server {
        addr,
        store,
        sidecars,
        reports,
        connections,
        shutdown,
        task,
    })
}

/// Opens the store on the backend `config` names.
async fn open_store(config: &ServeConfig) -> Result<Store, String> {
    let source = config.source.clone();
    let options = StoreOptions {
        max_override_duration: config.max_override_duration,
    };
    if let Some(name) = &config.kubernetes {
        let state = ConfigMapState::connect(name).await?;
        let what = state.describe().to_string();
        let store = Store::open_kubernetes(&source, state, options)
            .await
            .map_err(|e| format!("--store kubernetes: {e}"))?;
        tracing::info!(state = %what, "control-plane state kept in Kubernetes");
        return Ok(store);
    }
    let state = StateFile::new(config.state.clone());
    tokio::task::spawn_blocking(move || Store::open_with(&source, state, options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Binds `addr` with a listen backlog of [`LISTEN_BACKLOG`] (tokio's `bind`
/// uses 128): at the connection bound, and when a fleet reconnects at once after
/// a restart, the backlog is where connections wait.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves connections until `api.shutdown` is cancelled, then drains.
///
/// At most `limits.max_connections` (see [`ConnectionLimits::effective_max_connections`])
/// are open: at the bound the loop stops accepting until one closes, and new
/// connections wait in the kernel's listen backlog.
pub async fn serve(listener: TcpListener, api: Api, limits: ConnectionLimits) {
    let bound = limits.effective_max_connections();
    let slots = Arc::new(Semaphore::new(bound));
    let shutdown = api.shutdown.clone();
    let stats = api.connections.clone();
    let shared = Arc::new(connection::Shared {
        builder: connection::builder(&limits),
        api,
        limits,
    });
    let mut connections = JoinSet::new();
    let mut warned: Option<Instant> = None;
    loop {
        while connections.try_join_next().is_some() {}
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                stats.at_limit();
                if warned.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = bound,
                        "at the connection bound: not accepting until a connection closes (new ones wait in the listen backlog)"
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection::serve(stream, peer, shared.clone(), slot));
    }
    drop(listener);
    // Each connection shuts down gracefully on its own and gets DRAIN to finish.
    let drained = tokio::time::timeout(DRAIN + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    connections.shutdown().await;
}
