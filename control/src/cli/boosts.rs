//! `boost off | on | status`: incident boosts, fleet-wide, in one command.

use clap::Subcommand;

use super::{json, table, Format};
use crate::client::{ClientError, ControlClient};
use crate::switches::BoostsState;

/// `boost` subcommands.
#[derive(Debug, Subcommand)]
pub enum BoostCommand {
    /// Turn incident boosts off on every sidecar (running ones end).
    Off,
    /// Let sidecars boost again, as their config says.
    On,
    /// Show the fleet switch and the boosts sidecars reported.
    Status {
        /// `table` or `json`.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

pub(super) async fn run(client: &ControlClient, cmd: BoostCommand) -> Result<String, ClientError> {
    match cmd {
        BoostCommand::Off => Ok(switch_line(&client.set_boosts(false).await?)),
        BoostCommand::On => Ok(switch_line(&client.set_boosts(true).await?)),
        BoostCommand::Status { output } => {
            let state = client.boosts().await?;
            let status: serde_json::Value = client.get("/v1/status").await?;
            let boosts = status.get("boosts").cloned().unwrap_or_default();
            if output == Format::Json {
                return json(&serde_json::json!({ "switch": state, "boosts": boosts }));
            }
            let mut out = switch_line(&state);
            out.push('\n');
            out.push_str(&boost_table(&boosts));
            Ok(out)
        }
    }
}

fn switch_line(state: &BoostsState) -> String {
    match (state.enabled, state.off_since) {
        (true, _) => format!(
            "boosts on (as each workload's config says); version {}\n",
            state.version
        ),
        (false, since) => {
            let since = since.map(|t| format!(" since {t}")).unwrap_or_default();
            format!("boosts OFF fleet-wide{since}; version {}\n", state.version)
        }
    }
}

/// The active boosts of `GET /v1/status` as a table (or a line saying none).
pub(super) fn boost_table(boosts: &serde_json::Value) -> String {
    let list = boosts.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "no active boosts\n".into();
    }
    let text = |b: &serde_json::Value, k: &str| match b.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    };
    let mut rows = vec![[
        "ROUTE".to_string(),
        "SIDECAR".into(),
        "TRIGGER".into(),
        "RATE".into(),
        "ENDS IN".into(),
    ]];
    for b in list {
        rows.push([
            text(b, "route"),
            format!("{}/{}", text(b, "namespace"), text(b, "pod")),
            text(b, "trigger"),
            text(b, "rate"),
            format!("{}s", text(b, "ends_in_seconds")),
        ]);
    }
    table(&rows)
}
