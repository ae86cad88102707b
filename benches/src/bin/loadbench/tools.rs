//! The load generators: one bounded run each of wrk, h2load, oha and the gRPC
//! client, and the parsing of what they print. A tool that fails, or prints
//! something we cannot read, is an error naming the tool and quoting its output.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::procs::Group;
use super::Error;

/// A closed-loop throughput window (wrk, h2load, the gRPC client).
#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    /// Requests per second the tool reports.
    pub rps: f64,
    /// Requests completed (successfully, for h2load and gRPC).
    pub requests: u64,
    /// Non-2xx responses, socket errors, failed or errored requests.
    pub errors: u64,
}

/// An open-loop latency window (oha at a fixed rate), in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Requests with a response.
    pub ok: u64,
    /// Requests that failed (errors, non-2xx).
    pub errors: u64,
}

/// Runs a tool in its own process group, at most `secs` + 20 s; returns its output.
fn run(
    name: &str,
    cmd: Command,
    dir: &Path,
    secs: f64,
    tick: impl FnMut(),
) -> Result<String, Error> {
    let limit = Duration::from_secs_f64(secs + 20.0);
    Group::spawn(name, cmd, dir)?.finish(limit, tick)
}

// === wrk ===

/// `wrk -t1 -cCONNS -dSECSs URL` (one thread, as the issue's figures); `tick`
/// runs about every 50 ms meanwhile.
pub fn wrk(
    url: &str,
    conns: u32,
    secs: u32,
    dir: &Path,
    tick: impl FnMut(),
) -> Result<Throughput, Error> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), url]);
    let out = run("wrk", cmd, dir, f64::from(secs), tick)?;
    parse_wrk(&out).ok_or_else(|| format!("wrk {url}: unreadable output:\n{out}").into())
}

/// Reads `N requests in …`, `Requests/sec: R`, and the error lines.
fn parse_wrk(out: &str) -> Option<Throughput> {
    let mut t = Throughput::default();
    let mut seen = (false, false);
    for line in out.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            t.requests = n.trim().parse().ok()?;
            seen.0 = true;
        } else if let Some(r) = line.strip_prefix("Requests/sec:") {
            t.rps = r.trim().parse().ok()?;
            seen.1 = true;
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            t.errors += n.trim().parse::<u64>().ok()?;
        } else if let Some(list) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in list.split(',') {
                t.errors += part
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())?;
            }
        }
    }
    (seen.0 && seen.1).then_some(t)
}

// === h2load ===

/// `h2load -c32 -m10 -D SECS URL` (one thread; h2c with prior knowledge for `http://`).
pub fn h2load(url: &str, secs: u32, dir: &Path) -> Result<Throughput, Error> {
    let mut cmd = Command::new("h2load");
    cmd.args(["-c32", "-m10", "-D", &secs.to_string(), url]);
    let out = run("h2load", cmd, dir, f64::from(secs), || {})?;
    parse_h2load(&out).ok_or_else(|| format!("h2load {url}: unreadable output:\n{out}").into())
}

/// Reads `finished in 5.00s, 12345.67 req/s, …` and
/// `requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout`.
fn parse_h2load(out: &str) -> Option<Throughput> {
    let mut t = Throughput::default();
    let mut seen = (false, false);
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let rps = rest.split(", ").nth(1)?.strip_suffix(" req/s")?;
            t.rps = rps.trim().parse().ok()?;
            seen.0 = true;
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                let (n, what) = part.split_once(' ')?;
                let n: u64 = n.parse().ok()?;
                match what {
                    "succeeded" => t.requests = n,
                    "failed" | "errored" | "timeout" => t.errors += n,
                    _ => {}
                }
            }
            seen.1 = true;
        }
    }
    (seen.0 && seen.1).then_some(t)
}

// === oha ===

/// `oha -z SECSs -q RATE -c 32 --latency-correction --no-tui --output-format json URL`:
/// open loop (latency measured from when each request was due, so a stall is not
/// hidden by the requests it delayed).
pub fn oha(url: &str, rate: u32, secs: u32, dir: &Path) -> Result<Latency, Error> {
    let mut cmd = Command::new("oha");
    cmd.args([
        "-z",
        &format!("{secs}s"),
        "-q",
        &rate.to_string(),
        "-c",
        "32",
        "--latency-correction",
        "--no-tui",
        "--output-format",
        "json",
        url,
    ]);
    let out = run("oha", cmd, dir, f64::from(secs), || {})?;
    parse_oha(&out).map_err(|e| format!("oha {url}: {e}; output:\n{out}").into())
}

