//! The one way meshtrace's tests, demo and load harness run a child process.
//!
//! A [`Supervised`] child is killed when its handle drops, whichever way its
//! owner ends (a passed or failed assertion, a `?`, a panic). Started in a
//! process group of its own ([`Group::Own`]), the whole group goes with it: one
//! kill stops nginx's master and its workers, and Ctrl-C on the terminal reaches
//! only the harness, which then stops everything through [`kill_all`]. Tests keep
//! their children in the test's group ([`Group::Inherit`]), so a Ctrl-C of
//! `cargo test` stops them too.
//!
//! Readiness is asked, not read from a log: [`Supervised::ready`] polls an HTTP
//! endpoint (the sidecar's admin `/ready`, the control plane's `/healthz`) until
//! it answers 2xx, and fails at once, with the child's last output, if the child
//! exits first.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{probe, Output};

/// How often readiness is asked again.
const POLL: Duration = Duration::from_millis(20);

/// How long an exited child's captured output may take to be read to its end.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// How many lines of a child's output a failure message shows.
const TAIL: usize = 20;

/// Live children by pid, and whether each leads a group of its own, for
/// [`kill_all`].
static LIVE: Mutex<BTreeMap<u32, Group>> = Mutex::new(BTreeMap::new());

/// Where a child's stdout and stderr go.
#[derive(Clone, Debug)]
pub enum Logs {
    /// Into an [`Output`] a test can wait on and print.
    Capture,
    /// Into this file (a harness's log, kept after a failure).
    File(PathBuf),
}

/// Which process group a child runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// A new group led by the child: killed as a whole, and out of reach of the
    /// terminal's Ctrl-C, which the harness handles.
    Own,
    /// The parent's group: a Ctrl-C of the test run reaches the child too.
    Inherit,
}

/// A running child process, killed (with its group, if it has one) on drop.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    pid: u32,
    group: Group,
    output: Output,
    log: Option<PathBuf>,
}

// === impl Supervised ===

impl Supervised {
    /// Starts `command` as `name` (how failures call it). Stdin is closed; the
    /// child is killed on drop and registered for [`kill_all`].
    pub fn spawn(
        name: &str,
        mut command: Command,
        logs: Logs,
        group: Group,
    ) -> Result<Self, String> {
        let log = match &logs {
            Logs::Capture => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
                None
            }
            Logs::File(path) => {
                let out =
                    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let err = out
                    .try_clone()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                command.stdout(out).stderr(err);
                Some(path.clone())
            }
        };
        if group == Group::Own {
            command.process_group(0);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        let program = command.as_std().get_program().to_owned();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.to_string_lossy()))?;
        let pid = child.id().ok_or_else(|| format!("{name} exited at once"))?;
        live().insert(pid, group);
        let output = Output::default();
        if let Some(stdout) = child.stdout.take() {
            output.capture(stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            output.capture(stderr);
        }
        Ok(Self {
            name: name.to_string(),
            child,
            pid,
            group,
            output,
            log,
        })
    }

    /// The name failures use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (and, with [`Group::Own`], the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The captured output; empty with [`Logs::File`].
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Everything the child wrote so far: its log file, or its captured output.
    pub fn log_text(&self) -> String {
        match &self.log {
            Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
            None => self.output.text(),
        }
    }

    /// The last lines the child wrote, for a failure message.
    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL)..].join("\n")
    }

    /// An error, with the child's last output, once it has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its output ends:\n{}",
                self.name,
                self.tail()
            )),
            Err(e) => Err(format!("{}: wait: {e}", self.name)),
        }
    }

    /// Waits (at most `limit`) until `GET http://{addr}{path}` answers 2xx.
    pub async fn ready(
        &mut self,
        addr: SocketAddr,
        path: &str,
        limit: Duration,
    ) -> Result<(), String> {
        let what = format!("GET http://{addr}{path} to answer 2xx");
        self.wait_until(&what, limit, || async move {
            probe::get(addr, "localhost", path)
                .await
                .is_ok_and(|(status, _)| status.is_success())
        })
        .await
    }

    /// Asks `probe` every few milliseconds (at most `limit`) until it says yes;
    /// fails at once if the child exits meanwhile.
    pub async fn wait_until<F, Fut>(
        &mut self,
        what: &str,
        limit: Duration,
        mut probe: F,
    ) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Err(error) = self.check_alive() {
                return Err(self.after_output_ends(error).await);
            }
            if probe().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not ready within {limit:?} ({what}); its output ends:\n{}",
                    self.name,
                    self.tail()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The first line of captured output (so far or to come) that `matches`,
    /// within `limit`: how a child announces what it alone knows, such as the
    /// ports it bound. Fails if the child closes its output first.
    pub async fn announced(
        &self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        match tokio::time::timeout(limit, self.output.first(&matches)).await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(format!(
                "{} ended its output before it announced {what}; it was:\n{}",
                self.name,
                self.output.text()
            )),
            Err(_) => Err(format!(
                "{} did not announce {what} within {limit:?}; its output:\n{}",
                self.name,
                self.output.text()
            )),
        }
    }

    /// Whether the child has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child
            .try_wait()
            .map_err(|e| format!("{}: wait: {e}", self.name))
    }

    /// Waits for the child to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.map_err(|e| format!("{}: wait: {e}", self.name)),
            Err(_) => Err(format!(
                "{} (pid {}) did not exit within {limit:?}; its output ends:\n{}",
                self.name,
                self.pid,
                self.tail()
            )),
        }
    }

    /// Kills the child (with its group) and waits, at most `limit`, until it is
    /// gone: for an owner that reports only once everything has stopped.
    pub async fn stop(mut self, limit: Duration) -> Result<ExitStatus, String> {
        self.kill();
        self.wait_exit(limit).await
    }

    /// Sends `SIGTERM` to the child alone, as Kubernetes does to stop a pod.
    pub fn signal_term(&self) -> Result<(), String> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .map_err(|e| format!("run kill(1): {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -TERM {} failed: {status}", self.pid))
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
        live().remove(&self.pid);
    }
}

