//! `meshtrace-proxy`: run the sidecar, check a config file, or install a pod's
//! redirect rules (`init`).

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods)]
// Production code returns errors (clippy.toml lets tests unwrap).
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meshtrace_config::{Config, LogFormat};
use meshtrace_proxy::Sidecar;

/// jemalloc gives freed memory back to the kernel after a load (glibc's arenas
/// keep it): see `.cargo/config.toml` for its settings and benches/RESULTS.md
/// "Performance (issue 18): memory" for the figures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The meshtrace sidecar proxy.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar (the default when no command is given).
    Run {
        /// Config file; without it, the embedded default (see `default-config`).
        #[arg(long, short, env = "MESHTRACE_CONFIG")]
        config: Option<PathBuf>,
        /// Log as JSON lines (overrides `log.format`).
        #[arg(long)]
        json_logs: bool,
    },
    /// Validate a config file: prints OK, or every problem, and exits non-zero on error.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the embedded default configuration, every key documented.
    DefaultConfig,
    /// Install the pod's iptables redirect rules (the init container), then exit.
    Init(meshtrace_proxy::init::InitArgs),
    /// Show what the sidecar would do with a request, without sending it: the trace
    /// headers it reads, the sampling decision and why, the headers it writes and removes.
    Explain(meshtrace_proxy::explain::ExplainArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    match cli.command.unwrap_or(Command::Run {
        config: None,
        json_logs: false,
    }) {
        Command::CheckConfig { file } => match Config::check_file(&file) {
            Ok((_, warnings)) => {
                let source_name = file.display().to_string();
                for warning in warnings {
                    let line = warning.in_source(&source_name);
                    // `file:line:col: warning: path: message`, as compilers say it.
                    match line.strip_suffix(&warning.to_string()) {
                        Some(location) => println!("{location}warning: {warning}"),
                        None => println!("warning: {line}"),
                    }
                }
                println!("OK: {}", file.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        Command::DefaultConfig => {
            print!("{}", meshtrace_config::DEFAULT_YAML);
            ExitCode::SUCCESS
        }
        Command::Run { config, json_logs } => run(config, json_logs),
        Command::Init(args) => meshtrace_proxy::init::run(&args),
        Command::Explain(args) => meshtrace_proxy::explain::run(&args),
    }
}

/// Clap's answer to a bad command line, except for `explain`, whose usage
/// errors are one line (exit 2), so a script calling it reads one message.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let explain = std::env::args_os().nth(1).is_some_and(|a| a == "explain");
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    if !explain || informational {
        error.exit();
    }
    let rendered = error.to_string();
    let line = rendered.lines().next().unwrap_or_default();
    eprintln!("explain: {}", line.trim_start_matches("error: "));
    ExitCode::from(2)
}

fn run(path: Option<PathBuf>, json_logs: bool) -> ExitCode {
    // The file is read once: the watcher starts from the very bytes the sidecar
    // was configured with, so a change written while it starts is not missed.
    let loaded = match &path {
        Some(path) => Config::read_file(path).and_then(|content| {
            Ok((
                Config::from_file_content(&content, &path.display().to_string())?,
                Some(content),
            ))
        }),
        None => Config::from_env_defaults().map(|config| (config, None)),
    };
    let (mut config, started_with) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    if json_logs {
        config.log.format = LogFormat::Json;
    }
    let _log_guard = match meshtrace_proxy::logging::init(config.log.format, &config.log.level) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    // One worker runs on tokio's single-threaded scheduler: the same thread, but no
    // cross-thread wake-ups or work-stealing queues on every request.
    let mut runtime = match config.runtime.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(workers);
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    // Each worker empties its allocator cache once its traffic stops, so the
    // RSS comes back down after a load (`trim`).
    runtime.on_thread_park(meshtrace_proxy::trim::on_park);
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // With a control plane: start from its last good config, if cached.
        let config = meshtrace_proxy::reload::startup_config(config);
        let local_file = config
            .control
            .url
            .is_none()
            .then_some(path)
            .flatten()
            .zip(started_with);
        let poll = config.control.file_poll.get();
        let sidecar = match Sidecar::start(config).await {
            Ok(sidecar) => sidecar,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        if let Some((path, started_with)) = local_file {
            meshtrace_proxy::reload::watch_file(sidecar.reloader(), path, started_with, poll);
        }
        tokio::spawn(shutdown_on_signal(sidecar_drain_trigger(&sidecar)));
        tokio::spawn(meshtrace_proxy::trim::tick());
        sidecar.wait().await;
        ExitCode::SUCCESS
    })
}

/// A closure that starts the drain, for the signal task.
fn sidecar_drain_trigger(sidecar: &Sidecar) -> impl FnOnce() + Send + 'static {
    let drain = sidecar.drain_handle();
    move || drain.start()
}

/// Starts the drain on SIGTERM or SIGINT.
async fn shutdown_on_signal(trigger: impl FnOnce()) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; use POST /shutdown to stop");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "draining");
    trigger();
}
