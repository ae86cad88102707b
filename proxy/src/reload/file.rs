//! Local file mode: without `control.url`, the `--config` file is the source of
//! new configurations.
//!
//! The file is polled every `control.file_poll` rather than watched with inotify,
//! because Kubernetes updates a mounted ConfigMap by swapping symlinks, which
//! file watches miss. A changed file is loaded like at start-up (the environment
//! applied, `OTEL_*` included) and applied; one that does not load is reported
//! and ignored.

use std::path::PathBuf;
use std::time::Duration;

use meshtrace_config::Config;

use super::apply::Reloader;

/// Applies `path` whenever its content changes.
pub fn watch_file(reloader: Reloader, path: PathBuf, poll: Duration) {
    tokio::spawn(async move {
        let mut last = std::fs::read(&path).ok();
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Ok(now) = std::fs::read(&path) else {
                continue;
            };
            if last.as_deref() == Some(now.as_slice()) {
                continue;
            }
            last = Some(now);
            match Config::from_file(&path) {
                Ok(config) => match reloader.apply(config).await {
                    Ok(()) => tracing::info!(path = %path.display(), "config file reloaded"),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "config file rejected; the running config stays")
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "config file does not load; the running config stays")
                }
            }
        }
    });
}
