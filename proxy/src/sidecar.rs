//! Starting and stopping a whole sidecar: bind every listener, serve, drain.
//!
//! [`Sidecar::start`] assembles the running parts ([`crate::reload`]'s
//! `Running`): the listeners of [`crate::stack`], the admin server, the span
//! exporter, and, with `control.url`, the control-plane watch. Everything that
//! changes a running sidecar afterwards goes through its [`Reloader`]; stopping
//! is a drain ([`Sidecar::wait`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use meshtrace_config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::adaptive::Adaptive;
use crate::admin::{self, AdminState};
use crate::drain::Drain;
use crate::health::{self, Port};
use crate::http::upstream::Upstreams;
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::reload::running::{self, Bound, Running};
use crate::reload::{control_plane, Reloader, StartError};
use crate::stack::{Listener, ListenerParts};
use crate::target::{ByDirection, Direction};

/// A running sidecar. Dropping it starts a drain and stops the admin server.
pub struct Sidecar {
    running: Arc<Running>,
    admin_stop: CancellationToken,
}

/// Starts the admin server and the pod-reachable ports (health, metrics) that
/// are bound; all stop with `stop`.
fn serve_admin(
    admin: TcpListener,
    ports: [(Port, Option<TcpListener>); 2],
    state: &Arc<AdminState>,
    stop: &CancellationToken,
) {
    tokio::spawn(admin::serve(admin, state.clone(), stop.clone()));
    for (port, listener) in ports {
        if let Some(listener) = listener {
            tokio::spawn(health::serve(listener, state.clone(), stop.clone(), port));
        }
    }
}

// === impl Sidecar ===

impl Sidecar {
    /// Binds every listener (port 0 picks a free one) and starts serving. With
    /// `control.url` set, it also starts watching the control plane.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        crate::reload::apply::log_warnings(&config);
        let config = Arc::new(config);
        let backlog = config.limits.backlog;
        let configured = running::listen_addrs(&config);
        let sockets = ByDirection::try_from_fn(|direction| {
            running::bind(direction.as_str(), *configured.get(direction), backlog)
        })?;
        let admin = running::bind("admin", config.admin.listen, backlog)?;
        let admin_addr = admin.local_addr().unwrap_or(config.admin.listen);
        let health = bind_optional(Port::Health, config.admin.health_listen, backlog)?;
        let metrics_port = bind_optional(Port::Metrics, config.admin.metrics_listen, backlog)?;
        let (health_addr, metrics_addr) = (local_addr(&health), local_addr(&metrics_port));

        let metrics = Metrics::new();
        metrics.config_in_force(config.propagation.stage, 0, true);
        let drain = Drain::default();
        let telemetry = running::start_telemetry(&config, &metrics)?;
        let shared_config = Arc::new(ArcSwap::new(config.clone()));
        let state = Arc::new(AdminState {
            metrics: metrics.clone(),
            config: shared_config.clone(),
            drain: drain.clone(),
            ready: AtomicBool::new(false),
        });
        let admin_stop = CancellationToken::new();
        serve_admin(
            admin,
            [(Port::Health, health), (Port::Metrics, metrics_port)],
            &state,
            &admin_stop,
        );
        let migration = Arc::new(Migration::new(&metrics));
        let upstreams = Upstreams::new(config.timeouts.connect.get(), config.timeouts.idle.get());
        let adaptive = Adaptive::new(&config, metrics.clone());
        adaptive.spawn(&drain);
        let listeners = ByDirection::from_fn(|direction| {
            let parts = ListenerParts {
                upstreams: upstreams.clone(),
                metrics: metrics.clone(),
                migration: migration.clone(),
                adaptive: adaptive.clone(),
                spans: telemetry.recorder.clone(),
                drain: drain.clone(),
                orig_dst: Arc::new(crate::orig_dst::Kernel),
            };
            Listener::from_parts(direction, config.clone(), parts)
        });
        let bound = sockets.map(|direction, socket| {
            Bound::serve(listeners.get(direction), socket, *configured.get(direction))
        });
        state.ready.store(true, Ordering::Release);
        log_ready(&bound, admin_addr, health_addr, metrics_addr);
        let running = Arc::new(Running {
            config: shared_config,
            metrics,
            migration,
            adaptive,
            listeners,
            bound: std::sync::Mutex::new(bound),
            admin: admin_addr,
            health: health_addr,
            metrics_port: metrics_addr,
            drain,
            telemetry: std::sync::Mutex::new(telemetry),
            reloading: tokio::sync::Mutex::new(()),
            applied: tokio::sync::watch::Sender::new(config.clone()),
        });
        let sidecar = Self {
            running,
            admin_stop,
        };
        control_plane::spawn(sidecar.reloader(), &config);
        Ok(sidecar)
    }

    fn bound(&self, direction: Direction) -> SocketAddr {
        self.running.bound().get(direction).local
    }

    /// The bound inbound address.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.bound(Direction::Inbound)
    }

    /// The bound outbound address.
    pub fn outbound_addr(&self) -> SocketAddr {
        self.bound(Direction::Outbound)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin
    }

    /// The bound health address, if the health port is on.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.running.health
    }

    /// The bound metrics address, if the metrics port is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running.metrics_port
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.running.config.load_full()
    }

    /// A handle that applies new configurations.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(self.running.clone())
    }

    /// A handle that can start the drain from elsewhere (a signal handler).
    pub fn drain_handle(&self) -> Drain {
        self.running.drain.clone()
    }

    /// Starts a graceful drain, like SIGTERM.
    pub fn shutdown(&self) {
        self.running.drain.start();
    }

    /// Waits for a drain to start (by [`shutdown`](Self::shutdown), `/shutdown`
    /// or a signal) and finish, then flushes queued spans. True when every
    /// connection finished within `timeouts.drain`.
    pub async fn wait(self) -> bool {
        let timeout = self.running.config.load().timeouts.drain.get();
        let drained = self.running.drain.wait(timeout).await;
        let telemetry = std::mem::take(&mut *self.running.telemetry());
        telemetry.flush().await;
        tracing::info!(drained, "sidecar stopped");
        drained
    }
}

/// Binds a pod-reachable port if it is configured.
/// The start-up line with every bound address.
fn log_ready(
    bound: &ByDirection<Bound>,
    admin: SocketAddr,
    health: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) {
    tracing::info!(
        "sidecar ready inbound={} outbound={} admin={} health={} metrics={}",
        bound.inbound.local,
        bound.outbound.local,
        admin,
        shown(health),
        shown(metrics),
    );
}

fn bind_optional(
    port: Port,
    addr: Option<SocketAddr>,
    backlog: u32,
) -> Result<Option<TcpListener>, StartError> {
    addr.map(|addr| running::bind(port.name(), addr, backlog))
        .transpose()
}

fn local_addr(listener: &Option<TcpListener>) -> Option<SocketAddr> {
    listener.as_ref().and_then(|l| l.local_addr().ok())
}

fn shown(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "none".to_string(), |addr| addr.to_string())
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.running.drain.start();
        self.admin_stop.cancel();
    }
}
