//! A mixed fleet: three real tracer libraries chained app1 → app2 → app3, each
//! behind its own `meshtrace-proxy` process, all exporting to one in-process OTLP
//! collector. The end-to-end proof of the product's promise: whatever each app
//! speaks, one request is one trace with the right parents and one decision.
//!
//! ```text
//! test ─▶ sidecar1 ─▶ app1 ─▶ sidecar1 ─▶ sidecar2 ─▶ app2 ─▶ sidecar2 ─▶ sidecar3 ─▶ app3
//!         inbound            outbound    inbound             outbound    inbound
//! ```
//!
//! ```no_run
//! # async fn demo() {
//! use meshtrace_config::MigrationStage;
//! use meshtrace_tests::fleet::{Fleet, Lib};
//!
//! let libs = [Lib::OtelB3Multi, Lib::Ddtrace { style: None }, Lib::OtelW3c];
//! let mut fleet = Fleet::start(MigrationStage::Legacy, libs).await;
//! let trip = fleet.send("sampled", &[("traceparent", "00-…-01".into())]).await;
//! let spans = fleet.exported_spans().await;
//! # }
//! ```
//!
//! Each sidecar runs production defaults except what the fleet needs: its
//! workload (`app1`… in namespace [`NAMESPACE`]), the collector with a short
//! batch delay, JSON logs (access lines are parsed), the migration stage, an
//! explicit outbound route to the next sidecar for the authority the app calls
//! (`app2:80`, `app3:80`), and on sidecar1 the forced tenant [`FORCED_TENANT`].
//! Apart from `propagation.stage` no propagation setting is made (no formats,
//! no `app_formats`, no upstream rules): that is the point.
//!
//! Every request gets a unique path, `/chain/<tag>`, which the apps forward
//! unchanged: access-log lines and spans are matched by it, not by trace id, so
//! a chain that breaks into two traces is still observed whole.

mod app;
pub mod headers;
mod observe;
mod report;

use std::collections::BTreeMap;
use std::time::Duration;

use http::Request;
use meshtrace_config::{ForcedTenant, LogFormat, MigrationStage};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

pub use app::{FleetApp, Lib};
pub use observe::{Access, Ctx, Hop, Trip};
pub use report::{Cell, Report, Verdict};

use crate::bound::STEP;
use crate::client;
use crate::otlp::{OtlpReceiver, ReceivedSpan};
use crate::process::ProxyProcess;
use crate::sidecar;

/// The tenant sidecar1 traces even when the caller said "not sampled".
pub const FORCED_TENANT: &str = "acme";

/// The workloads' namespace.
pub const NAMESPACE: &str = "fleet";

/// The batch delay of every sidecar's exporter: spans arrive within it.
const EXPORT_DELAY: Duration = Duration::from_millis(50);

/// How long a broken chain's missing access-log lines are waited for: they may
/// never come (the hop never happened), and they only serve the diagnosis.
const BROKEN_LINE_LIMIT: Duration = Duration::from_secs(2);

/// How long the barrier's spans may take to reach the collector.
const EXPORT_LIMIT: Duration = Duration::from_secs(10);

/// The barrier request's W3C context: sampled, ids no case uses.
const BARRIER_TRACEPARENT: &str = "00-ba771e40ba771e40ba771e40ba771e40-ba771e40ba771e40-01";

/// The spans the collector holds after the barrier ([`Fleet::exported_spans`]).
#[derive(Debug)]
pub struct Exported {
    /// Every span stored.
    pub spans: Vec<ReceivedSpan>,
    /// Why `spans` may still be incomplete (the barrier did not complete), so
    /// counting them proves nothing; `None` when they are final.
    pub unproven: Option<String>,
    /// The barrier request, for a report.
    pub barrier: Trip,
}

/// Three apps, three sidecar processes and a collector; all stop when dropped.
#[derive(Debug)]
pub struct Fleet {
    stage: MigrationStage,
    libs: [Lib; 3],
    collector: OtlpReceiver,
    // Sidecars before apps: dropped first, nothing calls a dead app.
    sidecars: [ProxyProcess; 3],
    apps: [FleetApp; 3],
    /// sidecar2's and sidecar3's inbound legacy counts at the last look.
    legacy_seen: [BTreeMap<String, u64>; 2],
}

