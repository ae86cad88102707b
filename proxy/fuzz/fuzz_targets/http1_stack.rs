//! An HTTP/1 request through the sidecar's in-process HTTP stack: detection,
//! the hyper server, Trace → Record → HeaderLimit → Forward, and an upstream
//! stand-in on in-memory IO (see `meshtrace_proxy_fuzz::stack`). The input
//! picks the listener, the stand-in's answer, the method and version, the
//! header names (a dictionary biased to trace headers) and their raw values
//! (see `meshtrace_proxy_fuzz::head`).
//!
//! Checked, beyond "no panic":
//! - the exchange ends (the sidecar answers and closes) within 5 s: a hang is
//!   a finding;
//! - what the client reads is empty (a clean close) or starts with a complete,
//!   valid HTTP/1 response head (after any 1xx), never carrying the upstream's
//!   own `meshtrace-proxy-error`;
//! - every request reaching the stand-in carries exactly one `traceparent`
//!   that parses, at most one `tracestate`, a `host` (HTTP/1), no `keep-alive`
//!   or `proxy-connection`, and trace headers that all read back valid and
//!   agreeing (no invalid or conflicting format); with the all-formats rule
//!   (when the request's authority is the default host), all five formats; on the untrusted listener, none of the caller's trace
//!   id, debug flag or force header, and no sampling (rate 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshtrace_config::ConflictPolicy;
use meshtrace_proxy::propagation::extract::Extractor;
use meshtrace_proxy::propagation::{w3c, Extracted, Format, Outcome};
use meshtrace_proxy_fuzz::head::{Input, HOST};
use meshtrace_proxy_fuzz::stack::{Harness, Listener, Seen, HANG, UPSTREAM_ERROR_VALUE};

/// The HTTP/2 connection preface: what makes detection pick HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Checks the client's bytes: a clean close or a valid response head (for an
/// HTTP/2 preface, a clean close or HTTP/2 frames starting with SETTINGS).
fn check_response(back: &[u8], input: &Input) {
    if input.bytes.starts_with(H2_PREFACE) {
        let settings = back.get(3) == Some(&4);
        assert!(
            back.is_empty() || settings,
            "HTTP/2 answer without SETTINGS: {back:?}"
        );
        return;
    }
    let mut rest = back;
    while !rest.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut fields);
        let n = match response.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => panic!(
                "truncated response head {:?} to {:?}",
                String::from_utf8_lossy(back),
                String::from_utf8_lossy(&input.bytes)
            ),
            Err(e) => panic!(
                "invalid response ({e}) {:?} to {:?}",
                String::from_utf8_lossy(back),
                String::from_utf8_lossy(&input.bytes)
            ),
        };
        let code = response.code.unwrap_or(0);
        for field in response.headers.iter() {
            let leaked = field.name.eq_ignore_ascii_case("meshtrace-proxy-error")
                && field.value == UPSTREAM_ERROR_VALUE.as_bytes();
            assert!(!leaked, "the upstream's error header reached the client");
        }
        if (100..200).contains(&code) && code != 101 {
            rest = &rest[n..];
            continue;
        }
        break;
    }
}

/// Checks one request the stand-in received.
fn check_forwarded(seen: &Seen, listener: Listener, input: &Input) {
    let h = &seen.headers;
    let count = |name: &str| h.get_all(name).iter().count();
    assert_eq!(count("traceparent"), 1, "traceparents: {h:?}");
    assert!(count("tracestate") <= 1, "tracestates: {h:?}");
    if seen.version == http::Version::HTTP_11 {
        assert_eq!(count("host"), 1, "host: {h:?}");
    }
    for hop in ["keep-alive", "proxy-connection"] {
        assert_eq!(count(hop), 0, "{hop} forwarded: {h:?}");
    }
    let Extracted::Context(w3c) = w3c::extract(h) else {
        panic!("traceparent does not parse: {h:?}");
    };
    let mut outcomes = Vec::new();
    let extractor = Extractor::new(Format::ALL.to_vec(), ConflictPolicy::First);
    let incoming = extractor.extract(h, |f, o| outcomes.push((f, o)));
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| *o != Outcome::Valid)
        .collect();
    assert!(bad.is_empty(), "forwarded {bad:?}: {h:?}");
    let context = incoming.context.expect("a context");
    assert_eq!(context.trace_id, w3c.trace_id, "{h:?}");
    match listener {
        // The rule matches port 9080: the default host's, when it is the
        // request's authority.
        Listener::AllFormats if input.origin_form && h.get("host").is_some_and(|v| *v == HOST) => {
            for f in Format::ALL {
                let skipped = f == Format::Datadog && context.trace_id.low() == 0;
                assert!(
                    skipped || outcomes.contains(&(f, Outcome::Valid)),
                    "{f:?} not written: {h:?}"
                );
            }
        }
        Listener::Untrusted => {
            assert_eq!(count("x-meshtrace-force-trace"), 0, "force header: {h:?}");
            assert!(!context.debug, "debug from an untrusted caller: {h:?}");
            assert!(!context.sampling.is_sampled(), "sampled at rate 0: {h:?}");
            let theirs = extractor.extract(&input.sent, |_, _| {});
            if let Some(theirs) = theirs.context {
                assert_ne!(theirs.trace_id, context.trace_id, "caller's trace: {h:?}");
            }
        }
        Listener::Inbound | Listener::Outbound | Listener::AllFormats => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::decode(data) else {
        return;
    };
    let listener = Listener::of(input.control);
    let reply = (input.control >> 2) & 7;
    let Some((back, seen)) = Harness::get().exchange(listener, reply, &input.bytes) else {
        panic!(
            "hang: the exchange did not end within {HANG:?}: {:?}",
            String::from_utf8_lossy(&input.bytes)
        );
    };
    if std::env::var_os("MESHTRACE_FUZZ_DEBUG").is_some() {
        eprintln!(
            "{listener:?} reply {reply}: sent {:?}\n  back {:?}\n  upstream saw {seen:?}",
            String::from_utf8_lossy(&input.bytes),
            String::from_utf8_lossy(&back)
        );
    }
    check_response(&back, &input);
    for s in &seen {
        check_forwarded(s, listener, &input);
    }
});
