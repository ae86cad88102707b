//! Starting, reloading and stopping a whole sidecar: bind every listener, serve,
//! apply new configurations atomically, drain.
//!
//! # Reload
//!
//! [`Reloader::apply`] takes a whole new configuration (from the control plane,
//! the watched config file, or the start-up cache), validates it, and swaps it in:
//! propagation, sampling, spans and routes apply from the next request (on open
//! connections too), connection-level settings (destinations, opaque ports,
//! detection, header limits) from the next connection. A changed listen address is
//! bound first — a bind failure rejects the whole config — then the old listener
//! stops accepting while its connections finish. Changed export settings start a
//! new exporter; the old one flushes in the background.
//!
//! Settings fixed at start-up keep their running values whatever a new config
//! says (a restart applies them): `control`, `admin`, `runtime`, `log.format`,
//! `log.level`, `limits.backlog`, `limits.max_connections`, `timeouts.connect`,
//! `timeouts.idle`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use meshtrace_config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::drain::Drain;
use crate::http::upstream::Upstreams;
use crate::listen;
use crate::metrics::Metrics;
use crate::migration::Migration;
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

/// Why a new configuration was rejected (the running one stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// It failed validation; every problem is listed.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// A new listen address could not be bound.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The sidecar is shutting down.
    #[error("the sidecar is shutting down")]
    Draining,
}

/// A running sidecar. Dropping it starts a drain and stops the admin server.
pub struct Sidecar {
    inner: Arc<Inner>,
    admin_stop: CancellationToken,
}

/// A handle that applies new configurations to a running sidecar; cheap to clone.
#[derive(Clone)]
pub struct Reloader(Arc<Inner>);

struct Inner {
    config: Arc<ArcSwap<Config>>,
    metrics: Arc<Metrics>,
    migration: Arc<Migration>,
    /// Inbound, outbound.
    listeners: [Arc<Listener>; 2],
    bound: Mutex<[Bound; 2]>,
    admin: SocketAddr,
    drain: Drain,
    telemetry: Mutex<Telemetry>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Announces every applied config (tests and tools wait on it).
    applied: tokio::sync::watch::Sender<Arc<Config>>,
}

/// One bound listener.
struct Bound {
    /// The address it is bound to (port 0 resolved).
    local: SocketAddr,
    /// The configured address.
    configured: SocketAddr,
    /// Stops its accept loop.
    stop: CancellationToken,
}

const NAMES: [&str; 2] = ["inbound", "outbound"];
const DIRECTIONS: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

fn bind(listener: &'static str, addr: SocketAddr, backlog: u32) -> Result<TcpListener, StartError> {
    listen::bind(addr, backlog).map_err(|error| StartError::Bind {
        listener,
        addr,
        error,
    })
}

fn listen_addrs(config: &Config) -> [SocketAddr; 2] {
    [config.inbound.listen, config.outbound.listen]
}

// === impl Sidecar ===

impl Sidecar {
    /// Binds every listener (port 0 picks a free one) and starts serving. With
    /// `control.url` set, it also starts watching the control plane.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let config = Arc::new(config);
        let backlog = config.limits.backlog;
        let sockets = [
            bind(NAMES[0], config.inbound.listen, backlog)?,
            bind(NAMES[1], config.outbound.listen, backlog)?,
        ];
        let admin = bind("admin", config.admin.listen, backlog)?;
        let admin_addr = admin.local_addr().unwrap_or(config.admin.listen);

        let metrics = Metrics::new();
        let drain = Drain::default();
        let telemetry = Telemetry::start(&config, &metrics, &|name| std::env::var(name).ok())?;
        let upstreams = Upstreams::new(config.timeouts.connect.get(), config.timeouts.idle.get());
        let shared_config = Arc::new(ArcSwap::new(config.clone()));
        let state = Arc::new(AdminState {
            metrics: metrics.clone(),
            config: shared_config.clone(),
            drain: drain.clone(),
            ready: AtomicBool::new(false),
        });
        let admin_stop = CancellationToken::new();
        tokio::spawn(admin::serve(admin, state.clone(), admin_stop.clone()));
        let migration = Arc::new(Migration::new(&metrics));
        let listeners = DIRECTIONS.map(|direction| {
            Listener::new(
                direction,
                config.clone(),
                upstreams.clone(),
                &metrics,
                migration.clone(),
                telemetry.recorder.clone(),
                drain.clone(),
            )
        });
        let configured = listen_addrs(&config);
        let mut bound = Vec::with_capacity(2);
        for (i, socket) in sockets.into_iter().enumerate() {
            let local = socket.local_addr().unwrap_or(configured[i]);
            let stop = CancellationToken::new();
            tokio::spawn(listeners[i].clone().accept_loop(socket, stop.clone()));
            bound.push(Bound {
                local,
                configured: configured[i],
                stop,
            });
        }
        let bound: [Bound; 2] = match bound.try_into() {
            Ok(bound) => bound,
            Err(_) => unreachable!("two listeners were bound"),
        };
        state.ready.store(true, Ordering::Release);
        tracing::info!(
            "sidecar ready inbound={} outbound={} admin={}",
            bound[0].local,
            bound[1].local,
            admin_addr
        );
        let inner = Arc::new(Inner {
            config: shared_config,
            metrics,
            migration,
            listeners,
            bound: Mutex::new(bound),
            admin: admin_addr,
            drain,
            telemetry: Mutex::new(telemetry),
            reloading: tokio::sync::Mutex::new(()),
            applied: tokio::sync::watch::Sender::new(config.clone()),
        });
        let sidecar = Self { inner, admin_stop };
        if config.control.url.is_some() {
            crate::control::spawn(sidecar.reloader(), &config);
        }
        Ok(sidecar)
    }

    fn bound(&self, i: usize) -> SocketAddr {
        self.inner
            .bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[i]
            .local
    }

    /// The bound inbound address.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.bound(0)
    }

    /// The bound outbound address.
    pub fn outbound_addr(&self) -> SocketAddr {
        self.bound(1)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.inner.admin
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    /// A handle that applies new configurations.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.inner.clone())
    }

    /// A handle that can start the drain from elsewhere (a signal handler).
    pub fn drain_handle(&self) -> Drain {
        self.inner.drain.clone()
    }

    /// Starts a graceful drain, like SIGTERM.
    pub fn shutdown(&self) {
        self.inner.drain.start();
    }

    /// Waits for a drain to start (by [`shutdown`](Self::shutdown), `/shutdown`
    /// or a signal) and finish, then flushes queued spans. True when every
    /// connection finished within `timeouts.drain`.
    pub async fn wait(self) -> bool {
        let timeout = self.inner.config.load().timeouts.drain.get();
        let drained = self.inner.drain.wait(timeout).await;
        let telemetry = std::mem::take(
            &mut *self
                .inner
                .telemetry
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        telemetry.flush().await;
        tracing::info!(drained, "sidecar stopped");
        drained
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.inner.drain.start();
        self.admin_stop.cancel();
    }
}

