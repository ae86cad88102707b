//! Reading `x-datadog-*`.

use super::*;

#[test]
fn datadog_headers_are_a_64_bit_context_with_its_meta() {
    let c = context(&dd_64_with(&[
        ("x-datadog-origin", "synthetics"),
        ("x-datadog-tags", "_dd.p.dm=-4,_dd.p.usr.id=baz64"),
    ]));
    assert_eq!(c.trace_id.get(), 1234567890123456789);
    assert_eq!(c.parent_id.get(), 987654321);
    assert_eq!(c.sampling, Sampling::Sampled);
    assert!(c.narrow && !c.debug);
    let expected = DatadogMeta {
        priority: Some(1),
        origin: Some("synthetics".into()),
        last_parent: SpanId::new(987654321),
        tags: tags(&[("dm", "-4"), ("usr.id", "baz64")]),
    };
    assert_eq!(meta(&c), &expected);
}

#[test]
fn datadog_tid_tag_supplies_the_high_64_bits() {
    let c = context(&dd_64_with(&[(
        "x-datadog-tags",
        "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-0",
    )]));
    assert_eq!(c.trace_id.high(), 0x640cfd8d00000000);
    assert_eq!(c.trace_id.low(), 1234567890123456789);
    assert!(!c.narrow);
    assert_eq!(meta(&c).tags, tags(&[("dm", "-0")]));
}

#[test]
fn datadog_malformed_tid_is_ignored_not_the_context() {
    for tid in [
        "640CFD8D00000000",
        "640cfd8d0000000",
        "640cfd8d000000000",
        "640cfd8d0000000g",
        "0000000000000000",
    ] {
        let tags_header = format!("_dd.p.tid={tid},_dd.p.dm=-4");
        let c = context(&dd_64_with(&[("x-datadog-tags", &tags_header)]));
        assert!(c.trace_id.is_64_bit() && c.narrow, "{tid}");
        assert_eq!(meta(&c).tags, tags(&[("dm", "-4")]), "{tid}");
    }
}

#[test]
fn datadog_priorities_below_one_drop_and_above_zero_keep() {
    for (priority, sampling) in [
        ("-1", Sampling::NotSampled),
        ("0", Sampling::NotSampled),
        ("1", Sampling::Sampled),
        ("2", Sampling::Sampled),
    ] {
        let c = context(&dd_64_with(&[("x-datadog-sampling-priority", priority)]));
        assert_eq!(c.sampling, sampling, "{priority}");
        assert_eq!(meta(&c).priority, priority.parse().ok(), "{priority}");
        assert!(!c.debug, "user keep is not debug");
    }
}

#[test]
fn datadog_absent_priority_defers_the_decision() {
    let mut h = headers(DD_64);
    h.remove(&SAMPLING_PRIORITY);
    let c = context(&h);
    assert_eq!(c.sampling, Sampling::Deferred);
    assert_eq!(meta(&c).priority, None);
}

#[test]
fn datadog_priority_without_ids_is_a_decision_only() {
    let h = headers(&[("x-datadog-sampling-priority", "2")]);
    let expected = Extracted::DecisionOnly {
        sampling: Sampling::Sampled,
        debug: false,
    };
    assert_eq!(extract(&h), expected);
}

#[test]
fn datadog_malformed_priority_is_invalid() {
    for bad in ["", "+1", " 1", "1.0", "keep", "128", "--1", "-"] {
        let h = dd_64_with(&[("x-datadog-sampling-priority", bad)]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)), "{bad:?}");
    }
}

#[test]
fn datadog_ids_must_be_non_zero_plain_decimal() {
    for bad in [
        "",
        "0",
        "+1",
        "-1",
        " 1",
        "1 ",
        "1_000",
        "0x1f",
        "1f",
        "18446744073709551616",
        "99999999999999999999",
        "1844674407370955161x",
        "x8446744073709551615",
        "000000000000000000001",
    ] {
        for name in ["x-datadog-trace-id", "x-datadog-parent-id"] {
            let h = dd_64_with(&[(name, bad)]);
            assert!(
                matches!(extract(&h), Extracted::Invalid(_)),
                "{name}: {bad:?}"
            );
        }
    }
}

#[test]
fn datadog_largest_u64_and_leading_zeros_are_valid_ids() {
    let c = context(&dd_64_with(&[
        ("x-datadog-trace-id", "18446744073709551615"),
        ("x-datadog-parent-id", "00000000000000000042"),
    ]));
    assert_eq!(c.trace_id.get(), u128::from(u64::MAX));
    assert_eq!(c.parent_id.get(), 42);
}

