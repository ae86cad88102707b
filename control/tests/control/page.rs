//! The page's routes on a running server: readable without the write token,
//! other methods 405 and other paths 404 as the API answers them, and the
//! server's clock in `/v1/status` for the page's countdowns.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use meshtrace_control::testing::{start, within};
use serde_json::Value;

const SOURCE: &str = "defaults: {sampling: {default_rate: 0.1}}\n";

#[tokio::test]
async fn the_page_and_its_files_are_served_without_the_token() {
    let cp = start(SOURCE, Some("s3cret")).await;
    let anonymous = cp.client_with(None);
    for (path, start_of_body) in [
        ("/", "<!doctype html>"),
        ("/index.html", "<!doctype html>"),
        ("/page.js", "//"),
        ("/page.css", ":root"),
    ] {
        let (status, body) = within(path, anonymous.send(Method::GET, path, None))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path}");
        assert!(
            String::from_utf8_lossy(&body).starts_with(start_of_body),
            "GET {path}"
        );
    }
}

#[tokio::test]
async fn other_methods_are_405_and_other_paths_404() {
    let cp = start(SOURCE, Some("s3cret")).await;
    let client = cp.client();
    for path in ["/", "/page.js"] {
        let (status, body) = within(path, client.send(Method::POST, path, None))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "POST {path}");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(error["error"].is_string(), "{error}");
    }
    for path in ["/ui", "/page.js/x", "/favicon.ico"] {
        let (status, _) = within(path, client.send(Method::GET, path, None))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}");
    }
}

#[tokio::test]
async fn status_says_the_servers_time() {
    let cp = start(SOURCE, None).await;
    let before = SystemTime::now() - Duration::from_secs(1);
    let status: Value = within("status", cp.client().get("/v1/status"))
        .await
        .unwrap();
    let now: meshtrace_control::timestamp::Timestamp =
        serde_json::from_value(status["now"].clone()).unwrap();
    let after = SystemTime::now() + Duration::from_secs(1);
    assert!(before <= now.0 && now.0 <= after, "{status}");
    assert!(now.0 > UNIX_EPOCH);
}
