//! gRPC through the sidecar, driven by the real tonic client against the tonic
//! Echo app: every call kind streams message by message, statuses and metadata
//! pass through unchanged, and when the sidecar itself fails a call it answers
//! with a gRPC status the client understands.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use meshtrace_tests::apps::GrpcApp;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{self, H2Conn};
use meshtrace_tests::pb::echo_client::EchoClient;
use meshtrace_tests::pb::EchoRequest;
use meshtrace_tests::sidecar::{self, Builder, Proxy};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::BinaryMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};

// === call kinds ===

#[tokio::test]
async fn unary_call_is_answered_through_the_inbound_listener() {
    let (_app, _proxy, mut client) = inbound().await;
    let reply = within("the unary reply", client.unary(echo("hello")))
        .await
        .expect("the unary call succeeds")
        .into_inner();
    assert_eq!(reply.message, "hello");
}

#[tokio::test]
async fn unary_call_is_routed_by_authority_through_the_outbound_listener() {
    let app = GrpcApp::start().await;
    let proxy = sidecar::new()
        .explicit_route("echo.svc:80", app.addr())
        .start()
        .await;
    let mut client = client::grpc_client_for(proxy.outbound_addr(), "echo.svc:80").await;
    let reply = within("the unary reply", client.unary(echo("out")))
        .await
        .expect("the outbound unary call succeeds")
        .into_inner();
    assert_eq!(reply.message, "out");
}

#[tokio::test]
async fn server_stream_delivers_every_reply_then_ends_ok() {
    let (_app, _proxy, mut client) = inbound().await;
    let req = EchoRequest {
        repeat: 5,
        ..echo("tick")
    };
    let mut replies = within("the stream's headers", client.server_stream(req))
        .await
        .expect("the server stream starts")
        .into_inner();
    for n in 0..5 {
        let reply = within(format!("reply {n}"), replies.message()).await;
        assert_eq!(reply.expect("no error").expect("a reply").message, "tick");
    }
    let end = within("the end of the stream", replies.message()).await;
    assert_eq!(end.expect("the stream ends with OK"), None);
}

#[tokio::test]
async fn client_stream_messages_reach_the_app_in_order() {
    let (_app, _proxy, mut client) = inbound().await;
    let requests = tokio_stream::iter(["a", "b", "c", "d"].map(echo));
    let reply = within("the client stream's reply", client.client_stream(requests))
        .await
        .expect("the client stream succeeds")
        .into_inner();
    assert_eq!(reply.message, "a,b,c,d");
}

#[tokio::test]
async fn bidi_replies_arrive_while_the_request_stream_is_still_open() {
    let (_app, _proxy, mut client) = inbound().await;
    let (tx, rx) = mpsc::channel(1);
    let mut replies = within("the bidi headers", client.bidi(ReceiverStream::new(rx)))
        .await
        .expect("the bidi call starts")
        .into_inner();
    // Each reply must arrive before the next request is sent: a proxy that
    // buffered either stream whole would hang here.
    for message in ["one", "two", "three"] {
        tx.send(echo(message)).await.expect("the call is open");
        let reply = within(format!("the reply to {message}"), replies.message()).await;
        assert_eq!(reply.expect("no error").expect("a reply").message, message);
    }
    drop(tx);
    let end = within("the end of the bidi stream", replies.message()).await;
    assert_eq!(end.expect("the stream ends with OK"), None);
}

#[tokio::test]
async fn bidi_replies_keep_the_order_of_pipelined_requests() {
    let (_app, _proxy, mut client) = inbound().await;
    let requests = tokio_stream::iter((0..50).map(|n| echo(&n.to_string())));
    let mut replies = within("the bidi headers", client.bidi(requests))
        .await
        .expect("the bidi call starts")
        .into_inner();
    for n in 0..50 {
        let reply = within(format!("reply {n}"), replies.message()).await;
        assert_eq!(
            reply.expect("no error").expect("a reply").message,
            n.to_string()
        );
    }
}

// === statuses ===

#[tokio::test]
async fn error_status_and_message_pass_through_unchanged() {
    let (_app, _proxy, mut client) = inbound().await;
    let req = EchoRequest {
        fail_with_code: Code::PermissionDenied as u32,
        ..echo("no")
    };
    let status = within("the failed call", client.unary(req))
        .await
        .expect_err("the app fails the call");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "requested failure");
}

#[tokio::test]
async fn trailers_only_error_keeps_its_status_in_the_response_headers() {
    let app = GrpcApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let req = EchoRequest {
        fail_with_code: Code::NotFound as u32,
        ..echo("gone")
    };
    let rsp = H2Conn::connect(proxy.inbound_addr())
        .await
        .send(raw_grpc_request("Unary", &req))
        .await;
    assert_eq!(rsp.headers()["grpc-status"], "5");
    // tonic percent-encodes the space of "requested failure".
    assert_eq!(rsp.headers()["grpc-message"], "requested%20failure");
    let (body, trailers) = client::read_body_and_trailers(rsp.into_body()).await;
    assert!(body.is_empty(), "a trailers-only response has no data");
    assert!(trailers.is_none(), "nor separate trailers: {trailers:?}");
}

