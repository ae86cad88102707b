//! A minimal Server-Sent Events parser, enough for the watch stream: `event:`,
//! `id:` and `data:` fields, comment lines (`: keepalive`) ignored, events ended by
//! a blank line. It is pure (bytes in, events out) so the sidecar can mirror it
//! over any body type.

use meshtrace_config::Config;
use serde::Deserialize;

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent, as in the SSE spec).
    pub event: String,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// The `data` of a `config` event.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ConfigEvent {
    /// The global version.
    pub version: u64,
    /// The workload's full config.
    pub config: Config,
}

/// Accumulates bytes and yields complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

/// A bound on one event, so a broken server cannot make a client buffer forever.
const MAX_EVENT: usize = 16 * 1024 * 1024;

// === impl SseParser ===

impl SseParser {
    /// Adds a chunk and returns every event it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = find_blank_line(&self.buf) {
            let block: Vec<u8> = self.buf.drain(..end.1).collect();
            let text = String::from_utf8_lossy(&block[..end.0]).into_owned();
            if let Some(event) = parse_block(&text) {
                events.push(event);
            }
        }
        if self.buf.len() > MAX_EVENT {
            return Err(format!("an SSE event exceeded {MAX_EVENT} bytes"));
        }
        Ok(events)
    }
}

/// The end of the first event block: (content end, block end incl. the blank line).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_block(text: &str) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    let mut any = false;
    for line in text.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_string(),
            "id" => event.id = Some(value.to_string()),
            "data" => data.push(value),
            _ => continue,
        }
        any = true;
    }
    if !any {
        return None;
    }
    if event.event.is_empty() {
        event.event = "message".into();
    }
    event.data = data.join("\n");
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_comments_are_skipped() {
        let mut p = SseParser::default();
        assert!(p
            .push(b": keepalive\n\nevent: config\nid: 3\nda")
            .unwrap()
            .is_empty());
        let events = p.push(b"ta: {\"a\":1}\n\n").unwrap();
        assert_eq!(
            events,
            vec![SseEvent {
                event: "config".into(),
                id: Some("3".into()),
                data: "{\"a\":1}".into()
            }]
        );
    }
}
