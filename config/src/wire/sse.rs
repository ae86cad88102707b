//! A bounded, incremental Server-Sent Events parser (the WHATWG
//! `text/event-stream` format), shared by the sidecar and the control plane's
//! client so both read the watch stream the same way.
//!
//! The rules it follows, from the HTML standard's "event stream interpretation":
//!
//! - lines end with CRLF, LF or CR — a CR at the end of one chunk and an LF at the
//!   start of the next are one line ending;
//! - a line starting with `:` is a comment (the control plane's keep-alive);
//! - `field: value` sets a field (one space after the colon is dropped); a line
//!   with no colon is a field with an empty value; unknown fields are ignored;
//! - `data` lines accumulate, joined with LF; `event` names the event (`message`
//!   when absent); `id` sets the last event id, which persists across events
//!   unless it contains NUL;
//! - a blank line dispatches the event, unless no `data` line was seen;
//! - a UTF-8 byte order mark at the very start is skipped.
//!
//! Unlike a browser it is bounded: a line longer than [`Limits::line`] or an
//! event whose `event` name and `data` exceed [`Limits::event`] is an error
//! ([`SseError`]), never a silent drop, and after an error the parser reports the
//! same error for the rest of the stream (the caller drops the connection).
//! Every byte is looked at once: a partial line is kept, never rescanned, so the
//! cost of a stream is linear in its length however it is split into chunks.

use std::fmt;

/// The largest event (its `event` name plus `data`) either side accepts: a
/// pushed config is one event, and no sane config is near this.
pub const MAX_EVENT: usize = 16 * 1024 * 1024;

/// The longest line either side accepts: room for an event of [`MAX_EVENT`]
/// bytes on a single `data: ` line.
pub const MAX_LINE: usize = MAX_EVENT + "data: ".len();

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field; `message` when the event had none, as the spec says.
    pub event: String,
    /// The last event id seen on the stream, if any.
    pub id: Option<String>,
    /// The `data` lines joined with LF.
    pub data: String,
}

/// The bounds a parser enforces, so a broken or hostile server cannot make a
/// client buffer without end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in bytes, its line ending excluded.
    pub line: usize,
    /// Largest event: the bytes of its `event` name and of its `data` (the LFs
    /// joining data lines included).
    pub event: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            line: MAX_LINE,
            event: MAX_EVENT,
        }
    }
}

/// Why a stream can no longer be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line grew past [`Limits::line`] without ending.
    #[error("an SSE line exceeded {limit} bytes")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// An event grew past [`Limits::event`] before its blank line.
    #[error("an SSE event exceeded {limit} bytes")]
    EventTooLarge {
        /// The limit in force.
        limit: usize,
    },
}

/// Turns chunks of a byte stream into events; see the [module docs](self).
#[derive(Debug, Default)]
pub struct SseParser {
    limits: Limits,
    /// The bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF starting this one belongs to it.
    after_cr: bool,
    /// Still at the start of the stream (a BOM may follow).
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    failed: Option<SseError>,
}

// === impl SseParser ===

impl SseParser {
    /// A parser with other bounds than the defaults (tests, small clients).
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Reads `chunk` and adds every event it completes to `out`, in order. An
    /// error keeps the events completed before it in `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl Extend<SseEvent>) -> Result<(), SseError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.feed_lines(chunk, out);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.line = Vec::new();
            self.data = String::new();
        }
        result
    }

    fn feed_lines(
        &mut self,
        mut chunk: &[u8],
        out: &mut impl Extend<SseEvent>,
    ) -> Result<(), SseError> {
        if std::mem::take(&mut self.after_cr) {
            chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend_line(&chunk[..end])?;
            let line = std::mem::take(&mut self.line);
            self.line_ended(&line, out)?;
            self.line = line;
            self.line.clear();
            let crlf = chunk[end] == b'\r' && chunk.get(end + 1) == Some(&b'\n');
            self.after_cr = chunk[end] == b'\r' && end + 1 == chunk.len();
            chunk = &chunk[end + if crlf { 2 } else { 1 }..];
        }
        self.extend_line(chunk)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.limits.line {
            return Err(SseError::LineTooLong {
                limit: self.limits.line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_ended(&mut self, line: &[u8], out: &mut impl Extend<SseEvent>) -> Result<(), SseError> {
        let mut line = line;
        if !std::mem::replace(&mut self.started, true) {
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(b":") {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => {
                self.check_size(value.len() + self.data.len())?;
                value.clone_into(&mut self.event);
            }
            "data" => {
                let joint = usize::from(self.has_data);
                self.check_size(self.event.len() + self.data.len() + joint + value.len())?;
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<(), SseError> {
        if size > self.limits.event {
            return Err(SseError::EventTooLarge {
                limit: self.limits.event,
            });
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut impl Extend<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let event = if event.is_empty() {
            "message".to_string()
        } else {
            event
        };
        out.extend([SseEvent {
            event,
            id: self.last_id.clone(),
            data,
        }]);
    }
}

impl fmt::Display for SseEvent {
    /// The event as it goes on the wire (single-line `data`, as the control
    /// plane sends it; other LFs become extra `data:` lines).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "event: {}", self.event)?;
        if let Some(id) = &self.id {
            writeln!(f, "id: {id}")?;
        }
        for line in self.data.split('\n') {
            writeln!(f, "data: {line}")?;
        }
        writeln!(f)
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
