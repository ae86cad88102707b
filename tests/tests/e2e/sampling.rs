//! Sampling decisions through real sidecars: parent-respecting, forced tenants
//! that override a "not sampled" parent in every format, force signals only from
//! trusted callers, and the decision counted by reason.

use http::Response;
use meshtrace_config::{ForcedTenant, PropagationFormat as Format};
use meshtrace_tests::apps::{echoed, HttpApp};
use meshtrace_tests::client::http1_get_with;
use meshtrace_tests::sidecar;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn w3c_flags(rsp: &Response<bytes::Bytes>) -> &str {
    echoed(rsp, "traceparent")
        .and_then(|tp| tp.rsplit('-').next())
        .expect("a traceparent")
}

fn acme() -> ForcedTenant {
    ForcedTenant {
        tenant: "acme".into(),
        rate: 1.0,
        override_parent: true,
        traces_per_second: 100.0,
    }
}

#[tokio::test]
async fn forced_tenant_turns_a_datadog_drop_into_a_trace_sampled_in_every_format() {
    let app = HttpApp::start().await;
    let every_format = vec![
        Format::TraceContext,
        Format::B3Multi,
        Format::B3Single,
        Format::Datadog,
        Format::Jaeger,
    ];
    let downstream = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| {
            c.sampling.forced_tenants.push(acme());
            c.propagation.app_formats = Some(every_format);
        })
        .start()
        .await;
    let upstream = sidecar::new()
        .host_route("billing", downstream.inbound_addr())
        .configure(|c| {
            c.sampling.forced_tenants.push(acme());
            c.propagation.app_formats = Some(vec![Format::TraceContext, Format::Datadog]);
        })
        .start()
        .await;
    // app -> upstream sidecar (outbound) -> downstream sidecar (inbound) -> app
    let rsp = http1_get_with(
        upstream.outbound_addr(),
        "billing",
        &[
            ("x-datadog-trace-id", "11803532876627986230"),
            ("x-datadog-parent-id", "67667974448284343"),
            ("x-datadog-sampling-priority", "0"),
            ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6"),
            ("x-tenant-id", "acme"),
        ],
    )
    .await;
    let traceparent = echoed(&rsp, "traceparent").expect("traceparent");
    assert!(
        traceparent.contains(TRACE),
        "one continuous trace: {traceparent}"
    );
    assert_eq!(w3c_flags(&rsp), "01");
    assert_eq!(echoed(&rsp, "x-b3-sampled"), Some("1"));
    assert!(echoed(&rsp, "b3").is_some_and(|b3| b3.split('-').nth(2) == Some("1")));
    assert_eq!(
        echoed(&rsp, "x-datadog-sampling-priority"),
        Some("2"),
        "user keep"
    );
    assert!(echoed(&rsp, "x-datadog-tags").is_some_and(|t| t.contains("_dd.p.dm=-4")));
    assert!(echoed(&rsp, "uber-trace-id").is_some_and(|u| u.ends_with(":1")));
    let metrics = upstream.metrics().await;
    let series = r#"meshtrace_sampling_decisions_total{direction="outbound",decision="sampled",reason="forced_tenant"} 1"#;
    assert!(metrics.contains(series), "{metrics}");
}

#[tokio::test]
async fn other_tenants_follow_the_parent_not_sampled_decision() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.sampling.forced_tenants.push(acme()))
        .start()
        .await;
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-00");
    let rsp = http1_get_with(
        proxy.inbound_addr(),
        "app",
        &[("traceparent", &tp), ("x-tenant-id", "globex")],
    )
    .await;
    assert_eq!(w3c_flags(&rsp), "00");
}

#[tokio::test]
async fn root_requests_follow_the_default_rate_and_children_follow_their_parent() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.sampling.default_rate = 0.0)
        .start()
        .await;
    assert_eq!(
        w3c_flags(&http1_get_with(proxy.inbound_addr(), "app", &[]).await),
        "02",
        "a root at rate 0 is not sampled"
    );
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
    assert_eq!(
        w3c_flags(&http1_get_with(proxy.inbound_addr(), "app", &[("traceparent", &tp)]).await),
        "01"
    );
}

#[tokio::test]
async fn force_header_is_honoured_only_from_trusted_callers() {
    let app = HttpApp::start().await;
    let force = [("x-meshtrace-force-trace", "1")];
    for (trusted, expected) in [(true, "03"), (false, "02")] {
        let proxy = sidecar::new()
            .inbound_to(app.addr())
            .configure(|c| {
                c.sampling.default_rate = 0.0;
                c.inbound.trusted = trusted;
            })
            .start()
            .await;
        let rsp = http1_get_with(proxy.inbound_addr(), "app", &force).await;
        assert_eq!(w3c_flags(&rsp), expected, "trusted: {trusted}");
    }
}

#[tokio::test]
async fn probability_decisions_record_their_threshold_in_tracestate() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.sampling.default_rate = 0.5)
        .start()
        .await;
    // Each root is sampled with probability 1/2: 64 tries all failing is a 2^-64 event.
    for _ in 0..64 {
        let rsp = http1_get_with(proxy.inbound_addr(), "app", &[]).await;
        if w3c_flags(&rsp) == "03" {
            assert_eq!(echoed(&rsp, "tracestate"), Some("ot=th:8"));
            return;
        }
        assert_eq!(
            echoed(&rsp, "tracestate"),
            None,
            "no threshold on a trace not sampled"
        );
    }
    panic!("64 roots at rate 0.5 and none sampled");
}
