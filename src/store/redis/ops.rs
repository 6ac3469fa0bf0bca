//! What operators read, fleet-wide: the conversation log is one stream per app in Redis, so
//! `kefu log`, `kefu stats` and the console show every instance's conversations.
//!
//! A read loads the stream entries it needs (bounded by `log_retention_days`) into a private
//! in-memory database with the SQLite store's schema and runs the SQLite store's own queries on
//! it: both stores answer every operator question identically, with one implementation of each
//! query. This costs a copy per read (a console page, a `kefu stats`), not per push.

use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::push::LogLine;
use super::{RedisOptions, RedisStore};
use crate::store::OpenId;
use crate::store::history::{self, LogQuery, SessionEnd, Thread, UserSummary};
use crate::store::log::{SendLine, SendLogOutcome, insert_log, insert_send};
use crate::store::stats::{self, SeriesPoint, StatsReport};
use crate::store::{FailedEntry, LogRecord, Operations, OutboxCounts, StoreError, schema};

/// A send line, as the stream keeps it.
#[derive(serde::Deserialize)]
struct SendRow {
    at: i64,
    openid: String,
    #[serde(default)]
    outbox_id: Option<i64>,
    outcome: String,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

/// A stream entry's `at`, read without decoding the rest of its line (0 if it has none).
fn line_at(fields: &[(String, String)]) -> i64 {
    #[derive(serde::Deserialize)]
    struct At {
        #[serde(default)]
        at: i64,
    }
    fields
        .iter()
        .find(|(f, _)| f == "v")
        .and_then(|(_, v)| serde_json::from_str::<At>(v).ok())
        .map_or(0, |a| a.at)
}

fn outcome(word: &str) -> SendLogOutcome {
    match word {
        "sent" => SendLogOutcome::Sent,
        "failed" => SendLogOutcome::Failed,
        "dropped" => SendLogOutcome::Dropped,
        _ => SendLogOutcome::Retrying,
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::caused("building the log view", e)
}

impl RedisStore {
    /// The log of every app since `since` (unix seconds), loaded into a fresh in-memory database.
    async fn log_view(&self, since: i64) -> Result<Connection, StoreError> {
        let mut lines: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for app in &self.inner.opts.apps {
            let mut c = self.inner.conn.get();
            let start = format!("{}", since.max(0).saturating_mul(1000));
            let rows: Vec<(String, Vec<String>)> = self
                .bounded(
                    "read the log",
                    redis::cmd("XRANGE")
                        .arg(self.inner.keys.app(app, "log"))
                        .arg(start)
                        .arg("+")
                        .query_async(&mut c),
                )
                .await?;
            for (_, fields) in rows {
                let pairs = fields
                    .chunks(2)
                    .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
                    .collect();
                lines.push((app.clone(), pairs));
            }
        }
        // In `at` order, as the SQLite store appends them: its queries find time ranges by row
        // id (`crate::store::arrival`). The sort is stable: each app's lines keep their order.
        lines.sort_by_cached_key(|(_, fields)| line_at(fields));
        let mut conn = Connection::open_in_memory().map_err(sql)?;
        schema::migrate(&mut conn)?;
        let tx = conn.transaction().map_err(sql)?;
        for (app, fields) in &lines {
            let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
            match (get("k"), get("v")) {
                (Some("m"), Some(v)) => {
                    if let Ok(line) = serde_json::from_str::<LogLine>(v) {
                        insert_log(&tx, line.at, app, &line.openid, &line.log)?;
                    }
                }
                (Some("s"), Some(v)) => {
                    if let Ok(row) = serde_json::from_str::<SendRow>(v) {
                        insert_send(
                            &tx,
                            SendLine {
                                at: row.at,
                                app,
                                openid: &row.openid,
                                outbox_id: row.outbox_id,
                                outcome: outcome(&row.outcome),
                                errcode: row.errcode,
                                reason: row.reason.as_deref(),
                                summary: row.summary.as_deref(),
                            },
                        )?;
                    }
                }
                _ => {}
            }
        }
        tx.commit().map_err(sql)?;
        Ok(conn)
    }

    async fn counts_now(&self) -> Result<OutboxCounts, StoreError> {
        let mut counts = OutboxCounts::default();
        for app in &self.inner.opts.apps {
            let mut c = self.inner.conn.get();
            let states: Vec<String> = self
                .bounded(
                    "outbox counts",
                    redis::cmd("HVALS")
                        .arg(self.inner.keys.app(app, "ob:s"))
                        .query_async(&mut c),
                )
                .await?;
            for s in states {
                // fence|owner|…: an owner means a lease (maybe expired, until a peer claims it).
                if s.split('|').nth(1).is_some_and(|o| !o.is_empty()) {
                    counts.sending += 1;
                } else {
                    counts.queued += 1;
                }
            }
            let failed: u64 = self
                .bounded(
                    "outbox counts",
                    redis::cmd("ZCARD")
                        .arg(self.inner.keys.app(app, "ob:failed"))
                        .query_async(&mut c),
                )
                .await?;
            counts.failed += failed;
        }
        self.inner
            .depth
            .store(counts.queued + counts.sending, Ordering::Relaxed);
        Ok(counts)
    }

    async fn failures_now(&self, limit: usize) -> Result<Vec<FailedEntry>, StoreError> {
        let mut all: Vec<FailedEntry> = Vec::new();
        for app in &self.inner.opts.apps {
            let mut c = self.inner.conn.get();
            let rows: Vec<String> = self
                .bounded(
                    "recent failures",
                    redis::cmd("ZREVRANGE")
                        .arg(self.inner.keys.app(app, "ob:failed"))
                        .arg(0)
                        .arg(limit.saturating_sub(1))
                        .query_async(&mut c),
                )
                .await?;
            all.extend(rows.iter().filter_map(|r| failed_entry(r)));
        }
        all.sort_by(|a, b| b.failed_ms.cmp(&a.failed_ms).then(b.id.cmp(&a.id)));
        all.truncate(limit);
        Ok(all)
    }

    async fn end_session_now(
        &self,
        app: &str,
        openid: &str,
        now: i64,
    ) -> Result<SessionEnd, StoreError> {
        let key = self.inner.keys.session(app, openid);
        let mut c = self.inner.conn.get();
        let raw: Option<String> = self
            .bounded(
                "end session",
                redis::cmd("GET").arg(&key).query_async(&mut c),
            )
            .await?;
        let current = raw
            .and_then(|r| serde_json::from_str::<crate::store::Session>(&r).ok())
            .unwrap_or_default();
        let next = history::ended(&current);
        let line = serde_json::to_string(&LogLine {
            at: now,
            openid: openid.to_string(),
            log: LogRecord {
                msg_type: "operator".into(),
                action: "session_end".into(),
                ..LogRecord::default()
            },
        })
        .map_err(|e| StoreError::caused("cannot encode the log line", e))?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        match next.expires_at().filter(|at| *at > now) {
            Some(at) => {
                let value = serde_json::to_string(&next)
                    .map_err(|e| StoreError::caused("cannot encode the session", e))?;
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PXAT")
                    .arg(at.saturating_mul(1000))
                    .ignore();
            }
            None => {
                pipe.cmd("DEL").arg(&key).ignore();
            }
        }
        pipe.cmd("XADD")
            .arg(self.inner.keys.app(app, "log"))
            .arg("*")
            .arg("k")
            .arg("m")
            .arg("v")
            .arg(line)
            .ignore();
        let _: () = self
            .bounded("end session", pipe.query_async(&mut c))
            .await?;
        // A running instance reads the session from Redis on the user's next push: nothing
        // else to tell it.
        Ok(SessionEnd::Applied)
    }
}

fn failed_entry(raw: &str) -> Option<FailedEntry> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    Some(FailedEntry {
        id: v.get("id")?.as_i64()?,
        app: v.get("app")?.as_str()?.to_string(),
        openid: v.get("openid")?.as_str()?.to_string(),
        preview: v
            .get("preview")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string(),
        attempts: v.get("attempts").and_then(|a| a.as_u64()).unwrap_or(0) as u32,
        errcode: v.get("errcode").and_then(|e| e.as_i64()),
        reason: v
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string(),
        created_ms: v.get("created_ms").and_then(|c| c.as_i64()).unwrap_or(0),
        failed_ms: v.get("failed_ms").and_then(|c| c.as_i64()).unwrap_or(0),
    })
}

impl Operations for RedisStore {
    fn outbox_depth(&self) -> u64 {
        self.inner.depth.load(Ordering::Relaxed)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.block_on(self.counts_now())
    }

