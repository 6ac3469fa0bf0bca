//! State that must outlive a request: dedupe memos, per-user sessions, quotas, the outbox and the
//! conversation log.
//!
//! The request path reaches state only through the [`Store`] trait, and the outbox worker only
//! through the [`Outbox`] trait, so that a shared backend (Redis, for several instances, SPEC §8)
//! is a second implementation, not a rewrite. The SQLite backend, [`SqliteStore`], keeps
//! everything in one file, `data_dir/kefu.sqlite3`.
//!
//! # Who owns what
//!
//! | state | owner (SQLite backend) | Redis backend ([`redis`], several instances) |
//! |---|---|---|
//! | dedupe memos ([`Store::claim`]) | [`dedupe`]: hot map in memory, rows on disk for 24 h | **shared**: a lease while decided, the memo after; a peer waits for it |
//! | sessions (menu, handoff) | [`sessions`]: map in memory, rows on disk | **shared**, compared and written by the commit script |
//! | quotas (send windows) | [`quota`]: owned by the writer thread, rows on disk | **shared**, on the Redis server's clock |
//! | outbox | [`outbox`]: rows on disk, claimed by the worker (`queued` → `sending`) | **shared**: a lease queue, fenced per entry |
//! | access token | the API client ([`crate::wechat`]) | **shared** through [`SharedValues`] (start-up adapts it) |
//! | media cache | [`media`] | **shared** |
//! | conversation log, send log | [`log`]: rows on disk | **shared**: a stream per app, read by the same queries |
//!
//! With SQLite, every write goes through one writer thread ([`writer`]) that batches everything pending into
//! one transaction (group commit): a push is answered only once its records are durable, and one
//! fsync covers many pushes. Reads on the request path ([`Store::claim`], [`Store::session`]) are
//! in-memory lookups.
//!
//! # Using it
//!
//! Start-up: `SqliteStore::open(&data_dir, options)` (start-up builds the options from the config), then
//! `crate::delivery::spawn_outbox_worker(Arc::new(store.clone()), deliver, options, shutdown)`.
//! Per push, the handler:
//!
//! ```text
//! match resolve_claim(&store, &key, now).await? {          // bounded by the 5 s budget
//!     Resolved::Replay(memo) => answer(memo),               // a retry: same answer, nothing else
//!     Resolved::New => {
//!         let guard = ClaimGuard::new(&store, key.clone()); // abandons if we bail out
//!         let session = store.session(app, openid, now)?;
//!         let record = PushRecord { memo, session, quota_trigger, outbox, log, .. };
//!         let ticket = store.commit(record);
//!         guard.committed();
//!         let report = ticket.await??;                      // durable from here on
//!         answer(report.replay.unwrap_or(memo))             // replay: a late retry
//!     }
//! }
//! ```
//!
//! A ticket whose sender is dropped (`RecvError`) means the store closed. Shutdown: stop the HTTP
//! server, resolve the worker's shutdown future and await it (sends in flight finish), then
//! [`SqliteStore::close`].
//!
//! Module map: [`schema`] (migrations, pragmas), [`sqlite`] (the store), [`writer`],
//! [`checkpoint`] (WAL checkpoints off the commit path),
//! [`dedupe`], [`sessions`], [`quota`], [`outbox`], [`log`], [`retention`], [`stats`] (operators'
//! read side). The worker that sends the outbox lives in [`crate::delivery`].

pub mod arrival;
pub mod checkpoint;
pub mod dedupe;
pub mod history;
pub mod log;
pub mod media;
pub mod multirow;
pub mod outbox;
pub mod quota;
pub mod redis;
pub mod retention;
pub mod schema;
pub mod sessions;
pub mod shared;
pub mod sqlite;
pub mod stats;
pub mod writer;

#[cfg(test)]
pub(crate) mod tests;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use media::{MediaCache, MediaEntry};
pub use outbox::{Claimed, FailedEntry, OutboxCounts, OutboxEntry, Settlement};
pub use redis::{RedisOptions, RedisStore};
pub use shared::SharedValues;
pub use sqlite::{SqliteReader, SqliteStore};

use futures_util::future::BoxFuture;
pub use quota::QuotaSettings;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

pub use crate::openid::OpenId;
use crate::outbound::OutboundMessage;
use crate::protocol::{InboundMessage, MsgId, MsgKind};

/// Identifies one push for dedupe: `(app, MsgId)` for messages, `(app, FromUserName,
/// CreateTime, Event)` for events (protocol doc §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushKey(pub String);

