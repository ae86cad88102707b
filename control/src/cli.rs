//! The command line: `serve`, and client commands that talk to a running server.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use http::Method;
use serde_json::Value;

use crate::auth::Token;
use crate::client::{ClientError, ControlClient};
use crate::overrides::{NewOverride, Override};
use crate::reply::encode;
use crate::server::{self, ServeConfig};
use crate::sidecars::SidecarInfo;

/// meshtrace control plane: pushes versioned config to meshtrace sidecars.
#[derive(Debug, Parser)]
#[command(name = "meshtrace-control", version)]
pub struct Cli {
    /// The control plane to talk to (client commands).
    #[arg(
        long,
        global = true,
        env = "MESHTRACE_CONTROL_URL",
        default_value = "http://127.0.0.1:15010"
    )]
    pub server: String,
    /// The bearer token for writes (client commands; `serve` accepts it too).
    #[arg(
        long,
        global = true,
        env = "MESHTRACE_CONTROL_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control-plane server.
    Serve(ServeArgs),
    /// Commands that talk to a running server.
    #[command(flatten)]
    Client(ClientCommand),
}

/// Commands that talk to a running server (`--server`, `--token`).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Show the version and the connected sidecars.
    Status,
    /// Read or replace configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage incident overrides.
    #[command(subcommand)]
    Override(OverrideCommand),
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The source YAML document (a mounted ConfigMap); polled for changes.
    #[arg(long)]
    pub source: PathBuf,
    /// The state file (overrides, API changes, last version).
    #[arg(long)]
    pub state: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "0.0.0.0:15010")]
    pub listen: SocketAddr,
    /// A file holding the write token (e.g. a mounted Secret).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

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

/// `override` subcommands.
#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Add an override.
    Add {
        /// The service whose sampling rate is set.
        #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
        service: Option<String>,
        /// The tenant whose traces are forced.
        #[arg(long)]
        tenant: Option<String>,
        /// The rate, in [0, 1].
        #[arg(long)]
        rate: f64,
        /// How long it lasts (`30m`, `2h`).
        #[arg(long = "for")]
        duration: String,
        /// Tenant overrides: forced traces per second (default 100).
        #[arg(long)]
        traces_per_second: Option<f64>,
        /// Why (for the incident log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List active overrides.
    List,
    /// Remove an override.
    Rm {
        /// Its id.
        id: String,
    },
}

/// Runs a parsed command line; the error is printed by `main`.
pub async fn run(cli: Cli) -> Result<(), String> {
    let command = match cli.command {
        Command::Serve(args) => return serve(args, cli.token).await,
        Command::Client(command) => command,
    };
    let client = ControlClient::new(&cli.server, cli.token).map_err(|e| e.to_string())?;
    let out = match command {
        ClientCommand::Status => status(&client).await,
        ClientCommand::Config(c) => config(&client, c).await,
        ClientCommand::Override(o) => overrides(&client, o).await,
    };
    let text = out.map_err(|e| e.to_string())?;
    print!("{text}");
    Ok(())
}

async fn serve(args: ServeArgs, env_token: Option<String>) -> Result<(), String> {
    let token = match (&args.token_file, env_token) {
        (Some(file), _) => Token::from_file(file)?,
        (None, Some(t)) => Token::new(&t),
        (None, None) => Token::none(),
    };
    if !token.is_configured() {
        tracing::warn!("no token configured: every write through the API will be refused");
    }
    let server = server::start(ServeConfig {
        source: args.source,
        state: args.state,
        listen: args.listen,
        token,
        poll_interval: crate::source::POLL_INTERVAL,
    })
    .await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown.cancel();
    server.task.await.map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn status(client: &ControlClient) -> Result<String, ClientError> {
    let status: Value = client.get("/v1/status").await?;
    let sidecars: Vec<SidecarInfo> = client.get("/v1/sidecars").await?;
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
    let _ = writeln!(out, "sidecars    {}\n", field("sidecar_count"));
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
    Ok(out)
}

async fn config(client: &ControlClient, cmd: ConfigCommand) -> Result<String, ClientError> {
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

async fn overrides(client: &ControlClient, cmd: OverrideCommand) -> Result<String, ClientError> {
    match cmd {
        OverrideCommand::Add {
            service,
            tenant,
            rate,
            duration,
            traces_per_second,
            reason,
        } => {
            let body = NewOverride {
                service,
                tenant,
                rate,
                traces_per_second,
                duration: Some(duration),
                expires_at: None,
                reason,
            };
            let o: Override = client
                .send_json(Method::POST, "/v1/overrides", &body)
                .await?;
            Ok(format!("added {} (expires {})\n", o.id, o.expires_at))
        }
        OverrideCommand::List => {
            let list: Vec<Override> = client.get("/v1/overrides").await?;
            let mut rows = vec![[
                "ID".to_string(),
                "TARGET".into(),
                "RATE".into(),
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
                    o.id,
                    target,
                    o.rate.to_string(),
                    o.expires_at.to_string(),
                    o.reason.unwrap_or_else(|| "-".into()),
                ]);
            }
            Ok(table(&rows))
        }
        OverrideCommand::Rm { id } => {
            let o: Override = client
                .call(
                    Method::DELETE,
                    &format!("/v1/overrides/{}", encode(&id)),
                    None,
                )
                .await?;
            Ok(format!("removed {}\n", o.id))
        }
    }
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn override_add_needs_exactly_one_target() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["meshtrace-control"], args].concat());
        assert!(parse(&["override", "add", "--rate", "1", "--for", "30m"]).is_err());
        assert!(parse(&[
            "override",
            "add",
            "--service",
            "a",
            "--tenant",
            "b",
            "--rate",
            "1",
            "--for",
            "1m"
        ])
        .is_err());
        let ok = parse(&[
            "override", "add", "--tenant", "acme", "--rate", "1", "--for", "30m",
        ])
        .unwrap();
        assert!(matches!(
            ok.command,
            Command::Client(ClientCommand::Override(OverrideCommand::Add { .. }))
        ));
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [["A".to_string(), "B".into()], ["long".into(), "x".into()]];
        assert_eq!(table(&rows), "A     B\nlong  x\n");
    }
}
