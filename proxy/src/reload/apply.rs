//! Applying a new configuration to a running sidecar, whatever its source: the
//! one place a config is validated, merged with the settings fixed at start-up,
//! and swapped in (see the [`reload`](super) module docs for the rules).

use std::net::SocketAddr;
use std::sync::Arc;

use meshtrace_config::Config;
use tokio::net::TcpListener;

use super::local;
use super::running::{self, Bound, Running, StartError};
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::target::Direction;
use crate::telemetry::Recorder;

/// Why a new configuration was rejected (the running one stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// It failed validation; every problem is listed.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// A new listen address could not be bound, or a new exporter not started.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The sidecar is shutting down.
    #[error("the sidecar is shutting down")]
    Draining,
}

/// Logs what is valid but cannot do what it seems to (`Config::warnings`): the
/// config runs as written.
pub(crate) fn log_warnings(config: &Config) {
    for warning in config.warnings() {
        tracing::warn!(path = %warning.path, "config: {}", warning.message);
    }
}

/// A handle that applies new configurations to a running sidecar; cheap to clone.
#[derive(Clone)]
pub struct Reloader(Arc<Running>);

/// A listener whose address changed, bound but not yet serving.
struct Moved {
    direction: Direction,
    addr: SocketAddr,
    socket: TcpListener,
}

// === impl Reloader ===

impl Reloader {
    pub(crate) fn new(running: Arc<Running>) -> Self {
        Self(running)
    }

    /// Validates `config` and swaps it in (see the [module docs](super)). On error
    /// nothing changed. The config's version is 0: it did not come from the
    /// control plane.
    pub async fn apply(&self, config: Config) -> Result<(), ReloadError> {
        self.apply_version(config, 0).await
    }

    /// [`Reloader::apply`] for a config the control plane numbered `version`:
    /// once it is in force (swapped in, or equal to the running one), the
    /// metrics show its version; a swap also sets the last reload time.
    pub async fn apply_version(&self, config: Config, version: u64) -> Result<(), ReloadError> {
        let running = &self.0;
        let _one_at_a_time = running.reloading.lock().await;
        if running.drain.is_draining() {
            return Err(ReloadError::Draining);
        }
        let problems = config.problems();
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(ReloadError::Invalid(list.join("; ")));
        }
        let old = running.config.load_full();
        let config = Arc::new(local::keep_startup_settings(config, &old));
        let stage = config.propagation.stage;
        if *config == *old {
            running.metrics.config_in_force(stage, version, false);
            return Ok(());
        }
        log_warnings(&config);
        // Bind changed listen addresses first: a failure rejects the config.
        let moved = self.bind_moved(&config)?;
        let recorder = self.recorder_for(&config, &old)?;
        running.adaptive.reload(&config);
        for (_, listener) in running.listeners.iter() {
            listener.reload(config.clone(), recorder.clone());
        }
        for moved in moved {
            self.serve_moved(moved);
        }
        running.config.store(config.clone());
        running.metrics.config_in_force(stage, version, true);
        running.applied.send_replace(config);
        Ok(())
    }

    /// Binds every listener whose configured address `config` changes.
    fn bind_moved(&self, config: &Config) -> Result<Vec<Moved>, StartError> {
        let wanted = running::listen_addrs(config);
        let changed: Vec<(Direction, SocketAddr)> = {
            let bound = self.0.bound();
            wanted
                .iter()
                .filter(|&(direction, addr)| bound.get(direction).configured != *addr)
                .map(|(direction, addr)| (direction, *addr))
                .collect()
        };
        changed
            .into_iter()
            .map(|(direction, addr)| {
                let socket = running::bind(direction.as_str(), addr, config.limits.backlog)?;
                Ok(Moved {
                    direction,
                    addr,
                    socket,
                })
            })
            .collect()
    }

    /// The span recorder for `config`: a new exporter when anything the spans
    /// depend on changed (the old one flushes in the background), else the
    /// running one.
    fn recorder_for(
        &self,
        config: &Config,
        old: &Config,
    ) -> Result<Option<Arc<Recorder>>, StartError> {
        let spans_changed = config.export != old.export
            || config.spans != old.spans
            || config.sampling.tail != old.sampling.tail
            || config.workload != old.workload;
        if !spans_changed {
            return Ok(self.0.telemetry().recorder.clone());
        }
        let fresh = running::start_telemetry(config, &self.0.metrics)?;
        let recorder = fresh.recorder.clone();
        let previous = std::mem::replace(&mut *self.0.telemetry(), fresh);
        tokio::spawn(previous.flush());
        Ok(recorder)
    }

    /// Starts accepting on a moved listener's new socket and stops the old one,
    /// whose connections finish on their own.
    fn serve_moved(&self, moved: Moved) {
        let Moved {
            direction,
            addr,
            socket,
        } = moved;
        let listener = self.0.listeners.get(direction);
        let fresh = Bound::serve(listener, socket, addr);
        let to = fresh.local;
        let old = std::mem::replace(self.0.bound().get_mut(direction), fresh);
        old.stop.cancel();
        tracing::info!(listener = direction.as_str(), from = %old.local, %to, "listener moved");
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

    /// The sidecar's metrics, where reload sources count their outcomes.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The sampling routes, for reports to the control plane and its shares.
    pub fn adaptive(&self) -> &crate::adaptive::Adaptive {
        &self.0.adaptive
    }

    /// The migration counts, for reports to the control plane.
    pub fn migration(&self) -> &Migration {
        &self.0.migration
    }
}
