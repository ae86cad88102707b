//! The fleet-wide migration view (`GET /v1/migration`): per workload, its stage
//! and what its sidecars saw over the last five minutes.
//!
//! A workload is a (service, namespace) pair as the sidecars report it; sidecars
//! that report no service are one row per namespace (`service: null`). Rows are
//! sorted by service, then namespace, the unnamed rows last. Per row:
//!
//! * `stage`: the stage the control plane resolves for (service, namespace), no
//!   labels — what the next push says; `reported_stages` counts the sidecars per
//!   stage they last reported, so a row whose sidecars have not applied a move yet
//!   (or run a label-specific stage) shows it. `stage_error` when the workload
//!   does not resolve.
//! * `sidecars`: how many reported in the last ten minutes.
//! * `received`: inbound and outbound requests by format over the window
//!   ([`crate::reports`]), summed over the sidecars.
//! * `callers`: inbound requests per calling workload, summed.
//! * `app_formats`: the formats the apps sent, each with the fewest seconds since a
//!   sidecar last saw it (`null` when no app sent a request lately).
//! * `legacy_share`: requests carrying a legacy format / all requests, inbound and
//!   outbound together; `null` without requests.

use std::collections::BTreeMap;

use meshtrace_config::report::FormatCounts;
use meshtrace_config::{MigrationStage, PropagationFormat};
use serde::{Deserialize, Serialize};

use crate::reports::{SidecarTraffic, WINDOW};
use crate::resolve::Workload;

/// The answer of `GET /v1/migration`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct MigrationView {
    /// The span `received` and `callers` cover.
    pub window_seconds: u64,
    /// One row per workload.
    pub workloads: Vec<WorkloadMigration>,
}

/// One workload's row.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct WorkloadMigration {
    /// The service (`null`: sidecars that did not say).
    pub service: Option<String>,
    /// The namespace.
    pub namespace: String,
    /// The stage the control plane resolves for it.
    pub stage: Option<MigrationStage>,
    /// Why it has no `stage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_error: Option<String>,
    /// Sidecars per stage they reported.
    pub reported_stages: BTreeMap<MigrationStage, usize>,
    /// Sidecars reporting.
    pub sidecars: usize,
    /// Requests by format over the window.
    pub received: Received,
    /// Inbound requests per calling workload over the window.
    pub callers: BTreeMap<String, FormatCounts>,
    /// Formats the apps sent, with the seconds since one was last seen.
    pub app_formats: Option<BTreeMap<PropagationFormat, u64>>,
    /// Legacy requests / requests over the window.
    pub legacy_share: Option<f64>,
}

/// Requests by direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Received {
    /// From the mesh.
    pub inbound: FormatCounts,
    /// From the local app.
    pub outbound: FormatCounts,
}

/// Builds the view from the sidecars' windows; `stage_of` resolves a workload's
/// stage.
pub fn view(
    sidecars: &[SidecarTraffic],
    mut stage_of: impl FnMut(&Workload) -> Result<MigrationStage, String>,
) -> MigrationView {
    let mut rows: BTreeMap<(bool, Option<String>, String), WorkloadMigration> = BTreeMap::new();
    for s in sidecars {
        let key = (s.service.is_none(), s.service.clone(), s.namespace.clone());
        let row = rows.entry(key).or_insert_with(|| WorkloadMigration {
            service: s.service.clone(),
            namespace: s.namespace.clone(),
            ..WorkloadMigration::default()
        });
        row.add(s);
    }
    let workloads = rows
        .into_values()
        .map(|mut row| {
            let workload = Workload {
                service: row.service.clone(),
                namespace: Some(row.namespace.clone()),
                labels: BTreeMap::new(),
            };
            match stage_of(&workload) {
                Ok(stage) => row.stage = Some(stage),
                Err(e) => row.stage_error = Some(e),
            }
            let r = &row.received;
            let requests = r.inbound.requests + r.outbound.requests;
            let legacy = r.inbound.legacy + r.outbound.legacy;
            row.legacy_share = (requests > 0).then(|| legacy as f64 / requests as f64);
            row
        })
        .collect();
    MigrationView {
        window_seconds: WINDOW.as_secs(),
        workloads,
    }
}

// === impl WorkloadMigration ===

