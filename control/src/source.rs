//! Watching the source file (a mounted ConfigMap) for changes.
//!
//! Kubernetes updates a mounted ConfigMap by writing a new directory and swapping a
//! `..data` symlink, so inotify on the file sees nothing useful (the watched inode
//! never changes) and editors and `kubectl cp` do different things again. Polling is
//! the robust choice: every ~500 ms the file is stat'ed and read, and its content
//! hash compared with the last one seen. Any change is parsed and validated; a
//! rejected file keeps its error for `/v1/status` and the last good document keeps
//! serving. The cost is one small read per tick. The store runs the poll
//! ([`crate::store::Store::spawn_background`]); this module only reads and parses.
//!
//! Each poll reads the file once: the hash that detects a change and the text
//! that is parsed come from the same bytes. An empty document (nothing but
//! whitespace or comments) is rejected, at start as on a change: it is what a
//! truncated or half-written file looks like, and serving it would reset every
//! sidecar to the defaults. A mesh on all defaults says so: `defaults: {}`. A
//! half-written file that still parses cannot be detected, so the file must be
//! replaced atomically (write a temporary file, then rename it), as Kubernetes
//! does for ConfigMap volumes.

use std::path::Path;
use std::time::Duration;

use meshtrace_config::ConfigError;

use crate::document::Document;

/// How often the source file is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The source file's content and its hash.
#[derive(Clone, Debug)]
pub struct SourceText {
    /// The text.
    pub text: String,
    /// FNV-1a of the bytes (stable across releases, so it can be persisted).
    pub hash: u64,
}

/// Reads the source file; the error is a message naming the file.
pub fn read(path: &Path) -> Result<SourceText, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let hash = fnv1a(&bytes);
    let text =
        String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8: {e}", path.display()))?;
    Ok(SourceText { text, hash })
}

/// Parses what [`read`] returned into a checked document and its content hash;
/// the error lists every problem, one per line. The server (at start and on every
/// change) and `meshtrace-control check` both use this, so they say the same.
/// An empty document is an error, worded as the sidecar words its own.
pub fn parse(read: Result<SourceText, String>, path: &Path) -> Result<(Document, u64), String> {
    let SourceText { text, hash } = read?;
    let source_name = path.display().to_string();
    if meshtrace_config::is_blank(&text) {
        return Err(ConfigError::Empty { source_name }.to_string());
    }
    Document::parse(&text, &source_name)
        .map(|doc| (doc, hash))
        .map_err(|e| e.to_string())
}

/// 64-bit FNV-1a: a change detector, not a security measure.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
