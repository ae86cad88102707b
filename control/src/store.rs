//! The control plane's state and its one writer.
//!
//! Every change (source file reload, API write, override added, changed, removed
//! or expired, migration stage moved) goes through [`Store`], under one async
//! lock: it computes the new effective document, stage assignments and override
//! set, persists what must survive a restart ([`crate::state::Backend`]: a file,
//! or a ConfigMap shared by replicas), and, if anything effective changed,
//! publishes an immutable [`Snapshot`] on a `tokio::sync::watch` channel, under
//! the version derived from its content ([`crate::version`]). Watchers only ever
//! see the newest snapshot, so a burst of changes coalesces for a slow watcher.
//!
//! With several replicas (the Kubernetes backend) a write is applied to the
//! state last read and saved with optimistic concurrency; when another replica
//! wrote first, the store re-reads, applies the same change to the fresh state
//! and tries again (`store/persist.rs`). Each replica follows the others' writes
//! (`store/follow.rs`), so all of them publish the same state under the same
//! version.
//!
//! The base document's changes (source reloads, API writes) live in
//! `store/base.rs`, the override writes in `store/overrides.rs`, the stage moves
//! in `store/stages.rs`, the fleet switches (boosts off) in `store/switches.rs`.

mod base;
mod follow;
mod overrides;
mod persist;
mod switches;

pub use self::persist::CONFLICT_RETRIES;
mod stages;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::document::Document;
use crate::overrides::{Override, DEFAULT_MAX_DURATION};
use crate::resolve::{self, Workload};
use crate::source;
use crate::stages::StageAssignment;
use crate::state::{ApiBase, Backend, ConfigMapState, PersistedState, StateError, StateFile};
use crate::switches::Switches;

/// Distinct workloads cached per snapshot (beyond this, resolution is not cached).
const CACHE_LIMIT: usize = 10_000;

/// A published state: everything a watcher needs to resolve its config.
#[derive(Debug)]
pub struct Snapshot {
    /// The version: derived from the document, stages and overrides.
    pub version: u64,
    /// The effective base document.
    pub document: Arc<Document>,
    /// Migration stages set through the API.
    pub stages: Arc<Vec<StageAssignment>>,
    /// Active overrides, in creation order.
    pub overrides: Arc<Vec<Override>>,
    /// Fleet-wide switches (boosts off).
    pub switches: Switches,
    cache: Mutex<HashMap<Workload, Arc<Resolved>>>,
}

/// A workload's resolved config, with its JSON (what is compared and sent).
#[derive(Debug)]
pub struct Resolved {
    /// The config.
    pub config: meshtrace_config::Config,
    /// The config as JSON.
    pub json: String,
}

/// The shared handle on the state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    inner: tokio::sync::Mutex<Inner>,
    tx: watch::Sender<Arc<Snapshot>>,
    overrides_changed: Notify,
    source_path: PathBuf,
    state: Backend,
    clock: Clock,
    options: StoreOptions,
}

/// Limits the operator sets at start (`serve` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// The longest an override may last from now, on creation and on any change
    /// of its expiry.
    pub max_override_duration: Duration,
}

#[derive(Debug)]
struct Inner {
    /// The stored state's `resourceVersion` (Kubernetes backend).
    revision: Option<String>,
    file_doc: Option<Document>,
    file_hash: Option<u64>,
    last_seen: Option<Result<u64, String>>,
    load_error: Option<String>,
    api_base: Option<(ApiBase, Document)>,
    stages: Vec<StageAssignment>,
    overrides: Vec<Override>,
    switches: Switches,
}

/// Where the effective document came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The source file.
    File,
    /// `PUT`/`PATCH /v1/config/base`.
    Api,
}

