//! `demo`: one command, one local mesh, one W3C trace through two legacy apps.
//! Run it with `bash scripts/demo.sh` (or `cargo run --release --example demo`
//! once the release binaries are built).
//!
//! ```text
//! client ─► sidecar A ─► frontend app ─► sidecar A ─► sidecar B ─► backend app
//!           inbound      speaks B3       outbound     inbound      speaks Datadog
//! ```
//!
//! Everything runs on 127.0.0.1: an in-process OTLP/gRPC collector, the two apps
//! (tasks of this process), and child processes found next to this binary (or in
//! `MESHTRACE_BIN_DIR`): `meshtrace-control serve` and two `meshtrace-proxy run`.
//! The control plane's source document sets `sampling.default_rate: 0.0`, so the
//! first request is not traced, though its context still flows. An incident
//! override (the real `meshtrace-control override add` CLI) then samples
//! `frontend` at 100%; once sidecar A has acknowledged the new version, the
//! second request comes out as one trace: sidecar A's SERVER span, the B3 app's
//! span, sidecar A's CLIENT span, sidecar B's SERVER span, the Datadog app's span.
//!
//! The sidecars get their per-pod ports from the environment, as the injector
//! sets them in Kubernetes (`MESHTRACE_*_LISTEN`, `MESHTRACE_APP_PORT`): pushed
//! configs replace everything else. Ports are picked free just before use.
//!
//! Children run under the test crate's supervisor
//! ([`meshtrace_tests::process::Supervised`]), each in its own process group,
//! killed on every way out (success, failure, Ctrl-C, SIGTERM), readiness polled
//! from `/healthz` and `/ready`. Their pids are listed in `<dir>/pids` so that
//! `scripts/demo.sh` can reap them should this process be killed.
//!
//! The modules follow the story: [`mesh`] starts and drives the mesh, [`apps`]
//! are the two legacy apps, [`tree`] prints the collected trace, [`procs`] runs
//! the children, [`workloads`] configures the sidecars and the control plane.

#![forbid(unsafe_code)]

mod apps;
mod mesh;
mod procs;
mod tree;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh::Mesh;
use procs::Processes;

/// Errors are messages for the person running the demo.
pub(crate) type Result<T, E = String> = std::result::Result<T, E>;

/// The longest any one wait may take before the demo gives up and says why.
pub(crate) const WAIT: Duration = Duration::from_secs(15);
/// How long the collector is watched to show that an untraced request exported nothing.
pub(crate) const QUIET: Duration = Duration::from_secs(1);
/// The spans one traced request makes: 3 from the sidecars, 1 from each app.
pub(crate) const SPANS_PER_TRACE: usize = 5;
/// The instrumentation scope of the sidecar's spans.
pub(crate) const SIDECAR_SCOPE: &str = "meshtrace-proxy";
/// The override the demo adds, as `meshtrace-control` arguments.
pub(crate) const OVERRIDE: [&str; 10] = [
    "override",
    "add",
    "--service",
    "frontend",
    "--rate",
    "1.0",
    "--for",
    "5m",
    "--reason",
    "demo",
];

#[tokio::main]
async fn main() -> ExitCode {
    let dir = match WorkDir::create() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    let procs = Processes::new(dir.path.join("pids"));
    let outcome = tokio::select! {
        result = run(&dir.path, &procs) => result.map_err(Stop::Failed),
        signal = interrupted() => Err(Stop::Signal(signal)),
    };
    procs.stop().await;
    match outcome {
        Ok(()) => {
            dir.finish(true);
            ExitCode::SUCCESS
        }
        Err(Stop::Signal(signal)) => {
            eprintln!("\n{signal}: the mesh is stopped");
            dir.finish(true);
            ExitCode::from(130)
        }
        Err(Stop::Failed(error)) => {
            eprintln!("\ndemo failed: {error}");
            procs.print_log_tails();
            dir.finish(false);
            ExitCode::FAILURE
        }
    }
}

/// Why the demo ended early.
enum Stop {
    /// SIGINT or SIGTERM.
    Signal(&'static str),
    /// Something did not work; the message says what.
    Failed(String),
}

/// The demo: the mesh, the two acts, the summary.
async fn run(dir: &Path, procs: &Processes) -> Result<()> {
    println!("meshtrace demo: a control plane, two sidecars, a B3 app, a Datadog app, a collector");
    let mesh = Mesh::start(dir, procs).await?;
    mesh.print();

    section("1. sampling.default_rate 0.0 everywhere: nothing is traced");
    let same_trace = mesh.untraced_request().await?;

    section("2. incident override: sample `frontend` at 100% for 5 minutes");
    let version = mesh.add_override().await?;
    let trace_id = mesh.traced_request().await?;

    let [a, b] = &mesh.sidecars;
    let b_version = mesh.acked(&b.identity()).await?.unwrap_or(0);
    section("summary");
    let joined = if same_trace { "yes" } else { "NO" };
    println!("  request 1  default_rate 0.0: 0 spans exported; both apps still joined one trace: {joined}");
    println!(
        "  override   frontend at 100% (real CLI): {} acked v{version}, {} still on v{b_version}",
        a.identity(),
        b.identity()
    );
    println!("  request 2  one W3C trace {trace_id}, {SPANS_PER_TRACE} spans:");
    println!("             sidecar A -> frontend app (B3) -> sidecar A -> sidecar B -> backend app (Datadog)");
    Ok(())
}

/// Where configs, state and logs go: `MESHTRACE_DEMO_DIR` (the script's, which
/// it removes), else a directory of our own, removed after a successful run.
struct WorkDir {
    path: PathBuf,
    owned: bool,
}

impl WorkDir {
    fn create() -> Result<Self> {
        let (path, owned) = match std::env::var_os("MESHTRACE_DEMO_DIR") {
            Some(dir) => (PathBuf::from(dir), false),
            None => (
                std::env::temp_dir().join(format!("meshtrace-demo-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path, owned })
    }

    fn finish(&self, success: bool) {
        if !success {
            eprintln!("configs and logs: {}", self.path.display());
        } else if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// === signals and output ===

/// Resolves to the name of the first SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

/// Writes a config or token file; the error names it.
pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A heading between the acts.
pub(crate) fn section(title: &str) {
    println!("\n== {title} ==");
}

/// `text`, indented under the command that printed it.
pub(crate) fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}").trim_end().to_string() + "\n")
        .collect()
}

/// Lower-case hex, as trace ids are shown.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, as OTLP timestamps count it.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
