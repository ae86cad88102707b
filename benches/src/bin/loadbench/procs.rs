//! Child processes, run by the test crate's supervisor
//! ([`meshtrace_tests::process::Supervised`]): each in its own process group,
//! killed (the whole group) when its guard drops, on error, and on Ctrl-C /
//! SIGTERM; every wait bounded.
//!
//! A group per child lets one `kill -KILL -- -PGID` stop nginx's master and its
//! workers together, and lets the CPU and memory of "a proxy" be the sum over its
//! group's processes (read from `/proc`, see [`group_usage`]).
//!
//! The harness itself is synchronous: the supervisor's waits run on the tokio
//! runtime `main` enters ([`block_on`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use meshtrace_tests::process::{kill_all, log_path, Logs, Supervised};

use super::Error;

/// The run's temporary directory, removed by the signal handler too.
static TMP: OnceLock<PathBuf> = OnceLock::new();

/// How long a stopped child may take to be gone.
const STOP_LIMIT: Duration = Duration::from_secs(2);

/// Kills every supervised child on Ctrl-C, SIGTERM or SIGHUP, removes the
/// temporary directory, and exits 130. Drop guards do the same on the normal and
/// the error paths; this covers the signals, which would skip them.
pub fn install_signal_handler(tmp: &Path) -> Result<(), Error> {
    let _ = TMP.set(tmp.to_path_buf());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("signal runtime: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut hup)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                eprintln!("\nloadbench: interrupted, stopping every child");
                kill_all();
                if let Some(tmp) = TMP.get() {
                    let _ = std::fs::remove_dir_all(tmp);
                }
                std::process::exit(130);
            })
        })
        .map_err(|e| format!("signal thread: {e}"))?;
    Ok(())
}

/// Runs `future` to completion on the runtime `main` entered.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}

/// A free loopback port: bind `127.0.0.1:0`, read the port, release it.
pub fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    Ok(listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?
        .port())
}

/// A running child process group, killed when dropped.
#[derive(Debug)]
pub struct Group {
    /// `None` only while being dropped.
    child: Option<Supervised>,
}

// === impl Group ===

impl Group {
    /// Starts `cmd` in a new process group, stdout and stderr to `dir/NAME.log`,
    /// without the `OTEL_*` variables (the sidecar would read them).
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Self, Error> {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OTEL_") {
                cmd.env_remove(key);
            }
        }
        let logs = Logs::File(log_path(dir, name));
        let child =
            Supervised::spawn(name, cmd.into(), logs, meshtrace_tests::process::Group::Own)?;
        Ok(Self { child: Some(child) })
    }

    fn child(&mut self) -> &mut Supervised {
        match self.child.as_mut() {
            Some(child) => child,
            None => unreachable!("a group has its child until dropped"),
        }
    }

    /// The process group id (the leader's pid).
    pub fn pgid(&self) -> u32 {
        self.child.as_ref().map_or(0, Supervised::pid)
    }

    /// Fails if the child has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        Ok(self.child().check_alive()?)
    }

    /// Waits (at most `limit`) until `ready` returns true.
    pub fn wait_ready(
        &mut self,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        let child = self.child();
        let probe = || std::future::ready(ready());
        Ok(block_on(child.wait_until("its probe", limit, probe))?)
    }

    /// Waits (at most `limit`) until `GET http://{addr}{path}` answers 2xx.
    pub fn wait_http_ready(
        &mut self,
        limit: Duration,
        addr: SocketAddr,
        path: &str,
    ) -> Result<(), Error> {
        Ok(block_on(self.child().ready(addr, path, limit))?)
    }

    /// Runs to completion (at most `limit`), calling `tick` about every 50 ms;
    /// returns the child's output (stdout and stderr interleaved).
    pub fn finish(mut self, limit: Duration, mut tick: impl FnMut()) -> Result<String, Error> {
        let deadline = std::time::Instant::now() + limit;
        let child = self.child();
        loop {
            if let Some(status) = child.try_exit_status()? {
                let out = child.log_text();
                if !status.success() && out.trim().is_empty() {
                    return Err(format!("{} failed ({status}) with no output", child.name()).into());
                }
                return Ok(out);
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} still running after {limit:?}; killed. Output so far:\n{}",
                    child.name(),
                    child.tail()
                )
                .into());
            }
            tick();
            #[allow(
                clippy::disallowed_methods,
                reason = "the load harness drives its tools synchronously, outside any runtime"
            )]
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // SIGKILL is not ignorable: the group is gone within moments, and the
            // next window measures without it.
            let _ = block_on(child.stop(STOP_LIMIT));
        }
    }
}

// === probes ===

/// True when something accepts TCP connections on `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A bounded HTTP/1.0 `GET` (HTTP/1.0 so the body is never chunked); returns the
/// status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), Error> {
    let context = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(context)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(context)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .map_err(context)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(context)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(context)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "GET http://{addr}{path}: no status line in {:?}",
                &text[..text.len().min(80)]
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

// === /proc ===

/// CPU time and memory of one process group, summed over its processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// utime + stime (fields 14 and 15 of `/proc/PID/stat`), in clock ticks.
    pub ticks: u64,
    /// `VmRSS` summed, KiB.
    pub rss_kib: u64,
}

/// The [`Usage`] of every process whose process group is `pgid`.
pub fn group_usage(pgid: u32) -> Usage {
    let mut usage = Usage::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usage;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name (field 2) may hold spaces and parentheses: the fields
        // we want follow its last ')'. After it: state (3), ppid (4), pgrp (5), …
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if field(5) != Some(u64::from(pgid)) {
            continue;
        }
        usage.ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
        usage.rss_kib += rss_kib(pid).unwrap_or(0);
    }
    usage
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Microseconds per clock tick (`getconf CLK_TCK`, 100 if unknown).
pub fn tick_us() -> f64 {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0);
    1e6 / hz
}
