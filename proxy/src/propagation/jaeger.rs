//! (being written)

use http::HeaderMap;

use super::{Extracted, Outgoing};

/// Reads this format.
pub fn extract(_headers: &HeaderMap) -> Extracted {
    Extracted::Absent
}

/// Writes this format.
pub fn inject(_out: &Outgoing<'_>, _headers: &mut HeaderMap) {}

/// Removes this format's headers.
pub fn strip(_headers: &mut HeaderMap) {}
