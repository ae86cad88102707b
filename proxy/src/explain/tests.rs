use http::{HeaderMap, HeaderName, HeaderValue, Method};
use meshtrace_config::Config;

use super::model::Explanation;
use super::request::{header_line, headers_file};
use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn config(yaml: &str) -> Config {
    Config::from_yaml_str(yaml, "test.yaml").unwrap()
}

fn query(direction: Direction, authority: &str, headers: &[(&str, &str)]) -> Query {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Query {
        direction,
        method: Method::GET,
        authority: authority.into(),
        path: "/".into(),
        headers: map,
        app_sends: None,
    }
}

fn run(yaml: &str, q: &Query) -> Explanation {
    explain(&config(yaml), q).unwrap()
}

fn written(e: &Explanation, name: &str) -> Option<String> {
    e.write
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.value.clone())
}

fn read_status(e: &Explanation, format: &str) -> &'static str {
    e.read.iter().find(|f| f.format == format).unwrap().status
}

#[test]
fn b3_caller_toward_an_app_known_to_speak_w3c() {
    let mut q = query(
        Direction::Inbound,
        "app",
        &[("b3", &format!("{TRACE}-{SPAN}-1"))],
    );
    q.app_sends = Some([Format::TraceContext].into_iter().collect());
    let e = run("inbound: {app_port: 9090}\n", &q);
    assert_eq!(read_status(&e, "b3single"), "valid");
    assert!(e.read[0].primary);
    assert_eq!(e.incoming.as_ref().unwrap().trace_id, TRACE);
    assert_eq!(e.sampling.reason, "parent");
    assert!(e.sampling.sampled);
    let span = &e.forwarded.span_id;
    assert_ne!(span, SPAN, "the sidecar's own span");
    assert_eq!(e.forwarded.parent_span_id.as_deref(), Some(SPAN));
    assert_eq!(
        written(&e, "traceparent").unwrap(),
        format!("00-{TRACE}-{span}-01")
    );
    // W3C + what arrived (b3single) + the app's (W3C): nothing else, nothing removed.
    assert_eq!(e.next_hop.formats, ["tracecontext", "b3single"]);
    assert!(written(&e, "x-b3-traceid").is_none());
    assert!(e.remove.is_empty());
    let text = text(&e);
    assert!(text.contains("sampling: sampled (reason parent)"), "{text}");
    assert!(
        text.contains(&format!("span id:    {span} (generated)")),
        "{text}"
    );
    assert!(
        text.contains("learned (simulated with --app-sends): tracecontext"),
        "{text}"
    );
}

#[test]
fn invalid_traceparent_says_why_and_a_new_trace_starts() {
    let tp = format!("ff-{TRACE}-{SPAN}-01");
    let q = query(Direction::Inbound, "app", &[("traceparent", &tp)]);
    let e = run("inbound: {app_port: 9090}\n", &q);
    let w3c = &e.read[0];
    assert_eq!(w3c.status, "invalid");
    assert_eq!(
        w3c.why.as_deref(),
        Some("traceparent version ff is forbidden")
    );
    assert!(e.incoming.is_none());
    assert_eq!(e.forwarded.generated, ["span_id", "trace_id"]);
    assert_eq!(e.sampling.reason, "default");
    assert_eq!(
        e.sampling.decided_by,
        "sampling.default_rate (no rule matched)"
    );
    assert!(text(&e).contains("why: traceparent version ff is forbidden"));
}

#[test]
fn conflicting_formats_name_the_loser() {
    let other = "11111111111111111111111111111111";
    let q = query(
        Direction::Inbound,
        "app",
        &[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("b3", &format!("{other}-{SPAN}-1")),
        ],
    );
    let e = run("inbound: {app_port: 9090}\n", &q);
    assert_eq!(read_status(&e, "tracecontext"), "valid");
    assert_eq!(read_status(&e, "b3single"), "conflict");
    let why = e.read[1].why.as_deref().unwrap();
    assert!(why.contains(other) && why.contains(TRACE), "{why}");
}

