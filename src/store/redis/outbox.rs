//! The outbox on Redis: a lease queue (SPEC §8). Each app has a ZSET of users with entries
//! (score: when the head entry is due, or when its lease ends), a LIST of entry ids per user
//! (one user's messages go strictly in order), and two HASHes of entries (payload; fence,
//! owner, attempts, times).
//!
//! The commit leases a user's head entry to the instance that accepted the push (fence 1); that
//! instance hands it to its worker from memory. A claim leases the head entry of each due user for `outbox.lease_ms` and bumps its fence; a
//! settle is accepted only with the current fence, so an instance that paused past its lease
//! cannot mark a peer's claim done (counted, logged). An instance that dies leaves its leases to
//! expire; a peer's poll claims them and marks them interrupted (a possible duplicate, counted
//! like a resend after a restart). The worker bounds every delivery by `send_timeout_ms`, which
//! the config requires below the lease, so a live owner never loses its lease mid-send.
//!
//! Entry ids in Redis are per app; the worker sees process-local ids mapped to (app, id, fence).

use std::sync::atomic::Ordering;

use futures_util::future::BoxFuture;

use super::push::{StoredMessage, value_i64, value_string};
use super::{RedisStore, lock};
use crate::store::{Claimed, Outbox, OutboxEntry, Settlement, StoreError};

/// A claimed entry, as this instance holds it.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    app: String,
    openid: String,
    id: String,
    fence: String,
    /// The message on one line (the send log's summary).
    summary: String,
    attempts: u32,
    created_ms: i64,
}

impl RedisStore {
    /// An entry the commit leased to this instance: handed to the worker at its next claim,
    /// with no claim script.
    pub(crate) fn hold_preleased(
        &self,
        app: &str,
        openid: &str,
        id: i64,
        message: &crate::outbound::OutboundMessage,
        now_ms: i64,
    ) {
        let inner = &self.inner;
        let local = inner.next_local_id.fetch_add(1, Ordering::Relaxed);
        lock(&inner.claimed).insert(
            local,
            Held {
                app: app.to_string(),
                openid: openid.to_string(),
                id: id.to_string(),
                fence: "1".into(),
                summary: crate::store::log::one_line(&message.preview()),
                attempts: 0,
                created_ms: now_ms,
            },
        );
        lock(&inner.ready).push_back(OutboxEntry {
            id: local,
            app: app.to_string(),
            openid: openid.into(),
            message: message.clone(),
            attempts: 0,
            created_ms: now_ms,
            first_attempt_ms: now_ms,
            interrupted: false,
        });
    }

