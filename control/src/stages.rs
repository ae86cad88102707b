//! Migration stages moved through the API: one command per move.
//!
//! A workload's `propagation.stage` (`legacy` → `dual` → `w3c`) can be written in
//! the document like any setting. Moving one workload a step should not need an
//! edit of the shared document, so the API keeps **stage assignments**
//! `{service, namespace?, stage}` in the persisted state: they survive restarts,
//! bump the version and are pushed like overrides. Resolution applies them after
//! the document's sections and before overrides ([`crate::resolve`]); an
//! unscoped assignment before a namespace-scoped one, so for `checkout` in `shop`
//! the assignment for (`checkout`, `shop`) wins over the one for `checkout`.
//! An assignment therefore wins over the document until it is removed.
//!
//! A move (`POST /v1/migration/stage`) starts from the workload's resolved stage
//! (service and namespace, no labels): `advance` goes one stage forward, `rollback`
//! one back, `stage` sets one directly. Advancing from `w3c` or rolling back from
//! `legacy` is refused. When the new stage is what the workload would resolve to
//! without this assignment (the document, and any broader assignment), the
//! assignment is removed instead of stored, so moving a workload back hands it to
//! the document again. Moving to the stage it is already at changes nothing.

use meshtrace_config::MigrationStage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::merge::deep_merge;
use crate::timestamp::Timestamp;
use crate::workload::Workload;

/// A stage set through the API for a service (in one namespace, or all).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct StageAssignment {
    /// The service.
    pub service: String,
    /// Only this namespace (unset: every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The stage.
    pub stage: MigrationStage,
    /// When it was set.
    pub updated_at: Timestamp,
}

/// A relative move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageAction {
    /// One stage forward.
    Advance,
    /// One stage back.
    Rollback,
}

