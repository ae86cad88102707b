//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy
//! consumes them and never forwards them.
//!
//! Removed both ways: `Connection` and every header it names, `Keep-Alive`,
//! `Proxy-Connection`, `Transfer-Encoding` (the body is re-framed for the next
//! hop), `Upgrade`, `HTTP2-Settings`, and `TE` except the value `trailers` (which
//! gRPC needs end to end). An actual protocol upgrade (WebSocket) keeps
//! `Connection: upgrade` and `Upgrade`, which is what lets it pass through.
//!
//! `Connection` cannot take away what the sidecar owns: `Host`, and the trace
//! headers (plus the mesh caller header) that the trace layer, outside this one,
//! has already written for the next hop. Naming them in `Connection` would
//! otherwise strip a request of its authority and break the trace.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE,
};

use crate::propagation::CALLER_HEADER_NAME;

static ALWAYS: [HeaderName; 3] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("http2-settings"),
];

/// Whether the headers ask for a protocol upgrade this proxy can tunnel
/// (`Connection: upgrade` plus an `Upgrade` other than `h2c`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let upgrade_token = headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case("upgrade")));
    upgrade_token
        && headers
            .get(UPGRADE)
            .is_some_and(|u| !u.as_bytes().eq_ignore_ascii_case(b"h2c"))
}

/// Strips hop-by-hop headers; with `upgrade`, keeps the two that carry it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: one pass over the names, comparing without
    // hashing, spares the removals below.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(tokens)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            if !(upgrade && name == UPGRADE) && name != TE && !sidecar_owned(&name) {
                headers.remove(&name);
            }
        }
        headers.remove(CONNECTION);
    }
    for name in &ALWAYS {
        headers.remove(name);
    }
    headers.remove(TRANSFER_ENCODING);
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
    if let Some(te) = headers.get(TE) {
        if tokens(te).any(|t| t.eq_ignore_ascii_case("trailers")) {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(TE);
        }
    }
}

/// Whether a header is one this module may remove or rewrite (those `Connection`
/// names come with `Connection` itself).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == TE
        || ALWAYS.contains(name)
}

/// Whether a header is one the sidecar writes for the next hop (`Host`, and
/// every header of [`crate::propagation`]'s formats), which a `Connection` token
/// must not remove. Only the named tokens are checked, so this costs nothing on
/// requests without `Connection`.
fn sidecar_owned(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == HOST.as_str()
        || matches!(name, "traceparent" | "tracestate" | "b3" | "uber-trace-id")
        || name == CALLER_HEADER_NAME
        || name.starts_with("x-b3-")
        || name.starts_with("x-datadog-")
}

/// The comma-separated tokens of a header value.
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::headers;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("x-app", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-app"));
    }

    #[test]
    fn connection_cannot_remove_host_or_the_sidecars_trace_headers() {
        let owned = [
            ("host", "reviews:9080"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "dd=s:1"),
            ("b3", "1"),
            ("x-b3-sampled", "1"),
            ("x-datadog-trace-id", "1"),
            ("uber-trace-id", "1:2:0:1"),
            ("x-meshtrace-caller", "web.shop"),
        ];
        let mut names: Vec<&str> = owned.iter().map(|(name, _)| *name).collect();
        let connection = names.join(", ") + ", x-secret";
        let mut h = headers(&owned);
        h.insert(CONNECTION, connection.parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let mut kept: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        kept.sort_unstable();
        names.sort_unstable();
        assert_eq!(kept, names);
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut h = headers(&[("te", "trailers"), ("transfer-encoding", "chunked")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get(TE).unwrap(), "trailers");
        assert!(!h.contains_key(TRANSFER_ENCODING));
        let mut h = headers(&[("te", "gzip")]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key(TE));
    }

    #[test]
    fn websocket_upgrade_keeps_its_headers() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn h2c_upgrade_is_not_tunnelled() {
        let mut h = headers(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ]);
        assert!(!wants_upgrade(&h));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }
}
