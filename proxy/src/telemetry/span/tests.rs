use std::time::Duration;

use http::{Method, Request, StatusCode, Version};
use meshtrace_config::{Config, Tag};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::mpsc;

use super::{PeerAddress, Recorder, SpanEnd};
use crate::metrics::Metrics;
use crate::propagation::extract::{Discarded, Formats};
use crate::propagation::{Format, Sampling, SpanId, TraceId};
use crate::sampling::Reason;
use crate::target::Direction;
use crate::telemetry::export::EncodedSpan;
use crate::telemetry::SpanInfo;
use crate::telemetry::SpanQueue;

const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
const PARENT: u64 = 0x00f067aa0ba902b7;
const SPAN: u64 = 0x1111111111111111;

struct Fixture {
    recorder: Recorder,
    rx: mpsc::Receiver<EncodedSpan>,
    metrics: std::sync::Arc<Metrics>,
}

fn fixture(change: impl FnOnce(&mut Config)) -> Fixture {
    let mut config = Config::default();
    change(&mut config);
    let metrics = Metrics::new();
    let (queue, rx) = SpanQueue::for_test(16, metrics.spans.clone());
    let vars = |name: &str| (name == "TEAM").then(|| "payments".to_string());
    Fixture {
        recorder: Recorder::new(&config, queue, &vars),
        rx,
        metrics,
    }
}

fn info(sampling: Sampling) -> SpanInfo {
    SpanInfo {
        trace_id: TraceId::new(TRACE).unwrap(),
        span_id: SpanId::new(SPAN).unwrap(),
        parent_id: SpanId::new(PARENT),
        sampling,
        debug: false,
        formats: Formats::default(),
        discarded: Vec::new(),
        sampling_reason: Reason::Parent,
        tenant: None,
    }
}

fn request(method: &str, uri: &str, info: SpanInfo) -> Request<()> {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .header("host", "shop.example:8080")
        .header("user-agent", "curl/8.5.0")
        .header("authorization", "Bearer secret")
        .header("x-request-class", "gold")
        .body(())
        .unwrap();
    req.extensions_mut().insert(info);
    req
}

fn end(status: u16, ms: u64) -> SpanEnd {
    SpanEnd {
        status: StatusCode::from_u16(status).unwrap(),
        grpc_status: None,
        proxy_error: None,
        elapsed: Duration::from_millis(ms),
        complete: true,
    }
}

impl Fixture {
    fn run(&mut self, req: &Request<()>, server: bool, end: SpanEnd) -> Option<SpanData> {
        self.run_from(
            &PeerAddress::new(([10, 0, 0, 7], 40000).into()),
            req,
            server,
            end,
        )
    }

