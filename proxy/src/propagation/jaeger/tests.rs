use http::{HeaderMap, HeaderValue};

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const PARENT: &str = "a2fb4a1d1a96d312";
const VALUE: &str = "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1";

fn extracted(value: &str) -> Extracted {
    let mut h = HeaderMap::new();
    h.insert(&UBER_TRACE_ID, HeaderValue::from_str(value).unwrap());
    extract(&h)
}

fn context(value: &str) -> TraceContext {
    match extracted(value) {
        Extracted::Context(c) => c,
        other => panic!("expected a context from {value:?}, got {other:?}"),
    }
}

fn is_invalid(value: &str) -> bool {
    matches!(extracted(value), Extracted::Invalid(_))
}

/// The rule the codec names for a rejected `uber-trace-id`.
fn reason(value: &str) -> &'static str {
    match extracted(value) {
        Extracted::Invalid(invalid) => invalid.reason(),
        other => panic!("{value:?} should be invalid, got {other:?}"),
    }
}

fn new_context(sampling: Sampling) -> TraceContext {
    TraceContext::new(
        TraceId::new(0x4bf92f3577b34da6a3ce929d0e0e4736).unwrap(),
        SpanId::new(0x00f067aa0ba902b7).unwrap(),
        sampling,
    )
}

/// The value `inject` writes.
fn sent(c: &TraceContext, span_parent: Option<u64>, narrow_ids: bool) -> String {
    let mut h = HeaderMap::new();
    let out = Outgoing {
        context: c,
        span_parent: span_parent.and_then(SpanId::new),
        narrow_ids,
    };
    inject(&out, &mut h);
    h[&UBER_TRACE_ID].to_str().unwrap().to_owned()
}

// === extract ===

