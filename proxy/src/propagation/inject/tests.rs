use http::header::HeaderValue;
use meshtrace_config::{MigrationStage, UpstreamInjection, UpstreamMatch};

use super::*;
use crate::propagation::{w3c, Sampling, TraceId};
use crate::test_support::headers;

use Format::{B3Multi, B3Single, Datadog, Jaeger, TraceContext as W3c};

fn config(stage: MigrationStage, upstreams: Vec<UpstreamInjection>) -> Propagation {
    Propagation {
        stage,
        upstreams,
        ..Propagation::default()
    }
}

fn rule(matches: UpstreamMatch, inject: Vec<Format>, external: bool) -> UpstreamInjection {
    UpstreamInjection {
        name: None,
        matches,
        external,
        inject,
        id_width: None,
    }
}

fn set(formats: &[Format]) -> Formats {
    formats.iter().copied().collect()
}

fn context() -> TraceContext {
    TraceContext::new(
        TraceId::new(0x4bf92f3577b34da6a3ce929d0e0e4736).unwrap(),
        SpanId::new(0xabc).unwrap(),
        Sampling::Sampled,
    )
}

/// The plan toward the app for `arrived`, with the app known to speak `learned`.
fn toward_app(stage: MigrationStage, arrived: &[Format], learned: Option<&[Format]>) -> Formats {
    let injector = Injector::inbound(&config(stage, vec![]));
    injector
        .plan(None, None, set(arrived), || learned.map(set))
        .formats
}

/// The plan toward an upstream no rule matches for what the app sent.
fn toward_upstream(stage: MigrationStage, sent: &[Format]) -> Formats {
    let injector = Injector::outbound(&config(stage, vec![]));
    injector
        .plan(Some("reviews:9080"), None, set(sent), || None)
        .formats
}

/// The plan written by default: the W3C plan toward the app.
fn w3c_plan() -> Plan {
    Plan {
        formats: set(&[W3c]),
        id_width: IdWidth::Auto,
        target: 0,
        external: false,
    }
}

// === which formats ===

#[test]
fn legacy_stage_writes_w3c_what_arrived_and_what_the_app_speaks_toward_the_app() {
    assert_eq!(
        toward_app(MigrationStage::Legacy, &[B3Single], Some(&[Datadog])),
        set(&[W3c, B3Single, Datadog])
    );
}

#[test]
fn an_app_not_yet_heard_from_gets_every_format() {
    assert_eq!(
        toward_app(MigrationStage::Legacy, &[], None),
        Formats::all()
    );
}

#[test]
fn an_app_known_to_send_no_context_gets_w3c_and_what_arrived() {
    assert_eq!(
        toward_app(MigrationStage::Legacy, &[Jaeger], Some(&[])),
        set(&[W3c, Jaeger])
    );
}

#[test]
fn explicit_app_formats_replace_what_was_learned() {
    let injector = Injector::inbound(&Propagation {
        app_formats: Some(vec![B3Multi]),
        ..Propagation::default()
    });
    let plan = injector.plan(None, None, Formats::default(), || {
        panic!("the learned set is not consulted when app_formats is set")
    });
    assert_eq!(plan.formats, set(&[W3c, B3Multi]));
}

#[test]
fn legacy_stage_writes_w3c_and_what_the_app_sent_toward_upstreams() {
    assert_eq!(
        toward_upstream(MigrationStage::Legacy, &[B3Multi]),
        set(&[W3c, B3Multi])
    );
    assert_eq!(toward_upstream(MigrationStage::Legacy, &[]), set(&[W3c]));
}

#[test]
fn dual_stage_keeps_legacy_inside_the_pod_and_only_w3c_on_the_wire() {
    assert_eq!(
        toward_app(MigrationStage::Dual, &[W3c], Some(&[B3Multi])),
        set(&[W3c, B3Multi])
    );
    assert_eq!(
        toward_upstream(MigrationStage::Dual, &[B3Multi]),
        set(&[W3c])
    );
}

#[test]
fn w3c_stage_writes_only_w3c_both_ways() {
    assert_eq!(
        toward_app(MigrationStage::W3c, &[B3Multi, Datadog], Some(&[B3Multi])),
        set(&[W3c])
    );
    assert_eq!(
        toward_upstream(MigrationStage::W3c, &[Datadog]),
        set(&[W3c])
    );
}

