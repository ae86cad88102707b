//! The command line: `serve`, `check`, and client commands that talk to a running
//! server.
//!
//! Client commands print a human table by default; `-o json` (on `status`,
//! `override list` and `migration`) prints the API's JSON instead, for scripts.
//! Warnings from the server (e.g. an override for a service nobody has heard of)
//! go to stderr as `warning: …` and do not change the exit status.

mod boosts;
mod inject;
mod migration;
mod overrides;
mod status;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use self::boosts::BoostCommand;
pub use self::inject::{InjectArgs, InjectorArgs};
pub use self::migration::{MigrationArgs, MigrationCommand, StageTarget};
pub use self::overrides::OverrideCommand;
pub use self::status::ConfigCommand;
use crate::auth::Token;
use crate::client::{ClientError, ControlClient};
use crate::server::{self, ConnectionLimits, ServeConfig};

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
    /// Validate a source document offline, with the server's own messages.
    Check {
        /// The YAML file.
        file: PathBuf,
    },
    /// Run the sidecar injector (a mutating admission webhook over HTTPS).
    Injector(InjectorArgs),
    /// Print a manifest with the sidecar injected, as the webhook would.
    Inject(InjectArgs),
    /// Commands that talk to a running server.
    #[command(flatten)]
    Client(ClientCommand),
}

/// Commands that talk to a running server (`--server`, `--token`).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Show the version and the connected sidecars.
    Status {
        /// `table` or `json`.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Read or replace configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage incident overrides.
    #[command(subcommand)]
    Override(OverrideCommand),
    /// Show the fleet's legacy → W3C migration, or move a workload's stage.
    Migration(MigrationArgs),
    /// Turn incident boosts off (or on) on every sidecar, or show them.
    #[command(subcommand)]
    Boost(BoostCommand),
}

/// How a client command prints what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    #[default]
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Where `serve` keeps its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A local file.
    #[default]
    File,
    /// A ConfigMap, shared by replicas.
    Kubernetes,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The source YAML document (a mounted ConfigMap); polled for changes.
    #[arg(long)]
    pub source: PathBuf,
    /// The state file (overrides, stage moves, API changes), with `--store file`.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Where the state is kept: `file` (`--state`; one replica) or
    /// `kubernetes` (ConfigMap `--store-name` in the pod's namespace, shared by
    /// every replica; credentials from the service account or KUBECONFIG).
    #[arg(long, value_enum, default_value_t = StoreKind::File)]
    pub store: StoreKind,
    /// The state ConfigMap's name, with `--store kubernetes`.
    #[arg(long, default_value = crate::state::kubernetes::DEFAULT_NAME)]
    pub store_name: String,
    /// Where to listen.
    #[arg(long, default_value = "0.0.0.0:15010")]
    pub listen: SocketAddr,
    /// A file holding the write token (e.g. a mounted Secret).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The longest an incident override may last (`24h`, `90m`).
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub max_override_duration: Duration,
    /// Open connections at most; beyond, new ones wait in the listen backlog.
    /// Lowered to the open-files limit minus 64 (logged). A sidecar holds one.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// A new connection that sends nothing for this long is closed.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub first_byte_timeout: Duration,
    /// A request head must be complete this long after the connection was
    /// accepted (later HTTP/1 heads: after the previous response; this also
    /// closes HTTP/1 keep-alive connections idle for as long).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2:
    /// GOAWAY). Watch streams are requests in flight: never cut.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
}

impl ServeArgs {
    /// The state file; required with `--store file` (unused with Kubernetes).
    pub fn state_file(&self) -> Result<PathBuf, String> {
        match (self.store, &self.state) {
            (StoreKind::File, None) => {
                Err("--state FILE is required with --store file (the default)".into())
            }
            (_, state) => Ok(state.clone().unwrap_or_default()),
        }
    }

    /// The connection limits these flags ask for.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            first_byte_timeout: self.first_byte_timeout,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// What a client command prints: its output, and warnings for stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// For stdout.
    pub stdout: String,
    /// For stderr, one `warning: …` line each.
    pub warnings: Vec<String>,
}

impl From<String> for Output {
    fn from(stdout: String) -> Self {
        Self {
            stdout,
            warnings: Vec::new(),
        }
    }
}

/// Runs a parsed command line; the error is printed by `main`.
pub async fn run(cli: Cli) -> Result<(), String> {
    let command = match cli.command {
        Command::Serve(args) => return serve(args, cli.token).await,
        Command::Check { file } => return check(&file),
        Command::Injector(args) => return inject::injector(args).await,
        Command::Inject(args) => return inject::inject_offline(&args),
        Command::Client(command) => command,
    };
    let client = ControlClient::new(&cli.server, cli.token).map_err(|e| e.to_string())?;
    let out = run_client(&client, command)
        .await
        .map_err(|e| e.to_string())?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", out.stdout);
    Ok(())
}

/// Runs a client command against `client` and returns what it would print.
pub async fn run_client(
    client: &ControlClient,
    command: ClientCommand,
) -> Result<Output, ClientError> {
    match command {
        ClientCommand::Status { output } => status::status(client, output).await.map(Into::into),
        ClientCommand::Config(c) => status::config(client, c).await.map(Into::into),
        ClientCommand::Override(o) => overrides::run(client, o).await,
        ClientCommand::Migration(m) => migration::run(client, m).await.map(Into::into),
        ClientCommand::Boost(b) => boosts::run(client, b).await.map(Into::into),
    }
}

