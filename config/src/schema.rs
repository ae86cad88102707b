//! The sidecar's configuration document, section by section.
//!
//! Every struct takes `#[serde(default)]`, so a file only needs the keys it changes,
//! and `deny_unknown_fields`, so a misspelt key is an error rather than a silently
//! ignored setting. The defaults here are the ones `default.yaml` documents; a test
//! keeps the two identical.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::propagation::Propagation;
use crate::sampling::Sampling;
use crate::telemetry::{Export, Spans};
use crate::types::{Duration, HostPort};

/// The whole sidecar configuration.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Who this sidecar runs for (mostly filled from the Kubernetes downward API).
    pub workload: Workload,
    /// Traffic from the mesh to the local application.
    pub inbound: Inbound,
    /// Traffic from the local application to the rest of the mesh.
    pub outbound: Outbound,
    /// The loopback admin server (`/live`, `/ready`, `/metrics`, `/config`, `/shutdown`).
    pub admin: Admin,
    /// Every timeout the data path applies.
    pub timeouts: Timeouts,
    /// Resource limits that keep one bad peer from hurting the others.
    pub limits: Limits,
    /// Destination ports whose traffic is forwarded as opaque TCP without protocol
    /// detection: server-speaks-first protocols (SMTP, MySQL, …) would otherwise wait
    /// for the detection timeout.
    pub opaque_ports: Vec<u16>,
    /// Trace-context formats read and written.
    pub propagation: Propagation,
    /// Which traces are recorded.
    pub sampling: Sampling,
    /// What the sidecar's spans carry.
    pub spans: Spans,
    /// Where spans are sent (OTLP).
    pub export: Export,
    /// Where live configuration comes from (local only: never taken from a push).
    pub control: Control,
    /// The async runtime.
    pub runtime: Runtime,
    /// Process logs and the access log.
    pub log: Log,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: Workload::default(),
            inbound: Inbound::default(),
            outbound: Outbound::default(),
            admin: Admin::default(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            // Linkerd's default opaque set: protocols where the server speaks first.
            opaque_ports: vec![25, 587, 3306, 4444, 5432, 6379, 9300, 11211],
            propagation: Propagation::default(),
            sampling: Sampling::default(),
            spans: Spans::default(),
            export: Export::default(),
            control: Control::default(),
            runtime: Runtime::default(),
            log: Log::default(),
        }
    }
}

/// The workload identity, used in logs and (later) span resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Logical service name.
    pub service: Option<String>,
    /// Kubernetes namespace (`POD_NAMESPACE`).
    pub namespace: Option<String>,
    /// Pod name (`POD_NAME`).
    pub pod_name: Option<String>,
    /// Node name (`NODE_NAME`).
    pub node_name: Option<String>,
    /// Pod IP (`POD_IP`).
    pub pod_ip: Option<IpAddr>,
}

/// The inbound listener: the mesh calls the application through it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Inbound {
    /// Where redirected inbound traffic arrives.
    pub listen: SocketAddr,
    /// The host the application listens on inside the pod.
    pub app_host: IpAddr,
    /// The application port, or `original` to use the port the peer originally
    /// dialled (iptables REDIRECT of several container ports to one listener).
    pub app_port: AppPort,
    /// Whether callers are mesh peers. On an untrusted (edge) listener incoming
    /// trace context and force signals are ignored: every request starts a trace.
    pub trusted: bool,
    /// What happens to a connection whose first bytes are not HTTP (or that
    /// stays silent past `timeouts.detect`) on a port not in `opaque_ports`.
    pub unidentified: Unidentified,
}

/// What an inbound listener does with a connection detection cannot identify
/// as HTTP. Forwarding it as opaque TCP would let a client bypass everything
/// the HTTP stack enforces (header ownership, the access log) just by being
/// slow or malformed; server-speaks-first protocols belong in `opaque_ports`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unidentified {
    /// `close` on an untrusted listener (`trusted: false`), else `forward`.
    #[default]
    Auto,
    /// Forwarded byte for byte to the app, as opaque TCP.
    Forward,
    /// Closed, and counted.
    Close,
}

impl Inbound {
    /// Whether a connection that is not identified as HTTP is closed rather
    /// than forwarded, resolving `auto` by trust.
    pub fn closes_unidentified(&self) -> bool {
        match self.unidentified {
            Unidentified::Auto => !self.trusted,
            Unidentified::Forward => false,
            Unidentified::Close => true,
        }
    }
}

impl Default for Inbound {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 15006)),
            app_host: Ipv4Addr::LOCALHOST.into(),
            app_port: AppPort::Fixed(8080),
            trusted: true,
            unidentified: Unidentified::Auto,
        }
    }
}

/// Which port inbound traffic is forwarded to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "PortSpec", into = "PortSpec")]
pub enum AppPort {
    /// Always this port.
    Fixed(u16),
    /// The original destination port of the redirected connection.
    Original,
}

/// How [`AppPort`] is written in YAML: a number or the word `original`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum PortSpec {
    Number(u64),
    Word(String),
}

impl TryFrom<PortSpec> for AppPort {
    type Error = String;

    fn try_from(spec: PortSpec) -> Result<Self, String> {
        match spec {
            PortSpec::Number(n) => match u16::try_from(n) {
                Ok(p) if p != 0 => Ok(Self::Fixed(p)),
                _ => Err(format!("port {n} is out of range 1..=65535")),
            },
            PortSpec::Word(w) if w == "original" => Ok(Self::Original),
            PortSpec::Word(w) => Err(format!("expected a port number or `original`, got {w:?}")),
        }
    }
}

