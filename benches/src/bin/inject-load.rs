//! Injector latency per AdmissionReview (issue 15): the real
//! `meshtrace-control injector`, over HTTPS keep-alive, as the API server calls
//! it.
//!
//! ```text
//! cargo build --release --bins -p meshtrace-control -p meshtrace-benches
//! target/release/inject-load                # --requests 20000 --connections 1 [--h2]
//! ```
//!
//! The injector (from this executable's directory, `target/release`, or
//! `--injector PATH`) serves a
//! certificate signed by a fresh test CA; each of `--connections` HTTPS
//! connections (verified against that CA, HTTP/1.1 or `--h2`) sends the same
//! review (`control/tests/inject/plain-pod.review.json`: a Deployment's pod,
//! injected with a patch) one after another. Each sample is one request: from
//! just before the request is sent to the last byte of the answer, every answer
//! checked (200, a patch). `--warmup` requests per connection are not counted.

#![forbid(unsafe_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use http::{Method, StatusCode};
use meshtrace_tests::process::injector::{connect, TestCa};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const REVIEW: &str = include_str!("../../../control/tests/inject/plain-pod.review.json");
const LIMIT: Duration = Duration::from_secs(30);

/// Injector latency per AdmissionReview.
#[derive(Parser)]
struct Args {
    /// Counted requests, in total.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent keep-alive connections, each sending one request at a time.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Uncounted requests per connection first.
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// HTTP/2 (ALPN h2) rather than HTTP/1.1.
    #[arg(long)]
    h2: bool,
    /// The `meshtrace-control` binary; default: next to this executable.
    #[arg(long)]
    injector: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ca = TestCa::new();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &ca.cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(&key, &ca.key_pem).map_err(|e| e.to_string())?;
    let binary = match &args.injector {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("meshtrace-control"),
    };
    let (_child, addr) = spawn_injector(&binary, &cert, &key).await?;
    let per_connection = args.requests.div_ceil(args.connections.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let alpn: &[&[u8]] = if args.h2 { &[b"h2"] } else { &[b"http/1.1"] };
        let config = ca.client_config(alpn);
        let (warmup, h2) = (args.warmup, args.h2);
        tasks.push(tokio::spawn(async move {
            let mut client = connect(addr, config, h2).await?;
            let mut samples = Vec::with_capacity(per_connection);
            for i in 0..warmup + per_connection {
                let t = Instant::now();
                let (status, _, body) = client.send(Method::POST, "/inject", REVIEW.into()).await?;
                let elapsed = t.elapsed();
                if status != StatusCode::OK || !body.windows(9).any(|w| w == b"\"patch\":\"") {
                    let body = String::from_utf8_lossy(&body);
                    return Err(format!("unexpected answer {status}: {body}"));
                }
                if i >= warmup {
                    samples.push(elapsed);
                }
            }
            Ok::<_, String>(samples)
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.map_err(|e| e.to_string())??);
    }
    report(&args, samples, started.elapsed());
    Ok(())
}

/// Starts the injector; returns it (killed on drop) and its address.
async fn spawn_injector(
    binary: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(tokio::process::Child, std::net::SocketAddr), String> {
    let mut child = Command::new(binary)
        .args(["injector", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, a)) = line.split_once("injector listening addr=") {
                return a.trim().parse().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("the injector did not announce its address")?;
    // Keep draining its log (one line per review) so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

fn report(args: &Args, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e6
    };
    println!(
        "inject-load: {} reviews over {} {} connection(s) ({} warm-up each), review {} bytes",
        samples.len(),
        args.connections,
        if args.h2 { "HTTP/2" } else { "HTTP/1.1" },
        args.warmup,
        REVIEW.len()
    );
    println!(
        "  latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "  throughput: {:.0} reviews/s (wall {:.2} s, warm-up included)",
        (samples.len() + args.warmup * args.connections) as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
}
