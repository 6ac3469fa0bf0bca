//! The conversation log: one row per push (`messages`) and one per send outcome (`sends`).
//!
//! The SQLite store's (the Redis store keeps the same lines in a stream per app, and replays them
//! into these tables to answer operators). Only openids, never secrets or tokens: the
//! rows are what `kefu stats` and the console read. Deleted after `log_retention_days`
//! ([`super::retention`]).

use rusqlite::{Transaction, params};

use super::multirow::{MultiRow, Row};
use super::schema::backend;
use super::{PushRecord, StoreError};

/// What became of one send, as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendLogOutcome {
    /// WeChat accepted the message (or dry-run recorded it).
    Sent,
    /// The message cannot be sent (an errcode that retrying cannot fix, or the retry bound).
    Failed,
    /// The message was never queued (over quota).
    Dropped,
    /// An attempt failed and another is scheduled.
    Retrying,
}

impl SendLogOutcome {
    /// The word stored in the `outcome` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
            Self::Retrying => "retrying",
        }
    }
}

/// How many characters of a send's message the send log keeps as its summary.
const SUMMARY_CHARS: usize = 200;

/// A message as one line for the send log: line ends shown as `⏎`, cut at 200 characters.
pub fn one_line(text: &str) -> String {
    let flat = text.replace("\r\n", "\n").replace('\n', " ⏎ ");
    if flat.chars().count() <= SUMMARY_CHARS {
        flat
    } else {
        let mut s: String = flat.chars().take(SUMMARY_CHARS).collect();
        s.push('…');
        s
    }
}

/// The multi-row statement that appends lines to `messages`.
static INSERT_MESSAGES: std::sync::LazyLock<MultiRow> = std::sync::LazyLock::new(|| {
    MultiRow::new(
        "INSERT OR IGNORE INTO messages (at, app, openid, msg_type, text, rule, faq, action, \
         handoff, replies, event, agent)",
        12,
    )
});

/// Logs pushes, with the bot's side of each, in order, [`super::multirow`] rows to a statement.
pub fn insert_messages(tx: &Transaction<'_>, records: &[&PushRecord]) -> Result<(), StoreError> {
    INSERT_MESSAGES.insert(tx, records, |row, r| {
        bind_line(row, r.received_at, &r.app, &r.openid, &r.log)
    })?;
    Ok(())
}

/// Logs one line of a conversation (an operator's action on the user's session).
pub fn insert_log(
    tx: &Transaction<'_>,
    at: i64,
    app: &str,
    openid: &str,
    log: &super::LogRecord,
) -> Result<(), StoreError> {
    INSERT_MESSAGES.insert(tx, &[()], |row, ()| bind_line(row, at, app, openid, log))?;
    Ok(())
}

/// Binds one line as a row of an [`INSERT_MESSAGES`] statement.
fn bind_line(
    row: &mut Row<'_, '_>,
    at: i64,
    app: &str,
    openid: &str,
    log: &super::LogRecord,
) -> Result<(), StoreError> {
    // The bot's side is stored as a JSON array of strings, or NULL for none.
    let replies = if log.replies.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&log.replies).map_err(backend)?)
    };
    row.values(&[
        &at,
        &app,
        &openid,
        &log.msg_type,
        &log.text,
        &log.rule,
        &log.faq,
        &log.action,
        &log.handoff,
        &replies,
        &log.event,
        &log.agent,
    ])
}

/// One row of the send log.
#[derive(Debug, Clone, Copy)]
pub struct SendLine<'a> {
    /// Unix seconds.
    pub at: i64,
    /// The app id of `kefu.yaml`.
    pub app: &'a str,
    /// The recipient.
    pub openid: &'a str,
    /// The outbox entry, when there is one (a dropped message has none).
    pub outbox_id: Option<i64>,
    /// What happened.
    pub outcome: SendLogOutcome,
    /// WeChat's errcode, when it gave one.
    pub errcode: Option<i64>,
    /// Why, for anything but `sent`.
    pub reason: Option<&'a str>,
    /// What the message was, on one line.
    pub summary: Option<&'a str>,
}

/// Logs one send outcome.
pub fn insert_send(tx: &Transaction<'_>, line: SendLine<'_>) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO sends (at, app, openid, outbox_id, outcome, errcode, reason, summary) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            line.at,
            line.app,
            line.openid,
            line.outbox_id,
            line.outcome.as_str(),
            line.errcode,
            line.reason,
            line.summary
        ])
    })
    .map(drop)
    .map_err(backend)
}

/// Logs the outcome of a claimed outbox entry, taking app and openid from the entry.
pub fn insert_send_for_entry(
    tx: &Transaction<'_>,
    at: i64,
    outbox_id: i64,
    outcome: SendLogOutcome,
    errcode: Option<i64>,
    reason: Option<&str>,
    sent: Option<&str>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO sends (at, app, openid, outbox_id, outcome, errcode, reason, summary) \
         SELECT ?1, app, openid, id, ?2, ?3, ?4, COALESCE(?6, summary) FROM outbox WHERE id = ?5",
    )
    .and_then(|mut s| {
        s.execute(params![
            at,
            outcome.as_str(),
            errcode,
            reason,
            outbox_id,
            sent
        ])
    })
    .map(drop)
    .map_err(backend)
}