    fn run_from(
        &mut self,
        peer: &PeerAddress,
        req: &Request<()>,
        server: bool,
        end: SpanEnd,
    ) -> Option<SpanData> {
        let tail = self.metrics.sampling(Direction::Inbound);
        if let Some(start) = self.recorder.start(req, server, peer) {
            self.recorder.finish(start, end, &tail);
        }
        self.rx.try_recv().ok().map(|span| span.decode())
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn s(span: &SpanData, key: &str) -> String {
    attr(span, key)
        .map(|v| v.to_string())
        .unwrap_or_else(|| panic!("no attribute {key} in {:?}", span.attributes))
}

#[test]
fn server_span_names_routes_and_follows_http_conventions() {
    let mut f = fixture(|c| c.spans.routes = vec!["/users/{id}".into()]);
    let req = request("GET", "/users/42?token=abc&page=2", info(Sampling::Sampled));
    let span = f
        .run(&req, true, end(404, 3))
        .expect("sampled span exported");
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id().to_string(),
        format!("{TRACE:032x}")
    );
    assert_eq!(
        span.span_context.span_id().to_string(),
        format!("{SPAN:016x}")
    );
    assert_eq!(span.parent_span_id.to_string(), format!("{PARENT:016x}"));
    assert!(span.parent_span_is_remote);
    assert_eq!(s(&span, "http.request.method"), "GET");
    assert_eq!(s(&span, "url.path"), "/users/42");
    assert_eq!(s(&span, "url.scheme"), "http");
    assert_eq!(s(&span, "url.query"), "token=REDACTED&page=2");
    assert_eq!(s(&span, "http.route"), "/users/{id}");
    assert_eq!(s(&span, "http.response.status_code"), "404");
    assert_eq!(s(&span, "server.address"), "shop.example");
    assert_eq!(s(&span, "server.port"), "8080");
    assert_eq!(s(&span, "client.address"), "10.0.0.7");
    assert_eq!(s(&span, "network.protocol.version"), "1.1");
    assert_eq!(s(&span, "user_agent.original"), "curl/8.5.0");
    assert_eq!(s(&span, "meshtrace.sampling.reason"), "parent");
    assert_eq!(
        span.status,
        Status::Unset,
        "4xx is not an error on a SERVER span"
    );
    assert!(attr(&span, "error.type").is_none());
    assert_eq!(
        span.end_time.duration_since(span.start_time).unwrap(),
        Duration::from_millis(3)
    );
}

#[test]
fn unmatched_paths_never_name_spans() {
    let mut f = fixture(|c| c.spans.routes = vec!["/users/{id}".into()]);
    let req = request("POST", "/orders/123", info(Sampling::Sampled));
    let span = f.run(&req, true, end(200, 1)).unwrap();
    assert_eq!(span.name, "POST");
    assert!(attr(&span, "http.route").is_none());
    let odd = request("PURGE", "/cache", info(Sampling::Sampled));
    let span = f.run(&odd, true, end(200, 1)).unwrap();
    assert_eq!(span.name, "_OTHER");
    assert_eq!(s(&span, "http.request.method_original"), "PURGE");
}

#[test]
fn client_spans_treat_4xx_as_errors_and_carry_url_full() {
    let mut f = fixture(|_| {});
    let req = request(
        "GET",
        "http://inventory:9090/items?sig=x",
        info(Sampling::Sampled),
    );
    let span = f.run(&req, false, end(404, 1)).unwrap();
    assert_eq!(span.span_kind, SpanKind::Client);
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(s(&span, "error.type"), "404");
    assert_eq!(
        s(&span, "url.full"),
        "http://inventory:9090/items?sig=REDACTED"
    );
    assert_eq!(s(&span, "server.address"), "inventory");
    assert!(attr(&span, "client.address").is_none());
    let span = f.run(&req, true, end(503, 1)).unwrap();
    assert!(
        matches!(span.status, Status::Error { .. }),
        "5xx is an error on both kinds"
    );
}

#[test]
fn proxy_errors_name_their_cause() {
    let mut f = fixture(|_| {});
    let req = request("GET", "/", info(Sampling::Sampled));
    let mut e = end(502, 1);
    e.proxy_error = Some("connect_refused");
    let span = f.run(&req, true, e).unwrap();
    assert_eq!(s(&span, "error.type"), "connect_refused");
}

/// A sampled gRPC call to `shop.v1.Cart/AddItem`.
fn grpc_request() -> Request<()> {
    let mut req = request("POST", "/shop.v1.Cart/AddItem", info(Sampling::Sampled));
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    req
}

#[test]
fn grpc_call_abandoned_before_the_head_is_cancelled_and_client_closed() {
    let mut f = fixture(|_| {});
    let req = grpc_request();
    let mut e = end(499, 1);
    (e.proxy_error, e.complete) = (Some(SpanEnd::CLIENT_CLOSED), false);
    let span = f.run(&req, true, e).unwrap();
    assert_eq!(s(&span, "rpc.response.status_code"), "CANCELLED");
    assert_eq!(s(&span, "error.type"), "client_closed");
    assert!(matches!(span.status, Status::Error { .. }));
}

#[test]
fn grpc_spans_follow_rpc_conventions() {
    let mut f = fixture(|_| {});
    let mut req = grpc_request();
    *req.version_mut() = Version::HTTP_2;
    let mut e = end(200, 1);
    e.grpc_status = Some(5);
    let span = f.run(&req, true, e).unwrap();
    assert_eq!(span.name, "shop.v1.Cart/AddItem");
    assert_eq!(s(&span, "rpc.system.name"), "grpc");
    assert_eq!(s(&span, "rpc.method"), "shop.v1.Cart/AddItem");
    assert_eq!(s(&span, "rpc.response.status_code"), "NOT_FOUND");
    assert_eq!(s(&span, "network.protocol.version"), "2");
    assert_eq!(
        span.status,
        Status::Unset,
        "NOT_FOUND is not a server error"
    );
    assert!(
        attr(&span, "rpc.system").is_none(),
        "no deprecated attributes by default"
    );
    let mut e = end(200, 1);
    e.grpc_status = Some(5);
    let span = f.run(&req, false, e).unwrap();
    assert!(
        matches!(span.status, Status::Error { .. }),
        "any non-OK code on a CLIENT span"
    );
    assert_eq!(s(&span, "error.type"), "NOT_FOUND");
    // No grpc-status at all: mapped from the HTTP status.
    let span = f.run(&req, true, end(503, 1)).unwrap();
    assert_eq!(s(&span, "rpc.response.status_code"), "UNAVAILABLE");
    assert!(matches!(span.status, Status::Error { .. }));
}

#[test]
fn rpc_dup_adds_the_deprecated_attributes() {
    let mut f = fixture(|c| c.spans.rpc_semconv = meshtrace_config::RpcSemconv::Dup);
    let mut req = request("POST", "/shop.v1.Cart/AddItem", info(Sampling::Sampled));
    req.headers_mut()
        .insert("content-type", "application/grpc+proto".parse().unwrap());
    let mut e = end(200, 1);
    e.grpc_status = Some(13);
    let span = f.run(&req, true, e).unwrap();
    assert_eq!(s(&span, "rpc.system"), "grpc");
    assert_eq!(s(&span, "rpc.service"), "shop.v1.Cart");
    assert_eq!(s(&span, "rpc.grpc.status_code"), "13");
    assert_eq!(s(&span, "rpc.response.status_code"), "INTERNAL");
}

#[test]
fn tags_redaction_and_limits() {
    let mut f = fixture(|c| {
        c.spans.max_tag_length = 8;
        c.spans.max_path_length = 16;
        c.spans.tags = vec![
            Tag {
                name: "env".into(),
                value: Some("production".into()),
                env: None,
                header: None,
            },
            Tag {
                name: "team".into(),
                value: None,
                env: Some("TEAM".into()),
                header: None,
            },
            Tag {
                name: "class".into(),
                value: None,
                env: None,
                header: Some("x-request-class".into()),
            },
            Tag {
                name: "auth".into(),
                value: None,
                env: None,
                header: Some("authorization".into()),
            },
            Tag {
                name: "absent".into(),
                value: None,
                env: None,
                header: Some("x-absent".into()),
            },
        ];
    });
    let req = request("GET", "/a/very/long/path/indeed", info(Sampling::Sampled));
    let span = f.run(&req, true, end(200, 1)).unwrap();
    assert_eq!(s(&span, "env"), "producti");
    assert_eq!(s(&span, "team"), "payments");
    assert_eq!(s(&span, "class"), "gold");
    assert_eq!(s(&span, "auth"), "REDACTED");
    assert!(attr(&span, "absent").is_none());
    assert_eq!(s(&span, "url.path"), "/a/very/long/pat");
    assert_eq!(s(&span, "user_agent.original"), "curl/8.5");
    let f2 = fixture(|c| c.spans.redact.drop_query = true);
    let mut f2 = f2;
    let span = f2
        .run(
            &request("GET", "/x?a=1", info(Sampling::Sampled)),
            true,
            end(200, 1),
        )
        .unwrap();
    assert!(attr(&span, "url.query").is_none());
}

#[test]
fn tenant_formats_and_conflict_links() {
    let mut f = fixture(|_| {});
    let mut i = info(Sampling::Sampled);
    i.tenant = Some("acme".into());
    i.sampling_reason = Reason::ForcedTenant;
    i.formats.insert(Format::B3Multi);
    i.formats.insert(Format::Datadog);
    i.discarded.push(Discarded {
        format: Format::TraceContext,
        trace_id: TraceId::new(7).unwrap(),
        span_id: SpanId::new(9).unwrap(),
    });
    let span = f.run(&request("GET", "/", i), true, end(200, 1)).unwrap();
    assert_eq!(s(&span, "meshtrace.tenant"), "acme");
    assert_eq!(s(&span, "meshtrace.sampling.reason"), "forced_tenant");
    assert_eq!(
        attr(&span, "meshtrace.propagation.formats"),
        Some(&Value::Array(Array::String(vec![
            "b3multi".into(),
            "datadog".into()
        ])))
    );
    assert_eq!(span.links.len(), 1);
    let link = &span.links[0];
    assert_eq!(
        link.span_context.trace_id().to_string(),
        format!("{:032x}", 7)
    );
    assert_eq!(
        link.span_context.span_id().to_string(),
        format!("{:016x}", 9)
    );
    assert!(link
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "meshtrace.propagation.format"
            && kv.value.as_str() == "tracecontext"));
}

