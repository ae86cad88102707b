//! HTTP/1.1 through the sidecar: keep-alive on both sides, streamed chunked
//! bodies, `Expect: 100-continue`, hop-by-hop headers (RFC 9110 §7.6.1), the
//! authority the client used, explicit-mode routing, and pipelining. Where the
//! exact bytes on the wire matter, the client is a raw TCP connection.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{self, H1Conn, TcpConn};
use meshtrace_tests::{sidecar, BoxError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

// === keep-alive ===

#[tokio::test]
async fn one_downstream_connection_carries_several_requests() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
    for path in ["/one", "/two", "/three"] {
        let rsp = conn.get(path).await;
        assert_eq!(rsp.headers()["x-echo-path"], path);
    }
    assert!(!conn.is_closed(), "the proxy closed the connection");
}

#[tokio::test]
async fn upstream_connection_is_reused_across_keep_alive_requests() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
    let first = conn.get("/one").await.headers()["x-echo-peer"].clone();
    let second = conn.get("/two").await.headers()["x-echo-peer"].clone();
    let third = conn.get("/three").await.headers()["x-echo-peer"].clone();
    assert_eq!([&second, &third], [&first, &first]);
    assert_eq!(app.connections(), 1);
}

// === streamed bodies ===

#[tokio::test]
async fn chunked_request_body_reaches_the_app_before_the_client_finishes_it() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let (chunks, body) = channel_body();
    send_chunk(&chunks, "first").await;
    let req = Request::post("/echo").body(body).unwrap();
    let rsp = client::http1_request(proxy.inbound_addr(), req).await;
    assert_eq!(rsp.headers()["x-echo-header-transfer-encoding"], "chunked");
    let mut echoed = rsp.into_body();
    // The app echoes what it read: seeing "first" back while the client still
    // holds "last" proves the proxy did not wait for the whole body.
    assert_eq!(next_data(&mut echoed).await, "first");
    send_chunk(&chunks, "last").await;
    drop(chunks);
    assert_eq!(client::read_body(echoed).await, "last");
}

#[tokio::test]
async fn chunked_response_reaches_the_client_before_the_app_finishes_it() {
    let (release, app) = app_streaming_two_chunks().await;
    let proxy = sidecar::new().inbound_to(app).start().await;
    let req = Request::get("/stream").body(client::empty()).unwrap();
    let rsp = client::http1_request(proxy.inbound_addr(), req).await;
    assert_eq!(rsp.headers()["transfer-encoding"], "chunked");
    let mut body = rsp.into_body();
    assert_eq!(next_data(&mut body).await, "first");
    release.send(()).expect("the app waits for its release");
    assert_eq!(client::read_body(body).await, "last");
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut raw = RawConn::connect(proxy.inbound_addr()).await;
    raw.write(
        b"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let (status, lines) = raw.head().await;
    assert_eq!(status, 100, "{lines:?}");
    raw.write(b"hello").await;
    let ((status, lines), body) = raw.response().await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(body, b"hello");
}

// === headers ===

#[tokio::test]
async fn headers_named_by_connection_are_not_forwarded() {
    let rsp = echo_request_headers(&[("connection", "x-foo"), ("x-foo", "secret")]).await;
    assert!(!rsp.headers().contains_key("x-echo-header-x-foo"));
    assert!(!rsp.headers().contains_key("x-echo-header-connection"));
}

#[tokio::test]
async fn keep_alive_proxy_connection_and_te_are_not_forwarded() {
    let rsp = echo_request_headers(&[
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
    ])
    .await;
    for name in ["keep-alive", "proxy-connection", "te"] {
        let echoed = format!("x-echo-header-{name}");
        assert!(!rsp.headers().contains_key(&echoed), "{name} was forwarded");
    }
}

#[tokio::test]
async fn end_to_end_headers_are_forwarded_unchanged() {
    let rsp = echo_request_headers(&[
        ("x-request-id", "abc-123"),
        ("authorization", "Bearer t0ken"),
        ("cache-control", "no-cache"),
        ("accept", "text/plain"),
        ("accept", "application/json"),
    ])
    .await;
    let h = rsp.headers();
    assert_eq!(h["x-echo-header-x-request-id"], "abc-123");
    assert_eq!(h["x-echo-header-authorization"], "Bearer t0ken");
    assert_eq!(h["x-echo-header-cache-control"], "no-cache");
    let accept: Vec<_> = h.get_all("x-echo-header-accept").iter().collect();
    assert_eq!(accept, ["text/plain", "application/json"]);
}

#[tokio::test]
async fn host_the_client_used_reaches_the_app_unchanged() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let host = "reviews.default.svc:9080";
    let rsp = get_as(proxy.inbound_addr(), host, "/").await;
    assert_eq!(rsp.headers()["x-echo-header-host"], host);
    assert_eq!(rsp.headers()["x-echo-authority"], host);
}

// === explicit outbound routing ===

#[tokio::test]
async fn explicit_mode_routes_by_exact_authority() {
    let (reviews, ratings) = (HttpApp::start().await, HttpApp::start().await);
    let proxy = sidecar::new()
        .explicit_route("reviews:9080", reviews.addr())
        .explicit_route("ratings:9080", ratings.addr())
        .start()
        .await;
    let rsp = get_as(proxy.outbound_addr(), "ratings:9080", "/stars").await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.headers()["x-echo-authority"], "ratings:9080");
    assert_eq!((reviews.connections(), ratings.connections()), (0, 1));
}