/// The body of `POST /v1/migration/stage`: exactly one of `action` and `stage`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// The service.
    pub service: String,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `advance` or `rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<StageAction>,
    /// The stage to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<MigrationStage>,
}

/// The answer to a move.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct StageMove {
    /// The service.
    pub service: String,
    /// The namespace, if the move was scoped to one.
    pub namespace: Option<String>,
    /// The stage before.
    pub from: MigrationStage,
    /// The stage now.
    pub to: MigrationStage,
    /// The version in force after the move.
    pub version: u64,
}

/// Why a move was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The request is malformed (400).
    Invalid(String),
    /// There is no stage in that direction (409).
    NoSuchStage(String),
}

/// Merges the assignments that concern `workload` into its merged document value:
/// unscoped first, then namespace-scoped.
pub fn apply(merged: &mut Value, stages: &[StageAssignment], workload: &Workload) {
    let unscoped = stages.iter().filter(|a| a.namespace.is_none());
    let scoped = stages.iter().filter(|a| a.namespace.is_some());
    for a in unscoped.chain(scoped).filter(|a| a.matches(workload)) {
        deep_merge(merged, &json!({ "propagation": { "stage": a.stage } }));
    }
}

// === impl StageAssignment ===

impl StageAssignment {
    /// Whether it applies to `workload`.
    pub fn matches(&self, workload: &Workload) -> bool {
        workload.service.as_deref() == Some(self.service.as_str())
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| workload.namespace.as_ref() == Some(ns))
    }

    /// Whether it is the assignment for exactly this service and namespace.
    pub fn is_for(&self, service: &str, namespace: Option<&str>) -> bool {
        self.service == service && self.namespace.as_deref() == namespace
    }
}

// === impl StageRequest ===

impl StageRequest {
    /// The workload whose resolved stage the move starts from.
    pub fn workload(&self) -> Workload {
        Workload {
            service: Some(self.service.clone()),
            namespace: self.namespace.clone(),
            labels: Default::default(),
        }
    }

    /// The stage after the move from `from`.
    pub fn target(&self, from: MigrationStage) -> Result<MigrationStage, Refused> {
        if self.service.trim().is_empty() {
            return Err(Refused::Invalid("`service` must not be empty".into()));
        }
        if self
            .namespace
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(Refused::Invalid(
                "`namespace` must not be empty (leave it out for every namespace)".into(),
            ));
        }
        let who = self.label();
        match (self.action, self.stage) {
            (Some(StageAction::Advance), None) => from.next().ok_or_else(|| {
                Refused::NoSuchStage(format!(
                    "{who} is at {from}, the last stage: there is nothing to advance to"
                ))
            }),
            (Some(StageAction::Rollback), None) => from.previous().ok_or_else(|| {
                Refused::NoSuchStage(format!(
                    "{who} is at {from}, the first stage: there is nothing to roll back to"
                ))
            }),
            (None, Some(stage)) => Ok(stage),
            _ => Err(Refused::Invalid(
                "give exactly one of `action` (advance, rollback) and `stage`".into(),
            )),
        }
    }

    /// `checkout (shop)`, or `checkout` for every namespace.
    pub fn label(&self) -> String {
        label(&self.service, self.namespace.as_deref())
    }
}

// === impl StageMove ===

impl std::fmt::Display for StageMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = label(&self.service, self.namespace.as_deref());
        write!(
            f,
            "{who}: {} -> {} (version {})",
            self.from, self.to, self.version
        )
    }
}

fn label(service: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{service} ({ns})"),
        None => service.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: StageAction) -> StageRequest {
        StageRequest {
            service: "checkout".into(),
            namespace: Some("shop".into()),
            action: Some(action),
            stage: None,
        }
    }

    fn assignment(namespace: Option<&str>, stage: MigrationStage) -> StageAssignment {
        StageAssignment {
            service: "checkout".into(),
            namespace: namespace.map(Into::into),
            stage,
            updated_at: Timestamp(std::time::UNIX_EPOCH),
        }
    }

    #[test]
    fn advance_and_rollback_move_one_stage() {
        use MigrationStage::*;
        assert_eq!(request(StageAction::Advance).target(Legacy), Ok(Dual));
        assert_eq!(request(StageAction::Advance).target(Dual), Ok(W3c));
        assert_eq!(request(StageAction::Rollback).target(W3c), Ok(Dual));
    }

    #[test]
    fn there_is_no_stage_after_w3c_nor_before_legacy() {
        let Err(Refused::NoSuchStage(why)) =
            request(StageAction::Advance).target(MigrationStage::W3c)
        else {
            panic!("advanced past w3c");
        };
        assert_eq!(
            why,
            "checkout (shop) is at w3c, the last stage: there is nothing to advance to"
        );
        assert!(matches!(
            request(StageAction::Rollback).target(MigrationStage::Legacy),
            Err(Refused::NoSuchStage(_))
        ));
    }

    #[test]
    fn a_request_gives_an_action_or_a_stage_not_both() {
        let both = StageRequest {
            stage: Some(MigrationStage::Dual),
            ..request(StageAction::Advance)
        };
        assert!(matches!(
            both.target(MigrationStage::Legacy),
            Err(Refused::Invalid(_))
        ));
    }

    #[test]
    fn a_namespaced_assignment_wins_over_the_unscoped_one() {
        let stages = [
            assignment(Some("shop"), MigrationStage::W3c),
            assignment(None, MigrationStage::Dual),
        ];
        let mut shop = json!({});
        let w = StageRequest {
            service: "checkout".into(),
            namespace: Some("shop".into()),
            ..StageRequest::default()
        };
        apply(&mut shop, &stages, &w.workload());
        assert_eq!(shop, json!({"propagation": {"stage": "w3c"}}));
        let mut staging = json!({});
        let w = StageRequest {
            namespace: Some("staging".into()),
            ..w
        };
        apply(&mut staging, &stages, &w.workload());
        assert_eq!(staging, json!({"propagation": {"stage": "dual"}}));
    }

    #[test]
    fn a_move_prints_as_one_line() {
        let m = StageMove {
            service: "checkout".into(),
            namespace: Some("shop".into()),
            from: MigrationStage::Legacy,
            to: MigrationStage::Dual,
            version: 12,
        };
        assert_eq!(
            m.to_string(),
            "checkout (shop): legacy -> dual (version 12)"
        );
    }
}
