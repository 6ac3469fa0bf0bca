//! State that must outlive a request: dedupe memos, per-user sessions, quotas, the outbox and the
//! conversation log.
//!
//! The request path reaches state only through the [`Store`] trait, so that a shared backend
//! (Redis, for several instances) is a second implementation, not a rewrite. The SQLite backend
//! keeps everything in one file under `data_dir`.
//! STUB: the trait is fixed; the SQLite implementation and the outbox worker come with the
//! store work.

pub mod memory;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::outbound::OutboundMessage;
use crate::protocol::{InboundMessage, MsgKind};

/// Identifies one push for dedupe: `(app, MsgId)` for messages, `(app, FromUserName,
/// CreateTime, Event)` for events (protocol doc §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushKey(pub String);

impl PushKey {
    pub fn of(app: &str, msg: &InboundMessage) -> Self {
        match (&msg.msg_id, &msg.kind) {
            (Some(id), _) => Self(format!("{app}|m|{id}")),
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

/// The exact HTTP answer given to a push, replayed to its retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memo {
    pub content_type: Option<String>,
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

/// A clarify menu waiting for `1`, `2` or `3`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Menu {
    pub options: Vec<String>,
    /// Unix seconds after which the menu no longer answers.
    pub expires_at: i64,
}

/// Per-user conversation state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Session {
    pub menu: Option<Menu>,
    /// Unix seconds until which the user's messages are transferred to humans again.
    pub handoff_until: Option<i64>,
}

/// What opened (or refreshed) the user's send window (protocol doc §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaTrigger {
    UserMessage,
    SessionEnter,
}

/// What the conversation log records of one push.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogRecord {
    pub msg_type: String,
    /// The user's text (text messages only).
    pub text: Option<String>,
    pub rule: Option<String>,
    pub faq: Option<String>,
    /// `reply`, `faq`, `clarify`, `handoff`, `default`, `ignore`.
    pub action: String,
    pub handoff: bool,
}

/// Everything one push changes, committed together (group commit) before it is answered.
#[derive(Debug, Clone)]
pub struct PushRecord {
    pub key: PushKey,
    pub app: String,
    pub openid: String,
    /// Unix seconds when the push was received.
    pub received_at: i64,
    /// The HTTP answer, replayed to retries.
    pub memo: Memo,
    /// The user's new session state; `None` leaves it unchanged.
    pub session: Option<Session>,
    pub quota_trigger: Option<QuotaTrigger>,
    /// Messages to send through the API, in order.
    pub outbox: Vec<OutboundMessage>,
    pub log: LogRecord,
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitReport {
    /// Outbox entries queued.
    pub queued: usize,
    /// Messages not queued, with the reason (over quota).
    pub dropped: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    #[error("store is shutting down")]
    Closed,
}

/// Resolves when the record is durable.
pub type CommitTicket = oneshot::Receiver<Result<CommitReport, StoreError>>;

/// The state interface of the request path.
pub trait Store: Send + Sync + 'static {
    /// Looks a push up for dedupe, and marks it in flight when it is new.
    fn claim(&self, key: &PushKey, now: i64) -> Result<Claim, StoreError>;
    /// Releases an in-flight claim that will not be committed (waiters claim again).
    fn abandon(&self, key: &PushKey);
    /// The user's session (default when none).
    fn session(&self, app: &str, openid: &str, now: i64) -> Result<Session, StoreError>;
    /// Queues the record for the next group commit.
    fn commit(&self, record: PushRecord) -> CommitTicket;
}
