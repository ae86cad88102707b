//! Reload's structure seen from outside: the `OTEL_*` export variables are part
//! of loading the config (the real binary's `check-config` rejects a malformed one
//! by name, and the admin `/config` shows the endpoint the environment chose), and
//! the watch stream's bounds are reported, not silently dropped.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtrace_config::wire::sse::MAX_EVENT;
use tokio::sync::mpsc;

use meshtrace_config::Config;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::http1_get;
use meshtrace_tests::process::proxy_binary;
use meshtrace_tests::sidecar;

/// A config file named after the test, removed when dropped.
struct ConfigFile(PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn config_file(name: &str) -> ConfigFile {
    let name = format!(
        "meshtrace-structure-reload-{}-{name}.yaml",
        std::process::id()
    );
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, Config::default().to_yaml()).expect("write config");
    ConfigFile(path)
}

#[tokio::test]
async fn check_config_names_a_malformed_otel_variable() {
    let file = config_file("otel");
    let out = within(
        "check-config",
        tokio::process::Command::new(proxy_binary().await)
            .arg("check-config")
            .arg(&file.0)
            .env_remove("MESHTRACE_APP_PORT")
            .env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon")
            .output(),
    )
    .await
    .expect("run meshtrace-proxy");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a malformed variable fails the check"
    );
    assert!(
        stderr.contains("env OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") && stderr.contains("soon"),
        "{stderr}"
    );
}

#[tokio::test]
async fn admin_config_shows_the_export_endpoint_from_the_environment() {
    let proxy = sidecar::new()
        .process()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/base/")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .spawn()
        .await;
    let rsp = http1_get(proxy.admin_addr(), "/config").await;
    let shown = String::from_utf8_lossy(rsp.body());
    assert!(
        shown.contains("endpoint: http://127.0.0.1:9/base/v1/traces"),
        "{shown}"
    );
    assert!(shown.contains("protocol: http/protobuf"), "{shown}");
}

/// A control plane whose every watch answers one `config` event just over
/// [`MAX_EVENT`] (in 1 KiB data lines, so no line is too long) and then stays
/// open; each watch request is announced on the receiver.
async fn oversized_control_plane() -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut event = b"event: config\n".to_vec();
    let value = "x".repeat(1023);
    let mut data_bytes = 0;
    while data_bytes <= MAX_EVENT {
        event.extend_from_slice(format!("data: {value}\n").as_bytes());
        data_bytes += value.len() + 1;
    }
    event.push(b'\n');
    let event = Bytes::from(event);
    let (watched, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (watched, event) = (watched.clone(), event.clone());
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                if req.uri().path() == "/v1/watch" {
                    let _ = watched.send(());
                }
                let frames =
                    futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(event.clone()))])
                        .chain(futures_util::stream::pending());
                async move { Ok::<_, Infallible>(http::Response::new(StreamBody::new(frames))) }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, rx)
}

/// Before the shared parser, the sidecar dropped an oversized event without a
/// word and sat on the open stream forever; now the broken bound ends the watch
/// (logged) and the sidecar reconnects.
#[tokio::test]
async fn an_oversized_pushed_event_ends_the_watch_instead_of_vanishing() {
    let (url, mut watched) = oversized_control_plane().await;
    let _proxy = sidecar::new().watching(&url, "checkout").start().await;
    within("the first watch", watched.recv()).await;
    within("a reconnect after the oversized event", watched.recv()).await;
}
