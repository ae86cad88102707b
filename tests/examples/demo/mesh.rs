//! The mesh the demo runs: a collector, two apps, the control plane and two
//! sidecars; and the acts it plays on it (a request, an override, a request).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use meshtrace_control::sidecars::SidecarInfo;
use meshtrace_tests::otlp::OtlpReceiver;
use meshtrace_tests::process::probe;
use tokio::process::Command;

use crate::apps::{App, Role};
use crate::procs::{reserve_ports, Binaries, Processes};
use crate::tree::print_and_check_trace;
use crate::workloads::{source_document, Sidecar};
use crate::{hex, indent, section, write, Result, OVERRIDE, QUIET, SPANS_PER_TRACE, WAIT};

/// Everything the demo started, and how to reach it.
pub(crate) struct Mesh<'a> {
    procs: &'a Processes,
    bins: Binaries,
    collector: OtlpReceiver,
    frontend: App,
    backend: App,
    /// Sidecar A (frontend), sidecar B (backend).
    pub(crate) sidecars: [Sidecar; 2],
    control: SocketAddr,
    token: String,
    /// The control plane's source document.
    source: PathBuf,
    /// The config versions the sidecars acknowledged at start.
    versions: [u64; 2],
}

// === impl Mesh ===

impl<'a> Mesh<'a> {
    /// Starts the collector and the apps, then the control plane, then the
    /// sidecars; returns once both sidecars are ready and run the pushed config.
    pub(crate) async fn start(dir: &Path, procs: &'a Processes) -> Result<Self> {
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
        procs
            .ready(control, "/healthz", "the control plane")
            .await?;

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
            procs.ready(sidecar.admin, "/ready", sidecar.label).await?;
            mesh.versions[i] = mesh.wait_for_ack(&sidecar.identity(), 0).await?;
        }
        Ok(mesh)
    }

    pub(crate) fn print(&self) {
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
    pub(crate) async fn untraced_request(&self) -> Result<bool> {
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
    pub(crate) async fn add_override(&self) -> Result<u64> {
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
    pub(crate) async fn traced_request(&self) -> Result<String> {
        self.client_request().await?;
        let started = Instant::now();
        let what = format!("{SPANS_PER_TRACE} spans at the collector");
        self.procs
            .wait_for(&what, || {
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
        let (status, body) = probe::get(inbound, "frontend", "/checkout").await?;
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
    pub(crate) async fn acked(&self, identity: &str) -> Result<Option<u64>> {
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
        match probe::get(self.control, "control", "/v1/sidecars").await {
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
        let waited = self
            .procs
            .wait_for(&what, || async move {
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
