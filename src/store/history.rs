//! Conversation history for operators (SPEC §9): one user's thread, both sides, with each send's
//! outcome; the users seen recently; and the operator's request to end a user's handoff.
//!
//! Reads use the operators' read-only connection; nothing here is on the request path. The
//! session-end request is a row in `session_ends` that any process may write (the CLI while the
//! daemon runs): the daemon's writer applies it within a poll interval, so its in-memory session
//! cache and the row on disk change together, in the writer's own transaction.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction, params};
use serde::Serialize;

use super::arrival::{ArrivalTable, first_id_since};
use super::schema::{self, backend};
use super::sessions::SessionCache;
use super::{LogRecord, Session, StoreError};

/// Which conversations to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this app.
    pub app: Option<String>,
    /// Only this user.
    pub openid: Option<String>,
    /// Unix seconds: nothing older.
    pub since: i64,
    /// Only exchanges whose user text or bot replies contain this (case-insensitive for ASCII).
    pub grep: Option<String>,
    /// At most this many exchanges (the newest), and as many users for [`recent_users`].
    pub limit: usize,
}

/// One push and the bot's side of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exchange {
    /// Unix seconds.
    pub at: i64,
    pub app: String,
    pub openid: String,
    /// `text`, `image`, `event`, `voice`, … (`operator` for an operator's action).
    pub msg_type: String,
    /// What the user wrote (a voice message's recognition).
    pub text: Option<String>,
    /// The event name, for events.
    pub event: Option<String>,
    /// The agent of an agent-session event.
    pub agent: Option<String>,
    pub rule: Option<String>,
    pub faq: Option<String>,
    /// `reply`, `faq`, `clarify`, `handoff`, `default`, `ignore`, `session_end`.
    pub action: String,
    /// Whether the user was transferred to a person.
    pub handoff: bool,
    /// The bot's messages, one line each.
    pub replies: Vec<String>,
}

/// What became of one message the bot sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendOutcome {
    /// Unix seconds.
    pub at: i64,
    pub app: String,
    pub openid: String,
    /// `sent`, `failed`, `dropped`, `retrying`.
    pub outcome: String,
    pub errcode: Option<i64>,
    pub reason: Option<String>,
    /// The message, on one line.
    pub summary: Option<String>,
}

/// One user's conversation, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thread {
    pub app: String,
    pub openid: String,
    pub exchanges: Vec<Exchange>,
    pub sends: Vec<SendOutcome>,
}

/// A user seen recently, for the console's list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserSummary {
    pub app: String,
    pub openid: String,
    /// Unix seconds of the latest push.
    pub last_at: i64,
    /// Pushes in the window.
    pub messages: u64,
    /// The latest text the user sent in the window.
    pub last_text: Option<String>,
    /// Whether any push in the window was handed off.
    pub handoffs: u64,
}