// === impl Supervised (private) ===

impl Supervised {
    /// `error` about an exited child, said again once its captured output has
    /// been read to the end (bounded): the child may exit before the reader
    /// tasks have its last lines, which are the ones that say why.
    async fn after_output_ends(&mut self, error: String) -> String {
        if self.log.is_some() {
            // A log file holds every line the moment the child exits.
            return error;
        }
        let ended = self.output.first(&|_: &str| false);
        let _ = tokio::time::timeout(OUTPUT_DRAIN, ended).await;
        self.check_alive().err().unwrap_or(error)
    }

    /// SIGKILL to the group (if the child has one) and to the child itself.
    fn kill(&mut self) {
        if self.group == Group::Own {
            kill_group(self.pid);
        }
        // kill_on_drop also does this; being explicit keeps the intent visible.
        let _ = self.child.start_kill();
    }
}

/// Kills every child still alive, with its group: for a harness's SIGINT or
/// SIGTERM handler, which exits without running the handles' drops.
pub fn kill_all() {
    let children = std::mem::take(&mut *live());
    for (pid, group) in children {
        match group {
            Group::Own => kill_group(pid),
            Group::Inherit => kill(&pid.to_string()),
        }
    }
}

/// The path a [`Logs::File`] for `name` in `dir` takes: `dir/name.log`, spaces
/// made dashes.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.log", name.replace(' ', "-")))
}

fn kill_group(pgid: u32) {
    kill(&format!("-{pgid}"));
}

fn kill(target: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn live() -> MutexGuard<'static, BTreeMap<u32, Group>> {
    // A panic while holding the lock cannot leave the map inconsistent.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use super::*;
    use crate::apps::HttpApp;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    /// Whether `pid` is gone or a zombie: killed, whether or not reaped yet.
    fn dead(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn readiness_is_an_endpoint_answering_2xx() {
        let app = HttpApp::start().await;
        let mut child = Supervised::spawn("sleeper", sh("sleep 30"), Logs::Capture, Group::Inherit)
            .expect("spawn sh");
        let ready = child
            .ready(app.addr(), "/ready", Duration::from_secs(20))
            .await;
        assert_eq!(ready, Ok(()));
    }

    #[tokio::test]
    async fn readiness_fails_at_once_with_the_output_of_a_child_that_exited() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let mut child = Supervised::spawn(
            "quitter",
            sh("echo bye; exit 3"),
            Logs::Capture,
            Group::Inherit,
        )
        .expect("spawn sh");
        let started = StdInstant::now();
        let error = child
            .ready(closed, "/ready", Duration::from_secs(20))
            .await
            .expect_err("a child that exited is never ready");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited {:?}",
            started.elapsed()
        );
        assert!(
            error.contains("quitter exited") && error.contains("bye"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn dropping_a_child_of_its_own_group_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("meshtrace-supervise-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let log = dir.join("group.log");
        // The shell's background child writes its pid, then outlives the shell's
        // wait only if the group is not killed.
        let child = Supervised::spawn(
            "group",
            sh("sleep 30 & echo $!; wait"),
            Logs::File(log.clone()),
            Group::Own,
        )
        .expect("spawn sh");
        let leader = child.pid();
        let grandchild: u32 = crate::bound::within("the background pid", async {
            loop {
                if let Ok(pid) = std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .trim()
                    .parse()
                {
                    return pid;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        drop(child);
        crate::bound::within("the group to die", async {
            while !(dead(leader) && dead(grandchild)) {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
