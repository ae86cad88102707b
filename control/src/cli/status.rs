//! `status` and `config`: what the server serves.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use http::Method;
use serde_json::{json, Value};

use super::{table, Format};
use crate::client::{ClientError, ControlClient};
use crate::reply::encode;
use crate::sidecars::SidecarInfo;

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a workload's resolved config as YAML.
    Get {
        /// The service.
        #[arg(long)]
        service: String,
        /// The namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// A pod label, `key=value` (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Replace the base document with a YAML or JSON file.
    Apply {
        /// The file.
        file: PathBuf,
    },
}

/// `status`: the server's state and its sidecars. As JSON:
/// `{"status": GET /v1/status, "sidecars": GET /v1/sidecars}`.
pub(super) async fn status(client: &ControlClient, output: Format) -> Result<String, ClientError> {
    let status: Value = client.get("/v1/status").await?;
    let sidecars: Vec<SidecarInfo> = client.get("/v1/sidecars").await?;
    if output == Format::Json {
        return super::json(&json!({ "status": status, "sidecars": sidecars }));
    }
    let field = |k: &str| match status.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "version     {}", field("version"));
    let _ = writeln!(
        out,
        "source      {} ({})",
        field("source"),
        field("document_origin")
    );
    if let Some(Value::String(e)) = status.get("last_load_error") {
        let _ = writeln!(out, "load error  {}", e.replace('\n', "\n            "));
    }
    let _ = writeln!(out, "overrides   {}", field("override_count"));
    let _ = writeln!(out, "stage moves {}", field("stage_assignments"));
    let switch = match status.get("boosts_enabled") {
        Some(Value::Bool(false)) => "OFF fleet-wide",
        _ => "on",
    };
    let _ = writeln!(out, "boosts      {switch}");
    let _ = writeln!(
        out,
        "sidecars    {} connected, {} reporting\n",
        field("sidecar_count"),
        field("reporting_sidecars")
    );
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut rows = vec![[
        "SIDECAR".to_string(),
        "SERVICE".into(),
        "SENT".into(),
        "ACKED".into(),
        "LAST REJECTION".into(),
    ]];
    for s in &sidecars {
        rows.push([
            s.identity.clone(),
            s.service.clone().unwrap_or_else(|| "-".into()),
            opt(s.sent_version),
            opt(s.acked_version),
            s.last_rejection
                .as_ref()
                .map_or("-".into(), |r| format!("v{}: {}", r.version, r.error)),
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');
    out.push_str(&super::boosts::boost_table(
        status.get("boosts").unwrap_or(&Value::Null),
    ));
    Ok(out)
}

/// `config get` and `config apply`.
pub(super) async fn config(
    client: &ControlClient,
    cmd: ConfigCommand,
) -> Result<String, ClientError> {
    match cmd {
        ConfigCommand::Get {
            service,
            namespace,
            labels,
        } => {
            let mut q = format!("service={}", encode(&service));
            if let Some(ns) = namespace {
                let _ = write!(q, "&namespace={}", encode(&ns));
            }
            for l in labels {
                if !l.contains('=') {
                    return Err(ClientError::Request(format!(
                        "label {l:?} is not key=value"
                    )));
                }
                let _ = write!(q, "&label={}", encode(&l));
            }
            let v: Value = client.get(&format!("/v1/config?{q}")).await?;
            let yaml = serde_yaml::to_string(v.get("config").unwrap_or(&Value::Null))
                .map_err(|e| ClientError::Decode(e.to_string()))?;
            let version = v.get("version").cloned().unwrap_or(Value::Null);
            Ok(format!("# version {version}\n{yaml}"))
        }
        ConfigCommand::Apply { file } => {
            let text = std::fs::read(&file)
                .map_err(|e| ClientError::Request(format!("{}: {e}", file.display())))?;
            let v: Value = client
                .call(
                    Method::PUT,
                    "/v1/config/base",
                    Some(("application/yaml", text.into())),
                )
                .await?;
            Ok(format!(
                "applied; version {}\n",
                v.get("version").unwrap_or(&Value::Null)
            ))
        }
    }
}
