//! Delivery: the outbox worker, which joins the store's [`Outbox`] and the API client's
//! [`Deliver`]. It sends queued entries after their push was answered.
//!
//! - Woken by the store as soon as a commit queues entries (no polling delay); a timer only for
//!   the next due retry (and a slow idle tick as a safety net).
//! - One user's entries strictly in order: the store hands out only a user's oldest unsettled
//!   entry ([`Outbox::claim_due`]). Different users concurrently, at most `concurrency` sends at a
//!   time.
//! - `Accepted` → settled as sent at once (the window between WeChat's answer and the mark is one
//!   group commit); `Failed` → kept as failed, never retried; `Retry` → exponential backoff with
//!   jitter, until `max_attempts` or `give_up_after` since the first attempt, then failed with the
//!   last reason.
//! - Shutdown: no new claims; sends in flight get `shutdown_grace` to finish; whatever is left
//!   stays in the outbox (`sending` rows go back to `queued` at the next open). A send cut off
//!   mid-flight may have reached WeChat and will then be sent again — the one duplicate an API
//!   without idempotency keys cannot rule out.
//!
//! Depends only on [`Outbox`] and [`Deliver`], never on SQLite or the config file (start-up
//! builds its [`WorkerOptions`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

pub mod prepare;

use crate::store::{Outbox, OutboxEntry, Settlement, StoreError};
use crate::wechat::{Deliver, SendOutcome};

/// Tuning of the worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Sends in flight at once (different users).
    pub concurrency: usize,
    /// Backoff before the first retry; doubles per attempt.
    pub backoff_base: Duration,
    /// Backoff ceiling.
    pub backoff_max: Duration,
    /// Give up on an entry this long after its first attempt.
    pub give_up_after: Duration,
    /// …or after this many attempts.
    pub max_attempts: u32,
    /// A send that takes longer counts as a retryable failure.
    pub send_timeout: Duration,
    /// Wake up at least this often even when nothing is due (safety net).
    pub idle_tick: Duration,
    /// How long sends in flight may finish after shutdown is signalled.
    pub shutdown_grace: Duration,
    /// Told of every entry sent again because its send was in flight when kefu last stopped.
    pub on_resend: Option<ResendHook>,
}

/// Told of an entry sent again after a restart (for `kefu_outbox_resent_after_restart_total`).
#[derive(Clone)]
pub struct ResendHook(pub Arc<dyn Fn(&OutboxEntry) + Send + Sync>);

impl std::fmt::Debug for ResendHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResendHook")
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(10 * 60),
            max_attempts: 30,
            send_timeout: Duration::from_secs(20),
            idle_tick: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            on_resend: None,
        }
    }
}

impl WorkerOptions {
    /// The backoff before attempt `attempts + 1`, with "equal jitter": half fixed, half random,
    /// so that entries failing together do not retry together.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
            .min(self.backoff_max);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }
}

/// What the worker did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Entries WeChat accepted.
    pub sent: u64,
    /// Entries failed for good.
    pub failed: u64,
    /// Attempts rescheduled.
    pub retries: u64,
    /// Sends cut off by the shutdown grace (left for the next start).
    pub cut_off: u64,
}

/// What one send task ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskOutcome {
    Sent,
    Failed,
    Retrying,
}

/// Unix milliseconds from tokio's clock: wall time at start plus tokio's elapsed time, so that
/// backoff honours `tokio::time::pause` in tests and never jumps with the wall clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall_ms: i64,
    start: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall_ms: crate::clock::unix_ms(),
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall_ms.saturating_add(elapsed)
    }
}

/// Starts the worker. It runs until `shutdown` resolves (then drains as described above) or the
/// store closes (`Err(StoreError::Closed)`).
pub fn spawn_outbox_worker<F>(
    outbox: Arc<dyn Outbox>,
    deliver: Arc<dyn Deliver>,
    options: WorkerOptions,
    shutdown: F,
) -> tokio::task::JoinHandle<Result<WorkerSummary, StoreError>>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(run(outbox, deliver, Arc::new(options), shutdown))
}

async fn run<F>(
    outbox: Arc<dyn Outbox>,
    deliver: Arc<dyn Deliver>,
    options: Arc<WorkerOptions>,
    shutdown: F,
) -> Result<WorkerSummary, StoreError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let clock = Clock::new();
    let wakeup = outbox.wakeup();
    let concurrency = options.concurrency.max(1);
    let mut tasks: JoinSet<TaskOutcome> = JoinSet::new();
    let mut summary = WorkerSummary::default();
    let mut next_due_ms: Option<i64> = None;
    tokio::pin!(shutdown);

    loop {
        // Every wake-up (a commit, a finished send, a due retry) may have made entries claimable.
        if tasks.len() < concurrency {
            match outbox
                .claim_due(clock.now_ms(), concurrency - tasks.len())
                .await
            {
                Ok(claimed) => {
                    next_due_ms = claimed.next_due_ms;
                    for entry in claimed.entries {
                        tasks.spawn(send_one(
                            Arc::clone(&outbox),
                            Arc::clone(&deliver),
                            entry,
                            Arc::clone(&options),
                            clock,
                        ));
                    }
                }
                Err(StoreError::Closed) => {
                    drain(&mut tasks, &mut summary, options.shutdown_grace).await;
                    return Err(StoreError::Closed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot claim entries; trying again later");
                    next_due_ms = Some(clock.now_ms() + 1000);
                }
            }
        }
        let sleep_for = match next_due_ms {
            Some(due) => Duration::from_millis(u64::try_from(due - clock.now_ms()).unwrap_or(0))
                .min(options.idle_tick),
            None => options.idle_tick,
        };
        let has_room = tasks.len() < concurrency;
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => count(joined, &mut summary),
            () = wakeup.notified() => {}
            () = tokio::time::sleep(sleep_for), if has_room => {}
        }
    }
    drain(&mut tasks, &mut summary, options.shutdown_grace).await;
    tracing::info!(?summary, "outbox: worker stopped");
    Ok(summary)
}

