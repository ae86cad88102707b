use super::*;

// === extract ===

#[test]
fn spec_example_is_parsed_with_the_callers_span_as_parent() {
    let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
    pairs.push(("X-B3-ParentSpanId", MULTI_PARENT.into()));
    pairs.push(("X-B3-Sampled", "1".into()));
    let c = context(extract_multi(&multi_headers(&pairs)));
    assert_eq!(c.trace_id.get(), 0x463ac35c9f6413ad48485a3953bb6124);
    assert_eq!(c.parent_id.get(), 0xa2fb4a1d1a96d312);
    assert_eq!(c.sampling, Sampling::Sampled);
    assert!(!c.debug && !c.narrow);
}

#[test]
fn trace_id_of_16_digits_is_padded_and_marked_narrow() {
    let c = context(extract_multi(&multi_headers(&multi(
        "48485a3953bb6124",
        MULTI_SPAN,
    ))));
    assert_eq!(c.trace_id.get(), 0x48485a3953bb6124);
    assert!(c.narrow);
}

#[test]
fn upper_case_hex_is_accepted() {
    let c = context(extract_multi(&multi_headers(&multi(
        "463AC35C9F6413AD48485A3953BB6124",
        "A2FB4A1D1A96D312",
    ))));
    assert_eq!(c.parent_id.get(), 0xa2fb4a1d1a96d312);
}

#[test]
fn without_sampled_defers() {
    let c = context(extract_multi(&multi_headers(&multi(
        MULTI_TRACE,
        MULTI_SPAN,
    ))));
    assert_eq!(c.sampling, Sampling::Deferred);
}

#[test]
fn legacy_true_and_false_are_accepted() {
    for (v, want) in [("true", Sampling::Sampled), ("false", Sampling::NotSampled)] {
        let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
        pairs.push(("x-b3-sampled", v.into()));
        assert_eq!(
            context(extract_multi(&multi_headers(&pairs))).sampling,
            want
        );
    }
}

#[test]
fn flags_1_is_debug_and_wins_over_a_deny() {
    let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
    pairs.push(("x-b3-flags", "1".into()));
    pairs.push(("x-b3-sampled", "0".into()));
    let c = context(extract_multi(&multi_headers(&pairs)));
    assert!(c.debug);
    assert_eq!(c.sampling, Sampling::Sampled);
}

#[test]
fn sampling_state_without_ids_is_a_decision_only() {
    let deny = headers(&[("x-b3-sampled", "0")]);
    let debug = headers(&[("x-b3-flags", "1")]);
    let deny_want = Extracted::DecisionOnly {
        sampling: Sampling::NotSampled,
        debug: false,
    };
    let debug_want = Extracted::DecisionOnly {
        sampling: Sampling::Sampled,
        debug: true,
    };
    assert_eq!(extract_multi(&deny), deny_want);
    assert_eq!(extract_multi(&debug), debug_want);
}

#[test]
fn without_b3_headers_is_absent() {
    assert_eq!(extract_multi(&headers(&[("b3", "0")])), Extracted::Absent);
}

#[test]
fn partial_ids_are_invalid() {
    for pairs in [
        vec![("x-b3-traceid", MULTI_TRACE)],
        vec![("x-b3-spanid", MULTI_SPAN), ("x-b3-sampled", "1")],
        vec![("x-b3-parentspanid", MULTI_PARENT)],
    ] {
        assert!(
            matches!(extract_multi(&headers(&pairs)), Extracted::Invalid(_)),
            "{pairs:?}"
        );
    }
}

#[test]
fn malformed_or_zero_ids_are_invalid() {
    let zero_parent = || {
        let mut p = multi(MULTI_TRACE, MULTI_SPAN);
        p.push(("x-b3-parentspanid", "0000000000000000".into()));
        p
    };
    for pairs in [
        multi(&MULTI_TRACE[1..], MULTI_SPAN),
        multi(&format!("{MULTI_TRACE}0"), MULTI_SPAN),
        multi(&MULTI_TRACE[..17], MULTI_SPAN),
        multi(MULTI_TRACE, &MULTI_SPAN[1..]),
        multi(MULTI_TRACE, &format!("{MULTI_SPAN}0")),
        multi("463ac35c9f6413ad48485a3953bb612g", MULTI_SPAN),
        multi("00000000000000000000000000000000", MULTI_SPAN),
        multi(MULTI_TRACE, "0000000000000000"),
        multi("", MULTI_SPAN),
        zero_parent(),
    ] {
        let h = multi_headers(&pairs);
        assert!(
            matches!(extract_multi(&h), Extracted::Invalid(_)),
            "{pairs:?}"
        );
    }
}