impl PushKey {
    /// The dedupe key of `msg` pushed to `app`.
    pub fn of(app: &str, msg: &InboundMessage) -> Self {
        match (&msg.msg_id, &msg.kind) {
            // Every message has one: built without `fmt`, it is on every push's path.
            (Some(id), _) => {
                let mut key = String::with_capacity(app.len() + 24);
                key.push_str(app);
                key.push_str("|m|");
                match id {
                    MsgId::Number(n) => push_decimal(&mut key, *n),
                    MsgId::Text(text) => key.push_str(text),
                }
                Self(key)
            }
            (None, MsgKind::Event { event, .. }) => Self(format!(
                "{app}|e|{}|{}|{event}",
                msg.from_user_name, msg.create_time
            )),
            (None, kind) => Self(format!(
                "{app}|o|{}|{}|{}",
                msg.from_user_name,
                msg.create_time,
                kind.type_name()
            )),
        }
    }
}

/// Appends `n` in decimal, as `{n}` would.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// The exact HTTP answer given to a push, replayed to its retries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memo {
    /// The Content-Type of the answer; `None` for a bare `success`.
    pub content_type: Option<String>,
    /// The body, byte for byte (already encrypted when the push was).
    pub body: String,
}

/// What [`Store::claim`] found for a push key.
#[derive(Debug)]
pub enum Claim {
    /// First sight: handle it, then [`Store::commit`] or [`Store::abandon`].
    New,
    /// Already answered: replay this.
    Done(Memo),
    /// Being handled by another request: wait until the value is `Some`. If the sender is
    /// dropped (the first attempt was abandoned), claim again.
    InFlight(watch::Receiver<Option<Memo>>),
}

// The decision's own types: the store keeps them, `dispatch` owns them.
pub use crate::dispatch::{LastFaq, Menu, QuotaTrigger, Session};

/// What the conversation log records of one push.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogRecord {
    /// The push's MsgType (`text`, `image`, `event`, …); borrowed for the known ones.
    pub msg_type: Cow<'static, str>,
    /// The user's text (text messages only).
    pub text: Option<String>,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// The FAQ entry answered, if any.
    pub faq: Option<String>,
    /// `reply`, `faq`, `clarify`, `handoff`, `default`, `ignore`.
    pub action: Cow<'static, str>,
    /// Whether the user was transferred to a human.
    pub handoff: bool,
    /// The bot's side: each message sent (or passively answered), one line each: a text, or a
    /// description of an image, link or card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<String>,
    /// The event name, for events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The agent account of an agent-session event (`KfAccount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// Everything one push changes, committed together (group commit) before it is answered.
#[derive(Debug, Clone)]
pub struct PushRecord {
    /// The dedupe key of the push.
    pub key: PushKey,
    /// The app id of `kefu.yaml` (the URL path segment).
    pub app: String,
    /// The user (the push's FromUserName).
    pub openid: OpenId,
    /// Unix seconds when the push was received.
    pub received_at: i64,
    /// The HTTP answer, replayed to retries.
    pub memo: Memo,
    /// The user's new session state; `None` leaves it unchanged.
    pub session: Option<Session>,
    /// `UserMessage` for every user message, `SessionEnter` for `user_enter_tempsession`, `None`
    /// for other events: what (re)opens the user's send window before `outbox` is admitted.
    pub quota_trigger: Option<QuotaTrigger>,
    /// Messages to send through the API, in order.
    pub outbox: Vec<OutboundMessage>,
    /// The conversation-log line of the push.
    pub log: LogRecord,
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitReport {
    /// Outbox entries queued.
    pub queued: usize,
    /// Messages not queued, with the reason (over quota).
    pub dropped: Vec<String>,
    /// Set when the push had already been committed (a retry arriving after its memo left the
    /// hot cache): nothing was written or queued, and the retry must be answered with this, the
    /// first answer.
    pub replay: Option<Memo>,
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend failed. `what` says what, with the backend's own message (operators read it
    /// in `/healthz` and the log); `source` keeps the backend's error itself, when there is one,
    /// for callers that need to tell causes apart.
    #[error("store: {what}")]
    Backend {
        what: String,
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    #[error("store is shutting down")]
    Closed,
}

impl StoreError {
    /// A failure with no underlying error of its own.
    pub fn backend(what: impl Into<String>) -> Self {
        Self::Backend {
            what: what.into(),
            source: None,
        }
    }

    /// A failure caused by `source`, described as `what: source`.
    pub fn caused(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend {
            what: format!("{what}: {source}"),
            source: Some(Arc::new(source)),
        }
    }
}

/// Two errors are equal when they say the same (the source is not compared).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Backend { what: a, .. }, Self::Backend { what: b, .. }) => a == b,
            (Self::Closed, Self::Closed) => true,
            _ => false,
        }
    }
}