#[test]
fn not_sampled_spans_are_not_even_captured_without_tail_keep() {
    let f = fixture(|_| {});
    let req = request("GET", "/", info(Sampling::NotSampled));
    assert!(f
        .recorder
        .start(
            &req,
            true,
            &PeerAddress::new(([127, 0, 0, 1], 40000).into())
        )
        .is_none());
}

#[test]
fn tail_keep_exports_errors_and_slow_requests_only() {
    let mut f = fixture(|c| {
        c.sampling.tail.errors = true;
        c.sampling.tail.slow = Some(meshtrace_config::Duration::from_millis(500));
    });
    let req = request("GET", "/", info(Sampling::NotSampled));
    assert!(
        f.run(&req, true, end(200, 10)).is_none(),
        "fast and fine: dropped"
    );
    assert!(
        f.run(&req, true, end(404, 10)).is_none(),
        "4xx is not a server error"
    );
    let span = f.run(&req, true, end(500, 10)).expect("5xx kept");
    assert_eq!(s(&span, "meshtrace.sampling.reason"), "tail_error");
    assert!(
        !span.span_context.is_sampled(),
        "the propagated decision is unchanged"
    );
    let span = f.run(&req, true, end(200, 900)).expect("slow kept");
    assert_eq!(s(&span, "meshtrace.sampling.reason"), "tail_slow");
    let mut grpc = request("POST", "/a.B/C", info(Sampling::NotSampled));
    grpc.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let mut e = end(200, 1);
    e.grpc_status = Some(14);
    let span = f.run(&grpc, true, e).expect("gRPC UNAVAILABLE kept");
    assert_eq!(s(&span, "meshtrace.sampling.reason"), "tail_error");
    // Outbound (CLIENT) spans are not tail-kept.
    assert!(f.run(&req, false, end(500, 10)).is_none());
    let text = f.metrics.render();
    assert!(
        text.contains(r#"meshtrace_sampling_decisions_total{direction="inbound",decision="sampled",reason="tail_error"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"reason="tail_slow"} 1"#), "{text}");
}

#[test]
fn ip_strings_match_display() {
    for ip in [
        "0.0.0.0",
        "127.0.0.1",
        "10.20.100.255",
        "192.168.9.99",
        "::1",
        "::ffff:10.0.0.1",
    ] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        assert_eq!(super::attributes::ip_string(ip), ip.to_string());
    }
}

#[test]
fn addresses_follow_the_connection_s_peer_and_the_request_s_host() {
    let mut f = fixture(|_| {});
    // Two connections' peers.
    let a = PeerAddress::new(([10, 0, 0, 7], 40000).into());
    let b = PeerAddress::new("[fd00::8]:40000".parse().unwrap());
    let req = |host: &str| {
        let mut req = request("GET", "/cart", info(Sampling::Sampled));
        req.headers_mut()
            .insert(http::header::HOST, host.parse().unwrap());
        req
    };
    let mut run = |peer, host: &str| f.run_from(peer, &req(host), true, end(200, 1)).unwrap();
    let first = run(&a, "shop.example:8080");
    let again = run(&a, "shop.example:8080");
    let other = run(&b, "cart.example");
    let back = run(&a, "shop.example");

    for (span, peer, host) in [
        (&first, "10.0.0.7", "shop.example"),
        (&again, "10.0.0.7", "shop.example"),
        (&other, "fd00::8", "cart.example"),
        (&back, "10.0.0.7", "shop.example"),
    ] {
        assert_eq!(s(span, "client.address"), peer);
        assert_eq!(s(span, "server.address"), host);
    }
    assert_eq!(s(&first, "server.port"), "8080");
    assert!(attr(&back, "server.port").is_none());
}

#[test]
fn host_and_port_match_the_authority_s_own_reading() {
    let mut read = 0;
    for authority in [
        "shop.example",
        "shop.example:8080",
        "shop.example:",
        "10.0.0.7:80",
        "[fd00::8]",
        "[fd00::8]:8443",
        "user:pw@shop.example:81",
        "a@b@shop.example",
        "shop.example:99999",
    ] {
        let Ok(a) = authority.parse::<http::uri::Authority>() else {
            continue;
        };
        assert_eq!(
            super::attributes::host_port(&a),
            (a.host(), a.port_u16()),
            "{authority}"
        );
        read += 1;
    }
    assert!(read >= 7, "only {read} authorities parsed");
}
