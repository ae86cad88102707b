use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OTHER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

use crate::test_support::headers;

fn extractor(conflict: ConflictPolicy) -> Extractor {
    Extractor::new(
        vec![
            Format::TraceContext,
            Format::B3Single,
            Format::B3Multi,
            Format::Datadog,
            Format::Jaeger,
        ],
        conflict,
    )
}

/// Extracts and returns the result with every (format, outcome) counted.
fn run(conflict: ConflictPolicy, pairs: &[(&str, &str)]) -> (Incoming, Vec<(Format, Outcome)>) {
    let mut counted = Vec::new();
    let incoming = extractor(conflict).extract(&headers(pairs), |f, o| counted.push((f, o)));
    (incoming, counted)
}

fn traceparent(trace: &str, flags: &str) -> String {
    format!("00-{trace}-00f067aa0ba902b7-{flags}")
}

#[test]
fn no_headers_is_no_context_and_nothing_counted() {
    let (incoming, counted) = run(ConflictPolicy::First, &[]);
    assert!(incoming.context.is_none() && incoming.formats.is_empty());
    assert!(counted.is_empty());
}

#[test]
fn agreeing_formats_merge_and_count_valid() {
    let (incoming, counted) = run(
        ConflictPolicy::First,
        &[
            ("traceparent", &traceparent(TRACE, "01")),
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-flags", "1"),
        ],
    );
    let context = incoming.context.unwrap();
    assert!(context.debug, "debug from B3 merges into the W3C context");
    assert!(
        incoming.formats.contains(Format::TraceContext)
            && incoming.formats.contains(Format::B3Multi)
    );
    assert_eq!(
        counted,
        [
            (Format::TraceContext, Outcome::Valid),
            (Format::B3Multi, Outcome::Valid)
        ]
    );
}

#[test]
fn deferred_primary_takes_the_decision_of_an_agreeing_format() {
    let (incoming, _) = run(
        ConflictPolicy::First,
        &[
            ("b3", &format!("{TRACE}-00f067aa0ba902b7")),
            ("x-datadog-trace-id", "11803532876627986230"),
            ("x-datadog-parent-id", "67667974448284343"),
            ("x-datadog-sampling-priority", "0"),
            ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6"),
        ],
    );
    assert_eq!(incoming.context.unwrap().sampling, Sampling::NotSampled);
}

#[test]
fn w3c_tracestate_and_datadog_priority_merge() {
    let (incoming, _) = run(
        ConflictPolicy::First,
        &[
            ("traceparent", &traceparent(TRACE, "01")),
            ("tracestate", "rojo=1"),
            ("x-datadog-trace-id", "11803532876627986230"),
            ("x-datadog-parent-id", "67667974448284343"),
            ("x-datadog-sampling-priority", "2"),
            ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6"),
        ],
    );
    let context = incoming.context.unwrap();
    assert_eq!(context.tracestate.get("rojo"), Some("1"));
    assert_eq!(context.datadog.unwrap().priority, Some(2));
}

#[test]
fn conflicting_trace_ids_keep_the_first_and_count_the_loser() {
    let (incoming, counted) = run(
        ConflictPolicy::First,
        &[
            ("traceparent", &traceparent(TRACE, "01")),
            ("b3", &format!("{OTHER_TRACE}-e457b5a2e4d86bd1-1")),
        ],
    );
    assert_eq!(
        format!("{:032x}", incoming.context.unwrap().trace_id.get()),
        TRACE
    );
    assert_eq!(incoming.discarded.len(), 1);
    assert_eq!(incoming.discarded[0].format, Format::B3Single);
    assert!(counted.contains(&(Format::B3Single, Outcome::Conflict)));
}

#[test]
fn tracecontext_conflict_policy_prefers_w3c_even_when_listed_later() {
    let extractor = Extractor::new(
        vec![Format::B3Single, Format::TraceContext],
        ConflictPolicy::Tracecontext,
    );
    let h = headers(&[
        ("traceparent", &traceparent(TRACE, "01")),
        ("b3", &format!("{OTHER_TRACE}-e457b5a2e4d86bd1-1")),
    ]);
    let incoming = extractor.extract(&h, |_, _| {});
    assert_eq!(
        format!("{:032x}", incoming.context.unwrap().trace_id.get()),
        TRACE
    );
    assert_eq!(incoming.discarded[0].format, Format::B3Single);
}

