//! `meshtrace-proxy explain` against a real sidecar: the same config file and
//! headers go to `explain --json` and, through a running `meshtrace-proxy`
//! process, to an echo app; the headers explain says it writes, removes and
//! keeps — values included, once the sidecar's random span id is substituted —
//! and its sampled flag are what the app really received. Bad flags get one
//! line and exit 2.

use std::collections::BTreeSet;
use std::process::Output;

use bytes::Bytes;
use http::Response;
use meshtrace_config::{PropagationFormat as Format, UpstreamInjection, UpstreamMatch};
use meshtrace_tests::apps::{echoed, HttpApp};
use meshtrace_tests::client::http1_get_with;
use meshtrace_tests::process::{proxy_binary, ProxyProcess};
use meshtrace_tests::sidecar;
use serde_json::Value;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A B3 (multi-header) caller, sampled.
const B3: &[(&str, &str)] = &[
    ("x-b3-traceid", TRACE),
    ("x-b3-spanid", CALLER_SPAN),
    ("x-b3-sampled", "1"),
];
/// A Datadog caller that dropped the trace (priority 0), with an origin and tags.
const DATADOG: &[(&str, &str)] = &[
    ("x-datadog-trace-id", "11803532876627986230"),
    ("x-datadog-parent-id", "67667974448284343"),
    ("x-datadog-sampling-priority", "0"),
    ("x-datadog-origin", "rum"),
    ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6"),
];
/// A W3C caller with a vendor's tracestate, sampled; and a stale B3 span id
/// the sidecar must not let through beside its own.
const W3C: &[(&str, &str)] = &[
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    ("x-b3-spanid", "1111111111111111"),
    ("baggage", "tenant=acme"),
];

/// Runs the proxy binary with `args`.
async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(proxy_binary().await)
        .args(args)
        .env_remove("MESHTRACE_CONFIG")
        .env_remove("MESHTRACE_CONFIG_YAML")
        .output()
        .await
        .expect("run meshtrace-proxy")
}