    fn stats(&self, since_unix: i64, tz: chrono_tz::Tz) -> Result<StatsReport, StoreError> {
        let conn = self.block_on(self.log_view(since_unix))?;
        stats::collect_from(&conn, since_unix, crate::clock::unix_now(), tz)
    }

    fn series(&self, since_unix: i64, bucket_secs: i64) -> Result<Vec<SeriesPoint>, StoreError> {
        let conn = self.block_on(self.log_view(since_unix))?;
        stats::series_from(&conn, since_unix, crate::clock::unix_now(), bucket_secs)
    }

    fn recent_failures(&self, limit: usize) -> Result<Vec<FailedEntry>, StoreError> {
        self.block_on(self.failures_now(limit))
    }

    fn threads(&self, query: &LogQuery) -> Result<Vec<Thread>, StoreError> {
        let conn = self.block_on(self.log_view(query.since))?;
        history::threads(&conn, query)
    }

    fn recent_users(&self, query: &LogQuery) -> Result<Vec<UserSummary>, StoreError> {
        let conn = self.block_on(self.log_view(query.since))?;
        history::recent_users(&conn, query)
    }

    fn end_session(&self, app: &str, openid: &OpenId, now: i64) -> Result<SessionEnd, StoreError> {
        self.block_on(self.end_session_now(app, openid, now))
    }
}

/// The read side for the one-shot commands (`kefu stats`, `kefu log`, `kefu session end`): a
/// small runtime of its own and a connection without the start-up checks.
pub struct RedisReader {
    store: RedisStore,
    /// Kept alive for the connection's tasks.
    _rt: tokio::runtime::Runtime,
}

impl RedisReader {
    /// Connects to the store of `opts`.
    pub fn open(opts: RedisOptions) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| StoreError::caused("cannot start a runtime", e))?;
        let store = rt.block_on(RedisStore::open_reader(opts))?;
        Ok(Self { store, _rt: rt })
    }
}

impl Operations for RedisReader {
    fn outbox_depth(&self) -> u64 {
        self.store
            .outbox_counts()
            .map_or(0, |c| c.queued + c.sending)
    }
    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.store.outbox_counts()
    }
    fn stats(&self, since_unix: i64, tz: chrono_tz::Tz) -> Result<StatsReport, StoreError> {
        self.store.stats(since_unix, tz)
    }
    fn series(&self, since_unix: i64, bucket_secs: i64) -> Result<Vec<SeriesPoint>, StoreError> {
        self.store.series(since_unix, bucket_secs)
    }
    fn recent_failures(&self, limit: usize) -> Result<Vec<FailedEntry>, StoreError> {
        self.store.recent_failures(limit)
    }
    fn threads(&self, query: &LogQuery) -> Result<Vec<Thread>, StoreError> {
        self.store.threads(query)
    }
    fn recent_users(&self, query: &LogQuery) -> Result<Vec<UserSummary>, StoreError> {
        self.store.recent_users(query)
    }
    fn end_session(&self, app: &str, openid: &OpenId, now: i64) -> Result<SessionEnd, StoreError> {
        self.store.end_session(app, openid, now)
    }
}
