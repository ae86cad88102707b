//! Process logs through `tracing`: text by default, JSON on request, written by a
//! background thread through a bounded, lossy queue so that a slow stdout never
//! blocks the request path.

use meshtrace_config::LogFormat;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Lines buffered before new ones are dropped.
const QUEUE_LINES: usize = 64 * 1024;

/// Installs the global subscriber. Keep the guard alive: dropping it flushes.
pub fn init(format: LogFormat, filter: &str) -> Result<WorkerGuard, String> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUE_LINES)
        .lossy(true)
        .finish(std::io::stdout());
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
