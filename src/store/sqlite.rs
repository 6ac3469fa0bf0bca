//! [`SqliteStore`]: the single-instance implementation of [`Store`] and [`Outbox`], in
//! `data_dir/kefu.sqlite3`.
//!
//! Opening runs the migrations, puts entries a crash left `sending` back in the queue, purges what
//! expired, loads the hot state (recent dedupe memos, sessions, quota windows) into memory and
//! starts the writer thread ([`super::writer`]). The request path then touches only memory
//! (`claim`, `session`) and a channel (`commit`). Operators' reads (`recent_failures`, `stats`)
//! use a separate read-only connection, which WAL lets run beside the writer.
//!
//! Durability: WAL with `synchronous=NORMAL` by default, `FULL` with `durability: full`
//! ([`super::Durability`]). A ticket resolves only after the transaction holding its records
//! committed, so an acknowledged push survives a crash of kefu, and with FULL a power loss too;
//! group commit makes FULL affordable (one fsync per batch).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono_tz::Tz;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Notify, oneshot};

use super::checkpoint;
use super::dedupe::DedupeCache;
use super::history::{self, LogQuery, SessionEnd, Thread, UserSummary};
use super::outbox::{self, Claimed, FailedEntry, OutboxCounts, Settlement};
use super::quota::{self, QuotaBook, Window};
use super::retention::{self, Cutoffs, PurgeReport};
use super::schema::{self, backend};
use super::sessions::SessionCache;
use super::stats::{self, StatsReport};
use super::writer::{Cmd, Shared, Writer, unix_now};
use super::{
    Claim, CommitTicket, Operations, Outbox, PushKey, PushRecord, Session, Store, StoreError,
    StoreOptions,
};
use futures_util::future::BoxFuture;

use super::OpenId;

/// At most one checkpoint per this long under load: a page the writer changes many times (the
/// right-most leaf of each table and index) is copied into the database once per checkpoint,
/// so checkpointing less often copies less (9% of the daemon's CPU at 50 ms, measured with
/// `bench/load.sh`), at the price of a longer WAL (about a second of writes).
const CHECKPOINT_GAP: Duration = Duration::from_millis(500);

/// The SQLite store. Cheap to clone: clones share one writer thread and one cache.
#[derive(Clone)]
pub struct SqliteStore {
    /// Shared by every clone; the writer stops when the last clone goes or on [`Self::close`].
    inner: Arc<Inner>,
}

struct Inner {
    /// Caches the writer publishes and the request path reads.
    shared: Arc<Shared>,
    /// Commands to the writer thread.
    tx: mpsc::Sender<Cmd>,
    /// For operators' reads; a mutex because a connection is not `Sync`.
    reader: Mutex<Connection>,
    /// The writer thread, joined on close.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The database file.
    path: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        stop_writer(&self.tx, &self.thread);
    }
}

fn stop_writer(tx: &mpsc::Sender<Cmd>, thread: &Mutex<Option<JoinHandle<()>>>) {
    let handle = thread.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(handle) = handle {
        let _ = tx.send(Cmd::Close);
        if handle.join().is_err() {
            tracing::error!("store: the writer thread panicked");
        }
    }
}

/// What [`SqliteStore::open`] found and did, for the start-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Entries a crash left `sending`, queued again.
    pub recovered: usize,
    /// Dedupe memos loaded into memory.
    pub memos: usize,
    /// Sessions loaded.
    pub sessions: usize,
    /// Quota windows loaded.
    pub windows: usize,
    /// Outbox entries waiting.
    pub pending: u64,
    /// What the start-up purge deleted.
    pub purged: PurgeReport,
}

