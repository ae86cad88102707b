//! The parts of a running sidecar that start-up builds and a reload swaps: the
//! configuration in force, the two listeners and the sockets they accept on, the
//! span exporter. [`crate::sidecar`] assembles them once; [`super::Reloader`]
//! changes them; both bind and start through the helpers here, so a listen
//! address or an exporter fails the same way at start-up and on a reload.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use meshtrace_config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::drain::Drain;
use crate::listen;
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::stack::Listener;
use crate::target::{ByDirection, Direction};
use crate::telemetry::{ExportError, Telemetry};

/// Why the sidecar (or a part a reload starts) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot bind the {listener} listener on {addr}: {error}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// Its configured address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// The span exporter could not be built.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// Everything a running sidecar shares between its accept loops, its admin
/// server, its reloads and its shutdown.
pub(crate) struct Running {
    /// The configuration in force (the admin `/config` reads it too).
    pub(crate) config: Arc<ArcSwap<Config>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) migration: Arc<Migration>,
    /// The sampling routes both listeners share.
    pub(crate) adaptive: Arc<crate::adaptive::Adaptive>,
    pub(crate) listeners: ByDirection<Arc<Listener>>,
    pub(crate) bound: Mutex<ByDirection<Bound>>,
    pub(crate) admin: SocketAddr,
    /// The bound health address (`admin.health_listen`), if any.
    pub(crate) health: Option<SocketAddr>,
    /// The bound metrics address (`admin.metrics_listen`), if any.
    pub(crate) metrics_port: Option<SocketAddr>,
    pub(crate) drain: Drain,
    pub(crate) telemetry: Mutex<Telemetry>,
    /// One reload at a time.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    /// Announces every applied config (tests and tools wait on it).
    pub(crate) applied: tokio::sync::watch::Sender<Arc<Config>>,
}

/// One listener's socket and accept loop.
pub(crate) struct Bound {
    /// The address it is bound to (port 0 resolved).
    pub(crate) local: SocketAddr,
    /// The configured address.
    pub(crate) configured: SocketAddr,
    /// Stops its accept loop.
    pub(crate) stop: CancellationToken,
}

// === impl Running ===

impl Running {
    /// The bound sockets (a panic elsewhere cannot leave them half-written).
    pub(crate) fn bound(&self) -> MutexGuard<'_, ByDirection<Bound>> {
        self.bound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The span exporter in force.
    pub(crate) fn telemetry(&self) -> MutexGuard<'_, Telemetry> {
        self.telemetry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Bound ===

impl Bound {
    /// Starts `listener`'s accept loop on `socket`, bound for `configured`.
    pub(crate) fn serve(
        listener: &Arc<Listener>,
        socket: TcpListener,
        configured: SocketAddr,
    ) -> Self {
        let local = socket.local_addr().unwrap_or(configured);
        let stop = CancellationToken::new();
        tokio::spawn(listener.clone().accept_loop(socket, stop.clone()));
        Self {
            local,
            configured,
            stop,
        }
    }
}

/// Binds `direction`'s listener (or the admin server's, as `name`).
pub(crate) fn bind(
    name: &'static str,
    addr: SocketAddr,
    backlog: u32,
) -> Result<TcpListener, StartError> {
    listen::bind(addr, backlog).map_err(|error| StartError::Bind {
        listener: name,
        addr,
        error,
    })
}

/// Where `config` wants each listener.
pub(crate) fn listen_addrs(config: &Config) -> ByDirection<SocketAddr> {
    ByDirection::from_fn(|direction| match direction {
        Direction::Inbound => config.inbound.listen,
        Direction::Outbound => config.outbound.listen,
    })
}

/// Starts the span exporter for `config`. The export settings were resolved when
/// the config was loaded; the process environment still supplies what is not
/// config (`OTEL_SDK_DISABLED`, resource attributes, the semconv opt-in).
pub(crate) fn start_telemetry(config: &Config, metrics: &Metrics) -> Result<Telemetry, StartError> {
    Ok(Telemetry::start(config, metrics, &|name| {
        std::env::var(name).ok()
    })?)
}