// === impl Reloader ===

impl Reloader {
    /// Validates `config` and swaps it in (see the [module docs](self)). On error
    /// nothing changed.
    pub async fn apply(&self, config: Config) -> Result<(), ReloadError> {
        let inner = &self.0;
        let _one_at_a_time = inner.reloading.lock().await;
        if inner.drain.is_draining() {
            return Err(ReloadError::Draining);
        }
        let problems = config.problems();
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(ReloadError::Invalid(list.join("; ")));
        }
        let old = inner.config.load_full();
        let config = Arc::new(keep_startup_settings(config, &old));
        if *config == *old {
            return Ok(());
        }

        // Bind changed listen addresses first: a failure rejects the config.
        let wanted = listen_addrs(&config);
        let mut rebinds = Vec::new();
        {
            let bound = inner.bound.lock().unwrap_or_else(PoisonError::into_inner);
            for i in 0..2 {
                if bound[i].configured != wanted[i] {
                    rebinds.push((i, wanted[i]));
                }
            }
        }
        let mut sockets = Vec::new();
        for (i, addr) in rebinds {
            let socket = bind(NAMES[i], addr, config.limits.backlog)?;
            sockets.push((i, addr, socket));
        }

        // A new exporter when anything the spans depend on changed.
        let spans_changed = config.export != old.export
            || config.spans != old.spans
            || config.sampling.tail != old.sampling.tail
            || config.workload != old.workload;
        let recorder = if spans_changed {
            let fresh = Telemetry::start(&config, &inner.metrics, &|name| std::env::var(name).ok())
                .map_err(StartError::from)?;
            let recorder = fresh.recorder.clone();
            let previous = std::mem::replace(
                &mut *inner
                    .telemetry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
                fresh,
            );
            tokio::spawn(previous.flush());
            recorder
        } else {
            inner
                .telemetry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recorder
                .clone()
        };

        for listener in &inner.listeners {
            listener.reload(config.clone(), recorder.clone());
        }
        for (i, addr, socket) in sockets {
            let local = socket.local_addr().unwrap_or(addr);
            let stop = CancellationToken::new();
            tokio::spawn(inner.listeners[i].clone().accept_loop(socket, stop.clone()));
            let old = std::mem::replace(
                &mut inner.bound.lock().unwrap_or_else(PoisonError::into_inner)[i],
                Bound {
                    local,
                    configured: addr,
                    stop,
                },
            );
            old.stop.cancel();
            tracing::info!(listener = NAMES[i], from = %old.local, to = %local, "listener moved");
        }
        inner.config.store(config.clone());
        inner.applied.send_replace(config);
        Ok(())
    }

    /// Resolves when the sidecar starts shutting down.
    pub async fn draining(&self) {
        self.0.drain.signaled().await;
    }

    /// A receiver that sees every config applied from now on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Config>> {
        self.0.applied.subscribe()
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.0.config.load_full()
    }

    /// The migration counts, for reports to the control plane.
    pub fn migration(&self) -> &Migration {
        &self.0.migration
    }
}

/// `config` with the settings that only a restart changes taken from `running`
/// (a warning names any that differed).
fn keep_startup_settings(mut config: Config, running: &Config) -> Config {
    let mut ignored = Vec::new();
    macro_rules! keep {
        ($($field:ident).+) => {
            if config.$($field).+ != running.$($field).+ {
                ignored.push(stringify!($($field).+));
                config.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    // Never pushed: the control plane connection itself.
    config.control = running.control.clone();
    keep!(admin);
    keep!(runtime);
    keep!(log.format);
    keep!(log.level);
    keep!(limits.backlog);
    keep!(limits.max_connections);
    keep!(timeouts.connect);
    keep!(timeouts.idle);
    if !ignored.is_empty() {
        tracing::warn!(settings = ?ignored, "these settings change only on restart; keeping the running values");
    }
    config
}
