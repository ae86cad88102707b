//! The `dd=` tracestate member, and Datadog → W3C → Datadog.

use super::*;
use crate::propagation::{w3c, TraceState};

/// ddtrace's documented example (dd-trace-py `_TraceContext`).
const PY_EXAMPLE: &str = "s:2;o:rum;t.dm:-4;t.usr.id:baz64";

fn origin_only(origin: &str) -> DatadogMeta {
    DatadogMeta {
        origin: Some(origin.into()),
        ..DatadogMeta::default()
    }
}

fn member(meta: &DatadogMeta) -> String {
    tracestate_member(meta, Sampling::Deferred).expect("a member")
}

/// Whether `value` is accepted as a tracestate value.
fn is_valid_tracestate_value(value: &str) -> bool {
    TraceState::default().set_front("dd", value)
}

#[test]
fn datadog_member_documented_example_is_read() {
    let meta = from_tracestate_member(PY_EXAMPLE);
    let expected = DatadogMeta {
        priority: Some(2),
        origin: Some("rum".into()),
        last_parent: None,
        tags: tags(&[("dm", "-4"), ("usr.id", "baz64")]),
    };
    assert_eq!(meta, expected);
}

#[test]
fn datadog_member_documented_example_is_written_back_unchanged() {
    let meta = from_tracestate_member(PY_EXAMPLE);
    assert_eq!(
        tracestate_member(&meta, Sampling::Sampled).as_deref(),
        Some(PY_EXAMPLE)
    );
}

#[test]
fn datadog_member_p_is_the_last_datadog_span() {
    let meta = from_tracestate_member("p:00f067aa0ba902b7;s:2;o:rum");
    assert_eq!(meta.last_parent, SpanId::new(0x00f067aa0ba902b7));
}

#[test]
fn datadog_member_writes_s_o_p_then_tags() {
    let meta = DatadogMeta {
        priority: Some(1),
        origin: Some("synthetics".into()),
        last_parent: SpanId::new(0xab),
        tags: tags(&[("dm", "-4"), ("tid", "640cfd8d00000000")]),
    };
    assert_eq!(
        tracestate_member(&meta, Sampling::Sampled).as_deref(),
        Some("s:1;o:synthetics;p:00000000000000ab;t.dm:-4")
    );
}

#[test]
fn datadog_member_ignores_unknown_keys_and_malformed_parts() {
    let meta = from_tracestate_member(
        "x:1;s:keep;o:;p:00F067AA0BA902B7;p:0000000000000000;t.:v;t.tid:640cfd8d00000000;\
         garbage;;t.dm:-4;s:1;p:123",
    );
    let expected = DatadogMeta {
        priority: Some(1),
        tags: tags(&[("dm", "-4")]),
        ..DatadogMeta::default()
    };
    assert_eq!(meta, expected);
}

#[test]
fn datadog_member_tag_values_may_contain_colons() {
    let meta = from_tracestate_member("t.url:http://x");
    assert_eq!(meta.tags, tags(&[("url", "http://x")]));
}

#[test]
fn datadog_member_priority_follows_a_disagreeing_decision() {
    let meta = DatadogMeta {
        priority: Some(2),
        ..DatadogMeta::default()
    };
    assert_eq!(
        tracestate_member(&meta, Sampling::NotSampled).as_deref(),
        Some("s:0")
    );
    assert_eq!(
        tracestate_member(&meta, Sampling::Sampled).as_deref(),
        Some("s:2")
    );
}

#[test]
fn datadog_member_of_nothing_is_none() {
    assert_eq!(
        tracestate_member(&DatadogMeta::default(), Sampling::Deferred),
        None
    );
}

#[test]
fn datadog_origin_equals_becomes_tilde_and_back() {
    let written = member(&origin_only("a=b"));
    assert_eq!(written, "o:a~b");
    assert_eq!(
        from_tracestate_member(&written).origin.as_deref(),
        Some("a=b")
    );
}

#[test]
fn datadog_origin_separators_spaces_and_non_ascii_become_underscores() {
    assert_eq!(member(&origin_only("a,b;c~d e")), "o:a_b_c_d_e");
    assert_eq!(member(&origin_only("x\u{e9}\u{e8}\ty")), "o:x_y");
}

#[test]
fn datadog_tag_values_are_escaped_like_ddtrace() {
    let meta = DatadogMeta {
        tags: tags(&[("v", "a=b,c;d~e f\u{7f}\u{1}g")]),
        ..DatadogMeta::default()
    };
    assert_eq!(member(&meta), "t.v:a~b_c_d_e f_g");
}