#[test]
fn value_is_parsed_with_the_callers_span_as_parent() {
    let c = context(VALUE);
    assert_eq!(c.trace_id.get(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(c.parent_id.get(), 0x00f067aa0ba902b7);
    assert_eq!(c.sampling, Sampling::Sampled);
    assert!(!c.debug && !c.narrow);
}

#[test]
fn short_unpadded_ids_are_padded_and_the_trace_marked_narrow() {
    let c = context("abc:def:0:1");
    assert_eq!((c.trace_id.get(), c.parent_id.get()), (0xabc, 0xdef));
    assert!(c.narrow);
}

#[test]
fn a_16_digit_trace_id_is_narrow_and_a_padded_32_digit_one_is_not() {
    assert!(context(&format!("a3ce929d0e0e4736:{SPAN}:0:1")).narrow);
    assert!(!context(&format!("0000000000000000a3ce929d0e0e4736:{SPAN}:0:1")).narrow);
}

#[test]
fn upper_case_hex_is_accepted() {
    assert_eq!(
        context(&VALUE.to_ascii_uppercase()).trace_id,
        new_context(Sampling::Sampled).trace_id
    );
}

#[test]
fn flags_0_is_a_decision_not_to_sample() {
    assert_eq!(
        context(&format!("{TRACE}:{SPAN}:0:0")).sampling,
        Sampling::NotSampled
    );
}

#[test]
fn debug_flag_is_read_as_sampled_not_as_a_force_signal() {
    for flags in ["2", "3", "03"] {
        let c = context(&format!("{TRACE}:{SPAN}:0:{flags}"));
        assert!(!c.debug && c.sampling.is_sampled(), "{flags}");
    }
}

#[test]
fn unused_flag_bits_are_ignored() {
    assert_eq!(
        context(&format!("{TRACE}:{SPAN}:0:08")).sampling,
        Sampling::NotSampled
    );
    assert!(!context(&format!("{TRACE}:{SPAN}:0:f9")).debug);
}

#[test]
fn parent_span_id_is_checked_but_not_kept() {
    assert_eq!(
        context(&format!("{TRACE}:{SPAN}:{PARENT}:1")),
        context(VALUE)
    );
    assert!(is_invalid(&format!("{TRACE}:{SPAN}:{PARENT}0:1")));
    assert!(is_invalid(&format!("{TRACE}:{SPAN}:xyz:1")));
}

#[test]
fn url_encoded_value_is_decoded() {
    for value in [
        format!("{TRACE}%3A{SPAN}%3A0%3A1"),
        format!("{TRACE}%3a{SPAN}%3a0%3a1"),
    ] {
        assert_eq!(context(&value), context(VALUE), "{value}");
    }
}

#[test]
fn broken_or_overlong_url_encoding_is_invalid() {
    for bad in [
        format!("{VALUE}%"),
        format!("{VALUE}%3"),
        format!("{TRACE}%3G{SPAN}%3A0%3A1"),
        format!("{TRACE}0%3A{SPAN}%3A{PARENT}%3A01"),
    ] {
        assert!(is_invalid(&bad), "{bad}");
    }
}

#[test]
fn zero_ids_are_invalid() {
    assert!(is_invalid(&format!("0:{SPAN}:0:1")));
    assert!(is_invalid(&format!("{}:{SPAN}:0:1", "0".repeat(32))));
    assert!(is_invalid(&format!("{TRACE}:0000000000000000:0:1")));
}

#[test]
fn missing_empty_or_extra_fields_are_invalid() {
    for bad in [
        String::new(),
        "1".into(),
        format!("{TRACE}:{SPAN}:0"),
        format!("{TRACE}:{SPAN}:0:"),
        format!("{TRACE}:{SPAN}::1"),
        format!("{TRACE}::0:1"),
        format!(":{SPAN}:0:1"),
        format!("{VALUE}:"),
        format!("{VALUE}:1"),
    ] {
        assert!(is_invalid(&bad), "{bad:?}");
    }
}

#[test]
fn overlong_or_non_hex_fields_are_invalid() {
    for bad in [
        format!("{TRACE}0:{SPAN}:0:1"),
        format!("{TRACE}:{SPAN}0:0:1"),
        format!("{TRACE}:{SPAN}:0:001"),
        format!("{TRACE}:{SPAN}:0:-1"),
        format!("4bf92f3577b34da6a3ce929d0e0e473g:{SPAN}:0:1"),
        format!("{TRACE}:{SPAN}:0:1 "),
    ] {
        assert!(is_invalid(&bad), "{bad:?}");
    }
}

#[test]
fn absent_header_is_absent() {
    assert_eq!(extract(&HeaderMap::new()), Extracted::Absent);
}

#[test]
fn two_headers_are_invalid() {
    let mut h = HeaderMap::new();
    h.append(&UBER_TRACE_ID, HeaderValue::from_static(VALUE));
    h.append(&UBER_TRACE_ID, HeaderValue::from_static(VALUE));
    assert_eq!(
        extract(&h),
        Extracted::Invalid(Invalid("uber-trace-id sent more than once (ambiguous)"))
    );
}

// === inject ===

#[test]
fn inject_sends_the_sidecar_span_with_the_caller_as_parent() {
    let c = new_context(Sampling::Sampled);
    assert_eq!(
        sent(&c, Some(0xa2fb4a1d1a96d312), false),
        format!("{TRACE}:{SPAN}:{PARENT}:1")
    );
}

#[test]
fn inject_without_a_span_parent_sends_0() {
    assert_eq!(
        sent(&new_context(Sampling::NotSampled), None, false),
        format!("{TRACE}:{SPAN}:0:0")
    );
}

#[test]
fn inject_debug_sends_flags_3() {
    let mut c = new_context(Sampling::NotSampled);
    c.debug = true;
    assert_eq!(sent(&c, None, false), format!("{TRACE}:{SPAN}:0:3"));
}

#[test]
fn inject_of_a_deferred_decision_sends_not_sampled() {
    assert_eq!(
        sent(&new_context(Sampling::Deferred), None, false),
        format!("{TRACE}:{SPAN}:0:0")
    );
}

#[test]
fn inject_narrow_writes_the_low_64_bits() {
    let c = new_context(Sampling::Sampled);
    assert_eq!(sent(&c, None, true), format!("a3ce929d0e0e4736:{SPAN}:0:1"));
}

#[test]
fn inject_replaces_an_existing_header_and_strip_keeps_baggage() {
    let c = new_context(Sampling::Sampled);
    let mut h = HeaderMap::new();
    h.append(&UBER_TRACE_ID, HeaderValue::from_static("stale"));
    h.append("uberctx-user", HeaderValue::from_static("alice"));
    inject(&Outgoing::of(&c), &mut h);
    assert_eq!(h.get_all(&UBER_TRACE_ID).iter().count(), 1);
    strip(&mut h);
    assert_eq!(
        h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
        ["uberctx-user"]
    );
}

#[test]
fn round_trips_through_the_context() {
    for value in [
        format!("{TRACE}:{SPAN}:{PARENT}:1"),
        format!("{TRACE}:{SPAN}:0:0"),
        format!("a3ce929d0e0e4736:{SPAN}:0:1"),
        format!("0000000000000000a3ce929d0e0e4736:{SPAN}:0:1"),
    ] {
        let c = context(&value);
        // The caller's parent is not in the context: the sidecar supplies it.
        let parent = value.contains(PARENT).then_some(0xa2fb4a1d1a96d312);
        assert_eq!(sent(&c, parent, c.narrow), value);
    }
}

#[test]
fn debug_flag_comes_back_as_plain_sampled() {
    let c = context(&format!("{TRACE}:{SPAN}:0:3"));
    assert_eq!(sent(&c, None, false), format!("{TRACE}:{SPAN}:0:1"));
}

// === robustness ===

#[test]
fn no_prefix_of_a_valid_value_panics_or_parses() {
    let plain = format!("{TRACE}:{SPAN}:{PARENT}:03");
    for full in [plain.clone(), plain.replace(':', "%3A")] {
        for end in 0..full.len() {
            let prefix = &full[..end];
            // Cutting the 2-digit flags to `0` leaves a valid value.
            let valid = end == full.len() - 1;
            assert_eq!(!is_invalid(prefix), valid, "{prefix:?}");
        }
    }
}

#[test]
fn narrowing_never_writes_an_all_zero_trace_id() {
    let mut c = new_context(Sampling::Sampled);
    c.trace_id = TraceId::new(1 << 64).unwrap();
    assert!(sent(&c, None, true).starts_with("00000000000000010000000000000000:"));
}

// === the reason a rejection names: one rule per family ===

#[test]
fn reason_field_count() {
    assert_eq!(
        reason(&format!("{TRACE}:{SPAN}:0")),
        "uber-trace-id is not trace-id:span-id:parent-span-id:flags"
    );
    assert_eq!(
        reason(&format!("{VALUE}:1")),
        "uber-trace-id is not trace-id:span-id:parent-span-id:flags"
    );
}

#[test]
fn reason_zero_ids() {
    assert_eq!(
        reason(&format!("0:{SPAN}:0:1")),
        "uber-trace-id trace-id is zero"
    );
    assert_eq!(
        reason(&format!("{TRACE}:0:0:1")),
        "uber-trace-id span-id is zero"
    );
}

#[test]
fn reason_hex_and_width() {
    assert_eq!(
        reason(&format!("{TRACE}0:{SPAN}:0:1")),
        "uber-trace-id trace-id is not 1 to 32 hex digits"
    );
    assert_eq!(
        reason(&format!("{TRACE}:{SPAN}g:0:1")),
        "uber-trace-id span-id is not 1 to 16 hex digits"
    );
    assert_eq!(
        reason(&format!("{TRACE}:{SPAN}:{PARENT}0:1")),
        "uber-trace-id parent-span-id is not 1 to 16 hex digits"
    );
    assert_eq!(
        reason(&format!("{TRACE}:{SPAN}:0:001")),
        "uber-trace-id flags is not 1 or 2 hex digits"
    );
}

#[test]
fn reason_broken_percent_escape() {
    assert_eq!(
        reason(&format!("{VALUE}%3")),
        "uber-trace-id has a '%' not followed by 2 hex digits"
    );
}
