//! Starts a meshtrace sidecar for a test, in process, in front of mock apps.
//!
//! ```no_run
//! # async fn demo(app: std::net::SocketAddr, upstream: std::net::SocketAddr) {
//! use meshtrace_tests::sidecar;
//!
//! let proxy = sidecar::new()
//!     .inbound_to(app)
//!     .explicit_route("svc:80", upstream)
//!     .request_timeout(500)
//!     .start()
//!     .await;
//! # }
//! ```
//!
//! Every listener binds `127.0.0.1:0`; everything else keeps the production
//! default unless the test changes it, so a test states exactly the settings its
//! behaviour depends on. [`Builder::spawn`] runs the same configuration as a real
//! `meshtrace-proxy` process instead (see [`crate::process`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use meshtrace_config::{AppPort, Config, Duration, OutboundMode, Route};
use meshtrace_proxy::{Sidecar, StartError};

use crate::bound::{within, within_for, STEP};
use crate::client;
use crate::process::{self, ProxyProcess};

/// A sidecar configuration for a test: production defaults, loopback ports.
pub fn new() -> Builder {
    let mut config = Config::default();
    let ephemeral = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    config.inbound.listen = ephemeral;
    config.outbound.listen = ephemeral;
    config.admin.listen = ephemeral;
    config.admin.health_listen = Some(ephemeral);
    config.admin.metrics_listen = Some(ephemeral);
    Builder { config }
}

/// Builds the configuration a test's sidecar runs with; see [`new`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until started"]
pub struct Builder {
    config: Config,
}

// === impl Builder ===

impl Builder {
    /// Inbound traffic goes to the app at `app`.
    pub fn inbound_to(mut self, app: SocketAddr) -> Self {
        self.config.inbound.app_host = app.ip();
        self.config.inbound.app_port = AppPort::Fixed(app.port());
        self
    }

    /// Outbound requests for exactly `authority` (`svc:80`) go to `target`;
    /// switches outbound to explicit mode.
    pub fn explicit_route(self, authority: &str, target: SocketAddr) -> Self {
        self.route(Route {
            authority: Some(authority.to_string()),
            host: None,
            target: target.into(),
        })
    }

    /// Outbound requests for `host` on any port go to `target`; switches
    /// outbound to explicit mode.
    pub fn host_route(self, host: &str, target: SocketAddr) -> Self {
        self.route(Route {
            authority: None,
            host: Some(host.to_string()),
            target: target.into(),
        })
    }

    fn route(mut self, route: Route) -> Self {
        self.config.outbound.mode = OutboundMode::Explicit;
        self.config.outbound.routes.push(route);
        self
    }

    /// Outbound connections that are not HTTP go to `target`; switches outbound
    /// to explicit mode.
    pub fn tcp_target(mut self, target: SocketAddr) -> Self {
        self.config.outbound.mode = OutboundMode::Explicit;
        self.config.outbound.tcp_target = Some(target.into());
        self
    }

    /// Connections to `port` are forwarded as opaque TCP, without detection.
    pub fn opaque_port(mut self, port: u16) -> Self {
        self.config.opaque_ports.push(port);
        self
    }

    /// `timeouts.connect`, in milliseconds.
    pub fn connect_timeout(mut self, ms: u64) -> Self {
        self.config.timeouts.connect = Duration::from_millis(ms);
        self
    }

    /// `timeouts.request`, in milliseconds (0: none).
    pub fn request_timeout(mut self, ms: u64) -> Self {
        self.config.timeouts.request = Duration::from_millis(ms);
        self
    }

    /// `timeouts.idle`, in milliseconds.
    pub fn idle_timeout(mut self, ms: u64) -> Self {
        self.config.timeouts.idle = Duration::from_millis(ms);
        self
    }

    /// `timeouts.header_read`, in milliseconds.
    pub fn header_read_timeout(mut self, ms: u64) -> Self {
        self.config.timeouts.header_read = Duration::from_millis(ms);
        self
    }

    /// `timeouts.detect`, in milliseconds.
    pub fn detect_timeout(mut self, ms: u64) -> Self {
        self.config.timeouts.detect = Duration::from_millis(ms);
        self
    }

    /// `timeouts.drain`, in milliseconds.
    pub fn drain_timeout(mut self, ms: u64) -> Self {
        self.config.timeouts.drain = Duration::from_millis(ms);
        self
    }

