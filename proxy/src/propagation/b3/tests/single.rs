use super::*;

// === extract ===

#[test]
fn spec_example_is_parsed_with_the_callers_span_as_parent() {
    let c = context(single(SINGLE));
    assert_eq!(c.trace_id.get(), 0x80f198ee56343ba864fe8b2a57d3eff7);
    assert_eq!(c.parent_id.get(), 0x05e3ac9a4f6e3b90);
    assert_eq!(c.sampling, Sampling::Sampled);
    assert!(!c.debug && !c.narrow);
}

#[test]
fn without_sampling_state_defers() {
    assert_eq!(
        context(single(&format!("{TRACE}-{SPAN}"))).sampling,
        Sampling::Deferred
    );
}

#[test]
fn d_is_debug_and_sampled() {
    let c = context(single(&format!("{TRACE}-{SPAN}-d")));
    assert!(c.debug);
    assert_eq!(c.sampling, Sampling::Sampled);
}

#[test]
fn deny_only_is_not_sampled() {
    let want = Extracted::DecisionOnly {
        sampling: Sampling::NotSampled,
        debug: false,
    };
    assert_eq!(single("0"), want);
}

#[test]
fn accept_and_debug_only_are_decisions_without_ids() {
    for (v, sampling, debug) in [
        ("1", Sampling::Sampled, false),
        ("d", Sampling::Sampled, true),
    ] {
        assert_eq!(single(v), Extracted::DecisionOnly { sampling, debug });
    }
}

#[test]
fn trace_id_of_16_digits_is_padded_and_marked_narrow() {
    let c = context(single(&format!("64fe8b2a57d3eff7-{SPAN}-0")));
    assert_eq!(c.trace_id.get(), 0x64fe8b2a57d3eff7);
    assert!(c.narrow);
}

#[test]
fn upper_case_hex_is_accepted() {
    let c = context(single(&SINGLE.to_ascii_uppercase()));
    assert_eq!(c.parent_id.get(), 0x05e3ac9a4f6e3b90);
}

#[test]
fn malformed_values_are_invalid() {
    for bad in [
        String::new(),
        "-".into(),
        "00".into(),
        "true".into(),
        "D".into(),
        "0-".into(),
        TRACE.into(),
        format!("{TRACE}-"),
        format!("{TRACE}-{SPAN}-"),
        format!("{TRACE}-{SPAN}-1-"),
        format!("{TRACE}-{SPAN}--{PARENT}"),
        format!("{TRACE}-{SPAN}-{PARENT}"),
        format!("{TRACE}-{SPAN}-2"),
        format!("{SINGLE}-"),
        format!("{SINGLE}-1"),
        format!("{}-{SPAN}", &TRACE[1..]),
        format!("{TRACE}-{}", &SPAN[1..]),
        format!("{TRACE}-{SPAN}-1-{}", &PARENT[1..]),
        format!("{TRACE}-{SPAN}x"),
        format!("00000000000000000000000000000000-{SPAN}"),
        format!("{TRACE}-0000000000000000"),
        format!("{TRACE}-{SPAN}-1-0000000000000000"),
    ] {
        assert!(matches!(single(&bad), Extracted::Invalid(_)), "{bad:?}");
    }
}

#[test]
fn absent_is_absent() {
    assert_eq!(
        extract_single(&headers(&[("x-b3-sampled", "1")])),
        Extracted::Absent
    );
}

// === inject ===

#[test]
fn inject_writes_state_then_the_callers_span_as_parent() {
    let c = new_context(Sampling::Sampled);
    let h = written(inject_single, &outgoing(&c, Some(PARENT), false));
    assert_eq!(h[&B3], SINGLE);
}

#[test]
fn inject_debug_writes_d() {
    let mut c = new_context(Sampling::NotSampled);
    c.debug = true;
    assert_eq!(
        written(inject_single, &outgoing(&c, None, false))[&B3],
        format!("{TRACE}-{SPAN}-d")
    );
}

#[test]
fn inject_of_a_deferred_decision_omits_state_and_parent() {
    let c = new_context(Sampling::Deferred);
    let h = written(inject_single, &outgoing(&c, Some(PARENT), false));
    assert_eq!(h[&B3], format!("{TRACE}-{SPAN}"));
}

#[test]
fn inject_narrow_writes_the_low_64_bits() {
    let c = new_context(Sampling::NotSampled);
    let h = written(inject_single, &outgoing(&c, None, true));
    assert_eq!(h[&B3], format!("64fe8b2a57d3eff7-{SPAN}-0"));
}

#[test]
fn inject_replaces_an_existing_b3() {
    let mut h = headers(&[("b3", "0"), ("b3", "1")]);
    inject_single(
        &outgoing(&new_context(Sampling::Sampled), None, false),
        &mut h,
    );
    assert_eq!(h.get_all(&B3).iter().count(), 1);
}

#[test]
fn round_trips_through_the_context() {
    for (value, parent) in [
        (SINGLE.to_owned(), Some(PARENT)),
        (format!("{TRACE}-{SPAN}-0-{PARENT}"), Some(PARENT)),
        (format!("{TRACE}-{SPAN}-d"), None),
        (format!("{TRACE}-{SPAN}"), None),
        (format!("64fe8b2a57d3eff7-{SPAN}-1"), None),
        (format!("000000000000000064fe8b2a57d3eff7-{SPAN}-1"), None),
    ] {
        let c = context(single(&value));
        let h = written(inject_single, &outgoing(&c, parent, c.narrow));
        assert_eq!(h[&B3], value.as_str());
    }
}

#[test]
fn strip_removes_only_b3() {
    let mut h = headers(&[("b3", SINGLE), ("x-b3-sampled", "1")]);
    strip_single(&mut h);
    assert_eq!(h.keys().collect::<Vec<_>>(), [&X_B3_SAMPLED]);
}

// === robustness ===

#[test]
fn no_prefix_of_a_valid_header_panics_or_parses_as_more() {
    let debug = format!("{TRACE}-{SPAN}-d-{PARENT}");
    for full in [SINGLE, debug.as_str()] {
        for end in 0..full.len() {
            let prefix = &full[..end];
            let want_context = end == 49 || end == 51; // `{trace}-{span}[-{state}]`
            assert_eq!(
                matches!(single(prefix), Extracted::Context(_)),
                want_context,
                "{prefix:?}"
            );
        }
    }
}
