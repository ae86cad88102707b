//! The disk cache of the last config the control plane pushed, so a sidecar
//! restarting while the control plane is down starts with its last good config.
//!
//! Every applied push is written to `control.cache_file` atomically (`store`);
//! at start-up, with a control plane configured, [`startup_config`] prefers that
//! file (completed by [`local_view`]) over the local one. An unreadable or invalid
//! cache is reported and the local config used.

use std::path::Path;

use meshtrace_config::Config;

use super::local::local_view;

/// The config to start with: with a control plane and a cached last good config,
/// the cache (in [`local_view`]); otherwise `local`.
pub fn startup_config(local: Config) -> Config {
    let (Some(_), Some(path)) = (&local.control.url, &local.control.cache_file) else {
        return local;
    };
    let cached = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return local,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the cached config; starting from the local one");
            return local;
        }
    };
    let parsed = serde_yaml::from_str::<serde_json::Value>(&cached)
        .map_err(|e| e.to_string())
        .and_then(|value| local_view(value, &local));
    match parsed {
        Ok(config) => {
            tracing::info!(path = %path.display(), "starting from the cached control-plane config");
            config
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cached config unusable; starting from the local one");
            local
        }
    }
}

/// Caches an applied push in `control.cache_file`, if one is configured; a
/// failure is logged (the sidecar runs on, without a cache).
pub(crate) fn store(local: &Config, applied: &Config) {
    let Some(path) = &local.control.cache_file else {
        return;
    };
    if let Err(error) = write_atomically(path, applied.to_yaml().as_bytes()) {
        tracing::warn!(path = %path.display(), %error, "cannot cache the config");
    }
}

/// Writes `path` so that readers see the old or the new content, never a mix.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config")
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_push_is_the_startup_config() {
        let dir = std::env::temp_dir().join(format!("meshtrace-cache-{}", std::process::id()));
        let mut local = Config::default();
        local.control.url = Some("http://cp:15010".into());
        local.control.cache_file = Some(dir.join("last.yaml"));
        assert_eq!(startup_config(local.clone()), local, "no cache yet");
        let mut pushed = local.clone();
        pushed.sampling.default_rate = 0.25;
        store(&local, &pushed);
        assert_eq!(startup_config(local.clone()).sampling.default_rate, 0.25);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