impl Eq for StoreError {}

/// Resolves when the record is durable.
pub type CommitTicket = oneshot::Receiver<Result<CommitReport, StoreError>>;

/// The state interface of the request path.
pub trait Store: Send + Sync + 'static {
    /// Looks a push up for dedupe, and marks it in flight when it is new. Async: a shared
    /// backend asks its server (and turns a peer's in-flight claim into a [`Claim::InFlight`]
    /// receiver it fills by polling).
    fn claim(&self, key: &PushKey, now: i64) -> BoxFuture<'_, Result<Claim, StoreError>>;
    /// Releases an in-flight claim that will not be committed (waiters claim again).
    fn abandon(&self, key: &PushKey);
    /// The user's session (default when none). Async for the same reason as `claim`.
    fn session(
        &self,
        app: &str,
        openid: &OpenId,
        now: i64,
    ) -> BoxFuture<'_, Result<Session, StoreError>>;
    /// Queues the record for the next group commit.
    fn commit(&self, record: PushRecord) -> CommitTicket;
    /// Whether the store takes writes now: a small durable write, resolved like a commit.
    /// kefu calls it every few seconds so that `/healthz` sees a failing store (and its
    /// recovery) without waiting for traffic.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// What operators read (the console, `kefu stats`, `/metrics`): the same for every backend, so
/// that nothing outside a store knows how it keeps its data. Calls block (the console runs them
/// on a blocking thread).
pub trait Operations: Send + Sync + 'static {
    /// Outbox entries queued or being sent (cheap: the `/metrics` gauge).
    fn outbox_depth(&self) -> u64;
    /// Outbox entries by state.
    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;
    /// Conversation-log statistics since `since_unix`, days cut in `tz`.
    fn stats(&self, since_unix: i64, tz: chrono_tz::Tz) -> Result<stats::StatsReport, StoreError>;
    /// Messages per bucket since `since_unix`, for the console's chart.
    fn series(
        &self,
        since_unix: i64,
        bucket_secs: i64,
    ) -> Result<Vec<stats::SeriesPoint>, StoreError>;
    /// The latest entries that failed for good, newest first.
    fn recent_failures(&self, limit: usize) -> Result<Vec<FailedEntry>, StoreError>;
    /// Conversation threads, both sides, with each send's outcome (`kefu log`, the console).
    fn threads(&self, query: &history::LogQuery) -> Result<Vec<history::Thread>, StoreError>;
    /// The users seen recently, newest first (the console's conversations page).
    fn recent_users(
        &self,
        query: &history::LogQuery,
    ) -> Result<Vec<history::UserSummary>, StoreError>;
    /// Ends a user's handoff (and menu, and count of misses) now, also while the daemon runs
    /// (`kefu session end`).
    fn end_session(
        &self,
        app: &str,
        openid: &OpenId,
        now: i64,
    ) -> Result<history::SessionEnd, StoreError>;
}

/// What a request does with a push once dedupe has spoken (see [`resolve_claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Handle it, then [`Store::commit`] or [`Store::abandon`].
    New,
    /// Answer with this memo and do nothing else.
    Replay(Memo),
}

/// Claims a push, waiting for an in-flight first attempt to finish; claims again when that attempt
/// was abandoned. The caller bounds the wait (WeChat wants an answer within 5 s).
pub async fn resolve_claim(
    store: &dyn Store,
    key: &PushKey,
    now: i64,
) -> Result<Resolved, StoreError> {
    let first = store.claim(key, now).await?;
    resolve_claimed(store, key, now, first).await
}

/// [`resolve_claim`] going on from a claim already made (the webhook makes the first one together
/// with the session read).
pub async fn resolve_claimed(
    store: &dyn Store,
    key: &PushKey,
    now: i64,
    mut claim: Claim,
) -> Result<Resolved, StoreError> {
    loop {
        match claim {
            Claim::New => return Ok(Resolved::New),
            Claim::Done(memo) => return Ok(Resolved::Replay(memo)),
            Claim::InFlight(mut rx) => {
                if let Ok(memo) = rx.wait_for(Option::is_some).await
                    && let Some(memo) = memo.clone()
                {
                    return Ok(Resolved::Replay(memo));
                }
                // The first attempt was abandoned (or its commit failed): claim again.
            }
        }
        claim = store.claim(key, now).await?;
    }
}

