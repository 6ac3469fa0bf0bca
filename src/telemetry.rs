//! The tracing subscriber: human-readable by default, JSON (one object per line) for log
//! shippers. `RUST_LOG` overrides the default filter.
//!
//! Lines go to stderr through [`BatchedStderr`]: a request thread formats its line and appends
//! it to a shared buffer; a logging thread writes the buffer out every [`FLUSH_EVERY`] (sooner
//! when it fills), so a push costs neither a `write(2)` nor a wake-up of another thread.
//! [`LogGuard`] writes what is left when it is dropped.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the logging thread alive; dropping it writes the buffered lines and stops it.
pub struct LogGuard {
    worker: Option<(BatchedStderr, JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((writer, thread)) = self.worker.take() {
            writer.stop();
            let _ = thread.join();
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which
/// keeps tests simple.
pub fn init(format: LogFormat, default_filter: &str) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let writer = BatchedStderr::default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(SecondCachedTime)
        .with_target(false);
    let installed = match format {
        // Field values may come from a push (an openid, a path): control characters are
        // escaped so that no value can forge a line or drive the terminal.
        LogFormat::Text => builder.fmt_fields(escaping_fields()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    let worker = match installed {
        Ok(()) => writer
            .spawn_flusher(std::io::stderr())
            .map(|thread| (writer, thread)),
        Err(_) => None,
    };
    LogGuard { worker }
}

/// The time of a line as `tracing`'s default writes it (RFC 3339, UTC, microseconds:
/// `2026-12-02T18:33:44.718657Z`), with the date and time of day formatted once a second per
/// thread instead of for every line.
struct SecondCachedTime;

impl tracing_subscriber::fmt::time::FormatTime for SecondCachedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        use std::cell::RefCell;
        thread_local! {
            static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
        }
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since_epoch.as_secs();
        SECOND.with_borrow_mut(|(second, text)| {
            if *second != secs {
                let at = i64::try_from(secs)
                    .ok()
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                    .unwrap_or_default();
                *text = at.format("%Y-%m-%dT%H:%M:%S").to_string();
                *second = secs;
            }
            w.write_str(text)
        })?;
        write!(w, ".{:06}Z", since_epoch.subsec_micros())
    }
}

/// How long a line may wait in the buffer before the logging thread writes it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// A buffer this large is written at once, without waiting for [`FLUSH_EVERY`].
const FLUSH_AT_BYTES: usize = 256 * 1024;

/// Past this, a line waits for the logging thread to make room: logs are never dropped, and a
/// stderr that cannot keep up slows the daemon instead of growing its memory.
const MAX_BUFFERED_BYTES: usize = 8 * 1024 * 1024;

/// Stderr behind one shared buffer, written out by a logging thread in batches.
///
/// `tracing`'s formatter writes each line whole in one `write_all`, so appending under the
/// lock keeps lines intact; the logging thread swaps the buffer out under the lock and writes it
/// outside, so a slow terminal never holds the lock.
#[derive(Clone, Default)]
pub struct BatchedStderr {
    inner: Arc<Batch>,
}

#[derive(Default)]
struct Batch {
    state: Mutex<BatchState>,
    /// Wakes the logging thread (a full buffer, or stop).
    wake: Condvar,
    /// Wakes lines waiting for room.
    room: Condvar,
}

#[derive(Default)]
struct BatchState {
    buffer: Vec<u8>,
    stopped: bool,
}

impl BatchedStderr {
    /// Starts the logging thread. `None` when the thread cannot be started: the lines are then
    /// written by whoever logs them.
    fn spawn_flusher(&self, sink: impl Write + Send + 'static) -> Option<JoinHandle<()>> {
        let inner = Arc::clone(&self.inner);
        match std::thread::Builder::new()
            .name("kefu-log".into())
            .spawn(move || inner.flush_loop(sink))
        {
            Ok(thread) => Some(thread),
            Err(_) => {
                self.stop();
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BatchState> {
        // A panic while appending leaves at worst a partial line: keep logging.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what is buffered and stops the logging thread; later lines are written directly.
    fn stop(&self) {
        self.lock().stopped = true;
        self.inner.wake.notify_all();
    }
}

impl Batch {
    fn flush_loop(&self, mut sink: impl Write) {
        let mut out = Vec::new();
        loop {
            let stopped = {
                let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let (mut state, _) = self
                    .wake
                    .wait_timeout_while(state, FLUSH_EVERY, |s| {
                        !s.stopped && s.buffer.len() < FLUSH_AT_BYTES
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                std::mem::swap(&mut state.buffer, &mut out);
                state.stopped
            };
            self.room.notify_all();
            if !out.is_empty() {
                let _ = sink.write_all(&out);
                let _ = sink.flush();
                out.clear();
            }
            if stopped {
                return;
            }
        }
    }
}

impl Write for &BatchedStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.lock();
        if state.stopped {
            drop(state);
            return std::io::stderr().write(line);
        }
        if state.buffer.len() >= MAX_BUFFERED_BYTES {
            self.inner.wake.notify_one();
            state = self
                .inner
                .room
                .wait_while(state, |s| {
                    !s.stopped && s.buffer.len() >= MAX_BUFFERED_BYTES
                })
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.buffer.extend_from_slice(line);
        if state.buffer.len() >= FLUSH_AT_BYTES {
            self.inner.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = &'a BatchedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// The human format's field formatter: `name=value` pairs separated by spaces, the message
/// bare, strings quoted, every control character of a value escaped. It writes what
/// `debug_fn(|w, field, value| write!(w, "{}={value:?}", field.name())).delimited(" ")` with a
/// control-escaping writer would, without `fmt` machinery for the common values: a plain ASCII
/// string is copied between quotes, a number written directly.
fn escaping_fields() -> EscapingFields {
    EscapingFields
}

struct EscapingFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for EscapingFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes one event's fields (see [`escaping_fields`]); the first error stops it.
struct FieldWriter<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl FieldWriter<'_> {
    /// Writes the separator and `name=` (nothing for the message), then the value.
    fn field(
        &mut self,
        field: &tracing::field::Field,
        value: impl FnOnce(&mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result,
    ) {
        if self.result.is_ok() {
            let separator = !std::mem::take(&mut self.first);
            self.result = Self::write(&mut self.writer, separator, field, value);
        }
    }

    fn write(
        w: &mut tracing_subscriber::fmt::format::Writer<'_>,
        separator: bool,
        field: &tracing::field::Field,
        value: impl FnOnce(&mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result,
    ) -> std::fmt::Result {
        if separator {
            w.write_char(' ')?;
        }
        if field.name() != "message" {
            w.write_str(field.name())?;
            w.write_char('=')?;
        }
        value(w)
    }
}

impl tracing::field::Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write;
        self.field(field, |w| {
            // What `{:?}` writes for printable ASCII without `"` or `\`: the text in quotes.
            if value
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                w.write_char('"')?;
                w.write_str(value)?;
                w.write_char('"')
            } else {
                write!(EscapingWriter(w), "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        self.field(field, |w| write!(EscapingWriter(w), "{value:?}"));
    }
}

/// A `fmt::Write` that escapes control characters (`\n`, `\u{1b}`, …) as it writes.
struct EscapingWriter<W>(W);

impl<W: std::fmt::Write> std::fmt::Write for EscapingWriter<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // Printable ASCII (an openid, a rule id) has nothing to escape: one byte loop instead of
        // decoding every character.
        if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return self.0.write_str(s);
        }
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

    /// A sink the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batched_lines_stay_whole_and_in_order_and_are_all_written_at_stop() {
        let writer = BatchedStderr::default();
        let sink = Shared::default();
        let thread = writer
            .spawn_flusher(sink.clone())
            .unwrap_or_else(|| panic!("spawn"));
        std::thread::scope(|s| {
            for t in 0..4 {
                let writer = &writer;
                s.spawn(move || {
                    for i in 0..5_000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 97));
                        let _ = (&*writer).write_all(line.as_bytes());
                    }
                });
            }
        });
        writer.stop();
        let _ = thread.join();
        let out = String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        let mut next = [0usize; 4];
        for line in out.lines() {
            let mut words = line.split(' ');
            let t: usize = words.nth(1).and_then(|w| w.parse().ok()).unwrap_or(99);
            let i: usize = words.nth(1).and_then(|w| w.parse().ok()).unwrap_or(99_999);
            assert_eq!(i, next[t], "{line}");
            assert_eq!(words.next().map(str::len), Some(i % 97), "{line}");
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4]);
    }

    /// Formats one event with `fields` as the field formatter, without time, level or target.
    fn one_line<F>(fields: F) -> String
    where
        F: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let sink = Shared::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .with_target(false)
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let shown = "o_user\n2026 INFO forged";
            tracing::info!(
                app = "bench",
                quoted = "say \"hi\" \\ back",
                chinese = "注销小程序",
                control = "a\tb\u{1b}[31m",
                empty = "",
                openid = %shown,
                n = 42u64,
                neg = -7i64,
                yes = true,
                ratio = 0.5f64,
                debug = ?Some("x"),
                "push {}",
                "done"
            );
        });
        let bytes = sink.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn fields_are_written_as_the_generic_escaping_formatter_writes_them() {
        use tracing_subscriber::field::MakeExt;
        let generic = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
            use std::fmt::Write;
            if field.name() != "message" {
                write!(writer, "{}=", field.name())?;
            }
            write!(EscapingWriter(writer), "{value:?}")
        })
        .delimited(" ");
        let ours = one_line(escaping_fields());
        assert_eq!(ours, one_line(generic));
        assert!(
            ours.contains(r#"push done app="bench" quoted="say \"hi\" \\ back""#),
            "{ours}"
        );
        assert!(
            ours.contains(r"openid=o_user\n2026 INFO forged n=42"),
            "{ours}"
        );
    }

    #[test]
    fn the_cached_time_reads_as_the_default_time() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
        // Twice each (the second time from the cache); a second that ticks in between is
        // waited out by trying again.
        for _ in 0..3 {
            let (mut ours, mut again, mut default) = (String::new(), String::new(), String::new());
            let _ = SecondCachedTime.format_time(&mut Writer::new(&mut ours));
            let _ = SystemTime.format_time(&mut Writer::new(&mut default));
            let _ = SecondCachedTime.format_time(&mut Writer::new(&mut again));
            assert_eq!(ours.len(), default.len(), "{ours} {default}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            if ours[..19] == default[..19] && again[..19] == default[..19] {
                return;
            }
        }
        panic!("the cached time never agreed with the default time");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            Escaped("o_user\n2026-12-02 INFO forged\u{1b}[31m\t").to_string(),
            "o_user\\n2026-12-02 INFO forged\\u{1b}[31m\\t"
        );
        assert_eq!(Escaped("用户 ok").to_string(), "用户 ok");
        // DEL and a C1 control (NEL) are control characters too, past the ASCII fast path.
        assert_eq!(Escaped("a\u{7f}b\u{85}c").to_string(), "a\\u{7f}b\\u{85}c");
        assert_eq!(Escaped("plain_ascii-1").to_string(), "plain_ascii-1");
    }
}