impl SqliteStore {
    /// Opens (or creates) `data_dir/kefu.sqlite3` and starts the writer thread.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        Self::open_with_report(data_dir, options).map(|(s, _)| s)
    }

    /// [`Self::open`], also telling what it found.
    pub fn open_with_report(
        data_dir: &Path,
        options: StoreOptions,
    ) -> Result<(Self, OpenReport), StoreError> {
        create_private(data_dir)?;
        let path = data_dir.join(schema::DB_FILE);
        let mut conn = Connection::open(&path)
            .map_err(|e| StoreError::caused(&format!("cannot open {}", path.display()), e))?;
        schema::configure_writer(&conn, options.durability)?;
        schema::migrate(&mut conn)?;

        let now = unix_now();
        let mut report = OpenReport {
            recovered: outbox::recover(&conn)?,
            ..OpenReport::default()
        };
        if report.recovered > 0 {
            tracing::warn!(
                entries = report.recovered,
                "store: outbox entries interrupted while sending are queued again"
            );
        }
        report.purged = retention::purge_all(
            &mut conn,
            &Cutoffs::at(now, options.log_retention_days, options.dedupe_keep_secs),
        )?;

        let dedupe = DedupeCache::new(options.dedupe_hot_secs);
        report.memos = dedupe.load(&conn, now)?;
        let sessions = SessionCache::default();
        report.sessions = sessions.load(&conn, now)?;
        let book = QuotaBook::load(&conn, now)?;
        report.windows = book.len();
        let counts = outbox::counts(&conn)?;
        report.pending = counts.queued + counts.sending;

        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        schema::configure_reader(&reader)?;

        let shared = Arc::new(Shared {
            dedupe,
            sessions,
            wakeup: Arc::new(Notify::new()),
            depth: AtomicU64::new(report.pending),
            batches: AtomicU64::new(0),
            commands: AtomicU64::new(0),
        });
        let checkpointer = {
            let conn = Connection::open(&path).map_err(backend)?;
            schema::configure_checkpointer(&conn)?;
            let (ticks, rx) = mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name("kefu-store-checkpoint".into())
                .spawn(move || checkpoint::run(conn, rx, CHECKPOINT_GAP))
                .map_err(|e| StoreError::caused("cannot start the checkpointer", e))?;
            (ticks, thread)
        };
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(conn, rx, Arc::clone(&shared), book, options, checkpointer);
        let thread = std::thread::Builder::new()
            .name("kefu-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::caused("cannot start the writer thread", e))?;
        tracing::info!(path = %path.display(), ?report, "store: opened");
        Ok((
            Self {
                inner: Arc::new(Inner {
                    shared,
                    tx,
                    reader: Mutex::new(reader),
                    thread: Mutex::new(Some(thread)),
                    path,
                }),
            },
            report,
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Finishes the commands already sent, then stops the writer; later commits fail with
    /// [`StoreError::Closed`]. Blocks until the writer is done (one batch at most). Idempotent.
    pub fn close(&self) {
        stop_writer(&self.inner.tx, &self.inner.thread);
    }

    /// Outbox entries queued or being sent (the gauge of `/metrics`), from memory.
    pub fn outbox_depth(&self) -> u64 {
        self.inner.shared.depth.load(Ordering::Relaxed)
    }

    /// Group commits so far, and the commands they carried (their ratio is the batch size).
    pub fn writer_stats(&self) -> (u64, u64) {
        let shared = &self.inner.shared;
        (
            shared.batches.load(Ordering::Relaxed),
            shared.commands.load(Ordering::Relaxed),
        )
    }

    /// Outbox entries by state, from disk.
    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        outbox::counts(&self.reader())
    }

    /// The latest entries that failed for good, newest first.
    pub fn recent_failures(&self, limit: usize) -> Result<Vec<FailedEntry>, StoreError> {
        outbox::recent_failures(&self.reader(), limit)
    }

    /// Conversation-log statistics since `since_unix`, days cut in `tz`.
    pub fn stats(&self, since_unix: i64, tz: Tz) -> Result<StatsReport, StoreError> {
        stats::collect_from(&self.reader(), since_unix, unix_now(), tz)
    }

    /// Messages per bucket since `since_unix`, for the console's chart.
    pub fn series(
        &self,
        since_unix: i64,
        bucket_secs: i64,
    ) -> Result<Vec<stats::SeriesPoint>, StoreError> {
        stats::series_from(&self.reader(), since_unix, unix_now(), bucket_secs)
    }

    /// A user's stored quota window (operators, tests).
    pub fn quota_window(&self, app: &str, openid: &str) -> Result<Option<Window>, StoreError> {
        quota::stored(&self.reader(), app, openid)
    }

    /// Purges everything expired at `now` (unix seconds) and resolves when done. The writer also
    /// does this at open and every `purge_interval`.
    pub async fn purge(&self, now: i64) -> Result<PurgeReport, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Purge { now, reply });
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned reader is still a valid connection: reads leave no half-done state.
        self.inner
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a command to the writer (for the other modules of the store).
    pub(crate) fn send_cmd(&self, cmd: Cmd) {
        self.send(cmd);
    }

    /// Runs `f` on the reader connection.
    pub(crate) fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.reader())
    }

    /// Sends a command; if the writer is gone, fails it at once.
    fn send(&self, cmd: Cmd) {
        if let Err(mpsc::SendError(cmd)) = self.inner.tx.send(cmd) {
            cmd.fail(&self.inner.shared, StoreError::Closed);
        }
    }
}

/// Creates `data_dir` (0700) and the database file (0600) whatever the umask: they hold users'
/// messages. SQLite gives the `-wal` and `-shm` files the database file's mode. A database file
/// an older version left readable by others is narrowed to 0600.
fn create_private(data_dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let failed = |what: &Path, e: std::io::Error| {
        StoreError::caused(&format!("cannot create {}", what.display()), e)
    };
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| failed(data_dir, e))?;
    }
    let path = data_dir.join(schema::DB_FILE);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for file in [
                path.clone(),
                path.with_extension("sqlite3-wal"),
                path.with_extension("sqlite3-shm"),
            ] {
                if let Ok(meta) = std::fs::metadata(&file)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| failed(&file, e))?;
                    tracing::warn!(file = %file.display(), "store: narrowed the file's permissions to 0600");
                }
            }
        }
        Err(e) => return Err(failed(&path, e)),
    }
    Ok(())
}