/// What `GET /v1/status` reports about the store.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStatus {
    /// The current version.
    pub version: u64,
    /// The source file.
    pub source: PathBuf,
    /// Why the source file's current content was rejected, if it was.
    pub last_load_error: Option<String>,
    /// Where the served document came from.
    pub document_origin: Origin,
    /// The state file (file backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// The state ConfigMap, `ConfigMap namespace/name` (Kubernetes backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_configmap: Option<String>,
    /// Active overrides.
    pub override_count: usize,
    /// Migration stages set through the API.
    pub stage_assignments: usize,
    /// The longest an override may last.
    pub max_override_duration_seconds: u64,
    /// Whether sidecars may boost (`false`: turned off fleet-wide).
    pub boosts_enabled: bool,
    /// When boosts were turned off fleet-wide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boosts_off_since: Option<crate::timestamp::Timestamp>,
}

/// Why a write was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// It conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// The state could not be persisted; nothing changed (500; 409 when other
    /// replicas kept writing first, 503 when the Kubernetes API is unavailable).
    #[error("{0}")]
    Persist(#[from] StateError),
}

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The state file is unreadable.
    #[error(transparent)]
    State(#[from] StateError),
    /// There is no valid document to serve.
    #[error("no valid configuration to serve: {0}")]
    NoDocument(String),
}

// === impl StoreOptions ===

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_override_duration: DEFAULT_MAX_DURATION,
        }
    }
}

// === impl Snapshot ===

impl Snapshot {
    fn new(inner: &Inner) -> Self {
        let document = inner.document();
        Self {
            version: crate::version::of(
                &document.to_json(),
                &inner.stages,
                &inner.overrides,
                &inner.switches,
            ),
            document: Arc::new(document),
            stages: Arc::new(inner.stages.clone()),
            overrides: Arc::new(inner.overrides.clone()),
            switches: inner.switches,
            cache: Mutex::default(),
        }
    }

    /// The workload's resolved config (cached per snapshot).
    pub fn resolve(&self, workload: &Workload) -> Result<Arc<Resolved>, String> {
        if let Some(hit) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(workload).cloned())
        {
            return Ok(hit);
        }
        let config = resolve::resolve_with(
            &self.document,
            &self.stages,
            &self.overrides,
            &self.switches,
            workload,
        )?;
        let json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
        let resolved = Arc::new(Resolved { config, json });
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() < CACHE_LIMIT {
                cache.insert(workload.clone(), resolved.clone());
            }
        }
        Ok(resolved)
    }
}

// === impl Inner ===

impl Inner {
    fn document(&self) -> Document {
        match (&self.api_base, &self.file_doc) {
            (Some((_, doc)), _) | (None, Some(doc)) => doc.clone(),
            (None, None) => Document::default(),
        }
    }

    fn persisted(&self, version: u64) -> PersistedState {
        PersistedState {
            version,
            overrides: self.overrides.clone(),
            stages: self.stages.clone(),
            api_base: self.api_base.as_ref().map(|(b, _)| b.clone()),
            switches: self.switches,
        }
    }
}

// === impl Store ===

impl Store {
    /// Reads the state file and the source file and publishes the first snapshot,
    /// with the default [`StoreOptions`].
    pub fn open(source_path: &Path, state: StateFile) -> Result<Self, OpenError> {
        Self::open_with(source_path, state, StoreOptions::default())
    }

    /// Reads the state file and the source file and publishes the first snapshot.
    ///
    /// A base document saved through the API is kept if the source file has not
    /// changed since it was saved; otherwise the file wins. With no valid file and
    /// no saved document there is nothing safe to serve, and this fails.
    pub fn open_with(
        source_path: &Path,
        state: StateFile,
        options: StoreOptions,
    ) -> Result<Self, OpenError> {
        let saved = state.load()?;
        let store = Self::build(
            source_path,
            Backend::File(state.clone()),
            saved,
            None,
            options,
        )?;
        let version = store.snapshot().version;
        let inner = store.shared.inner.try_lock().map_err(|e| {
            OpenError::State(StateError::Io {
                path: state.path().to_path_buf(),
                error: std::io::Error::other(e.to_string()),
            })
        })?;
        state.save(&inner.persisted(version))?;
        drop(inner);
        Ok(store)
    }