#[test]
fn datadog_tag_names_lose_separators() {
    let meta = DatadogMeta {
        tags: tags(&[("a,b=c d;e:f", "1")]),
        ..DatadogMeta::default()
    };
    assert_eq!(member(&meta), "t.a_b_c_d_e_f:1");
}

#[test]
fn datadog_member_is_always_a_valid_tracestate_value() {
    let awkward = DatadogMeta {
        priority: Some(-1),
        origin: Some(" o=r,i;g~in \u{0} ".into()),
        last_parent: SpanId::new(u64::MAX),
        tags: tags(&[(" k=,", " v=, "), ("x", "  "), ("y", "z ")]),
    };
    let written = tracestate_member(&awkward, Sampling::NotSampled).unwrap();
    assert!(is_valid_tracestate_value(&written), "{written:?}");
}

#[test]
fn datadog_member_leaves_out_tags_that_would_pass_256_characters() {
    let meta = DatadogMeta {
        priority: Some(1),
        tags: tags(&[("dm", "-4"), ("big", &"a".repeat(250)), ("ts", "02")]),
        ..DatadogMeta::default()
    };
    let written = tracestate_member(&meta, Sampling::Sampled).unwrap();
    assert_eq!(written, "s:1;t.dm:-4;t.ts:02");
    assert!(format!("dd={written}").len() <= 256);
}

#[test]
fn datadog_every_prefix_of_a_member_is_handled() {
    let full = "s:-1;o:synthetics~x;p:00f067aa0ba902b7;t.dm:-4;t.usr.id:baz64";
    for end in 0..=full.len() {
        let _ = from_tracestate_member(&full[..end]);
    }
}

// === Datadog → W3C → Datadog ===

/// Sends `dd` through a W3C hop (traceparent + `dd=` member) and back to Datadog.
fn through_w3c(dd: &HeaderMap) -> HeaderMap {
    let Extracted::Context(mut c) = extract(dd) else {
        panic!("expected a Datadog context");
    };
    let meta = c.datadog.take().unwrap();
    let written = tracestate_member(&meta, c.sampling).unwrap();
    assert!(c.tracestate.set_front("dd", &written));
    let mut w3c_headers = HeaderMap::new();
    w3c::inject(&outgoing(&c), &mut w3c_headers);

    let Extracted::Context(back) = w3c::extract(&w3c_headers) else {
        panic!("expected a W3C context");
    };
    let mut out = HeaderMap::new();
    inject(&outgoing(&back), &mut out);
    out
}

#[test]
fn datadog_high_bits_round_trip_through_tracestate() {
    let sent = headers(&[
        ("x-datadog-trace-id", "1234567890123456789"),
        ("x-datadog-parent-id", "987654321"),
        ("x-datadog-sampling-priority", "1"),
        ("x-datadog-tags", "_dd.p.tid=640cfd8d00000000"),
    ]);
    assert_eq!(through_w3c(&sent), sent);
}

#[test]
fn datadog_round_trip_through_tracestate_loses_nothing() {
    for priority in ["-1", "0", "1", "2"] {
        let sent = headers(&[
            ("x-datadog-trace-id", "1234567890123456789"),
            ("x-datadog-parent-id", "987654321"),
            ("x-datadog-sampling-priority", priority),
            ("x-datadog-origin", "synthetics-browser"),
            (
                "x-datadog-tags",
                "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4,_dd.p.usr.id=a=b c,_dd.p.ts=02",
            ),
        ]);
        assert_eq!(through_w3c(&sent), sent, "priority {priority}");
    }
}

#[test]
fn datadog_last_parent_survives_the_w3c_hop() {
    let meta = from_tracestate_member(&member(&DatadogMeta {
        last_parent: SpanId::new(987654321),
        ..DatadogMeta::default()
    }));
    assert_eq!(meta.last_parent, SpanId::new(987654321));
}

#[test]
fn a_long_origin_never_pushes_out_the_last_parent() {
    let meta = DatadogMeta {
        origin: Some("a".repeat(240)),
        last_parent: SpanId::new(0x676622),
        ..DatadogMeta::default()
    };
    let member = tracestate_member(&meta, Sampling::Sampled).unwrap();
    assert_eq!(
        from_tracestate_member(&member).last_parent,
        meta.last_parent,
        "{member}"
    );
}