/// Lets sends in flight finish within `grace`; cuts off the rest.
async fn drain(tasks: &mut JoinSet<TaskOutcome>, summary: &mut WorkerSummary, grace: Duration) {
    let deadline = Instant::now() + grace;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(joined)) => count(joined, summary),
            Ok(None) => break,
            Err(_) => {
                summary.cut_off += tasks.len() as u64;
                tracing::warn!(
                    sends = tasks.len(),
                    "outbox: sends still in flight at the end of the shutdown grace are cut off; \
                     they stay in the outbox"
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
}

fn count(joined: Result<TaskOutcome, JoinError>, summary: &mut WorkerSummary) {
    match joined {
        Ok(TaskOutcome::Sent) => summary.sent += 1,
        Ok(TaskOutcome::Failed) => summary.failed += 1,
        Ok(TaskOutcome::Retrying) => summary.retries += 1,
        Err(e) => tracing::error!(
            error = %e,
            "outbox: a send task died; its entry stays claimed until the next start"
        ),
    }
}

/// What to record after an attempt.
fn decide(
    entry: &OutboxEntry,
    outcome: SendOutcome,
    text: Option<String>,
    now_ms: i64,
    options: &WorkerOptions,
) -> Settlement {
    match outcome {
        SendOutcome::Accepted => Settlement::Sent { text },
        SendOutcome::Failed { errcode, reason } => Settlement::Failed {
            errcode: Some(errcode),
            reason,
        },
        SendOutcome::Retry { reason } | SendOutcome::Unknown { reason } => {
            let attempts = entry.attempts.saturating_add(1);
            let elapsed =
                Duration::from_millis(u64::try_from(now_ms - entry.first_attempt_ms).unwrap_or(0));
            if attempts >= options.max_attempts || elapsed >= options.give_up_after {
                Settlement::Failed {
                    errcode: None,
                    reason: format!(
                        "gave up after {attempts} attempts in {}s: {reason}",
                        elapsed.as_secs()
                    ),
                }
            } else {
                let delay = i64::try_from(options.backoff(attempts).as_millis()).unwrap_or(0);
                Settlement::Retry {
                    next_attempt_ms: now_ms.saturating_add(delay),
                    reason,
                }
            }
        }
    }
}

/// One attempt at one entry, and its settlement. Its log lines carry the entry's app, user and
/// id through the span.
#[tracing::instrument(
    name = "outbox_send",
    skip_all,
    fields(app = %entry.app, openid = %entry.openid, id = entry.id)
)]
async fn send_one(
    outbox: Arc<dyn Outbox>,
    deliver: Arc<dyn Deliver>,
    entry: OutboxEntry,
    options: Arc<WorkerOptions>,
    clock: Clock,
) -> TaskOutcome {
    if entry.interrupted {
        // WeChat may have accepted the cut-off send: this one can be a duplicate (no idempotency
        // key in the send API). Bounded by the sends in flight at the stop (`concurrency`).
        tracing::warn!("outbox: sending again an entry whose send was in flight when kefu stopped");
        if let Some(hook) = &options.on_resend {
            (hook.0)(&entry);
        }
    }
    let sent = tokio::time::timeout(
        options.send_timeout,
        deliver.deliver_noting(&entry.app, &entry.openid, &entry.message),
    )
    .await;
    // Cut off by the worker's own bound: the request may have left.
    let (outcome, text) = sent.unwrap_or_else(|_| {
        let reason = format!("no answer within {:?}", options.send_timeout);
        (SendOutcome::Unknown { reason }, None)
    });
    let now_ms = clock.now_ms();
    let settlement = decide(&entry, outcome, text, now_ms, &options);
    let task_outcome = match &settlement {
        Settlement::Sent { .. } => TaskOutcome::Sent,
        Settlement::Failed { errcode, reason } => {
            tracing::warn!(?errcode, %reason, "outbox: send failed"
            );
            TaskOutcome::Failed
        }
        Settlement::Retry {
            next_attempt_ms,
            reason,
        } => {
            tracing::info!(
                attempts = entry.attempts + 1, in_ms = next_attempt_ms - now_ms, %reason,
                "outbox: send will be retried"
            );
            TaskOutcome::Retrying
        }
    };
    // A settle can only fail if the database does; try a few times, since an entry left
    // `sending` blocks its user until the next start.
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=5 {
        match outbox.settle(entry.id, settlement.clone(), now_ms).await {
            Ok(()) => break,
            Err(StoreError::Closed) => {
                tracing::warn!("outbox: store closed before the send was recorded");
                break;
            }
            Err(e) if attempt == 5 => {
                tracing::error!(error = %e, "outbox: cannot record the send");
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    task_outcome
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let o = WorkerOptions::default();
        for _ in 0..50 {
            let b1 = o.backoff(1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1));
            let b3 = o.backoff(3);
            assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4));
            let b20 = o.backoff(20);
            assert!(b20 >= Duration::from_secs(30) && b20 <= Duration::from_secs(60));
        }
    }
}
