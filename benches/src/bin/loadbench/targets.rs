//! What is measured: the backend directly, and the three proxies in front of it,
//! configured alike (one worker, keep-alive both sides, h2c on a second listener,
//! no access log) — plus the meshtrace sidecars with span export, and the gRPC
//! pair. Every port is a free loopback port; every process a [`Group`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::procs::{accepts, free_port, http_get, Group};
use super::Error;

/// A thing a load generator is pointed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The backend itself: the baseline.
    Direct,
    /// The meshtrace sidecar, span export off (no endpoint).
    Meshtrace,
    /// HAProxy.
    Haproxy,
    /// nginx.
    Nginx,
    /// meshtrace, sampling 0%, exporting to the OTLP sink.
    Sampled0,
    /// meshtrace, sampling 1%, exporting to the OTLP sink.
    Sampled1,
    /// meshtrace, sampling 100%, exporting to the OTLP sink.
    Sampled100,
}

/// The baseline and the three proxies, in window order.
pub const COMPARED: [Target; 4] = [
    Target::Direct,
    Target::Meshtrace,
    Target::Haproxy,
    Target::Nginx,
];
/// The proxies.
pub const PROXIES: [Target; 3] = [Target::Meshtrace, Target::Haproxy, Target::Nginx];
/// The exporting sidecars.
pub const SAMPLED: [Target; 3] = [Target::Sampled0, Target::Sampled1, Target::Sampled100];

// === impl Target ===

impl Target {
    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Meshtrace => "meshtrace",
            Target::Haproxy => "HAProxy",
            Target::Nginx => "nginx",
            Target::Sampled0 => "meshtrace, sampling 0% → OTLP",
            Target::Sampled1 => "meshtrace, sampling 1% → OTLP",
            Target::Sampled100 => "meshtrace, sampling 100% → OTLP",
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

/// A proxy with an HTTP/1.1 and an h2c listener.
#[derive(Debug)]
struct Proxy {
    group: Group,
    h1: u16,
    h2: u16,
}

/// Everything the run measures, running; dropping it stops every process.
#[derive(Debug)]
pub struct Stack {
    backend: Group,
    backend_port: u16,
    _sink: Group,
    sink_stats: u16,
    grpc_server: Group,
    grpc_port: u16,
    sidecars: BTreeMap<Target, Sidecar>,
    grpc_sidecar: Sidecar,
    haproxy: Proxy,
    nginx: Proxy,
}

/// How long a process may take to become ready.
const READY: Duration = Duration::from_secs(15);

// === impl Stack ===

impl Stack {
    /// Starts the backend, the OTLP sink, the gRPC server, the sidecars, HAProxy
    /// and nginx, and waits until each is ready. `bin` holds the release binaries;
    /// `dir` receives the config files and logs.
    pub fn start(bin: &Path, dir: &Path) -> Result<Self, Error> {
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

        let (sink_port, sink_stats) = (free_port()?, free_port()?);
        let mut cmd = Command::new(bin.join("otlp-sink"));
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{sink_port}"),
            "--stats",
            &format!("127.0.0.1:{sink_stats}"),
        ]);
        let mut sink = Group::spawn("otlp-sink", cmd, dir)?;
        sink.wait_ready(READY, || {
            matches!(http_get(loopback(sink_stats), "/"), Ok((200, _)))
        })?;

