//! `demo`: one command, one local mesh, one W3C trace through two legacy apps.
//!
//! ```text
//! client ─► sidecar A ─► frontend app ─► sidecar A ─► sidecar B ─► backend app
//!           inbound      speaks B3       outbound     inbound      speaks Datadog
//! ```
//!
//! Everything runs on 127.0.0.1: an in-process OTLP/gRPC collector, the two apps
//! (tasks of this process), and child processes found next to this binary (or in
//! `MESHTRACE_BIN_DIR`): `meshtrace-control serve` and two `meshtrace-proxy run`.
//! The control plane's source document sets `sampling.default_rate: 0.0`, so the
//! first request is not traced, though its context still flows. An incident
//! override (the real `meshtrace-control override add` CLI) then samples
//! `frontend` at 100%; once sidecar A has acknowledged the new version, the
//! second request comes out as one trace: sidecar A's SERVER span, the B3 app's
//! span, sidecar A's CLIENT span, sidecar B's SERVER span, the Datadog app's span.
//!
//! The sidecars get their per-pod ports from the environment, as the injector
//! sets them in Kubernetes (`MESHTRACE_*_LISTEN`, `MESHTRACE_APP_PORT`): pushed
//! configs replace everything else. Ports are picked free just before use.
//!
//! Children run in their own process group and are killed on every way out
//! (success, failure, Ctrl-C, SIGTERM). Their pids are listed in `<dir>/pids`
//! so that `scripts/demo.sh` can reap them should this process be killed.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshtrace_control::sidecars::SidecarInfo;
use meshtrace_tests::otlp::{OtlpReceiver, ReceivedSpan};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

/// Errors are messages for the person running the demo.
type Result<T, E = String> = std::result::Result<T, E>;

/// The longest any one wait may take before the demo gives up and says why.
const WAIT: Duration = Duration::from_secs(15);
/// How long the collector is watched to show that an untraced request exported nothing.
const QUIET: Duration = Duration::from_secs(1);
/// The spans one traced request makes: 3 from the sidecars, 1 from each app.
const SPANS_PER_TRACE: usize = 5;
/// The instrumentation scope of the sidecar's spans.
const SIDECAR_SCOPE: &str = "meshtrace-proxy";
/// The override the demo adds, as `meshtrace-control` arguments.
const OVERRIDE: [&str; 10] = [
    "override",
    "add",
    "--service",
    "frontend",
    "--rate",
    "1.0",
    "--for",
    "5m",
    "--reason",
    "demo",
];

#[tokio::main]
async fn main() -> ExitCode {
    let dir = match WorkDir::create() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    let procs = Processes::new(dir.path.join("pids"));
    let outcome = tokio::select! {
        result = run(&dir.path, &procs) => result.map_err(Stop::Failed),
        signal = interrupted() => Err(Stop::Signal(signal)),
    };
    procs.stop().await;
    match outcome {
        Ok(()) => {
            dir.finish(true);
            ExitCode::SUCCESS
        }
        Err(Stop::Signal(signal)) => {
            eprintln!("\n{signal}: the mesh is stopped");
            dir.finish(true);
            ExitCode::from(130)
        }
        Err(Stop::Failed(error)) => {
            eprintln!("\ndemo failed: {error}");
            procs.print_log_tails();
            dir.finish(false);
            ExitCode::FAILURE
        }
    }
}

/// Why the demo ended early.
enum Stop {
    /// SIGINT or SIGTERM.
    Signal(&'static str),
    /// Something did not work; the message says what.
    Failed(String),
}

/// The demo: the mesh, the two acts, the summary.
async fn run(dir: &Path, procs: &Processes) -> Result<()> {
    println!("meshtrace demo: a control plane, two sidecars, a B3 app, a Datadog app, a collector");
    let mesh = Mesh::start(dir, procs).await?;
    mesh.print();

    section("1. sampling.default_rate 0.0 everywhere: nothing is traced");
    let same_trace = mesh.untraced_request().await?;

    section("2. incident override: sample `frontend` at 100% for 5 minutes");
    let version = mesh.add_override().await?;
    let trace_id = mesh.traced_request().await?;

    let [a, b] = &mesh.sidecars;
    let b_version = mesh.acked(&b.identity()).await?.unwrap_or(0);
    section("summary");
    let joined = if same_trace { "yes" } else { "NO" };
    println!("  request 1  default_rate 0.0: 0 spans exported; both apps still joined one trace: {joined}");
    println!(
        "  override   frontend at 100% (real CLI): {} acked v{version}, {} still on v{b_version}",
        a.identity(),
        b.identity()
    );
    println!("  request 2  one W3C trace {trace_id}, {SPANS_PER_TRACE} spans:");
    println!("             sidecar A -> frontend app (B3) -> sidecar A -> sidecar B -> backend app (Datadog)");
    Ok(())
}

// === the mesh ===

/// Everything the demo started, and how to reach it.
struct Mesh<'a> {
    procs: &'a Processes,
    bins: Binaries,
    collector: OtlpReceiver,
    frontend: App,
    backend: App,
    /// Sidecar A (frontend), sidecar B (backend).
    sidecars: [Sidecar; 2],
    control: SocketAddr,
    token: String,
    /// The control plane's source document.
    source: PathBuf,
    /// The config versions the sidecars acknowledged at start.
    versions: [u64; 2],
}

