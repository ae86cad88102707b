//! The store's migration stage moves (see [`crate::stages`] for the rules).

use super::{Store, StoreError};
use crate::resolve;
use crate::stages::{Refused, StageAssignment, StageMove, StageRequest};
use crate::timestamp::Timestamp;

// === impl Store ===

impl Store {
    /// Moves a workload's migration stage (`POST /v1/migration/stage`).
    pub async fn move_stage(&self, request: &StageRequest) -> Result<StageMove, StoreError> {
        let mut inner = self.shared.inner.lock().await;
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
        let done = |version| StageMove {
            service: request.service.clone(),
            namespace: request.namespace.clone(),
            from,
            to,
            version,
        };
        if from == to {
            return Ok(done(inner.version));
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
                updated_at: Timestamp(self.now()),
            });
        }
        let previous = std::mem::replace(&mut inner.stages, next);
        if let Err(e) = self.publish(&mut inner).await {
            inner.stages = previous;
            return Err(e.into());
        }
        tracing::info!(workload = %request.label(), %from, %to, "migration stage moved");
        Ok(done(inner.version))
    }

    /// The stage assignments set through the API.
    pub async fn stages(&self) -> Vec<StageAssignment> {
        self.shared.inner.lock().await.stages.clone()
    }
}
