//! The reaper's policy, on a paused clock: HTTP/1 connections over in-memory IO
//! put in and taken from the pool as the forwarding path does.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::DuplexStream;
use tokio::time::advance;

use super::super::h2::Listed;
use super::super::{Connector, Key, Pool, State, UpstreamIo};
use super::*;
use crate::http::Wire;

const IDLE: Duration = Duration::from_secs(90);

/// An HTTP/1 pool that dials nothing (every connection is given back by the test).
fn pool() -> Arc<Pool> {
    let target: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    Arc::new(Pool {
        target: Arc::new(target.into()),
        wire: Wire::Http1,
        connect_timeout: Duration::from_secs(1),
        connector: Connector::Tcp,
        state: std::sync::Mutex::new(State::default()),
        h2_dial: tokio::sync::Mutex::new(()),
    })
}

/// Puts `n` new connections in the pool's idle list; keep the returned server
/// ends, or the connections close.
#[allow(clippy::unused_async)]
async fn give_back_new(pool: &Pool, n: usize) -> Vec<DuplexStream> {
    let mut servers = Vec::new();
    for _ in 0..n {
        let (client, server) = tokio::io::duplex(1024);
        let io = UpstreamIo::Custom(Box::new(client));
        pool.give_back(super::super::h1::Conn::new(io));
        servers.push(server);
    }
    servers
}

/// `n` requests at once: take the `n` most recently used connections (as the
/// pool's checkout does), then give them back.
fn use_connections(pool: &Pool, n: usize) {
    let taken: Vec<_> = (0..n)
        .map(|_| pool.lock().idle.pop().unwrap().conn)
        .collect();
    for conn in taken {
        pool.give_back(conn);
    }
}

fn idle_count(pool: &Pool) -> usize {
    pool.lock().idle.len()
}

/// Lists `n` new HTTP/2 connections (to an in-memory hyper server) in the
/// pool, as its dials do, with no stream open.
async fn list_h2(pool: &Pool, n: usize) {
    for _ in 0..n {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server), service),
        );
        let io = UpstreamIo::Custom(Box::new(client));
        let shared = pool.handshake_h2(io).await.unwrap();
        pool.lock().h2.push(Listed {
            shared: Arc::new(shared),
            started: 1,
            quiet: (0, None),
        });
    }
}

/// A stream started and ended on each listed HTTP/2 connection, as a burst
/// that fills them all does.
fn use_h2(pool: &Pool) {
    for listed in &mut pool.lock().h2 {
        listed.started += 1;
    }
}

fn h2_count(pool: &Pool) -> usize {
    pool.lock().h2.len()
}

#[tokio::test(start_paused = true)]
async fn a_burst_shrinks_back_to_what_the_traffic_now_uses() {
    let pool = pool();
    let _servers = give_back_new(&pool, 30).await;
    advance(Duration::from_secs(5)).await;
    use_connections(&pool, 2);
    advance(SURPLUS_AFTER - Duration::from_secs(4)).await;
    pool.reap(IDLE);
    // The two in use and the most recent others, up to KEEP_WARM, stay.
    assert_eq!(idle_count(&pool), KEEP_WARM);
    advance(IDLE).await;
    pool.reap(IDLE);
    assert_eq!(idle_count(&pool), 0, "past the idle timeout, none stays");
}

#[tokio::test(start_paused = true)]
async fn connections_in_recent_use_are_not_surplus() {
    let pool = pool();
    let _servers = give_back_new(&pool, 30).await;
    // 12 used 5 s ago: beyond KEEP_WARM, but not surplus yet.
    advance(Duration::from_secs(6)).await;
    use_connections(&pool, 12);
    advance(Duration::from_secs(5)).await;
    pool.reap(IDLE);
    assert_eq!(idle_count(&pool), 12);
}

#[tokio::test(start_paused = true)]
async fn steady_traffic_keeps_its_warm_connections() {
    let pool = pool();
    let _servers = give_back_new(&pool, 20).await;
    // 3 requests at once, with a peak of 20 every 8 s, for three idle timeouts;
    // the reaper sweeps every 5 s: no connection is ever closed.
    for second in 1..=270 {
        advance(Duration::from_secs(1)).await;
        use_connections(&pool, if second % 8 == 0 { 20 } else { 3 });
        if second % 5 == 0 {
            pool.reap(IDLE);
            assert_eq!(idle_count(&pool), 20, "closed at {second} s");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_reaper_task_closes_a_burst_within_surplus_after_and_a_period() {
    let pool = pool();
    let key = Key {
        target: pool.target.clone(),
        wire: Wire::Http1,
    };
    let pools: Arc<ArcSwap<Pools>> = Arc::default();
    pools.store(Arc::new(HashMap::from([(key, pool.clone())])));
    tokio::spawn(reap(Arc::downgrade(&pools), IDLE));
    let _servers = give_back_new(&pool, 30).await;
    tokio::time::sleep(SURPLUS_AFTER + SURPLUS_AFTER / 2).await;
    assert_eq!(idle_count(&pool), KEEP_WARM);
}

#[tokio::test(start_paused = true)]
async fn a_burst_s_extra_h2_connections_close_once_quiet_and_the_first_waits_out_the_idle_timeout()
{
    let pool = pool();
    list_h2(&pool, 3).await;
    pool.reap(IDLE);
    advance(SURPLUS_AFTER - Duration::from_secs(1)).await;
    pool.reap(IDLE);
    assert_eq!(h2_count(&pool), 3, "not quiet for SURPLUS_AFTER yet");
    advance(Duration::from_secs(1)).await;
    pool.reap(IDLE);
    assert_eq!(h2_count(&pool), 1, "the burst's extra connections closed");
    advance(IDLE - SURPLUS_AFTER).await;
    pool.reap(IDLE);
    assert_eq!(
        h2_count(&pool),
        0,
        "past the idle timeout, the first closes too"
    );
}

#[tokio::test(start_paused = true)]
async fn extra_h2_connections_in_use_or_recent_use_stay() {
    let pool = pool();
    list_h2(&pool, 3).await;
    // A stream held open on the last one all along; a burst over all three
    // every 8 s, for three idle timeouts, swept every 5 s: none closes.
    pool.lock().h2[2].shared.streams.store(1, Ordering::Release);
    for second in 1..=270 {
        advance(Duration::from_secs(1)).await;
        if second % 8 == 0 {
            use_h2(&pool);
        }
        if second % 5 == 0 {
            pool.reap(IDLE);
            assert_eq!(h2_count(&pool), 3, "closed at {second} s");
        }
    }
    // The bursts stop: the idle extra closes, the one with its stream stays.
    advance(SURPLUS_AFTER * 2).await;
    pool.reap(IDLE);
    pool.reap(IDLE);
    let streams: Vec<usize> = pool
        .lock()
        .h2
        .iter()
        .map(|l| l.shared.streams.load(Ordering::Acquire))
        .collect();
    assert_eq!(streams, [0, 1], "the first and the busy one stay");
}
