//! Trace context through the sidecar: every trace stays continuous whatever
//! format each side speaks, the sidecar's span sits between caller and callee,
//! no stale trace header passes through, boundaries are respected, and every
//! format is counted — per caller and per target too.

use http::{Response, StatusCode};
use meshtrace_config::{
    MigrationStage, PropagationFormat as Format, UpstreamInjection, UpstreamMatch,
};
use meshtrace_tests::apps::{echoed, HttpApp};
use meshtrace_tests::client::http1_get_with;
use meshtrace_tests::sidecar::{self, Proxy};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// The caller's sampled W3C context: [`TRACE`], parent [`CALLER_SPAN`].
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// The same caller speaking B3 multi-header.
const B3_MULTI: [(&str, &str); 3] = [
    ("x-b3-traceid", TRACE),
    ("x-b3-spanid", CALLER_SPAN),
    ("x-b3-sampled", "1"),
];
/// A Datadog caller's whole context: [`TRACE`] split into decimal low bits and
/// `_dd.p.tid`, parent [`CALLER_SPAN`] in decimal, user-keep priority, an origin
/// and a decision-maker tag.
const DATADOG: [(&str, &str); 5] = [
    ("x-datadog-trace-id", "11803532876627986230"),
    ("x-datadog-parent-id", "67667974448284343"),
    ("x-datadog-sampling-priority", "2"),
    ("x-datadog-origin", "rum"),
    ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6,_dd.p.dm=-4"),
];

/// A propagation rule for requests to `host`.
fn upstream(
    name: Option<&str>,
    host: &str,
    external: bool,
    inject: Vec<Format>,
) -> UpstreamInjection {
    UpstreamInjection {
        name: name.map(Into::into),
        matches: UpstreamMatch {
            host: Some(host.into()),
            ..Default::default()
        },
        external,
        inject,
        id_width: None,
    }
}

/// The (trace id, parent span id, flags) of the traceparent the app received.
fn traceparent(rsp: &Response<bytes::Bytes>) -> (String, String, String) {
    let tp = echoed(rsp, "traceparent").expect("the app received a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Fails naming the first of `series` (exact lines) missing from `/metrics`.
async fn assert_series(proxy: &Proxy, series: &[&str]) {
    let metrics = proxy.metrics().await;
    for line in series {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn b3_caller_reaches_a_w3c_app_in_the_same_trace_under_the_sidecar_span() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let b3 = format!("{TRACE}-{CALLER_SPAN}-1");
    let rsp = http1_get_with(proxy.inbound_addr(), "app", &[("b3", &b3)]).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let (trace, parent, flags) = traceparent(&rsp);
    assert_eq!(trace, TRACE);
    assert_ne!(
        parent, CALLER_SPAN,
        "the sidecar's own span is the app's parent"
    );
    assert_eq!(flags, "01");
}

#[tokio::test]
async fn datadog_caller_gets_a_lossless_dd_member_toward_a_w3c_app() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let rsp = http1_get_with(proxy.inbound_addr(), "app", &DATADOG).await;
    assert_eq!(
        traceparent(&rsp).0,
        TRACE,
        "the high 64 bits came from _dd.p.tid"
    );
    let tracestate = echoed(&rsp, "tracestate").expect("a tracestate");
    for part in ["dd=", "s:2", "o:rum", "p:00f067aa0ba902b7", "t.dm:-4"] {
        assert!(tracestate.contains(part), "{part} missing in {tracestate}");
    }
}

#[tokio::test]
async fn legacy_neighbour_gets_the_formats_its_rule_names() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .host_route("billing", app.addr())
        .configure(|c| {
            let rule = upstream(Some("billing"), "billing", false, vec![Format::B3Multi]);
            c.propagation.upstreams.push(rule);
        })
        .start()
        .await;
    let rsp = http1_get_with(
        proxy.outbound_addr(),
        "billing:8080",
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(echoed(&rsp, "x-b3-traceid"), Some(TRACE));
    assert_eq!(echoed(&rsp, "x-b3-parentspanid"), Some(CALLER_SPAN));
    assert_eq!(echoed(&rsp, "x-b3-sampled"), Some("1"));
    assert_eq!(
        echoed(&rsp, "traceparent"),
        None,
        "the rule names exactly what the neighbour gets: the caller's traceparent is not passed on"
    );
    assert_series(
        &proxy,
        &[r#"meshtrace_trace_context_written_total{direction="outbound",target="billing",format="b3multi"} 1"#],
    )
    .await;
}

#[tokio::test]
async fn w3c_stage_app_gets_only_w3c_and_baggage() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.propagation.stage = MigrationStage::W3c)
        .start()
        .await;
    let rsp = http1_get_with(
        proxy.inbound_addr(),
        "app",
        &[B3_MULTI.as_slice(), &[("baggage", "tenant=acme")]].concat(),
    )
    .await;
    assert_eq!(traceparent(&rsp).0, TRACE);
    assert_eq!(echoed(&rsp, "x-b3-traceid"), None);
    assert_eq!(
        echoed(&rsp, "baggage"),
        Some("tenant=acme"),
        "baggage is never touched"
    );
}

#[tokio::test]
async fn external_destination_receives_no_trace_headers() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .host_route("api.partner.example", app.addr())
        .configure(|c| {
            let rule = upstream(None, "api.partner.example", true, vec![]);
            c.propagation.upstreams.push(rule);
        })
        .start()
        .await;
    let rsp = http1_get_with(
        proxy.outbound_addr(),
        "api.partner.example",
        &[
            ("traceparent", TRACEPARENT),
            ("tracestate", "rojo=1"),
            ("b3", "0"),
            ("x-datadog-trace-id", "1"),
        ],
    )
    .await;
    let leaked: Vec<_> = [
        "traceparent",
        "tracestate",
        "b3",
        "x-datadog-trace-id",
        "x-meshtrace-caller",
    ]
    .into_iter()
    .filter(|h| echoed(&rsp, h).is_some())
    .collect();
    assert!(leaked.is_empty(), "leaked {leaked:?}");
}

