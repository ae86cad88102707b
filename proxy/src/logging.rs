//! Process logs through `tracing`: text by default, JSON on request, written by a
//! background thread through a bounded, lossy queue so that a slow stdout never
//! blocks the request path.
//!
//! The queue is an unbounded channel kept bounded by a count of the lines in it:
//! it takes memory for the lines actually waiting, not for its whole capacity up
//! front (`tracing-appender`'s bounded queue of 64 Ki lines was 2 MiB of the idle
//! sidecar's RSS, benches/RESULTS.md "Performance (issue 18): memory").

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use meshtrace_config::LogFormat;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Lines buffered before new ones are dropped.
const QUEUE_LINES: usize = 64 * 1024;

/// How long dropping the [`LogGuard`] waits for the queued lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Installs the global subscriber. Keep the guard alive: dropping it flushes.
pub fn init(format: LogFormat, filter: &str) -> Result<LogGuard, String> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let (writer, guard) = spawn_writer(std::io::stdout(), QUEUE_LINES)
        .map_err(|e| format!("cannot start the log writer: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(guard)
}

/// Flushes the queued lines (waiting at most [`FLUSH_WAIT`]) when dropped.
pub struct LogGuard {
    queue: Sender<Message>,
    done: Receiver<()>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if self.queue.send(Message::Flush).is_ok() {
            let _ = self.done.recv_timeout(FLUSH_WAIT);
        }
    }
}

enum Message {
    Line(Vec<u8>),
    Flush,
}

/// The subscriber's writer: each formatted event is one line on the queue, or is
/// dropped when `limit` lines are already waiting.
struct Lines {
    queue: Sender<Message>,
    waiting: Arc<AtomicUsize>,
    limit: usize,
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = &'a Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let queued = self.waiting.fetch_add(1, Ordering::Relaxed) < self.limit
            && self.queue.send(Message::Line(buf.to_vec())).is_ok();
        if !queued {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The queue's two ends and its count, before a thread drains it.
fn queue(limit: usize) -> (Lines, Receiver<Message>) {
    let (queue, lines) = mpsc::channel();
    let writer = Lines {
        queue,
        waiting: Arc::default(),
        limit,
    };
    (writer, lines)
}

/// Starts the thread that writes queued lines to `out`.
fn spawn_writer(out: impl Write + Send + 'static, limit: usize) -> io::Result<(Lines, LogGuard)> {
    let (writer, lines) = queue(limit);
    let (done_tx, done) = mpsc::sync_channel(1);
    let waiting = writer.waiting.clone();
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            drain(&lines, &waiting, out);
            // Lines sent from now on fail at once instead of waiting forever.
            drop(lines);
            let _ = done_tx.send(());
        })?;
    let guard = LogGuard {
        queue: writer.queue.clone(),
        done,
    };
    Ok((writer, guard))
}

/// Writes lines until the flush message (or every sender is gone), flushing
/// whenever the queue runs empty.
fn drain(lines: &Receiver<Message>, waiting: &AtomicUsize, mut out: impl Write) {
    while let Ok(mut message) = lines.recv() {
        loop {
            match message {
                Message::Line(line) => {
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    let _ = out.write_all(&line);
                }
                Message::Flush => {
                    let _ = out.flush();
                    return;
                }
            }
            match lines.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A writer into shared memory, for reading back what the thread wrote.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_past_the_limit_are_dropped_without_blocking() {
        let (writer, lines) = queue(3);
        for n in 0..5 {
            (&writer).write_all(format!("{n}\n").as_bytes()).unwrap();
        }
        let queued: Vec<_> = lines.try_iter().collect();
        assert_eq!(queued.len(), 3);
        assert!(matches!(&queued[0], Message::Line(line) if line == b"0\n"));
        assert_eq!(writer.waiting.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn dropping_the_guard_writes_every_queued_line_in_order() {
        let out = Shared::default();
        let (writer, guard) = spawn_writer(out.clone(), 100).unwrap();
        for n in 0..10 {
            (&writer)
                .write_all(format!("line {n}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..10).map(|n| format!("line {n}\n")).collect();
        assert_eq!(written, expected);
        // The thread is gone: later lines are dropped, not queued forever.
        (&writer).write_all(b"late\n").unwrap();
        assert_eq!(writer.waiting.load(Ordering::Relaxed), 0);
    }
}