/// A LIKE pattern that matches `needle` literally.
fn like(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The users seen since `q.since` (newest first), optionally one app, one user or a search.
pub fn recent_users(conn: &Connection, q: &LogQuery) -> Result<Vec<UserSummary>, StoreError> {
    // One pass over the range, found by row id (`super::arrival`): the log has no per-user
    // index (one B-tree insert less per push). A push counts when it matches the search; the
    // user's latest text in the range is found by its row id, whether or not it matched.
    let first = first_id_since(conn, ArrivalTable::Messages, q.since)?;
    let grep = q.grep.as_deref().filter(|g| !g.is_empty()).map(like);
    let mut stmt = conn
        .prepare_cached(
            "SELECT g.app, g.openid, g.last_at, g.n, g.handoffs, \
             (SELECT t.text FROM messages t WHERE t.id = g.text_id) \
             FROM (SELECT app, openid, max(CASE WHEN hit THEN at END) AS last_at, \
                   sum(hit) AS n, sum(CASE WHEN hit THEN handoff ELSE 0 END) AS handoffs, \
                   max(CASE WHEN text IS NOT NULL THEN id END) AS text_id \
                   FROM (SELECT id, app, openid, at, handoff, text, \
                         (?4 IS NULL OR text LIKE ?4 ESCAPE '\\' OR replies LIKE ?4 ESCAPE '\\' \
                          OR openid LIKE ?4 ESCAPE '\\') AS hit \
                         FROM messages WHERE id >= ?6 AND at >= ?1 \
                         AND (?2 IS NULL OR app = ?2) AND (?3 IS NULL OR openid = ?3)) \
                   GROUP BY app, openid HAVING sum(hit) > 0) g \
             ORDER BY g.last_at DESC LIMIT ?5",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![q.since, q.app, q.openid, grep, limit(q.limit), first],
            |r| {
                Ok(UserSummary {
                    app: r.get(0)?,
                    openid: r.get(1)?,
                    last_at: r.get(2)?,
                    messages: r.get::<_, i64>(3)?.max(0) as u64,
                    handoffs: r.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
                    last_text: r.get(5)?,
                })
            },
        )
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

fn limit(n: usize) -> i64 {
    if n == 0 {
        i64::MAX
    } else {
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}

/// The threads matching `q`: each user's exchanges (and the outcomes of what was sent to them in
/// the same time span), users ordered by their first exchange shown.
pub fn threads(conn: &Connection, q: &LogQuery) -> Result<Vec<Thread>, StoreError> {
    // The range by row id (`super::arrival`), the newest `limit` rows by arrival (read backwards
    // from the end, no sort of the whole range), shown in time order.
    let first = first_id_since(conn, ArrivalTable::Messages, q.since)?;
    let grep = q.grep.as_deref().filter(|g| !g.is_empty()).map(like);
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, app, openid, msg_type, text, event, agent, rule, faq, action, handoff, \
             replies FROM (SELECT * FROM messages WHERE id >= ?6 AND at >= ?1 \
             AND (?2 IS NULL OR app = ?2) AND (?3 IS NULL OR openid = ?3) \
             AND (?4 IS NULL OR text LIKE ?4 ESCAPE '\\' OR replies LIKE ?4 ESCAPE '\\') \
             ORDER BY id DESC LIMIT ?5) ORDER BY at, id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![q.since, q.app, q.openid, grep, limit(q.limit), first],
            |r| {
                let replies: Option<String> = r.get(11)?;
                Ok(Exchange {
                    at: r.get(0)?,
                    app: r.get(1)?,
                    openid: r.get(2)?,
                    msg_type: r.get(3)?,
                    text: r.get(4)?,
                    event: r.get(5)?,
                    agent: r.get(6)?,
                    rule: r.get(7)?,
                    faq: r.get(8)?,
                    action: r.get(9)?,
                    handoff: r.get(10)?,
                    replies: replies
                        .and_then(|j| serde_json::from_str(&j).ok())
                        .unwrap_or_default(),
                })
            },
        )
        .map_err(backend)?;
    let mut threads: Vec<Thread> = Vec::new();
    for row in rows {
        let exchange = row.map_err(backend)?;
        match threads
            .iter_mut()
            .find(|t| t.app == exchange.app && t.openid == exchange.openid)
        {
            Some(thread) => thread.exchanges.push(exchange),
            None => threads.push(Thread {
                app: exchange.app.clone(),
                openid: exchange.openid.clone(),
                exchanges: vec![exchange],
                sends: Vec::new(),
            }),
        }
    }
    // What became of the sends to these users since each one's first exchange shown: one pass
    // over the send log's range, found by row id (`super::arrival`), dealt out to the threads.
    let Some(since) = threads
        .iter()
        .filter_map(|t| t.exchanges.first().map(|e| e.at))
        .min()
    else {
        return Ok(threads);
    };
    let by_user: HashMap<(&str, &str), usize> = threads
        .iter()
        .enumerate()
        .map(|(i, t)| ((t.app.as_str(), t.openid.as_str()), i))
        .collect();
    let mut dealt: Vec<Vec<SendOutcome>> = vec![Vec::new(); threads.len()];
    let first = first_id_since(conn, ArrivalTable::Sends, since)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, app, openid, outcome, errcode, reason, summary FROM sends \
             WHERE id >= ?1 AND at >= ?2 AND (?3 IS NULL OR app = ?3) \
             AND (?4 IS NULL OR openid = ?4) ORDER BY at, id",
        )
        .map_err(backend)?;
    let mut rows = stmt
        .query(params![first, since, q.app, q.openid])
        .map_err(backend)?;
    while let Some(r) = rows.next().map_err(backend)? {
        let at: i64 = r.get(0).map_err(backend)?;
        let app: String = r.get(1).map_err(backend)?;
        let openid: String = r.get(2).map_err(backend)?;
        let Some(&i) = by_user.get(&(app.as_str(), openid.as_str())) else {
            continue;
        };
        if threads[i].exchanges.first().is_none_or(|e| at < e.at) {
            continue;
        }
        dealt[i].push(SendOutcome {
            at,
            app,
            openid,
            outcome: r.get(3).map_err(backend)?,
            errcode: r.get(4).map_err(backend)?,
            reason: r.get(5).map_err(backend)?,
            summary: r.get(6).map_err(backend)?,
        });
    }
    drop(rows);
    drop(by_user);
    for (thread, sends) in threads.iter_mut().zip(dealt) {
        thread.sends = sends;
    }
    Ok(threads)
}

/// One line of a thread, in time order: what the user sent, what the bot answered, what became
/// of each send, an agent's or an operator's action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Local time in the config's time zone (RFC 3339).
    pub time: String,
    /// Unix seconds.
    pub at: i64,
    /// `user`, `bot`, `send`, `agent`, `operator`.
    pub side: &'static str,
    /// The text (a user's message, a reply, a send's message, a description of an event).
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faq: Option<String>,
    /// The decision (`reply`, `faq`, `handoff`, …) for user lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Whether the user was transferred to a person.
    pub handoff: bool,
    /// For send lines: `sent`, `failed`, `dropped`, `retrying`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A thread as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadView {
    pub app: String,
    pub openid: String,
    pub entries: Vec<Entry>,
}

