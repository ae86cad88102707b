//! Accepting connections: HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on one port.
//!
//! On shutdown the listener closes, every watch stream ends (sidecars reconnect to
//! another replica or retry), and in-flight requests get [`DRAIN`] to finish.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::auth::Token;
use crate::reports::Reports;
use crate::sidecars::Sidecars;
use crate::state::StateFile;
use crate::store::{Store, StoreOptions};

/// How long in-flight requests may take after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(5);

/// What `meshtrace-control serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The source YAML file.
    pub source: PathBuf,
    /// The state file.
    pub state: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The write token.
    pub token: Token,
    /// How often the source file is polled.
    pub poll_interval: Duration,
    /// The longest an incident override may last.
    pub max_override_duration: Duration,
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
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// Ends when the server has shut down.
    pub task: tokio::task::JoinHandle<()>,
}

/// Opens the state, binds, and starts serving in the background.
pub async fn start(config: ServeConfig) -> Result<Server, String> {
    let source = config.source.clone();
    let state = StateFile::new(config.state.clone());
    let options = StoreOptions {
        max_override_duration: config.max_override_duration,
    };
    let store = tokio::task::spawn_blocking(move || Store::open_with(&source, state, options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    store.spawn_background(config.poll_interval, shutdown.clone());
    let api = Api {
        store: store.clone(),
        sidecars: Sidecars::default(),
        reports: Reports::default(),
        token: Arc::new(config.token),
        shutdown: shutdown.clone(),
    };
    let (sidecars, reports) = (api.sidecars.clone(), api.reports.clone());
    let task = tokio::spawn(serve(listener, api));
    tracing::info!(%addr, "control plane listening");
    Ok(Server {
        addr,
        store,
        sidecars,
        reports,
        shutdown,
        task,
    })
}

/// Serves connections until `api.shutdown` is cancelled, then drains.
pub async fn serve(listener: TcpListener, api: Api) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = api.shutdown.cancelled() => break,
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
        let api = api.clone();
        let service = service_fn(move |req| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    connections.shutdown().await;
}