// === impl Fleet ===

impl Fleet {
    /// Starts app1..app3 running `libs` (concurrently: importing ddtrace is the
    /// slow part), then sidecar3, sidecar2, sidecar1 at `stage`, each routing to
    /// the next, then tells each app its sidecar's outbound listener.
    pub async fn start(stage: MigrationStage, libs: [Lib; 3]) -> Self {
        let collector = OtlpReceiver::start_grpc().await;
        let (mut app1, mut app2, app3) = tokio::join!(
            FleetApp::spawn("app1", libs[0], Some("app2:80")),
            FleetApp::spawn("app2", libs[1], Some("app3:80")),
            FleetApp::spawn("app3", libs[2], None),
        );
        let sidecar3 = in_front_of("app3", &app3, stage, &collector).spawn().await;
        let sidecar2 = in_front_of("app2", &app2, stage, &collector)
            .explicit_route("app3:80", sidecar3.inbound_addr())
            .spawn()
            .await;
        let sidecar1 = in_front_of("app1", &app1, stage, &collector)
            .explicit_route("app2:80", sidecar2.inbound_addr())
            .configure(|c| {
                c.sampling.forced_tenants = vec![ForcedTenant {
                    tenant: FORCED_TENANT.into(),
                    rate: 1.0,
                    override_parent: true,
                    traces_per_second: 100.0,
                }];
            })
            .spawn()
            .await;
        app1.call_next_through(sidecar1.outbound_addr()).await;
        app2.call_next_through(sidecar2.outbound_addr()).await;
        let mut fleet = Self {
            stage,
            libs,
            collector,
            sidecars: [sidecar1, sidecar2, sidecar3],
            apps: [app1, app2, app3],
            legacy_seen: Default::default(),
        };
        fleet.legacy_seen = fleet.mesh_legacy_counts().await;
        fleet
    }

    /// The stage and libraries, for a report's title.
    pub fn describe(&self) -> String {
        let [a, b, c] = &self.libs;
        format!("stage {}: app1 {a} -> app2 {b} -> app3 {c}", self.stage)
    }

    /// Sends `GET /chain/<tag>` with `headers` to sidecar1's inbound listener and
    /// gathers what the request left: the apps' hops, every sidecar's access-log
    /// line for it (waited for), and the legacy formats sidecar2 and sidecar3
    /// counted inbound meanwhile. Once this returns, every span the request
    /// produced is in its sidecar's export queue (the access line is logged
    /// after the span is handed over).
    pub async fn send(&mut self, tag: &str, headers: &[(&str, String)]) -> Trip {
        let path = format!("/chain/{tag}");
        let mut request = Request::get(path.as_str());
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(client::empty()).expect("valid test headers");
        let rsp = client::http1_request(self.sidecars[0].inbound_addr(), request).await;
        let rsp = client::collect(rsp).await;
        let mut trip = Trip {
            path,
            status: rsp.status().as_u16(),
            body: String::from_utf8_lossy(rsp.body()).into_owned(),
            ..Trip::default()
        };
        if trip.status == 200 {
            match observe::parse_hops(&trip.body) {
                Ok(hops) => trip.hops = hops,
                Err(e) => trip.body = format!("unreadable apps' report: {e}: {}", trip.body),
            }
        }
        let limit = if trip.broken().is_none() {
            STEP
        } else {
            BROKEN_LINE_LIMIT
        };
        let line = |i: usize, direction| {
            observe::access_line(self.sidecars[i].output(), &trip.path, direction, limit)
        };
        let (in1, in2, in3, out1, out2) = tokio::join!(
            observe::access_line(self.sidecars[0].output(), &trip.path, "inbound", STEP),
            line(1, "inbound"),
            line(2, "inbound"),
            line(0, "outbound"),
            line(1, "outbound"),
        );
        trip.inbound = [in1, in2, in3];
        trip.outbound = [out1, out2];
        let now = self.mesh_legacy_counts().await;
        for (i, (before, after)) in self.legacy_seen.iter().zip(&now).enumerate() {
            for (format, count) in after {
                let new = count - before.get(format).copied().unwrap_or(0);
                if new > 0 {
                    trip.mesh_legacy
                        .push((format!("sidecar{}", i + 2), format.clone(), new));
                }
            }
        }
        self.legacy_seen = now;
        trip
    }

