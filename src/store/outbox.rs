//! The durable outbox: entries queued at commit, claimed by the worker, removed once WeChat
//! accepted them, or kept as `failed` with the reason.
//!
//! States: `queued` (waiting, maybe for a backoff to pass) → `sending` (claimed; the worker is
//! calling WeChat) → deleted when accepted, back to `queued` on a retryable error, or `failed`.
//! Only the oldest unsettled entry of a user can be claimed, so one user's messages go out
//! strictly in order even across retries. Entries found `sending` at open were interrupted by a
//! crash and go back to `queued` ([`recover`]).

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use super::StoreError;
use super::log::{SendLogOutcome, insert_send_for_entry};
use super::schema::backend;
use crate::openid::OpenId;
use crate::outbound::OutboundMessage;

/// One message waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Row id; also the order of entries.
    pub id: i64,
    /// The app id of `kefu.yaml`.
    pub app: String,
    /// The recipient.
    pub openid: OpenId,
    /// What to send.
    pub message: OutboundMessage,
    /// Attempts completed before this claim.
    pub attempts: u32,
    /// When the entry was queued (unix ms).
    pub created_ms: i64,
    /// When it was first claimed (unix ms): the start of the retry bound.
    pub first_attempt_ms: i64,
    /// A send of it was in flight when kefu last stopped: this attempt may be a duplicate.
    pub interrupted: bool,
}

/// What [`claim_due`] handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Entries now `sending`, oldest first.
    pub entries: Vec<OutboxEntry>,
    /// When the next entry that could be claimed becomes due (unix ms), if one is waiting for a
    /// backoff. Entries blocked behind a user's in-flight entry are not counted: settling that
    /// entry wakes the worker anyway.
    pub next_due_ms: Option<i64>,
}

/// What became of a claimed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// WeChat accepted it: the entry is removed.
    Sent {
        /// What was sent, when it is not the queued message's own summary (a `fetch` reply's
        /// composed text): the send log shows it instead.
        text: Option<String>,
    },
    /// It cannot succeed: kept as `failed` with the reason, never retried.
    Failed {
        /// WeChat's errcode, when it gave one.
        errcode: Option<i64>,
        /// Why, for operators.
        reason: String,
    },
    /// Try again at `next_attempt_ms`.
    Retry {
        /// Unix ms of the next attempt.
        next_attempt_ms: i64,
        /// What went wrong this time.
        reason: String,
    },
}

/// An entry that failed for good, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedEntry {
    /// Row id.
    pub id: i64,
    /// The app id of `kefu.yaml`.
    pub app: String,
    /// The recipient.
    pub openid: String,
    /// What the message said ([`OutboundMessage::preview`]).
    pub preview: String,
    /// Attempts made.
    pub attempts: u32,
    /// WeChat's errcode, when it gave one.
    pub errcode: Option<i64>,
    /// Why it failed.
    pub reason: String,
    /// When it was queued (unix ms).
    pub created_ms: i64,
    /// When it failed (unix ms).
    pub failed_ms: i64,
}

/// Entries by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    /// Waiting to be sent.
    pub queued: u64,
    /// Being sent.
    pub sending: u64,
    /// Failed for good (kept for the retention period).
    pub failed: u64,
}

/// Queues one message; returns its id.
pub fn insert(
    tx: &Transaction<'_>,
    app: &str,
    openid: &str,
    push_key: &str,
    message: &OutboundMessage,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let json = serde_json::to_string(message).map_err(backend)?;
    let summary = super::log::one_line(&message.preview());
    tx.prepare_cached(
        "INSERT INTO outbox (app, openid, push_key, message, state, created_ms, next_attempt_ms, \
         summary) VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5, ?6)",
    )
    .and_then(|mut s| s.execute(params![app, openid, push_key, json, now_ms, summary]))
    .map_err(backend)?;
    Ok(tx.last_insert_rowid())
}

