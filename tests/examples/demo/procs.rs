//! The demo's child processes: the meshtrace binaries it runs, started and
//! stopped through the test crate's supervisor, and the waits that fail as soon
//! as one of them dies.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use meshtrace_tests::process::{log_path, probe, Group, Logs, Supervised};
use tokio::process::Command;

use crate::{Result, WAIT};

/// How often a wait asks again.
const POLL: Duration = Duration::from_millis(50);

/// The meshtrace binaries the demo starts.
pub(crate) struct Binaries {
    pub(crate) proxy: PathBuf,
    pub(crate) control: PathBuf,
}

// === impl Binaries ===

impl Binaries {
    /// In `MESHTRACE_BIN_DIR`, else in the directory above this example's
    /// (`target/release/examples/demo` -> `target/release/`).
    pub(crate) fn locate() -> Result<Self> {
        let dir = match std::env::var_os("MESHTRACE_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find this executable: {e}"))?
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .ok_or("this executable has no directory")?,
        };
        let find = |name: &str| {
            let path = dir.join(name);
            path.is_file().then_some(path).ok_or_else(|| {
                format!("{name} not found in {}: run scripts/demo.sh, which builds it, or set MESHTRACE_BIN_DIR", dir.display())
            })
        };
        Ok(Self {
            proxy: find("meshtrace-proxy")?,
            control: find("meshtrace-control")?,
        })
    }
}

/// The child processes, stopped by [`Processes::stop`] (or killed on drop).
pub(crate) struct Processes {
    pid_file: PathBuf,
    children: Mutex<Vec<Supervised>>,
}

// === impl Processes ===

impl Processes {
    /// No children yet; their pids will be listed in `pid_file`.
    pub(crate) fn new(pid_file: PathBuf) -> Self {
        Self {
            pid_file,
            children: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Supervised>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `program` in `dir` with a clean environment plus `env`, in its own
    /// process group (Ctrl-C reaches the demo, which stops it), logging to
    /// `<dir>/<label>.log`.
    pub(crate) fn spawn(
        &self,
        label: &'static str,
        program: &Path,
        dir: &Path,
        env: &[(&str, String)],
        args: &[String],
    ) -> Result<()> {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir);
        let log = Logs::File(log_path(dir, label));
        let child = Supervised::spawn(label, command, log, Group::Own)?;
        self.record(child.pid());
        self.lock().push(child);
        Ok(())
    }

    /// Appends `pid` to the pid file `scripts/demo.sh` reaps from.
    fn record(&self, pid: u32) {
        use std::io::Write as _;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pid_file)
            .and_then(|mut f| writeln!(f, "{pid}"));
        if let Err(e) = appended {
            eprintln!(
                "demo: cannot record pid {pid} in {}: {e}",
                self.pid_file.display()
            );
        }
    }

    /// An error naming the first child that has exited.
    fn check_alive(&self) -> Result<()> {
        self.lock().iter_mut().try_for_each(Supervised::check_alive)
    }

    /// Kills every child and waits for it (bounded).
    pub(crate) async fn stop(&self) {
        let children = std::mem::take(&mut *self.lock());
        for child in children {
            let name = child.name().to_string();
            if let Err(error) = child.stop(Duration::from_secs(5)).await {
                eprintln!("demo: stopping {name}: {error}");
            }
        }
    }

    /// The end of every child's log, for a failed run.
    pub(crate) fn print_log_tails(&self) {
        let dir = self.pid_file.parent().unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {} (last lines) ---", log.display());
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{line}");
            }
        }
    }

    /// Polls `check` until it gives a value, for at most [`WAIT`]; fails at
    /// once if `check` fails or a child process has exited.
    pub(crate) async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            self.check_alive()?;
            if let Some(value) = check().await? {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(format!("gave up waiting {WAIT:?} for {what}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `GET path` on `addr` answers 2xx: `who` is ready.
    pub(crate) async fn ready(&self, addr: SocketAddr, path: &str, who: &str) -> Result<()> {
        let what = format!("{who} to answer GET {path}");
        self.wait_for(&what, || async move {
            let answer = probe::get(addr, "localhost", path).await;
            Ok(answer
                .ok()
                .filter(|(status, _)| status.is_success())
                .map(drop))
        })
        .await
    }
}

/// `N` distinct free loopback ports, and the listeners that hold them until
/// dropped (so that nothing of ours binds them meanwhile).
pub(crate) fn reserve_ports<const N: usize>() -> Result<([SocketAddr; N], Vec<StdListener>)> {
    let held: Vec<StdListener> = (0..N)
        .map(|_| StdListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    let addrs: Vec<SocketAddr> = held
        .iter()
        .map(StdListener::local_addr)
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    let addrs = addrs
        .try_into()
        .map_err(|_| "cannot find free ports".to_string())?;
    Ok((addrs, held))
}
