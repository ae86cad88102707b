//! A request body the HTTP/2 client breaks is the client's error, not the
//! upstream's (issue 14, defect 5, over HTTP/2).
//!
//! Over HTTP/1 the sidecar answers such a body with its own 400. Over HTTP/2
//! the protocol layer answers the client first: RFC 9113 §8.1.1 makes DATA
//! that ends short of (or past) `content-length` a malformed request, a stream
//! error of type `PROTOCOL_ERROR`, so the client gets `RST_STREAM`. The
//! sidecar, sending the body upstream as it arrives, sees it break and resets
//! the upstream stream; the request is recorded as the client's, a 400
//! `bad_request_body` as over HTTP/1 (that answer reaches no one: the stream is
//! gone), with no upstream error counted.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::Value;
use tokio::net::TcpStream;

use super::{outbound, MockOrigDst, BOUND};
use crate::http::upstream::mock::{Behaviour, MockConnect};

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_the_clients_error() {
    // The upstream reads the request and never answers, so only the body can fail.
    let upstream = MockConnect::new(Behaviour::Silent);
    let original = SocketAddr::from(([10, 1, 2, 3], 9080));
    let mut sidecar = outbound(MockOrigDst::Fixed(original), upstream).await;
    let stream = TcpStream::connect(sidecar.addr).await.unwrap();
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://reviews:9080/upload")
        .header("content-length", "10")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let answer = tokio::time::timeout(BOUND, sender.send_request(req))
        .await
        .unwrap();
    let reset = answer.err().and_then(|e| {
        let h2 = std::error::Error::source(&e)?.downcast_ref::<h2::Error>()?;
        h2.reason()
    });
    assert_eq!(reset, Some(h2::Reason::PROTOCOL_ERROR));

    let error_type = sidecar.next_error_type().await;
    assert_eq!(error_type, Some(Value::from("bad_request_body")));
    let text = sidecar.metrics.render();
    let upstream_errors = text
        .lines()
        .filter(|l| l.starts_with("meshtrace_upstream_errors_total"))
        .any(|l| !l.ends_with(" 0"));
    assert!(!upstream_errors, "{text}");
    assert!(text.contains(
        r#"meshtrace_requests_total{direction="outbound",protocol="http2",status_class="4xx"} 1"#
    ));
}