#[test]
fn rules_match_by_host_authority_and_port_first_match_wins_over_the_stage() {
    let injector = Injector::outbound(&config(
        MigrationStage::W3c,
        vec![
            rule(
                UpstreamMatch {
                    authority: Some("legacy:80".into()),
                    ..Default::default()
                },
                vec![B3Multi],
                false,
            ),
            rule(
                UpstreamMatch {
                    host: Some("Legacy".into()),
                    ..Default::default()
                },
                vec![Datadog],
                false,
            ),
            rule(
                UpstreamMatch {
                    port: Some(9411),
                    ..Default::default()
                },
                vec![B3Single],
                false,
            ),
        ],
    ));
    let plan = |authority, port| injector.plan(Some(authority), port, set(&[W3c]), || None);
    assert_eq!(plan("legacy:80", None).formats, set(&[B3Multi]));
    assert_eq!(plan("legacy:80", None).target, 1);
    assert_eq!(plan("LEGACY:8080", None).formats, set(&[Datadog]));
    assert_eq!(plan("zipkin", Some(9411)).formats, set(&[B3Single]));
    assert_eq!(
        plan("zipkin:9411", Some(80)).formats,
        set(&[B3Single]),
        "the authority's port wins"
    );
    assert_eq!(plan("other:80", None).formats, set(&[W3c]));
    assert_eq!(plan("other:80", None).target, 0);
}

// === writing ===

#[test]
fn external_upstream_gets_every_trace_header_stripped() {
    let injector = Injector::outbound(&config(
        MigrationStage::Legacy,
        vec![rule(
            UpstreamMatch {
                host: Some("api.partner.example".into()),
                ..Default::default()
            },
            vec![],
            true,
        )],
    ));
    let arrived = Formats::all();
    let plan = injector.plan(Some("api.partner.example:443"), None, arrived, || None);
    assert!(plan.external);
    let mut h = headers(&[
        ("traceparent", "x"),
        ("tracestate", "a=1"),
        ("b3", "0"),
        ("x-b3-sampled", "1"),
        ("x-datadog-trace-id", "1"),
        ("uber-trace-id", "1:2:0:1"),
        ("baggage", "k=v"),
    ]);
    write(
        &plan,
        &mut context(),
        None,
        Formats::default(),
        arrived,
        &mut h,
    );
    assert_eq!(
        h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["baggage"]
    );
}

#[test]
fn formats_not_written_are_removed_and_baggage_is_kept() {
    let mut h = headers(&[
        ("b3", "0"),
        ("x-b3-sampled", "1"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-datadog-trace-id", "1"),
        ("uber-trace-id", "1:2:0:1"),
        ("uberctx-k", "v"),
        ("baggage", "k=v"),
    ]);
    let arrived = set(&[B3Single, B3Multi, Datadog, Jaeger]);
    write(
        &w3c_plan(),
        &mut context(),
        None,
        Formats::default(),
        arrived,
        &mut h,
    );
    let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["baggage", "traceparent", "uberctx-k"]);
}

/// The defect this module exists for: a stale `tracestate` beside a
/// `traceparent` the plan does not write.
#[test]
fn a_stale_traceparent_and_tracestate_are_removed_when_w3c_is_not_written() {
    let mut h = headers(&[
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "rojo=1"),
    ]);
    let plan = Plan {
        formats: set(&[Datadog]),
        ..w3c_plan()
    };
    write(
        &plan,
        &mut context(),
        None,
        Formats::default(),
        set(&[W3c]),
        &mut h,
    );
    assert!(h.get("traceparent").is_none() && h.get("tracestate").is_none());
    assert_eq!(
        h["x-datadog-parent-id"], "2748",
        "the sidecar's span, 0xabc"
    );
}

