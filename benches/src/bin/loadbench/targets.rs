//! What is measured: the backend directly, and the proxies in front of it,
//! configured alike (one worker, keep-alive both sides, h2c on a second listener,
//! no access log; see `configs.rs`) — plus the meshtrace sidecars with span
//! export, Envoy with its OpenTelemetry tracer, the `BEFORE` build of meshtrace,
//! and the gRPC pair. Every port is a free loopback port; every process a [`Group`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::configs::{write_file, Kind, Ports};
use super::procs::{accepts, free_port, http_get, Group};
use super::Error;

/// A thing a load generator is pointed at. The order is the tables' order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The backend itself: the baseline.
    Direct,
    /// The meshtrace sidecar, span export off (no endpoint).
    Meshtrace,
    /// The `BEFORE=` build of the sidecar, configured as [`Target::Meshtrace`].
    Before,
    /// HAProxy.
    Haproxy,
    /// nginx.
    Nginx,
    /// Envoy, no tracing.
    Envoy,
    /// meshtrace, sampling 0%, exporting to the OTLP sink.
    Sampled0,
    /// meshtrace, sampling 1%, exporting to the OTLP sink.
    Sampled1,
    /// meshtrace, sampling 100%, exporting to the OTLP sink.
    Sampled100,
    /// Envoy, OpenTelemetry tracer sampling 100 %, exporting to its own sink.
    EnvoyTraced,
}

/// The baseline and the proxies, in window order (`Before` only with `BEFORE=`).
pub const COMPARED: [Target; 6] = [
    Target::Direct,
    Target::Meshtrace,
    Target::Before,
    Target::Haproxy,
    Target::Nginx,
    Target::Envoy,
];
/// The proxies.
pub const PROXIES: [Target; 5] = [
    Target::Meshtrace,
    Target::Before,
    Target::Haproxy,
    Target::Nginx,
    Target::Envoy,
];
/// The meshtrace sidecars that export spans.
pub const SAMPLED: [Target; 3] = [Target::Sampled0, Target::Sampled1, Target::Sampled100];
/// The proxies tracing at 100 % with OTLP export, and their untraced selves.
pub const TRACED: [(Target, Target); 2] = [
    (Target::Sampled100, Target::Meshtrace),
    (Target::EnvoyTraced, Target::Envoy),
];

// === impl Target ===

impl Target {
    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Meshtrace => "meshtrace",
            Target::Before => "meshtrace (before)",
            Target::Haproxy => "HAProxy",
            Target::Nginx => "nginx",
            Target::Envoy => "Envoy",
            Target::Sampled0 => "meshtrace, sampling 0% → OTLP",
            Target::Sampled1 => "meshtrace, sampling 1% → OTLP",
            Target::Sampled100 => "meshtrace, sampling 100% → OTLP",
            Target::EnvoyTraced => "Envoy, sampling 100% → OTLP",
        }
    }

    /// The sampling rate of an exporting sidecar.
    fn rate(self) -> Option<&'static str> {
        match self {
            Target::Sampled0 => Some("0.0"),
            Target::Sampled1 => Some("0.01"),
            Target::Sampled100 => Some("1.0"),
            _ => None,
        }
    }
}

/// A running meshtrace sidecar.
#[derive(Debug)]
pub struct Sidecar {
    group: Group,
    inbound: u16,
    /// The admin listener (`/ready`, `/metrics`).
    pub admin: SocketAddr,
}

/// Another proxy: an HTTP/1.1 and an h2c listener (Envoy: and its admin).
#[derive(Debug)]
struct Proxy {
    group: Group,
    ports: Ports,
}

/// An OTLP sink and its stats listener.
#[derive(Debug)]
struct Sink {
    _group: Group,
    port: u16,
    stats: u16,
}

/// Everything the run measures, running; dropping it stops every process.
#[derive(Debug)]
pub struct Stack {
    backend: Group,
    backend_port: u16,
    sink: Sink,
    envoy_sink: Sink,
    grpc_server: Group,
    grpc_port: u16,
    sidecars: BTreeMap<Target, Sidecar>,
    grpc_sidecar: Sidecar,
    proxies: BTreeMap<Target, Proxy>,
}

/// How long a process may take to become ready.
const READY: Duration = Duration::from_secs(30);

// === impl Stack ===