/// Claims up to `limit` due entries, at most one per user (the user's oldest unsettled one),
/// longest due first. Walks the `outbox_due` index and stops at `limit`, so a large backlog after
/// an outage costs little per claim.
pub fn claim_due(tx: &Transaction<'_>, now_ms: i64, limit: usize) -> Result<Claimed, StoreError> {
    let heads = "o.state = 'queued' AND NOT EXISTS (SELECT 1 FROM outbox p \
                 WHERE p.app = o.app AND p.openid = o.openid AND p.id < o.id \
                 AND p.state IN ('queued', 'sending'))";
    let mut entries = Vec::new();
    if limit > 0 {
        let mut select = tx
            .prepare_cached(&format!(
                "SELECT o.id, o.app, o.openid, o.message, o.attempts, o.created_ms, \
                 o.first_attempt_ms, o.interrupted FROM outbox o \
                 WHERE o.next_attempt_ms <= ?1 AND {heads} ORDER BY o.next_attempt_ms, o.id LIMIT ?2"
            ))
            .map_err(backend)?;
        let rows = select
            .query_map(params![now_ms, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, bool>(7)?,
                ))
            })
            .map_err(backend)?;
        let mut unreadable = Vec::new();
        for row in rows {
            let (id, app, openid, json, attempts, created_ms, first, interrupted) =
                row.map_err(backend)?;
            match serde_json::from_str::<OutboundMessage>(&json) {
                Ok(message) => entries.push(OutboxEntry {
                    id,
                    app,
                    openid: openid.into(),
                    message,
                    attempts,
                    created_ms,
                    first_attempt_ms: first.unwrap_or(now_ms),
                    interrupted,
                }),
                Err(e) => unreadable.push((id, e.to_string())),
            }
        }
        drop(select);
        let mut mark = tx
            .prepare_cached(
                "UPDATE outbox SET state = 'sending', interrupted = 0, \
                 first_attempt_ms = coalesce(first_attempt_ms, ?2) WHERE id = ?1",
            )
            .map_err(backend)?;
        for e in &entries {
            mark.execute(params![e.id, now_ms]).map_err(backend)?;
        }
        drop(mark);
        // An entry this build cannot read would block its user forever: fail it.
        for (id, error) in unreadable {
            settle(
                tx,
                id,
                &Settlement::Failed {
                    errcode: None,
                    reason: format!("unreadable outbox entry: {error}"),
                },
                now_ms,
            )?;
        }
    }
    let next_due_ms: Option<i64> = tx
        .prepare_cached(&format!(
            "SELECT min(o.next_attempt_ms) FROM outbox o WHERE o.next_attempt_ms > ?1 AND {heads}"
        ))
        .and_then(|mut s| s.query_row([now_ms], |r| r.get(0)))
        .map_err(backend)?;
    Ok(Claimed {
        entries,
        next_due_ms,
    })
}

/// Records the outcome of a claimed entry. Returns whether the entry left the pending set
/// (sent or failed), for the depth gauge.
pub fn settle(
    tx: &Transaction<'_>,
    id: i64,
    settlement: &Settlement,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let at = now_ms.div_euclid(1000);
    match settlement {
        Settlement::Sent { text } => {
            let sent = text.as_deref().map(super::log::one_line);
            insert_send_for_entry(
                tx,
                at,
                id,
                SendLogOutcome::Sent,
                None,
                None,
                sent.as_deref(),
            )?;
            let n = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ?1 AND state != 'failed'")
                .and_then(|mut s| s.execute([id]))
                .map_err(backend)?;
            Ok(n > 0)
        }
        Settlement::Failed { errcode, reason } => {
            insert_send_for_entry(
                tx,
                at,
                id,
                SendLogOutcome::Failed,
                *errcode,
                Some(reason),
                None,
            )?;
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, \
                     finished_ms = ?2, errcode = ?3, last_error = ?4 \
                     WHERE id = ?1 AND state != 'failed'",
                )
                .and_then(|mut s| s.execute(params![id, now_ms, errcode, reason]))
                .map_err(backend)?;
            Ok(n > 0)
        }
        Settlement::Retry {
            next_attempt_ms,
            reason,
        } => {
            insert_send_for_entry(
                tx,
                at,
                id,
                SendLogOutcome::Retrying,
                None,
                Some(reason),
                None,
            )?;
            tx.prepare_cached(
                "UPDATE outbox SET state = 'queued', attempts = attempts + 1, \
                 next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1 AND state = 'sending'",
            )
            .and_then(|mut s| s.execute(params![id, next_attempt_ms, reason]))
            .map_err(backend)?;
            Ok(false)
        }
    }
}