fn check(file: &std::path::Path) -> Result<(), String> {
    match crate::check::check(file) {
        Ok(report) => {
            print!("{report}");
            Ok(())
        }
        Err(problems) => {
            eprintln!("{problems}");
            let n = problems.lines().count();
            Err(format!(
                "{} is not valid ({n} problem{})",
                file.display(),
                if n == 1 { "" } else { "s" }
            ))
        }
    }
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
    let limits = args.limits();
    let state = args.state_file()?;
    let server = server::start(ServeConfig {
        source: args.source,
        state,
        kubernetes: (args.store == StoreKind::Kubernetes).then_some(args.store_name),
        listen: args.listen,
        token,
        poll_interval: crate::source::POLL_INTERVAL,
        max_override_duration: args.max_override_duration,
        limits,
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write it like 24h or 90m"))?;
    if d.is_zero() {
        return Err("must be longer than 0s".into());
    }
    Ok(d)
}

/// Pretty JSON and a newline.
fn json<T: serde::Serialize>(value: &T) -> Result<String, ClientError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| ClientError::Decode(e.to_string()))
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
    use crate::overrides::DEFAULT_MAX_DURATION;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["meshtrace-control"], args].concat())
    }

    #[test]
    fn override_add_needs_exactly_one_target() {
        assert!(parse(&["override", "add", "--rate", "1", "--for", "30m"]).is_err());
        let both = [
            "override",
            "add",
            "--service",
            "a",
            "--tenant",
            "b",
            "--rate",
            "1",
            "--for",
            "1m",
        ];
        assert!(parse(&both).is_err());
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
    fn override_update_needs_a_change_and_one_expiry_at_most() {
        assert!(parse(&["override", "update", "ovr-1"]).is_err());
        let both = [
            "override", "update", "ovr-1", "--for", "1h", "--extend", "1h",
        ];
        assert!(parse(&both).is_err());
        assert!(parse(&["override", "update", "ovr-1", "--budget", "10"]).is_ok());
    }

    #[test]
    fn serve_keeps_its_state_in_a_file_or_in_kubernetes() {
        let Command::Serve(file) = parse(&["serve", "--source", "s", "--state", "t"])
            .unwrap()
            .command
        else {
            panic!("not serve");
        };
        assert_eq!(
            (file.store, file.state),
            (StoreKind::File, Some("t".into()))
        );
        let Command::Serve(no_state) = parse(&["serve", "--source", "s"]).unwrap().command else {
            panic!("not serve");
        };
        let error = no_state.state_file().unwrap_err();
        assert!(error.contains("--state FILE is required"), "{error}");
        let args = ["serve", "--source", "s", "--store", "kubernetes"];
        let Command::Serve(kube) = parse(&args).unwrap().command else {
            panic!("not serve");
        };
        assert_eq!(kube.store, StoreKind::Kubernetes);
        assert_eq!(kube.store_name, "meshtrace-control-state");
        assert!(kube.state_file().is_ok(), "no state file needed");
    }

    #[test]
    fn serve_takes_a_maximum_override_duration() {
        let args = ["serve", "--source", "s", "--state", "t"];
        let Command::Serve(serve) = parse(&args).unwrap().command else {
            panic!("not serve");
        };
        assert_eq!(serve.max_override_duration, DEFAULT_MAX_DURATION);
        let shorter = parse(&[&args[..], &["--max-override-duration", "90m"]].concat()).unwrap();
        let Command::Serve(serve) = shorter.command else {
            panic!("not serve");
        };
        assert_eq!(serve.max_override_duration, Duration::from_secs(90 * 60));
        assert!(parse(&[&args[..], &["--max-override-duration", "soon"]].concat()).is_err());
    }

    #[test]
    fn serve_connection_limits_default_and_can_be_set() {
        let args = ["serve", "--source", "s", "--state", "t"];
        let Command::Serve(serve) = parse(&args).unwrap().command else {
            panic!("not serve");
        };
        assert_eq!(serve.limits(), ConnectionLimits::default());
        let set = [
            "--max-connections",
            "50000",
            "--first-byte-timeout",
            "2s",
            "--header-timeout",
            "3s",
            "--idle-timeout",
            "5m",
        ];
        let Command::Serve(serve) = parse(&[&args[..], &set].concat()).unwrap().command else {
            panic!("not serve");
        };
        let want = ConnectionLimits {
            first_byte_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(300),
            max_connections: 50_000,
        };
        assert_eq!(serve.limits(), want);
    }

    #[test]
    fn migration_moves_need_a_service() {
        assert!(parse(&["migration", "advance"]).is_err());
        assert!(parse(&["migration", "advance", "--service", "checkout"]).is_ok());
        assert!(parse(&["migration", "set", "--service", "c", "--stage", "dual"]).is_ok());
        assert!(parse(&["migration", "set", "--service", "c", "--stage", "w4c"]).is_err());
        assert!(parse(&["migration", "-o", "json"]).is_ok());
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [["A".to_string(), "B".into()], ["long".into(), "x".into()]];
        assert_eq!(table(&rows), "A     B\nlong  x\n");
    }
}
