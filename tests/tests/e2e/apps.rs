//! The mock applications and clients, tested directly (no proxy), so the
//! end-to-end tests can trust them: when a test through the sidecar fails, the
//! sidecar is at fault.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, StatusCode};
use meshtrace_tests::apps::{GrpcApp, HttpApp, TcpBannerApp, TcpEchoApp, WsEchoApp, BANNER};
use meshtrace_tests::client::{self, H1Conn, H2Conn, TcpConn, WsMessage};
use meshtrace_tests::pb::EchoRequest;
use tonic::Code;

// === HTTP ===

#[tokio::test]
async fn http_app_echoes_what_it_received_as_headers() {
    let app = HttpApp::start().await;
    let req = Request::get("/path?q=1")
        .header("x-custom", "a")
        .header("x-custom", "b")
        .body(client::empty())
        .unwrap();
    let rsp = client::http1_request(app.addr(), req).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let h = rsp.headers();
    assert_eq!(h["x-echo-method"], "GET");
    assert_eq!(h["x-echo-path"], "/path?q=1");
    assert_eq!(h["x-echo-version"], "HTTP/1.1");
    assert_eq!(h["x-echo-authority"], app.addr().to_string());
    let custom: Vec<_> = h.get_all("x-echo-header-x-custom").iter().collect();
    assert_eq!(custom, ["a", "b"]);
}

#[tokio::test]
async fn http_app_streams_the_request_body_back() {
    let app = HttpApp::start().await;
    let req = Request::post("/echo").body(client::full("hello")).unwrap();
    let rsp = client::http1_request(app.addr(), req).await;
    assert_eq!(client::read_body(rsp.into_body()).await, "hello");
}

#[tokio::test]
async fn http_app_speaks_h2c_prior_knowledge_on_the_same_port() {
    let app = HttpApp::start().await;
    let rsp = client::http2_get(app.addr(), "/h2").await;
    assert_eq!(rsp.headers()["x-echo-version"], "HTTP/2.0");
    assert_eq!(rsp.headers()["x-echo-authority"], app.addr().to_string());
}

#[tokio::test]
async fn http_app_echoes_request_trailers() {
    let app = HttpApp::start().await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "42".parse().unwrap());
    let req = Request::post("/echo")
        .body(client::body_with_trailers("data", trailers))
        .unwrap();
    let rsp = client::http2_request(app.addr(), req).await;
    let (body, trailers) = client::read_body_and_trailers(rsp.into_body()).await;
    assert_eq!(body, "data");
    assert_eq!(trailers.expect("trailers")["x-checksum"], "42");
}

#[tokio::test]
async fn bytes_route_streams_exactly_n_generated_bytes() {
    let app = HttpApp::start().await;
    let rsp = client::http1_request(
        app.addr(),
        Request::get("/bytes/1000").body(client::empty()).unwrap(),
    )
    .await;
    assert!(rsp.headers().get("content-length").is_none());
    assert_eq!(client::read_generated(rsp.into_body()).await, 1000);
}