#[test]
fn unknown_sampled_or_flags_values_are_invalid() {
    for (name, v) in [
        ("x-b3-sampled", "2"),
        ("x-b3-sampled", "yes"),
        ("x-b3-flags", "2"),
    ] {
        let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
        pairs.push((name, v.into()));
        assert!(
            matches!(extract_multi(&multi_headers(&pairs)), Extracted::Invalid(_)),
            "{v}"
        );
    }
}

#[test]
fn first_value_of_a_repeated_header_wins() {
    let mut h = multi_headers(&multi(MULTI_TRACE, MULTI_SPAN));
    h.append(&X_B3_SAMPLED, HeaderValue::from_static("1"));
    h.append(&X_B3_SAMPLED, HeaderValue::from_static("0"));
    assert_eq!(context(extract_multi(&h)).sampling, Sampling::Sampled);
}

// === inject ===

#[test]
fn inject_sends_the_sidecar_span_with_the_caller_as_parent() {
    let c = new_context(Sampling::Sampled);
    let h = written(inject_multi, &outgoing(&c, Some(PARENT), false));
    assert_eq!(h[&X_B3_TRACE_ID], TRACE);
    assert_eq!(h[&X_B3_SPAN_ID], SPAN);
    assert_eq!(h[&X_B3_PARENT_SPAN_ID], PARENT);
    assert_eq!(h[&X_B3_SAMPLED], "1");
    assert!(!h.contains_key(&X_B3_FLAGS));
}

#[test]
fn inject_debug_sends_flags_instead_of_sampled() {
    let mut c = new_context(Sampling::Sampled);
    c.debug = true;
    let h = written(inject_multi, &outgoing(&c, None, false));
    assert_eq!(h[&X_B3_FLAGS], "1");
    assert!(!h.contains_key(&X_B3_SAMPLED));
}

#[test]
fn inject_of_a_deferred_decision_omits_sampled() {
    let h = written(
        inject_multi,
        &outgoing(&new_context(Sampling::Deferred), None, false),
    );
    assert!(!h.contains_key(&X_B3_SAMPLED) && !h.contains_key(&X_B3_FLAGS));
}

#[test]
fn inject_narrow_writes_the_low_64_bits() {
    let h = written(
        inject_multi,
        &outgoing(&new_context(Sampling::Sampled), None, true),
    );
    assert_eq!(h[&X_B3_TRACE_ID], "64fe8b2a57d3eff7");
}

#[test]
fn inject_replaces_stale_headers() {
    let mut h = headers(&[("x-b3-parentspanid", MULTI_PARENT), ("x-b3-flags", "1")]);
    inject_multi(
        &outgoing(&new_context(Sampling::NotSampled), None, false),
        &mut h,
    );
    assert_eq!(h.len(), 3);
    assert_eq!(h[&X_B3_SAMPLED], "0");
}

#[test]
fn round_trips_through_the_context() {
    for (trace, state) in [
        (MULTI_TRACE, Some(("x-b3-sampled", "1"))),
        (MULTI_TRACE, Some(("x-b3-sampled", "0"))),
        (MULTI_TRACE, Some(("x-b3-flags", "1"))),
        ("48485a3953bb6124", None),
        ("000000000000000048485a3953bb6124", None),
    ] {
        let mut pairs = multi(trace, MULTI_SPAN);
        pairs.push(("x-b3-parentspanid", MULTI_PARENT.into()));
        pairs.extend(state.map(|(k, v)| (k, v.to_owned())));
        let sent = multi_headers(&pairs);
        let c = context(extract_multi(&sent));
        // The caller's parent is not in the context: the sidecar supplies it.
        assert_eq!(
            written(inject_multi, &outgoing(&c, Some(MULTI_PARENT), c.narrow)),
            sent
        );
    }
}

#[test]
fn strip_removes_every_x_b3_header() {
    let mut h = multi_headers(&multi(MULTI_TRACE, MULTI_SPAN));
    h.extend(headers(&[
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "1"),
        ("b3", "0"),
    ]));
    strip_multi(&mut h);
    assert_eq!(h.keys().collect::<Vec<_>>(), [&B3]);
}

// === robustness ===

#[test]
fn no_prefix_of_a_valid_header_value_panics_or_parses() {
    for (name, full) in [
        ("x-b3-traceid", MULTI_TRACE),
        ("x-b3-spanid", MULTI_SPAN),
        ("x-b3-parentspanid", MULTI_PARENT),
    ] {
        for end in 0..full.len() {
            let mut pairs = multi(MULTI_TRACE, MULTI_SPAN);
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, full[..end].to_owned()));
            let got = extract_multi(&multi_headers(&pairs));
            // A 16-digit prefix of a 32-digit trace id is a valid 64-bit id.
            let valid = name == "x-b3-traceid" && end == 16;
            assert_eq!(
                !matches!(got, Extracted::Invalid(_)),
                valid,
                "{name}: {:?}",
                &full[..end]
            );
        }
    }
}