#[tokio::test]
async fn server_stream_ending_in_an_error_delivers_its_replies_then_the_status() {
    let (_app, _proxy, mut client) = inbound().await;
    let req = EchoRequest {
        repeat: 3,
        fail_with_code: Code::ResourceExhausted as u32,
        ..echo("part")
    };
    let mut replies = within("the stream's headers", client.server_stream(req))
        .await
        .expect("the server stream starts")
        .into_inner();
    for n in 0..3 {
        let reply = within(format!("reply {n}"), replies.message()).await;
        assert_eq!(
            reply.expect("no error yet").expect("a reply").message,
            "part"
        );
    }
    let end = within("the stream's status", replies.message()).await;
    let status = end.expect_err("the stream ends with the app's error");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "requested failure");
}

// === metadata and deadlines ===

#[tokio::test]
async fn custom_metadata_reaches_the_app_unchanged() {
    let (_app, _proxy, mut client) = inbound().await;
    let blob = BinaryMetadataValue::from_bytes(&[0, 159, 255, 7]);
    let mut req = tonic::Request::new(echo("meta"));
    req.metadata_mut()
        .insert("x-tenant", "blue".parse().expect("ascii"));
    req.metadata_mut().insert_bin("x-blob-bin", blob.clone());
    let seen = within("the unary reply", client.unary(req))
        .await
        .expect("the call succeeds")
        .into_inner()
        .metadata;
    assert_eq!(seen["x-tenant"], "blue");
    let encoded = std::str::from_utf8(blob.as_encoded_bytes()).expect("base64 is ascii");
    assert_eq!(seen["x-blob-bin"], encoded);
}

#[tokio::test]
async fn grpc_timeout_header_reaches_the_app_unchanged() {
    let (_app, _proxy, mut client) = inbound().await;
    let mut req = tonic::Request::new(echo("timed"));
    req.set_timeout(Duration::from_secs(7));
    let sent = req.metadata().get("grpc-timeout").expect("set").clone();
    let seen = within("the unary reply", client.unary(req))
        .await
        .expect("the call succeeds")
        .into_inner()
        .metadata;
    assert_eq!(seen["grpc-timeout"], sent.to_str().expect("ascii"));
}

/// tonic's client enforces its own deadline and reports the expiry of its own
/// timer as `CANCELLED` (not `DEADLINE_EXCEEDED`, which a server would send).
#[tokio::test]
async fn client_deadline_shorter_than_the_app_delay_cancels_the_call() {
    let (_app, _proxy, mut client) = inbound().await;
    let app_delay = Duration::from_secs(10);
    let mut req = tonic::Request::new(slow(app_delay));
    req.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let status = within("the expired call", client.unary(req))
        .await
        .expect_err("the deadline expires first");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(started.elapsed() < app_delay);
}

#[tokio::test]
async fn sidecar_request_timeout_shorter_than_the_app_delay_is_deadline_exceeded() {
    let (_app, _proxy, mut client) = inbound_with(|b| b.request_timeout(200)).await;
    let status = within(
        "the timed-out call",
        client.unary(slow(Duration::from_secs(10))),
    )
    .await
    .expect_err("the sidecar times the call out");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().starts_with("meshtrace: "), "{status:?}");
    assert_eq!(proxy_error(&status), Some("request_timeout"), "{status:?}");
}

#[tokio::test]
async fn upstream_down_is_unavailable_with_a_message_naming_the_cause() {
    let proxy = sidecar::new().inbound_to(closed_port()).start().await;
    let mut client = client::grpc_client(proxy.inbound_addr()).await;
    let status = within("the failed call", client.unary(echo("anyone?")))
        .await
        .expect_err("nothing listens upstream");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("refused"), "{status:?}");
    assert_eq!(proxy_error(&status), Some("connect_refused"), "{status:?}");
}

// === helpers ===

/// The Echo app behind a default sidecar's inbound listener, and a client of it.
async fn inbound() -> (GrpcApp, Proxy, EchoClient<Channel>) {
    inbound_with(|b| b).await
}

/// Like [`inbound`], with the sidecar configured by `configure`.
async fn inbound_with(
    configure: impl FnOnce(Builder) -> Builder,
) -> (GrpcApp, Proxy, EchoClient<Channel>) {
    let app = GrpcApp::start().await;
    let proxy = configure(sidecar::new().inbound_to(app.addr()))
        .start()
        .await;
    let client = client::grpc_client(proxy.inbound_addr()).await;
    (app, proxy, client)
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}

/// A request the app answers only after `delay`.
fn slow(delay: Duration) -> EchoRequest {
    EchoRequest {
        delay_ms: u32::try_from(delay.as_millis()).expect("a short delay"),
        ..echo("slow")
    }
}

/// A hand-made gRPC request for `method`, so a test can see the HTTP/2 frames
/// of the response that tonic would hide.
fn raw_grpc_request(method: &str, msg: &EchoRequest) -> Request<client::RequestBody> {
    let payload = msg.encode_to_vec();
    let len = u32::try_from(payload.len()).expect("a small message");
    let mut framed = vec![0];
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&payload);
    Request::post(format!("/meshtrace.test.v1.Echo/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(client::full(Bytes::from(framed)))
        .expect("a valid gRPC request")
}

/// The `meshtrace-proxy-error` metadata that marks a sidecar-made status.
fn proxy_error(status: &Status) -> Option<&str> {
    let value = status.metadata().get("meshtrace-proxy-error")?;
    value.to_str().ok()
}

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound address")
}
