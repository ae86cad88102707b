//! The state in a Kubernetes ConfigMap, shared by every control-plane replica.
//!
//! `serve --store kubernetes [--store-name NAME]` keeps the [`PersistedState`]
//! as JSON under the key [`DATA_KEY`] of ConfigMap `NAME` (default
//! [`DEFAULT_NAME`]) in the pod's namespace (`POD_NAMESPACE`, else the client's
//! namespace: the service account's in a cluster, the kubeconfig context's
//! outside). The client comes from `kube::Client::try_default()`: the service
//! account in a cluster, `KUBECONFIG` for local runs.
//!
//! Writes use optimistic concurrency: a `PUT` carries the `resourceVersion` last
//! read, and a replica that lost the race gets 409 Conflict
//! ([`StateError::Conflict`]); the store then re-reads, re-applies its change to
//! the fresh state and retries. The ConfigMap is created when missing. Every
//! replica watches it (`?watch=true`, re-listing after an error or the end of a
//! watch, with bounded backoff) and publishes what the others wrote.
//!
//! A ConfigMap holds at most 1 MiB: enough for thousands of overrides, not for
//! an unbounded history (none is kept).

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};

use super::{PersistedState, StateError};

/// The ConfigMap's default name (`--store-name`).
pub const DEFAULT_NAME: &str = "meshtrace-control-state";

/// The key holding the state JSON.
pub const DATA_KEY: &str = "state.json";

/// How long the API server keeps one watch open before the replica re-lists.
pub const WATCH_TIMEOUT_SECS: u32 = 290;

/// The state in ConfigMap `namespace/name`.
#[derive(Clone)]
pub struct ConfigMapState {
    api: Api<ConfigMap>,
    name: String,
    what: String,
}

/// A state read from the ConfigMap, with the `resourceVersion` it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The state.
    pub state: PersistedState,
    /// The ConfigMap's `metadata.resourceVersion`.
    pub revision: String,
}

/// What a watch of the ConfigMap reports.
#[derive(Debug)]
pub enum Change {
    /// Someone (maybe this replica) wrote a new state.
    Written(Stored),
    /// The ConfigMap was deleted (it is created again on the next write).
    Deleted,
    /// A bookmark: nothing changed.
    Progress,
    /// The watch must start again from a fresh read (e.g. 410 Gone).
    Restart(String),
}

impl std::fmt::Debug for ConfigMapState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapState")
            .field("what", &self.what)
            .finish()
    }
}

// === impl ConfigMapState ===

impl ConfigMapState {
    /// ConfigMap `name` in `namespace`, through `client`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            what: format!("ConfigMap {namespace}/{name}"),
        }
    }

    /// Connects with the inferred credentials (service account, or
    /// `KUBECONFIG`) to ConfigMap `name` in `POD_NAMESPACE`, else the client's
    /// namespace.
    pub async fn connect(name: &str) -> Result<Self, String> {
        let client = Client::try_default().await.map_err(|e| {
            format!(
                "--store kubernetes: no Kubernetes credentials ({e}); run in a pod with a \
                 service account, or set KUBECONFIG"
            )
        })?;
        let namespace = match std::env::var("POD_NAMESPACE") {
            Ok(ns) if !ns.trim().is_empty() => ns.trim().to_string(),
            _ => client.default_namespace().to_string(),
        };
        Ok(Self::new(client, &namespace, name))
    }

    /// `ConfigMap namespace/name`, for messages.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Reads the state, creating the ConfigMap (with the empty state) when it
    /// does not exist yet.
    pub async fn load(&self) -> Result<Stored, StateError> {
        for _ in 0..3 {
            if let Some(stored) = self.read().await? {
                return Ok(stored);
            }
            let fresh = self.object(&PersistedState::default(), None)?;
            match self.api.create(&PostParams::default(), &fresh).await {
                Ok(created) => {
                    tracing::info!(configmap = %self.what, "state ConfigMap created");
                    return self.parse(&created);
                }
                // Another replica created it first: read theirs.
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {}
                Err(e) => return Err(self.unavailable(e)),
            }
        }
        Err(self.unavailable("the ConfigMap keeps appearing and disappearing"))
    }

    /// Reads the state; `None` when the ConfigMap does not exist.
    pub async fn read(&self) -> Result<Option<Stored>, StateError> {
        match self.api.get_opt(&self.name).await {
            Ok(Some(cm)) => self.parse(&cm).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Writes `state` if the ConfigMap is still at `revision` (`None`: create
    /// it); returns the new `resourceVersion`. [`StateError::Conflict`] when
    /// another replica wrote (or deleted) it since.
    pub async fn save(
        &self,
        state: &PersistedState,
        revision: Option<&str>,
    ) -> Result<String, StateError> {
        let object = self.object(state, revision)?;
        let written = match revision {
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &object)
                    .await
            }
            None => self.api.create(&PostParams::default(), &object).await,
        };
        match written {
            Ok(cm) => cm
                .metadata
                .resource_version
                .ok_or_else(|| self.unavailable("the API server returned no resourceVersion")),
            Err(kube::Error::Api(s))
                if s.is_conflict() || s.is_already_exists() || s.is_not_found() =>
            {
                Err(StateError::Conflict {
                    what: self.what.clone(),
                })
            }
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Watches the ConfigMap from `revision`: a stream of changes that ends
    /// when the API server closes the watch.
    pub async fn watch(
        &self,
        revision: &str,
    ) -> Result<impl Stream<Item = Change> + Send + use<>, StateError> {
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", self.name))
            .timeout(WATCH_TIMEOUT_SECS);
        let events = self
            .api
            .watch(&params, revision)
            .await
            .map_err(|e| self.unavailable(e))?;
        let this = self.clone();
        Ok(events.map(move |event| match event {
            Ok(WatchEvent::Added(cm) | WatchEvent::Modified(cm)) => match this.parse(&cm) {
                Ok(stored) => Change::Written(stored),
                Err(e) => Change::Restart(e.to_string()),
            },
            Ok(WatchEvent::Deleted(_)) => Change::Deleted,
            Ok(WatchEvent::Bookmark(_)) => Change::Progress,
            Ok(WatchEvent::Error(status)) => Change::Restart(status.to_string()),
            Err(e) => Change::Restart(e.to_string()),
        }))
    }

    fn object(
        &self,
        state: &PersistedState,
        revision: Option<&str>,
    ) -> Result<ConfigMap, StateError> {
        let json = serde_json::to_string_pretty(state).map_err(|e| StateError::Invalid {
            what: self.what.clone(),
            error: e.to_string(),
        })?;
        let labels = BTreeMap::from([(
            "app.kubernetes.io/component".to_string(),
            "control-plane-state".to_string(),
        )]);
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: revision.map(str::to_string),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), json)])),
            ..ConfigMap::default()
        })
    }

    fn parse(&self, cm: &ConfigMap) -> Result<Stored, StateError> {
        let revision = cm.metadata.resource_version.clone().unwrap_or_default();
        let state = match cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
            None => PersistedState::default(),
            Some(json) => serde_json::from_str(json).map_err(|e| StateError::Invalid {
                what: format!("{} key {DATA_KEY}", self.what),
                error: e.to_string(),
            })?,
        };
        Ok(Stored { state, revision })
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> StateError {
        StateError::Unavailable {
            what: self.what.clone(),
            error: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