/// One sidecar: its ports and the app behind it.
struct Sidecar {
    label: &'static str,
    service: &'static str,
    inbound: SocketAddr,
    outbound: SocketAddr,
    admin: SocketAddr,
    app: SocketAddr,
}

impl<'a> Mesh<'a> {
    /// Starts the collector and the apps, then the control plane, then the
    /// sidecars; returns once both sidecars are ready and run the pushed config.
    async fn start(dir: &Path, procs: &'a Processes) -> Result<Self> {
        let bins = Binaries::locate()?;
        let collector = OtlpReceiver::start_grpc().await;
        let (ports, reserved) = reserve_ports()?;
        let [control, a_in, a_out, a_admin, b_in, b_out, b_admin] = ports;
        let backend = App::start(Role::Backend, &collector.endpoint(), None).await?;
        let frontend = App::start(Role::Frontend, &collector.endpoint(), Some(a_out)).await?;
        drop(reserved);

        let source = dir.join("control-source.yaml");
        write(&source, &source_document(&collector.endpoint(), b_in))?;
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let token_file = dir.join("token");
        write(&token_file, &token)?;
        let serve = [
            "serve".to_string(),
            format!("--source={}", source.display()),
            format!("--state={}", dir.join("control-state.json").display()),
            format!("--listen={control}"),
            format!("--token-file={}", token_file.display()),
        ];
        procs.spawn("control plane", &bins.control, dir, &[], &serve)?;
        wait_for_ok(procs, control, "/healthz", "the control plane").await?;

        let sidecars = [
            Sidecar {
                label: "sidecar A",
                service: "frontend",
                inbound: a_in,
                outbound: a_out,
                admin: a_admin,
                app: frontend.addr,
            },
            Sidecar {
                label: "sidecar B",
                service: "backend",
                inbound: b_in,
                outbound: b_out,
                admin: b_admin,
                app: backend.addr,
            },
        ];
        for sidecar in &sidecars {
            sidecar.spawn(procs, &bins.proxy, dir, control)?;
        }
        let mut mesh = Self {
            procs,
            bins,
            collector,
            frontend,
            backend,
            sidecars,
            control,
            token,
            source,
            versions: [0; 2],
        };
        for i in 0..2 {
            let sidecar = &mesh.sidecars[i];
            wait_for_ok(procs, sidecar.admin, "/ready", sidecar.label).await?;
            mesh.versions[i] = mesh.wait_for_ack(&sidecar.identity(), 0).await?;
        }
        Ok(mesh)
    }

    fn print(&self) {
        let [a, b] = &self.sidecars;
        section("the mesh, on 127.0.0.1");
        println!(
            "  collector      {} (OTLP/gRPC, in-process)",
            self.collector.endpoint()
        );
        println!(
            "  control plane  http://{}   source: {}",
            self.control,
            self.source.display()
        );
        for (s, version) in self.sidecars.iter().zip(self.versions) {
            println!(
                "  {}      {}: inbound :{} -> {} app :{}, admin :{}, config v{version} acked",
                s.label,
                s.identity(),
                s.inbound.port(),
                s.service,
                s.app.port(),
                s.admin.port()
            );
        }
        println!(
            "  sidecar A      outbound :{}: host `backend` -> sidecar B :{}",
            a.outbound.port(),
            b.inbound.port()
        );
        println!(
            "  frontend app   :{}, reads and writes B3 only (x-b3-*)",
            self.frontend.addr.port()
        );
        println!(
            "  backend app    :{}, reads Datadog only (x-datadog-*)",
            self.backend.addr.port()
        );
    }

