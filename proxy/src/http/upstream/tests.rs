use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::propagation::Format;

const BOUND: Duration = Duration::from_secs(5);

/// A raw HTTP/1 upstream answering `ok` to each request: it counts
/// connections, reports each one's end, and with `close` drops the connection
/// after every response without saying so (as a restarting app does).
async fn upstream(close: bool) -> (SocketAddr, Arc<AtomicUsize>, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (ended, ends) = mpsc::channel(64);
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let reply = reply_to(&head);
                        if stream.write_all(&reply).await.is_err() || close {
                            let _ = ended.send(()).await;
                            return;
                        }
                    }
                }
                let _ = ended.send(()).await;
            });
        }
    });
    (addr, accepted, ends)
}

/// The raw upstream's response to a request head: `ok`; no body for `HEAD`;
/// [`BIG`] bytes for `GET /big` (more than one read of the proxy's).
fn reply_to(head: &[u8]) -> Vec<u8> {
    let body = if head.starts_with(b"HEAD ") {
        return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n".to_vec();
    } else if head.starts_with(b"GET /big ") {
        vec![b'x'; BIG]
    } else {
        b"ok".to_vec()
    };
    let mut reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
    reply.push_str(std::str::from_utf8(&body).unwrap());
    reply.into_bytes()
}

/// The size of the raw upstream's big body.
const BIG: usize = 256 * 1024;

/// An HTTP/2 upstream answering `ok`, or with `held` only once the test says
/// so (a message on the channel); it reports each connection's end.
async fn h2_upstream(held: Option<mpsc::Receiver<()>>) -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = mpsc::channel(64);
    let held = Arc::new(tokio::sync::Mutex::new(held));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (ended, held) = (ended.clone(), held.clone());
            let service = service_fn(move |_| {
                let held = held.clone();
                async move {
                    if let Some(release) = held.lock().await.as_mut() {
                        release.recv().await;
                    }
                    let ok = http_body_util::Full::new(Bytes::from_static(b"ok"));
                    Ok::<_, std::convert::Infallible>(Response::new(ok))
                }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service);
                let _ = conn.await;
                let _ = ended.send(()).await;
            });
        }
    });
    (addr, ends)
}

/// A front server forwarding every request through `pool`, as the sidecar's
/// stack does (its request bodies are hyper's `Incoming`; HTTP/2 requests get
/// the absolute URI the forwarding layer gives them).
async fn front(pool: HttpClient) -> SocketAddr {
    rendering_front(pool, &[]).await
}

