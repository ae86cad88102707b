//! The store's migration stage moves (see [`crate::stages`] for the rules).

use super::{Inner, Store, StoreError};
use crate::resolve;
use meshtrace_config::MigrationStage;

use crate::stages::{Refused, StageAssignment, StageMove, StageRequest};
use crate::timestamp::Timestamp;

// === impl Store ===

impl Store {
    /// Moves a workload's migration stage (`POST /v1/migration/stage`).
    pub async fn move_stage(&self, request: &StageRequest) -> Result<StageMove, StoreError> {
        let mut inner = self.shared.inner.lock().await;
        let moved = self.write(&mut inner, |store, inner| move_in(store, inner, request));
        let (from, to) = moved.await?;
        if from != to {
            tracing::info!(workload = %request.label(), %from, %to, "migration stage moved");
        }
        Ok(StageMove {
            service: request.service.clone(),
            namespace: request.namespace.clone(),
            from,
            to,
            version: self.snapshot().version,
        })
    }

    /// The stage assignments set through the API.
    pub async fn stages(&self) -> Vec<StageAssignment> {
        self.shared.inner.lock().await.stages.clone()
    }
}

/// Applies a stage move to `inner`; returns the stages it moved between.
fn move_in(
    store: &Store,
    inner: &mut Inner,
    request: &StageRequest,
) -> Result<(MigrationStage, MigrationStage), StoreError> {
    let document = inner.document();
    let workload = request.workload();
    let stage_with = |stages: &[StageAssignment]| {
        resolve::resolve(&document, stages, &[], &workload)
            .map(|c| c.propagation.stage)
            .map_err(|e| {
                StoreError::Conflict(format!(
                    "{} does not resolve to a valid config: {e}",
                    request.label()
                ))
            })
    };
    let from = stage_with(&inner.stages)?;
    let to = request.target(from).map_err(|r| match r {
        Refused::Invalid(why) => StoreError::Invalid(why),
        Refused::NoSuchStage(why) => StoreError::Conflict(why),
    })?;
    if from == to {
        return Ok((from, to));
    }
    let ns = request.namespace.as_deref();
    let mut next: Vec<StageAssignment> = inner
        .stages
        .iter()
        .filter(|a| !a.is_for(&request.service, ns))
        .cloned()
        .collect();
    // Back to what the workload gets without this assignment: drop it, so
    // the document decides again.
    if stage_with(&next)? != to {
        next.push(StageAssignment {
            service: request.service.clone(),
            namespace: request.namespace.clone(),
            stage: to,
            updated_at: Timestamp(store.now()),
        });
    }
    inner.stages = next;
    Ok((from, to))
}
