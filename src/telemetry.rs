//! The tracing subscriber: human-readable by default, JSON (one object per line) for log
//! shippers. `RUST_LOG` overrides the default filter.
//!
//! Lines go to stderr through a buffered, non-blocking writer: a request thread formats its
//! line and hands it over; a logging thread writes lines in batches, so one push does not cost a
//! `write(2)` on the request path. [`LogGuard`] flushes what is left when it is dropped.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the logging thread alive; dropping it flushes the buffered lines.
pub struct LogGuard {
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which
/// keeps tests simple.
pub fn init(format: LogFormat, default_filter: &str) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(4096)
        // Stderr behind a buffer: the logging thread flushes it after each batch of lines.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard {
        _worker: installed.is_ok().then_some(guard),
    }
}