#[tokio::test]
async fn bytes_route_streams_large_bodies_in_generated_order() {
    let app = HttpApp::start().await;
    let n = 64 * 1024 * 1024 + 7;
    let rsp = H2Conn::connect(app.addr())
        .await
        .send(
            Request::get(format!("/bytes/{n}"))
                .body(client::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(client::read_generated(rsp.into_body()).await, n);
}

#[tokio::test]
async fn sized_route_announces_its_content_length() {
    let app = HttpApp::start().await;
    let rsp = client::http1_get(app.addr(), "/sized/70000").await;
    assert_eq!(rsp.headers()["content-length"], "70000");
    assert_eq!(rsp.body().len(), 70000);
}

#[tokio::test]
async fn count_route_counts_a_streamed_upload() {
    let app = HttpApp::start().await;
    let n = 10 * 1024 * 1024 + 3;
    let req = Request::post("/count")
        .body(client::generated_body(n, false))
        .unwrap();
    let rsp = client::http1_request(app.addr(), req).await;
    assert_eq!(client::read_body(rsp.into_body()).await, n.to_string());
}

#[tokio::test]
async fn count_route_counts_an_h2_upload_with_a_length() {
    let app = HttpApp::start().await;
    let n = 32 * 1024 * 1024;
    let req = Request::post("/count")
        .body(client::generated_body(n, true))
        .unwrap();
    let rsp = client::http2_request(app.addr(), req).await;
    assert_eq!(client::read_body(rsp.into_body()).await, n.to_string());
}

#[tokio::test]
async fn status_route_answers_with_that_status() {
    let app = HttpApp::start().await;
    let rsp = client::http1_get(app.addr(), "/status/503").await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn gate_holds_a_request_until_the_test_releases_it() {
    let app = HttpApp::start().await;
    let gate = app.gate();
    let held = tokio::spawn(client::http1_get(app.addr(), "/gate"));
    gate.arrived().await;
    assert!(!held.is_finished());
    gate.release();
    assert_eq!(held.await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn reset_route_fails_the_exchange() {
    let app = HttpApp::start().await;
    let mut conn = H1Conn::connect(app.addr()).await;
    let req = Request::get("/reset").body(client::empty()).unwrap();
    assert!(conn.try_send(req).await.is_err());
}

#[tokio::test]
async fn keep_alive_connection_serves_requests_from_one_port() {
    let app = HttpApp::start().await;
    let mut conn = H1Conn::connect(app.addr()).await;
    let one = conn.get("/one").await;
    let two = conn.get("/two").await;
    assert_eq!(one.headers()["x-echo-peer"], conn.local_addr().to_string());
    assert_eq!(two.headers()["x-echo-peer"], conn.local_addr().to_string());
    assert_eq!(app.connections(), 1);
}

#[tokio::test]
async fn h2_conn_multiplexes_concurrent_requests_on_one_connection() {
    let app = HttpApp::start().await;
    let gate = app.gate();
    let conn = H2Conn::connect(app.addr()).await;
    let (a, b) = (conn.clone(), conn.clone());
    let first = tokio::spawn(async move { a.get("/gate").await });
    let second = tokio::spawn(async move { b.get("/gate").await });
    gate.arrived().await;
    gate.arrived().await;
    gate.release();
    gate.release();
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.connections(), 1);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let app = HttpApp::start().await;
    let mut tcp = TcpConn::connect(app.addr()).await;
    tcp.write(
        b"POST /count HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    assert_eq!(tcp.read_exact(interim.len()).await, interim);
    tcp.write(b"hello").await;
    let rsp = String::from_utf8(tcp.read_some().await).unwrap();
    assert!(rsp.starts_with("HTTP/1.1 200 OK"), "{rsp}");
}

#[tokio::test]
async fn closed_resolves_when_the_server_goes_away() {
    let app = HttpApp::start().await;
    let conn = H1Conn::connect(app.addr()).await;
    drop(app);
    conn.closed().await;
    assert!(conn.is_closed());
}

// === gRPC ===

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn grpc_unary_echoes_the_message_and_the_metadata_seen() {
    let app = GrpcApp::start().await;
    let mut client = client::grpc_client(app.addr()).await;
    let mut req = tonic::Request::new(echo("hi"));
    req.metadata_mut().insert("x-test", "1".parse().unwrap());
    req.set_timeout(Duration::from_secs(5));
    let reply = client.unary(req).await.unwrap().into_inner();
    assert_eq!(reply.message, "hi");
    assert_eq!(reply.metadata["x-test"], "1");
    assert!(
        reply.metadata.contains_key("grpc-timeout"),
        "{:?}",
        reply.metadata
    );
}

#[tokio::test]
async fn grpc_unary_fails_with_the_requested_code() {
    let app = GrpcApp::start().await;
    let mut client = client::grpc_client(app.addr()).await;
    let req = EchoRequest {
        fail_with_code: Code::Unavailable as u32,
        ..echo("x")
    };
    let status = client.unary(req).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "requested failure");
}

#[tokio::test]
async fn grpc_delay_holds_the_answer_for_delay_ms() {
    let app = GrpcApp::start().await;
    let mut client = client::grpc_client(app.addr()).await;
    let started = std::time::Instant::now();
    let req = EchoRequest {
        delay_ms: 200,
        ..echo("slow")
    };
    client.unary(req).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn grpc_server_stream_sends_repeat_replies_then_the_failure() {
    let app = GrpcApp::start().await;
    let mut client = client::grpc_client(app.addr()).await;
    let req = EchoRequest {
        repeat: 3,
        fail_with_code: Code::Aborted as u32,
        ..echo("s")
    };
    let mut replies = client.server_stream(req).await.unwrap().into_inner();
    for _ in 0..3 {
        assert_eq!(replies.message().await.unwrap().unwrap().message, "s");
    }
    assert_eq!(replies.message().await.unwrap_err().code(), Code::Aborted);
}

#[tokio::test]
async fn grpc_client_stream_joins_every_message() {
    let app = GrpcApp::start().await;
    let mut client = client::grpc_client(app.addr()).await;
    let requests = futures_util::stream::iter([echo("a"), echo("b"), echo("c")]);
    let reply = client.client_stream(requests).await.unwrap().into_inner();
    assert_eq!(reply.message, "a,b,c");
}

#[tokio::test]
async fn grpc_bidi_answers_each_message_as_it_arrives() {
    let app = GrpcApp::start().await;
    let mut client = client::grpc_client(app.addr()).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for message in ["one", "two"] {
        tx.send(echo(message)).await.unwrap();
        assert_eq!(replies.message().await.unwrap().unwrap().message, message);
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
}

#[tokio::test]
async fn grpc_client_for_sends_the_given_authority() {
    let app = GrpcApp::start().await;
    let mut client = client::grpc_client_for(app.addr(), "svc:80").await;
    let reply = client.unary(echo("x")).await.unwrap().into_inner();
    assert_eq!(reply.message, "x");
}

// === TCP and WebSocket ===

#[tokio::test]
async fn tcp_echo_app_echoes_and_passes_on_the_half_close() {
    let app = TcpEchoApp::start().await;
    let mut tcp = TcpConn::connect(app.addr()).await;
    tcp.write(b"ping").await;
    assert_eq!(tcp.read_exact(4).await, b"ping");
    tcp.write(b"last").await;
    tcp.shutdown_write().await;
    assert_eq!(tcp.read_to_end().await, b"last");
}

#[tokio::test]
async fn tcp_banner_app_speaks_first() {
    let app = TcpBannerApp::start().await;
    let mut tcp = TcpConn::connect(app.addr()).await;
    assert_eq!(tcp.read_exact(BANNER.len()).await, BANNER);
    tcp.write(b"EHLO").await;
    assert_eq!(tcp.read_exact(4).await, b"EHLO");
}

#[tokio::test]
async fn ws_echo_app_echoes_messages_and_the_upgrade_request() {
    let app = WsEchoApp::start().await;
    let (mut ws, rsp) = client::ws_connect(app.addr(), "/chat").await;
    assert_eq!(rsp.headers()["x-echo-path"], "/chat");
    ws.send(WsMessage::text("hello")).await.unwrap();
    let echoed = ws.next().await.expect("a message").unwrap();
    assert_eq!(echoed, WsMessage::text("hello"));
}
