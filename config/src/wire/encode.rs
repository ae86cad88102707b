//! Percent-encoding of query components (RFC 3986), for the watch URL the
//! sidecar builds and the control plane decodes: one definition on both sides,
//! so a label value with `=`, `&` or spaces arrives as it was sent.

use std::fmt::Write;

/// Percent-encodes everything but the unreserved characters (`A–Z a–z 0–9 - . _ ~`).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes a query component (`+` is a space, as forms send it); `None` when a
/// `%` is not followed by two hex digits or the result is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_digit(bytes.next()?)?;
                let lo = hex_digit(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_stay_and_the_rest_is_encoded() {
        assert_eq!(encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(encode("tier=web app/é"), "tier%3Dweb%20app%2F%C3%A9");
    }

    #[test]
    fn decoding_undoes_encoding() {
        for s in ["a b=c/é", "", "%", "100%+"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        }
        assert_eq!(decode("check+out").as_deref(), Some("check out"));
    }

    #[test]
    fn broken_escapes_do_not_decode() {
        for s in ["%zz", "%4", "%", "%C3"] {
            assert_eq!(decode(s), None, "{s}");
        }
    }
}