        let grpc_port = free_port()?;
        let mut cmd = Command::new(bin.join("grpc-bench"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{grpc_port}")]);
        let mut grpc_server = Group::spawn("grpc-server", cmd, dir)?;
        grpc_server.wait_ready(READY, || accepts(loopback(grpc_port)))?;

        let mut sidecars = BTreeMap::new();
        for target in [Target::Meshtrace].into_iter().chain(SAMPLED) {
            let export = target.rate().map(|rate| (rate, sink_port));
            let name = format!("sidecar-{target:?}").to_lowercase();
            let sidecar = start_sidecar(bin, dir, &name, backend_port, export)?;
            sidecars.insert(target, sidecar);
        }
        let grpc_sidecar = start_sidecar(bin, dir, "sidecar-grpc", grpc_port, None)?;

        let haproxy = start_haproxy(dir, backend_port)?;
        let nginx = start_nginx(dir, backend_port)?;
        Ok(Self {
            backend,
            backend_port,
            _sink: sink,
            sink_stats,
            grpc_server,
            grpc_port,
            sidecars,
            grpc_sidecar,
            haproxy,
            nginx,
        })
    }

    /// The HTTP/1.1 URL of a target.
    pub fn h1_url(&self, target: Target) -> String {
        let port = match target {
            Target::Direct => self.backend_port,
            Target::Haproxy => self.haproxy.h1,
            Target::Nginx => self.nginx.h1,
            _ => self.sidecars.get(&target).map_or(0, |s| s.inbound),
        };
        format!("http://127.0.0.1:{port}/")
    }

    /// The h2c (prior knowledge) URL of a target. The backend and the sidecar
    /// detect h2 on their one listener; HAProxy and nginx have a second one.
    pub fn h2_url(&self, target: Target) -> String {
        match target {
            Target::Haproxy => format!("http://127.0.0.1:{}/", self.haproxy.h2),
            Target::Nginx => format!("http://127.0.0.1:{}/", self.nginx.h2),
            _ => self.h1_url(target),
        }
    }

    /// The process group whose CPU and memory are the target's (none for direct).
    pub fn pgid(&self, target: Target) -> Option<u32> {
        match target {
            Target::Direct => None,
            Target::Haproxy => Some(self.haproxy.group.pgid()),
            Target::Nginx => Some(self.nginx.group.pgid()),
            _ => self.sidecars.get(&target).map(|s| s.group.pgid()),
        }
    }

    /// The admin address of a meshtrace target.
    pub fn admin(&self, target: Target) -> Option<SocketAddr> {
        self.sidecars.get(&target).map(|s| s.admin)
    }

    /// Spans the OTLP sink has received so far.
    pub fn sink_spans(&self) -> Option<u64> {
        let (_, body) = http_get(loopback(self.sink_stats), "/").ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix("spans "))
            .and_then(|v| v.trim().parse().ok())
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
        self.haproxy.group.check_alive()?;
        self.nginx.group.check_alive()?;
        self.grpc_sidecar.group.check_alive()?;
        for sidecar in self.sidecars.values_mut() {
            sidecar.group.check_alive()?;
        }
        Ok(())
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A sidecar in front of `app_port`, as `benches/load/quick.sh` runs it; with
/// `export = Some((rate, sink_port))`, sampling at `rate` and exporting over
/// OTLP/gRPC to the sink, as `benches/load/spans.sh` writes it.
fn start_sidecar(
    bin: &Path,
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
    let mut cmd = Command::new(bin.join("meshtrace-proxy"));
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

/// HAProxy: one thread, keep-alive to clients, `http-reuse always` to the backend,
/// h2c (prior knowledge) on a second `bind … proto h2` frontend whose backend
/// speaks h2 to the app (as the sidecar does for h2 clients); no `log` line, so
/// no logging.
fn start_haproxy(dir: &Path, backend_port: u16) -> Result<Proxy, Error> {
    let (h1, h2) = (free_port()?, free_port()?);
    let cfg = format!(
        "global\n    nbthread 1\n    maxconn 4096\n\n\
         defaults\n    mode http\n    option http-keep-alive\n    http-reuse always\n    \
         timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n    \
         timeout http-keep-alive 60s\n\n\
         frontend h1\n    bind 127.0.0.1:{h1}\n    default_backend app_h1\n\n\
         frontend h2c\n    bind 127.0.0.1:{h2} proto h2\n    default_backend app_h2\n\n\
         backend app_h1\n    server app 127.0.0.1:{backend_port}\n\n\
         backend app_h2\n    server app 127.0.0.1:{backend_port} proto h2\n"
    );
    let path = write_file(dir, "haproxy.cfg", &cfg)?;
    let mut cmd = Command::new(system_binary("haproxy"));
    cmd.arg("-db").arg("-f").arg(&path);
    let mut group = Group::spawn("haproxy", cmd, dir)?;
    group.wait_ready(READY, || accepts(loopback(h1)) && accepts(loopback(h2)))?;
    Ok(Proxy { group, h1, h2 })
}

/// nginx: one worker process, keep-alive to clients and to the backend (an
/// `upstream` with `keepalive 64`, HTTP/1.1 and no `Connection` header; no
/// per-connection request limit on either side), h2c on a second server block
/// (`listen … http2` before nginx 1.25.1, `http2 on` since), proxied to the
/// backend over HTTP/1.1 (nginx cannot proxy h2); access log off.
fn start_nginx(dir: &Path, backend_port: u16) -> Result<Proxy, Error> {
    let (h1, h2) = (free_port()?, free_port()?);
    let nginx = system_binary("nginx");
    let h2_listen = if nginx_version(&nginx).is_some_and(|v| v >= (1, 25, 1)) {
        format!("listen 127.0.0.1:{h2};\n        http2 on;")
    } else {
        format!("listen 127.0.0.1:{h2} http2;")
    };
    let d = dir.display();
    let location = "location / {\n            proxy_pass http://app;\n            \
                    proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }";
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log warn;\n\
         events {{\n    worker_connections 4096;\n}}\n\
         http {{\n    access_log off;\n    keepalive_requests 1000000;\n    \
         keepalive_timeout 60s;\n    \
         client_body_temp_path {d}/nginx-body;\n    proxy_temp_path {d}/nginx-proxy;\n    \
         fastcgi_temp_path {d}/nginx-fastcgi;\n    uwsgi_temp_path {d}/nginx-uwsgi;\n    \
         scgi_temp_path {d}/nginx-scgi;\n\
         upstream app {{\n        server 127.0.0.1:{backend_port};\n        keepalive 64;\n        \
         keepalive_requests 1000000;\n    }}\n\
         server {{\n        listen 127.0.0.1:{h1};\n        {location}\n    }}\n\
         server {{\n        {h2_listen}\n        {location}\n    }}\n}}\n"
    );
    let path = write_file(dir, "nginx.conf", &conf)?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"));
    cmd.arg("-c").arg(&path);
    let mut group = Group::spawn("nginx", cmd, dir)?;
    group.wait_ready(READY, || accepts(loopback(h1)) && accepts(loopback(h2)))?;
    Ok(Proxy { group, h1, h2 })
}

/// `nginx -v` → (major, minor, patch).
fn nginx_version(nginx: &Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(nginx).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let version = text.split("nginx/").nth(1)?.split_whitespace().next()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// `/usr/sbin/NAME` if it exists (root's PATH has it, a user's may not), else NAME.
pub fn system_binary(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
