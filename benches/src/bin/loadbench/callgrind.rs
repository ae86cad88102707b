//! The callgrind phase: instructions per proxied request for every proxy — the
//! primary, repeatable figure on a shared machine — each counted by
//! `benches/load/callgrind.sh` (the proxy under valgrind, warmed up, then only
//! the `wrk -t1 -c32` / `h2load -c32 -m10` window counted, between
//! `callgrind_control -z` and `-d`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::procs::Group;
use super::targets::Target;
use super::Error;

/// One count: `LABEL requests=N instructions=I per_request=P …`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Requests completed in the counted window.
    pub requests: u64,
    /// Instructions the proxy executed in it (every thread; nginx: every process).
    pub instructions: u64,
    /// `instructions / requests`.
    pub per_request: u64,
    /// Spans the OTLP sink received (traced runs: warm-up and window).
    pub sink_spans: Option<u64>,
}

/// The protocol of a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wire {
    /// HTTP/1.1, `wrk -t1 -c32`.
    H1,
    /// h2c, `h2load -c32 -m10`.
    H2,
}

/// The counts of a run, by target and protocol.
pub type Counts = BTreeMap<(Target, Wire), Count>;

/// Reads the last result line of `callgrind.sh`'s output.
pub fn parse(out: &str) -> Option<Count> {
    out.lines().rev().find_map(|line| {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some(Count {
            requests: field("requests")?,
            instructions: field("instructions")?,
            per_request: field("per_request")?,
            sink_spans: field("sink_spans"),
        })
    })
}

/// What one `callgrind.sh` run measures: (target, wire, the PROXY argument, TRACED).
fn jobs(bin: &Path, before: Option<&Path>) -> Vec<(Target, Wire, PathBuf, bool)> {
    let mesh = bin.join("meshtrace-proxy");
    let mut meshes = vec![(Target::Meshtrace, mesh.clone())];
    if let Some(b) = before {
        meshes.push((Target::Before, b.to_path_buf()));
    }
    let mut jobs = Vec::new();
    for wire in [Wire::H1, Wire::H2] {
        for (t, p) in &meshes {
            jobs.push((*t, wire, p.clone(), false));
        }
        jobs.push((Target::Haproxy, wire, "haproxy".into(), false));
        if wire == Wire::H1 {
            jobs.push((Target::Nginx, wire, "nginx".into(), false));
        }
        jobs.push((Target::Envoy, wire, "envoy".into(), false));
    }
    jobs.push((Target::Sampled100, Wire::H1, mesh, true));
    jobs.push((Target::EnvoyTraced, Wire::H1, "envoy-traced".into(), false));
    jobs
}

/// Runs every count in turn (meshtrace, before, HAProxy, nginx, Envoy; HTTP/1.1,
/// then h2c, then traced), `secs` s counted each; a failed count is reported and
/// skipped.
pub fn run_all(bin: &Path, dir: &Path, before: Option<&Path>, secs: u32) -> Counts {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("load/callgrind.sh");
    let mut counts = Counts::new();
    for (target, wire, proxy, traced) in jobs(bin, before) {
        let label = format!("{}-{wire:?}", target.label()).replace(' ', "_");
        match run_one(&script, bin, dir, &proxy, &label, wire, traced, secs) {
            Ok(c) => {
                println!(
                    "  callgrind {:<34} {wire:?}: {} requests, {} instructions, {} per request",
                    target.label(),
                    c.requests,
                    c.instructions,
                    c.per_request
                );
                counts.insert((target, wire), c);
            }
            Err(e) => eprintln!("  callgrind {} {wire:?}: {e}", target.label()),
        }
    }
    counts
}

#[allow(
    clippy::too_many_arguments,
    reason = "one script invocation: every argument is one of its inputs"
)]
fn run_one(
    script: &Path,
    bin: &Path,
    dir: &Path,
    proxy: &Path,
    label: &str,
    wire: Wire,
    traced: bool,
    secs: u32,
) -> Result<Count, Error> {
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg(proxy)
        .arg(bin.join("backend"))
        .arg(label)
        .env("SECS", secs.to_string())
        .env("WIRE", if wire == Wire::H2 { "h2" } else { "h1" });
    if traced {
        cmd.env("TRACED", "1");
    }
    // Valgrind starts Envoy slowly: minutes on a loaded machine.
    let out = Group::spawn(&format!("callgrind-{label}"), cmd, dir)?
        .finish(Duration::from_secs(900), || {})?;
    parse(&out).ok_or_else(|| format!("no result line in:\n{out}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_is_read_from_the_end_of_the_output() {
        let out = "==123== Callgrind, a call-graph generating cache profiler\n\
                   envoy-H1 requests=30155 instructions=4297000000 per_request=142496 kind=envoy wire=h1\n";
        assert_eq!(
            parse(out),
            Some(Count {
                requests: 30155,
                instructions: 4_297_000_000,
                per_request: 142_496,
                sink_spans: None
            })
        );
        let traced = "x requests=10 instructions=100 per_request=10 kind=envoy-traced wire=h1 sink_spans=12\n";
        assert_eq!(parse(traced).and_then(|c| c.sink_spans), Some(12));
        assert_eq!(parse("x: no figure (requests=0 instructions=0)\n"), None);
    }
}
