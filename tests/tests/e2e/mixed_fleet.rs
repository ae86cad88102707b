//! The product's promise, end to end: a chain of real tracer libraries — app1
//! OpenTelemetry with B3 multi, app2 ddtrace with its default styles, app3
//! OpenTelemetry with W3C — each behind its own sidecar process with no
//! propagation settings, keeps one trace with the right parents and one sampling
//! decision; and so it does at every migration stage.
//!
//! Every case sends one request into sidecar1 and checks (see [`COLUMNS`]):
//!
//! - **A** one trace id across every exported span, access-log line and
//!   app-observed context, equal to the client's when it sent one;
//! - **B** the parents: each app's extracted parent is its sidecar's inbound
//!   span (access log; the SERVER span when sampled), and, from the exported
//!   spans, each SERVER span's parent is the previous sidecar's CLIENT span,
//!   whose parent is the previous app's own span;
//! - **C** one decision on every hop, and exactly the five sidecar spans
//!   (3 SERVER + 2 CLIENT) exported when sampled, none when not — proven by a
//!   sampled barrier request afterwards, not by sleeping;
//! - **H** header ownership: every trace header an app received names the
//!   trace, its sidecar's span as parent, and the decision — nothing stale
//!   passed through;
//! - **D** (`dual`, `w3c`) sidecar2 and sidecar3 read no legacy format from the
//!   mesh; **E** (`w3c`) the apps receive only W3C headers.
//!
//! The table is printed on success too (`-- --nocapture`). The set-up lives in
//! [`meshtrace_tests::fleet`].

use std::collections::BTreeMap;

use meshtrace_config::MigrationStage;
use meshtrace_tests::fleet::headers::{contexts_in, is_w3c_header};
use meshtrace_tests::fleet::{
    span_label, spans_of, workload, Cell, Fleet, Lib, Report, Trip, Verdict, FORCED_TENANT,
};
use meshtrace_tests::otlp::ReceivedSpan;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// B3 multi → Datadog (ddtrace's default) → W3C: the legacy fleet.
const LEGACY_APPS: [Lib; 3] = [Lib::OtelB3Multi, Lib::Ddtrace { style: None }, Lib::OtelW3c];

/// Every app migrated to W3C.
const W3C_APPS: [Lib; 3] = [
    Lib::OtelW3c,
    Lib::Ddtrace {
        style: Some("tracecontext"),
    },
    Lib::OtelW3c,
];

/// The checks, as the table names them.
const COLUMNS: [(&str, &str); 6] = [
    ("A", "one trace id everywhere, the client's when it sent one"),
    ("B", "parents: app <- sidecar inbound <- previous sidecar outbound <- previous app (access log; spans too when sampled)"),
    ("C", "one decision on every hop; 5 spans (3 SERVER + 2 CLIENT) when sampled, 0 when not"),
    ("H", "every trace header an app got was written for its hop (trace, parent, decision)"),
    ("D", "dual/w3c: sidecar2/3 read no legacy format from the mesh"),
    ("E", "w3c: apps got only traceparent/tracestate/baggage"),
];

#[tokio::test]
async fn legacy_stage_keeps_a_b3_datadog_w3c_chain_in_one_trace() {
    run(MigrationStage::Legacy, LEGACY_APPS).await;
}

#[tokio::test]
async fn dual_stage_keeps_the_chain_whole_with_only_w3c_between_sidecars() {
    run(MigrationStage::Dual, LEGACY_APPS).await;
}

#[tokio::test]
async fn w3c_stage_keeps_w3c_apps_in_one_trace_with_no_legacy_header() {
    run(MigrationStage::W3c, W3C_APPS).await;
}

// === the cases ===

