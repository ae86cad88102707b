//! Starting and stopping a whole sidecar: bind every listener, serve, drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use meshtrace_config::Config;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::drain::Drain;
use crate::http::upstream::Upstreams;
use crate::listen;
use crate::metrics::Metrics;
use crate::stack::Listener;
use crate::target::Direction;
use crate::telemetry::{ExportError, Telemetry};

/// Why the sidecar could not start.
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

/// A running sidecar. Dropping it starts a drain and stops the admin server.
pub struct Sidecar {
    inbound: SocketAddr,
    outbound: SocketAddr,
    admin: SocketAddr,
    drain: Drain,
    admin_stop: CancellationToken,
    config: Arc<Config>,
    telemetry: Telemetry,
}

// === impl Sidecar ===

impl Sidecar {
    /// Binds every listener (port 0 picks a free one) and starts serving.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let config = Arc::new(config);
        let backlog = config.limits.backlog;
        let bind = |listener: &'static str, addr: SocketAddr| {
            listen::bind(addr, backlog).map_err(|error| StartError::Bind {
                listener,
                addr,
                error,
            })
        };
        let inbound = bind("inbound", config.inbound.listen)?;
        let outbound = bind("outbound", config.outbound.listen)?;
        let admin = bind("admin", config.admin.listen)?;
        let local = |l: &tokio::net::TcpListener, addr: SocketAddr| l.local_addr().unwrap_or(addr);
        let addrs = (
            local(&inbound, config.inbound.listen),
            local(&outbound, config.outbound.listen),
            local(&admin, config.admin.listen),
        );

        let metrics = Metrics::new();
        let telemetry = Telemetry::start(&config, &metrics, &|name| std::env::var(name).ok())?;
        let drain = Drain::default();
        let upstreams = Upstreams::new(config.timeouts.connect.get(), config.timeouts.idle.get());
        let state = Arc::new(AdminState {
            metrics: metrics.clone(),
            config: config.clone(),
            drain: drain.clone(),
            ready: AtomicBool::new(false),
        });
        let admin_stop = CancellationToken::new();
        tokio::spawn(admin::serve(admin, state.clone(), admin_stop.clone()));
        for (direction, listener) in [
            (Direction::Inbound, inbound),
            (Direction::Outbound, outbound),
        ] {
            let shared = Listener::new(
                direction,
                config.clone(),
                upstreams.clone(),
                &metrics,
                telemetry.recorder.clone(),
                drain.clone(),
            );
            tokio::spawn(shared.accept_loop(listener));
        }
        state.ready.store(true, Ordering::Release);
        tracing::info!(
            "sidecar ready inbound={} outbound={} admin={}",
            addrs.0,
            addrs.1,
            addrs.2
        );
        Ok(Self {
            inbound: addrs.0,
            outbound: addrs.1,
            admin: addrs.2,
            drain,
            admin_stop,
            config,
            telemetry,
        })
    }

    /// The bound inbound address.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.inbound
    }

    /// The bound outbound address.
    pub fn outbound_addr(&self) -> SocketAddr {
        self.outbound
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A handle that can start the drain from elsewhere (a signal handler).
    pub fn drain_handle(&self) -> Drain {
        self.drain.clone()
    }

    /// Starts a graceful drain, like SIGTERM.
    pub fn shutdown(&self) {
        self.drain.start();
    }

    /// Waits for a drain to start (by [`shutdown`](Self::shutdown), `/shutdown`
    /// or a signal) and finish. True when every connection finished within
    /// `timeouts.drain`.
    pub async fn wait(mut self) -> bool {
        let drained = self.drain.wait(self.config.timeouts.drain.get()).await;
        std::mem::take(&mut self.telemetry).flush().await;
        tracing::info!(drained, "sidecar stopped");
        drained
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.drain.start();
        self.admin_stop.cancel();
    }
}
