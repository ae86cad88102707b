//! A real headless Chromium (Debian's `chromium` package), driven over the Chrome
//! DevTools protocol: what an operator's browser does with the control plane's
//! page, JavaScript, Content-Security-Policy and all.
//!
//! ```no_run
//! # async fn demo() {
//! use meshtrace_tests::browser::{artifact, Browser};
//!
//! let mut browser = Browser::launch().await;
//! browser.navigate("http://127.0.0.1:8080/").await;
//! browser
//!     .wait_for("the table", "document.querySelectorAll('tr').length > 1")
//!     .await;
//! browser.screenshot(&artifact("page.png")).await;
//! # }
//! ```
//!
//! The browser starts with a fresh profile in a scratch directory, everything
//! that would reach the network on its own turned off (the machine may have no
//! network), and `--remote-debugging-port=0`: it announces the port it bound on
//! stderr (`DevTools listening on ws://…`), and the driver speaks the protocol on
//! that WebSocket to one page it opens. It is killed, with its helper processes
//! (one process group), and its profile removed, when the [`Browser`] is dropped.
//!
//! Nothing polls from here: [`Browser::wait_for`] runs in the page, re-checking
//! its condition on every DOM change (a `MutationObserver`), bounded in time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::process::{Group, Logs, Supervised};

/// Where Debian's `chromium` package puts the browser; `MESHTRACE_CHROMIUM`
/// overrides it.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long the browser has to start and announce its port.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one protocol command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long [`Browser::wait_for`] waits by default.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// A headless Chromium with one open page.
#[derive(Debug)]
pub struct Browser {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    profile: PathBuf,
    /// `None` only while being dropped.
    process: Option<Supervised>,
}

/// The Chromium binary to run; fails the test, saying how to install it, when
/// there is none.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("MESHTRACE_CHROMIUM")
        .map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
    assert!(
        path.is_file(),
        "{} does not exist: the browser tests need Debian's `chromium` package \
         (`apt-get install chromium`; bash scripts/test-all.sh installs it), \
         or MESHTRACE_CHROMIUM pointing at a Chromium binary",
        path.display()
    );
    path
}

/// Where a test leaves what a person should look at (screenshots):
/// `$MESHTRACE_ARTIFACTS_DIR`, else `target/test-artifacts/` of the workspace.
pub fn artifact(name: &str) -> PathBuf {
    let dir = std::env::var_os("MESHTRACE_ARTIFACTS_DIR").map_or_else(
        || {
            let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
            tests
                .parent()
                .unwrap_or(tests)
                .join("target/test-artifacts")
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir.join(name)
}

// === impl Browser ===

impl Browser {
    /// Starts Chromium with a 1280×900 window and opens a blank page.
    pub async fn launch() -> Self {
        static PROFILES: AtomicU64 = AtomicU64::new(0);
        let profile = std::env::temp_dir().join(format!(
            "meshtrace-chromium-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", profile.display()));
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank");
        let process = Supervised::spawn("chromium", command, Logs::Capture, Group::Own)
            .unwrap_or_else(|e| panic!("{e}"));
        let url = devtools_url(&process).await;
        let (ws, _) = tokio::time::timeout(START_LIMIT, tokio_tungstenite::connect_async(&url))
            .await
            .unwrap_or_else(|_| panic!("no DevTools handshake at {url} within {START_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("cannot connect to DevTools at {url}: {e}"));
        let mut browser = Self {
            ws,
            session: String::new(),
            next_id: 0,
            profile,
            process: Some(process),
        };
        browser.open_page().await;
        browser
    }

    /// Opens the page every later command goes to (a flat session on one
    /// WebSocket).
    async fn open_page(&mut self) {
        let target = self
            .command("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].clone();
        let attached = self
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        self.session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {attached}"))
            .to_string();
        self.command("Page.enable", json!({})).await;
        self.command("Runtime.enable", json!({})).await;
    }

    /// Sends one command (to the page once it is open) and returns its result;
    /// a protocol error fails the test.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let exchange = async {
            self.ws
                .send(Message::text(message.to_string()))
                .await
                .unwrap_or_else(|e| panic!("{method}: cannot send: {e}"));
            loop {
                let frame = self
                    .ws
                    .next()
                    .await
                    .unwrap_or_else(|| panic!("{method}: the browser closed DevTools"))
                    .unwrap_or_else(|e| panic!("{method}: DevTools: {e}"));
                let Message::Text(text) = frame else {
                    continue;
                };
                let reply: Value = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("{method}: bad DevTools message {text}: {e}"));
                // Events (no id) and answers to other commands are not ours.
                if reply["id"].as_u64() == Some(id) {
                    return reply;
                }
            }
        };
        let reply = tokio::time::timeout(COMMAND_LIMIT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer within {COMMAND_LIMIT:?}"));
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}");
        }
        reply["result"].clone()
    }

    /// Loads `url` in the page and waits for its `load` event.
    pub async fn navigate(&mut self, url: &str) {
        let result = self.command("Page.navigate", json!({ "url": url })).await;
        if let Some(error) = result.get("errorText") {
            panic!("cannot load {url}: {error}");
        }
        self.wait_for(
            &format!("{url} to load"),
            "document.readyState === 'complete'",
        )
        .await;
    }

    /// The value of a JavaScript expression in the page (promises awaited); an
    /// exception fails the test.
    pub async fn evaluate(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}\nthrew: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits, at most [`WAIT_LIMIT`], until the expression `condition` is
    /// truthy in the page, and returns its value; fails the test with the
    /// page's text otherwise.
    pub async fn wait_for(&mut self, what: &str, condition: &str) -> Value {
        self.wait_for_within(what, condition, WAIT_LIMIT).await
    }

    /// [`Self::wait_for`] with another limit.
    pub async fn wait_for_within(&mut self, what: &str, condition: &str, limit: Duration) -> Value {
        let expression = format!(
            "new Promise((resolve) => {{
                const check = () => {{ try {{ return ({condition}); }} catch (e) {{ return null; }} }};
                const done = (v) => {{ observer.disconnect(); clearTimeout(timer); resolve(v); }};
                const observer = new MutationObserver(() => {{ const v = check(); if (v) done(v); }});
                const timer = setTimeout(() => done(null), {ms});
                observer.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});
                const first = check(); if (first) done(first);
            }})",
            ms = limit.as_millis()
        );
        let value = self.evaluate(&expression).await;
        if value.is_null() || value == json!(false) {
            let text = self
                .evaluate(
                    "document.body ? document.body.innerText : document.documentElement.outerHTML",
                )
                .await;
            panic!(
                "timed out after {limit:?} waiting for {what} ({condition}); the page shows:\n{}",
                text.as_str().unwrap_or_default()
            );
        }
        value
    }

    /// Saves a PNG of the whole page (not just the window) to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let metrics = self.command("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let (width, height) = (
            size["width"].as_f64().unwrap_or(1280.0),
            size["height"].as_f64().unwrap_or(900.0),
        );
        let shot = self
            .command(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the screenshot is not base64: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser and its helpers (one process group) first, then its files.
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The browser-wide DevTools WebSocket URL Chromium announces on stderr.
async fn devtools_url(process: &Supervised) -> String {
    const PREFIX: &str = "DevTools listening on ";
    let line = process
        .announced("its DevTools port", START_LIMIT, |line| {
            line.contains(PREFIX)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    line.split_once(PREFIX)
        .map(|(_, url)| url.trim().to_string())
        .filter(|url| url.starts_with("ws://"))
        .unwrap_or_else(|| panic!("cannot read the DevTools URL from {line:?}"))
}
