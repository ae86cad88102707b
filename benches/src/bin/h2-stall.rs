//! Can one HTTP/2 client that never reads stall another client's responses
//! from the same upstream? (issue 14, defect 1)
//!
//! ```text
//! bash benches/load/build.sh
//! target/release/h2-stall                     # --stalled 0,8,100 --samples 200
//! target/release/h2-stall --proxy /path/to/an/older/meshtrace-proxy
//! ```
//!
//! The real `backend` (1 MiB for `/big`, 2 bytes otherwise) behind the real
//! sidecar (inbound listener, h2c both sides, access log off). For each count
//! of stalled streams: a greedy h2c connection grants its streams no
//! flow-control window and sends that many `GET /big`, waits for every
//! response head and never reads a body; then a polite h2c connection sends
//! `--samples` sequential `GET /small`, each bounded by `--bound-ms`.
//! Printed per count: small responses completed within the bound, and their
//! latency (p50, p99, max). The greedy connection is closed before the next
//! count. Binaries default to this executable's directory.

#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_util::task::AbortOnDropHandle;

/// How long the sidecar may take to start, and any head to arrive.
const LIMIT: Duration = Duration::from_secs(30);

/// One HTTP/2 client's unread streams vs another's small responses.
#[derive(Parser)]
struct Args {
    /// Counts of stalled streams to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,8,100")]
    stalled: Vec<usize>,
    /// Small requests timed per count.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The longest a small request may take before it counts as stalled.
    #[arg(long, default_value_t = 2000)]
    bound_ms: u64,
    /// The sidecar binary (default: meshtrace-proxy beside this executable).
    #[arg(long)]
    proxy: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dir = std::env::current_exe()?
        .parent()
        .ok_or("this executable has no directory")?
        .to_path_buf();
    let proxy = args.proxy.clone().unwrap_or(dir.join("meshtrace-proxy"));
    let (backend_port, inbound_port, admin_port) = (free_port()?, free_port()?, free_port()?);
    let _backend = spawn(
        Command::new(dir.join("backend"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{backend_port}"))
            .args(["--body-bytes", "2", "--large-path", "/big"]),
    )?;
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(
        config.path(),
        format!(
            "inbound: {{listen: 127.0.0.1:{inbound_port}, app_port: {backend_port}}}\n\
             outbound: {{listen: 127.0.0.1:0}}\n\
             admin: {{listen: 127.0.0.1:{admin_port}, health_listen: null, metrics_listen: null}}\n\
             runtime: {{workers: 1}}\n\
             log: {{access_log: false, level: warn}}\n"
        ),
    )?;
    let _sidecar = spawn(
        Command::new(&proxy)
            .arg("run")
            .arg("--config")
            .arg(config.path()),
    )?;
    let sidecar = SocketAddr::from(([127, 0, 0, 1], inbound_port));
    wait_until_serving(sidecar).await?;
    println!("sidecar {}", proxy.display());
    println!("stalled  completed/samples  p50_ms  p99_ms  max_ms");
    for &stalled in &args.stalled {
        let greedy = stall(sidecar, stalled).await?;
        let bound = Duration::from_millis(args.bound_ms);
        let (done, mut times) = small_requests(sidecar, args.samples, bound).await?;
        drop(greedy);
        times.sort();
        let at = |q: f64| times.get(((times.len() as f64 - 1.0) * q) as usize);
        let ms = |d: Option<&Duration>| {
            d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
        };
        println!(
            "{stalled:>7}  {done:>9}/{:<7}  {:>6}  {:>6}  {:>6}",
            args.samples,
            ms(at(0.5)),
            ms(at(0.99)),
            ms(times.last())
        );
    }
    Ok(())
}

/// The unread streams of [`stall`]: dropping it closes their connection.
struct Stalled {
    _unread: Vec<http::Response<hyper::body::Incoming>>,
    _conn: AbortOnDropHandle<()>,
}

/// A connection whose `count` streams each got a 1 MiB response head and read
/// no byte of its body (their window is zero).
async fn stall(sidecar: SocketAddr, count: usize) -> Result<Stalled, Box<dyn std::error::Error>> {
    let (sender, conn) = h2c(sidecar, 0).await?;
    let mut heads = tokio::task::JoinSet::new();
    for _ in 0..count {
        heads.spawn(sender.clone().send_request(get(sidecar, "/big")?));
    }
    let mut unread = Vec::with_capacity(count);
    while let Some(head) = tokio::time::timeout(LIMIT, heads.join_next()).await? {
        unread.push(head??);
    }
    Ok(Stalled {
        _unread: unread,
        _conn: conn,
    })
}

/// Times `samples` sequential small requests on one connection; a request over
/// `bound` is not timed (and the rest are skipped: the connection is stuck).
async fn small_requests(
    sidecar: SocketAddr,
    samples: usize,
    bound: Duration,
) -> Result<(usize, Vec<Duration>), Box<dyn std::error::Error>> {
    let (mut sender, _conn) = h2c(sidecar, 65_535).await?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let exchange = async {
            let response = sender.send_request(get(sidecar, "/small")?).await?;
            response.into_body().collect().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        match tokio::time::timeout(bound, exchange).await {
            Ok(result) => result?,
            Err(_) => break,
        }
        times.push(started.elapsed());
    }
    Ok((times.len(), times))
}

/// An h2c connection granting each stream `window` bytes; the guard aborts its
/// task (closing it) when dropped.
async fn h2c(
    addr: SocketAddr,
    window: u32,
) -> Result<(http2::SendRequest<Empty<Bytes>>, AbortOnDropHandle<()>), Box<dyn std::error::Error>> {
    let stream = TcpStream::connect(addr).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(window)
        .handshake(TokioIo::new(stream))
        .await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, AbortOnDropHandle::new(task)))
}

fn get(sidecar: SocketAddr, path: &str) -> Result<http::Request<Empty<Bytes>>, http::Error> {
    http::Request::get(format!("http://{sidecar}{path}")).body(Empty::new())
}

async fn wait_until_serving(sidecar: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok((mut sender, _conn)) = h2c(sidecar, 65_535).await {
            if sender.send_request(get(sidecar, "/small")?).await.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("the sidecar did not serve within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child that is killed when dropped.
fn spawn(command: &mut Command) -> std::io::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

fn free_port() -> std::io::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