#[tokio::test]
async fn untrusted_listener_ignores_incoming_context() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.inbound.trusted = false)
        .start()
        .await;
    let tp = format!("00-{TRACE}-{CALLER_SPAN}-00");
    let rsp = http1_get_with(proxy.inbound_addr(), "app", &[("traceparent", &tp)]).await;
    let (trace, _, flags) = traceparent(&rsp);
    assert_ne!(trace, TRACE, "an edge caller cannot choose the trace");
    assert_eq!(
        flags, "03",
        "a new root trace, sampled, with a random trace id"
    );
}

#[tokio::test]
async fn invalid_traceparent_starts_a_new_trace_and_drops_its_tracestate() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let bad = format!("00-{TRACE}-{CALLER_SPAN}-");
    let rsp = http1_get_with(
        proxy.inbound_addr(),
        "app",
        &[("traceparent", &bad), ("tracestate", "rojo=1")],
    )
    .await;
    assert_eq!(
        rsp.status(),
        StatusCode::OK,
        "a bad trace header never fails a request"
    );
    assert_ne!(traceparent(&rsp).0, TRACE);
    assert_eq!(echoed(&rsp, "tracestate"), None);
}

#[tokio::test]
async fn every_format_and_outcome_is_counted() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let addr = proxy.inbound_addr();
    http1_get_with(addr, "app", &[]).await;
    http1_get_with(addr, "app", &[("traceparent", TRACEPARENT)]).await;
    http1_get_with(addr, "app", &[("traceparent", "00-bad")]).await;
    http1_get_with(
        addr,
        "app",
        &[
            ("traceparent", TRACEPARENT),
            (
                "b3",
                &format!("0af7651916cd43dd8448eb211c80319c-{CALLER_SPAN}-1"),
            ),
        ],
    )
    .await;
    assert_series(
        &proxy,
        &[
            r#"meshtrace_trace_context_total{direction="inbound",format="none",outcome="valid"} 2"#,
            r#"meshtrace_trace_context_total{direction="inbound",format="tracecontext",outcome="valid"} 2"#,
            r#"meshtrace_trace_context_total{direction="inbound",format="tracecontext",outcome="invalid"} 1"#,
            r#"meshtrace_trace_context_total{direction="inbound",format="b3single",outcome="conflict"} 1"#,
        ],
    )
    .await;
}

/// The first defect of the migration issue: a caller's stale B3 headers beside
/// the sidecar's new `traceparent` made a B3 app parent under the caller and
/// keep the caller's "not sampled". Every format the app gets is now the
/// sidecar's own, with one parent and one decision.
#[tokio::test]
async fn stale_b3_beside_traceparent_is_rewritten_under_the_sidecar_span() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let rsp = http1_get_with(
        proxy.inbound_addr(),
        "app",
        &[
            ("traceparent", TRACEPARENT),
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ],
    )
    .await;
    let (_, sidecar_span, _) = traceparent(&rsp);
    assert_eq!(echoed(&rsp, "x-b3-traceid"), Some(TRACE));
    assert_eq!(echoed(&rsp, "x-b3-spanid"), Some(sidecar_span.as_str()));
    assert_eq!(echoed(&rsp, "x-b3-parentspanid"), Some(CALLER_SPAN));
    assert_eq!(echoed(&rsp, "x-b3-sampled"), Some("1"), "one decision");
}