impl From<AppPort> for PortSpec {
    fn from(p: AppPort) -> Self {
        match p {
            AppPort::Fixed(n) => Self::Number(n.into()),
            AppPort::Original => Self::Word("original".into()),
        }
    }
}

/// The outbound listener: the application's calls leave through it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Outbound {
    /// Where redirected (or explicitly addressed) outbound traffic arrives.
    pub listen: SocketAddr,
    /// How the destination of a connection is chosen.
    pub mode: OutboundMode,
    /// The route table used in `explicit` mode, matched in order.
    pub routes: Vec<Route>,
    /// In `explicit` mode, where non-HTTP connections go (none: they are refused).
    pub tcp_target: Option<HostPort>,
}

impl Default for Outbound {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 15001)),
            mode: OutboundMode::Transparent,
            routes: Vec::new(),
            tcp_target: None,
        }
    }
}

/// How the outbound listener finds where a connection was going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundMode {
    /// The socket's original destination (iptables REDIRECT, `SO_ORIGINAL_DST`).
    Transparent,
    /// The request's authority looked up in `routes` (the app is configured to use
    /// the sidecar as its HTTP proxy or calls it directly).
    Explicit,
}

/// One entry of the explicit-mode route table. Exactly one of `authority` and
/// `host` is set.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Matches the request authority exactly (`reviews:9080`), case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Matches the authority's host whatever the port (`reviews`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Where matching requests are sent.
    pub target: HostPort,
}

/// The loopback admin server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// Its address. It serves an unauthenticated `POST /shutdown`, so it must be a
    /// loopback address unless `allow_non_loopback` says otherwise.
    pub listen: SocketAddr,
    /// Accept a non-loopback admin address (for debugging only).
    pub allow_non_loopback: bool,
    /// The health port for the kubelet's probes (`null`: none). It serves only
    /// `GET /healthz/ready`, so unlike the admin server it may listen where the
    /// kubelet reaches it: on the pod's address.
    pub health_listen: Option<SocketAddr>,
    /// The metrics port for Prometheus (`null`: none). It serves only
    /// `GET /metrics` (the admin server's rendering), so it too may listen on the
    /// pod's address, where a scraper reaches it.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
            allow_non_loopback: false,
            health_listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 15021))),
            metrics_listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 15020))),
        }
    }
}

/// Timeouts. `0s` disables the ones documented as optional.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Establishing a TCP connection to an upstream.
    pub connect: Duration,
    /// From the request's arrival to the upstream's response headers (`0s`: none).
    /// Bodies may stream for longer: a download or a gRPC stream is not cut.
    pub request: Duration,
    /// A connection with nothing in flight is closed after this long: pooled
    /// upstream connections, idle keep-alive clients, silent opaque TCP. The
    /// default (2 minutes) outlasts the common client pools (Go's 90 s), so
    /// that they close an idle connection first and never reuse one the
    /// sidecar is closing.
    pub idle: Duration,
    /// A client must send a complete HTTP/1 request head within this long.
    pub header_read: Duration,
    /// Protocol detection must see enough bytes within this long, else the
    /// connection is not HTTP (`inbound.unidentified`: closed or opaque TCP).
    pub detect: Duration,
    /// On shutdown, in-flight requests get this long to finish.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(15),
            idle: Duration::from_secs(120),
            header_read: Duration::from_secs(10),
            detect: Duration::from_secs(10),
            drain: Duration::from_secs(20),
        }
    }
}

/// Resource limits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request header block accepted (names + values); larger gets 431.
    pub max_header_bytes: usize,
    /// Most request header fields accepted (each repeated field counts); more gets
    /// an explained 431. Envoy's and hyper's default is also 100.
    pub max_header_count: usize,
    /// Open connections per listener; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// The listen backlog.
    pub backlog: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_header_count: 100,
            max_connections: 16_384,
            backlog: 1024,
        }
    }
}

/// The control plane the sidecar watches for configuration, or local file mode.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Control {
    /// The control plane, e.g. `http://meshtrace-control.meshtrace:15010`
    /// (`MESHTRACE_CONTROL_URL`). Unset: local file mode (the `--config` file is
    /// watched and reloaded on change).
    pub url: Option<String>,
    /// Where the last configuration that was applied is kept, so a restarted
    /// sidecar starts with it while the control plane is unreachable
    /// (`MESHTRACE_CONTROL_CACHE`).
    pub cache_file: Option<std::path::PathBuf>,
    /// The pod's labels, which the control plane's workload sections match
    /// (`MESHTRACE_POD_LABELS`: `k=v,k2=v2`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// First reconnect delay after the watch fails (doubles, with jitter).
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Local file mode: how often the `--config` file is checked for changes.
    pub file_poll: Duration,
    /// How often the sidecar reports the trace-context formats it sees to the
    /// control plane (the fleet-wide migration view).
    pub report_interval: Duration,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            url: None,
            cache_file: None,
            labels: std::collections::BTreeMap::new(),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            file_poll: Duration::from_secs(1),
            report_interval: Duration::from_secs(15),
        }
    }
}

/// The tokio runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Runtime {
    /// Worker threads; unset means one per available core. One runs tokio's
    /// single-threaded scheduler (cheapest per request for a one-core sidecar).
    pub workers: Option<usize>,
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,meshtrace_proxy=debug`.
    pub level: String,
    /// One line per request on the `access` target.
    pub access_log: bool,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            access_log: true,
        }
    }
}

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
