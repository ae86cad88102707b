//! The read-only page an operator opens in a browser: `GET /` on the control
//! plane's address.
//!
//! It shows the connected sidecars (the version each acknowledged, whether that
//! is the current one, the version last sent, the last rejection), the active
//! overrides with their remaining time, the incident boosts sidecars reported
//! (and a note when boosts are off fleet-wide), and the migration view per
//! workload, and refreshes itself every two seconds from the same open `GET /v1/*` endpoints
//! the CLI reads (`/v1/status`, `/v1/sidecars`, `/v1/overrides`,
//! `/v1/migration`), so it needs no write token and shows nothing they do not.
//! Remaining times count down from the server's clock (`now` in `/v1/status`),
//! not the browser's. When the control plane stops answering, a banner says so
//! and the last answer stays on screen, marked stale.
//!
//! Three files, embedded in the binary: `index.html`, `page.css` and `page.js`
//! (plain JavaScript, no framework, no build step, nothing fetched from
//! elsewhere). Everything a sidecar or an operator wrote (identities, NACK
//! errors, reasons) is put on the page as text (`textContent`), never parsed as
//! HTML, and the Content-Security-Policy allows only these files and requests to
//! this server.
//!
//! Asset URLs and API requests are relative, so the page also works behind a
//! path prefix (`kubectl proxy`, an ingress path), as long as it is opened with
//! a trailing slash there.

use http::{header, HeaderValue, Response, StatusCode};

use crate::reply::{self, Body};

/// The page.
const INDEX: &str = include_str!("index.html");
/// Its style sheet.
const STYLE: &str = include_str!("page.css");
/// Its script.
const SCRIPT: &str = include_str!("page.js");

/// Only this server's own files and API; no inline script or style, no frames,
/// no forms, no plug-ins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    content_type: &'static str,
    text: &'static str,
}

/// The file served at `path` (as the API sees it: without a trailing `/`, so
/// `/` is the empty string).
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, text) = match path {
        "" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/page.css" => ("text/css; charset=utf-8", STYLE),
        "/page.js" => ("text/javascript; charset=utf-8", SCRIPT),
        _ => return None,
    };
    Some(Asset { content_type, text })
}

/// Whether `path` is one of the page's files (for 405 on other methods).
pub fn is_route(path: &str) -> bool {
    asset(path).is_some()
}

// === impl Asset ===

impl Asset {
    /// The response: the file with its type, the CSP, and headers that keep a
    /// browser from guessing types, framing the page or caching an old version.
    pub fn response(self) -> Response<Body> {
        let mut res = reply::with_type(StatusCode::OK, self.content_type, reply::full(self.text));
        let h = res.headers_mut();
        for (name, value) in [
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        res
    }

    /// The file's length in bytes.
    pub fn len(self) -> usize {
        self.text.len()
    }

    /// Whether the file is empty (never).
    pub fn is_empty(self) -> bool {
        self.text.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn text(res: Response<Body>) -> String {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_file_has_its_type_the_csp_and_nosniff() {
        for (path, ty) in [
            ("", "text/html; charset=utf-8"),
            ("/index.html", "text/html; charset=utf-8"),
            ("/page.css", "text/css; charset=utf-8"),
            ("/page.js", "text/javascript; charset=utf-8"),
        ] {
            let res = asset(path).unwrap().response();
            assert_eq!(res.status(), StatusCode::OK);
            let h = res.headers();
            assert_eq!(h[header::CONTENT_TYPE], ty, "{path}");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(!text(res).await.is_empty());
        }
    }

    #[test]
    fn other_paths_are_not_the_page() {
        for path in ["/page", "/ui", "/page.js/x", "/v1/status", "/index.htm"] {
            assert_eq!(asset(path), None, "{path}");
        }
    }

    #[tokio::test]
    async fn the_page_loads_only_its_own_files_and_has_no_inline_script() {
        let html = text(asset("").unwrap().response()).await;
        assert!(html.contains(r#"<script src="page.js" defer></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="page.css">"#));
        assert_eq!(html.matches("<script").count(), 1, "one script, by URL");
        assert!(
            !html.contains("style="),
            "no inline style (the CSP forbids it)"
        );
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn the_script_never_parses_data_as_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "page.js uses {sink}");
        }
    }
}
