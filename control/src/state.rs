//! The persisted state: what the API changed, kept across restarts, and where
//! it is kept ([`Backend`]): a local file (this module; local use, the demo) or
//! a Kubernetes ConfigMap shared by every replica ([`kubernetes`]).
//!
//! It holds the active overrides, the migration stage assignments, the
//! fleet-wide switches ([`Switches`]: boosts off), and the base document last
//! PUT/PATCHed through the API (with the hash of the source file it
//! replaced). It also records the version last published, for people reading
//! it: versions are derived from content ([`crate::version`]), so a restart
//! publishes the same version for the same state. The file is JSON, written
//! atomically: a temporary file in the same directory is written and fsynced,
//! renamed over the old one, and the directory is fsynced, so a crash leaves either
//! the old or the new state, never a torn one.
//!
//! A state file that exists but cannot be read is an error at start-up (the server
//! refuses to start rather than silently dropping overrides or reusing versions);
//! delete it to start afresh.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::overrides::{Override, Timestamp};
use crate::stages::StageAssignment;
use crate::switches::Switches;

pub mod kubernetes;

pub use self::kubernetes::{ConfigMapState, Stored};

/// Where the state is kept.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A local file (`serve --store file --state FILE`).
    File(StateFile),
    /// A ConfigMap shared by every replica (`serve --store kubernetes`).
    Kubernetes(Box<ConfigMapState>),
}

/// The persisted state.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct PersistedState {
    /// The version published for this state (informative: versions are
    /// derived from content, see [`crate::version`]).
    #[serde(default)]
    pub version: u64,
    /// Active overrides (expired ones are dropped on load).
    #[serde(default)]
    pub overrides: Vec<Override>,
    /// Migration stages set through the API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageAssignment>,
    /// The base document set through the API, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<ApiBase>,
    /// Fleet-wide switches (boosts off).
    #[serde(default, skip_serializing_if = "Switches::is_default")]
    pub switches: Switches,
}

/// A base document set through the API. It wins over the source file until the
/// file's content changes (last writer wins).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct ApiBase {
    /// The document, as JSON.
    pub document: Value,
    /// Content hash of the source file when the document was set (`None`: the file
    /// was unreadable or invalid then).
    pub source_hash: Option<u64>,
    /// When it was set.
    pub updated_at: Timestamp,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or syncing failed.
    #[error("state file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not a state file.
    #[error("state file {path} is not valid ({error}); fix or delete it")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What JSON said.
        error: serde_json::Error,
    },
    /// The stored state changed since it was read (another replica wrote it):
    /// re-read and re-apply.
    #[error("{what} changed on another replica since it was read")]
    Conflict {
        /// The object, e.g. `ConfigMap meshtrace/meshtrace-control-state`.
        what: String,
    },
    /// The Kubernetes API failed or could not be reached.
    #[error("{what}: Kubernetes API unavailable: {error}")]
    Unavailable {
        /// The object.
        what: String,
        /// What the client said.
        error: String,
    },
    /// The stored object does not hold a valid state.
    #[error("{what} does not hold a valid state ({error}); fix or delete it")]
    Invalid {
        /// The object.
        what: String,
        /// What JSON said.
        error: String,
    },
}

/// Where the state lives.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

// === impl StateFile ===

impl StateFile {
    /// The state file at `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; a missing file is the empty state.
    pub fn load(&self) -> Result<PersistedState, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PersistedState::default())
            }
            Err(error) => return Err(self.io(error)),
        };
        serde_json::from_str(&text).map_err(|error| StateError::Corrupt {
            path: self.path.clone(),
            error,
        })
    }

    /// Replaces the state atomically (temp file, fsync, rename, fsync directory).
    pub fn save(&self, state: &PersistedState) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| self.io(e.into()))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = dir.join(format!(".{name}.tmp-{:08x}", fastrand::u32(..)));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| self.io(e))
    }

    fn io(&self, error: std::io::Error) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            error,
        }
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        assert_eq!(file.load().unwrap(), PersistedState::default());
        let state = PersistedState {
            version: 42,
            ..PersistedState::default()
        };
        file.save(&state).unwrap();
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = StateFile::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
