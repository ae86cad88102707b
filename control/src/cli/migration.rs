//! `migration`: the fleet-wide view, and one command per stage move.

use clap::{Args, Subcommand};
use meshtrace_config::report::FormatCounts;
use meshtrace_config::MigrationStage;

use super::{table, Format};
use crate::client::{ClientError, ControlClient};
use crate::migration::{MigrationView, WorkloadMigration};
use crate::stages::{StageAction, StageRequest};

/// `migration [advance | rollback | set]`.
#[derive(Debug, Args)]
pub struct MigrationArgs {
    /// Without one: print the fleet-wide view.
    #[command(subcommand)]
    pub command: Option<MigrationCommand>,
    /// `table` or `json`.
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

/// Stage moves.
#[derive(Debug, Subcommand)]
pub enum MigrationCommand {
    /// Move a workload one stage forward (legacy -> dual -> w3c).
    Advance(StageTarget),
    /// Move a workload one stage back.
    Rollback(StageTarget),
    /// Set a workload's stage.
    Set {
        /// The workload.
        #[command(flatten)]
        target: StageTarget,
        /// legacy, dual or w3c.
        #[arg(long)]
        stage: MigrationStage,
    },
}

/// Which workload a move is for.
#[derive(Debug, Args)]
pub struct StageTarget {
    /// The service.
    #[arg(long)]
    pub service: String,
    /// Only this namespace (default: every namespace).
    #[arg(long)]
    pub namespace: Option<String>,
}

pub(super) async fn run(
    client: &ControlClient,
    args: MigrationArgs,
) -> Result<String, ClientError> {
    let Some(command) = args.command else {
        let view = client.migration().await?;
        return match args.output {
            Format::Json => super::json(&view),
            Format::Table => Ok(view_table(&view)),
        };
    };
    let (target, action, stage) = match command {
        MigrationCommand::Advance(t) => (t, Some(StageAction::Advance), None),
        MigrationCommand::Rollback(t) => (t, Some(StageAction::Rollback), None),
        MigrationCommand::Set { target, stage } => (target, None, Some(stage)),
    };
    let request = StageRequest {
        service: target.service,
        namespace: target.namespace,
        action,
        stage,
    };
    let moved = client.move_stage(&request).await?;
    match args.output {
        Format::Json => super::json(&moved),
        Format::Table => Ok(format!("{moved}\n")),
    }
}

/// The view as a table, one row per workload.
pub fn view_table(view: &MigrationView) -> String {
    let window = view.window_seconds / 60;
    let mut rows = vec![[
        "WORKLOAD".to_string(),
        "STAGE".into(),
        "SIDECARS".into(),
        format!("RECEIVED {window}m"),
        "CALLERS SENDING LEGACY".into(),
        "APP SENDS".into(),
        "LEGACY SHARE".into(),
    ]];
    for w in &view.workloads {
        rows.push([
            w.name(),
            stage(w),
            w.sidecars.to_string(),
            formats(&w.received.inbound),
            list_or_dash(
                w.legacy_callers()
                    .into_iter()
                    .map(|(name, n)| format!("{name} {n}")),
            ),
            match &w.app_formats {
                None => "-".into(),
                Some(f) if f.is_empty() => "no context".into(),
                Some(f) => f.keys().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
            },
            w.legacy_share
                .map_or("-".into(), |s| format!("{:.1}%", s * 100.0)),
        ]);
    }
    table(&rows)
}

/// `dual`, `dual (1 on legacy)` while sidecars lag, `?` when it does not resolve.
fn stage(w: &WorkloadMigration) -> String {
    let Some(stage) = w.stage else {
        return "?".into();
    };
    let lagging = w.lagging();
    if lagging.is_empty() {
        return stage.to_string();
    }
    let others: Vec<String> = lagging.iter().map(|(s, n)| format!("{n} on {s}")).collect();
    format!("{stage} ({})", others.join(", "))
}

/// `tracecontext 120, b3multi 40, none 3`, most requests first.
fn formats(counts: &FormatCounts) -> String {
    let mut list: Vec<(&str, u64)> = counts
        .formats
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| (f.as_str(), *n))
        .collect();
    if counts.none > 0 {
        list.push(("none", counts.none));
    }
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    list_or_dash(list.into_iter().map(|(f, n)| format!("{f} {n}")))
}

fn list_or_dash(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use meshtrace_config::PropagationFormat::{B3Multi, TraceContext};

    use super::*;

    #[test]
    fn the_view_prints_one_row_per_workload() {
        let received = FormatCounts {
            requests: 160,
            legacy: 40,
            none: 0,
            formats: [(TraceContext, 120), (B3Multi, 40)].into(),
        };
        let row = WorkloadMigration {
            service: Some("checkout".into()),
            namespace: "shop".into(),
            stage: Some(MigrationStage::Dual),
            reported_stages: [(MigrationStage::Dual, 1), (MigrationStage::Legacy, 1)].into(),
            sidecars: 2,
            received: crate::migration::Received {
                inbound: received.clone(),
                outbound: FormatCounts::default(),
            },
            callers: [("web.shop".to_string(), received)].into(),
            app_formats: Some([(B3Multi, 3)].into()),
            legacy_share: Some(0.25),
            ..WorkloadMigration::default()
        };
        let view = MigrationView {
            window_seconds: 300,
            workloads: vec![row],
        };
        let text = view_table(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("WORKLOAD       STAGE"), "{text}");
        for cell in [
            "checkout.shop",
            "dual (1 on legacy)",
            "tracecontext 120, b3multi 40",
            "web.shop 40",
            "b3multi",
            "25.0%",
        ] {
            assert!(lines[1].contains(cell), "{cell:?} missing in {text}");
        }
    }
}
