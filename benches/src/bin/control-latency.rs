//! Control-plane benchmark (issue 6): how long a change takes to reach a sidecar,
//! how long it takes to reach 1 000 watchers, and what the watch costs a sidecar
//! in memory.
//!
//! ```text
//! cargo build --release --bins -p meshtrace-proxy -p meshtrace-control -p meshtrace-benches
//! target/release/control-latency            # --pushes 200 --watchers 1000 --rounds 20 --rss-pushes 100
//! ```
//!
//! 1. **push → applied**: an in-process control plane (`meshtrace_control::testing`)
//!    and an in-process sidecar watching it. Each sample times one API write (an
//!    incident override added, then removed, alternately: the sidecar's sampling
//!    rate flips between 1.0 and 0.1) from just before the `POST`/`DELETE` until
//!    the sidecar's `Reloader::subscribe()` sees the new config. Both run on this
//!    process's runtime (one worker per core).
//! 2. **fan-out**: `--watchers` SSE watch streams of the same workload (each its
//!    own HTTP/1.1 connection) on the same control plane; per round, one override
//!    change, timed until the last watcher has decoded its `config` event.
//! 3. **RSS**: the real `meshtrace-proxy` twice (no app behind it, no traffic),
//!    without and with `control.url` pointing at a real `meshtrace-control serve`;
//!    `VmRSS` of both after 2 s idle, then after `--rss-pushes` changes, each
//!    waited for (the watching sidecar's "config applied" log line), plus 2 s.
//!
//! The binaries are taken from this executable's directory (`target/release`).

#![forbid(unsafe_code)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use http::Method;
use meshtrace_config::Config;
use meshtrace_control::client::ControlClient;
use meshtrace_control::overrides::{NewOverride, Override};
use meshtrace_control::testing;
use meshtrace_proxy::Sidecar;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

const SERVICE: &str = "checkout";
const TOKEN: &str = "bench-token";
/// The base sampling rate; an override sets 1.0.
const BASE_RATE: f64 = 0.1;
/// How long any single wait may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(30);

/// Control-plane latency, fan-out and memory.
#[derive(Parser)]
struct Args {
    /// push → applied samples.
    #[arg(long, default_value_t = 200)]
    pushes: usize,
    /// Watch streams for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Fan-out rounds (one change each).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Changes pushed to the real sidecar between the two RSS readings.
    #[arg(long, default_value_t = 100)]
    rss_pushes: usize,
}

/// The document every part serves: a base sampling rate for every workload.
fn document() -> String {
    format!("defaults:\n  sampling: {{default_rate: {BASE_RATE}}}\n")
}

fn sidecar_config(control: Option<String>, pod: &str) -> Config {
    let mut c = Config::default();
    let loopback = "127.0.0.1:0".parse().expect("an address");
    (c.inbound.listen, c.outbound.listen, c.admin.listen) = (loopback, loopback, loopback);
    c.admin.health_listen = None;
    c.admin.metrics_listen = None;
    c.inbound.app_port = meshtrace_config::AppPort::Fixed(9);
    c.control.url = control;
    c.workload.service = Some(SERVICE.into());
    c.workload.namespace = Some("bench".into());
    c.workload.pod_name = Some(pod.into());
    c
}

/// Adds the override if `on`, else removes the active one; returns the rate the
/// workload should now run with.
async fn flip(client: &ControlClient, on: bool, active: &mut Option<String>) -> bool {
    if on {
        let new = NewOverride {
            service: Some(SERVICE.into()),
            rate: 1.0,
            duration: Some("1h".into()),
            ..NewOverride::default()
        };
        let added: Override = client
            .send_json(Method::POST, "/v1/overrides", &new)
            .await
            .expect("add an override");
        *active = Some(added.id);
        true
    } else {
        let id = active.take().expect("an active override");
        let _: Override = client
            .call(Method::DELETE, &format!("/v1/overrides/{id}"), None)
            .await
            .expect("remove the override");
        false
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!("# control-latency, {} cores", num_cpus());
    push_to_applied(args.pushes).await;
    fan_out(args.watchers, args.rounds).await;
    watch_rss(args.rss_pushes).await;
}

async fn push_to_applied(n: usize) {
    let cp = testing::start(&document(), Some(TOKEN)).await;
    let sidecar = Sidecar::start(sidecar_config(Some(cp.url()), "latency-0"))
        .await
        .expect("the sidecar starts");
    let mut applied = sidecar.reloader().subscribe();
    bounded(
        "the first push",
        applied.wait_for(|c| c.sampling.default_rate == BASE_RATE),
    )
    .await
    .expect("the sidecar runs");
    let client = cp.client();
    let (mut samples, mut active) = (Vec::with_capacity(n), None);
    for i in 0..n {
        let start = Instant::now();
        let on = flip(&client, i % 2 == 0, &mut active).await;
        bounded(
            "push → applied",
            applied.wait_for(|c| c.sampling.forced_workload.is_some() == on),
        )
        .await
        .expect("the sidecar runs");
        samples.push(start.elapsed());
    }
    report(
        &format!("push → applied ({n} changes, one sidecar)"),
        samples,
    );
}

async fn fan_out(watchers: usize, rounds: usize) {
    let cp = testing::start(&document(), Some(TOKEN)).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let opened = Instant::now();
    for i in 0..watchers {
        let mut stream = cp
            .watch(SERVICE, "bench", &format!("watcher-{i}"), &[])
            .await;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(event)) = stream.next_config().await {
                if tx.send((event.version, Instant::now())).is_err() {
                    return;
                }
            }
        });
    }
    for _ in 0..watchers {
        bounded("every watcher's first config", rx.recv()).await;
    }
    println!(
        "\n{watchers} watch streams open and served in {:.0} ms",
        ms(opened.elapsed())
    );
    let client = cp.client();
    let (mut last, mut median, mut active) = (Vec::new(), Vec::new(), None);
    for round in 0..rounds {
        let start = Instant::now();
        flip(&client, round % 2 == 0, &mut active).await;
        let version = cp.store.snapshot().version;
        let mut arrivals = Vec::with_capacity(watchers);
        while arrivals.len() < watchers {
            let (v, at) = bounded("a watcher's config", rx.recv())
                .await
                .expect("watchers");
            assert_eq!(v, version, "one change at a time");
            arrivals.push(at - start);
        }
        arrivals.sort();
        median.push(arrivals[watchers / 2]);
        last.push(arrivals[watchers - 1]);
    }
    report(
        &format!("change → all {watchers} watchers ({rounds} changes)"),
        last,
    );
    report(
        &format!("change → median watcher ({rounds} changes)"),
        median,
    );
}

