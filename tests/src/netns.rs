//! Network namespaces for the tests that need real iptables rules: the
//! transparent-mode test, the init step's test, and the injected-pod test.
//!
//! Each test creates namespaces of its own (named by test and pid), so it never
//! touches the machine's rules and runs beside the rest of the suite. They need
//! root (CAP_NET_ADMIN), `ip`, `iptables`/`ip6tables` and `setpriv` (the README's
//! test command installs them). Without them a test FAILS, saying why, unless
//! `MESHTRACE_ALLOW_SKIP_NETNS=1` is set; then it prints, uncaptured, that it did
//! not run ([`or_skip`]). It never passes silently.

use std::io::Write;
use std::process::Output;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::bound::within;

/// The sidecar's uid and gid, as in a pod.
pub const SIDECAR_UID: &str = "1337";

/// A network namespace, deleted on drop (with the veth ends inside it).
pub struct Netns(String);

// === impl Netns ===

impl Netns {
    /// Creates a namespace with loopback up, or says why it cannot.
    pub fn create(name: &str) -> Result<Self, String> {
        let tools = [
            "ip",
            "iptables",
            "ip6tables",
            "iptables-restore",
            "ip6tables-restore",
            "setpriv",
        ];
        if let Some(why) = missing_prerequisite(&tools) {
            return Err(why);
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", name])
            .output();
        sync(&["ip", "netns", "add", name])?;
        let ns = Self(name.to_string());
        sync(&["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Runs `args` inside the namespace (as root) and waits for it.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.0])
            .args(args)
            .kill_on_drop(true);
        within(
            format!("`{}` in {}", args.join(" "), self.0),
            command.output(),
        )
        .await
        .expect("run ip netns exec")
    }

    /// Runs `args` inside the namespace and fails the test if it fails.
    pub async fn must(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "`{}` in {} failed: {}",
            args.join(" "),
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args` inside the namespace as the sidecar's uid and gid.
    pub async fn must_as_sidecar(&self, args: &[&str]) -> String {
        self.must(&as_user(SIDECAR_UID, args)).await
    }

    /// Starts a server (`args`) inside the namespace and waits until it prints
    /// a line starting with `listening`.
    pub async fn listen(&self, args: &[&str]) -> Child {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a server in the namespace");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let what = format!("`{}` in {}", args.join(" "), self.0);
        let line = within(&what, lines.next_line()).await;
        assert!(
            matches!(line, Ok(Some(l)) if l.starts_with("listening")),
            "{what} did not start"
        );
        child
    }

    /// Joins this namespace to `peer` with a veth pair whose ends carry
    /// `addrs` (here) and `peer_addrs` (there), IPv6 ones without duplicate
    /// address detection, so they are usable at once.
    pub fn link(&self, peer: &Netns, addrs: &[&str], peer_addrs: &[&str]) -> Result<(), String> {
        let (here, there) = ("veth0", "veth1");
        sync(&[
            "ip", "link", "add", here, "netns", &self.0, "type", "veth", "peer", "name", there,
            "netns", &peer.0,
        ])?;
        for (ns, dev, addrs) in [(self, here, addrs), (peer, there, peer_addrs)] {
            for addr in addrs {
                let mut args = vec!["ip", "netns", "exec", &ns.0, "ip", "addr", "add", addr];
                args.extend(["dev", dev]);
                if addr.contains(':') {
                    args.push("nodad");
                }
                sync(&args)?;
            }
            sync(&["ip", "netns", "exec", &ns.0, "ip", "link", "set", dev, "up"])?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// Why a test that needs root and `tools` cannot run here, if it cannot.
pub fn missing_prerequisite(tools: &[&str]) -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next().unwrap_or("").to_string())
        });
    if uid.as_deref() != Some("0") {
        return Some("not running as root (network namespaces, iptables and runc need it)".into());
    }
    tools
        .iter()
        .find(|tool| !command_exists(tool))
        .map(|tool| format!("`{tool}` is not installed (bash scripts/test-all.sh installs it)"))
}

/// `args` run as `uid` (and the group of the same number), with no
/// supplementary groups: how a container's `runAsUser` is played here.
pub fn as_user<'a>(uid: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups"];
    all.extend_from_slice(args);
    all
}

/// Whether `tool` is on the PATH.
pub fn command_exists(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command to completion: its stdout, or its failure with its stderr.
pub fn sync(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace, or `None` after announcing loudly that `test` did not run
/// (only when `MESHTRACE_ALLOW_SKIP_NETNS` is set; otherwise the test fails).
pub fn or_skip(name: &str, test: &str) -> Option<Netns> {
    match Netns::create(name) {
        Ok(ns) => Some(ns),
        Err(why) if std::env::var_os("MESHTRACE_ALLOW_SKIP_NETNS").is_some() => {
            // Written to the real stderr, past the test harness's capture.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! {test} DID NOT RUN: {why} (MESHTRACE_ALLOW_SKIP_NETNS is set) !!!\n"
            );
            None
        }
        Err(why) => panic!(
            "{test} cannot run: {why}. Run as root with iptables installed, \
             or set MESHTRACE_ALLOW_SKIP_NETNS=1 to skip it knowingly."
        ),
    }
}
