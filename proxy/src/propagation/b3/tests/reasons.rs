//! The reason a rejection names: one rule per family, for both encodings.

use super::*;

fn reason(extracted: Extracted) -> &'static str {
    match extracted {
        Extracted::Invalid(invalid) => invalid.reason(),
        other => panic!("should be invalid, got {other:?}"),
    }
}

fn multi_reason(pairs: &[(&'static str, String)]) -> &'static str {
    reason(extract_multi(&multi_headers(pairs)))
}

fn single_reason(value: &str) -> &'static str {
    reason(extract_single(&headers(&[("b3", value)])))
}

#[test]
fn reason_multi_trace_id_length_and_hex() {
    for bad in [&MULTI_TRACE[1..], "463ac35c9f6413ad48485a3953bb612g"] {
        assert_eq!(
            multi_reason(&multi(bad, MULTI_SPAN)),
            "x-b3-traceid is not 16 or 32 hex digits",
            "{bad}"
        );
    }
    assert_eq!(
        multi_reason(&multi(MULTI_TRACE, &MULTI_SPAN[1..])),
        "x-b3-spanid is not 16 hex digits"
    );
}

#[test]
fn reason_multi_zero_ids() {
    assert_eq!(
        multi_reason(&multi("0000000000000000", MULTI_SPAN)),
        "x-b3-traceid is all zeros"
    );
    assert_eq!(
        multi_reason(&multi(MULTI_TRACE, "0000000000000000")),
        "x-b3-spanid is all zeros"
    );
    let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
    pairs.push(("x-b3-parentspanid", "0000000000000000".into()));
    assert_eq!(multi_reason(&pairs), "x-b3-parentspanid is all zeros");
}

#[test]
fn reason_multi_one_id_without_the_other() {
    assert_eq!(
        reason(extract_multi(&headers(&[("x-b3-traceid", MULTI_TRACE)]))),
        "x-b3-traceid without x-b3-spanid"
    );
    assert_eq!(
        reason(extract_multi(&headers(&[(
            "x-b3-parentspanid",
            MULTI_PARENT
        )]))),
        "x-b3-parentspanid without x-b3-traceid and x-b3-spanid"
    );
}

#[test]
fn reason_multi_sampling_state() {
    let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
    pairs.push(("x-b3-sampled", "yes".into()));
    assert_eq!(
        multi_reason(&pairs),
        "x-b3-sampled is none of 0, 1, true, false"
    );
    let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
    pairs.push(("x-b3-flags", "2".into()));
    assert_eq!(multi_reason(&pairs), "x-b3-flags is neither 0 nor 1");
}

#[test]
fn reason_single_fields_and_delimiters() {
    assert_eq!(
        single_reason(&format!("{SINGLE}-")),
        "b3 has more than 4 fields"
    );
    assert_eq!(
        single_reason(&format!("{TRACE}-{SPAN}-2")),
        "b3 sampling state is not 0, 1 or d"
    );
    assert_eq!(
        single_reason("true"),
        "b3 with one field is not a sampling state 0, 1 or d"
    );
    assert_eq!(
        single_reason(&format!("{TRACE}-{SPAN}x")),
        "b3 span id is not 16 hex digits"
    );
}

#[test]
fn reason_single_zero_ids() {
    assert_eq!(
        single_reason(&format!("00000000000000000000000000000000-{SPAN}")),
        "b3 trace id is all zeros"
    );
    assert_eq!(
        single_reason(&format!("{TRACE}-0000000000000000")),
        "b3 span id is all zeros"
    );
    assert_eq!(
        single_reason(&format!("{TRACE}-{SPAN}-1-0000000000000000")),
        "b3 parent span id is all zeros"
    );
}