/// Before the app has sent anything, it gets every format; once its own
/// outbound requests show what it speaks, it gets W3C, what arrived and that.
#[tokio::test]
async fn the_app_gets_the_formats_it_was_seen_sending() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .host_route("upstream", app.addr())
        .start()
        .await;
    let cold = http1_get_with(proxy.inbound_addr(), "app", &[("traceparent", TRACEPARENT)]).await;
    for header in [
        "traceparent",
        "b3",
        "x-b3-spanid",
        "x-datadog-parent-id",
        "uber-trace-id",
    ] {
        assert!(
            echoed(&cold, header).is_some(),
            "a cold pod writes {header} too"
        );
    }
    // The app calls out with Datadog headers only.
    http1_get_with(
        proxy.outbound_addr(),
        "upstream:80",
        &[
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "2"),
            ("x-datadog-sampling-priority", "1"),
        ],
    )
    .await;
    let warm = http1_get_with(proxy.inbound_addr(), "app", &[("traceparent", TRACEPARENT)]).await;
    assert!(echoed(&warm, "traceparent").is_some());
    assert!(echoed(&warm, "x-datadog-parent-id").is_some());
    for header in ["b3", "x-b3-spanid", "uber-trace-id"] {
        assert_eq!(
            echoed(&warm, header),
            None,
            "{header}: the app does not speak it"
        );
    }
}

/// "Who still sends me B3?": a sidecar names its workload to the next one,
/// which counts formats by caller and removes the header before its app.
#[tokio::test]
async fn formats_are_counted_by_calling_workload_and_the_caller_header_stops_at_the_pod() {
    let app = HttpApp::start().await;
    let callee = sidecar::new().inbound_to(app.addr()).start().await;
    let caller = sidecar::new()
        .host_route("callee", callee.inbound_addr())
        .configure(|c| {
            c.workload.service = Some("web".into());
            c.workload.namespace = Some("shop".into());
        })
        .start()
        .await;
    let rsp = http1_get_with(caller.outbound_addr(), "callee:80", &B3_MULTI).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(
        echoed(&rsp, "x-meshtrace-caller"),
        None,
        "removed before the app"
    );
    assert_series(
        &callee,
        &[
            r#"meshtrace_trace_context_by_caller_total{caller="web.shop",format="tracecontext"} 1"#,
            r#"meshtrace_trace_context_by_caller_total{caller="web.shop",format="b3multi"} 1"#,
        ],
    )
    .await;
    assert_series(
        &caller,
        &[r#"meshtrace_trace_context_written_total{direction="outbound",target="default",format="b3multi"} 1"#],
    )
    .await;
}

/// `dual`: the app still gets its legacy format, but only W3C crosses the wire.
#[tokio::test]
async fn dual_stage_sends_only_w3c_between_sidecars() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .host_route("upstream", app.addr())
        .configure(|c| c.propagation.stage = MigrationStage::Dual)
        .start()
        .await;
    let rsp = http1_get_with(proxy.outbound_addr(), "upstream:80", &B3_MULTI).await;
    assert_eq!(traceparent(&rsp).0, TRACE);
    assert_eq!(echoed(&rsp, "x-b3-traceid"), None);
}

/// Datadog → a W3C-only wire (`dual`) → Datadog loses nothing: the `dd=`
/// tracestate member carries priority, origin and tags across, so the Datadog
/// app two hops away gets them back in its own headers.
#[tokio::test]
async fn datadog_round_trips_losslessly_across_a_w3c_only_wire() {
    let app = HttpApp::start().await;
    let callee = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.propagation.app_formats = Some(vec![Format::Datadog]))
        .start()
        .await;
    let caller = sidecar::new()
        .host_route("callee", callee.inbound_addr())
        .configure(|c| c.propagation.stage = MigrationStage::Dual)
        .start()
        .await;
    let rsp = http1_get_with(caller.outbound_addr(), "callee:80", &DATADOG).await;
    assert_eq!(
        echoed(&rsp, "x-datadog-trace-id"),
        Some("11803532876627986230")
    );
    assert_eq!(echoed(&rsp, "x-datadog-sampling-priority"), Some("2"));
    assert_eq!(echoed(&rsp, "x-datadog-origin"), Some("rum"));
    let tags = echoed(&rsp, "x-datadog-tags").expect("tags");
    for tag in ["_dd.p.tid=4bf92f3577b34da6", "_dd.p.dm=-4"] {
        assert!(tags.contains(tag), "{tag} missing in {tags}");
    }
    assert_ne!(
        echoed(&rsp, "x-datadog-parent-id"),
        Some("67667974448284343"),
        "the parent is the callee sidecar's span"
    );
}
