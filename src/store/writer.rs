//! The writer thread: the only writer of the database, and the group commit.
//!
//! Commands arrive over a channel. The thread takes the first, drains whatever else is pending (up
//! to `max_batch`), applies them all in one `BEGIN IMMEDIATE` transaction and commits: one fsync
//! for the whole batch. Only after the commit does it publish the effects — dedupe memos to their
//! waiters, sessions to the cache, quota windows to its book, the outbox depth, a wake-up for the
//! worker — and resolve every ticket. If the transaction fails, nothing is published: every ticket
//! of the batch gets the error and in-flight claims are released so that WeChat's retry is
//! handled afresh.
//!
//! Between batches it purges expired rows in small chunks ([`super::retention`]), so the purge
//! never delays a commit by more than one chunk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{Notify, oneshot};

use super::dedupe::{self, DedupeCache};
use super::log::{self, SendLine, SendLogOutcome};
use super::outbox::{self, Claimed, Settlement};
use super::quota::{self, Overlay, QuotaBook};
use super::retention::{self, Cutoffs, Progress, PurgeReport};
use super::schema::backend;
use super::sessions::{self, SessionCache};
use super::{CommitReport, PushRecord, StoreError, StoreOptions};

/// State the writer publishes and the request path reads.
pub struct Shared {
    /// Dedupe memos (read by `claim`).
    pub dedupe: DedupeCache,
    /// Durable sessions (read by `session`).
    pub sessions: SessionCache,
    /// Woken when a commit queues outbox entries.
    pub wakeup: Arc<Notify>,
    /// Outbox entries queued or sending.
    pub depth: AtomicU64,
    /// Transactions committed by the writer (group commits).
    pub batches: AtomicU64,
    /// Commands carried by those transactions.
    pub commands: AtomicU64,
}