/// One request the client sends, and what must follow from it.
struct Case {
    name: &'static str,
    /// The decision every hop must carry.
    sampled: bool,
    /// The client's trace id (32 hex) and span id (16 hex), when it sent a context.
    client: Option<(String, String)>,
    headers: Vec<(&'static str, String)>,
}

const W3C_SAMPLED: (&str, &str) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
const W3C_NOT_SAMPLED: (&str, &str) = ("5bf92f3577b34da6a3ce929d0e0e4737", "50f067aa0ba902b7");
const W3C_TENANT: (&str, &str) = ("6bf92f3577b34da6a3ce929d0e0e4738", "60f067aa0ba902b8");
const B3: (&str, &str) = ("7bf92f3577b34da6a3ce929d0e0e4739", "70f067aa0ba902b9");
/// Datadog ids are decimal; both trace ids are below 2^64 (no `_dd.p.tid`).
const DD_NOT_SAMPLED: (u64, u64) = (7_277_816_997_830_856_001, 4_611_686_018_427_387_905);
const DD_64BIT: (u64, u64) = (1_311_768_467_463_790_320, 987_654_321);

fn cases() -> Vec<Case> {
    vec![
        Case::new("sampled", true).traceparent(W3C_SAMPLED, "01"),
        Case::new("not_sampled", false).traceparent(W3C_NOT_SAMPLED, "00"),
        Case::new("datadog_priority_0", false).datadog(DD_NOT_SAMPLED, 0),
        Case::new("forced_tenant_not_sampled_parent", true)
            .traceparent(W3C_TENANT, "00")
            .header("x-tenant-id", FORCED_TENANT),
        Case::new("no_context", true),
        Case::new("datadog_64bit", true).datadog(DD_64BIT, 1),
        Case::new("b3_single", true).b3_single(B3),
    ]
}

impl Case {
    fn new(name: &'static str, sampled: bool) -> Self {
        let (client, headers) = (None, Vec::new());
        Self {
            name,
            sampled,
            client,
            headers,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    fn traceparent(mut self, (trace, span): (&str, &str), flags: &str) -> Self {
        self.client = Some((trace.into(), span.into()));
        self.header("traceparent", &format!("00-{trace}-{span}-{flags}"))
    }

    fn b3_single(mut self, (trace, span): (&str, &str)) -> Self {
        self.client = Some((trace.into(), span.into()));
        self.header("b3", &format!("{trace}-{span}-1"))
    }

    fn datadog(mut self, (trace, span): (u64, u64), priority: i8) -> Self {
        self.client = Some((format!("{trace:032x}"), format!("{span:016x}")));
        self.header("x-datadog-trace-id", &trace.to_string())
            .header("x-datadog-parent-id", &span.to_string())
            .header("x-datadog-sampling-priority", &priority.to_string())
    }

    /// The client's trace id, or (no context sent) the one sidecar1 started.
    fn expected_trace(&self, trip: &Trip) -> Option<String> {
        match &self.client {
            Some((trace, _)) => Some(trace.clone()),
            None => trip.inbound[0].as_ref().map(|a| a.trace_id.clone()),
        }
    }
}

/// The spans a sampled request exports, sorted: one SERVER span per sidecar and
/// one CLIENT span per outbound call.
const SAMPLED_SPANS: [&str; 5] = [
    "app1 CLIENT",
    "app1 SERVER",
    "app2 CLIENT",
    "app2 SERVER",
    "app3 SERVER",
];

/// Starts the fleet at `stage`, sends every case, then checks each; prints the
/// table and fails if any applicable cell failed.
async fn run(stage: MigrationStage, libs: [Lib; 3]) {
    let mut fleet = Fleet::start(stage, libs).await;
    let cases = cases();
    let mut trips = Vec::new();
    for case in &cases {
        trips.push(fleet.send(case.name, &case.headers).await);
    }
    let exported = fleet.exported_spans().await;
    let mut report = Report::new(fleet.describe(), &COLUMNS);
    if let Some(trip) = trips.iter().find(|t| !t.hops.is_empty()) {
        for hop in &trip.hops {
            report.note(format!("{} {}: {}", hop.app, hop.lib, hop.lib_config));
        }
    }
    if let Some(reason) = &exported.unproven {
        report.note(format!(
            "span counts unproven: {reason}; the barrier:\n{}",
            exported.barrier
        ));
    }
    for (case, trip) in cases.iter().zip(trips) {
        let spans = spans_of(&exported.spans, &trip.path);
        let trace = case.expected_trace(&trip);
        let cells = vec![
            one_trace(&trace, &trip, &spans),
            parents(case, &trip, &spans),
            one_decision(case, &trip, &spans, exported.unproven.as_deref()),
            written_for_each_hop(&trip),
            only_w3c_on_the_mesh(stage, &trip),
            only_w3c_to_the_apps(stage, &trip),
        ];
        report.row(case.name, cells, trip);
    }
    eprintln!("{report}");
    assert!(
        report.passed(),
        "the fleet broke a trace: see the table above; the apps said:\n{}",
        fleet.app_output()
    );
}

// === the checks ===

/// A: every id seen for this request is the expected trace id.
fn one_trace(expected: &Option<String>, trip: &Trip, spans: &[&ReceivedSpan]) -> Cell {
    let mut verdict = Verdict::default();
    let mut seen: Vec<(String, String)> = Vec::new();
    let lines = (trip.inbound.iter().enumerate().map(|(i, l)| (i, "in", l)))
        .chain(trip.outbound.iter().enumerate().map(|(i, l)| (i, "out", l)));
    for (i, direction, line) in lines {
        if let Some(line) = line {
            seen.push((
                line.trace_id.clone(),
                format!("sidecar{} {direction}", i + 1),
            ));
        }
    }
    for hop in &trip.hops {
        verdict.expect(hop.extracted.valid, || {
            format!("{} ({}) extracted no context", hop.app, hop.lib)
        });
        seen.push((
            hop.extracted.trace_id.clone(),
            format!("{} extracted", hop.app),
        ));
        seen.push((hop.span.trace_id.clone(), format!("{} span", hop.app)));
    }
    for span in spans {
        seen.push((
            span.trace_id_hex(),
            format!("exported {}", span_label(span)),
        ));
    }
    let mut by_trace: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (trace, who) in seen {
        by_trace.entry(trace).or_default().push(who);
    }
    if let Some(broken) = trip.broken() {
        verdict.fail(broken);
    }
    match expected {
        Some(trace) => verdict.expect(by_trace.len() == 1 && by_trace.contains_key(trace), || {
            format!("expected only trace {trace}; saw {by_trace:?}")
        }),
        None => verdict.fail("no trace id to expect: sidecar1 logged no inbound line"),
    }
    verdict.into_cell()
}

/// B: each link's parent, from the access log and (sampled) the spans.
fn parents(case: &Case, trip: &Trip, spans: &[&ReceivedSpan]) -> Cell {
    let mut verdict = Verdict::default();
    if let Some(broken) = trip.broken() {
        verdict.fail(broken);
    }
    logged_parents(case, trip, &mut verdict);
    if case.sampled {
        span_parents(case, trip, spans, &mut verdict);
    }
    verdict.into_cell()
}

/// B, from the access log, sampled or not: each app extracted its sidecar's
/// inbound span, and every link's parent id is the span before it.
fn logged_parents(case: &Case, trip: &Trip, verdict: &mut Verdict) {
    for (i, hop) in trip.hops.iter().enumerate() {
        match &trip.inbound[i] {
            Some(line) => verdict.expect(hop.extracted.span_id == line.span_id, || {
                format!(
                    "{} ({}) extracted parent {}, but sidecar{}'s inbound span is {}",
                    hop.app,
                    hop.lib,
                    hop.extracted.span_id,
                    i + 1,
                    line.span_id
                )
            }),
            None => verdict.fail(format!("sidecar{} logged no inbound line", i + 1)),
        }
    }
    // Every link from the access log's parent ids, sampled or not: a sidecar's
    // inbound span hangs under the previous sidecar's outbound span (sidecar1's
    // under the client's), its outbound span under its own app's span.
    for i in 0..3 {
        let expected = match i {
            0 => case
                .client
                .as_ref()
                .map_or_else(|| "-".to_string(), |(_, span)| span.clone()),
            _ => trip.outbound[i - 1]
                .as_ref()
                .map_or_else(|| "(no line)".to_string(), |a| a.span_id.clone()),
        };
        if let Some(line) = &trip.inbound[i] {
            verdict.expect(line.parent_id == expected, || {
                format!(
                    "sidecar{} inbound parent {} (access log), expected {expected}",
                    i + 1,
                    line.parent_id
                )
            });
        }
    }
    for (i, hop) in trip.hops.iter().take(2).enumerate() {
        if let Some(line) = &trip.outbound[i] {
            verdict.expect(line.parent_id == hop.span.span_id, || {
                format!(
                    "sidecar{} outbound parent {} (access log), but {}'s own span is {}",
                    i + 1,
                    line.parent_id,
                    hop.app,
                    hop.span.span_id
                )
            });
        }
    }
}

/// B, from the exported spans of a sampled trip: each span's parent, and each
/// span id matching its access-log line.
fn span_parents(case: &Case, trip: &Trip, spans: &[&ReceivedSpan], verdict: &mut Verdict) {
    let find = |i: usize, kind| {
        spans
            .iter()
            .find(|s| workload(s) == format!("app{}", i + 1) && s.kind() == kind)
    };
    for i in 0..3 {
        let Some(server) = find(i, SpanKind::Server) else {
            verdict.fail(format!("no SERVER span from sidecar{} to check", i + 1));
            continue;
        };
        let logged = trip.inbound[i].as_ref().map(|a| a.span_id.clone());
        verdict.expect(Some(server.span_id_hex()) == logged, || {
            format!(
                "sidecar{} SERVER span {} but its access line says {logged:?}",
                i + 1,
                server.span_id_hex()
            )
        });
        let expected = match i {
            0 => case.client.as_ref().map(|(_, span)| span.clone()),
            _ => find(i - 1, SpanKind::Client).map(|c| c.span_id_hex()),
        };
        verdict.expect(server.parent_span_id_hex() == expected, || {
            format!(
                "sidecar{} SERVER parent {:?}, expected {expected:?}",
                i + 1,
                server.parent_span_id_hex()
            )
        });
    }
    for (i, hop) in trip.hops.iter().take(2).enumerate() {
        let Some(client) = find(i, SpanKind::Client) else {
            verdict.fail(format!("no CLIENT span from sidecar{} to check", i + 1));
            continue;
        };
        verdict.expect(
            client.parent_span_id_hex().as_ref() == Some(&hop.span.span_id),
            || {
                format!(
                    "sidecar{} CLIENT parent {:?}, but {}'s own span is {}",
                    i + 1,
                    client.parent_span_id_hex(),
                    hop.app,
                    hop.span.span_id
                )
            },
        );
        let logged = trip.outbound[i].as_ref().map(|a| a.span_id.clone());
        verdict.expect(Some(client.span_id_hex()) == logged, || {
            format!(
                "sidecar{} CLIENT span {} but its access line says {logged:?}",
                i + 1,
                client.span_id_hex()
            )
        });
    }
}

/// C: the same decision everywhere; the spans exported exactly when sampled.
/// `unproven` says why the span count is not final (see `Fleet::exported_spans`).
fn one_decision(case: &Case, trip: &Trip, spans: &[&ReceivedSpan], unproven: Option<&str>) -> Cell {
    let mut verdict = Verdict::default();
    let want = case.sampled;
    for hop in &trip.hops {
        for (what, ctx) in [("extracted", &hop.extracted), ("own span", &hop.span)] {
            verdict.expect(ctx.sampled == Some(want), || {
                format!(
                    "{} {what} sampled={:?} (priority {:?}), expected {want}",
                    hop.app, ctx.sampled, ctx.priority
                )
            });
        }
    }
    let lines = (trip.inbound.iter().enumerate().map(|(i, l)| (i, "in", l)))
        .chain(trip.outbound.iter().enumerate().map(|(i, l)| (i, "out", l)));
    for (i, direction, line) in lines {
        if let Some(line) = line {
            verdict.expect(line.sampled == want, || {
                format!(
                    "sidecar{} {direction} logged sampled={}, expected {want}",
                    i + 1,
                    line.sampled
                )
            });
        }
    }
    let mut got: Vec<String> = spans.iter().map(|s| span_label(s)).collect();
    got.sort();
    let expected: &[&str] = if want { &SAMPLED_SPANS } else { &[] };
    verdict.expect(got == expected, || {
        format!("exported spans {got:?}, expected {expected:?}")
    });
    if let Some(reason) = unproven {
        verdict.fail(format!("span count unproven: {reason}"));
    }
    verdict.into_cell()
}

/// H: every trace header each app got names what its sidecar logged for the
/// request: the sidecar's trace, its inbound span as parent, its decision.
/// (Whether that is the right trace is A's and C's concern.)
fn written_for_each_hop(trip: &Trip) -> Cell {
    let mut verdict = Verdict::default();
    for (i, hop) in trip.hops.iter().enumerate() {
        let Some(line) = &trip.inbound[i] else {
            verdict.fail(format!("sidecar{} logged no inbound line", i + 1));
            continue;
        };
        let contexts = contexts_in(&hop.received_headers);
        verdict.expect(!contexts.is_empty(), || {
            format!("{} got no trace context", hop.app)
        });
        for c in contexts {
            let right = c.trace_id.as_ref() == Some(&line.trace_id)
                && c.parent_id.as_ref() == Some(&line.span_id)
                && c.sampled == Some(line.sampled);
            verdict.expect(right, || {
                format!(
                    "{} got {} naming trace {:?} parent {:?} sampled {:?}; sidecar{}'s span: {line}",
                    hop.app, c.format, c.trace_id, c.parent_id, c.sampled, i + 1
                )
            });
        }
    }
    verdict.into_cell()
}

/// D: past `legacy`, only W3C crosses the network between sidecars.
fn only_w3c_on_the_mesh(stage: MigrationStage, trip: &Trip) -> Cell {
    if stage == MigrationStage::Legacy {
        return Cell::NotApplicable;
    }
    let mut verdict = Verdict::default();
    verdict.expect(trip.mesh_legacy.is_empty(), || {
        format!(
            "legacy contexts read inbound from the mesh (sidecar, format, count): {:?}",
            trip.mesh_legacy
        )
    });
    verdict.into_cell()
}

/// E: at `w3c`, apps see W3C headers only.
fn only_w3c_to_the_apps(stage: MigrationStage, trip: &Trip) -> Cell {
    if stage != MigrationStage::W3c {
        return Cell::NotApplicable;
    }
    let mut verdict = Verdict::default();
    for hop in &trip.hops {
        let other: Vec<&String> = hop
            .received_headers
            .keys()
            .filter(|name| !is_w3c_header(name))
            .collect();
        verdict.expect(other.is_empty(), || format!("{} got {other:?}", hop.app));
    }
    verdict.into_cell()
}
