//! Environment variables that override the file.
//!
//! Kubernetes hands a pod its identity through the downward API, and the injector
//! sets the per-pod ports; both arrive as environment variables, so they win over
//! the (shared) config file:
//!
//! | variable | overrides |
//! |---|---|
//! | `POD_NAME` | `workload.pod_name` |
//! | `POD_NAMESPACE` | `workload.namespace` |
//! | `NODE_NAME` | `workload.node_name` |
//! | `POD_IP` | `workload.pod_ip` |
//! | `MESHTRACE_SERVICE_NAME` | `workload.service` |
//! | `MESHTRACE_INBOUND_LISTEN` | `inbound.listen` |
//! | `MESHTRACE_APP_PORT` | `inbound.app_port` (a number or `original`) |
//! | `MESHTRACE_OUTBOUND_LISTEN` | `outbound.listen` |
//! | `MESHTRACE_ADMIN_LISTEN` | `admin.listen` |
//! | `MESHTRACE_HEALTH_LISTEN` | `admin.health_listen` (an address, or `none`) |
//! | `MESHTRACE_METRICS_LISTEN` | `admin.metrics_listen` (an address, or `none`) |
//! | `MESHTRACE_OPAQUE_PORTS` | `opaque_ports` (comma-separated) |
//! | `MESHTRACE_WORKERS` | `runtime.workers` |
//! | `MESHTRACE_LOG_LEVEL` | `log.level` |
//! | `MESHTRACE_LOG_FORMAT` | `log.format` (`text` or `json`) |
//! | `MESHTRACE_CONTROL_URL` | `control.url` |
//! | `MESHTRACE_CONTROL_CACHE` | `control.cache_file` |
//! | `MESHTRACE_POD_LABELS` | `control.labels` (`k=v,k2=v2`) |
//!
//! The OpenTelemetry export variables (`OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`) fill
//! the `export` keys the file leaves `null`, in the same step (see
//! [`Export::apply_env`](crate::Export::apply_env)): every variable that shapes the
//! config is read once, when the config is loaded, and `/config` shows the result.
//!
//! Empty variables are ignored. A malformed value is a problem reported as
//! `env NAME: …` next to the file's problems.

use serde::de::DeserializeOwned;

use crate::schema::Config;
use crate::validate::Problems;

/// Applies overrides read through `var` (normally `std::env::var`).
pub(crate) fn apply(
    config: &mut Config,
    var: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let w = &mut config.workload;
    for (name, slot) in [
        ("POD_NAME", &mut w.pod_name),
        ("POD_NAMESPACE", &mut w.namespace),
        ("NODE_NAME", &mut w.node_name),
        ("MESHTRACE_SERVICE_NAME", &mut w.service),
    ] {
        if let Some(v) = get(name) {
            *slot = Some(v);
        }
    }
    let mut parse = |name: &str, apply: &mut dyn FnMut(&str) -> Result<(), String>| {
        if let Some(v) = get(name) {
            if let Err(e) = apply(v.trim()) {
                problems.add(format!("env {name}"), e);
            }
        }
    };
    parse("POD_IP", &mut |v| {
        set(
            &mut config.workload.pod_ip,
            v.parse().map(Some).map_err(|e| format!("{v:?}: {e}")),
        )
    });
    parse("MESHTRACE_INBOUND_LISTEN", &mut |v| {
        set(&mut config.inbound.listen, socket_addr(v))
    });
    parse("MESHTRACE_OUTBOUND_LISTEN", &mut |v| {
        set(&mut config.outbound.listen, socket_addr(v))
    });
    parse("MESHTRACE_ADMIN_LISTEN", &mut |v| {
        set(&mut config.admin.listen, socket_addr(v))
    });
    parse("MESHTRACE_HEALTH_LISTEN", &mut |v| {
        let addr = match v {
            "none" | "null" => Ok(None),
            _ => socket_addr(v).map(Some),
        };
        set(&mut config.admin.health_listen, addr)
    });
    parse("MESHTRACE_METRICS_LISTEN", &mut |v| {
        let addr = match v {
            "none" | "null" => Ok(None),
            _ => socket_addr(v).map(Some),
        };
        set(&mut config.admin.metrics_listen, addr)
    });
    parse("MESHTRACE_APP_PORT", &mut |v| {
        set(&mut config.inbound.app_port, yaml(v))
    });
    parse("MESHTRACE_OPAQUE_PORTS", &mut |v| {
        set(&mut config.opaque_ports, ports(v))
    });
    parse("MESHTRACE_WORKERS", &mut |v| {
        set(
            &mut config.runtime.workers,
            v.parse()
                .map(Some)
                .map_err(|_| format!("{v:?} is not a number")),
        )
    });
    parse("MESHTRACE_LOG_LEVEL", &mut |v| {
        set(&mut config.log.level, Ok(v.to_string()))
    });
    parse("MESHTRACE_LOG_FORMAT", &mut |v| {
        set(&mut config.log.format, yaml(v))
    });
    parse("MESHTRACE_CONTROL_URL", &mut |v| {
        set(&mut config.control.url, Ok(Some(v.to_string())))
    });
    parse("MESHTRACE_CONTROL_CACHE", &mut |v| {
        set(&mut config.control.cache_file, Ok(Some(v.into())))
    });
    parse("MESHTRACE_POD_LABELS", &mut |v| {
        set(&mut config.control.labels, labels(v))
    });
    for problem in config.export.apply_env(var) {
        problems.add(problem.path, problem.message);
    }
}

/// The items of a comma-separated list, blanks skipped.
fn items(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// `MESHTRACE_OPAQUE_PORTS`: `25,3306`.
fn ports(v: &str) -> Result<Vec<u16>, String> {
    items(v)
        .map(|p| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port")))
        .collect()
}

/// `MESHTRACE_POD_LABELS`: `app=checkout,tier=web`.
fn labels<C: FromIterator<(String, String)>>(v: &str) -> Result<C, String> {
    items(v)
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("{p:?} is not key=value")),
        })
        .collect()
}

fn set<T>(slot: &mut T, value: Result<T, String>) -> Result<(), String> {
    *slot = value?;
    Ok(())
}

fn socket_addr(v: &str) -> Result<std::net::SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an ip:port address"))
}

/// Parses a scalar the way the file would, so env and file accept the same words.
fn yaml<T: DeserializeOwned>(v: &str) -> Result<T, String> {
    serde_yaml::from_str(v).map_err(|e| format!("{v:?}: {e}"))
}
