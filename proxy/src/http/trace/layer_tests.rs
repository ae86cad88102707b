//! The trace layer in front of a stand-in app, one request per rule: extract
//! what arrived, decide, inject for the next hop, and leave the sidecar's span
//! ids on the request for the access log and spans. (The header-ownership
//! property over every format combination lives in `tests.rs`.)

use http::{Request, StatusCode};
use meshtrace_config::{Config, MigrationStage};
use tower::Layer;

use crate::propagation::{Format, Sampling};
use crate::sampling::Reason;
use crate::target::Direction;
use crate::test_support::{app, call, config, request, response, span_info_of, Layers};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: u64 = 0x00f0_67aa_0ba9_02b7;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Sends `req` through the trace layer of `layers` (access log on) and returns
/// the request head the app received.
async fn forwarded(layers: &Layers, req: Request<()>) -> http::request::Parts {
    forwarded_with(layers, true, req).await
}

async fn forwarded_with(
    layers: &Layers,
    access_log: bool,
    req: Request<()>,
) -> http::request::Parts {
    let (inner, seen) = app(|| response(StatusCode::OK, ""));
    let mut traced = layers.trace(access_log).layer(inner);
    call(&mut traced, req).await;
    seen.try_recv().expect("the app saw the request")
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn inbound(change: impl FnOnce(&mut Config)) -> Layers {
    Layers::new(Direction::Inbound, &config(change))
}

#[tokio::test]
async fn trace_layer_injects_w3c_and_removes_stale_b3_toward_the_app() {
    let layers = inbound(|c| c.propagation.stage = MigrationStage::W3c);
    let stale_b3 = "0af7651916cd43dd8448eb211c80319c-e457b5a2e4d86bd1-1";
    let req = request("/", &[("traceparent", TRACEPARENT), ("b3", stale_b3)]);
    let app_saw = forwarded(&layers, req).await;
    let info = span_info_of(&app_saw).expect("span info for the access log");
    let ours = format!("00-{TRACE}-{:016x}-01", info.span_id.get());
    assert_eq!(header(&app_saw, "traceparent"), Some(ours.as_str()));
    assert_eq!(header(&app_saw, "b3"), None);
    assert_eq!(
        info.discarded.len(),
        1,
        "the stale B3 context lost the conflict"
    );
}

#[tokio::test]
async fn inbound_request_continues_the_callers_trace_under_a_new_span() {
    let layers = inbound(|_| {});
    let app_saw = forwarded(&layers, request("/", &[("traceparent", TRACEPARENT)])).await;
    let info = span_info_of(&app_saw).expect("span info for the access log");
    assert_eq!(format!("{:032x}", info.trace_id.get()), TRACE);
    assert_eq!(info.parent_id.map(|p| p.get()), Some(CALLER_SPAN));
    assert_ne!(info.span_id.get(), CALLER_SPAN);
    assert!(info.formats.contains(Format::TraceContext));
    assert_eq!(info.sampling_reason, Reason::Parent);
    assert_eq!(
        layers.count(r#"meshtrace_trace_context_total{direction="inbound",format="tracecontext",outcome="valid"}"#),
        1
    );
}

#[tokio::test]
async fn outbound_request_from_the_app_leaves_as_w3c_only_at_stage_dual() {
    let layers = Layers::new(
        Direction::Outbound,
        &config(|c| {
            c.propagation.stage = MigrationStage::Dual;
            c.workload.service = Some("web".into());
            c.workload.namespace = Some("shop".into());
        }),
    );
    let b3 = format!("{TRACE}-e457b5a2e4d86bd1-1");
    let req = request("/", &[("host", "cart:80"), ("b3", &b3)]);
    let upstream_saw = forwarded(&layers, req).await;
    let info = span_info_of(&upstream_saw).expect("span info for the access log");
    let ours = format!("00-{TRACE}-{:016x}-01", info.span_id.get());
    assert_eq!(header(&upstream_saw, "traceparent"), Some(ours.as_str()));
    assert_eq!(header(&upstream_saw, "b3"), None, "legacy leaves the wire");
    assert_eq!(
        header(&upstream_saw, "x-meshtrace-caller"),
        Some("web.shop")
    );
}

#[tokio::test]
async fn untrusted_listener_ignores_incoming_context_and_starts_a_new_trace() {
    let layers = inbound(|c| c.inbound.trusted = false);
    let app_saw = forwarded(&layers, request("/", &[("traceparent", TRACEPARENT)])).await;
    let info = span_info_of(&app_saw).expect("span info for the access log");
    assert_ne!(format!("{:032x}", info.trace_id.get()), TRACE);
    assert_eq!(info.parent_id, None);
    let traceparent = header(&app_saw, "traceparent").unwrap_or("");
    assert!(!traceparent.contains(TRACE), "{traceparent}");
}

/// Every incoming value an untrusted caller could use to steer the app's
/// tracing: B3 with the debug flag, Datadog user keep, the force header.
const UNTRUSTED_HEADERS: [(&str, &str); 9] = [
    ("x-b3-traceid", TRACE),
    ("x-b3-spanid", "00f067aa0ba902b7"),
    ("x-b3-parentspanid", "e457b5a2e4d86bd1"),
    ("x-b3-flags", "1"),
    ("x-datadog-trace-id", "1234567890"),
    ("x-datadog-parent-id", "987654321"),
    ("x-datadog-sampling-priority", "2"),
    ("x-datadog-origin", "synthetics"),
    ("x-meshtrace-force-trace", "1"),
];

#[tokio::test]
async fn untrusted_listener_removes_every_incoming_trace_and_force_header() {
    let layers = inbound(|c| {
        c.inbound.trusted = false;
        c.sampling.default_rate = 0.0;
    });
    let app_saw = forwarded(&layers, request("/", &UNTRUSTED_HEADERS)).await;
    for (name, value) in UNTRUSTED_HEADERS {
        assert_ne!(header(&app_saw, name), Some(value), "{name} passed through");
    }
    for name in ["x-b3-flags", "x-b3-parentspanid", "x-datadog-origin"] {
        assert_eq!(header(&app_saw, name), None, "{name} passed through");
    }
    assert_eq!(header(&app_saw, "x-meshtrace-force-trace"), None);
    assert_eq!(header(&app_saw, "x-datadog-sampling-priority"), Some("0"));
}

#[tokio::test]
async fn request_without_context_starts_a_root_decided_by_the_default_rate() {
    let layers = inbound(|c| c.sampling.default_rate = 0.0);
    let app_saw = forwarded(&layers, request("/", &[])).await;
    let info = span_info_of(&app_saw).expect("span info for the access log");
    assert_eq!(
        (info.sampling, info.sampling_reason),
        (Sampling::NotSampled, Reason::Default)
    );
    let traceparent = header(&app_saw, "traceparent").unwrap_or("");
    // Not sampled (bit 0), with the Level 2 random trace id flag (bit 1).
    assert!(traceparent.ends_with("-02"), "{traceparent}");
    let none =
        r#"meshtrace_trace_context_total{direction="inbound",format="none",outcome="valid"}"#;
    assert_eq!(layers.count(none), 1);
    let decided = r#"meshtrace_sampling_decisions_total{direction="inbound",decision="not_sampled",reason="default"}"#;
    assert_eq!(layers.count(decided), 1);
}

#[tokio::test]
async fn inbound_request_loses_the_mesh_caller_header_before_the_app() {
    let layers = inbound(|_| {});
    let app_saw = forwarded(&layers, request("/", &[("x-meshtrace-caller", "web.shop")])).await;
    assert_eq!(header(&app_saw, "x-meshtrace-caller"), None);
}

#[tokio::test]
async fn span_info_is_left_only_when_a_reader_wants_it() {
    let layers = inbound(|_| {});
    let req = request("/", &[("traceparent", TRACEPARENT)]);
    let app_saw = forwarded_with(&layers, false, req).await;
    assert!(span_info_of(&app_saw).is_none(), "no access log, no spans");
    let traceparent = header(&app_saw, "traceparent").unwrap_or("");
    assert!(traceparent.contains(TRACE), "still injected: {traceparent}");
}

#[tokio::test]
async fn reloaded_policy_applies_from_the_next_request_on_the_same_connection() {
    let layers = inbound(|c| c.propagation.stage = MigrationStage::Legacy);
    let (inner, seen) = app(|| response(StatusCode::OK, ""));
    let mut traced = layers.trace(false).layer(inner);
    let b3 = format!("{TRACE}-e457b5a2e4d86bd1-1");
    call(&mut traced, request("/", &[("b3", &b3)])).await;
    layers.reload(&config(|c| c.propagation.stage = MigrationStage::W3c));
    call(&mut traced, request("/", &[("b3", &b3)])).await;
    let (legacy, w3c) = (seen.try_recv(), seen.try_recv());
    let has_b3 = |parts: &http::request::Parts| parts.headers.contains_key("b3");
    assert_eq!(legacy.as_ref().map(has_b3).ok(), Some(true));
    assert_eq!(w3c.as_ref().map(has_b3).ok(), Some(false));
}

#[tokio::test]
async fn the_layer_reads_the_force_header_tenant_and_probe_in_its_pass_over_the_headers() {
    let layers = inbound(|c| {
        c.sampling.default_rate = 0.0;
        c.sampling.tenant.headers = vec!["x-tenant-id".into(), "x-org".into()];
        c.sampling.forced_tenants = vec![meshtrace_config::ForcedTenant {
            tenant: "acme".into(),
            rate: 1.0,
            override_parent: true,
            traces_per_second: 1000.0,
        }];
    });
    let cases: [(&[(&str, &str)], Reason); 5] = [
        (&[("x-meshtrace-force-trace", "true")], Reason::ForceSignal),
        (&[("x-meshtrace-force-trace", "no")], Reason::Default),
        (&[("x-org", "acme")], Reason::ForcedTenant),
        (
            &[("x-org", "acme"), ("x-tenant-id", "other")],
            Reason::Default,
        ),
        (&[("user-agent", "Kube-Probe/1.30")], Reason::Probe),
    ];
    for (headers, reason) in cases {
        let app_saw = forwarded(&layers, request("/", headers)).await;
        let info = span_info_of(&app_saw).expect("span info for the access log");
        assert_eq!(info.sampling_reason, reason, "{headers:?}");
    }
}
