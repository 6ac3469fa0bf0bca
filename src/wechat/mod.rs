//! The WeChat API client: access tokens (`stable_token`, cached, single-flight) and
//! `custom/send`, with every outcome classified for the outbox worker.
//!
//! - [`client`]: [`WechatClient`], the [`Deliver`] implementation (HTTP, dry-run).
//! - [`token`]: the per-app token cache and its refresh policy (no I/O of its own).
//! - [`errcode`]: what each WeChat errcode means for a send (protocol doc §7.3).
//! - [`body`]: the `custom/send` JSON bodies (protocol doc §6.2).
//! - [`dry_run`]: the in-memory record of what dry-run apps would have sent.
//! - [`clock`]: the injectable clock that decides when a token is stale.
//!
//! This module knows the config and the outbound message types, nothing of the store, the
//! rules or actix: the outbox worker depends on [`Deliver`] only.

pub use crate::openid::OpenId;
use crate::outbound::OutboundMessage;

pub mod body;
pub mod client;
pub mod clock;
pub mod dry_run;
pub mod errcode;
pub mod shared_token;
pub mod token;

pub use client::{ClientApp, ClientError, ClientOptions, TokenFetchHook, Uploaded, WechatClient};
pub use clock::{Clock, ManualClock};
pub use dry_run::DryRunSend;
pub use shared_token::TokenShare;

/// What became of one send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// WeChat accepted it (errcode 0), or dry-run recorded it.
    Accepted,
    /// Worth retrying later: no connection, HTTP 5xx, errcode -1 or 45011.
    Retry { reason: String },
    /// No answer after the request may have reached WeChat (a timeout, a connection reset, an
    /// unreadable answer): it may have been delivered. Retried like [`Self::Retry`], since a
    /// duplicate beats a lost reply, and counted (`kefu_sends_total{outcome="unknown"}`): each
    /// can become a duplicate, the one the API's lack of idempotency keys allows.
    Unknown { reason: String },
    /// Cannot succeed by retrying (45015, 45047, 40003, 43004, 48001, 45009, …). `errcode` is
    /// WeChat's, or [`errcode::NOT_FROM_WECHAT`] when WeChat gave none (HTTP 4xx, unknown app).
    Failed { errcode: i64, reason: String },
}

pub use futures_util::future::BoxFuture;

/// Sends one message to one user of one app. Implemented by the API client; the outbox worker
/// depends only on this.
pub trait Deliver: Send + Sync {
    fn deliver<'a>(
        &'a self,
        app_id: &'a str,
        openid: &'a OpenId,
        message: &'a OutboundMessage,
    ) -> BoxFuture<'a, SendOutcome>;

    /// [`Deliver::deliver`], also telling what was sent when it is not the queued message as it
    /// stands (a `fetch` reply's composed text), for the send log.
    fn deliver_noting<'a>(
        &'a self,
        app_id: &'a str,
        openid: &'a OpenId,
        message: &'a OutboundMessage,
    ) -> BoxFuture<'a, (SendOutcome, Option<String>)> {
        Box::pin(async move { (self.deliver(app_id, openid, message).await, None) })
    }
}

/// The API client seen through metrics: counts every send by outcome (`sent`, `dry_run`,
/// `retry`, `failed`) for `kefu_sends_total`.
pub struct MeteredDeliver {
    client: WechatClient,
    metrics: crate::metrics::Metrics,
}

impl MeteredDeliver {
    pub fn new(client: WechatClient, metrics: crate::metrics::Metrics) -> Self {
        Self { client, metrics }
    }
}

impl Deliver for MeteredDeliver {
    fn deliver<'a>(
        &'a self,
        app_id: &'a str,
        openid: &'a OpenId,
        message: &'a OutboundMessage,
    ) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let outcome = self.client.send(app_id, openid, message).await;
            let label = match &outcome {
                SendOutcome::Accepted if self.client.is_dry_run(app_id) == Some(true) => "dry_run",
                SendOutcome::Accepted => "sent",
                SendOutcome::Retry { .. } => "retry",
                SendOutcome::Unknown { .. } => "unknown",
                SendOutcome::Failed { .. } => "failed",
            };
            self.metrics.send_outcome(label);
            outcome
        })
    }
}