    async fn claim_app(
        &self,
        app: &str,
        limit: usize,
        out: &mut Claimed,
    ) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let keys = &inner.keys;
        let mut c = inner.conn.get();
        let reply: Vec<redis::Value> = self
            .bounded(
                "claim_due",
                inner
                    .scripts
                    .claim
                    .key(keys.app(app, "ob:due"))
                    .key(keys.app(app, "ob:m"))
                    .key(keys.app(app, "ob:s"))
                    .arg(limit)
                    .arg(inner.opts.lease_ms)
                    .arg(&inner.opts.instance)
                    .arg(keys.queue_prefix(app))
                    .invoke_async(&mut c),
            )
            .await?;
        let next_due = reply
            .get(1)
            .map(value_string)
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64)
            .filter(|d| *d >= 0);
        let depth = reply.get(2).map(value_i64).unwrap_or(0).max(0) as u64;
        let entries: Vec<Vec<String>> = reply
            .get(3)
            .and_then(|v| redis::from_redis_value_ref(v).ok())
            .unwrap_or_default();
        for e in entries {
            let [id, fence, attempts, created, first, interrupted, msg] = e.as_slice() else {
                continue;
            };
            let stored: StoredMessage = match serde_json::from_str(msg) {
                Ok(m) => m,
                Err(err) => {
                    tracing::error!(app, id, error = %err, "redis: an outbox entry is not readable; it stays leased");
                    continue;
                }
            };
            let local = inner.next_local_id.fetch_add(1, Ordering::Relaxed);
            lock(&inner.claimed).insert(
                local,
                Held {
                    app: app.to_string(),
                    openid: stored.openid.clone(),
                    id: id.clone(),
                    fence: fence.clone(),
                    summary: stored.summary.clone(),
                    attempts: attempts.parse().unwrap_or(0),
                    created_ms: created.parse().unwrap_or(0),
                },
            );
            out.entries.push(OutboxEntry {
                id: local,
                app: app.to_string(),
                openid: stored.openid.into(),
                message: stored.message,
                attempts: attempts.parse().unwrap_or(0),
                created_ms: created.parse().unwrap_or(0),
                first_attempt_ms: first.parse().unwrap_or(0),
                interrupted: interrupted == "1",
            });
        }
        if let Some(d) = next_due {
            out.next_due_ms = Some(out.next_due_ms.map_or(d, |n| n.min(d)));
        }
        Ok(depth)
    }

    async fn claim_all(&self, limit: usize) -> Result<Claimed, StoreError> {
        let mut claimed = Claimed::default();
        {
            let mut ready = lock(&self.inner.ready);
            let take = limit.min(ready.len());
            claimed.entries.extend(ready.drain(..take));
        }
        // Entries this instance's commits leased come from memory; peers' expired leases, due
        // retries and a user's next entries need the claim script: run it when nothing came
        // from memory, or at least every poll interval.
        let polled = {
            let mut last = lock(&self.inner.last_poll);
            let due = claimed.entries.is_empty()
                || last.is_none_or(|at| at.elapsed() >= self.inner.opts.poll);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if !polled {
            return Ok(claimed);
        }
        let mut depth = 0;
        for app in &self.inner.opts.apps {
            let left = limit.saturating_sub(claimed.entries.len());
            depth += self.claim_app(app, left, &mut claimed).await?;
        }
        self.inner.depth.store(depth, Ordering::Relaxed);
        Ok(claimed)
    }

    async fn settle_now(&self, local: i64, settlement: Settlement) -> Result<(), StoreError> {
        let inner = &self.inner;
        let Some(held) = lock(&inner.claimed).get(&local).cloned() else {
            tracing::warn!(
                id = local,
                "redis: settle of an entry this instance does not hold"
            );
            return Ok(());
        };
        let (kind, next, errcode, reason) = match &settlement {
            Settlement::Sent { .. } => ("sent", 0, None, String::new()),
            Settlement::Failed { errcode, reason } => ("failed", 0, *errcode, reason.clone()),
            Settlement::Retry {
                next_attempt_ms,
                reason,
            } => ("retry", *next_attempt_ms, None, reason.clone()),
        };
        let keys = &inner.keys;
        let app = held.app.as_str();
        let now_ms = crate::clock::unix_now().saturating_mul(1000);
        let id: i64 = held.id.parse().unwrap_or(0);
        let reason = (!reason.is_empty()).then_some(reason);
        let outcome = if kind == "retry" { "retrying" } else { kind };
        let line = serde_json::json!({
            "at": now_ms / 1000,
            "openid": held.openid,
            "outbox_id": id,
            "outcome": outcome,
            "errcode": errcode,
            "reason": reason,
            "summary": match &settlement {
                Settlement::Sent { text: Some(text) } => crate::store::log::one_line(text),
                _ => held.summary.clone(),
            },
        })
        .to_string();
        let failed = if kind == "failed" {
            serde_json::to_string(&crate::store::FailedEntry {
                id,
                app: app.to_string(),
                openid: held.openid.clone(),
                preview: held.summary.clone(),
                attempts: held.attempts.saturating_add(1),
                errcode,
                reason: reason.clone().unwrap_or_default(),
                created_ms: held.created_ms,
                failed_ms: now_ms,
            })
            .map_err(|e| StoreError::caused("cannot encode a failed entry", e))?
        } else {
            String::new()
        };
        let mut c = inner.conn.get();
        let word: String = self
            .bounded(
                "settle",
                inner
                    .scripts
                    .settle
                    .key(keys.app(app, "ob:due"))
                    .key(keys.app(app, "ob:m"))
                    .key(keys.app(app, "ob:s"))
                    .key(keys.queue(app, &held.openid))
                    .key(keys.app(app, "ob:failed"))
                    .key(keys.app(app, "log"))
                    .arg(&held.id)
                    .arg(&held.fence)
                    .arg(kind)
                    .arg(next)
                    .arg(&held.openid)
                    .arg(inner.opts.retention_ms())
                    .arg(line)
                    .arg(failed)
                    .arg(now_ms)
                    .invoke_async(&mut c),
            )
            .await?;
        lock(&inner.claimed).remove(&local);
        match word.as_str() {
            "OK" => {
                if kind != "retry" {
                    let _ = inner
                        .depth
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                            Some(d.saturating_sub(1))
                        });
                }
            }
            "STALE" | "GONE" => {
                inner.stale_fences.fetch_add(1, Ordering::Relaxed);
                if let Some(hook) = &inner.opts.on_stale_fence {
                    (hook.0)();
                }
                tracing::warn!(
                    app,
                    openid = %held.openid,
                    outcome = kind,
                    "redis: a peer took this entry over after our lease expired; our outcome is dropped (the message may go out twice)"
                );
            }
            other => {
                return Err(StoreError::backend(format!(
                    "unexpected answer from the settle script: {other}"
                )));
            }
        }
        Ok(())
    }
}

impl Outbox for RedisStore {
    fn wakeup(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.inner.wakeup.clone()
    }

    fn claim_due(&self, _now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Claimed, StoreError>> {
        Box::pin(self.claim_all(limit))
    }

    fn settle(
        &self,
        id: i64,
        settlement: Settlement,
        _now_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.settle_now(id, settlement))
    }

    fn depth(&self) -> u64 {
        self.inner.depth.load(Ordering::Relaxed)
    }
}
