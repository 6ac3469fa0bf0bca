//! Tests of the outbox worker against an in-process fake [`Deliver`]: in real time against
//! [`SqliteStore`] with millisecond backoffs, and on paused tokio time against [`MemOutbox`], an
//! in-memory [`Outbox`] (a real writer thread would race the paused clock) for the backoff.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, oneshot};

use super::*;
use crate::outbound::OutboundMessage;
use crate::store::tests::{commit, count, eventually, now, open, push};
use crate::store::{Claimed, Outbox, OutboxEntry, Settlement, SqliteStore, StoreError};
use crate::store::{StoreOptions, writer};
use crate::wechat::{Deliver, SendOutcome};

/// One attempt seen by the fake.
#[derive(Debug, Clone)]
struct Call {
    openid: String,
    text: String,
    outcome: SendOutcome,
    at: tokio::time::Instant,
}

/// A scripted [`Deliver`]: outcomes per message text (default `Accepted`), every attempt recorded,
/// optionally held at a gate.
#[derive(Default)]
struct FakeDeliver {
    script: Mutex<HashMap<String, VecDeque<SendOutcome>>>,
    /// Outcome once a text's script is exhausted (default `Accepted`).
    fallback: Mutex<Option<SendOutcome>>,
    calls: Mutex<Vec<Call>>,
    started: AtomicU64,
    started_notify: Notify,
    gate: Option<Arc<Semaphore>>,
}

impl FakeDeliver {
    fn script(&self, text: &str, outcomes: impl IntoIterator<Item = SendOutcome>) {
        self.script
            .lock()
            .unwrap()
            .entry(text.into())
            .or_default()
            .extend(outcomes);
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn accepted(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter(|c| c.outcome == SendOutcome::Accepted)
            .map(|c| (c.openid, c.text))
            .collect()
    }
    fn attempts_of(&self, text: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.text == text)
            .collect()
    }
}

impl Deliver for FakeDeliver {
    fn deliver<'a>(
        &'a self,
        _app_id: &'a str,
        openid: &'a crate::openid::OpenId,
        message: &'a OutboundMessage,
    ) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            self.started.fetch_add(1, Ordering::SeqCst);
            self.started_notify.notify_waiters();
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            let text = message.preview();
            let scripted = self
                .script
                .lock()
                .unwrap()
                .get_mut(&text)
                .and_then(VecDeque::pop_front);
            let outcome = scripted
                .or_else(|| self.fallback.lock().unwrap().clone())
                .unwrap_or(SendOutcome::Accepted);
            self.calls.lock().unwrap().push(Call {
                openid: openid.to_string(),
                text,
                outcome: outcome.clone(),
                at: tokio::time::Instant::now(),
            });
            outcome
        })
    }
}

fn fast_worker() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        give_up_after: Duration::from_secs(60),
        max_attempts: 10,
        send_timeout: Duration::from_secs(5),
        idle_tick: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(5),
        on_resend: None,
    }
}

/// A shutdown future and its trigger.
fn shutdown_signal() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

// ---------------------------------------------------------------------------------------------
// outbox worker against SQLite (real time, millisecond backoffs)

async fn run_until_sent(
    store: &SqliteStore,
    deliver: Arc<FakeDeliver>,
    options: WorkerOptions,
) -> WorkerSummary {
    let (stop, shutdown) = shutdown_signal();
    let worker = spawn_outbox_worker(Arc::new(store.clone()), deliver, options, shutdown);
    eventually("the outbox to empty", 20, || store.outbox_depth() == 0).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sends_each_users_messages_in_order_even_across_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let deliver = Arc::new(FakeDeliver::default());
    deliver.script(
        "a1",
        [
            SendOutcome::Retry {
                reason: "timeout".into(),
            },
            SendOutcome::Retry {
                reason: "errcode -1".into(),
            },
        ],
    );
    let at = now();
    commit(&store, push("1", "A", at, &["a1", "a2"])).await;
    commit(&store, push("2", "B", at, &["b1", "b2", "b3"])).await;
    commit(&store, push("3", "A", at, &["a3"])).await;

    let summary = run_until_sent(&store, Arc::clone(&deliver), fast_worker()).await;
    assert_eq!((summary.sent, summary.retries, summary.failed), (6, 2, 0));

    let accepted = deliver.accepted();
    let of = |user: &str| -> Vec<String> {
        accepted
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, t)| t.clone())
            .collect()
    };
    assert_eq!(of("A"), ["a1", "a2", "a3"]);
    assert_eq!(of("B"), ["b1", "b2", "b3"]);
    // a2 was never attempted before a1 succeeded.
    let calls = deliver.calls();
    let a1_ok = calls
        .iter()
        .position(|c| c.text == "a1" && c.outcome == SendOutcome::Accepted)
        .unwrap();
    let a2_first = calls.iter().position(|c| c.text == "a2").unwrap();
    assert!(a2_first > a1_ok);

    let stats = store.stats(at - 10, chrono_tz::Asia::Shanghai).unwrap();
    assert_eq!((stats.sends.sent, stats.sends.retrying), (6, 2));
    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 0);
}

