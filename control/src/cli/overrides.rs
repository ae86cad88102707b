//! `override add | list | update | extend | rm`.

use clap::{ArgGroup, Subcommand};

use super::{table, Format, Output};
use crate::client::{ClientError, ControlClient};
use crate::overrides::{NewOverride, Override, OverrideChange, DEFAULT_TRACES_PER_SECOND};

/// `override` subcommands.
#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Add an override.
    Add {
        /// The service whose every request is sampled at the rate (even when the
        /// caller said not sampled), within the budget.
        #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
        service: Option<String>,
        /// The tenant whose traces are forced.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this namespace (default: every namespace).
        #[arg(long)]
        namespace: Option<String>,
        /// The rate, in [0, 1].
        #[arg(long)]
        rate: f64,
        /// How long it lasts (`30m`, `2h`).
        #[arg(long = "for")]
        duration: String,
        /// Forced traces per second (default 100).
        #[arg(long, visible_alias = "budget")]
        traces_per_second: Option<f64>,
        /// Why (for the incident log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List active overrides.
    List {
        /// `table` or `json`.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Change an override in place (same id).
    #[command(group(
        ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["rate", "budget", "duration", "extend", "reason"])
    ))]
    Update {
        /// Its id.
        id: String,
        /// A new rate, in [0, 1].
        #[arg(long)]
        rate: Option<f64>,
        /// A new budget, in forced traces per second.
        #[arg(long, visible_alias = "traces-per-second")]
        budget: Option<f64>,
        /// A new expiry, this long from now.
        #[arg(long = "for", conflicts_with = "extend")]
        duration: Option<String>,
        /// A new expiry, this much after the current one.
        #[arg(long)]
        extend: Option<String>,
        /// A new reason (empty: none).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Push an override's expiry back (`override update ID --extend DURATION`).
    Extend {
        /// Its id.
        id: String,
        /// How much longer (`30m`, `2h`).
        duration: String,
    },
    /// Remove an override.
    Rm {
        /// Its id.
        id: String,
    },
}

pub(super) async fn run(
    client: &ControlClient,
    cmd: OverrideCommand,
) -> Result<Output, ClientError> {
    match cmd {
        OverrideCommand::Add {
            service,
            tenant,
            namespace,
            rate,
            duration,
            traces_per_second,
            reason,
        } => {
            let body = NewOverride {
                service,
                tenant,
                namespace,
                rate,
                traces_per_second,
                duration: Some(duration),
                expires_at: None,
                reason,
            };
            let created = client.add_override(&body).await?;
            let o = &created.created;
            Ok(Output {
                stdout: format!("added {} (expires {})\n", o.id, o.expires_at),
                warnings: created.warnings,
            })
        }
        OverrideCommand::List { output } => {
            let list = client.overrides().await?;
            match output {
                Format::Json => super::json(&list).map(Into::into),
                Format::Table => Ok(list_table(list).into()),
            }
        }
        OverrideCommand::Update {
            id,
            rate,
            budget,
            duration,
            extend,
            reason,
        } => {
            let change = OverrideChange {
                rate,
                traces_per_second: budget,
                duration,
                extend,
                expires_at: None,
                reason,
            };
            update(client, &id, &change).await
        }
        OverrideCommand::Extend { id, duration } => {
            let change = OverrideChange {
                extend: Some(duration),
                ..OverrideChange::default()
            };
            update(client, &id, &change).await
        }
        OverrideCommand::Rm { id } => {
            let o = client.remove_override(&id).await?;
            Ok(format!("removed {}\n", o.id).into())
        }
    }
}

async fn update(
    client: &ControlClient,
    id: &str,
    change: &OverrideChange,
) -> Result<Output, ClientError> {
    let o = client.update_override(id, change).await?;
    Ok(format!(
        "updated {} (rate {}, budget {}/s, expires {})\n",
        o.id,
        o.rate,
        budget(&o),
        o.expires_at
    )
    .into())
}

fn budget(o: &Override) -> f64 {
    o.traces_per_second.unwrap_or(DEFAULT_TRACES_PER_SECOND)
}

fn list_table(list: Vec<Override>) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "TARGET".into(),
        "NAMESPACE".into(),
        "RATE".into(),
        "BUDGET/S".into(),
        "EXPIRES".into(),
        "REASON".into(),
    ]];
    for o in list {
        let target = match (&o.service, &o.tenant) {
            (Some(s), _) => format!("service={s}"),
            (_, Some(t)) => format!("tenant={t}"),
            _ => "-".into(),
        };
        rows.push([
            o.id.clone(),
            target,
            o.namespace.clone().unwrap_or_else(|| "(all)".into()),
            o.rate.to_string(),
            budget(&o).to_string(),
            o.expires_at.to_string(),
            o.reason.unwrap_or_else(|| "-".into()),
        ]);
    }
    table(&rows)
}