    /// Act 1: a request, and proof that nothing was exported. Returns whether
    /// both apps nevertheless joined the same trace.
    async fn untraced_request(&self) -> Result<bool> {
        self.client_request().await?;
        tokio::time::sleep(QUIET).await;
        let exported = self.collector.spans().len();
        println!("  collector, {QUIET:?} later: {exported} spans");
        if exported != 0 {
            return Err(format!("an unsampled request exported {exported} spans"));
        }
        let trace = self.frontend.last_trace();
        let same = trace.is_some() && trace == self.backend.last_trace();
        match trace.filter(|_| same) {
            Some(trace) => println!(
                "  the context still flowed: both apps joined trace {}, unsampled",
                hex(&trace)
            ),
            None => println!("  the two apps did not join the same trace"),
        }
        Ok(same)
    }

    /// Adds the override with the real CLI and waits until sidecar A runs it;
    /// returns the version it acknowledged.
    async fn add_override(&self) -> Result<u64> {
        println!(
            "  $ meshtrace-control --server http://{} --token <token> {}",
            self.control,
            OVERRIDE.join(" ")
        );
        print!("{}", indent(&self.cli(&OVERRIDE, true).await?));
        let a = &self.sidecars[0];
        let started = Instant::now();
        let version = self.wait_for_ack(&a.identity(), self.versions[0]).await?;
        println!(
            "  {} acked v{version} after {:.2}s; `meshtrace-control status`:",
            a.identity(),
            started.elapsed().as_secs_f64()
        );
        print!("{}", indent(&self.cli(&["status"], false).await?));
        Ok(version)
    }

    /// Act 2: a request, its spans, the tree. Returns the trace id.
    async fn traced_request(&self) -> Result<String> {
        self.client_request().await?;
        let started = Instant::now();
        let what = format!("{SPANS_PER_TRACE} spans at the collector");
        wait_for(self.procs, &what, || {
            let arrived = self.collector.spans().len() >= SPANS_PER_TRACE;
            async move { Ok(arrived.then_some(())) }
        })
        .await?;
        let waited = started.elapsed().as_secs_f64();
        // Give stragglers (there should be none) time to show up in the check.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let spans = self.collector.spans();
        println!(
            "  collector: {} spans, {waited:.2}s after the request",
            spans.len()
        );
        print_and_check_trace(&spans)
    }

    /// A request with no trace context to sidecar A's inbound (-> frontend app
    /// -> sidecar A -> sidecar B -> backend app), then what each app read.
    async fn client_request(&self) -> Result<()> {
        let inbound = self.sidecars[0].inbound;
        let (status, body) = http_get(inbound, "frontend", "/checkout", &[]).await?;
        println!("  client: GET http://frontend/checkout, no trace headers -> {status}, {body:?}");
        for app in [&self.frontend, &self.backend] {
            println!(
                "    {:<8} app read: {}",
                app.state.role.name(),
                app.state.seen()
            );
        }
        if !status.is_success() {
            return Err(format!(
                "the request through the mesh failed: {status} {body}"
            ));
        }
        Ok(())
    }

    /// The version `identity` last acknowledged, per `GET /v1/sidecars`; a
    /// rejection is an error.
    async fn acked(&self, identity: &str) -> Result<Option<u64>> {
        let list = self.sidecar_list().await?;
        let Some(info) = list.into_iter().find(|s| s.identity == identity) else {
            return Ok(None);
        };
        if let Some(r) = info.last_rejection {
            return Err(format!(
                "{identity} rejected config v{}: {}",
                r.version, r.error
            ));
        }
        Ok(info.acked_version.filter(|&v| info.sent_version == Some(v)))
    }