/// Flattens a thread into its lines, in time order: each push, the bot's lines right after it, and
/// the outcome of each send under the reply it carried (a send that matches no reply shown, e.g.
/// one older than the window, stands at its own time).
pub fn view(thread: &Thread, tz: chrono_tz::Tz) -> ThreadView {
    let time = |at: i64| {
        chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .unwrap_or_default()
    };
    // One block per push (its lines), in order; sends are added to the block of their reply.
    let mut blocks: Vec<(i64, usize, Vec<Entry>)> = Vec::new();
    let push = |_at: i64, entry: Entry, lines: &mut Vec<Entry>| lines.push(entry);
    for (index, e) in thread.exchanges.iter().enumerate() {
        let mut lines = Vec::new();
        let lines = &mut lines;
        let base = Entry {
            time: time(e.at),
            at: e.at,
            side: "user",
            text: String::new(),
            rule: e.rule.clone(),
            faq: e.faq.clone(),
            action: Some(e.action.clone()),
            handoff: e.handoff,
            outcome: None,
            errcode: None,
            reason: None,
        };
        let (side, text) = match (e.msg_type.as_str(), &e.event, &e.text) {
            ("operator", _, _) => ("operator", "ended the user's handoff".to_string()),
            (_, Some(event), _) if event.starts_with("kf_") => (
                "agent",
                format!(
                    "[{event}{}]",
                    e.agent
                        .as_deref()
                        .map(|a| format!(" by {a}"))
                        .unwrap_or_default()
                ),
            ),
            (_, Some(event), _) => ("user", format!("[event {event}]")),
            ("text", _, Some(text)) => ("user", text.clone()),
            ("voice", _, Some(text)) => ("user", format!("[voice] {text}")),
            (kind, _, _) => ("user", format!("[{kind}]")),
        };
        push(
            e.at,
            Entry {
                side,
                text,
                ..base.clone()
            },
            lines,
        );
        for reply in &e.replies {
            push(
                e.at,
                Entry {
                    side: if e.msg_type == "operator" {
                        "operator"
                    } else {
                        "bot"
                    },
                    text: reply.clone(),
                    action: None,
                    handoff: false,
                    ..base.clone()
                },
                lines,
            );
        }
        if e.handoff {
            push(
                e.at,
                Entry {
                    side: "bot",
                    text: "[transferred to a person]".into(),
                    action: Some("handoff".into()),
                    ..base.clone()
                },
                lines,
            );
        }
        blocks.push((e.at, index, std::mem::take(lines)));
    }
    for s in &thread.sends {
        // The latest push at or before the send whose replies include what it carried.
        let latest = |carried: &dyn Fn(&str) -> bool| {
            thread
                .exchanges
                .iter()
                .enumerate()
                .rev()
                .find(|(_, e)| e.at <= s.at && e.replies.iter().any(|r| carried(r)))
                .map(|(i, _)| i)
        };
        // A `fetch` reply is logged as its request and template, and its send as the text the
        // backend's answer made: failing an exact match, the latest push with a fetch reply.
        let target = s.summary.as_deref().and_then(|summary| {
            latest(&|reply| super::log::one_line(reply) == summary).or_else(|| {
                latest(&|reply| reply.starts_with(crate::outbound::FETCH_PREVIEW_PREFIX))
            })
        });
        let entry = Entry {
            time: time(s.at),
            at: s.at,
            side: "send",
            text: s.summary.clone().unwrap_or_default(),
            rule: None,
            faq: None,
            action: None,
            handoff: false,
            outcome: Some(s.outcome.clone()),
            errcode: s.errcode,
            reason: s.reason.clone(),
        };
        match target.and_then(|i| blocks.iter_mut().find(|b| b.1 == i)) {
            Some(block) => block.2.push(entry),
            None => blocks.push((s.at, usize::MAX, vec![entry])),
        }
    }
    // Stable: a send that matched no reply comes after the pushes of its second.
    blocks.sort_by_key(|(at, index, _)| (*at, *index));
    ThreadView {
        app: thread.app.clone(),
        openid: thread.openid.clone(),
        entries: blocks.into_iter().flat_map(|(_, _, lines)| lines).collect(),
    }
}