#[test]
fn datadog_one_id_without_the_other_is_invalid() {
    for id in ["x-datadog-trace-id", "x-datadog-parent-id"] {
        let h = headers(&[(id, "1"), ("x-datadog-sampling-priority", "1")]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)), "{id} alone");
    }
}

#[test]
fn datadog_without_ids_or_priority_is_absent() {
    assert_eq!(extract(&HeaderMap::new()), Extracted::Absent);
    let h = headers(&[
        ("x-datadog-origin", "rum"),
        ("x-datadog-tags", "_dd.p.dm=-4"),
    ]);
    assert_eq!(extract(&h), Extracted::Absent);
}

#[test]
fn datadog_id_or_priority_sent_twice_is_invalid() {
    for name in [&TRACE_ID, &PARENT_ID, &SAMPLING_PRIORITY] {
        let mut h = headers(DD_64);
        h.append(name.clone(), HeaderValue::from_static("1"));
        assert!(matches!(extract(&h), Extracted::Invalid(_)), "{name}");
    }
}

#[test]
fn datadog_tags_keep_only_dd_p_keys_trimmed_last_value_wins() {
    let c = context(&dd_64_with(&[(
        "x-datadog-tags",
        "_dd.p.dm=-4,other=1,_dd.p.=x,_dd.p.usr.id= a=b ,_dd.p.dm=-3",
    )]));
    assert_eq!(meta(&c).tags, tags(&[("dm", "-3"), ("usr.id", "a=b")]));
}

#[test]
fn datadog_malformed_tags_are_ignored_not_the_context() {
    for bad in [
        "_dd.p.dm",
        "_dd.p.dm=",
        "_dd.p.dm=-4,",
        "=x",
        " _dd.p.dm=-4",
        "_dd.p.dm=-4,,_dd.p.x=1",
    ] {
        let c = context(&dd_64_with(&[("x-datadog-tags", bad)]));
        assert_eq!(meta(&c).tags, [], "{bad:?}");
    }
}

/// `_dd.p.dm=-4,_dd.p.x=aaa…` of exactly `len` bytes.
fn tags_of_len(len: usize) -> String {
    let head = "_dd.p.dm=-4,_dd.p.x=";
    format!("{head}{}", "a".repeat(len - head.len()))
}

#[test]
fn datadog_tags_of_512_bytes_are_read() {
    let c = context(&dd_64_with(&[("x-datadog-tags", &tags_of_len(512))]));
    assert_eq!(meta(&c).tags.len(), 2);
}

#[test]
fn datadog_tags_over_512_bytes_are_ignored_whole() {
    let c = context(&dd_64_with(&[("x-datadog-tags", &tags_of_len(513))]));
    assert_eq!(meta(&c).tags, []);
    assert!(c.narrow);
}

#[test]
fn datadog_origin_is_kept_verbatim() {
    let c = context(&dd_64_with(&[(
        "x-datadog-origin",
        "synthetics-browser;a=b,c~d e",
    )]));
    assert_eq!(
        meta(&c).origin.as_deref(),
        Some("synthetics-browser;a=b,c~d e")
    );
}

// === the reason a rejection names: one rule per family ===

fn reason(h: &HeaderMap) -> &'static str {
    match extract(h) {
        Extracted::Invalid(invalid) => invalid.reason(),
        other => panic!("{h:?} should be invalid, got {other:?}"),
    }
}

#[test]
fn reason_zero_ids() {
    assert_eq!(
        reason(&dd_64_with(&[("x-datadog-trace-id", "0")])),
        "x-datadog-trace-id is zero"
    );
    assert_eq!(
        reason(&dd_64_with(&[("x-datadog-parent-id", "0")])),
        "x-datadog-parent-id is zero"
    );
}

#[test]
fn reason_not_plain_decimal() {
    for bad in ["0x1f", "18446744073709551616", ""] {
        assert_eq!(
            reason(&dd_64_with(&[("x-datadog-trace-id", bad)])),
            "x-datadog-trace-id is not 1 to 20 decimal digits fitting a u64",
            "{bad:?}"
        );
    }
    assert_eq!(
        reason(&dd_64_with(&[("x-datadog-sampling-priority", "128")])),
        "x-datadog-sampling-priority is not an integer from -128 to 127"
    );
}

#[test]
fn reason_sent_twice_or_one_id_alone() {
    let mut h = headers(DD_64);
    h.append(PARENT_ID.clone(), HeaderValue::from_static("1"));
    assert_eq!(
        reason(&h),
        "x-datadog-parent-id sent more than once (ambiguous)"
    );
    assert_eq!(
        reason(&headers(&[("x-datadog-parent-id", "1")])),
        "x-datadog-parent-id without x-datadog-trace-id"
    );
}