#[tokio::test]
async fn worker_wakes_on_commit_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let deliver = Arc::new(FakeDeliver::default());
    let (stop, shutdown) = shutdown_signal();
    // An idle tick of an hour: only the commit's wake-up can start the send.
    let worker = spawn_outbox_worker(
        Arc::new(store.clone()),
        Arc::clone(&deliver) as Arc<dyn Deliver>,
        fast_worker(),
        shutdown,
    );
    commit(&store, push("1", "u", now(), &["hello"])).await;
    eventually("the send", 10, || deliver.accepted().len() == 1).await;
    stop.send(()).unwrap();
    assert_eq!(worker.await.unwrap().unwrap().sent, 1);
}

#[tokio::test]
async fn failed_sends_are_recorded_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let deliver = Arc::new(FakeDeliver::default());
    deliver.script(
        "too many",
        [SendOutcome::Failed {
            errcode: 45047,
            reason: "out of response count limit".into(),
        }],
    );
    commit(&store, push("1", "u", now(), &["too many", "next"])).await;
    let summary = run_until_sent(&store, Arc::clone(&deliver), fast_worker()).await;
    assert_eq!((summary.sent, summary.failed, summary.retries), (1, 1, 0));
    assert_eq!(deliver.attempts_of("too many").len(), 1);
    // A failure does not block the user's next message.
    assert_eq!(deliver.accepted(), [("u".to_string(), "next".to_string())]);

    let failures = store.recent_failures(10).unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].errcode, Some(45047));
    assert_eq!(failures[0].preview, "too many");
    assert!(failures[0].reason.contains("count limit"));
    assert_eq!(store.outbox_counts().unwrap().failed, 1);
}

#[tokio::test]
async fn retries_give_up_after_the_attempt_bound_and_keep_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let deliver = Arc::new(FakeDeliver::default());
    *deliver.fallback.lock().unwrap() = Some(SendOutcome::Retry {
        reason: "HTTP 502".into(),
    });
    commit(&store, push("1", "u", now(), &["doomed"])).await;
    let options = WorkerOptions {
        max_attempts: 4,
        ..fast_worker()
    };
    let summary = run_until_sent(&store, Arc::clone(&deliver), options).await;
    assert_eq!((summary.retries, summary.failed), (3, 1));
    assert_eq!(deliver.attempts_of("doomed").len(), 4);
    let failures = store.recent_failures(10).unwrap();
    assert!(failures[0].reason.contains("gave up after 4 attempts"));
    assert!(failures[0].reason.contains("HTTP 502"));
    assert_eq!(failures[0].attempts, 4);
}