impl WorkloadMigration {
    fn add(&mut self, s: &SidecarTraffic) {
        self.sidecars += 1;
        *self.reported_stages.entry(s.stage).or_default() += 1;
        self.received.inbound.add(&s.traffic.inbound);
        self.received.outbound.add(&s.traffic.outbound);
        for (caller, counts) in &s.traffic.callers {
            self.callers.entry(caller.clone()).or_default().add(counts);
        }
        if let Some(formats) = &s.app_formats {
            let union = self.app_formats.get_or_insert_with(BTreeMap::new);
            for (format, secs) in formats {
                let seen = union.entry(*format).or_insert(*secs);
                *seen = (*seen).min(*secs);
            }
        }
    }

    /// `service.namespace`, or `(unnamed).namespace`.
    pub fn name(&self) -> String {
        let service = self.service.as_deref().unwrap_or("(unnamed)");
        format!("{service}.{}", self.namespace)
    }

    /// Sidecars that reported a stage other than the resolved one.
    pub fn lagging(&self) -> BTreeMap<MigrationStage, usize> {
        let mut other = self.reported_stages.clone();
        if let Some(stage) = self.stage {
            other.remove(&stage);
        }
        other
    }

    /// Callers that sent legacy formats, most legacy requests first.
    pub fn legacy_callers(&self) -> Vec<(&str, u64)> {
        let mut callers: Vec<(&str, u64)> = self
            .callers
            .iter()
            .filter(|(_, c)| c.legacy > 0)
            .map(|(name, c)| (name.as_str(), c.legacy))
            .collect();
        callers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        callers
    }
}

#[cfg(test)]
mod tests {
    use meshtrace_config::PropagationFormat::{B3Multi, Datadog, TraceContext};

    use super::*;
    use crate::reports::Traffic;

    fn counts(requests: u64, legacy: u64) -> FormatCounts {
        FormatCounts {
            requests,
            legacy,
            none: 0,
            formats: [(TraceContext, requests - legacy), (B3Multi, legacy)].into(),
        }
    }

    fn sidecar(service: Option<&str>, pod: &str, inbound: u64, legacy: u64) -> SidecarTraffic {
        SidecarTraffic {
            namespace: "shop".into(),
            pod: pod.into(),
            service: service.map(Into::into),
            stage: MigrationStage::Legacy,
            traffic: Traffic {
                inbound: counts(inbound, legacy),
                outbound: counts(10, 0),
                callers: [("web.shop".to_string(), counts(inbound, legacy))].into(),
            },
            app_formats: None,
        }
    }

    #[test]
    fn two_sidecars_of_one_workload_add_up_in_one_row() {
        let mut a = sidecar(Some("checkout"), "c1", 100, 30);
        a.app_formats = Some([(B3Multi, 40), (Datadog, 5)].into());
        let mut b = sidecar(Some("checkout"), "c2", 50, 10);
        b.app_formats = Some([(B3Multi, 3)].into());
        b.stage = MigrationStage::Dual;
        let v = view(&[a, b], |_| Ok(MigrationStage::Dual));
        let [row] = &v.workloads[..] else {
            panic!("{v:?}");
        };
        assert_eq!((row.name().as_str(), row.sidecars), ("checkout.shop", 2));
        assert_eq!(row.received.inbound, counts(150, 40));
        assert_eq!(row.received.outbound, counts(20, 0));
        assert_eq!(row.callers["web.shop"], counts(150, 40));
        assert_eq!(row.app_formats, Some([(B3Multi, 3), (Datadog, 5)].into()));
        assert_eq!(row.legacy_share, Some(40.0 / 170.0));
        assert_eq!(row.lagging(), [(MigrationStage::Legacy, 1)].into());
        assert_eq!(v.window_seconds, 300);
    }

    #[test]
    fn rows_are_sorted_and_unnamed_sidecars_come_last_per_namespace() {
        let list = [
            sidecar(None, "x", 1, 0),
            sidecar(Some("checkout"), "c1", 1, 0),
            sidecar(Some("cart"), "k1", 1, 0),
        ];
        let v = view(&list, |_| Ok(MigrationStage::Legacy));
        let names: Vec<String> = v.workloads.iter().map(WorkloadMigration::name).collect();
        assert_eq!(names, ["cart.shop", "checkout.shop", "(unnamed).shop"]);
    }

    #[test]
    fn without_requests_the_legacy_share_is_null() {
        let mut idle = sidecar(Some("checkout"), "c1", 0, 0);
        idle.traffic = Traffic::default();
        let v = view(&[idle], |_| Err("no".into()));
        let row = &v.workloads[0];
        assert_eq!((row.legacy_share, row.stage), (None, None));
        assert_eq!(row.stage_error.as_deref(), Some("no"));
        let json = serde_json::to_value(&v).unwrap();
        assert!(json["workloads"][0]["legacy_share"].is_null(), "{json}");
    }
}