/// Reads oha's JSON report: `latencyPercentiles` (seconds), the status code and
/// error distributions.
fn parse_oha(out: &str) -> Result<Latency, String> {
    // Anything oha prints before its JSON (a warning) is skipped.
    let start = out.find('{').ok_or("no JSON object")?;
    let json: serde_json::Value =
        serde_json::from_str(&out[start..]).map_err(|e| format!("JSON: {e}"))?;
    let pct = |key: &str| {
        json["latencyPercentiles"][key]
            .as_f64()
            .map(|s| s * 1e6)
            .ok_or_else(|| format!("no latencyPercentiles.{key}"))
    };
    let count = |key: &str, ok: fn(&str) -> bool| -> u64 {
        json[key]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| ok(k))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    Ok(Latency {
        p50: pct("p50")?,
        p99: pct("p99")?,
        p999: pct("p99.9")?,
        ok: count("statusCodeDistribution", |k| k.starts_with('2')),
        errors: count("statusCodeDistribution", |k| !k.starts_with('2'))
            // Requests still in flight when -z ends are "aborted due to deadline".
            + count("errorDistribution", |k| !k.contains("deadline")),
    })
}

// === gRPC ===

/// `grpc-bench load --target URL --concurrency 32 --secs SECS`.
pub fn grpc(bin: &Path, url: &str, secs: u32, dir: &Path) -> Result<Throughput, Error> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "load",
        "--target",
        url,
        "--concurrency",
        "32",
        "--secs",
        &secs.to_string(),
    ]);
    let out = run("grpc-load", cmd, dir, f64::from(secs), || {})?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("grpc-bench load {url}: no JSON line in:\n{out}"))?;
    let json: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("grpc-bench load {url}: {e} in {line:?}"))?;
    let field = |k: &str| json[k].as_f64();
    match (
        field("rps"),
        json["requests"].as_u64(),
        json["errors"].as_u64(),
    ) {
        (Some(rps), Some(requests), Some(errors)) => Ok(Throughput {
            rps,
            requests,
            errors,
        }),
        _ => Err(format!("grpc-bench load {url}: missing fields in {line:?}").into()),
    }
}

/// The first line a version command prints (stdout or stderr), or "?".
pub fn version(program: &str, args: &[&str]) -> String {
    let Ok(out) = Command::new(program).args(args).output() else {
        return "not found".into();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("?")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_with_errors() {
        let out = "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n  \
                   123456 requests in 5.00s, 140.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  \
                   Non-2xx or 3xx responses: 4\nRequests/sec:  24691.20\nTransfer/sec:     28.00MB\n";
        let t = parse_wrk(out);
        assert!(
            matches!(t, Some(t) if t.requests == 123456 && t.errors == 7 && (t.rps - 24691.2).abs() < 1e-6)
        );
    }

    #[test]
    fn h2load_output() {
        let out = "finished in 5.00s, 45678.90 req/s, 50.00MB/s\n\
                   requests: 228394 total, 228714 started, 228394 done, 228390 succeeded, 4 failed, 4 errored, 0 timeout\n";
        let t = parse_h2load(out);
        assert!(
            matches!(t, Some(t) if t.requests == 228390 && t.errors == 8 && (t.rps - 45678.9).abs() < 1e-6)
        );
    }

    #[test]
    fn oha_json() {
        let out = r#"{"summary":{"successRate":1.0},"latencyPercentiles":{"p50":0.0001,"p99":0.0005,"p99.9":0.001},
                     "statusCodeDistribution":{"200":9990,"502":10},"errorDistribution":{"aborted":3,"aborted due to deadline":5}}"#;
        let l = parse_oha(out);
        assert!(
            matches!(l, Ok(l) if l.ok == 9990 && l.errors == 13 && (l.p50 - 100.0).abs() < 1e-6)
        );
    }
}
