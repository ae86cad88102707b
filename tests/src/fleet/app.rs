//! The fleet's applications: `tests/python/fleet_app.py` processes, each running
//! one real tracer library from the repository's venv.
//!
//! An app binds `127.0.0.1:0` and prints `LISTENING <port>`; its sidecar can only
//! be started after that (it forwards to that port), and the app can only learn
//! its sidecar's outbound listener after that. So an app that calls a next hop
//! gets the URL on stdin ([`FleetApp::call_next_through`]) and acknowledges it
//! with `NEXT <url>` before it serves: no port is guessed, nothing sleeps.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

use crate::bound::within_for;
use crate::process::Output;

/// How long an app may take to start: importing ddtrace takes seconds on a busy
/// machine.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long an app may take to acknowledge its next hop's URL.
const NEXT_LIMIT: Duration = Duration::from_secs(10);

/// The tracer library an app runs, with the one format it propagates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    /// OpenTelemetry SDK, B3 multi-header propagator only.
    OtelB3Multi,
    /// OpenTelemetry SDK, W3C Trace Context propagator only.
    OtelW3c,
    /// ddtrace with tracing disabled; `style` is `DD_TRACE_PROPAGATION_STYLE`,
    /// `None` for ddtrace's default.
    Ddtrace {
        /// The propagation style, or ddtrace's default.
        style: Option<&'static str>,
    },
}

// === impl Lib ===

impl Lib {
    /// The script's arguments for this library.
    fn args(self) -> Vec<&'static str> {
        match self {
            Self::OtelB3Multi => vec!["--lib", "otel-b3multi"],
            Self::OtelW3c => vec!["--lib", "otel-w3c"],
            Self::Ddtrace { style: None } => vec!["--lib", "ddtrace"],
            Self::Ddtrace { style: Some(style) } => vec!["--lib", "ddtrace", "--style", style],
        }
    }
}

impl std::fmt::Display for Lib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtelB3Multi => f.write_str("otel-b3multi"),
            Self::OtelW3c => f.write_str("otel-w3c"),
            Self::Ddtrace { style: None } => f.write_str("ddtrace(default styles)"),
            Self::Ddtrace { style: Some(s) } => write!(f, "ddtrace(style={s})"),
        }
    }
}

/// A running `fleet_app.py`; killed when dropped.
#[derive(Debug)]
pub struct FleetApp {
    name: String,
    addr: SocketAddr,
    stdin: Option<ChildStdin>,
    output: Output,
    _child: Child,
}

// === impl FleetApp ===

impl FleetApp {
    /// Starts app `name` running `lib` and waits until it listens. With
    /// `next_host` (the authority its sidecar routes on, `app2:80`), it will call
    /// the next hop once told where ([`FleetApp::call_next_through`]).
    pub async fn spawn(name: &str, lib: Lib, next_host: Option<&str>) -> Self {
        let python = venv_python();
        let mut command = Command::new(&python);
        command
            .arg("-u")
            .arg(script())
            .args(["--name", name, "--listen", "127.0.0.1:0"])
            .args(lib.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(host) = next_host {
            command.args(["--next-url", "-", "--next-host", host]);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let output = Output::default();
        output.capture(child.stdout.take().expect("stdout is piped"));
        output.capture(child.stderr.take().expect("stderr is piped"));
        let what = format!("{name} ({lib}) to print LISTENING");
        let listening = |line: &str| line.starts_with("LISTENING ");
        let line = within_for(START_LIMIT, &what, output.first(&listening))
            .await
            .unwrap_or_else(|| {
                panic!("{name} ({lib}) exited before listening:\n{}", output.text())
            });
        let port: u16 = line["LISTENING ".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name} printed {line:?}: {e}"));
        Self {
            name: name.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stdin: child.stdin.take(),
            output,
            _child: child,
        }
    }

    /// Where the app listens (its sidecar's inbound target).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything the app printed (its request log, tracebacks).
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Tells the app its next hop is reached through `outbound` (its sidecar's
    /// outbound listener) and waits for the acknowledgement; after it the app
    /// serves.
    pub async fn call_next_through(&mut self, outbound: SocketAddr) {
        let url = format!("http://{outbound}");
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{} was already told its next hop", self.name));
        let sent = async {
            stdin.write_all(format!("{url}\n").as_bytes()).await?;
            stdin.flush().await
        };
        sent.await
            .unwrap_or_else(|e| panic!("cannot write to {}'s stdin: {e}", self.name));
        let ack = format!("NEXT {url}");
        let what = format!("{} to acknowledge {url}", self.name);
        let acknowledged = |line: &str| line == ack;
        within_for(NEXT_LIMIT, &what, self.output.first(&acknowledged))
            .await
            .unwrap_or_else(|| panic!("{} exited instead:\n{}", self.name, self.output.text()));
    }
}

/// `tests/python/fleet_app.py`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/fleet_app.py")
}

/// `<repo>/.venv/bin/python`; fails the test, with the fix, when it is missing.
fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: the mixed-fleet test runs real tracer libraries from \
         tests/python/requirements.txt; create the venv with \
         `python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt` \
         (or run `bash scripts/test-all.sh`)",
        python.display()
    );
    python
}