/// `explain --json` of a request with `headers` on `proxy`'s own config file.
async fn explain(
    proxy: &ProxyProcess,
    direction: &str,
    authority: &str,
    headers: &[(&str, &str)],
) -> Value {
    let config = proxy
        .config_file()
        .to_str()
        .expect("utf-8 path")
        .to_string();
    let mut args = vec![
        "explain".to_string(),
        "--config".into(),
        config,
        "--direction".into(),
        direction.into(),
        "--authority".into(),
        authority.into(),
        "--json".into(),
    ];
    for (name, value) in headers {
        args.push("-H".into());
        args.push(format!("{name}: {value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "explain failed: {stderr}");
    serde_json::from_slice(&out.stdout).expect("explain --json prints JSON")
}

/// The sidecar's span id as the app received it: traceparent's parent field,
/// else B3's span id.
fn actual_span(rsp: &Response<Bytes>) -> String {
    if let Some(tp) = echoed(rsp, "traceparent") {
        return tp.split('-').nth(2).expect("a parent field").to_string();
    }
    echoed(rsp, "x-b3-spanid")
        .expect("the app received the sidecar's span id")
        .to_string()
}

/// `value` with explain's generated span id replaced by the sidecar's, in its
/// hex (W3C, B3, Jaeger) and decimal (Datadog) spellings.
fn substitute(value: &str, predicted: &str, actual: &str) -> String {
    let decimal = |hex: &str| {
        u64::from_str_radix(hex, 16)
            .expect("hex span id")
            .to_string()
    };
    value
        .replace(predicted, actual)
        .replace(&decimal(predicted), &decimal(actual))
}

/// Checks every header explain names (sent, written or removed) against what
/// the app received, and the sampled flag against the traceparent it got.
fn assert_prediction(explained: &Value, sent: &[(&str, &str)], rsp: &Response<Bytes>) {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    };
    let removed: BTreeSet<String> = strings(&explained["remove"]).into_iter().collect();
    let written: Vec<(String, String)> = explained["write"]
        .as_array()
        .expect("write is an array")
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().into(),
                h["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    let predicted_span = explained["forwarded"]["span_id"]
        .as_str()
        .expect("a span id");
    let actual = actual_span(rsp);
    for (name, value) in &written {
        let expected = substitute(value, predicted_span, &actual);
        assert_eq!(
            echoed(rsp, name),
            Some(expected.as_str()),
            "explain said the sidecar writes {name}: {value}\n{explained:#}"
        );
    }
    for (name, value) in sent {
        let kept = !removed.contains(*name) && !written.iter().any(|(n, _)| n == name);
        if kept {
            assert_eq!(
                echoed(rsp, name),
                Some(*value),
                "explain said {name} passes untouched"
            );
        }
        if removed.contains(*name) {
            assert_eq!(echoed(rsp, name), None, "explain said {name} is removed");
        }
    }
    let received: BTreeSet<&str> = rsp
        .headers()
        .keys()
        .filter_map(|n| n.as_str().strip_prefix("x-echo-header-"))
        .collect();
    let trace_owned = [
        "traceparent",
        "tracestate",
        "b3",
        "uber-trace-id",
        "x-meshtrace-caller",
    ];
    for name in received {
        let ours = trace_owned.contains(&name)
            || name.starts_with("x-b3-")
            || name.starts_with("x-datadog-");
        if ours {
            let predicted = written.iter().any(|(n, _)| n == name)
                || sent.iter().any(|(n, _)| *n == name) && !removed.contains(name);
            assert!(
                predicted,
                "the app received {name}, which explain did not predict\n{explained:#}"
            );
        }
    }
    if let Some(tp) = echoed(rsp, "traceparent") {
        let flags = u8::from_str_radix(&tp[53..], 16).expect("hex flags");
        assert_eq!(
            explained["sampling"]["sampled"].as_bool(),
            Some(flags & 1 == 1),
            "sampled flag of {tp}\n{explained:#}"
        );
    }
}

#[tokio::test]
async fn explain_predicts_what_the_app_receives_inbound() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).spawn().await;
    for (what, headers) in [("b3", B3), ("datadog", DATADOG), ("w3c", W3C)] {
        let explained = explain(&proxy, "inbound", "app", headers).await;
        let rsp = http1_get_with(proxy.inbound_addr(), "app", headers).await;
        assert!(rsp.status().is_success(), "{what}: {}", rsp.status());
        assert_prediction(&explained, headers, &rsp);
    }
}

#[tokio::test]
async fn explain_predicts_what_the_upstream_receives_outbound_and_names_the_rule() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .host_route("billing", app.addr())
        .host_route("catalog", app.addr())
        .configure(|c| {
            c.propagation.upstreams.push(UpstreamInjection {
                name: Some("billing".into()),
                matches: UpstreamMatch {
                    host: Some("billing".into()),
                    ..Default::default()
                },
                external: false,
                inject: vec![Format::B3Multi, Format::Datadog],
                id_width: None,
            });
        })
        .spawn()
        .await;
    for (what, headers) in [("b3", B3), ("datadog", DATADOG), ("w3c", W3C)] {
        for authority in ["billing:8080", "catalog:8080"] {
            let explained = explain(&proxy, "outbound", authority, headers).await;
            let rule = explained["next_hop"]["rule"].as_str();
            let expected = authority
                .starts_with("billing")
                .then_some("propagation.upstreams[0]");
            assert_eq!(rule, expected, "{what} to {authority}");
            let rsp = http1_get_with(proxy.outbound_addr(), authority, headers).await;
            assert!(
                rsp.status().is_success(),
                "{what} to {authority}: {}",
                rsp.status()
            );
            assert_prediction(&explained, headers, &rsp);
        }
    }
}

#[tokio::test]
async fn bad_flags_get_one_line_and_exit_2() {
    let cases: [&[&str]; 5] = [
        &["explain", "--direction", "sideways", "--authority", "app"],
        &["explain", "--authority", "app"],
        &[
            "explain",
            "--direction",
            "inbound",
            "--authority",
            "app",
            "-H",
            "no colon",
        ],
        &[
            "explain",
            "--direction",
            "inbound",
            "--authority",
            "app",
            "--app-sends",
            "zipkin",
        ],
        &["explain", "--direction", "inbound"],
    ];
    for args in cases {
        let out = run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("explain: "), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