    /// Every span the collector stored, once all that earlier requests produced
    /// has certainly arrived: a sampled barrier request goes through the chain
    /// and its five spans are awaited. Each sidecar exports in FIFO order and
    /// queued the earlier spans before the barrier started ([`Fleet::send`]), so
    /// a span still missing then was never exported.
    pub async fn exported_spans(&mut self) -> Exported {
        let barrier = self
            .send("barrier", &[("traceparent", BARRIER_TRACEPARENT.into())])
            .await;
        let path = barrier.path.clone();
        let arrived = |spans: &[ReceivedSpan]| spans_of(spans, &path).len() >= 5;
        // The inner wait's own limit is longer, so it never fires: the outer one
        // turns a missing barrier span into a reported failure, not a panic.
        let wait = self.collector.wait_until(EXPORT_LIMIT + STEP, arrived);
        let unproven = match barrier.broken() {
            Some(broken) => Some(format!("the barrier request failed: {broken}")),
            None => tokio::time::timeout(EXPORT_LIMIT, wait)
                .await
                .err()
                .map(|_| {
                    let got = spans_of(&self.collector.spans(), &path).len();
                    format!("only {got} of the barrier's 5 spans arrived within {EXPORT_LIMIT:?}")
                }),
        };
        Exported {
            spans: self.collector.spans(),
            unproven,
            barrier,
        }
    }

    /// Each app's output so far (request logs, tracebacks), for a failure.
    pub fn app_output(&self) -> String {
        self.apps
            .iter()
            .map(|app| app.output().text())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// sidecar2's and sidecar3's inbound legacy counts now.
    async fn mesh_legacy_counts(&self) -> [BTreeMap<String, u64>; 2] {
        let metrics = |i: usize| client::http1_get(self.sidecars[i].admin_addr(), "/metrics");
        let (two, three) = tokio::join!(metrics(1), metrics(2));
        [two, three].map(|rsp| {
            assert!(
                rsp.status().is_success(),
                "GET /metrics answered {}",
                rsp.status()
            );
            observe::inbound_legacy_counts(&String::from_utf8_lossy(rsp.body()))
        })
    }
}

/// The spans among `spans` of the request with `path`.
pub fn spans_of<'a>(spans: &'a [ReceivedSpan], path: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.attr_str("url.path").as_deref() == Some(path))
        .collect()
}

/// `app1 SERVER`: the sidecar that exported `span` (by its workload) and the
/// span's kind.
pub fn span_label(span: &ReceivedSpan) -> String {
    let kind = match span.kind() {
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
        _ => "OTHER",
    };
    format!("{} {kind}", workload(span))
}

/// The workload (`service.name`) whose sidecar exported `span`.
pub fn workload(span: &ReceivedSpan) -> String {
    span.resource_attr_str("service.name").unwrap_or_default()
}

/// A sidecar for workload `service` in front of `app`, at `stage`.
fn in_front_of(
    service: &str,
    app: &FleetApp,
    stage: MigrationStage,
    collector: &OtlpReceiver,
) -> sidecar::Builder {
    let endpoint = collector.endpoint();
    let service = service.to_string();
    sidecar::new().inbound_to(app.addr()).configure(move |c| {
        c.workload.service = Some(service);
        c.workload.namespace = Some(NAMESPACE.into());
        c.export.endpoint = Some(endpoint);
        c.export.queue.delay = Some(EXPORT_DELAY.into());
        c.log.format = LogFormat::Json;
        c.propagation.stage = stage;
    })
}
