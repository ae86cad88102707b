//! Who may change the configuration.
//!
//! Writes (`PUT`, `PATCH`, `POST`, `DELETE`, except `POST /v1/ack`) need
//! `Authorization: Bearer <token>`. The token comes from `--token-file` or
//! `MESHTRACE_CONTROL_TOKEN`; with none configured every write is refused, so the
//! server is never writable by default. Reads (`GET`, the watch stream) and ACKs are
//! open to anyone who can reach the port: run it cluster-internal and restrict it
//! with a NetworkPolicy to the sidecars' namespaces.

use std::path::Path;

use http::HeaderMap;

/// The configured write token.
#[derive(Clone)]
pub struct Token(Option<Vec<u8>>);

/// Why a write is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No (bearer) credentials: 401.
    Missing,
    /// Wrong credentials, or writes disabled: 403, with the message.
    Forbidden(&'static str),
}

// === impl Token ===

impl Token {
    /// No token: writes are refused.
    pub fn none() -> Self {
        Self(None)
    }

    /// A token (surrounding whitespace is trimmed; an empty one means none).
    pub fn new(token: &str) -> Self {
        let t = token.trim();
        Self((!t.is_empty()).then(|| t.as_bytes().to_vec()))
    }

    /// Reads the token from a file (e.g. a mounted Secret).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("token file {}: {e}", path.display()))?;
        let token = Self::new(&text);
        if token.0.is_none() {
            return Err(format!("token file {} is empty", path.display()));
        }
        Ok(token)
    }

    /// Whether a token is configured.
    pub fn is_configured(&self) -> bool {
        self.0.is_some()
    }

    /// Checks a request's `Authorization` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let Some(expected) = &self.0 else {
            return Err(Denied::Forbidden(
                "writes are disabled: the server has no token (--token-file or MESHTRACE_CONTROL_TOKEN)",
            ));
        };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Denied::Missing);
        };
        let value = value.as_bytes();
        let scheme = b"bearer ";
        if value.len() < scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Err(Denied::Missing);
        }
        if constant_time_eq(value[scheme.len()..].trim_ascii(), expected) {
            Ok(())
        } else {
            Err(Denied::Forbidden("invalid token"))
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Token(<set>)"
        } else {
            "Token(<none>)"
        })
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of
/// a guess was right (only whether its length was).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn bearer_token_is_checked() {
        let t = Token::new("s3cret");
        assert_eq!(t.check(&HeaderMap::new()), Err(Denied::Missing));
        assert_eq!(t.check(&headers("Basic abc")), Err(Denied::Missing));
        assert!(matches!(
            t.check(&headers("Bearer nope")),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(t.check(&headers("Bearer s3cret")), Ok(()));
        assert_eq!(t.check(&headers("bearer s3cret")), Ok(()));
    }

    #[test]
    fn no_token_refuses_every_write() {
        let t = Token::none();
        assert!(matches!(
            t.check(&headers("Bearer x")),
            Err(Denied::Forbidden(_))
        ));
    }
}
