//! One HTTP/2 client that never reads cannot stall another client's responses
//! from the same upstream (issue 14, defect 1).
//!
//! Both clients' requests go to one target, so they share that target's upstream
//! HTTP/2 pool. The greedy client gives its streams no flow-control window: the
//! upstream's responses to it can only wait in the sidecar. Before the fix they
//! waited in the one upstream connection's receive window until it was used up
//! (hyper's defaults: 2 MiB per stream, 5 MiB per connection), and every other
//! response on that connection stalled until its request timeout.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{outbound, MockOrigDst, Sidecar, BOUND};
use crate::http::upstream::mock::MockConnect;

/// 1 MiB for `/big`, `ok` for anything else.
fn big_or_small(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match req.uri().path() {
        "/big" => Bytes::from(vec![b'x'; 1 << 20]),
        _ => Bytes::from_static(b"ok"),
    };
    Response::new(Full::new(body))
}

/// An HTTP/2 connection to the sidecar that grants each stream `window` bytes.
async fn client(sidecar: &Sidecar, window: u32) -> http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(sidecar.addr).await.unwrap();
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(window)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://reviews:9080{path}"))
        .body(Full::default())
        .unwrap()
}

/// `stalled` streams of one client never read their 1 MiB responses; another
/// client's 2-byte response must still arrive. Returns the targets dialled.
async fn another_client_is_served_beside(stalled: usize) -> Vec<String> {
    let upstream = MockConnect::app(big_or_small);
    let original = SocketAddr::from(([10, 1, 2, 3], 9080));
    let sidecar = outbound(MockOrigDst::Fixed(original), upstream.clone()).await;

    let greedy = client(&sidecar, 0).await;
    let mut heads = JoinSet::new();
    for _ in 0..stalled {
        heads.spawn(greedy.clone().send_request(get("/big")));
    }
    // Every head is back: the upstream has answered all of them and is pushing
    // their bodies, which nobody reads.
    let mut unread = Vec::new();
    while let Some(head) = tokio::time::timeout(BOUND, heads.join_next())
        .await
        .unwrap()
    {
        let response = head.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        unread.push(response);
    }

    let mut polite = client(&sidecar, 65_535).await;
    let response = tokio::time::timeout(BOUND, polite.send_request(get("/small")))
        .await
        .expect("the small response's head stalled")
        .unwrap();
    let body = tokio::time::timeout(BOUND, response.into_body().collect())
        .await
        .expect("the small response's body stalled behind the unread streams")
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"ok");
    drop(unread);
    upstream.dialled()
}

#[tokio::test]
async fn eight_unread_streams_do_not_stall_another_client() {
    let dialled = another_client_is_served_beside(8).await;
    // Eight unread streams fit on one upstream connection without using up
    // its window: no second connection is needed.
    assert_eq!(dialled, ["10.1.2.3:9080"]);
}

#[tokio::test]
async fn a_hundred_unread_streams_do_not_stall_another_client() {
    let dialled = another_client_is_served_beside(100).await;
    // They fill the first connection (100 streams); the next request opens a
    // second one instead of waiting behind them.
    assert_eq!(dialled, ["10.1.2.3:9080", "10.1.2.3:9080"]);
}
