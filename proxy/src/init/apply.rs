//! Running the scripts: `iptables-save -t nat` to see what is installed, then
//! `iptables-restore --noflush` (or the `ip6tables-*` pair) with the script on
//! stdin, so each family changes in one atomic commit and nothing outside the
//! `nat` table's meshtrace rules is touched.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use super::plan::Family;

/// Why the rules could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The iptables tools are not installed.
    #[error("`{0}` was not found in PATH: the init step needs iptables (iptables-save and iptables-restore, ip6tables-* for IPv6)")]
    Missing(&'static str),
    /// The process lacks the capabilities to change netfilter rules.
    #[error("not permitted to change iptables rules: run as root with the NET_ADMIN and NET_RAW capabilities")]
    NotPermitted,
    /// A tool ran and failed.
    #[error("`{tool}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        tool: String,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// A tool could not be started or talked to.
    #[error("`{0}`: {1}")]
    Io(&'static str, io::Error),
}

/// The `save` and `restore` tools of one family.
fn tools(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("iptables-save", "iptables-restore"),
        Family::V6 => ("ip6tables-save", "ip6tables-restore"),
    }
}

/// The `nat` table of `family` as `iptables-save -t nat` prints it.
pub fn current(family: Family) -> Result<String, ApplyError> {
    let (save, _) = tools(family);
    let output = run(save, &["-t", "nat"], None)?;
    Ok(output)
}

/// Applies `script` to `family` without flushing anything else.
pub fn restore(family: Family, script: &str) -> Result<(), ApplyError> {
    let (_, restore) = tools(family);
    run(restore, &["--noflush"], Some(script)).map(drop)
}

/// Whether the kernel has IPv6 (the `--ipv6 auto` rule).
pub fn kernel_has_ipv6() -> bool {
    std::path::Path::new("/proc/net/if_inet6").exists()
}

/// Fails early, with the clear message, when the process visibly lacks
/// CAP_NET_ADMIN or CAP_NET_RAW. When `/proc` cannot tell, the tools decide.
pub fn check_capabilities() -> Result<(), ApplyError> {
    const NET_ADMIN: u64 = 1 << 12;
    const NET_RAW: u64 = 1 << 13;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(());
    };
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    match effective {
        Some(caps) if caps & (NET_ADMIN | NET_RAW) != NET_ADMIN | NET_RAW => {
            Err(ApplyError::NotPermitted)
        }
        _ => Ok(()),
    }
}

/// Runs `tool args`, feeding `stdin`, and returns its stdout.
fn run(tool: &'static str, args: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ApplyError::Missing(tool),
            _ => ApplyError::Io(tool, e),
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The scripts are a few kilobytes: written whole before reading output.
        pipe.write_all(text.as_bytes())
            .map_err(|e| ApplyError::Io(tool, e))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| ApplyError::Io(tool, e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("Permission denied") || stderr.contains("Operation not permitted") {
            return Err(ApplyError::NotPermitted);
        }
        return Err(ApplyError::Failed {
            tool: format!("{tool} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: stderr.trim().replace('\n', "; "),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
