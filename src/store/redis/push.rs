//! The request path on Redis: claim a push (`SET NX PX GET`), read the session, commit
//! everything in one script, probe.
//!
//! A push seen in flight on a peer is waited for by polling its key every 25 ms until the memo
//! appears (the same [`Claim::InFlight`] receiver the SQLite store gives), or until the key is
//! gone (the peer abandoned it or died: claim again); the caller bounds the wait by the 5 s
//! answer budget.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use super::{RedisStore, lock};
use crate::store::OpenId;
use crate::store::quota::{self, Window};
use crate::store::{
    Claim, CommitReport, CommitTicket, Memo, PushKey, PushRecord, QuotaTrigger, Session, Store,
    StoreError,
};

/// How often a waiter looks at a peer's in-flight push.
const PEER_POLL: Duration = Duration::from_millis(25);

/// A conversation-log line of a push, as the stream keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct LogLine {
    pub at: i64,
    pub openid: String,
    pub log: crate::store::LogRecord,
}

/// An outbox entry's payload, as `ob:m` keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredMessage {
    pub openid: String,
    pub summary: String,
    pub message: crate::outbound::OutboundMessage,
}

fn token() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn memo_of(value: &str) -> Result<Memo, StoreError> {
    serde_json::from_str(value)
        .map_err(|e| StoreError::caused("a memo in Redis is not readable", e))
}

impl RedisStore {
    async fn claim_now(&self, key: PushKey) -> Result<Claim, StoreError> {
        let rkey = self.inner.keys.push(&key);
        let token = token();
        let mut c = self.inner.conn.get();
        let found: Option<String> = self
            .bounded(
                "claim",
                redis::cmd("SET")
                    .arg(&rkey)
                    .arg(format!("P|{token}"))
                    .arg("NX")
                    .arg("PX")
                    .arg(self.inner.opts.dedupe_lease_ms)
                    .arg("GET")
                    .query_async(&mut c),
            )
            .await?;
        match found {
            None => {
                lock(&self.inner.leases).insert(key, token);
                Ok(Claim::New)
            }
            Some(v) => match v.strip_prefix("D|") {
                Some(memo) => Ok(Claim::Done(memo_of(memo)?)),
                None => Ok(Claim::InFlight(self.watch_peer(rkey))),
            },
        }
    }