impl Stack {
    /// Starts the backend, the OTLP sinks, the gRPC server, the sidecars (and the
    /// `before` build's, if any), HAProxy, nginx and the Envoys, and waits until
    /// each is ready. `bin` holds the release binaries; `dir` receives the config
    /// files and logs.
    pub fn start(bin: &Path, dir: &Path, before: Option<&Path>) -> Result<Self, Error> {
        let backend_port = free_port()?;
        let mut cmd = Command::new(bin.join("backend"));
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{backend_port}"),
            "--workers",
            "1",
        ]);
        let mut backend = Group::spawn("backend", cmd, dir)?;
        backend.wait_ready(READY, || accepts(loopback(backend_port)))?;
        let sink = start_sink(bin, dir, "otlp-sink")?;
        let envoy_sink = start_sink(bin, dir, "otlp-sink-envoy")?;

        let grpc_port = free_port()?;
        let mut cmd = Command::new(bin.join("grpc-bench"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{grpc_port}")]);
        let mut grpc_server = Group::spawn("grpc-server", cmd, dir)?;
        grpc_server.wait_ready(READY, || accepts(loopback(grpc_port)))?;

        let proxy = bin.join("meshtrace-proxy");
        let mut sidecars = BTreeMap::new();
        for target in [Target::Meshtrace].into_iter().chain(SAMPLED) {
            let export = target.rate().map(|rate| (rate, sink.port));
            let name = format!("sidecar-{target:?}").to_lowercase();
            let sidecar = start_sidecar(&proxy, dir, &name, backend_port, export)?;
            sidecars.insert(target, sidecar);
        }
        if let Some(before) = before {
            let sidecar = start_sidecar(before, dir, "sidecar-before", backend_port, None)?;
            sidecars.insert(Target::Before, sidecar);
        }
        let grpc_sidecar = start_sidecar(&proxy, dir, "sidecar-grpc", grpc_port, None)?;

        let mut proxies = BTreeMap::new();
        for (target, kind) in [
            (Target::Haproxy, Kind::Haproxy),
            (Target::Nginx, Kind::Nginx),
            (Target::Envoy, Kind::Envoy),
            (Target::EnvoyTraced, Kind::EnvoyTraced),
        ] {
            let p = start_proxy(kind, dir, backend_port, envoy_sink.port)?;
            proxies.insert(target, p);
        }
        Ok(Self {
            backend,
            backend_port,
            sink,
            envoy_sink,
            grpc_server,
            grpc_port,
            sidecars,
            grpc_sidecar,
            proxies,
        })
    }

    /// Whether `target` runs in this stack (`Before` only with `BEFORE=`).
    pub fn has(&self, target: Target) -> bool {
        target == Target::Direct
            || self.sidecars.contains_key(&target)
            || self.proxies.contains_key(&target)
    }

    /// The HTTP/1.1 URL of a target.
    pub fn h1_url(&self, target: Target) -> String {
        let port = match target {
            Target::Direct => self.backend_port,
            _ => match self.proxies.get(&target) {
                Some(p) => p.ports.h1,
                None => self.sidecars.get(&target).map_or(0, |s| s.inbound),
            },
        };
        format!("http://127.0.0.1:{port}/")
    }

    /// The h2c (prior knowledge) URL of a target. The backend and the sidecar
    /// detect h2 on their one listener; the other proxies have a second one.
    pub fn h2_url(&self, target: Target) -> String {
        match self.proxies.get(&target) {
            Some(p) => format!("http://127.0.0.1:{}/", p.ports.h2),
            None => self.h1_url(target),
        }
    }

    /// The process group whose CPU and memory are the target's (none for direct).
    pub fn pgid(&self, target: Target) -> Option<u32> {
        match self.proxies.get(&target) {
            Some(p) => Some(p.group.pgid()),
            None => self.sidecars.get(&target).map(|s| s.group.pgid()),
        }
    }

    /// The admin address of a meshtrace target.
    pub fn admin(&self, target: Target) -> Option<SocketAddr> {
        self.sidecars.get(&target).map(|s| s.admin)
    }

    /// The admin address of an Envoy target.
    pub fn envoy_admin(&self, target: Target) -> Option<SocketAddr> {
        matches!(target, Target::Envoy | Target::EnvoyTraced)
            .then(|| self.proxies.get(&target).map(|p| loopback(p.ports.admin)))
            .flatten()
    }

    /// Spans the meshtrace sidecars' OTLP sink has received so far.
    pub fn sink_spans(&self) -> Option<u64> {
        sink_spans(self.sink.stats)
    }

    /// Spans traced Envoy's own OTLP sink has received so far.
    pub fn envoy_sink_spans(&self) -> Option<u64> {
        sink_spans(self.envoy_sink.stats)
    }

    /// The gRPC server's URL, and the gRPC sidecar's (inbound → the server).
    pub fn grpc_urls(&self) -> (String, String) {
        (
            format!("http://127.0.0.1:{}", self.grpc_port),
            format!("http://127.0.0.1:{}", self.grpc_sidecar.inbound),
        )
    }

    /// The gRPC sidecar's process group.
    pub fn grpc_sidecar_pgid(&self) -> u32 {
        self.grpc_sidecar.group.pgid()
    }

    /// Fails if any process has exited.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        self.backend.check_alive()?;
        self.grpc_server.check_alive()?;
        self.grpc_sidecar.group.check_alive()?;
        for proxy in self.proxies.values_mut() {
            proxy.group.check_alive()?;
        }
        for sidecar in self.sidecars.values_mut() {
            sidecar.group.check_alive()?;
        }
        Ok(())
    }
}