#[tokio::test]
async fn entries_left_sending_by_a_crash_are_sent_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        commit(&store, push("1", "u", now(), &["one"])).await;
        commit(&store, push("2", "v", now(), &["two"])).await;
        // A worker claims both, then the process dies before sending.
        let claimed = Outbox::claim_due(&store, writer::unix_ms(), 10)
            .await
            .unwrap();
        assert_eq!(claimed.entries.len(), 2);
        assert_eq!(store.outbox_counts().unwrap().sending, 2);
    }
    let (store, report) =
        SqliteStore::open_with_report(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(report.recovered, 2);
    assert_eq!(store.outbox_depth(), 2);
    let deliver = Arc::new(FakeDeliver::default());
    let summary = run_until_sent(&store, Arc::clone(&deliver), fast_worker()).await;
    assert_eq!(summary.sent, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_sends_in_flight_and_leaves_the_rest_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let gate = Arc::new(Semaphore::new(0));
    let deliver = Arc::new(FakeDeliver {
        gate: Some(Arc::clone(&gate)),
        ..FakeDeliver::default()
    });
    for i in 0..3 {
        commit(
            &store,
            push(&i.to_string(), &format!("u{i}"), now(), &["m"]),
        )
        .await;
    }
    let (stop, shutdown) = shutdown_signal();
    let options = WorkerOptions {
        concurrency: 1,
        ..fast_worker()
    };
    let worker = spawn_outbox_worker(
        Arc::new(store.clone()),
        Arc::clone(&deliver) as Arc<dyn Deliver>,
        options,
        shutdown,
    );
    eventually("the first send to start", 10, || {
        deliver.started.load(Ordering::SeqCst) == 1
    })
    .await;
    stop.send(()).unwrap();
    // Let the send in flight finish; nothing new may start.
    gate.add_permits(10);
    let summary = worker.await.unwrap().unwrap();
    assert_eq!((summary.sent, summary.cut_off), (1, 0));
    assert_eq!(deliver.started.load(Ordering::SeqCst), 1);
    assert_eq!(store.outbox_counts().unwrap().queued, 2);

    store.close();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.outbox_depth(), 2);
}

#[tokio::test]
async fn sends_cut_off_by_the_shutdown_grace_stay_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let gate = Arc::new(Semaphore::new(0)); // never opens
    let deliver = Arc::new(FakeDeliver {
        gate: Some(gate),
        ..FakeDeliver::default()
    });
    commit(&store, push("1", "u", now(), &["stuck"])).await;
    let (stop, shutdown) = shutdown_signal();
    let options = WorkerOptions {
        shutdown_grace: Duration::from_millis(50),
        ..fast_worker()
    };
    let worker = spawn_outbox_worker(
        Arc::new(store.clone()),
        Arc::clone(&deliver) as Arc<dyn Deliver>,
        options,
        shutdown,
    );
    eventually("the send to start", 10, || {
        deliver.started.load(Ordering::SeqCst) == 1
    })
    .await;
    stop.send(()).unwrap();
    let summary = worker.await.unwrap().unwrap();
    assert_eq!(summary.cut_off, 1);
    store.close();
    drop(store);
    let (store, report) =
        SqliteStore::open_with_report(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(report.recovered, 1);
    assert_eq!(store.outbox_counts().unwrap().queued, 1);
}

// ---------------------------------------------------------------------------------------------
// outbox worker on paused time: backoff and the time bound

/// An in-memory [`Outbox`] with the same contract as the SQLite one (oldest unsettled entry per
/// user only); shows the worker needs nothing SQLite-specific.
#[derive(Default)]
struct MemOutbox {
    rows: Mutex<Vec<(OutboxEntry, MemState, i64)>>,
    wakeup: Arc<Notify>,
}

#[derive(Debug, Clone, PartialEq)]
enum MemState {
    Queued,
    Sending,
    Sent,
    Failed(String),
}

impl MemOutbox {
    fn add(&self, id: i64, openid: &str, text: &str) {
        let entry = OutboxEntry {
            id,
            app: "demo".into(),
            openid: openid.into(),
            message: OutboundMessage::text(text),
            attempts: 0,
            created_ms: 0,
            first_attempt_ms: 0,
            interrupted: false,
        };
        self.rows.lock().unwrap().push((entry, MemState::Queued, 0));
        self.wakeup.notify_one();
    }
    fn state(&self, id: i64) -> MemState {
        let rows = self.rows.lock().unwrap();
        rows.iter().find(|r| r.0.id == id).unwrap().1.clone()
    }
}