    /// `limits.max_header_bytes`.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.config.limits.max_header_bytes = bytes;
        self
    }

    /// `limits.max_connections` (per listener).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.limits.max_connections = connections;
        self
    }

    /// Watches the control plane at `url` as `service` in namespace `shop`, pod
    /// `<service>-1`, reconnecting within 50–200 ms (tests restart control
    /// planes and must not wait out the production backoff).
    pub fn watching(mut self, url: &str, service: &str) -> Self {
        let control = &mut self.config.control;
        control.url = Some(url.to_string());
        control.reconnect_min = Duration::from_millis(50);
        control.reconnect_max = Duration::from_millis(200);
        let workload = &mut self.config.workload;
        workload.service = Some(service.to_string());
        workload.namespace = Some("shop".into());
        workload.pod_name = Some(format!("{service}-1"));
        self
    }

    /// Any other change, for settings without a method of their own.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration, for a test that starts the sidecar its own way.
    pub fn into_config(self) -> Config {
        self.config
    }

    /// Starts the sidecar in this process; panics if it cannot start.
    pub async fn start(self) -> Proxy {
        self.try_start()
            .await
            .unwrap_or_else(|e| panic!("the sidecar did not start: {e}"))
    }

    /// Starts the sidecar in this process; the error is for tests of start-up
    /// failures (a listener address in use).
    pub async fn try_start(self) -> Result<Proxy, StartError> {
        let problems = self.config.problems();
        assert!(
            problems.is_empty(),
            "the test built an invalid config: {problems:?}"
        );
        let config = self.config.clone();
        let sidecar = within("the sidecar to start", Sidecar::start(self.config)).await?;
        Ok(Proxy { sidecar, config })
    }

    /// Runs this configuration as a real `meshtrace-proxy` process.
    pub async fn spawn(self) -> ProxyProcess {
        self.process().spawn().await
    }

    /// A process builder for this configuration, to add environment variables
    /// or another uid before spawning.
    pub fn process(self) -> process::Builder {
        process::Builder::new(self.config)
    }
}

/// A running in-process sidecar; dereferences to [`Sidecar`] for its addresses.
/// Dropping it starts a drain.
pub struct Proxy {
    sidecar: Sidecar,
    config: Config,
}

// === impl Proxy ===

impl Proxy {
    /// The configuration the sidecar runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Waits for a drain (started by [`Sidecar::shutdown`] or the admin
    /// `/shutdown`) to finish; true if every connection finished in time. Bounded
    /// by the drain timeout plus [`STEP`].
    pub async fn wait(self) -> bool {
        let limit = self.config.timeouts.drain.get() + STEP;
        within_for(limit, "the sidecar to finish draining", self.sidecar.wait()).await
    }

    /// Starts a drain and waits for it; see [`Proxy::wait`].
    pub async fn shutdown_and_wait(self) -> bool {
        self.sidecar.shutdown();
        self.wait().await
    }

    /// `GET path` on the admin server (`/ready`, `/metrics`, `/config`).
    pub async fn admin_get(&self, path: &str) -> Response<Bytes> {
        client::http1_get(self.sidecar.admin_addr(), path).await
    }

    /// The first config the sidecar runs — now or later — for which `done`
    /// holds (waits on the reloader's subscription, bounded).
    pub async fn applied(&self, what: &str, done: impl Fn(&Config) -> bool) -> Arc<Config> {
        let mut configs = self.sidecar.reloader().subscribe();
        let config = within(what, configs.wait_for(|c| done(c)))
            .await
            .unwrap_or_else(|_| panic!("the sidecar stopped while waiting for {what}"));
        config.clone()
    }

    /// The Prometheus metrics text from `/metrics`.
    pub async fn metrics(&self) -> String {
        scrape(self.sidecar.admin_addr()).await
    }
}

/// The Prometheus metrics text from `/metrics` on the admin server at `admin`.
pub async fn scrape(admin: SocketAddr) -> String {
    let rsp = client::http1_get(admin, "/metrics").await;
    assert!(
        rsp.status().is_success(),
        "GET /metrics answered {}",
        rsp.status()
    );
    String::from_utf8_lossy(rsp.body()).into_owned()
}

/// The value of one series (name and labels exactly as exposed) in Prometheus
/// text.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

impl Deref for Proxy {
    type Target = Sidecar;

    fn deref(&self) -> &Sidecar {
        &self.sidecar
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("inbound", &self.sidecar.inbound_addr())
            .field("outbound", &self.sidecar.outbound_addr())
            .field("admin", &self.sidecar.admin_addr())
            .finish_non_exhaustive()
    }
}
