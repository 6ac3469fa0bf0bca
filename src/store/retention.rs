//! Retention: what is deleted, and when.
//!
//! - conversation log (`messages`, `sends`) and `failed` outbox entries: after
//!   `log_retention_days`;
//! - dedupe rows: after `dedupe_keep_secs` (a day);
//! - sessions and quota windows: once expired.
//!
//! Deletes run in chunks, each its own short transaction, so that a purge of a large backlog never
//! holds the write lock long enough to delay a push's commit; the writer thread interleaves the
//! chunks with commit batches. Queued and sending outbox entries are never purged.

use rusqlite::Connection;
use serde::Serialize;

use super::StoreError;
use super::schema::backend;

/// Rows deleted per table and per step.
pub const CHUNK: usize = 5_000;

/// The cut-offs of one purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Log rows older than this (unix seconds) go.
    pub log_before: i64,
    /// Dedupe rows older than this go.
    pub dedupe_before: i64,
    /// Sessions and windows that end at or before this go.
    pub now: i64,
}

impl Cutoffs {
    /// The cut-offs at `now`.
    pub fn at(now: i64, log_retention_days: u32, dedupe_keep_secs: i64) -> Self {
        Self {
            log_before: now.saturating_sub(i64::from(log_retention_days) * 86_400),
            dedupe_before: now.saturating_sub(dedupe_keep_secs),
            now,
        }
    }
}

/// Rows deleted, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Conversation-log rows (`messages`).
    pub messages: usize,
    /// Send-log rows.
    pub sends: usize,
    /// Failed outbox entries.
    pub failed_outbox: usize,
    /// Dedupe rows.
    pub dedupe: usize,
    /// Expired sessions.
    pub sessions: usize,
    /// Closed quota windows.
    pub quota: usize,
}

impl PurgeReport {
    /// Rows deleted in all.
    pub fn total(&self) -> usize {
        self.messages + self.sends + self.failed_outbox + self.dedupe + self.sessions + self.quota
    }

    /// Adds another step's counts.
    pub fn add(&mut self, other: &PurgeReport) {
        self.messages += other.messages;
        self.sends += other.sends;
        self.failed_outbox += other.failed_outbox;
        self.dedupe += other.dedupe;
        self.sessions += other.sessions;
        self.quota += other.quota;
    }
}

/// Whether more rows may be left after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every table was below a full chunk: the purge is complete.
    Done,
    /// Some table returned a full chunk: run another step.
    More,
}

/// One step: at most [`CHUNK`] rows per table, in one transaction.
pub fn step(conn: &mut Connection, c: &Cutoffs) -> Result<(PurgeReport, Progress), StoreError> {
    let tx = conn.transaction().map_err(backend)?;
    let chunk = CHUNK as i64;
    let del = |sql: &str, cutoff: i64| -> Result<usize, StoreError> {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute([cutoff, chunk]))
            .map_err(backend)
    };
    let r = PurgeReport {
        messages: del(
            // Oldest first, by arrival, as the dedupe memos below (`messages` has no index on
            // `at`; see `super::arrival`).
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?2) \
             AND at < ?1",
            c.log_before,
        )?,
        sends: del(
            "DELETE FROM sends WHERE id IN (SELECT id FROM sends ORDER BY id LIMIT ?2) \
             AND at < ?1",
            c.log_before,
        )?,
        failed_outbox: del(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
             WHERE state = 'failed' AND finished_ms < ?1 * 1000 LIMIT ?2)",
            c.log_before,
        )?,
        dedupe: del(
            // Oldest first, by arrival: the scan stops at the first chunk, however many
            // memos are still young (`at` has no index; arrival order is its order).
            "DELETE FROM dedupe WHERE id IN (SELECT id FROM dedupe ORDER BY id LIMIT ?2) \
             AND at < ?1",
            c.dedupe_before,
        )?,
        sessions: del(
            "DELETE FROM sessions WHERE (app, openid) IN \
             (SELECT app, openid FROM sessions WHERE expires_at <= ?1 LIMIT ?2)",
            c.now,
        )?,
        quota: del(
            "DELETE FROM quota WHERE (app, openid) IN \
             (SELECT app, openid FROM quota WHERE until <= ?1 LIMIT ?2)",
            c.now,
        )?,
    };
    tx.commit().map_err(backend)?;
    let full = [
        r.messages,
        r.sends,
        r.failed_outbox,
        r.dedupe,
        r.sessions,
        r.quota,
    ]
    .iter()
    .any(|&n| n >= CHUNK);
    Ok((r, if full { Progress::More } else { Progress::Done }))
}

/// Runs steps until done (at open, and on demand).
pub fn purge_all(conn: &mut Connection, c: &Cutoffs) -> Result<PurgeReport, StoreError> {
    let mut total = PurgeReport::default();
    loop {
        let (r, progress) = step(conn, c)?;
        total.add(&r);
        if progress == Progress::Done {
            break;
        }
    }
    if total.total() > 0 {
        tracing::info!(?total, "store: purged expired rows");
    }
    Ok(total)
}