/// A request to the writer; each carries the sender of its answer.
pub enum Cmd {
    /// Make a push's records durable.
    Commit {
        /// The records.
        record: Box<PushRecord>,
        /// Resolved after the batch commits.
        reply: oneshot::Sender<Result<CommitReport, StoreError>>,
    },
    /// Claim due outbox entries.
    ClaimDue {
        /// The worker's clock (unix ms).
        now_ms: i64,
        /// At most this many.
        limit: usize,
        /// The claimed entries.
        reply: oneshot::Sender<Result<Claimed, StoreError>>,
    },
    /// Record what became of a claimed entry.
    Settle {
        /// The entry.
        id: i64,
        /// What became of it.
        settlement: Settlement,
        /// The worker's clock (unix ms).
        now_ms: i64,
        /// Resolved once durable.
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Purge everything expired at `now`, to completion.
    Purge {
        /// Unix seconds.
        now: i64,
        /// Rows deleted.
        reply: oneshot::Sender<Result<PurgeReport, StoreError>>,
    },
    /// A small write in the next group commit: whether the database takes writes now.
    Probe {
        /// Resolved after the batch commits (or fails).
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Store or forget a media cache entry (compare-and-delete), in the next group commit.
    Media {
        /// What to write.
        op: super::media::MediaWrite,
        /// Resolved once durable.
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Finish what is queued before this, refuse what comes after, stop.
    Close,
}

impl Cmd {
    /// A commit whose ticket was dropped: its push was answered without waiting for it.
    fn nobody_waits(&self) -> bool {
        matches!(self, Cmd::Commit { reply, .. } if reply.is_closed())
    }

    /// Answers the command with `error` (and releases a commit's in-flight claim).
    pub fn fail(self, shared: &Shared, error: StoreError) {
        match self {
            Cmd::Commit { record, reply } => {
                shared.dedupe.abandon(&record.key);
                let _ = reply.send(Err(error));
            }
            Cmd::ClaimDue { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Cmd::Settle { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Cmd::Purge { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Cmd::Probe { reply } | Cmd::Media { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Cmd::Close => {}
        }
    }
}

/// What applying a command produced, published after the commit.
enum Effect {
    Committed(CommitReport),
    Claimed(Claimed),
    Settled { left_pending: bool },
    Deferred,
}

/// The writer: owns the write connection and the quota book.
pub struct Writer {
    /// The only connection that writes.
    conn: Connection,
    /// Commands from every handle of the store.
    rx: mpsc::Receiver<Cmd>,
    /// What the writer publishes.
    shared: Arc<Shared>,
    /// Open send windows, as committed.
    quota: QuotaBook,
    /// Tuning.
    options: StoreOptions,
    /// When the next periodic purge starts.
    next_purge: Instant,
    /// When to look for operators' session-end requests next ([`super::history`]).
    next_session_poll: Instant,
    /// A periodic purge in progress: its cut-offs and what it deleted so far.
    purging: Option<(Cutoffs, PurgeReport)>,
    /// Tells the checkpointer thread that the WAL grew; dropped to stop it.
    ticks: Option<mpsc::SyncSender<()>>,
    /// The checkpointer thread, joined when the writer stops.
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

pub use crate::clock::{unix_ms, unix_now};

impl Writer {
    /// A writer over an open, migrated connection.
    /// `checkpointer` is the checkpointer thread and the sender that wakes it.
    pub fn new(
        conn: Connection,
        rx: mpsc::Receiver<Cmd>,
        shared: Arc<Shared>,
        quota: QuotaBook,
        options: StoreOptions,
        checkpointer: (mpsc::SyncSender<()>, std::thread::JoinHandle<()>),
    ) -> Self {
        let next_purge = Instant::now() + options.purge_interval;
        Self {
            conn,
            rx,
            shared,
            quota,
            options,
            next_purge,
            next_session_poll: Instant::now(),
            purging: None,
            ticks: Some(checkpointer.0),
            checkpointer: Some(checkpointer.1),
        }
    }

    /// Stops the checkpointer (it runs a final checkpoint) and waits for it.
    fn stop_checkpointer(&mut self) {
        self.ticks = None;
        if let Some(handle) = self.checkpointer.take()
            && handle.join().is_err()
        {
            tracing::error!("store: the checkpointer thread panicked");
        }
    }

    /// Runs until [`Cmd::Close`] or until every sender is gone.
    pub fn run(mut self) {
        self.serve();
        self.stop_checkpointer();
    }

    fn serve(&mut self) {
        loop {
            let first = if self.purging.is_some() {
                match self.rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            } else {
                let wait = self
                    .next_purge
                    .min(self.next_session_poll)
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                match self.rx.recv_timeout(wait) {
                    Ok(cmd) => Some(cmd),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            };
            if let Some(cmd) = first {
                if cmd.nobody_waits() {
                    // Nobody waits for this commit (a push answered at once): let the pushes
                    // that follow join its transaction. Their senders find the writer asleep
                    // and do not wake it, and one commit carries them all.
                    std::thread::sleep(LINGER);
                }
                let mut batch = Vec::with_capacity(64);
                batch.push(cmd);
                while batch.len() < self.options.max_batch.max(1) {
                    match self.rx.try_recv() {
                        Ok(cmd) => batch.push(cmd),
                        Err(_) => break,
                    }
                }
                if self.run_batch(batch) {
                    while let Ok(cmd) = self.rx.try_recv() {
                        cmd.fail(&self.shared, StoreError::Closed);
                    }
                    return;
                }
            }
            self.purge_tick();
            self.session_end_tick();
        }
    }

    /// Applies operators' session-end requests (`kefu session end`, from any process) every
    /// [`SESSION_POLL`]: a cheap indexed read of a table that is almost always empty.
    fn session_end_tick(&mut self) {
        if Instant::now() < self.next_session_poll {
            return;
        }
        self.next_session_poll = Instant::now() + SESSION_POLL;
        if let Err(e) =
            super::history::apply_session_ends(&mut self.conn, &self.shared.sessions, unix_now())
        {
            tracing::warn!(error = %e, "store: could not apply session-end requests; retrying");
        }
    }

    /// Applies a batch in one transaction and publishes it. Returns true when the store closes.
    fn run_batch(&mut self, batch: Vec<Cmd>) -> bool {
        let mut cmds = Vec::with_capacity(batch.len());
        let mut closing = false;
        for cmd in batch {
            if closing {
                cmd.fail(&self.shared, StoreError::Closed);
            } else if matches!(cmd, Cmd::Close) {
                closing = true;
            } else {
                cmds.push(cmd);
            }
        }
        if cmds.is_empty() {
            return closing;
        }
        let now_ms = unix_ms();
        match self.apply(&cmds, now_ms) {
            Ok(effects) => self.publish(cmds, effects),
            Err(e) => {
                tracing::error!(error = %e, commands = cmds.len(), "store: batch failed, rolled back");
                for cmd in cmds {
                    cmd.fail(&self.shared, e.clone());
                }
            }
        }
        closing
    }

    fn apply(&mut self, cmds: &[Cmd], now_ms: i64) -> Result<Vec<Effect>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let mut overlay = Overlay::default();
        let mut effects = Vec::with_capacity(cmds.len());
        // The pushes' memos and log lines go in with a few multi-row statements: first the
        // memos, which say which pushes are retries; the lines of the others follow.
        let records: Vec<&PushRecord> = cmds
            .iter()
            .filter_map(|cmd| match cmd {
                Cmd::Commit { record, .. } => Some(&**record),
                _ => None,
            })
            .collect();
        let mut firsts = dedupe::insert_all(&tx, &records)?.into_iter();
        let mut logged: Vec<&PushRecord> = Vec::with_capacity(records.len());
        for cmd in cmds {
            effects.push(match cmd {
                Cmd::Commit { record, .. } => {
                    let first = firsts.next().flatten();
                    if first.is_none() {
                        logged.push(record);
                    }
                    Effect::Committed(apply_commit(
                        &tx,
                        &self.quota,
                        &self.options.quota,
                        &mut overlay,
                        record,
                        first,
                        now_ms,
                    )?)
                }
                Cmd::ClaimDue { now_ms, limit, .. } => {
                    Effect::Claimed(outbox::claim_due(&tx, *now_ms, *limit)?)
                }
                Cmd::Settle {
                    id,
                    settlement,
                    now_ms,
                    ..
                } => Effect::Settled {
                    left_pending: outbox::settle(&tx, *id, settlement, *now_ms)?,
                },
                Cmd::Probe { .. } => {
                    tx.prepare_cached(
                        "INSERT INTO probe (id, at) VALUES (1, ?1) \
                         ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                    )
                    .and_then(|mut s| s.execute([now_ms]))
                    .map_err(backend)?;
                    Effect::Deferred
                }
                Cmd::Media { op, .. } => {
                    super::media::apply(&tx, op)?;
                    Effect::Deferred
                }
                Cmd::Purge { .. } | Cmd::Close => Effect::Deferred,
            });
        }
        log::insert_messages(&tx, &logged)?;
        tx.commit().map_err(backend)?;
        if let Some(ticks) = &self.ticks {
            // Full means a tick is already pending: the checkpointer will see this commit too.
            let _ = ticks.try_send(());
        }
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared
            .commands
            .fetch_add(cmds.len() as u64, Ordering::Relaxed);
        self.quota.apply(overlay);
        Ok(effects)
    }

    fn publish(&mut self, cmds: Vec<Cmd>, effects: Vec<Effect>) {
        if let Some(hook) = &self.options.on_recorded {
            let recorded: Vec<&PushRecord> = cmds
                .iter()
                .zip(&effects)
                .filter_map(|pair| match pair {
                    (Cmd::Commit { record, .. }, Effect::Committed(report))
                        if report.replay.is_none() =>
                    {
                        Some(&**record)
                    }
                    _ => None,
                })
                .collect();
            if !recorded.is_empty() {
                (hook.0)(&recorded);
            }
        }
        let mut session_updates = Vec::new();
        let mut queued = 0u64;
        let mut left = 0u64;
        let mut purges = Vec::new();
        let mut tickets: Vec<Ticket> = Vec::with_capacity(cmds.len());
        for (cmd, effect) in cmds.into_iter().zip(effects) {
            match (cmd, effect) {
                (Cmd::Commit { mut record, reply }, Effect::Committed(report)) => {
                    let memo = match &report.replay {
                        Some(first) => first.clone(),
                        None => std::mem::take(&mut record.memo),
                    };
                    self.shared
                        .dedupe
                        .resolve(&record.key, memo, record.received_at);
                    queued += report.queued as u64;
                    if report.replay.is_none() && record.session.is_some() {
                        session_updates.push(record);
                    }
                    tickets.push(Ticket::Committed(reply, report));
                }
                (Cmd::ClaimDue { reply, .. }, Effect::Claimed(claimed)) => {
                    tickets.push(Ticket::Claimed(reply, claimed));
                }
                (Cmd::Settle { reply, .. }, Effect::Settled { left_pending }) => {
                    left += u64::from(left_pending);
                    tickets.push(Ticket::Done(reply));
                }
                (Cmd::Purge { now, reply }, _) => purges.push((now, reply)),
                (Cmd::Probe { reply } | Cmd::Media { reply, .. }, _) => {
                    tickets.push(Ticket::Done(reply));
                }
                (cmd, _) => cmd.fail(
                    &self.shared,
                    StoreError::backend("internal: effect does not match command"),
                ),
            }
        }
        self.shared
            .sessions
            .apply(session_updates.iter().filter_map(|r| {
                r.session
                    .as_ref()
                    .map(|s| (r.app.as_str(), r.openid.as_str(), s))
            }));
        if queued > 0 {
            self.shared.depth.fetch_add(queued, Ordering::Relaxed);
        }
        if left > 0 {
            self.shared.depth.fetch_sub(left, Ordering::Relaxed);
        }
        // Resolve tickets only once everything they imply is visible.
        for ticket in tickets {
            ticket.resolve();
        }
        if queued > 0 {
            self.shared.wakeup.notify_one();
        }
        for (now, reply) in purges {
            let _ = reply.send(self.purge_now(now));
        }
    }

    /// A full purge at `now`, then a sweep of the in-memory caches.
    pub fn purge_now(&mut self, now: i64) -> Result<PurgeReport, StoreError> {
        let cutoffs = Cutoffs::at(
            now,
            self.options.log_retention_days,
            self.options.dedupe_keep_secs,
        );
        let report = retention::purge_all(&mut self.conn, &cutoffs)?;
        self.sweep(now);
        Ok(report)
    }

    fn sweep(&mut self, now: i64) {
        self.shared.dedupe.sweep(now);
        self.shared.sessions.sweep(now);
        self.quota.sweep(now);
    }

    /// Starts a periodic purge when it is due, and runs one chunk of one in progress.
    fn purge_tick(&mut self) {
        if self.purging.is_none() {
            if Instant::now() < self.next_purge {
                return;
            }
            let now = unix_now();
            self.sweep(now);
            let cutoffs = Cutoffs::at(
                now,
                self.options.log_retention_days,
                self.options.dedupe_keep_secs,
            );
            self.purging = Some((cutoffs, PurgeReport::default()));
        }
        let Some((cutoffs, mut total)) = self.purging.take() else {
            return;
        };
        match retention::step(&mut self.conn, &cutoffs) {
            Ok((r, Progress::More)) => {
                total.add(&r);
                self.purging = Some((cutoffs, total));
            }
            Ok((r, Progress::Done)) => {
                total.add(&r);
                if total != PurgeReport::default() {
                    tracing::info!(?total, "store: periodic purge done");
                }
                self.next_purge = Instant::now() + self.options.purge_interval;
            }
            Err(e) => {
                tracing::warn!(error = %e, "store: periodic purge failed; retrying later");
                self.next_purge = Instant::now() + self.options.purge_interval;
            }
        }
    }
}

/// A command's answer, held until everything its batch changed is visible.
enum Ticket {
    Committed(
        oneshot::Sender<Result<CommitReport, StoreError>>,
        CommitReport,
    ),
    Claimed(oneshot::Sender<Result<Claimed, StoreError>>, Claimed),
    Done(oneshot::Sender<Result<(), StoreError>>),
}

impl Ticket {
    fn resolve(self) {
        // A sender whose receiver is gone (nobody waits for the commit) has nobody to tell.
        match self {
            Self::Committed(reply, report) => drop(reply.send(Ok(report))),
            Self::Claimed(reply, claimed) => drop(reply.send(Ok(claimed))),
            Self::Done(reply) => drop(reply.send(Ok(()))),
        }
    }
}

/// How long a commit nobody waits for waits for company before its transaction starts.
const LINGER: Duration = Duration::from_millis(1);

/// How often the writer looks for session-end requests.
const SESSION_POLL: Duration = Duration::from_millis(200);

/// How much of a message a drop reason quotes.
const PREVIEW_CHARS: usize = 60;

fn short_preview(message: &crate::outbound::OutboundMessage) -> String {
    let p = message.preview();
    if p.chars().count() <= PREVIEW_CHARS {
        p
    } else {
        let mut s: String = p.chars().take(PREVIEW_CHARS).collect();
        s.push('…');
        s
    }
}

/// Applies one push whose memo is written (`first` is `None`) or was stored before (then the
/// push is a retry and nothing else is written). Its log line is the caller's.
fn apply_commit<'r>(
    tx: &rusqlite::Transaction<'_>,
    book: &QuotaBook,
    settings: &super::QuotaSettings,
    overlay: &mut Overlay<'r>,
    record: &'r PushRecord,
    first: Option<super::Memo>,
    now_ms: i64,
) -> Result<CommitReport, StoreError> {
    let at = record.received_at;
    if let Some(first) = first {
        return Ok(CommitReport {
            replay: Some(first),
            ..CommitReport::default()
        });
    }

    let user = (record.app.as_str(), record.openid.as_str());
    let current = match overlay.get(&user) {
        Some(w) => *w,
        None => book.get(&record.app, &record.openid),
    };
    let admission = quota::admit(
        current,
        record.quota_trigger,
        at,
        record.outbox.len(),
        settings,
    );
    if record.quota_trigger.is_some() || admission.admitted > 0 {
        // The window is written to disk when it is used; a push that queues nothing only moves
        // it in memory (one write less per push on the official-account path). After a crash
        // the user's next message opens it again, as WeChat does.
        if admission.admitted > 0 {
            quota::save(tx, &record.app, &record.openid, admission.window.as_ref())?;
        }
        overlay.insert(user, admission.window);
    }

    let (admitted, refused) = record.outbox.split_at(admission.admitted);
    for message in admitted {
        outbox::insert(
            tx,
            &record.app,
            &record.openid,
            &record.key.0,
            message,
            now_ms,
        )?;
    }
    let mut dropped = Vec::with_capacity(refused.len());
    if let Some(reason) = admission.reason.as_deref() {
        for message in refused {
            let line = format!("{reason} [{}]", short_preview(message));
            log::insert_send(
                tx,
                SendLine {
                    at,
                    app: &record.app,
                    openid: &record.openid,
                    outbox_id: None,
                    outcome: SendLogOutcome::Dropped,
                    errcode: None,
                    reason: Some(&line),
                    summary: Some(&super::log::one_line(&message.preview())),
                },
            )?;
            dropped.push(line);
        }
    }
    if let Some(session) = &record.session {
        sessions::save(tx, &record.app, &record.openid, session)?;
    }
    Ok(CommitReport {
        queued: admission.admitted,
        dropped,
        replay: None,
    })
}