/// A [`front`] that also renders `formats` for each request, as the trace
/// layer does (removing the trace headers it came with).
async fn rendering_front(pool: HttpClient, formats: &'static [Format]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pool = pool.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                let pool = pool.clone();
                if pool.wire == Wire::Http2 {
                    *req.uri_mut() = http::Uri::from_static("http://app/");
                }
                if !formats.is_empty() {
                    let rendered = crate::test_support::render_for_hop(req.headers_mut(), formats);
                    req.extensions_mut().insert(rendered);
                }
                async move { pool.send(req).await }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Sends `n` GETs one after another on one connection to `front`.
async fn get_sequentially(front: SocketAddr, n: usize) {
    for body in exchange(front, http::Method::GET, "/", n).await {
        assert_eq!(&body[..], b"ok");
    }
}

/// Sends `n` requests one after another on one connection to `front`; their
/// response bodies.
async fn exchange(front: SocketAddr, method: http::Method, path: &str, n: usize) -> Vec<Bytes> {
    let mut sender = client::<http_body_util::Empty<Bytes>>(front).await;
    let mut bodies = Vec::new();
    for _ in 0..n {
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "app")
            .body(Default::default())
            .unwrap();
        let response = tokio::time::timeout(BOUND, sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect();
        bodies.push(
            tokio::time::timeout(BOUND, body)
                .await
                .unwrap()
                .unwrap()
                .to_bytes(),
        );
    }
    bodies
}

/// The HTTP/1 pool for `upstream`; the reaper runs while the `Upstreams` lives.
fn pool(upstream: SocketAddr, idle: Duration) -> (Upstreams, HttpClient) {
    pool_of(Wire::Http1, upstream, idle)
}

/// The pool speaking `wire` to `upstream`.
fn pool_of(wire: Wire, upstream: SocketAddr, idle: Duration) -> (Upstreams, HttpClient) {
    let upstreams = Upstreams::new(Duration::from_secs(1), idle);
    let pool = upstreams.client(&Arc::new(upstream.into()), wire);
    (upstreams, pool)
}

/// How many connections the upstream accepted for 20 sequential GETs through
/// the pool; with `close` the upstream drops each connection after responding.
async fn connections_for_20_gets(close: bool) -> usize {
    let (addr, accepted, _) = upstream(close).await;
    let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
    let front = front(pool).await;
    get_sequentially(front, 20).await;
    accepted.load(Ordering::SeqCst)
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    assert_eq!(connections_for_20_gets(false).await, 1);
}

#[tokio::test]
async fn a_response_without_a_body_gives_its_connection_back() {
    // hyper never polls a HEAD response's body: it is dropped, and the
    // connection (driven by the exchange, not a task) must still be reusable.
    let (addr, accepted, _) = upstream(false).await;
    let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
    let front = front(pool).await;
    let bodies = exchange(front, http::Method::HEAD, "/", 5).await;
    assert!(bodies.iter().all(Bytes::is_empty));
    get_sequentially(front, 2).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_longer_than_a_read_streams_whole_and_the_connection_is_reused() {
    let (addr, accepted, _) = upstream(false).await;
    let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
    let front = front(pool).await;
    for body in exchange(front, http::Method::GET, "/big", 3).await {
        assert_eq!(body.len(), BIG);
    }
    get_sequentially(front, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced_without_failing_a_request() {
    assert_eq!(connections_for_20_gets(true).await, 20);
}

#[tokio::test]
async fn a_connection_still_sending_an_upload_is_not_handed_to_the_next_request() {
    let (addr, accepted, _) = upstream(false).await;
    let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
    let front = front(pool).await;
    // The upstream answers at once; the upload's body then stalls for good.
    let stream = TcpStream::connect(front).await.unwrap();
    let (mut uploader, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let chunk = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x")))
    });
    let stalled = http_body_util::StreamBody::new(futures_util::StreamExt::chain(
        chunk,
        futures_util::stream::pending(),
    ));
    let req = Request::post("/upload")
        .header("host", "app")
        .header("content-length", "10")
        .body(stalled)
        .unwrap();
    let response = tokio::time::timeout(BOUND, uploader.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    // Another client's request gets a connection of its own, not a wait.
    get_sequentially(front, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let (addr, accepted, mut ends) = upstream(false).await;
    let (_upstreams, pool) = pool(addr, Duration::from_millis(200));
    let front = front(pool).await;
    get_sequentially(front, 3).await;
    // The reaper closes the idle connection: the upstream sees it end.
    tokio::time::timeout(BOUND, ends.recv()).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idle_h2_connections_close_after_the_idle_timeout() {
    let (addr, mut ends) = h2_upstream(None).await;
    let (_upstreams, pool) = pool_of(Wire::Http2, addr, Duration::from_millis(200));
    let front = front(pool.clone()).await;
    get_sequentially(front, 3).await;
    assert_eq!(pool.lock().h2.len(), 1, "three requests, one connection");
    tokio::time::timeout(BOUND, ends.recv()).await.unwrap();
    assert!(pool.lock().h2.is_empty());
}

#[tokio::test]
async fn an_h2_connection_with_a_stream_open_is_not_idle() {
    let (release, held) = mpsc::channel(1);
    let (addr, mut ends) = h2_upstream(Some(held)).await;
    let idle = Duration::from_millis(100);
    let (_upstreams, pool) = pool_of(Wire::Http2, addr, idle);
    let front = front(pool).await;
    let request = tokio::spawn(get_sequentially(front, 1));
    // Ten idle timeouts with the one stream open (its response held back):
    // the reaper must leave the connection alone.
    let ended = tokio::time::timeout(idle * 10, ends.recv()).await;
    assert!(ended.is_err(), "the reaper closed a busy connection");
    release.send(()).await.unwrap();
    tokio::time::timeout(BOUND, request).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_dial_is_classified() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
    let Err(error) = pool.dial_h1().await else {
        panic!("dialled a closed port");
    };
    assert_eq!(classify(&error), ErrorKind::ConnectRefused);
}

/// An HTTP/2 upstream that reports each request as it arrives (on `arrived`)
/// and answers `ok` once given a permit of `release`.
async fn held_h2_upstream(
    arrived: mpsc::UnboundedSender<()>,
    release: Arc<tokio::sync::Semaphore>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (arrived, release) = (arrived.clone(), release.clone());
            let service = service_fn(move |_| {
                let (arrived, release) = (arrived.clone(), release.clone());
                async move {
                    let _ = arrived.send(());
                    release.acquire().await.unwrap().forget();
                    let ok = http_body_util::Full::new(Bytes::from_static(b"ok"));
                    Ok::<_, std::convert::Infallible>(Response::new(ok))
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[test]
fn an_h2_request_waits_for_its_response_in_the_task_that_sent_it() {
    // The upstream runs on a runtime of its own: only the sidecar side's tasks
    // are counted, on this one.
    let upstream_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let addr = upstream_runtime.block_on(held_h2_upstream(arrived_tx, release.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_upstreams, pool) = pool_of(Wire::Http2, addr, Duration::from_secs(60));
        let front = front(pool).await;
        let metrics = tokio::runtime::Handle::current().metrics();
        let (mut clients, mut alive) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let mut client = TcpStream::connect(front).await.unwrap();
            client
                .write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
                .await
                .unwrap();
            tokio::time::timeout(BOUND, arrived.recv())
                .await
                .unwrap()
                .unwrap();
            alive.push(metrics.num_alive_tasks());
            clients.push(client);
        }
        // One task more per request in flight: the front's connection, which
        // sent it and waits for its response. (hyper's client spawned another
        // per request to wait in.)
        let added: Vec<usize> = alive.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            added,
            [1, 1, 1, 1],
            "tasks alive, 1 to 5 requests: {alive:?}"
        );
        release.add_permits(clients.len());
        for mut client in clients {
            let mut answer = Vec::new();
            while !answer.ends_with(b"\r\n\r\nok") {
                let mut chunk = [0u8; 1024];
                let read = tokio::time::timeout(BOUND, client.read(&mut chunk));
                let n = read.await.unwrap().unwrap();
                assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
                answer.extend_from_slice(&chunk[..n]);
            }
        }
    });
}

/// An HTTP/2 upstream answering each request with its body: streamed back as
/// it arrives (`echo`), or read whole first and answered with its length.
async fn h2_body_upstream(echo: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(move |req: Request<Incoming>| async move {
                let body = if echo {
                    req.into_body().boxed()
                } else {
                    let whole = req.into_body().collect().await?.to_bytes();
                    let length = Bytes::from(whole.len().to_string());
                    http_body_util::Full::new(length)
                        .map_err(|never| match never {})
                        .boxed()
                };
                Ok::<_, hyper::Error>(Response::new(body))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A new HTTP/1 client connection to `front`, sending bodies of type `B`.
async fn client<B>(front: SocketAddr) -> http1::SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(front).await.unwrap();
    let (sender, conn) = http1::handshake::<_, B>(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// POSTs `body` through `front` on a new connection; the response body.
async fn post(front: SocketAddr, body: Bytes) -> Bytes {
    let mut sender = client::<http_body_util::Full<Bytes>>(front).await;
    let req = Request::post("/")
        .header("host", "app")
        .body(http_body_util::Full::new(body))
        .unwrap();
    let exchange = async {
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap().to_bytes()
    };
    tokio::time::timeout(BOUND, exchange).await.unwrap()
}

/// Bodies larger than the upstream's windows (hyper's server: 1 MiB for the
/// stream and the connection), so the upload waits for send capacity.
const UPLOAD: usize = 3 * 1024 * 1024 + 5;

#[tokio::test]
async fn an_h2_upload_larger_than_the_window_is_sent_whole_before_the_answer() {
    let (_upstreams, pool) = pool_of(Wire::Http2, h2_body_upstream(false).await, BOUND);
    let front = front(pool).await;
    let body = Bytes::from(vec![b'u'; UPLOAD]);
    assert_eq!(post(front, body).await, UPLOAD.to_string().as_bytes());
}

#[tokio::test]
async fn an_h2_upload_still_going_when_the_answer_starts_is_sent_on_whole() {
    // The echo answers at once, so the upload goes on in a task of its own.
    let (_upstreams, pool) = pool_of(Wire::Http2, h2_body_upstream(true).await, BOUND);
    let front = front(pool).await;
    let body = Bytes::from((0..UPLOAD).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    assert_eq!(post(front, body.clone()).await, body);
}

#[tokio::test]
async fn a_request_body_that_breaks_on_its_way_to_an_h2_upstream_is_the_clients_error() {
    // The upstream never answers: only the body can end the exchange.
    let (arrived, _) = mpsc::unbounded_channel();
    let held = held_h2_upstream(arrived, Arc::new(tokio::sync::Semaphore::new(0))).await;
    let (_upstreams, pool) = pool_of(Wire::Http2, held, BOUND);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    let (failed, mut failures) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = service_fn(move |mut req: Request<Incoming>| {
            let (pool, failed) = (pool.clone(), failed.clone());
            *req.uri_mut() = http::Uri::from_static("http://app/");
            crate::http::headers::strip_hop_by_hop(req.headers_mut(), false);
            async move {
                let error = pool.send(req).await.unwrap_err();
                let _ = failed.send(downstream_body_error(&error).is_some());
                Err::<Response<UpstreamBody>, _>(error)
            }
        });
        let serving = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let _ = serving.await;
    });
    let mut client = TcpStream::connect(front).await.unwrap();
    let malformed =
        "POST / HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nbad\r\n";
    client.write_all(malformed.as_bytes()).await.unwrap();
    let failure = tokio::time::timeout(BOUND, failures.recv()).await.unwrap();
    assert_eq!(failure, Some(true), "the upstream was blamed");
}

/// A raw HTTP/1 upstream: each connection it accepts is served by `serve`,
/// given the connection's index (0 for the first); it counts connections.
async fn scripted_upstream<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let index = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(index, stream));
        }
    });
    (addr, accepted)
}

/// Reads one request head (and whatever follows it in the same reads); `None`
/// once the connection ends.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(n @ 1..) => head.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    Some(head)
}

/// A raw upstream answering every request head on its connection `index`
/// (0 for the first) with `answer(index)`.
async fn answering_upstream(answer: fn(usize) -> &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    scripted_upstream(move |index, mut stream| async move {
        while read_head(&mut stream).await.is_some() {
            if stream.write_all(answer(index)).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A client of a [`reporting_front`] forwarding through a new HTTP/1 pool to
/// `upstream`; keep the `Upstreams` (its reaper) while the test runs.
async fn reporting_client(
    upstream: SocketAddr,
) -> (Upstreams, http1::SendRequest<http_body_util::Full<Bytes>>) {
    let (upstreams, pool) = pool(upstream, Duration::from_secs(60));
    let front = reporting_front(pool).await;
    (upstreams, client(front).await)
}

/// A front server that sends each request through `pool` and answers with
/// what came back: the response body read whole, its trailers as headers
/// (`x-trailer-NAME`); or a 502 whose body is the send's error.
async fn reporting_front(pool: HttpClient) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pool = pool.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let pool = pool.clone();
                async move {
                    let mut answer = Response::builder();
                    let body = match pool.send(req).await {
                        Ok(response) => match response.into_body().collect().await {
                            Ok(collected) => {
                                for (name, value) in collected.trailers().into_iter().flatten() {
                                    answer = answer.header(format!("x-trailer-{name}"), value);
                                }
                                collected.to_bytes()
                            }
                            Err(error) => {
                                answer = answer.status(StatusCode::BAD_GATEWAY);
                                Bytes::from(format!("body: {error}"))
                            }
                        },
                        Err(error) => {
                            answer = answer.status(StatusCode::BAD_GATEWAY);
                            Bytes::from(format!("{error}"))
                        }
                    };
                    answer.body(http_body_util::Full::new(body))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Sends `method /` with `body` through `front` on `sender`: status and body.
async fn ask(
    sender: &mut http1::SendRequest<http_body_util::Full<Bytes>>,
    method: http::Method,
    body: &'static [u8],
) -> (Response<()>, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header("host", "app")
        .body(http_body_util::Full::new(Bytes::from_static(body)))
        .unwrap();
    let exchange = async {
        let (head, body) = sender.send_request(req).await.unwrap().into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (Response::from_parts(head, ()), body)
    };
    tokio::time::timeout(BOUND, exchange).await.unwrap()
}

#[tokio::test]
async fn a_get_whose_idle_connection_the_upstream_closed_under_it_is_sent_again_but_a_post_is_not()
{
    // Each connection answers one request, then reads the next request's head
    // and closes without a word: an upstream timing out its idle connection
    // just as the request arrives.
    let (addr, accepted) = scripted_upstream(|_, mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let _ = read_head(&mut stream).await;
        }
    })
    .await;
    let (_upstreams, mut sender) = reporting_client(addr).await;
    for _ in 0..2 {
        let (head, body) = ask(&mut sender, http::Method::GET, b"").await;
        assert_eq!((head.status(), &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the second GET was sent again"
    );
    // A POST with a body may have been acted on: it is not sent twice.
    let (head, body) = ask(&mut sender, http::Method::POST, b"pay").await;
    assert_eq!(head.status(), StatusCode::BAD_GATEWAY, "{body:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_chunked_response_arrives_whole_with_its_trailers_and_its_connection_is_reused() {
    let (addr, accepted) = answering_upstream(|_| {
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n"
    })
    .await;
    let (_upstreams, mut sender) = reporting_client(addr).await;
    for _ in 0..3 {
        let (head, body) = ask(&mut sender, http::Method::GET, b"").await;
        assert_eq!(&body[..], b"hello world");
        assert_eq!(head.headers()["x-trailer-x-checksum"], "42");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_with_two_lengths_is_the_upstreams_error_and_its_connection_is_not_reused() {
    let (addr, accepted) = answering_upstream(|index| match index {
        0 => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    })
    .await;
    let (_upstreams, mut sender) = reporting_client(addr).await;
    let (head, body) = ask(&mut sender, http::Method::GET, b"").await;
    assert_eq!(head.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(&body[..], b"request: invalid content-length");
    let (head, body) = ask(&mut sender, http::Method::GET, b"").await;
    assert_eq!((head.status(), &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn request_bodies_reach_an_http1_upstream_framed_as_they_came() {
    // The upstream answers with the request head and body it read, as text.
    let (addr, _) = scripted_upstream(|_, mut stream| async move {
        while let Some(mut got) = read_head(&mut stream).await {
            let chunked = got.windows(8).any(|w| w == b"chunked\r");
            let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
            let length = |got: &[u8]| {
                let head = String::from_utf8_lossy(got).to_lowercase();
                let value = head
                    .split("content-length: ")
                    .nth(1)?
                    .split("\r\n")
                    .next()?;
                value.parse::<usize>().ok()
            };
            let head_len = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            loop {
                let body = &got[head_len..];
                let done = match length(&got[..head_len]) {
                    Some(n) => body.len() >= n,
                    None => !chunked || body.ends_with(end),
                };
                if done {
                    break;
                }
                let mut chunk = [0u8; 1024];
                match stream.read(&mut chunk).await {
                    Ok(n @ 1..) => got.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let mut answer =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", got.len()).into_bytes();
            answer.extend_from_slice(&got);
            if stream.write_all(&answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (_upstreams, pool) = pool(addr, Duration::from_secs(60));
    let front = reporting_front(pool).await;
    // A sized body keeps its length.
    let mut sender = client(front).await;
    let (_, seen) = ask(&mut sender, http::Method::POST, b"hello").await;
    let seen = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(seen.starts_with("post / http/1.1\r\n"), "{seen}");
    assert!(
        seen.contains("content-length: 5\r\n") && seen.ends_with("\r\n\r\nhello"),
        "{seen}"
    );
    // A streamed body (chunked on arrival) is sent chunked.
    let mut raw = TcpStream::connect(front).await.unwrap();
    let chunked = "POST /s HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n\
                   3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    raw.write_all(chunked.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        while !String::from_utf8_lossy(&answer).ends_with("0\r\n\r\n") {
            let n = raw.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(BOUND, read_all).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(
        answer.contains("transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
        "{answer}"
    );
    assert_eq!(answer.matches("transfer-encoding").count(), 1, "{answer}");
}

/// An in-memory upstream connection whose writes fail, without writing a
/// byte, once `broken` is set: a socket the peer reset.
struct Breakable {
    io: tokio::io::DuplexStream,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for Breakable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Breakable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        if self.broken.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Dials in-memory connections to an upstream answering `ok` to every request
/// head (and the body the head announces), each with a switch that breaks it.
#[derive(Default)]
struct BreakableConnect {
    switches: std::sync::Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>,
}

impl Connect for BreakableConnect {
    fn connect(&self, _: &HostPort) -> Connecting {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.switches.lock().unwrap().push(broken.clone());
        tokio::spawn(async move {
            while let Some(head) = read_head(&mut server).await {
                let text = String::from_utf8_lossy(&head).to_lowercase();
                let end = text.find("\r\n\r\n").unwrap() + 4;
                let length = text
                    .split("content-length: ")
                    .nth(1)
                    .and_then(|v| v.split("\r\n").next()?.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = head.len() - end;
                let mut chunk = [0u8; 1024];
                while body < length {
                    match server.read(&mut chunk).await {
                        Ok(n @ 1..) => body += n,
                        _ => return,
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if server.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(async move { Ok(Box::new(Breakable { io: client, broken }) as Box<dyn Io>) })
    }
}

#[tokio::test]
async fn a_post_none_of_which_reached_a_connection_that_broke_is_sent_on_the_next() {
    let connect = Arc::new(BreakableConnect::default());
    let upstreams = Upstreams::new(Duration::from_secs(1), Duration::from_secs(60))
        .with_connector(connect.clone());
    let target: SocketAddr = ([127, 0, 0, 1], 9).into();
    let pool = upstreams.client(&Arc::new(target.into()), Wire::Http1);
    let front = reporting_front(pool).await;
    let mut sender = client(front).await;
    let (head, body) = ask(&mut sender, http::Method::GET, b"").await;
    assert_eq!((head.status(), &body[..]), (StatusCode::OK, &b"ok"[..]));
    // The pooled connection breaks: the POST's first write fails whole.
    connect.switches.lock().unwrap()[0].store(true, Ordering::SeqCst);
    let (head, body) = ask(&mut sender, http::Method::POST, b"pay").await;
    assert_eq!((head.status(), &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(connect.switches.lock().unwrap().len(), 2, "one more dial");
}

/// An upstream (HTTP/1, or HTTP/2 with `h2`) answering each request with the
/// trace headers it carries, one `name=[values]` line each.
async fn trace_header_upstream(h2: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|req: Request<Incoming>| async move {
                let seen = ["traceparent", "b3", "tracestate"].map(|name| {
                    let values = req.headers().get_all(name).iter().collect::<Vec<_>>();
                    format!("{name}={values:?}")
                });
                let body = http_body_util::Full::new(Bytes::from(seen.join("\n")));
                Ok::<_, std::convert::Infallible>(Response::new(body))
            });
            let io = TokioIo::new(stream);
            if h2 {
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service),
                );
            } else {
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service),
                );
            }
        }
    });
    addr
}

/// However the request leaves — our HTTP/1 codec, HTTP/2, or hyper's client
/// for an upgrade — the upstream gets the trace headers rendered for the hop,
/// once each, and none of the stale ones the request came with.
#[tokio::test]
async fn trace_headers_rendered_for_the_hop_reach_the_upstream_whichever_way_it_leaves() {
    let expected = "traceparent=[\"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01\"]\n\
                    b3=[\"4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-1\"]\n\
                    tracestate=[]";
    for (wire, upgrade) in [
        (Wire::Http1, false),
        (Wire::Http1, true),
        (Wire::Http2, false),
    ] {
        let upstream = trace_header_upstream(wire == Wire::Http2).await;
        let (_upstreams, pool) = pool_of(wire, upstream, BOUND);
        let front = rendering_front(pool, &[Format::TraceContext, Format::B3Single]).await;
        let mut sender = client::<http_body_util::Empty<Bytes>>(front).await;
        let mut req = Request::get("/")
            .header("host", "app")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .header("tracestate", "stale=1")
            .header("b3", "0");
        if upgrade {
            req = req
                .header("connection", "upgrade")
                .header("upgrade", "websocket");
        }
        let exchange = async {
            let response = sender
                .send_request(req.body(Default::default()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.into_body().collect().await.unwrap().to_bytes()
        };
        let seen = tokio::time::timeout(BOUND, exchange).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&seen).unwrap(),
            expected,
            "{wire:?}, upgrade {upgrade}"
        );
    }
}