    /// Reads the state from its ConfigMap (creating it when missing) and the
    /// source file, and publishes the first snapshot; see [`Self::open_with`].
    /// An unreachable API is an error: the replica has no state to serve.
    pub async fn open_kubernetes(
        source_path: &Path,
        state: ConfigMapState,
        options: StoreOptions,
    ) -> Result<Self, OpenError> {
        let stored = state.load().await?;
        let backend = Backend::Kubernetes(Box::new(state));
        Self::build(
            source_path,
            backend,
            stored.state,
            Some(stored.revision),
            options,
        )
    }

    fn build(
        source_path: &Path,
        state: Backend,
        saved: PersistedState,
        revision: Option<String>,
        options: StoreOptions,
    ) -> Result<Self, OpenError> {
        let clock = Clock::new();
        let now = clock.now();
        let overrides: Vec<Override> = saved
            .overrides
            .into_iter()
            .filter(|o| o.expires_at.0 > now)
            .collect();
        let read = source::read(source_path);
        let last_seen = Some(read.as_ref().map(|s| s.hash).map_err(Clone::clone));
        let (file_doc, file_hash, load_error) = match source::parse(read, source_path) {
            Ok((doc, hash)) => (Some(doc), Some(hash), None),
            Err(e) => (None, None, Some(e)),
        };
        let api_base = match saved.api_base {
            Some(base) if file_doc.is_none() || base.source_hash == file_hash => {
                let doc = serde_json::from_value::<Document>(base.document.clone())
                    .map_err(|e| OpenError::NoDocument(format!("saved API document: {e}")))?;
                Some((base, doc))
            }
            _ => None,
        };
        if file_doc.is_none() && api_base.is_none() {
            return Err(OpenError::NoDocument(load_error.unwrap_or_default()));
        }
        let inner = Inner {
            revision,
            file_doc,
            file_hash,
            last_seen,
            load_error,
            api_base,
            stages: saved.stages,
            overrides,
            switches: saved.switches,
        };
        let snapshot = Snapshot::new(&inner);
        let (tx, _) = watch::channel(Arc::new(snapshot));
        Ok(Self {
            shared: Arc::new(Shared {
                inner: tokio::sync::Mutex::new(inner),
                tx,
                overrides_changed: Notify::new(),
                source_path: source_path.to_path_buf(),
                state,
                clock,
                options,
            }),
        })
    }

    /// Starts the source poller and the expiry timer; both stop on `cancel`.
    pub fn spawn_background(&self, poll_interval: Duration, cancel: CancellationToken) {
        tokio::spawn(self.clone().poll_source(poll_interval, cancel.clone()));
        if let Backend::Kubernetes(state) = &self.shared.state {
            tokio::spawn(self.clone().follow((**state).clone(), cancel.clone()));
        }
        tokio::spawn(self.clone().expire_loop(cancel));
    }

    /// The source file.
    pub fn source_path(&self) -> &Path {
        &self.shared.source_path
    }

    /// The newest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.tx.borrow().clone()
    }

    /// A receiver of every newer snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.tx.subscribe()
    }

    /// The limits it was opened with.
    pub fn options(&self) -> StoreOptions {
        self.shared.options
    }

    /// The current wall-clock time as the store sees it.
    pub fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// The store part of `/v1/status`.
    pub async fn status(&self) -> StoreStatus {
        let inner = self.shared.inner.lock().await;
        let (state_file, state_configmap) = match &self.shared.state {
            Backend::File(file) => (Some(file.path().to_path_buf()), None),
            Backend::Kubernetes(cm) => (None, Some(cm.describe().to_string())),
        };
        StoreStatus {
            version: self.snapshot().version,
            source: self.shared.source_path.clone(),
            last_load_error: inner.load_error.clone(),
            document_origin: if inner.api_base.is_some() {
                Origin::Api
            } else {
                Origin::File
            },
            state_file,
            state_configmap,
            override_count: inner.overrides.len(),
            stage_assignments: inner.stages.len(),
            max_override_duration_seconds: self.shared.options.max_override_duration.as_secs(),
            boosts_enabled: inner.switches.boosts_enabled(),
            boosts_off_since: inner.switches.boosts_off_since,
        }
    }
}