    /// A receiver filled when the peer's memo appears; dropped (so the waiter claims again)
    /// when the key disappears.
    fn watch_peer(&self, rkey: String) -> watch::Receiver<Option<Memo>> {
        let (tx, rx) = watch::channel(None);
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PEER_POLL).await;
                if tx.is_closed() {
                    return;
                }
                let mut c = store.inner.conn.get();
                let got: Result<Option<String>, _> = store
                    .bounded("claim", redis::cmd("GET").arg(&rkey).query_async(&mut c))
                    .await;
                match got {
                    Ok(None) => return,
                    Ok(Some(v)) => {
                        if let Some(memo) = v.strip_prefix("D|") {
                            if let Ok(memo) = memo_of(memo) {
                                let _ = tx.send(Some(memo));
                            }
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "redis: waiting for a peer's memo"),
                }
            }
        });
        rx
    }

    async fn session_now(
        &self,
        app: String,
        openid: String,
        now: i64,
    ) -> Result<Session, StoreError> {
        let mut c = self.inner.conn.get();
        let raw: Option<String> = self
            .bounded(
                "session",
                redis::cmd("GET")
                    .arg(self.inner.keys.session(&app, &openid))
                    .query_async(&mut c),
            )
            .await?;
        let session = match &raw {
            Some(raw) => serde_json::from_str::<Session>(raw)
                .map_err(|e| StoreError::caused("a session in Redis is not readable", e))?
                .live(now),
            None => Session::default(),
        };
        let mut seen = lock(&self.inner.seen_sessions);
        if seen.len() > 100_000 {
            seen.clear();
        }
        seen.insert((app, openid), raw.unwrap_or_default());
        Ok(session)
    }

    /// Runs the commit script; the outcome as the ticket reports it.
    pub(crate) async fn commit_now(&self, record: &PushRecord) -> Result<CommitReport, StoreError> {
        let inner = &self.inner;
        let keys = &inner.keys;
        let app = record.app.as_str();
        let openid = record.openid.as_str();
        let token = lock(&inner.leases).remove(&record.key).unwrap_or_default();
        let seen = lock(&inner.seen_sessions).remove(&(app.to_string(), openid.to_string()));
        let memo = serde_json::to_string(&record.memo)
            .map_err(|e| StoreError::caused("cannot encode the memo", e))?;
        let (mode, value, expiry) = match &record.session {
            None => ("keep", String::new(), 0),
            Some(s) => match s.expires_at() {
                Some(at) if at > record.received_at => (
                    "set",
                    serde_json::to_string(s)
                        .map_err(|e| StoreError::caused("cannot encode the session", e))?,
                    at.saturating_mul(1000),
                ),
                _ => ("del", String::new(), 0),
            },
        };
        let compare = record.session.is_some() && seen.is_some();
        let settings = &inner.opts.quota;
        let (trigger, limit, window_ms) = match record.quota_trigger {
            Some(QuotaTrigger::UserMessage) => (
                "u",
                settings.per_user_message,
                settings.user_message_window_secs.saturating_mul(1000),
            ),
            Some(QuotaTrigger::SessionEnter) => (
                "e",
                settings.per_session_enter,
                settings.session_enter_window_secs.saturating_mul(1000),
            ),
            None => ("", 0, 0),
        };
        let used_reason = |t: QuotaTrigger, limit: u32| {
            let full = Window {
                trigger: t,
                limit,
                used: limit,
                until: i64::MAX,
            };
            quota::admit(Some(full), None, 0, 1, settings)
                .reason
                .unwrap_or_default()
        };
        let no_window = quota::admit(None, None, 0, 1, settings)
            .reason
            .unwrap_or_default();
        let log = serde_json::to_string(&super::push::LogLine {
            at: record.received_at,
            openid: openid.to_string(),
            log: record.log.clone(),
        })
        .map_err(|e| StoreError::caused("cannot encode the log line", e))?;

        let mut inv = inner.scripts.commit.prepare_invoke();
        inv.key(keys.push(&record.key))
            .key(keys.session(app, openid))
            .key(keys.quota(app, openid))
            .key(keys.app(app, "ob:m"))
            .key(keys.app(app, "ob:s"))
            .key(keys.app(app, "ob:due"))
            .key(keys.queue(app, openid))
            .key(keys.app(app, "ob:seq"))
            .key(keys.app(app, "log"));
        inv.arg(&token)
            .arg(&memo)
            .arg(inner.opts.memo_ttl_secs.saturating_mul(1000))
            .arg(mode)
            .arg(&value)
            .arg(expiry)
            .arg(seen.unwrap_or_default())
            .arg(if compare { "1" } else { "0" })
            .arg(trigger)
            .arg(limit)
            .arg(window_ms)
            .arg(openid)
            .arg(inner.opts.retention_ms())
            .arg(&log)
            .arg(&no_window)
            .arg(used_reason(
                QuotaTrigger::UserMessage,
                settings.per_user_message,
            ))
            .arg(used_reason(
                QuotaTrigger::SessionEnter,
                settings.per_session_enter,
            ))
            .arg(&inner.opts.instance)
            .arg(inner.opts.lease_ms)
            .arg(record.outbox.len());
        for message in &record.outbox {
            let summary = crate::store::log::one_line(&message.preview());
            let entry = serde_json::to_string(&StoredMessage {
                openid: openid.to_string(),
                summary: summary.clone(),
                message: message.clone(),
            })
            .map_err(|e| StoreError::caused("cannot encode an outbox entry", e))?;
            inv.arg(entry).arg(summary);
        }
        let mut c = inner.conn.get();
        let reply: Vec<redis::Value> = self.bounded("commit", inv.invoke_async(&mut c)).await?;
        let word = reply.first().map(value_string).unwrap_or_default();
        match word.as_str() {
            "OK" => {
                let admitted = reply.get(1).map(value_i64).unwrap_or(0).max(0) as usize;
                let reason = reply.get(2).map(value_string).unwrap_or_default();
                let dropped = record.outbox.len().saturating_sub(admitted);
                let now_ms = reply.get(3).map(value_i64).unwrap_or(0);
                let leased: Vec<i64> = reply
                    .get(4)
                    .and_then(|v| redis::from_redis_value_ref(v).ok())
                    .unwrap_or_default();
                for pair in leased.chunks(2) {
                    if let [index, id] = pair
                        && let Some(message) = usize::try_from(*index)
                            .ok()
                            .and_then(|i| record.outbox.get(i.wrapping_sub(1)))
                    {
                        self.hold_preleased(app, openid, *id, message, now_ms);
                    }
                }
                if admitted > 0 {
                    inner.depth.fetch_add(admitted as u64, Ordering::Relaxed);
                    inner.wakeup.notify_one();
                }
                if let Some(hook) = &inner.opts.on_recorded {
                    (hook.0)(&[record]);
                }
                Ok(CommitReport {
                    queued: admitted,
                    dropped: vec![reason; dropped],
                    replay: None,
                })
            }
            "REPLAY" => {
                let memo = reply.get(1).map(value_string).unwrap_or_default();
                Ok(CommitReport {
                    replay: Some(memo_of(&memo)?),
                    ..CommitReport::default()
                })
            }
            "LOST" => Err(StoreError::backend(
                "the push was taken over by another instance while it was decided (its lease expired)",
            )),
            "CONFLICT" => {
                self.release(&record.key, &token).await;
                Err(StoreError::backend(
                    "the user's session changed on another instance while this push was decided; WeChat's retry decides again",
                ))
            }
            other => Err(StoreError::backend(format!(
                "unexpected answer from the commit script: {other}"
            ))),
        }
    }

    /// Deletes our lease of `key` if it is still ours.
    async fn release(&self, key: &PushKey, token: &str) {
        if token.is_empty() {
            return;
        }
        let mut c = self.inner.conn.get();
        let r: Result<i64, _> = self
            .bounded(
                "abandon",
                self.inner
                    .scripts
                    .delete_if
                    .key(self.inner.keys.push(key))
                    .arg(format!("P|{token}"))
                    .invoke_async(&mut c),
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "redis: cannot release a push's lease; it expires by itself");
        }
    }
}

