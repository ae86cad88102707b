use http::{HeaderMap, HeaderValue};

use super::*;

const SPEC_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

use crate::test_support::headers;

fn context(pairs: &[(&str, &str)]) -> TraceContext {
    match extract(&headers(pairs)) {
        Extracted::Context(c) => c,
        other => panic!("expected a context, got {other:?}"),
    }
}

fn is_invalid(traceparent: &str) -> bool {
    matches!(
        extract(&headers(&[("traceparent", traceparent)])),
        Extracted::Invalid(_)
    )
}

/// The rule the codec names for a rejected `traceparent`.
fn reason(traceparent: &str) -> &'static str {
    match extract(&headers(&[("traceparent", traceparent)])) {
        Extracted::Invalid(invalid) => invalid.reason(),
        other => panic!("{traceparent:?} should be invalid, got {other:?}"),
    }
}

#[test]
fn spec_example_is_parsed() {
    let c = context(&[("traceparent", SPEC_EXAMPLE)]);
    assert_eq!(c.trace_id.get(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(c.parent_id.get(), 0x00f067aa0ba902b7);
    assert_eq!(c.sampling, Sampling::Sampled);
    assert!(!c.random);
}

#[test]
fn flags_03_are_sampled_and_random() {
    let c = context(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
    )]);
    assert!(c.sampling.is_sampled() && c.random);
}

#[test]
fn flags_00_are_not_sampled() {
    let c = context(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    assert_eq!(c.sampling, Sampling::NotSampled);
}

#[test]
fn absent_traceparent_is_absent() {
    assert_eq!(extract(&HeaderMap::new()), Extracted::Absent);
}

#[test]
fn all_zero_ids_are_invalid() {
    assert!(is_invalid(
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
    ));
    assert!(is_invalid(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
    ));
}

#[test]
fn uppercase_hex_is_invalid() {
    assert!(is_invalid(
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
    ));
}

#[test]
fn wrong_lengths_and_separators_are_invalid() {
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "",
    ] {
        assert!(is_invalid(bad), "{bad:?}");
    }
}

#[test]
fn empty_flags_field_is_invalid_not_a_panic() {
    assert!(is_invalid(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
    ));
}

#[test]
fn version_ff_is_invalid() {
    assert!(is_invalid(
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ));
}

#[test]
fn future_version_with_extra_fields_is_read_as_version_00() {
    let c = context(&[(
        "traceparent",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
    )]);
    assert_eq!(c.parent_id.get(), 0x00f067aa0ba902b7);
    assert!(c.sampling.is_sampled());
}

#[test]
fn future_version_without_separator_after_flags_is_invalid() {
    assert!(is_invalid(
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"
    ));
}

#[test]
fn two_traceparent_headers_are_invalid() {
    let mut h = headers(&[("traceparent", SPEC_EXAMPLE)]);
    h.append(TRACEPARENT.clone(), HeaderValue::from_static(SPEC_EXAMPLE));
    assert_eq!(
        extract(&h),
        Extracted::Invalid(Invalid("traceparent sent more than once (ambiguous)"))
    );
}

#[test]
fn invalid_tracestate_drops_only_the_tracestate() {
    let c = context(&[("traceparent", SPEC_EXAMPLE), ("tracestate", "a=1,B=2")]);
    assert!(c.tracestate.is_empty());
}

#[test]
fn inject_writes_version_00_with_sampled_and_random_flags() {
    let mut c = context(&[
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
        ),
        ("tracestate", "rojo=1"),
    ]);
    c.parent_id = SpanId::new(0xabc).unwrap();
    let mut out = HeaderMap::new();
    inject(&Outgoing::of(&c), &mut out);
    assert_eq!(
        out[&TRACEPARENT],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-03"
    );
    assert_eq!(out[&TRACESTATE], "rojo=1");
}

#[test]
fn inject_of_a_context_without_tracestate_removes_a_stale_one() {
    let c = context(&[("traceparent", SPEC_EXAMPLE)]);
    let mut out = headers(&[("tracestate", "stale=1")]);
    inject(&Outgoing::of(&c), &mut out);
    assert!(!out.contains_key(&TRACESTATE));
}

#[test]
fn traceparent_round_trips() {
    let c = context(&[("traceparent", SPEC_EXAMPLE)]);
    let mut out = HeaderMap::new();
    inject(&Outgoing::of(&c), &mut out);
    assert_eq!(out[&TRACEPARENT], SPEC_EXAMPLE);
}

// === the reason a rejection names: one rule per family ===

#[test]
fn reason_version_ff_is_forbidden() {
    assert_eq!(
        reason("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "traceparent version ff is forbidden"
    );
}

#[test]
fn reason_length_and_delimiters() {
    assert_eq!(
        reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
        "traceparent is shorter than 55 characters"
    );
    assert_eq!(
        reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"),
        "traceparent version 00 is not exactly 55 characters"
    );
    assert_eq!(
        reason("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "traceparent fields are not separated by '-' at positions 2, 35 and 52"
    );
    assert_eq!(
        reason("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),
        "traceparent of a future version has no '-' after trace-flags"
    );
}

#[test]
fn reason_zero_ids() {
    assert_eq!(
        reason("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        "trace-id is all zeros"
    );
    assert_eq!(
        reason("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
        "parent-id is all zeros"
    );
}

#[test]
fn reason_upper_case_hex() {
    assert_eq!(
        reason("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        "trace-id is not 32 lower-case hex digits"
    );
    assert_eq!(
        reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
        "parent-id is not 16 lower-case hex digits"
    );
    assert_eq!(
        reason("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "traceparent version is not 2 lower-case hex digits"
    );
    assert_eq!(
        reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x"),
        "trace-flags is not 2 lower-case hex digits"
    );
}

/// The request's headers found by one pass (a small map) and by hashed
/// lookups (a large one) read the same: one line, two lines, none.
#[test]
fn small_and_large_maps_read_the_same() {
    let mut small = headers(&[("traceparent", SPEC_EXAMPLE), ("tracestate", "a=1")]);
    small.append(TRACESTATE.clone(), HeaderValue::from_static("b=2,a=3"));
    let mut large = small.clone();
    for i in 0..=SCAN_MAX {
        let name = HeaderName::try_from(format!("x-filler-{i}")).unwrap();
        large.insert(name, HeaderValue::from_static("v"));
    }
    assert!(small.keys_len() <= SCAN_MAX && large.keys_len() > SCAN_MAX);
    for map in [&small, &large] {
        let Extracted::Context(c) = extract(map) else {
            panic!("expected a context");
        };
        assert_eq!(c.tracestate.header_value().unwrap(), "a=1,b=2");
        let mut twice = map.clone();
        twice.append(TRACEPARENT.clone(), HeaderValue::from_static(SPEC_EXAMPLE));
        assert_eq!(extract(&twice), Extracted::Invalid(SENT_TWICE));
        let mut none = map.clone();
        none.remove(&TRACEPARENT);
        assert_eq!(extract(&none), Extracted::Absent);
    }
}
