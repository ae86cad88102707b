//! HTTP/2 (h2c, prior knowledge) through the sidecar's inbound listener: bodies
//! stream both ways under flow control, concurrent streams share connections on
//! both sides, trailers pass through, and a drain ends a connection with GOAWAY
//! after its open streams finish.

use std::collections::HashSet;

use http::{HeaderMap, Request, StatusCode};
use meshtrace_tests::apps::{Gate, HttpApp};
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{self, H2Conn};
use meshtrace_tests::sidecar::{self, Proxy};
use tokio::task::JoinHandle;

#[tokio::test]
async fn request_and_response_bodies_cross_the_sidecar_over_http2() {
    let (_app, proxy) = inbound().await;
    let conn = H2Conn::connect(proxy.inbound_addr()).await;
    let req = Request::post("/echo")
        .body(client::full("ping over h2"))
        .expect("a valid request");
    let rsp = client::collect(conn.send(req).await).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.headers()["x-echo-version"], "HTTP/2.0");
    assert_eq!(rsp.body(), "ping over h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_one_connection_are_multiplexed_upstream() {
    const STREAMS: usize = 100;
    let (app, proxy) = inbound().await;
    let gate = app.gate();
    let conn = H2Conn::connect(proxy.inbound_addr()).await;
    let held: Vec<_> = (0..STREAMS)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.get("/gate").await })
        })
        .collect();
    // Every stream is at the app at once before any is answered: they were
    // multiplexed, not queued behind one another.
    for _ in 0..STREAMS {
        gate.arrived().await;
    }
    for _ in 0..STREAMS {
        gate.release();
    }
    let mut peers = HashSet::new();
    for stream in held {
        let rsp = within("a multiplexed response", stream)
            .await
            .expect("the stream's task completes");
        assert_eq!(rsp.status(), StatusCode::OK);
        peers.insert(rsp.headers()["x-echo-peer"].clone());
    }
    // Multiplexed, not one connection per stream. hyper's pool may open a second
    // HTTP/2 connection when a burst arrives while the first handshake is still
    // in flight (seen once in ~20 runs), so one or two are both correct.
    assert!(peers.len() <= 2, "upstream connections used: {peers:?}");
    assert!(
        app.connections() <= 2,
        "app saw {} connections",
        app.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_streams_through_both_ways_intact() {
    const LEN: u64 = 64 * 1024 * 1024;
    let (_app, proxy) = inbound().await;
    let conn = H2Conn::connect(proxy.inbound_addr()).await;
    // The app streams the upload back as it arrives, so both directions are in
    // flight at once and neither fits in the flow-control windows.
    let req = Request::post("/echo")
        .body(client::generated_body(LEN, true))
        .expect("a valid request");
    let rsp = conn.send(req).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(client::read_generated(rsp.into_body()).await, LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_streams_through_intact() {
    const LEN: u64 = 64 * 1024 * 1024 + 13;
    let (_app, proxy) = inbound().await;
    let conn = H2Conn::connect(proxy.inbound_addr()).await;
    let req = Request::get(format!("/bytes/{LEN}"))
        .body(client::empty())
        .expect("a valid request");
    let rsp = conn.send(req).await;
    assert_eq!(client::read_generated(rsp.into_body()).await, LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_reaches_the_app_whole() {
    const LEN: u64 = 64 * 1024 * 1024 + 13;
    let (_app, proxy) = inbound().await;
    let conn = H2Conn::connect(proxy.inbound_addr()).await;
    let req = Request::post("/count")
        .body(client::generated_body(LEN, false))
        .expect("a valid request");
    let rsp = conn.send(req).await;
    assert_eq!(client::read_body(rsp.into_body()).await, LEN.to_string());
}

#[tokio::test]
async fn trailers_pass_through_both_ways() {
    let (_app, proxy) = inbound().await;
    let conn = H2Conn::connect(proxy.inbound_addr()).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "c0ffee".parse().expect("a header value"));
    // The app echoes the request's trailers as the response's.
    let req = Request::post("/echo")
        .body(client::body_with_trailers("payload", trailers))
        .expect("a valid request");
    let rsp = conn.send(req).await;
    let (body, trailers) = client::read_body_and_trailers(rsp.into_body()).await;
    assert_eq!(body, "payload");
    assert_eq!(trailers.expect("response trailers")["x-checksum"], "c0ffee");
}

// === graceful drain ===

#[tokio::test]
async fn drain_lets_the_in_flight_stream_finish() {
    let draining = Draining::start().await;
    draining.gate.release();
    let rsp = within("the in-flight response", draining.in_flight)
        .await
        .expect("the stream's task completes");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.body(), "released");
}

#[tokio::test]
async fn drain_refuses_new_streams_on_an_open_connection() {
    let draining = Draining::start().await;
    // Streams the client opened before the GOAWAY reached it are still served;
    // once it arrives, hyper's client refuses to open any more.
    let refused = within("a new stream to be refused", async {
        loop {
            let req = Request::get("/after").body(client::empty()).expect("valid");
            match draining.conn.try_send(req).await {
                Ok(rsp) => assert_eq!(rsp.status(), StatusCode::OK),
                Err(error) => return error,
            }
        }
    })
    .await;
    assert!(refused.is_canceled(), "{refused:?}");
    // A GOAWAY, not a closed connection: the held stream still completes.
    draining.gate.release();
    let rsp = within("the in-flight response", draining.in_flight)
        .await
        .expect("the stream's task completes");
    assert_eq!(rsp.status(), StatusCode::OK);
}

#[tokio::test]
async fn drain_completes_once_the_open_streams_finish() {
    let draining = Draining::start().await;
    draining.gate.release();
    within("the in-flight response", draining.in_flight)
        .await
        .expect("the stream's task completes");
    draining.conn.closed().await;
    assert!(draining.proxy.wait().await, "the drain timed out");
}

/// A sidecar told to drain while one HTTP/2 stream is held at the app's gate.
struct Draining {
    _app: HttpApp,
    proxy: Proxy,
    gate: Gate,
    conn: H2Conn,
    in_flight: JoinHandle<http::Response<bytes::Bytes>>,
}

impl Draining {
    async fn start() -> Self {
        let app = HttpApp::start().await;
        let proxy = sidecar::new()
            .inbound_to(app.addr())
            .drain_timeout(15_000)
            .start()
            .await;
        let gate = app.gate();
        let conn = H2Conn::connect(proxy.inbound_addr()).await;
        let held = conn.clone();
        let in_flight = tokio::spawn(async move { held.get("/gate").await });
        gate.arrived().await;
        proxy.shutdown();
        Self {
            _app: app,
            proxy,
            gate,
            conn,
            in_flight,
        }
    }
}

// === helpers ===

/// The HTTP app behind a default sidecar's inbound listener.
async fn inbound() -> (HttpApp, Proxy) {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    (app, proxy)
}