async fn watch_rss(pushes: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bin = std::env::current_exe().expect("this executable's path");
    let control_bin = bin.with_file_name("meshtrace-control");
    let proxy_bin = bin.with_file_name("meshtrace-proxy");
    for b in [&control_bin, &proxy_bin] {
        assert!(
            b.is_file(),
            "{} is missing: build it (see the module docs)",
            b.display()
        );
    }
    std::fs::write(dir.path().join("source.yaml"), document()).expect("source");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    let mut control = Command::new(&control_bin);
    control
        .args(["serve", "--listen", "127.0.0.1:0", "--source"])
        .arg(dir.path().join("source.yaml"))
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .arg("--token-file")
        .arg(dir.path().join("token"));
    let (_control, control_log) = spawn(control);
    let line = bounded(
        "meshtrace-control to listen",
        control_log.first("control plane listening"),
    )
    .await;
    let url = format!(
        "http://{}",
        line.split("addr=").nth(1).expect("addr=").trim()
    );

    let run = |name: &str, control: Option<String>| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, sidecar_config(control, name).to_yaml()).expect("config");
        let mut command = Command::new(&proxy_bin);
        command.arg("run").arg("--config").arg(path);
        spawn(command)
    };
    let (plain, plain_log) = run("plain", None);
    let (watching, watching_log) = run("watching", Some(url.clone()));
    bounded("the plain sidecar", plain_log.first("sidecar ready")).await;
    bounded(
        "the first push",
        watching_log.count_at_least("config applied", 1),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = [rss_kib(&plain), rss_kib(&watching)];

    let client = ControlClient::new(&url, Some(TOKEN.into())).expect("client");
    let mut active = None;
    for i in 0..pushes {
        flip(&client, i % 2 == 0, &mut active).await;
        bounded(
            "a push to apply",
            watching_log.count_at_least("config applied", i + 2),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = [rss_kib(&plain), rss_kib(&watching)];
    println!("\nVmRSS (KiB)      idle  after {pushes} pushes");
    println!("no control.url  {:>6}  {:>6}", idle[0], after[0]);
    println!("watching        {:>6}  {:>6}", idle[1], after[1]);
    println!(
        "watch cost      {:>+6}  {:>+6}",
        idle[1] as i64 - idle[0] as i64,
        after[1] as i64 - after[0] as i64
    );
}

/// Every line a child writes (stdout and stderr), to wait on.
#[derive(Clone)]
struct Log(watch::Receiver<Vec<String>>);

impl Log {
    /// The first line containing `needle`, now or later.
    async fn first(&self, needle: &str) -> String {
        let mut rx = self.0.clone();
        let lines = rx
            .wait_for(|l| l.iter().any(|l| l.contains(needle)))
            .await
            .expect("log");
        lines
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `n` lines contain `needle`.
    async fn count_at_least(&self, needle: &str, n: usize) {
        let mut rx = self.0.clone();
        let enough = |l: &Vec<String>| l.iter().filter(|l| l.contains(needle)).count() >= n;
        rx.wait_for(enough).await.expect("log");
    }
}

fn spawn(mut command: Command) -> (Child, Log) {
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("MESHTRACE_") || n.starts_with("POD_") {
            command.env_remove(&name);
        }
    }
    command
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn a binary");
    let (tx, rx) = watch::channel(Vec::new());
    let tx = Arc::new(tx);
    if let Some(out) = child.stdout.take() {
        collect_lines(out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        collect_lines(err, tx);
    }
    (child, Log(rx))
}

fn collect_lines(
    stream: impl AsyncRead + Send + Unpin + 'static,
    log: Arc<watch::Sender<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.send_modify(|l| l.push(line));
        }
    });
}

fn rss_kib(child: &Child) -> u64 {
    let pid = child.id().expect("a running child");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at =
        |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "\n{what}\n  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (min {:.2} ms)",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1]),
        ms(samples[0])
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
