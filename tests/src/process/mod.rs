//! Runs the real `meshtrace-proxy` binary, for what only a process shows:
//! signals, exit codes, logs on stdout, memory use, running as another user.
//!
//! ```no_run
//! # async fn demo(app: std::net::SocketAddr) {
//! use meshtrace_tests::sidecar;
//!
//! let mut proxy = sidecar::new().inbound_to(app).process().env("POD_NAME", "web-0").spawn().await;
//! proxy.signal_term();
//! assert!(proxy.wait_exit(std::time::Duration::from_secs(5)).await.success());
//! # }
//! ```
//!
//! The configuration is written as YAML to a temporary file passed with
//! `--config`. The process announces the ports it bound (`sidecar ready
//! inbound=<addr> outbound=<addr> admin=<addr>`) and is ready once its admin
//! `/ready` answers 200. Its output keeps being captured afterwards ([`Output`]).
//!
//! [`Supervised`] is how every child is run, here and in the demo and the load
//! harness: killed on drop, readiness polled from an HTTP endpoint.
//! [`ControlProcess`] runs `meshtrace-control serve` the same way.

mod binary;
mod config_file;
mod control;
pub mod injector;
mod output;
pub mod probe;
mod ready;
mod supervise;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use meshtrace_config::Config;
use tokio::process::Command;

pub use binary::{control_binary, proxy_binary};
use config_file::ConfigFile;
pub use control::ControlProcess;
pub use output::Output;
pub use supervise::{kill_all, log_path, Group, Logs, Supervised};

/// How to run a proxy process; made by [`crate::sidecar::Builder::process`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until spawned"]
pub struct Builder {
    config: Config,
    env: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
    uid: Option<u32>,
    gid: Option<u32>,
    wrapper: Vec<OsString>,
}

/// A running `meshtrace-proxy` process; killed (and its config file removed)
/// when dropped, as every [`Supervised`] child is.
#[derive(Debug)]
pub struct ProxyProcess {
    process: Supervised,
    inbound: SocketAddr,
    outbound: SocketAddr,
    admin: SocketAddr,
    config: Config,
    _config_file: ConfigFile,
}

// === impl Builder ===

impl Builder {
    /// A process running `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            env: Vec::new(),
            args: Vec::new(),
            uid: None,
            gid: None,
            wrapper: Vec::new(),
        }
    }

    /// Runs the binary through a wrapper command that execs it, such as
    /// `ip netns exec NS setpriv --reuid 1337 …`: the process then lives in
    /// that network namespace, as that user.
    pub fn wrapper<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.wrapper = command.into_iter().map(Into::into).collect();
        self
    }

    /// Sets an environment variable (`POD_NAME`, `MESHTRACE_LOG_LEVEL`, …). The
    /// test's own `MESHTRACE_*`, `POD_*` and `NODE_NAME` are not inherited.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Adds a command-line argument after `run --config <file>` (`--json-logs`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the process as this user (the sidecar's uid 1337, which redirection
    /// rules exempt); the test must run as root.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Runs the process with this group.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Starts the process and waits until it is ready; panics with its output if
    /// it exits or stays silent instead.
    pub async fn spawn(self) -> ProxyProcess {
        let binary = binary::proxy_binary().await;
        let config_file = ConfigFile::write(&self.config);
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("run")
            .arg("--config")
            .arg(config_file.path())
            .args(&self.args);
        for (name, _) in std::env::vars_os() {
            let name_str = name.to_string_lossy();
            if name_str.starts_with("MESHTRACE_")
                || name_str.starts_with("POD_")
                || name_str == "NODE_NAME"
            {
                command.env_remove(&name);
            }
        }
        command
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(uid) = self.uid {
            command.uid(uid);
        }
        if let Some(gid) = self.gid {
            command.gid(gid);
        }
        let mut process = Supervised::spawn("the proxy", command, Logs::Capture, Group::Inherit)
            .unwrap_or_else(|e| panic!("{e}"));
        // Behind a wrapper the process may live in another network namespace,
        // where its admin endpoint is out of reach: there, the announcement
        // (logged once the ready flag is set) is the readiness.
        let (inbound, outbound, admin) = if self.wrapper.is_empty() {
            ready::ready(&mut process).await
        } else {
            ready::announced(&process).await
        };
        ProxyProcess {
            process,
            inbound,
            outbound,
            admin,
            config: self.config,
            _config_file: config_file,
        }
    }
}

// === impl ProxyProcess ===

impl ProxyProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The bound inbound address.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.inbound
    }

    /// The bound outbound address.
    pub fn outbound_addr(&self) -> SocketAddr {
        self.outbound
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The config file the process was started with (`--config`): a test may
    /// rewrite it to exercise local file mode.
    pub fn config_file(&self) -> &std::path::Path {
        self._config_file.path()
    }

    /// The configuration the process was given.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Everything the process has written so far, and more to come.
    pub fn output(&self) -> &Output {
        self.process.output()
    }

    /// Sends `SIGTERM`, as Kubernetes does to stop a pod: a graceful drain.
    pub fn signal_term(&self) {
        self.process.signal_term().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits for the process to exit, at most `timeout`; panics with its output if
    /// it does not.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process
            .wait_exit(timeout)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The Prometheus metrics text from its admin `/metrics`.
    pub async fn metrics(&self) -> String {
        crate::sidecar::scrape(self.admin).await
    }

    /// The process's peak resident memory (`VmHWM`), in KiB; the process must
    /// still be running.
    pub fn peak_rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {path}: has the proxy exited?"))
    }
}