pub(crate) fn value_string(v: &redis::Value) -> String {
    redis::from_redis_value_ref::<String>(v).unwrap_or_default()
}

pub(crate) fn value_i64(v: &redis::Value) -> i64 {
    redis::from_redis_value_ref::<i64>(v).unwrap_or_default()
}

impl Store for RedisStore {
    fn claim(&self, key: &PushKey, _now: i64) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(self.claim_now(key.clone()))
    }

    fn abandon(&self, key: &PushKey) {
        let Some(token) = lock(&self.inner.leases).remove(key) else {
            return;
        };
        let store = self.clone();
        let key = key.clone();
        self.inner
            .rt
            .spawn(async move { store.release(&key, &token).await });
    }

    fn session(
        &self,
        app: &str,
        openid: &OpenId,
        now: i64,
    ) -> BoxFuture<'_, Result<Session, StoreError>> {
        Box::pin(self.session_now(app.to_string(), openid.as_str().to_owned(), now))
    }

    fn commit(&self, record: PushRecord) -> CommitTicket {
        let (reply, rx) = oneshot::channel();
        let store = self.clone();
        self.inner.rt.spawn(async move {
            let _ = reply.send(store.commit_now(&record).await);
        });
        rx
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut c = self.inner.conn.get();
            let key = self.inner.keys.probe(&self.inner.opts.instance);
            let _: () = self
                .bounded(
                    "probe",
                    redis::cmd("SET")
                        .arg(key)
                        .arg(crate::clock::unix_now())
                        .arg("PX")
                        .arg(60_000)
                        .query_async(&mut c),
                )
                .await?;
            Ok(())
        })
    }
}