/// What `kefu session end` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The running daemon ended it (its cache and the store agree).
    Applied,
    /// No daemon took the request in time: the session was removed from the store directly,
    /// which is what a daemon starting later reads.
    Stored,
}

/// A request older than this is not applied by a daemon (it was applied to the store directly
/// by the process that made it, and a handoff since then is a new one).
pub const SESSION_END_FRESH_SECS: i64 = 60;

/// Asks the daemon that owns `db_path` to end a user's handoff and menu, and waits up to `wait`
/// for it to do so; when no daemon answers in time, ends it in the store itself.
pub fn end_session(
    db_path: &Path,
    app: &str,
    openid: &str,
    now: i64,
    wait: Duration,
) -> Result<SessionEnd, StoreError> {
    if !db_path.exists() {
        return Err(StoreError::backend(format!(
            "no store at {} (has kefu serve run with this data_dir?)",
            db_path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::caused(&format!("cannot open {}", db_path.display()), e))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
    let version = schema::version(&conn)?;
    if version < schema::latest_version() {
        return Err(StoreError::backend(format!(
            "{} has schema version {version}; start this kefu once to migrate it",
            db_path.display()
        )));
    }
    conn.execute(
        "INSERT INTO session_ends (app, openid, at) VALUES (?1, ?2, ?3)",
        params![app, openid, now],
    )
    .map_err(backend)?;
    let id = conn.last_insert_rowid();
    let deadline = Instant::now() + wait;
    loop {
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM session_ends WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if pending == 0 {
            return Ok(SessionEnd::Applied);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // No daemon took it: end it in the store. The request row stays, in case a daemon that was
    // merely slow picks it up while it is fresh; an old one is discarded unapplied.
    let tx = conn.unchecked_transaction().map_err(backend)?;
    tx.execute(
        "DELETE FROM sessions WHERE app = ?1 AND openid = ?2",
        params![app, openid],
    )
    .map_err(backend)?;
    super::log::insert_log(&tx, now, app, openid, &end_record())?;
    tx.commit().map_err(backend)?;
    Ok(SessionEnd::Stored)
}

/// The conversation-log line of an operator ending a session.
fn end_record() -> LogRecord {
    LogRecord {
        msg_type: "operator".into(),
        action: "session_end".into(),
        ..LogRecord::default()
    }
}

/// The session left after an end: no handoff, no menu, no misses (a remembered FAQ answer stays).
pub fn ended(session: &Session) -> Session {
    Session {
        last_faq: session.last_faq.clone(),
        ..Session::default()
    }
}

/// Applies the pending session-end requests (the writer calls this every poll interval): each
/// fresh one ends the user's handoff in the store and in `cache` after the commit; every request
/// is removed. Returns how many were applied.
pub fn apply_session_ends(
    conn: &mut Connection,
    cache: &SessionCache,
    now: i64,
) -> Result<usize, StoreError> {
    let pending: Vec<(i64, String, String, i64)> = {
        let mut stmt = conn
            .prepare_cached("SELECT id, app, openid, at FROM session_ends ORDER BY id LIMIT 100")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)?
    };
    if pending.is_empty() {
        return Ok(0);
    }
    let tx: Transaction<'_> = conn.transaction().map_err(backend)?;
    let mut updates: Vec<(String, String, Session)> = Vec::new();
    for (id, app, openid, at) in &pending {
        if now.saturating_sub(*at) <= SESSION_END_FRESH_SECS {
            let next = ended(&cache.get(app, openid, now));
            super::sessions::save(&tx, app, openid, &next)?;
            super::log::insert_log(&tx, now, app, openid, &end_record())?;
            updates.push((app.clone(), openid.clone(), next));
        }
        tx.execute("DELETE FROM session_ends WHERE id = ?1", [id])
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    cache.apply(updates.iter().map(|(a, o, s)| (a.as_str(), o.as_str(), s)));
    for (app, openid, _) in &updates {
        tracing::info!(%app, %openid, "session ended by the operator: the bot answers again");
    }
    Ok(updates.len())
}
