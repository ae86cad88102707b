//! The configuration a proxy process runs with, as a YAML file in the temporary
//! directory (no extra crate: a unique name and removal on drop suffice).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use meshtrace_config::Config;

/// The YAML config in the temporary directory; removed when dropped.
#[derive(Debug)]
pub(super) struct ConfigFile(PathBuf);

// === impl ConfigFile ===

impl ConfigFile {
    /// Writes `config` to a file named after this process and a counter.
    pub(super) fn write(config: &Config) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "meshtrace-test-{}-{}.yaml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, config.to_yaml())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        Self(path)
    }

    /// Where the file is, for `--config`.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