/// Puts entries a crash left `sending` back in the queue; returns how many.
pub fn recover(conn: &Connection) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE outbox SET state = 'queued', interrupted = 1 WHERE state = 'sending'",
        [],
    )
    .map_err(backend)
}

/// Entries by state.
pub fn counts(conn: &Connection) -> Result<OutboxCounts, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT state, count(*) FROM outbox GROUP BY state")
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
        .map_err(backend)?;
    let mut c = OutboxCounts::default();
    for row in rows {
        let (state, n) = row.map_err(backend)?;
        match state.as_str() {
            "queued" => c.queued = n,
            "sending" => c.sending = n,
            "failed" => c.failed = n,
            _ => {}
        }
    }
    Ok(c)
}

/// The most recent failures, newest first.
pub fn recent_failures(conn: &Connection, limit: usize) -> Result<Vec<FailedEntry>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, app, openid, message, attempts, errcode, coalesce(last_error, ''), \
             created_ms, coalesce(finished_ms, 0) FROM outbox WHERE state = 'failed' \
             ORDER BY finished_ms DESC, id DESC LIMIT ?1",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([limit as i64], |r| {
            let json: String = r.get(3)?;
            Ok(FailedEntry {
                id: r.get(0)?,
                app: r.get(1)?,
                openid: r.get(2)?,
                preview: serde_json::from_str::<OutboundMessage>(&json)
                    .map(|m| m.preview())
                    .unwrap_or(json),
                attempts: r.get(4)?,
                errcode: r.get(5)?,
                reason: r.get(6)?,
                created_ms: r.get(7)?,
                failed_ms: r.get(8)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// An unsent entry of a SQLite outbox, read to move it into another store.
#[derive(Debug, Clone)]
pub struct Unsent {
    /// Row id.
    pub id: i64,
    /// The app id of `kefu.yaml`.
    pub app: String,
    /// The recipient.
    pub openid: String,
    /// What to send.
    pub message: OutboundMessage,
    /// Attempts made.
    pub attempts: u32,
    /// When it was queued (unix ms).
    pub created_ms: i64,
}

/// The unsent entries (`queued` or `sending`) of the SQLite store in `data_dir`, oldest first;
/// none when there is no database file (a deployment that never ran on SQLite).
pub fn take_unsent(data_dir: &std::path::Path) -> Result<Vec<Unsent>, StoreError> {
    let path = data_dir.join(super::schema::DB_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = Connection::open(&path).map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    let mut stmt = conn
        .prepare(
            "SELECT id, app, openid, message, attempts, created_ms FROM outbox \
             WHERE state IN ('queued', 'sending') ORDER BY id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, app, openid, json, attempts, created_ms) = row.map_err(backend)?;
        match serde_json::from_str::<OutboundMessage>(&json) {
            Ok(message) => out.push(Unsent {
                id,
                app,
                openid,
                message,
                attempts,
                created_ms,
            }),
            Err(e) => {
                tracing::error!(id, error = %e, "an outbox row is not readable; left in SQLite")
            }
        }
    }
    Ok(out)
}

/// Deletes moved entries from the SQLite store in `data_dir`.
pub fn forget_unsent(
    data_dir: &std::path::Path,
    ids: impl Iterator<Item = i64>,
) -> Result<(), StoreError> {
    let path = data_dir.join(super::schema::DB_FILE);
    let mut conn = Connection::open(&path).map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    let tx = conn.transaction().map_err(backend)?;
    for id in ids {
        tx.execute("DELETE FROM outbox WHERE id = ?1", [id])
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}