impl SqliteStore {
    /// [`Store::claim`] without the future: an in-memory lookup.
    pub fn claim(&self, key: &PushKey, now: i64) -> Result<Claim, StoreError> {
        Ok(self.inner.shared.dedupe.claim(key, now))
    }

    /// [`Store::session`] without the future: an in-memory lookup.
    pub fn session(&self, app: &str, openid: &str, now: i64) -> Result<Session, StoreError> {
        Ok(self.inner.shared.sessions.get(app, openid, now))
    }
}

impl Store for SqliteStore {
    fn claim(&self, key: &PushKey, now: i64) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(std::future::ready(SqliteStore::claim(self, key, now)))
    }

    fn abandon(&self, key: &PushKey) {
        self.inner.shared.dedupe.abandon(key);
    }

    fn session(
        &self,
        app: &str,
        openid: &OpenId,
        now: i64,
    ) -> BoxFuture<'_, Result<Session, StoreError>> {
        Box::pin(std::future::ready(SqliteStore::session(
            self, app, openid, now,
        )))
    }

    fn commit(&self, record: PushRecord) -> CommitTicket {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Commit {
            record: Box::new(record),
            reply,
        });
        rx
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Probe { reply });
        Box::pin(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }
}

impl Operations for SqliteStore {
    fn outbox_depth(&self) -> u64 {
        SqliteStore::outbox_depth(self)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        SqliteStore::outbox_counts(self)
    }

    fn stats(&self, since_unix: i64, tz: Tz) -> Result<StatsReport, StoreError> {
        SqliteStore::stats(self, since_unix, tz)
    }

    fn series(
        &self,
        since_unix: i64,
        bucket_secs: i64,
    ) -> Result<Vec<stats::SeriesPoint>, StoreError> {
        SqliteStore::series(self, since_unix, bucket_secs)
    }

    fn recent_failures(&self, limit: usize) -> Result<Vec<FailedEntry>, StoreError> {
        SqliteStore::recent_failures(self, limit)
    }

    fn threads(&self, query: &LogQuery) -> Result<Vec<Thread>, StoreError> {
        history::threads(&self.reader(), query)
    }

    fn recent_users(&self, query: &LogQuery) -> Result<Vec<UserSummary>, StoreError> {
        history::recent_users(&self.reader(), query)
    }

    fn end_session(&self, app: &str, openid: &OpenId, now: i64) -> Result<SessionEnd, StoreError> {
        // The same request another process makes: this store's own writer applies it.
        history::end_session(&self.inner.path, app, openid, now, SESSION_END_WAIT)
    }
}

/// The operators' read side of a database another process (the daemon) owns: `kefu stats` and
/// the other commands open one of these, never the writer.
pub struct SqliteReader {
    /// Read-only, opened once.
    conn: Mutex<Connection>,
    /// The database file (`end_session` opens its own writing connection).
    path: PathBuf,
}

impl SqliteReader {
    /// Opens `data_dir`'s database read-only; an error names a missing database.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(schema::DB_FILE);
        Ok(Self {
            conn: Mutex::new(stats::open_read_only(&path)?),
            path,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Operations for SqliteReader {
    fn outbox_depth(&self) -> u64 {
        outbox::counts(&self.conn()).map_or(0, |c| c.queued + c.sending)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        outbox::counts(&self.conn())
    }

    fn stats(&self, since_unix: i64, tz: Tz) -> Result<StatsReport, StoreError> {
        stats::collect_from(&self.conn(), since_unix, unix_now(), tz)
    }

    fn series(
        &self,
        since_unix: i64,
        bucket_secs: i64,
    ) -> Result<Vec<stats::SeriesPoint>, StoreError> {
        stats::series_from(&self.conn(), since_unix, unix_now(), bucket_secs)
    }

    fn recent_failures(&self, limit: usize) -> Result<Vec<FailedEntry>, StoreError> {
        outbox::recent_failures(&self.conn(), limit)
    }

    fn threads(&self, query: &LogQuery) -> Result<Vec<Thread>, StoreError> {
        history::threads(&self.conn(), query)
    }

    fn recent_users(&self, query: &LogQuery) -> Result<Vec<UserSummary>, StoreError> {
        history::recent_users(&self.conn(), query)
    }

    fn end_session(&self, app: &str, openid: &OpenId, now: i64) -> Result<SessionEnd, StoreError> {
        history::end_session(&self.path, app, openid, now, SESSION_END_WAIT)
    }
}

/// How long `kefu session end` waits for the running daemon to apply the request before it ends
/// the session in the store itself (the daemon polls every 200 ms).
pub const SESSION_END_WAIT: Duration = Duration::from_secs(3);

impl Outbox for SqliteStore {
    fn wakeup(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.shared.wakeup)
    }

    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Claimed, StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::ClaimDue {
            now_ms,
            limit,
            reply,
        });
        Box::pin(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    fn settle(
        &self,
        id: i64,
        settlement: Settlement,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Settle {
            id,
            settlement,
            now_ms,
            reply,
        });
        Box::pin(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    fn depth(&self) -> u64 {
        self.outbox_depth()
    }
}
