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
        // Field values may come from a push (an openid, a path): control characters are
        // escaped so that no value can forge a line or drive the terminal.
        LogFormat::Text => builder.fmt_fields(escaping_fields()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard {
        _worker: installed.is_ok().then_some(guard),
    }
}

/// The human format's field formatter: `name=value` pairs separated by spaces, the message
/// bare, every control character of a value escaped.
fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        use std::fmt::Write;
        if field.name() != "message" {
            write!(writer, "{}=", field.name())?;
        }
        write!(EscapingWriter(writer), "{value:?}")
    })
    .delimited(" ")
}

/// A `fmt::Write` that escapes control characters (`\n`, `\u{1b}`, …) as it writes.
struct EscapingWriter<W>(W);

impl<W: std::fmt::Write> std::fmt::Write for EscapingWriter<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Displays a value with its control characters escaped (for text from outside that is
/// logged as a field with `%`).
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(&mut EscapingWriter(f), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            Escaped("o_user\n2026-12-02 INFO forged\u{1b}[31m\t").to_string(),
            "o_user\\n2026-12-02 INFO forged\\u{1b}[31m\\t"
        );
        assert_eq!(Escaped("用户 ok").to_string(), "用户 ok");
    }
}