#[test]
fn untrusted_listener_ignores_context_and_removes_the_force_header() {
    let q = query(
        Direction::Inbound,
        "app",
        &[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-00")),
            ("x-meshtrace-force-trace", "1"),
        ],
    );
    let e = run("inbound: {app_port: 9090, trusted: false}\n", &q);
    assert!(!e.trusted);
    assert_eq!(e.read[0].status, "ignored");
    assert!(e.incoming.is_none());
    assert_ne!(e.forwarded.trace_id, TRACE);
    assert_eq!(e.sampling.reason, "default");
    assert!(e.remove.contains(&"x-meshtrace-force-trace".to_string()));
}

#[test]
fn external_upstream_rule_is_named_and_everything_is_removed() {
    let yaml = "propagation:\n  upstreams:\n    - name: partner\n      match: {host: api.partner.example}\n      external: true\n";
    let q = query(
        Direction::Outbound,
        "api.partner.example:443",
        &[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("tracestate", "rojo=1"),
        ],
    );
    let e = run(yaml, &q);
    assert_eq!(e.next_hop.rule.as_deref(), Some("propagation.upstreams[0]"));
    assert_eq!(e.next_hop.target, "partner");
    assert!(e.next_hop.external);
    assert!(e.write.is_empty(), "{:?}", e.write);
    assert_eq!(e.remove, ["traceparent", "tracestate"]);
    assert!(text(&e).contains("no trace header is written"));
}

#[test]
fn a_root_request_names_the_sampling_rule_that_decided() {
    let yaml = "sampling:\n  rules:\n    - match: {host: other}\n      rate: 1.0\n    - match: {host: checkout, path_prefix: /api/}\n      rate: 0.0\n";
    let mut q = query(Direction::Outbound, "checkout:8080", &[]);
    q.path = "/api/pay".into();
    let e = run(yaml, &q);
    assert_eq!(e.sampling.reason, "rule");
    assert_eq!(e.sampling.decided_by, "sampling.rules[1]");
    assert_eq!(e.sampling.rate, Some(0.0));
    assert!(!e.sampling.sampled);
    let flags = written(&e, "traceparent").unwrap()[53..].to_string();
    assert_eq!(
        u8::from_str_radix(&flags, 16).unwrap() & 1,
        0,
        "not sampled: {flags}"
    );
}

#[test]
fn the_route_and_how_it_keeps_traces_are_named() {
    let yaml = "sampling:\n  tier: critical\n  rules:\n    - name: pay\n      match: {path_prefix: /api/}\n      target_traces_per_second: 4\n      max_rate: 0.5\n";
    let mut q = query(Direction::Outbound, "checkout:8080", &[]);
    q.path = "/api/pay".into();
    let e = run(yaml, &q);
    assert_eq!(e.sampling.route, "pay");
    assert_eq!(
        e.sampling.rate,
        Some(0.5),
        "a fresh adaptive route starts at its ceiling"
    );
    let policy = &e.sampling.route_policy;
    assert!(policy.contains("adaptive: 4 traces/s"), "{policy}");
    assert!(policy.contains("tier critical"), "{policy}");
    assert!(policy.contains("boost on error ratio > 0.05"), "{policy}");
    q.path = "/healthz".into();
    let e = run(yaml, &q);
    assert_eq!(
        (e.sampling.reason, e.sampling.route.as_str()),
        ("probe", "default")
    );
    assert!(text(&e).contains("route:      default (adaptive: 10 traces/s"));
}

