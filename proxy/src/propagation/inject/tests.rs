use http::header::HeaderValue;
use meshtrace_config::{UpstreamInjection, UpstreamMatch};

use super::*;
use crate::propagation::{w3c, Sampling, TraceId};

fn config(upstreams: Vec<UpstreamInjection>) -> Propagation {
    Propagation {
        upstreams,
        ..Propagation::default()
    }
}

fn rule(matches: UpstreamMatch, inject: Vec<Format>, external: bool) -> UpstreamInjection {
    UpstreamInjection {
        matches,
        external,
        injection: Injection {
            inject,
            ..Injection::default()
        },
    }
}

fn context() -> TraceContext {
    TraceContext::new(
        TraceId::new(0x4bf92f3577b34da6a3ce929d0e0e4736).unwrap(),
        SpanId::new(0xabc).unwrap(),
        Sampling::Sampled,
    )
}

use crate::test_support::headers;

fn injects(plan: &Plan) -> Vec<Format> {
    match plan {
        Plan::Write(i) => i.inject.clone(),
        Plan::External => vec![],
    }
}

#[test]
fn unmatched_upstreams_get_the_outbound_default() {
    let injector = Injector::outbound(&config(vec![]));
    assert_eq!(
        injects(injector.plan(Some("reviews:9080"), Some(9080))),
        [Format::TraceContext]
    );
}

#[test]
fn rules_match_by_host_authority_and_port_first_match_wins() {
    let injector = Injector::outbound(&config(vec![
        rule(
            UpstreamMatch {
                authority: Some("legacy:80".into()),
                ..Default::default()
            },
            vec![Format::B3Multi],
            false,
        ),
        rule(
            UpstreamMatch {
                host: Some("Legacy".into()),
                ..Default::default()
            },
            vec![Format::Datadog],
            false,
        ),
        rule(
            UpstreamMatch {
                port: Some(9411),
                ..Default::default()
            },
            vec![Format::B3Single],
            false,
        ),
    ]));
    assert_eq!(
        injects(injector.plan(Some("legacy:80"), None)),
        [Format::B3Multi]
    );
    assert_eq!(
        injects(injector.plan(Some("LEGACY:8080"), None)),
        [Format::Datadog]
    );
    assert_eq!(
        injects(injector.plan(Some("zipkin"), Some(9411))),
        [Format::B3Single]
    );
    assert_eq!(
        injects(injector.plan(Some("zipkin:9411"), Some(80))),
        [Format::B3Single],
        "the authority's port wins"
    );
}

#[test]
fn external_upstream_gets_every_trace_header_stripped() {
    let injector = Injector::outbound(&config(vec![rule(
        UpstreamMatch {
            host: Some("api.partner.example".into()),
            ..Default::default()
        },
        vec![],
        true,
    )]));
    let plan = injector.plan(Some("api.partner.example:443"), None);
    let mut h = headers(&[
        ("traceparent", "x"),
        ("tracestate", "a=1"),
        ("b3", "0"),
        ("x-datadog-trace-id", "1"),
        ("uber-trace-id", "1:2:0:1"),
        ("baggage", "k=v"),
    ]);
    write(plan, &mut context(), None, Formats::default(), &mut h);
    assert_eq!(
        h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["baggage"]
    );
}

#[test]
fn strip_legacy_removes_formats_not_written_and_keeps_baggage() {
    let plan = Plan::Write(Injection {
        inject: vec![Format::TraceContext],
        strip_legacy: true,
        ..Injection::default()
    });
    let mut h = headers(&[
        ("b3", "0"),
        ("x-b3-sampled", "1"),
        ("x-datadog-trace-id", "1"),
        ("uber-trace-id", "1:2:0:1"),
        ("baggage", "k=v"),
    ]);
    write(&plan, &mut context(), None, Formats::default(), &mut h);
    let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["baggage", "traceparent"]);
}

#[test]
fn legacy_headers_pass_untouched_without_strip_legacy() {
    let plan = Plan::Write(Injection::default());
    let mut h = headers(&[("x-b3-sampled", "1")]);
    write(&plan, &mut context(), None, Formats::default(), &mut h);
    assert_eq!(h["x-b3-sampled"], "1");
}

#[test]
fn written_traceparent_carries_the_sidecar_span_as_parent() {
    let plan = Plan::Write(Injection::default());
    let mut h = HeaderMap::new();
    write(&plan, &mut context(), None, Formats::default(), &mut h);
    assert_eq!(
        h[&w3c::TRACEPARENT],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
    );
}

#[test]
fn datadog_sourced_context_updates_the_dd_tracestate_member_in_front() {
    let mut c = context();
    c.tracestate =
        crate::propagation::TraceState::parse(&[HeaderValue::from_static("rojo=1")]).unwrap();
    c.datadog = Some(crate::propagation::DatadogMeta {
        priority: Some(2),
        origin: Some("rum".into()),
        ..Default::default()
    });
    let mut sources = Formats::default();
    sources.insert(Format::Datadog);
    let mut h = HeaderMap::new();
    write(
        &Plan::Write(Injection::default()),
        &mut c,
        None,
        sources,
        &mut h,
    );
    let tracestate = h[&w3c::TRACESTATE].to_str().unwrap();
    assert!(
        tracestate.starts_with("dd=") && tracestate.ends_with(",rojo=1"),
        "{tracestate}"
    );
    assert!(
        tracestate.contains("s:2") && tracestate.contains("o:rum"),
        "{tracestate}"
    );
}

#[test]
fn w3c_datadog_caller_without_last_parent_gets_its_span_as_p() {
    let mut c = context();
    c.datadog = Some(crate::propagation::DatadogMeta {
        priority: Some(2),
        ..Default::default()
    });
    let caller = SpanId::new(0xc648fc7cee38d740).unwrap();
    let mut sources = Formats::default();
    sources.insert(Format::TraceContext);
    let mut h = HeaderMap::new();
    write(
        &Plan::Write(Injection::default()),
        &mut c,
        Some(caller),
        sources,
        &mut h,
    );
    let tracestate = h[&w3c::TRACESTATE].to_str().unwrap();
    assert!(tracestate.contains("p:c648fc7cee38d740"), "{tracestate}");
}

/// B3 in → the sidecar writes W3C → the next sidecar reads W3C → writes B3 with
/// `id_width: 64` for its 64-bit neighbour: the same header comes out (debug
/// aside: W3C has no slot for it, only for "sampled").
#[test]
fn b3_round_trips_through_w3c_losing_nothing_w3c_can_carry() {
    use crate::propagation::{b3, Extracted};
    for b3_in in [
        "a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    ] {
        let Extracted::Context(from_b3) = b3::extract_single(&headers(&[("b3", b3_in)])) else {
            panic!("{b3_in} is valid B3");
        };
        let mut wire = HeaderMap::new();
        w3c::inject(
            &Outgoing {
                context: &from_b3,
                span_parent: None,
                narrow_ids: false,
            },
            &mut wire,
        );
        let Extracted::Context(from_w3c) = w3c::extract(&wire) else {
            panic!("the sidecar wrote valid W3C: {wire:?}");
        };
        let narrow = b3_in.len() < 40;
        let mut out = HeaderMap::new();
        b3::inject_single(
            &Outgoing {
                context: &from_w3c,
                span_parent: None,
                narrow_ids: narrow,
            },
            &mut out,
        );
        assert_eq!(out["b3"], b3_in);
    }
}
