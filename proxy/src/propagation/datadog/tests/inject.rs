//! Writing `x-datadog-*`, and back again.

use super::*;

#[test]
fn datadog_inject_writes_low_bits_and_the_sidecar_span_in_decimal() {
    let mut c = context(&dd_64_with(&[(
        "x-datadog-tags",
        "_dd.p.tid=640cfd8d00000000",
    )]));
    c.parent_id = SpanId::new(42).unwrap();
    let out = injected(&c);
    assert_eq!(header(&out, &TRACE_ID), Some("1234567890123456789"));
    assert_eq!(header(&out, &PARENT_ID), Some("42"));
    assert_eq!(header(&out, &TAGS), Some("_dd.p.tid=640cfd8d00000000"));
}

#[test]
fn datadog_inject_puts_tid_first_then_the_other_tags() {
    let id = TraceId::new(0xabc << 64 | 7).unwrap();
    let mut c = TraceContext::new(id, SpanId::new(1).unwrap(), Sampling::Sampled);
    c.datadog = Some(Box::new(DatadogMeta {
        tags: tags(&[("dm", "-4"), ("usr.id", "baz64")]),
        ..DatadogMeta::default()
    }));
    let out = injected(&c);
    assert_eq!(
        header(&out, &TAGS),
        Some("_dd.p.tid=0000000000000abc,_dd.p.dm=-4,_dd.p.usr.id=baz64")
    );
}

/// A context whose Datadog priority is `meta` and whose decision is `sampling`.
fn decided(meta: Option<i8>, sampling: Sampling, debug: bool) -> Option<String> {
    let id = TraceId::new(7).unwrap();
    let mut c = TraceContext::new(id, SpanId::new(1).unwrap(), sampling);
    c.debug = debug;
    c.datadog = Some(Box::new(DatadogMeta {
        priority: meta,
        ..DatadogMeta::default()
    }));
    header(&injected(&c), &SAMPLING_PRIORITY).map(str::to_owned)
}

#[test]
fn datadog_inject_keeps_a_priority_that_agrees_with_the_decision() {
    assert_eq!(
        decided(Some(2), Sampling::Sampled, false).as_deref(),
        Some("2")
    );
    assert_eq!(
        decided(Some(-1), Sampling::NotSampled, false).as_deref(),
        Some("-1")
    );
    assert_eq!(
        decided(Some(-1), Sampling::Deferred, false).as_deref(),
        Some("-1")
    );
}

#[test]
fn datadog_inject_replaces_a_priority_that_disagrees_with_the_decision() {
    assert_eq!(
        decided(Some(2), Sampling::NotSampled, false).as_deref(),
        Some("0")
    );
    assert_eq!(
        decided(Some(-1), Sampling::Sampled, false).as_deref(),
        Some("1")
    );
    assert_eq!(
        decided(None, Sampling::Sampled, false).as_deref(),
        Some("1")
    );
}

#[test]
fn datadog_inject_writes_user_keep_for_debug() {
    assert_eq!(
        decided(Some(1), Sampling::Sampled, true).as_deref(),
        Some("2")
    );
    assert_eq!(
        decided(None, Sampling::Deferred, true).as_deref(),
        Some("2")
    );
}

#[test]
fn datadog_inject_omits_the_priority_when_deferred_without_one() {
    assert_eq!(decided(None, Sampling::Deferred, false), None);
}

#[test]
fn datadog_inject_replaces_stale_datadog_headers() {
    let c = TraceContext::new(
        TraceId::new(7).unwrap(),
        SpanId::new(1).unwrap(),
        Sampling::Deferred,
    );
    let mut out = dd_64_with(&[
        ("x-datadog-origin", "rum"),
        ("x-datadog-tags", "_dd.p.dm=-4"),
    ]);
    inject(&Outgoing::of(&c), &mut out);
    assert_eq!(header(&out, &TRACE_ID), Some("7"));
    assert_eq!(header(&out, &PARENT_ID), Some("1"));
    assert!(!out.contains_key(&SAMPLING_PRIORITY));
    assert!(!out.contains_key(&ORIGIN));
    assert!(!out.contains_key(&TAGS));
}

#[test]
fn datadog_inject_leaves_out_tags_that_would_pass_512_bytes() {
    let id = TraceId::new(0xabc << 64 | 7).unwrap();
    let mut c = TraceContext::new(id, SpanId::new(1).unwrap(), Sampling::Sampled);
    let long = "a".repeat(500);
    c.datadog = Some(Box::new(DatadogMeta {
        tags: tags(&[("big", &long), ("dm", "-4")]),
        ..DatadogMeta::default()
    }));
    let out = injected(&c);
    let written = header(&out, &TAGS).unwrap();
    assert_eq!(written, "_dd.p.tid=0000000000000abc,_dd.p.dm=-4");
    assert!(written.len() <= MAX_TAGS_LEN);
}

#[test]
fn datadog_strip_removes_every_datadog_header() {
    let mut h = dd_64_with(&[
        ("x-datadog-origin", "rum"),
        ("x-datadog-tags", "_dd.p.dm=-4"),
    ]);
    h.insert("other", HeaderValue::from_static("1"));
    strip(&mut h);
    assert_eq!(h.len(), 1);
}

#[test]
fn datadog_headers_round_trip_through_the_model() {
    let sent = dd_64_with(&[
        ("x-datadog-sampling-priority", "-1"),
        ("x-datadog-origin", "synthetics"),
        (
            "x-datadog-tags",
            "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4,_dd.p.usr.id=baz64",
        ),
    ]);
    assert_eq!(injected(&context(&sent)), sent);
}

#[test]
fn datadog_every_prefix_of_valid_headers_is_handled() {
    let full = [
        ("x-datadog-trace-id", "18446744073709551615"),
        ("x-datadog-parent-id", "987654321"),
        ("x-datadog-sampling-priority", "-1"),
        ("x-datadog-origin", "synthetics"),
        ("x-datadog-tags", "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4"),
    ];
    for (name, value) in full {
        for end in 0..=value.len() {
            let _ = extract(&dd_64_with(&[(name, &value[..end])]));
        }
    }
}

#[test]
fn datadog_non_ascii_bytes_are_handled() {
    for name in [&TRACE_ID, &PARENT_ID, &SAMPLING_PRIORITY, &ORIGIN, &TAGS] {
        let mut h = headers(DD_64);
        h.insert(name.clone(), HeaderValue::from_bytes(b"1\xff\x80").unwrap());
        let _ = extract(&h);
    }
}

#[test]
fn datadog_inject_writes_nothing_for_a_trace_id_with_zero_low_bits() {
    let c = TraceContext::new(
        TraceId::new(1 << 64).unwrap(),
        SpanId::new(1).unwrap(),
        Sampling::Sampled,
    );
    let mut out = HeaderMap::new();
    out.insert(TRACE_ID.clone(), HeaderValue::from_static("7"));
    inject(&Outgoing::of(&c), &mut out);
    assert!(
        out.is_empty(),
        "x-datadog-trace-id: 0 would be unreadable: {out:?}"
    );
}