#[test]
fn forced_tenant_and_force_signal_are_attributed() {
    let yaml = "sampling:\n  forced_tenants:\n    - {tenant: acme, rate: 1.0, traces_per_second: 5, override_parent: true}\n";
    let tp = format!("00-{TRACE}-{SPAN}-00");
    let q = query(
        Direction::Inbound,
        "app",
        &[("traceparent", &tp), ("x-tenant-id", "acme")],
    );
    let e = run(yaml, &q);
    assert_eq!(e.sampling.reason, "forced_tenant");
    assert_eq!(e.sampling.tenant.as_deref(), Some("acme"));
    assert!(e.sampling.decided_by.contains("acme"));
    let debug = format!("{TRACE}-{SPAN}-d");
    let e = run("{}\n", &query(Direction::Inbound, "app", &[("b3", &debug)]));
    assert_eq!(e.sampling.reason, "force_signal");
    assert!(
        e.sampling.decided_by.contains("debug flag"),
        "{}",
        e.sampling.decided_by
    );
}

#[test]
fn json_field_names_are_the_documented_ones() {
    let q = query(
        Direction::Inbound,
        "app",
        &[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)],
    );
    let json = serde_json::to_value(run("{}\n", &q)).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let documented = [
        "assumptions",
        "direction",
        "forwarded",
        "incoming",
        "incoming_decision",
        "next_hop",
        "on_conflict",
        "read",
        "remove",
        "request",
        "sampling",
        "trusted",
        "write",
    ];
    assert_eq!(keys, documented);
    assert_eq!(json["read"][0]["format"], "b3multi");
    // No X-B3-Sampled: the caller deferred, so the sidecar decides as for a root.
    assert_eq!(json["sampling"]["reason"], "default");
    assert_eq!(json["next_hop"]["toward"], "app");
}

/// Request headers, as `(name, value)` pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[test]
fn every_format_says_why_it_is_invalid() {
    let cases: [(Headers<'_>, Format, &str); 6] = [
        (
            &[("traceparent", "00-abc-01")],
            Format::TraceContext,
            "traceparent is shorter than 55 characters",
        ),
        (
            &[("x-b3-traceid", TRACE)],
            Format::B3Multi,
            "x-b3-traceid without x-b3-spanid",
        ),
        (
            &[("x-b3-traceid", "xyz"), ("x-b3-spanid", SPAN)],
            Format::B3Multi,
            "x-b3-traceid is not 16 or 32 hex digits",
        ),
        (
            &[("b3", "abc-def-1")],
            Format::B3Single,
            "b3 trace id is not 16 or 32 hex digits",
        ),
        (
            &[("x-datadog-trace-id", "0"), ("x-datadog-parent-id", "1")],
            Format::Datadog,
            "x-datadog-trace-id is zero",
        ),
        (
            &[("uber-trace-id", "abc:0:0:1")],
            Format::Jaeger,
            "uber-trace-id span-id is zero",
        ),
    ];
    for (headers, format, expected) in cases {
        let q = query(Direction::Inbound, "app", headers);
        let e = run("{}\n", &q);
        let read = e.read.iter().find(|f| f.format == format.as_str()).unwrap();
        assert_eq!(read.status, "invalid", "{headers:?}");
        // The codec's own reason, word for word.
        assert_eq!(read.why.as_deref(), Some(expected), "{headers:?}");
    }
}

#[test]
fn headers_files_are_read_plain_as_a_request_head_or_from_curl() {
    let plain = headers_file("# a comment\nb3: 1\n\nx-tenant-id: acme\n").unwrap();
    assert_eq!(plain.headers.len(), 2);
    assert!(plain.request_line.is_none());
    let head = headers_file("POST /api HTTP/1.1\nHost: checkout\nb3: 0\n").unwrap();
    assert_eq!(head.request_line, Some(("POST".into(), "/api".into())));
    assert_eq!(head.headers[0].0, "host");
    let curl = "*   Trying 127.0.0.1:15001...\n> GET /x HTTP/1.1\n> Host: app\n> b3: 1\n>\n< HTTP/1.1 200 OK\n< b3: 0\n";
    let curl = headers_file(curl).unwrap();
    assert_eq!(curl.request_line, Some(("GET".into(), "/x".into())));
    assert_eq!(curl.headers.len(), 2, "response lines are not read");
    let bad = headers_file("b3 1\n").unwrap_err();
    assert!(bad.starts_with("line 1:"), "{bad}");
    assert!(header_line("no colon").is_err());
}