#[test]
fn written_traceparent_carries_the_sidecar_span_as_parent() {
    let mut h = HeaderMap::new();
    write(
        &w3c_plan(),
        &mut context(),
        None,
        Formats::default(),
        Formats::default(),
        &mut h,
    );
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
    c.datadog = Some(Box::new(crate::propagation::DatadogMeta {
        priority: Some(2),
        origin: Some("rum".into()),
        ..Default::default()
    }));
    let mut sources = Formats::default();
    sources.insert(Format::Datadog);
    let mut h = HeaderMap::new();
    write(
        &w3c_plan(),
        &mut c,
        None,
        sources,
        Formats::default(),
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
    c.datadog = Some(Box::new(crate::propagation::DatadogMeta {
        priority: Some(2),
        ..Default::default()
    }));
    let caller = SpanId::new(0xc648fc7cee38d740).unwrap();
    let mut sources = Formats::default();
    sources.insert(Format::TraceContext);
    let mut h = HeaderMap::new();
    write(
        &w3c_plan(),
        &mut c,
        Some(caller),
        sources,
        Formats::default(),
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
        w3c::inject(&Outgoing::of(&from_b3), &mut wire);
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

/// A header map as a sorted list of names with their values, in order.
fn sorted(headers: &HeaderMap) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut all: Vec<_> = headers
        .keys()
        .map(|name| {
            let values = headers.get_all(name).iter();
            (
                name.to_string(),
                values.map(|v| v.as_bytes().to_vec()).collect(),
            )
        })
        .collect();
    all.sort();
    all
}

/// The contexts [`render`] is held to [`write`] with: a Datadog caller's in
/// debug with a `tracestate`; a 64-bit one read from a narrow format; one whose
/// id Datadog cannot carry (low 64 bits zero).
fn contexts() -> [TraceContext; 3] {
    let mut caller = context();
    caller.debug = true;
    caller.tracestate =
        crate::propagation::TraceState::parse(&[HeaderValue::from_static("rojo=1,congo=t61")])
            .unwrap();
    caller.datadog = Some(Box::new(crate::propagation::DatadogMeta {
        priority: Some(2),
        origin: Some("rum".into()),
        last_parent: None,
        tags: vec![("dm".into(), "-4".into())],
    }));
    let mut narrow = TraceContext::new(
        TraceId::new(0x00f0_67aa_0ba9_02b7).unwrap(),
        SpanId::new(7).unwrap(),
        Sampling::NotSampled,
    );
    narrow.narrow = true;
    let unwritable_in_datadog = TraceContext::new(
        TraceId::new(1 << 64).unwrap(),
        SpanId::new(7).unwrap(),
        Sampling::Deferred,
    );
    [caller, narrow, unwritable_in_datadog]
}

/// What requests arrive with: no trace header; or every format's, stale, one
/// of them twice.
fn arrivals() -> [HeaderMap; 2] {
    [
        headers(&[("baggage", "k=v")]),
        headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "rojo=1"),
            ("b3", "0"),
            ("x-b3-sampled", "1"),
            ("x-b3-sampled", "0"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-datadog-trace-id", "1"),
            ("x-datadog-origin", "synthetics"),
            ("uber-trace-id", "1:2:0:1"),
            ("uberctx-k", "v"),
        ]),
    ]
}

/// Every plan: each subset of the formats, at each id width.
fn plans() -> Vec<Plan> {
    let all = [W3c, B3Multi, B3Single, Datadog, Jaeger];
    let subsets = (0..32u32).map(|bits| {
        all.iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, f)| *f)
            .collect::<Formats>()
    });
    subsets
        .flat_map(|formats| {
            [IdWidth::Auto, IdWidth::Bits64, IdWidth::Bits128].map(|id_width| Plan {
                formats,
                id_width,
                ..w3c_plan()
            })
        })
        .collect()
}

/// [`render`] is [`write`] by another road: for every plan, id width, context
/// and set of headers arrived, the headers it leaves plus the ones it renders
/// are exactly the map `write` leaves.
#[test]
fn rendering_then_settling_leaves_exactly_what_write_leaves() {
    let mut cases = 0;
    for plan in plans() {
        for ctx in contexts() {
            for span_parent in [None, SpanId::new(0x00f0_67aa_0ba9_02b7)] {
                for sources in [Formats::default(), set(&[Datadog])] {
                    for arrived in arrivals() {
                        let present = crate::propagation::extract::scan(&arrived).present.formats;
                        let mut written = arrived.clone();
                        write(
                            &plan,
                            &mut ctx.clone(),
                            span_parent,
                            sources,
                            present,
                            &mut written,
                        );
                        let mut left = arrived.clone();
                        let rendered = render(
                            &plan,
                            &mut ctx.clone(),
                            span_parent,
                            sources,
                            present,
                            &mut left,
                        );
                        rendered.write_into(&mut left);
                        assert_eq!(
                            sorted(&left),
                            sorted(&written),
                            "{plan:?}, {ctx:?}, arrived {arrived:?}"
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 32 * 3 * 3 * 2 * 2 * 2);
}
