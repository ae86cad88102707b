//! Local file mode: without `control.url`, the `--config` file is the source of
//! new configurations.
//!
//! The file is polled every `control.file_poll` rather than watched with inotify,
//! because Kubernetes updates a mounted ConfigMap by swapping symlinks, which
//! file watches miss. Each poll reads the file once; the same bytes serve for
//! change detection and loading, so what is applied is what was compared. A
//! changed file is loaded like at start-up (the environment applied, `OTEL_*`
//! included) and applied; one that does not load is reported, counted in
//! `meshtrace_config_reloads_total{source="file",result="rejected"}` and ignored.
//!
//! An empty file (nothing but whitespace or comments) is rejected like any
//! invalid one: it is what a truncated or half-written file looks like (`echo
//! ... > file` truncates first), and taking it for the embedded default would
//! move the listeners to the default ports. A half-written file that still
//! parses cannot be told from a real change, so the file must be replaced
//! atomically (write a temporary file, then rename it over the old one), as
//! Kubernetes does for ConfigMap volumes.

use std::path::PathBuf;
use std::time::Duration;

use meshtrace_config::Config;

use super::apply::Reloader;
use crate::metrics::ReloadSource;

/// Applies `path` whenever its content differs from the last seen, starting
/// from `started_with`: the bytes the running config was loaded from. (Reading
/// the file again here would take a change written since start-up for the
/// running config, and miss it until the next change.)
pub fn watch_file(reloader: Reloader, path: PathBuf, started_with: Vec<u8>, poll: Duration) {
    reloader.metrics().reload_source_started(ReloadSource::File);
    let mut source = FileSource::new(path, started_with);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            source.poll(&reloader).await;
        }
    });
}

/// The watched file and the content last seen in it.
struct FileSource {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

/// What one poll did.
#[derive(Debug, PartialEq, Eq)]
enum Polled {
    /// The file could not be read (mid symlink swap, say); tried again next tick.
    Unreadable,
    /// The content is what was last seen.
    Unchanged,
    /// The new content is in force.
    Applied,
    /// The new content did not load or apply; the running config stays.
    Rejected,
}

// === impl FileSource ===

impl FileSource {
    /// Starts from the content the sidecar's config was loaded from.
    fn new(path: PathBuf, started_with: Vec<u8>) -> Self {
        Self {
            path,
            last: Some(started_with),
        }
    }

    /// Reads the file once and, if it changed, loads and applies that content.
    async fn poll(&mut self, reloader: &Reloader) -> Polled {
        let Ok(content) = tokio::fs::read(&self.path).await else {
            return Polled::Unreadable;
        };
        if self.last.as_deref() == Some(content.as_slice()) {
            return Polled::Unchanged;
        }
        let path = self.path.display().to_string();
        let loaded = Config::from_file_content(&content, &path);
        self.last = Some(content);
        let polled = match loaded {
            Ok(config) => match reloader.apply(config).await {
                Ok(()) => {
                    tracing::info!(%path, "config file reloaded");
                    Polled::Applied
                }
                Err(error) => {
                    tracing::warn!(%path, %error, "config file rejected; the running config stays");
                    Polled::Rejected
                }
            },
            Err(error) => {
                tracing::warn!(%error, "config file does not load; the running config stays");
                Polled::Rejected
            }
        };
        reloader
            .metrics()
            .config_reload(ReloadSource::File, polled == Polled::Applied);
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::Sidecar;
    use crate::test_support::config;

    /// A directory of this test's own, removed when dropped.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A sidecar on loopback ports, watching a file (in a directory named after
    /// the test) that holds its config.
    async fn watched(test: &str) -> (Sidecar, FileSource, TempDir) {
        let running = config(|c| {
            c.inbound.listen = "127.0.0.1:0".parse().unwrap();
            c.outbound.listen = "127.0.0.1:0".parse().unwrap();
            c.admin.listen = "127.0.0.1:0".parse().unwrap();
        });
        let dir = std::env::temp_dir().join(format!("meshtrace-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sidecar.yaml");
        let content = running.to_yaml().into_bytes();
        std::fs::write(&path, &content).unwrap();
        let sidecar = Sidecar::start(running).await.unwrap();
        let source = FileSource::new(path, content);
        (sidecar, source, TempDir(dir))
    }

    /// `meshtrace_config_reloads_total{source="file",result}` as rendered.
    fn reloads(sidecar: &Sidecar, result: &str) -> u64 {
        let series =
            format!(r#"meshtrace_config_reloads_total{{source="file",result="{result}"}} "#);
        let text = sidecar.reloader().metrics().render();
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |n| n.parse().unwrap())
    }

    #[tokio::test]
    async fn a_changed_file_is_applied_and_counted() {
        let (sidecar, mut source, _dir) = watched("file-changed").await;
        let mut next = sidecar.config().as_ref().clone();
        next.sampling.default_rate = 0.25;
        std::fs::write(&source.path, next.to_yaml()).unwrap();
        assert_eq!(source.poll(&sidecar.reloader()).await, Polled::Applied);
        assert_eq!(sidecar.config().sampling.default_rate, 0.25);
        assert_eq!(source.poll(&sidecar.reloader()).await, Polled::Unchanged);
        assert_eq!(reloads(&sidecar, "applied"), 1);
    }

    /// A change written after the sidecar loaded its file but before the
    /// watcher's task first ran is applied. (The watcher used to read the file
    /// again when its task started and take such a change for the running
    /// config: it stayed unapplied until the file changed once more.)
    #[tokio::test]
    async fn a_change_written_while_the_sidecar_starts_is_applied() {
        let (sidecar, source, _dir) = watched("file-early-change").await;
        let mut next = sidecar.config().as_ref().clone();
        next.sampling.default_rate = 0.25;
        std::fs::write(&source.path, next.to_yaml()).unwrap();
        let mut applied = sidecar.reloader().subscribe();
        let started_with = source.last.unwrap();
        watch_file(
            sidecar.reloader(),
            source.path.clone(),
            started_with,
            Duration::from_millis(5),
        );
        let changed = applied.wait_for(|c| c.sampling.default_rate == 0.25);
        tokio::time::timeout(Duration::from_secs(10), changed)
            .await
            .expect("the change is applied within 10 s")
            .unwrap();
    }

    #[tokio::test]
    async fn a_truncated_file_keeps_the_running_config() {
        let (sidecar, mut source, _dir) = watched("file-truncated").await;
        let before = sidecar.config();
        let inbound = sidecar.inbound_addr();
        for emptied in ["", "  \n", "# being rewritten\n---\n"] {
            std::fs::write(&source.path, emptied).unwrap();
            assert_eq!(source.poll(&sidecar.reloader()).await, Polled::Rejected);
            assert_eq!(sidecar.config(), before, "the running config stays");
            assert_eq!(sidecar.inbound_addr(), inbound, "the listener stays");
            // Back to the original, so the next emptying is a change again.
            std::fs::write(&source.path, before.to_yaml()).unwrap();
            source.poll(&sidecar.reloader()).await;
        }
        assert_eq!(reloads(&sidecar, "rejected"), 3);
    }
}
