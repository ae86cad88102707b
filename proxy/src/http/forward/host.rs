//! One authority per request: a request whose `Host` says two things is refused
//! before it chooses an upstream, because a proxy that routes by one name while
//! the application reads another is how request smuggling and cache poisoning
//! get in.
//!
//! - More than one `Host` field: RFC 9112 §3.2 says a server MUST answer 400.
//! - HTTP/2 `:authority` and `host` naming different origins: RFC 9113 §8.3.1
//!   says clients MUST NOT send that and a server SHOULD treat it as malformed.
//!   Refusing (rather than quietly replacing `host`) tells the buggy or hostile
//!   client, and keeps the sidecar from picking a winner the application might
//!   disagree with.
//!
//! An absolute-form HTTP/1 request's different `Host` is not an error: RFC 9112
//! §3.2.2 says to replace it, which `origin_form` does.

use http::header::{HeaderValue, HOST};
use http::{Request, Version};

use crate::http::edge::Refusal;

/// Why the request's authority is ambiguous, with one sentence for the client;
/// `None` when it is not.
pub(super) fn conflict<B>(req: &Request<B>) -> Option<(Refusal, &'static str)> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        let message = "the request has more than one Host header (RFC 9112 section 3.2)";
        return Some((Refusal::DuplicateHost, message));
    }
    let authority = req.uri().authority().map(|a| a.as_str());
    match (req.version(), authority, host) {
        (Version::HTTP_2, Some(authority), Some(host)) if !same(authority, host) => {
            let message = ":authority and host name different origins (RFC 9113 section 8.3.1)";
            Some((Refusal::AuthorityMismatch, message))
        }
        _ => None,
    }
}

/// The `Host` value for an absolute-form target's authority: its `host[:port]`,
/// without any `userinfo@` (which never belongs in `Host`).
pub(super) fn from_authority(authority: &http::uri::Authority) -> Option<HeaderValue> {
    HeaderValue::from_str(hostport(authority.as_str())).ok()
}

/// Whether a `host` value names the same origin as `:authority` (host names
/// compare case-insensitively, RFC 3986 §3.2.2).
fn same(authority: &str, host: &HeaderValue) -> bool {
    hostport(authority)
        .as_bytes()
        .eq_ignore_ascii_case(host.as_bytes())
}

/// An authority without its `userinfo@`.
fn hostport(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest)
}