impl Outbox for MemOutbox {
    fn wakeup(&self) -> Arc<Notify> {
        Arc::clone(&self.wakeup)
    }
    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Claimed, StoreError>> {
        let mut rows = self.rows.lock().unwrap();
        let mut claimed = Claimed::default();
        let mut seen = std::collections::HashSet::new();
        for (entry, state, due) in rows.iter_mut() {
            if !matches!(state, MemState::Queued | MemState::Sending) {
                continue;
            }
            if !seen.insert(entry.openid.clone()) || *state == MemState::Sending {
                continue; // not the user's head, or the head is in flight
            }
            if *due <= now_ms && claimed.entries.len() < limit {
                *state = MemState::Sending;
                if entry.attempts == 0 {
                    entry.first_attempt_ms = now_ms;
                }
                claimed.entries.push(entry.clone());
            } else if *due > now_ms {
                claimed.next_due_ms = Some(claimed.next_due_ms.map_or(*due, |d| d.min(*due)));
            }
        }
        Box::pin(async move { Ok(claimed) })
    }
    fn settle(
        &self,
        id: i64,
        settlement: Settlement,
        _now_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut rows = self.rows.lock().unwrap();
        if let Some((entry, state, due)) = rows.iter_mut().find(|r| r.0.id == id) {
            entry.attempts += 1;
            match settlement {
                Settlement::Sent { .. } => *state = MemState::Sent,
                Settlement::Failed { reason, .. } => *state = MemState::Failed(reason),
                Settlement::Retry {
                    next_attempt_ms, ..
                } => {
                    *state = MemState::Queued;
                    *due = next_attempt_ms;
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
    fn depth(&self) -> u64 {
        let rows = self.rows.lock().unwrap();
        rows.iter()
            .filter(|r| matches!(r.1, MemState::Queued | MemState::Sending))
            .count() as u64
    }
}

fn paused_worker() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(8),
        give_up_after: Duration::from_secs(600),
        max_attempts: 100,
        send_timeout: Duration::from_secs(5),
        idle_tick: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(5),
        on_resend: None,
    }
}

#[tokio::test(start_paused = true)]
async fn retry_backs_off_exponentially_then_succeeds() {
    let outbox = Arc::new(MemOutbox::default());
    let deliver = Arc::new(FakeDeliver::default());
    let retry = || SendOutcome::Retry {
        reason: "HTTP 503".into(),
    };
    deliver.script("hi", [retry(), retry(), retry(), retry()]);
    outbox.add(1, "u", "hi");
    let (stop, shutdown) = shutdown_signal();
    let worker = spawn_outbox_worker(
        Arc::clone(&outbox) as Arc<dyn Outbox>,
        Arc::clone(&deliver) as Arc<dyn Deliver>,
        paused_worker(),
        shutdown,
    );
    eventually("the send", 3600, || outbox.state(1) == MemState::Sent).await;
    stop.send(()).unwrap();
    let summary = worker.await.unwrap().unwrap();
    assert_eq!((summary.sent, summary.retries), (1, 4));

    let at: Vec<_> = deliver.attempts_of("hi").iter().map(|c| c.at).collect();
    assert_eq!(at.len(), 5);
    // Backoff n is between half and all of min(1 s · 2^(n-1), 8 s).
    for (n, pair) in at.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let full = Duration::from_secs(1 << n).min(Duration::from_secs(8));
        assert!(
            gap >= full / 2 && gap <= full + Duration::from_millis(50),
            "gap {n}: {gap:?} vs {full:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retries_give_up_after_the_time_bound() {
    let outbox = Arc::new(MemOutbox::default());
    let deliver = Arc::new(FakeDeliver::default());
    *deliver.fallback.lock().unwrap() = Some(SendOutcome::Retry {
        reason: "network unreachable".into(),
    });
    outbox.add(1, "u", "hi");
    outbox.add(2, "u", "after");
    let (stop, shutdown) = shutdown_signal();
    let options = WorkerOptions {
        give_up_after: Duration::from_secs(60),
        ..paused_worker()
    };
    let worker = spawn_outbox_worker(
        Arc::clone(&outbox) as Arc<dyn Outbox>,
        Arc::clone(&deliver) as Arc<dyn Deliver>,
        options,
        shutdown,
    );
    eventually("giving up", 3600, || {
        matches!(outbox.state(1), MemState::Failed(_))
    })
    .await;
    let MemState::Failed(reason) = outbox.state(1) else {
        unreachable!()
    };
    assert!(reason.contains("gave up"), "{reason}");
    assert!(reason.contains("network unreachable"), "{reason}");
    let attempts = deliver.attempts_of("hi");
    let span = attempts.last().unwrap().at - attempts[0].at;
    assert!(span >= Duration::from_secs(60) && span < Duration::from_secs(70));
    assert!(attempts.len() < 100);
    // The next entry of the user goes on afterwards (and keeps failing the same way).
    eventually("the next entry", 3600, || {
        !deliver.attempts_of("after").is_empty()
    })
    .await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}