    /// `GET /v1/sidecars`; empty while the control plane does not answer.
    async fn sidecar_list(&self) -> Result<Vec<SidecarInfo>> {
        match http_get(self.control, "control", "/v1/sidecars", &[]).await {
            Ok((status, body)) if status.is_success() => {
                serde_json::from_str(&body).map_err(|e| format!("GET /v1/sidecars: {e}"))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Waits until `identity` runs a version above `above`; returns it. On
    /// timeout, the error says what the control plane knows of its sidecars.
    async fn wait_for_ack(&self, identity: &str, above: u64) -> Result<u64> {
        let what = format!("{identity} to ack a config version above {above}");
        let waited = wait_for(self.procs, &what, || async move {
            Ok(self.acked(identity).await?.filter(|&v| v > above))
        })
        .await;
        let Err(error) = waited else { return waited };
        let list = self.sidecar_list().await.unwrap_or_default();
        let known: Vec<String> = list
            .iter()
            .map(|s| {
                format!(
                    "{} (sent {:?}, acked {:?})",
                    s.identity, s.sent_version, s.acked_version
                )
            })
            .collect();
        Err(if known.is_empty() {
            format!("{error}; no sidecar is connected to the control plane (see the sidecar logs below)")
        } else {
            format!("{error}; the control plane lists {}", known.join(", "))
        })
    }

    /// Runs `meshtrace-control --server URL [--token T] COMMAND…`; its output,
    /// or why it failed.
    async fn cli(&self, command: &[&str], with_token: bool) -> Result<String> {
        let mut cmd = Command::new(&self.bins.control);
        cmd.arg(format!("--server=http://{}", self.control));
        if with_token {
            cmd.arg(format!("--token={}", self.token));
        }
        cmd.args(command)
            .env_clear()
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let shown = command.join(" ");
        let out = tokio::time::timeout(WAIT, cmd.output())
            .await
            .map_err(|_| format!("`meshtrace-control {shown}` did not finish"))?
            .map_err(|e| format!("cannot run {}: {e}", self.bins.control.display()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "`meshtrace-control {shown}` failed ({}): {}",
                out.status,
                stderr.trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Sidecar {
    /// Its pod name.
    fn pod(&self) -> String {
        format!("{}-1", self.service)
    }

    /// `namespace/pod`, as the control plane lists it.
    fn identity(&self) -> String {
        format!("demo/{}", self.pod())
    }

    /// Writes its local config and starts it. The file holds what is local to
    /// the pod; identity and per-pod ports also come from the environment, as
    /// the downward API and the injector set them in Kubernetes, because a
    /// pushed config replaces every section but `control`, `admin`, `runtime`
    /// and `log` (and the environment applies on top of it).
    fn spawn(
        &self,
        procs: &Processes,
        proxy: &Path,
        dir: &Path,
        control: SocketAddr,
    ) -> Result<()> {
        let (service, pod) = (self.service, self.pod());
        let file = dir.join(format!("{service}.yaml"));
        let local = format!(
            r#"# {label} (written by the demo); the control plane pushes the rest.
workload: {{service: {service}, namespace: demo, pod_name: {pod}}}
admin: {{listen: "{admin}"}}
control: {{url: "http://{control}"}}
"#,
            label = self.label,
            admin = self.admin,
        );
        write(&file, &local)?;
        let env = [
            ("MESHTRACE_SERVICE_NAME", service.to_string()),
            ("POD_NAMESPACE", "demo".to_string()),
            ("POD_NAME", pod),
            ("MESHTRACE_INBOUND_LISTEN", self.inbound.to_string()),
            ("MESHTRACE_OUTBOUND_LISTEN", self.outbound.to_string()),
            ("MESHTRACE_APP_PORT", self.app.port().to_string()),
        ];
        let args = ["run".to_string(), format!("--config={}", file.display())];
        procs.spawn(self.label, proxy, dir, &env, &args)
    }
}

/// The control plane's source document: defaults for everyone, then one
/// section per workload (the propagation its app needs, sidecar A's route).
fn source_document(collector: &str, backend_sidecar: SocketAddr) -> String {
    format!(
        r#"# meshtrace-control source document (written by the demo)
defaults:
  sampling: {{default_rate: 0.0}}     # nothing is traced until an override says so
  export: {{endpoint: "{collector}", queue: {{delay: 50ms}}}}
  spans: {{routes: [/checkout, /inventory]}}
workloads:
  - match: {{service: frontend, namespace: demo}}
    config:
      propagation:
        stage: dual              # B3 stays inside the pod: only W3C between sidecars
        app_formats: [b3multi]   # the app reads B3 only (without this: learned)
      outbound:
        mode: explicit
        routes: [{{host: backend, target: "{backend_sidecar}"}}]   # sidecar B
  - match: {{service: backend, namespace: demo}}
    config:
      propagation:
        app_formats: [datadog]   # the app reads Datadog only (without this: learned)
"#
    )
}

// === the legacy apps ===

/// Which app: each speaks one legacy trace-context format and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Reads B3 multi-header context, calls the backend through its sidecar with B3.
    Frontend,
    /// Reads Datadog context.
    Backend,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Frontend => "frontend",
            Role::Backend => "backend",
        }
    }

    /// The format the app reads, as the tree shows it.
    fn format(self) -> &'static str {
        match self {
            Role::Frontend => "b3multi",
            Role::Backend => "datadog",
        }
    }

    /// Whether `name` is a header of the app's format (what it shows it read).
    fn reads(self, name: &str) -> bool {
        match self {
            Role::Frontend => name.starts_with("x-b3-"),
            Role::Backend => name.starts_with("x-datadog-"),
        }
    }
}

/// A running app; stops serving when dropped.
struct App {
    addr: SocketAddr,
    state: Arc<AppState>,
    accept: tokio::task::AbortHandle,
}

/// What an app's requests share.
struct AppState {
    role: Role,
    /// Its own OTLP exporter: the app reports its span like any instrumented app.
    exporter: TraceServiceClient<Channel>,
    /// The frontend's way to the backend: sidecar A's outbound listener.
    outbound: Option<SocketAddr>,
    /// The trace headers of the last request, and the trace it joined.
    last: Mutex<(String, Option<[u8; 16]>)>,
}

/// The trace context an app read, and its own span in it.
struct AppContext {
    trace_id: [u8; 16],
    parent: Option<[u8; 8]>,
    span_id: [u8; 8],
    sampled: bool,
}

impl App {
    /// Starts `role` on 127.0.0.1 with an ephemeral port, exporting to `collector`.
    async fn start(role: Role, collector: &str, outbound: Option<SocketAddr>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the {} app: {e}", role.name()))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let channel = Endpoint::from_shared(collector.to_string())
            .map_err(|e| format!("collector endpoint {collector}: {e}"))?
            .connect_lazy();
        let state = Arc::new(AppState {
            role,
            exporter: TraceServiceClient::new(channel),
            outbound,
            last: Mutex::new((String::new(), None)),
        });
        let serving = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                let service = service_fn(move |req| handle(state.clone(), req));
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(error) = conn.await {
                        eprintln!("{} app: connection error: {error}", role.name());
                    }
                });
            }
        });
        Ok(Self {
            addr,
            state,
            accept: accept.abort_handle(),
        })
    }

    /// The trace the last request joined.
    fn last_trace(&self) -> Option<[u8; 16]> {
        self.state.lock().1
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl AppState {
    fn lock(&self) -> std::sync::MutexGuard<'_, (String, Option<[u8; 16]>)> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trace headers of the last request, `name=value` in name order.
    fn seen(&self) -> String {
        self.lock().0.clone()
    }

    fn remember(&self, headers: &HeaderMap, context: &AppContext) {
        let mut seen: Vec<String> = headers
            .iter()
            .filter(|(name, _)| self.role.reads(name.as_str()))
            .map(|(name, value)| format!("{name}={}", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        seen.sort();
        let seen = if seen.is_empty() {
            "(no trace headers)".to_string()
        } else {
            seen.join("  ")
        };
        *self.lock() = (seen, Some(context.trace_id));
    }

    /// Reports the app's span, as its own tracer would; a failure is only printed.
    async fn export(&self, context: &AppContext, method: &str, path: &str, start: u64) {
        let attrs = [
            ("http.request.method", method),
            ("url.path", path),
            ("demo.propagation.format", self.role.format()),
        ];
        let span = Span {
            trace_id: context.trace_id.to_vec(),
            span_id: context.span_id.to_vec(),
            parent_span_id: context.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("{method} {path}"),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: now_nanos(),
            attributes: attrs.iter().map(|(k, v)| string_kv(k, v)).collect(),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", self.role.name())],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("demo-{}-tracer", self.role.format()),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let mut exporter = self.exporter.clone();
        match tokio::time::timeout(Duration::from_secs(5), exporter.export(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => eprintln!("{} app: span export failed: {status}", self.role.name()),
            Err(_) => eprintln!("{} app: span export timed out", self.role.name()),
        }
    }
}

/// One request to an app: read the context, do the work (the frontend calls the
/// backend through its sidecar), report the span if sampled, answer.
async fn handle(
    app: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = now_nanos();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let context = match app.role {
        Role::Frontend => read_b3(req.headers()),
        Role::Backend => read_datadog(req.headers()),
    };
    app.remember(req.headers(), &context);
    let answer = match (app.role, app.outbound) {
        (Role::Frontend, Some(outbound)) => call_backend(outbound, &context).await,
        (Role::Frontend, None) => Err("no route to the backend".to_string()),
        (Role::Backend, _) => Ok("backend: inventory ok".to_string()),
    };
    if context.sampled {
        app.export(&context, &method, &path, start).await;
    }
    let (status, body) = match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (StatusCode::BAD_GATEWAY, error),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

/// The frontend's call: `GET http://backend/inventory` through sidecar A, with
/// B3 headers naming the frontend's span as the parent.
async fn call_backend(outbound: SocketAddr, context: &AppContext) -> Result<String> {
    let mut headers = vec![
        ("x-b3-traceid", hex(&context.trace_id)),
        ("x-b3-spanid", hex(&context.span_id)),
        (
            "x-b3-sampled",
            if context.sampled { "1" } else { "0" }.to_string(),
        ),
    ];
    if let Some(parent) = context.parent {
        headers.push(("x-b3-parentspanid", hex(&parent)));
    }
    let (status, body) = http_get(outbound, "backend", "/inventory", &headers).await?;
    if status.is_success() {
        Ok(format!("frontend: checkout ok ({body})"))
    } else {
        Err(format!("backend answered {status}: {body}"))
    }
}

/// B3 multi-header: `x-b3-traceid` (16 or 32 hex), `x-b3-spanid` (16 hex),
/// `x-b3-sampled` (`1`/`0`). Without a valid context the app starts an
/// unsampled trace of its own.
fn read_b3(headers: &HeaderMap) -> AppContext {
    let trace = header(headers, "x-b3-traceid").and_then(|v| {
        let ok = (v.len() == 16 || v.len() == 32) && v.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u128::from_str_radix(v, 16).ok()).flatten()
    });
    let parent = header(headers, "x-b3-spanid").and_then(|v| {
        let ok = v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u64::from_str_radix(v, 16).ok()).flatten()
    });
    let sampled = matches!(header(headers, "x-b3-sampled"), Some("1" | "true"))
        || header(headers, "x-b3-flags") == Some("1");
    context(trace, parent, sampled)
}

/// Datadog: `x-datadog-trace-id` (the low 64 bits, decimal), `_dd.p.tid` in
/// `x-datadog-tags` (the high 64 bits, hex), `x-datadog-parent-id` (decimal),
/// `x-datadog-sampling-priority` (above 0 keeps).
fn read_datadog(headers: &HeaderMap) -> AppContext {
    let decimal = |name| {
        header(headers, name)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let high = header(headers, "x-datadog-tags")
        .and_then(|tags| {
            tags.split(',')
                .find_map(|t| t.trim().strip_prefix("_dd.p.tid="))
        })
        .filter(|v| v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    let trace = decimal("x-datadog-trace-id").map(|low| u128::from(high) << 64 | u128::from(low));
    let sampled = header(headers, "x-datadog-sampling-priority")
        .and_then(|v| v.parse::<i8>().ok())
        .is_some_and(|p| p > 0);
    context(trace, decimal("x-datadog-parent-id"), sampled)
}

/// The app's span in the trace it read, or in a new unsampled one.
fn context(trace: Option<u128>, parent: Option<u64>, sampled: bool) -> AppContext {
    let span_id = fastrand::u64(1..).to_be_bytes();
    match trace.filter(|&t| t != 0) {
        Some(trace) => AppContext {
            trace_id: trace.to_be_bytes(),
            parent: parent.filter(|&p| p != 0).map(u64::to_be_bytes),
            span_id,
            sampled,
        },
        None => AppContext {
            trace_id: fastrand::u128(1..).to_be_bytes(),
            parent: None,
            span_id,
            sampled: false,
        },
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

// === the trace, as a tree ===

/// Prints every trace among `spans` as a tree, then checks that they are one
/// trace of [`SPANS_PER_TRACE`] spans with a single root; returns its id.
fn print_and_check_trace(spans: &[ReceivedSpan]) -> Result<String> {
    let mut traces: Vec<String> = spans.iter().map(ReceivedSpan::trace_id_hex).collect();
    traces.sort();
    traces.dedup();
    let mut roots = 0;
    for trace in &traces {
        let members: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| &s.trace_id_hex() == trace)
            .collect();
        roots += print_tree(trace, &members);
    }
    match (traces.as_slice(), roots, spans.len()) {
        ([one], 1, SPANS_PER_TRACE) => Ok(one.clone()),
        _ => Err(format!(
            "expected one trace of {SPANS_PER_TRACE} spans with one root; got {} trace(s), {roots} root(s), {} span(s)",
            traces.len(),
            spans.len()
        )),
    }
}

/// Prints one trace: children under their parent, in start order. Returns how
/// many roots (spans whose parent is not in the trace) it has.
fn print_tree(trace: &str, spans: &[&ReceivedSpan]) -> usize {
    let ids: HashSet<String> = spans.iter().map(|s| s.span_id_hex()).collect();
    let children = |parent: Option<&str>| {
        let mut found: Vec<&ReceivedSpan> = spans
            .iter()
            .copied()
            .filter(|s| match (s.parent_span_id_hex(), parent) {
                (Some(p), Some(want)) => p == want,
                (p, None) => p.is_none_or(|p| !ids.contains(&p)),
                (None, Some(_)) => false,
            })
            .collect();
        found.sort_by_key(|s| s.span.start_time_unix_nano);
        found
    };
    let roots = children(None);
    let mut rows = vec![[
        "".to_string(),
        "SERVICE".into(),
        "ROLE".into(),
        "KIND".into(),
        "NAME".into(),
        "SPAN ID".into(),
        "CONTEXT READ".into(),
        "SAMPLED BY".into(),
    ]];
    let mut stack: Vec<(&ReceivedSpan, String, String)> = roots
        .iter()
        .rev()
        .map(|s| (*s, String::new(), String::new()))
        .collect();
    // Spans print once, so a parent cycle (a broken sender) cannot loop.
    let mut printed = HashSet::new();
    while let Some((span, branch, indent)) = stack.pop() {
        if !printed.insert(span.span_id_hex()) {
            continue;
        }
        rows.push(row(span, branch));
        let kids = children(Some(&span.span_id_hex()));
        for (i, kid) in kids.iter().enumerate().rev() {
            let last = i + 1 == kids.len();
            let branch = format!("{indent}{}", if last { "└─ " } else { "├─ " });
            let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
            stack.push((kid, branch, deeper));
        }
    }
    let root_span = roots
        .first()
        .map_or("0000000000000000".into(), |s| s.span_id_hex());
    println!("\n  trace {trace}   (W3C traceparent: 00-{trace}-{root_span}-01)");
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count() + if col == 0 { 0 } else { 2 })
            .max()
    };
    let widths: Vec<usize> = (0..8).map(|c| width(c).unwrap_or(0)).collect();
    for r in &rows {
        let lead = format!("{}{}", r[0], r[1]);
        let mut line = format!("  {lead:<w$}", w = widths[0] + widths[1]);
        for (cell, w) in r.iter().zip(&widths).skip(2) {
            line.push_str(&format!("{cell:<w$}"));
        }
        println!("{}", line.trim_end());
    }
    roots.len()
}

/// One tree line: who, kind, name, span id, the context it read, why sampled.
fn row(span: &ReceivedSpan, branch: String) -> [String; 8] {
    let sidecar = span.scope_name == SIDECAR_SCOPE;
    let read = if sidecar {
        match span
            .attr("meshtrace.propagation.formats")
            .and_then(|v| v.value.as_ref())
        {
            Some(any_value::Value::ArrayValue(list)) => list
                .values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => "none: new trace".into(),
        }
    } else {
        span.attr_str("demo.propagation.format").unwrap_or_default()
    };
    let kind = match span.kind() {
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
        _ => "OTHER",
    };
    let role = if sidecar {
        format!(
            "sidecar {}",
            span.resource_attr_str("k8s.pod.name").unwrap_or_default()
        )
    } else {
        "app".into()
    };
    [
        branch,
        span.resource_attr_str("service.name")
            .unwrap_or_else(|| "?".into()),
        role.trim_end().to_string(),
        kind.into(),
        span.name().to_string(),
        span.span_id_hex(),
        format!("[{read}]"),
        span.attr_str("meshtrace.sampling.reason")
            .unwrap_or_else(|| "-".into()),
    ]
}

// === child processes ===

/// The meshtrace binaries the demo starts.
struct Binaries {
    proxy: PathBuf,
    control: PathBuf,
}

impl Binaries {
    /// Next to this binary (`target/release/`), or in `MESHTRACE_BIN_DIR`.
    fn locate() -> Result<Self> {
        let dir = match std::env::var_os("MESHTRACE_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find this executable: {e}"))?
                .parent()
                .map(Path::to_path_buf)
                .ok_or("this executable has no directory")?,
        };
        let find = |name: &str| {
            let path = dir.join(name);
            path.is_file().then_some(path).ok_or_else(|| {
                format!("{name} not found in {}: run scripts/demo.sh, which builds it, or set MESHTRACE_BIN_DIR", dir.display())
            })
        };
        Ok(Self {
            proxy: find("meshtrace-proxy")?,
            control: find("meshtrace-control")?,
        })
    }
}

/// The child processes, killed by [`Processes::stop`] (or on drop).
struct Processes {
    pid_file: PathBuf,
    children: Mutex<Vec<(&'static str, PathBuf, Child)>>,
}

impl Processes {
    fn new(pid_file: PathBuf) -> Self {
        Self {
            pid_file,
            children: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, PathBuf, Child)>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `program` in `dir` with a clean environment plus `env`, in its own
    /// process group (Ctrl-C reaches the demo, which stops it), logging to
    /// `<dir>/<label>.log`.
    fn spawn(
        &self,
        label: &'static str,
        program: &Path,
        dir: &Path,
        env: &[(&str, String)],
        args: &[String],
    ) -> Result<()> {
        let log = dir.join(format!("{}.log", label.replace(' ', "-")));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        if let Some(pid) = child.id() {
            use std::io::Write as _;
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.pid_file)
                .and_then(|mut f| writeln!(f, "{pid}"));
            if let Err(e) = appended {
                eprintln!(
                    "demo: cannot record pid {pid} in {}: {e}",
                    self.pid_file.display()
                );
            }
        }
        self.lock().push((label, log, child));
        Ok(())
    }

    /// An error naming the first child that has exited.
    fn check_alive(&self) -> Result<()> {
        for (label, log, child) in self.lock().iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{label} exited ({status}); see {}", log.display()));
            }
        }
        Ok(())
    }

    /// Kills every child and waits for it (bounded).
    async fn stop(&self) {
        let children = std::mem::take(&mut *self.lock());
        for (label, _, mut child) in children {
            let _ = child.start_kill();
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                eprintln!("demo: {label} did not exit after SIGKILL");
            }
        }
    }

    /// The end of every child's log, for a failed run.
    fn print_log_tails(&self) {
        let dir = self.pid_file.parent().unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {} (last lines) ---", log.display());
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Where configs, state and logs go: `MESHTRACE_DEMO_DIR` (the script's, which
/// it removes), else a directory of our own, removed after a successful run.
struct WorkDir {
    path: PathBuf,
    owned: bool,
}

impl WorkDir {
    fn create() -> Result<Self> {
        let (path, owned) = match std::env::var_os("MESHTRACE_DEMO_DIR") {
            Some(dir) => (PathBuf::from(dir), false),
            None => (
                std::env::temp_dir().join(format!("meshtrace-demo-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path, owned })
    }

    fn finish(&self, success: bool) {
        if !success {
            eprintln!("configs and logs: {}", self.path.display());
        } else if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// === helpers ===

/// Resolves to the name of the first SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

/// Polls `check` every 50 ms until it gives a value, for at most [`WAIT`];
/// fails at once if `check` fails or a child process has exited.
async fn wait_for<T, F, Fut>(procs: &Processes, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        procs.check_alive()?;
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("gave up waiting {WAIT:?} for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `GET path` on `addr` answers 2xx.
async fn wait_for_ok(procs: &Processes, addr: SocketAddr, path: &str, who: &str) -> Result<()> {
    wait_for(
        procs,
        &format!("{who} to answer GET {path}"),
        || async move {
            let answer = http_get(addr, "localhost", path, &[]).await;
            Ok(answer
                .ok()
                .filter(|(status, _)| status.is_success())
                .map(drop))
        },
    )
    .await
}

/// One HTTP/1.1 GET on a fresh connection to `addr` with `Host: host`, bounded by
/// [`WAIT`]: the status and the body as text.
async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<(StatusCode, String)> {
    let what = format!("GET http://{host}{path} via {addr}");
    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::get(path).header(http::header::HOST, host);
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let rsp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = rsp.status();
        let body = rsp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).trim().to_string()))
    };
    match tokio::time::timeout(WAIT, exchange).await {
        Ok(result) => result.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {WAIT:?}")),
    }
}

/// `N` distinct free loopback ports, and the listeners that hold them until
/// dropped (so that nothing of ours binds them meanwhile).
fn reserve_ports<const N: usize>() -> Result<([SocketAddr; N], Vec<StdListener>)> {
    let held: Vec<StdListener> = (0..N)
        .map(|_| StdListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    let addrs: Vec<SocketAddr> = held
        .iter()
        .map(StdListener::local_addr)
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    let addrs = addrs
        .try_into()
        .map_err(|_| "cannot find free ports".to_string())?;
    Ok((addrs, held))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}").trim_end().to_string() + "\n")
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