#[tokio::test]
async fn explicit_mode_routes_by_host_on_any_port() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .host_route("reviews", app.addr())
        .start()
        .await;
    for authority in ["reviews:80", "reviews:9080"] {
        let rsp = get_as(proxy.outbound_addr(), authority, "/").await;
        assert_eq!(rsp.status(), StatusCode::OK, "{authority}");
        assert_eq!(rsp.headers()["x-echo-authority"], authority);
    }
}

#[tokio::test]
async fn explicit_mode_answers_502_no_route_for_an_unknown_authority() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .explicit_route("reviews:9080", app.addr())
        .start()
        .await;
    let rsp = get_as(proxy.outbound_addr(), "unknown:9080", "/").await;
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(rsp.headers()["meshtrace-proxy-error"], "no_route");
    assert_eq!(app.connections(), 0);
}

// === pipelining ===

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut raw = RawConn::connect(proxy.inbound_addr()).await;
    raw.write(b"GET /first HTTP/1.1\r\nHost: app\r\n\r\nGET /second HTTP/1.1\r\nHost: app\r\n\r\n")
        .await;
    let (first, _) = raw.response().await;
    let (second, _) = raw.response().await;
    assert_eq!(header(&first, "x-echo-path"), Some("/first"));
    assert_eq!(header(&second, "x-echo-path"), Some("/second"));
}

// === helpers ===

/// `GET path` on the proxy's inbound listener in front of a fresh app, with
/// these request headers; the response echoes what the app received.
async fn echo_request_headers(headers: &[(&str, &str)]) -> Response<Bytes> {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let mut req = Request::get("/headers");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let rsp = client::http1_request(proxy.inbound_addr(), req.body(client::empty()).unwrap());
    client::collect(rsp.await).await
}

/// `GET path` with `Host: authority`, on a new connection to `addr`.
async fn get_as(addr: SocketAddr, authority: &str, path: &str) -> Response<Bytes> {
    let req = Request::get(path).header(HOST, authority);
    let rsp = client::http1_request(addr, req.body(client::empty()).unwrap());
    client::collect(rsp.await).await
}

type Chunks = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;
type ChannelBody = StreamBody<ReceiverStream<Result<Frame<Bytes>, BoxError>>>;

/// A request body the test feeds chunk by chunk; dropping the sender ends it.
/// It has no length, so HTTP/1.1 sends it chunked.
fn channel_body() -> (Chunks, ChannelBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, StreamBody::new(ReceiverStream::new(rx)))
}

async fn send_chunk(chunks: &Chunks, data: &'static str) {
    let sent = chunks.send(Ok(Frame::data(Bytes::from_static(data.as_bytes()))));
    within("queueing a request chunk", sent)
        .await
        .expect("the request body is still being read");
}

/// The next data frame of a response body.
async fn next_data(body: &mut hyper::body::Incoming) -> Bytes {
    let frame = within("the next response body frame", body.frame()).await;
    let frame = frame.expect("the body ended early").expect("a body frame");
    frame.into_data().expect("a data frame")
}

/// An app that answers its first request with a chunked body: `first` at once,
/// `last` (and the end) only once the returned sender fires.
async fn app_streaming_two_chunks() -> (oneshot::Sender<()>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        let start = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n";
        stream.write_all(start.as_bytes()).await.unwrap();
        let _ = released.await;
        stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
        // Hold the connection open until the proxy closes it.
        let _ = stream.read_u8().await;
    });
    (release, addr)
}

/// A response head as it came off the wire: the status and the header lines.
type Head = (u16, Vec<String>);

/// The value of header `name` in a raw head's lines.
fn header<'h>((_, lines): &'h Head, name: &str) -> Option<&'h str> {
    lines.iter().find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A raw HTTP/1.1 client connection that parses responses exactly as framed.
struct RawConn {
    conn: TcpConn,
    buf: Vec<u8>,
}

impl RawConn {
    async fn connect(addr: SocketAddr) -> Self {
        let conn = TcpConn::connect(addr).await;
        Self {
            conn,
            buf: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.conn.write(bytes).await;
    }

    /// The next response head (an interim `100` included).
    async fn head(&mut self) -> Head {
        let status_line = self.line().await;
        let status = status_line.strip_prefix("HTTP/1.1 ");
        let status = status.and_then(|s| s.get(..3)?.parse().ok());
        let status = status.unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut lines = Vec::new();
        loop {
            match self.line().await {
                line if line.is_empty() => return (status, lines),
                line => lines.push(line),
            }
        }
    }

    /// The next final response: its head and its body, by `content-length` or
    /// chunked framing.
    async fn response(&mut self) -> (Head, Vec<u8>) {
        let head = self.head().await;
        if header(&head, "transfer-encoding") == Some("chunked") {
            let mut body = Vec::new();
            loop {
                let size_line = self.line().await;
                let size = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    return (head, body);
                }
                body.extend(self.take(size).await);
                assert_eq!(self.take(2).await, b"\r\n");
            }
        }
        let len = header(&head, "content-length").map_or(0, |l| l.parse().unwrap());
        let body = self.take(len).await;
        (head, body)
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(end + 2).await;
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            self.fill().await;
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        self.buf.drain(..n).collect()
    }

    async fn fill(&mut self) {
        let more = self.conn.read_some().await;
        assert!(
            !more.is_empty(),
            "the proxy closed the connection mid-response"
        );
        self.buf.extend(more);
    }
}
