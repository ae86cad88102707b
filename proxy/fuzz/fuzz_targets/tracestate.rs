//! W3C `tracestate` on its own: parsing, and the sidecar's `set_front("dd", …)`.
//!
//! Input: segments 0..=2 (at most three, and not the last when there are two or
//! more) are `tracestate` header lines; the last segment, when there are two or
//! more, is the `dd=` value to set (lossily UTF-8 decoded), else `s:1`.
//!
//! Checked: a parsed state (and the default one when parsing fails) renders to
//! at most 512 characters and 32 members and re-parses to itself; `set_front`
//! either refuses and changes nothing, or puts `dd=<value>` first (unless it
//! is over 128 characters and had to go for the 512 limit), keeps the limits,
//! keeps the other members in order, and re-parses; `remove("dd")` likewise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshtrace_proxy::propagation::tracestate::{MAX_LEN, MAX_MEMBERS};
use meshtrace_proxy::propagation::TraceState;
use meshtrace_proxy_fuzz::{segments, value};

/// The limits hold and the rendered value parses back to the same state.
fn check(state: &TraceState, what: &str) {
    let members: Vec<_> = state.members().collect();
    assert!(
        members.len() <= MAX_MEMBERS,
        "{what}: {} members: {state:?}",
        members.len()
    );
    assert_eq!(state.len(), members.len());
    assert_eq!(state.is_empty(), members.is_empty(), "{what}: {state:?}");
    match state.header_value() {
        None => assert!(members.is_empty(), "{what}: members without a value"),
        Some(v) => {
            assert!(v.len() <= MAX_LEN, "{what}: {} chars: {v:?}", v.len());
            let reparsed = TraceState::parse([v]);
            assert_eq!(reparsed.as_ref(), Ok(state), "{what}: re-parse of {v:?}");
        }
    }
    for (k, v) in &members {
        assert_eq!(state.get(k), Some(*v), "{what}: get({k:?})");
    }
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = segments(data).collect();
    let (lines, dd): (&[&[u8]], _) = match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => (rest, String::from_utf8_lossy(last)),
        _ => (&parts[..], "s:1".into()),
    };
    let lines: Vec<_> = lines.iter().take(3).filter_map(|l| value(l)).collect();

    let mut state = match TraceState::parse(&lines) {
        Ok(state) => {
            check(&state, "parse");
            state
        }
        Err(_) => TraceState::default(),
    };

    let before = state.clone();
    let others: Vec<(String, String)> = before
        .members()
        .filter(|(k, _)| *k != "dd")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if !state.set_front("dd", &dd) {
        assert_eq!(state, before, "set_front refused but changed the state");
        return;
    }
    check(&state, "set_front");
    let members: Vec<_> = state.members().collect();
    if "dd=".len() + dd.len() <= 128 {
        assert_eq!(
            members.first(),
            Some(&("dd", &*dd)),
            "set_front: dd not first: {state:?}"
        );
    }
    // The rest: a subsequence of the old members, in order, without the old `dd`.
    let mut old = others.iter();
    for (k, v) in members.iter().filter(|(k, _)| *k != "dd") {
        assert!(
            old.any(|(ok, ov)| ok == k && ov == v),
            "set_front: {k}={v} reordered or invented: {before:?} -> {state:?}"
        );
    }

    state.remove("dd");
    check(&state, "remove");
    assert_eq!(state.get("dd"), None);
});