/// Abandons a claim when dropped unless [`ClaimGuard::committed`] was called: a handler whose
/// future is dropped (client gone, panic, early return) never leaves WeChat's retries waiting.
pub struct ClaimGuard<'a> {
    /// The store holding the claim.
    store: &'a dyn Store,
    /// The claimed key; `None` once committed.
    key: Option<PushKey>,
}

impl<'a> ClaimGuard<'a> {
    /// Guards the claim of `key` (call after [`Resolved::New`]).
    pub fn new(store: &'a dyn Store, key: PushKey) -> Self {
        Self {
            store,
            key: Some(key),
        }
    }

    /// The record was handed to [`Store::commit`]: the writer now owns the claim (it resolves it,
    /// or releases it if the commit fails).
    pub fn committed(mut self) {
        self.key = None;
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.store.abandon(&key);
        }
    }
}

/// The outbox as the worker sees it: claim what is due, settle what was tried.
///
/// A claim moves entries from `queued` to `sending`, only the oldest unsettled entry of each user
/// (one user's messages go strictly in order), so that with a shared backend the claim is also
/// the lease that keeps two instances from sending one entry. SQLite, with one instance, returns
/// `sending` entries to the queue at open; a shared backend would give claims an expiry instead.
pub trait Outbox: Send + Sync + 'static {
    /// Notified whenever a commit queues entries, so the worker starts without polling delay.
    fn wakeup(&self) -> Arc<Notify>;
    /// Claims up to `limit` entries due at `now_ms` (unix milliseconds).
    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Claimed, StoreError>>;
    /// Records what became of a claimed entry; resolves once that is durable.
    fn settle(
        &self,
        id: i64,
        settlement: Settlement,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Entries not yet settled for good (queued or sending).
    fn depth(&self) -> u64;
}

/// How hard a commit is pushed to disk before the push is answered (`durability:` in kefu.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced at every commit, so an acknowledged push survives a
    /// power loss or OS crash. Group commit pays one fsync per batch, not per push, so throughput
    /// is roughly the pushes in flight divided by the fsync latency (see `benches/store.rs`).
    Full,
    /// `synchronous=NORMAL` (the default): a committed push survives a crash or kill of kefu
    /// (the WAL is in the OS's hands before the answer), but the last commits may be lost if the
    /// machine itself loses power before the next checkpoint's fsync.
    #[default]
    Normal,
}

/// Told of the pushes the store recorded (not of a retry found already recorded), on the
/// store's own thread once they are durable, a commit's pushes at once: start-up counts the
/// message metrics here, so they count recorded pushes only and the request path pays nothing
/// for it.
#[derive(Clone)]
pub struct RecordedHook(pub Arc<RecordedFn>);

/// What a [`RecordedHook`] calls.
pub type RecordedFn = dyn Fn(&[&PushRecord]) + Send + Sync;

impl std::fmt::Debug for RecordedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordedHook")
    }
}

/// Tuning of [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The send windows WeChat allows (SPEC §6).
    pub quota: QuotaSettings,
    /// See [`Durability`].
    pub durability: Durability,
    /// How long an answered push stays in memory for [`Store::claim`] (and is loaded at open).
    /// WeChat retries within seconds; minutes leave a wide margin.
    pub dedupe_hot_secs: i64,
    /// How long dedupe rows stay on disk: a retry later than the hot window still finds its memo
    /// at commit ([`CommitReport::replay`]).
    pub dedupe_keep_secs: i64,
    /// Conversation log and failed outbox entries are deleted after this many days.
    pub log_retention_days: u32,
    /// How often expired rows are purged (also once at open).
    pub purge_interval: Duration,
    /// At most this many commands in one transaction.
    pub max_batch: usize,
    /// See [`RecordedHook`].
    pub on_recorded: Option<RecordedHook>,
}

impl StoreOptions {
    /// Defaults with the given quota numbers.
    pub fn new(quota: QuotaSettings) -> Self {
        Self {
            quota,
            durability: Durability::default(),
            dedupe_hot_secs: 5 * 60,
            dedupe_keep_secs: 24 * 3600,
            log_retention_days: 30,
            purge_interval: Duration::from_secs(10 * 60),
            max_batch: 4096,
            on_recorded: None,
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self::new(QuotaSettings::default())
    }
}