fn sink_spans(stats: u16) -> Option<u64> {
    let (_, body) = http_get(loopback(stats), "/").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("spans "))
        .and_then(|v| v.trim().parse().ok())
}

/// An OTLP/gRPC sink counting the spans it receives.
fn start_sink(bin: &Path, dir: &Path, name: &str) -> Result<Sink, Error> {
    let (port, stats) = (free_port()?, free_port()?);
    let mut cmd = Command::new(bin.join("otlp-sink"));
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--stats",
        &format!("127.0.0.1:{stats}"),
    ]);
    let mut group = Group::spawn(name, cmd, dir)?;
    group.wait_ready(READY, || {
        matches!(http_get(loopback(stats), "/"), Ok((200, _)))
    })?;
    Ok(Sink {
        _group: group,
        port,
        stats,
    })
}

/// HAProxy, nginx or Envoy on free ports (`configs.rs`), ready when both
/// listeners accept.
fn start_proxy(kind: Kind, dir: &Path, backend: u16, sink: u16) -> Result<Proxy, Error> {
    let ports = Ports {
        backend,
        h1: free_port()?,
        h2: free_port()?,
        admin: free_port()?,
        sink,
    };
    let cmd = kind.command(dir, ports)?;
    let name = format!("{kind:?}").to_lowercase();
    let mut group = Group::spawn(&name, cmd, dir)?;
    group.wait_ready(READY, || {
        accepts(loopback(ports.h1)) && accepts(loopback(ports.h2))
    })?;
    Ok(Proxy { group, ports })
}

pub(super) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A sidecar in front of `app_port`, as `benches/load/quick.sh` runs it; with
/// `export = Some((rate, sink_port))`, sampling at `rate` and exporting over
/// OTLP/gRPC to the sink, as `benches/load/spans.sh` writes it.
fn start_sidecar(
    binary: &Path,
    dir: &Path,
    name: &str,
    app_port: u16,
    export: Option<(&str, u16)>,
) -> Result<Sidecar, Error> {
    let (inbound, admin) = (free_port()?, free_port()?);
    let mut yaml = format!(
        "inbound: {{listen: 127.0.0.1:{inbound}, app_port: {app_port}}}\n\
         outbound: {{listen: 127.0.0.1:0}}\n\
         admin: {{listen: 127.0.0.1:{admin}, health_listen: null, metrics_listen: null}}\n\
         runtime: {{workers: 1}}\n\
         log: {{access_log: false, level: warn}}\n"
    );
    if let Some((rate, sink_port)) = export {
        let _ = write!(
            yaml,
            "sampling: {{default_rate: {rate}}}\n\
             export: {{endpoint: \"http://127.0.0.1:{sink_port}\", protocol: grpc, compression: none}}\n"
        );
    }
    let config = write_file(dir, &format!("{name}.yaml"), &yaml)?;
    let mut cmd = Command::new(binary);
    cmd.arg("run").arg("--config").arg(&config);
    let mut group = Group::spawn(name, cmd, dir)?;
    let admin = loopback(admin);
    group.wait_http_ready(READY, admin, "/ready")?;
    Ok(Sidecar {
        group,
        inbound,
        admin,
    })
}