#[test]
fn a_losing_w3c_context_does_not_leak_its_tracestate() {
    let extractor = Extractor::new(
        vec![Format::B3Single, Format::TraceContext],
        ConflictPolicy::First,
    );
    let h = headers(&[
        ("traceparent", &traceparent(TRACE, "01")),
        ("tracestate", "rojo=1"),
        ("b3", &format!("{OTHER_TRACE}-e457b5a2e4d86bd1-1")),
    ]);
    let context = extractor.extract(&h, |_, _| {}).context.unwrap();
    assert!(context.tracestate.is_empty());
}

#[test]
fn invalid_format_is_counted_and_ignored() {
    let (incoming, counted) = run(
        ConflictPolicy::First,
        &[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-",
            ),
            ("b3", &format!("{TRACE}-e457b5a2e4d86bd1-1")),
        ],
    );
    assert!(incoming.context.is_some());
    assert_eq!(
        counted,
        [
            (Format::TraceContext, Outcome::Invalid),
            (Format::B3Single, Outcome::Valid)
        ]
    );
}

#[test]
fn deny_only_b3_is_a_decision_without_a_context() {
    let (incoming, _) = run(ConflictPolicy::First, &[("b3", "0")]);
    assert!(incoming.context.is_none());
    assert_eq!(incoming.decision, Some((Sampling::NotSampled, false)));
}

#[test]
fn formats_not_configured_are_not_read() {
    let extractor = Extractor::new(vec![Format::TraceContext], ConflictPolicy::First);
    let incoming = extractor.extract(
        &headers(&[("b3", &format!("{TRACE}-e457b5a2e4d86bd1-1"))]),
        |_, _| {},
    );
    assert!(incoming.context.is_none());
}

/// A sidecar writes its own span id in `x-datadog-parent-id` beside a `dd=`
/// member whose `p:` is the last Datadog span: the next hop keeps `p:`, so a
/// Datadog tracer downstream re-parents on a Datadog span, not a sidecar's.
#[test]
fn the_dd_member_last_parent_wins_over_a_sidecar_written_datadog_parent_id() {
    let (incoming, _) = run(
        ConflictPolicy::First,
        &[
            ("traceparent", &traceparent(TRACE, "01")),
            ("tracestate", "dd=s:1;p:30f9a2b4c5d6e7f8"),
            ("x-datadog-trace-id", "11803532876627986230"),
            ("x-datadog-parent-id", "67667974448284343"),
            ("x-datadog-sampling-priority", "1"),
            ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6"),
        ],
    );
    let meta = incoming.context.and_then(|c| c.datadog).unwrap();
    assert_eq!(meta.last_parent, SpanId::new(0x30f9a2b4c5d6e7f8));
}

/// The scan reads W3C's and Datadog's lines in the same pass that finds which
/// formats are present; what it hands each codec must be what the codec finds
/// reading the map itself — with duplicates, unknown `x-datadog-` names, and
/// maps above the size at which the codecs switch to hashed lookups.
#[test]
fn the_scan_reads_what_each_codec_reads_on_its_own() {
    let tp = traceparent(TRACE, "01");
    let other = traceparent(OTHER_TRACE, "00");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("traceparent", &tp)],
        vec![("traceparent", &tp), ("tracestate", "a=1,dd=s:1")],
        vec![
            ("traceparent", &tp),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ],
        vec![("traceparent", &tp), ("traceparent", &other)],
        vec![("tracestate", "a=1")],
        vec![
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "2"),
            ("x-datadog-sampling-priority", "2"),
            ("x-datadog-origin", "rum"),
            ("x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=4bf92f3577b34da6"),
            ("x-datadog-foo", "ignored"),
        ],
        vec![
            ("x-datadog-trace-id", "1"),
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "2"),
        ],
        vec![("x-datadog-sampling-priority", "0")],
        vec![("x-datadog-parent-id", "2")],
    ];
    for pairs in cases {
        for filler in [0, crate::propagation::value::SCAN_MAX + 1] {
            let mut map = headers(&pairs);
            for i in 0..filler {
                map.insert(
                    http::HeaderName::try_from(format!("x-filler-{i}")).unwrap(),
                    http::HeaderValue::from_static("1"),
                );
            }
            let scanned = scan(&map);
            assert_eq!(
                w3c::extract_found(&map, scanned.w3c),
                w3c::extract(&map),
                "{pairs:?} + {filler}"
            );
            assert_eq!(
                datadog::extract_fields(&scanned.datadog),
                datadog::extract(&map),
                "{pairs:?} + {filler}"
            );
        }
    }
}
