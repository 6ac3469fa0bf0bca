//! Tests of the SQLite store as a whole: group commit, dedupe, sessions, quotas, retention, stats
//! and the outbox worker against an in-process fake [`Deliver`].
//!
//! Worker tests that measure backoff run on paused tokio time against [`MemOutbox`], an in-memory
//! [`Outbox`] (a real writer thread would race the paused clock); the others run in real time
//! against [`SqliteStore`] with millisecond backoffs. Waits poll with a deadline.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{Notify, Semaphore, oneshot, watch};

use super::outbox::{Claimed, OutboxEntry, Settlement};
use super::*;
use crate::outbound::OutboundMessage;
use crate::wechat::{BoxFuture, Deliver, SendOutcome};

// ---------------------------------------------------------------------------------------------
// helpers

fn now() -> i64 {
    writer::unix_now()
}

fn memo(body: &str) -> Memo {
    Memo {
        content_type: Some("application/xml".into()),
        body: body.into(),
    }
}

fn push(key: &str, openid: &str, at: i64, texts: &[&str]) -> PushRecord {
    PushRecord {
        key: PushKey(format!("demo|m|{key}")),
        app: "demo".into(),
        openid: openid.into(),
        received_at: at,
        memo: memo(&format!("answer to {key}")),
        session: None,
        quota_trigger: Some(QuotaTrigger::UserMessage),
        outbox: texts.iter().map(|t| OutboundMessage::text(*t)).collect(),
        log: LogRecord {
            msg_type: "text".into(),
            text: Some(format!("message {key}")),
            rule: Some("r".into()),
            faq: None,
            action: "reply".into(),
            handoff: false,
        },
    }
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, StoreOptions::default()).unwrap()
}

async fn commit(store: &SqliteStore, record: PushRecord) -> CommitReport {
    store.commit(record).await.unwrap().unwrap()
}

fn count(store: &SqliteStore, sql: &str) -> i64 {
    let conn = Connection::open(store.path()).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Polls `done` until it holds, failing after `secs` (tokio time: virtual when paused).
async fn eventually(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

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
        openid: &'a str,
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
                openid: openid.into(),
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
// group commit, dedupe

#[tokio::test]
async fn group_commit_resolves_every_ticket_and_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let at = now();
    let tickets: Vec<_> = (0..500)
        .map(|i| store.commit(push(&i.to_string(), &format!("u{i}"), at, &["hi"])))
        .collect();
    for ticket in tickets {
        let report = ticket.await.unwrap().unwrap();
        assert_eq!(report.queued, 1);
        assert!(report.dropped.is_empty());
    }
    let (batches, commands) = store.writer_stats();
    assert_eq!(commands, 500);
    assert!(batches < 500, "commits were grouped ({batches} batches)");
    assert_eq!(store.outbox_depth(), 500);

    store.close();
    drop(store);
    let store = open(dir.path());
    assert_eq!(count(&store, "SELECT count(*) FROM messages"), 500);
    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 500);
    assert_eq!(store.outbox_depth(), 500);
    let key = PushKey("demo|m|7".into());
    assert!(matches!(store.claim(&key, at).unwrap(), Claim::Done(m) if m == memo("answer to 7")));
}

#[tokio::test]
async fn claim_is_new_then_in_flight_then_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let at = now();
    let record = push("1", "u", at, &["hi"]);
    assert!(matches!(store.claim(&record.key, at).unwrap(), Claim::New));
    let Claim::InFlight(mut rx) = store.claim(&record.key, at).unwrap() else {
        panic!("second claim must wait");
    };
    let key = record.key.clone();
    commit(&store, record).await;
    let got = rx.wait_for(Option::is_some).await.unwrap().clone();
    assert_eq!(got, Some(memo("answer to 1")));
    assert!(matches!(store.claim(&key, at).unwrap(), Claim::Done(m) if m == memo("answer to 1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_of_one_key_get_one_new_and_the_memo() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let at = now();
    let handled = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            let handled = Arc::clone(&handled);
            tokio::spawn(async move {
                let record = push("42", "u", at, &["hi"]);
                match resolve_claim(&*store, &record.key, at).await.unwrap() {
                    Resolved::New => {
                        handled.fetch_add(1, Ordering::SeqCst);
                        let memo = record.memo.clone();
                        store.commit(record).await.unwrap().unwrap();
                        memo
                    }
                    Resolved::Replay(memo) => memo,
                }
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), memo("answer to 42"));
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 1);
}

#[tokio::test]
async fn abandon_releases_waiters_who_claim_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let at = now();
    let key = PushKey("demo|m|9".into());
    assert!(matches!(store.claim(&key, at).unwrap(), Claim::New));
    let Claim::InFlight(mut rx) = store.claim(&key, at).unwrap() else {
        panic!()
    };
    store.abandon(&key);
    assert!(
        rx.changed().await.is_err(),
        "waiters see the first attempt go"
    );
    assert_eq!(
        resolve_claim(&*store, &key, at).await.unwrap(),
        Resolved::New
    );
}

#[tokio::test]
async fn dedupe_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    let key = {
        let store = open(dir.path());
        let record = push("5", "u", at, &["hi"]);
        let key = record.key.clone();
        assert!(matches!(store.claim(&key, at).unwrap(), Claim::New));
        commit(&store, record).await;
        key
    };
    let store = open(dir.path());
    assert!(
        matches!(store.claim(&key, at + 5).unwrap(), Claim::Done(m) if m == memo("answer to 5"))
    );
}

#[tokio::test]
async fn a_retry_after_the_hot_window_is_answered_from_disk_and_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        dedupe_hot_secs: 60,
        ..StoreOptions::default()
    };
    let store = SqliteStore::open(dir.path(), options).unwrap();
    let at = now();
    commit(&store, push("8", "u", at, &["first"])).await;
    // Ten minutes later the memo has left memory: the retry is handled afresh…
    let late = push("8", "u", at + 600, &["second"]);
    assert!(matches!(
        store.claim(&late.key, at + 600).unwrap(),
        Claim::New
    ));
    let report = commit(&store, late).await;
    // …but its commit finds the first answer and writes nothing.
    assert_eq!(report.replay, Some(memo("answer to 8")));
    assert_eq!(report.queued, 0);
    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM messages"), 1);
    let key = PushKey("demo|m|8".into());
    assert!(
        matches!(store.claim(&key, at + 601).unwrap(), Claim::Done(m) if m == memo("answer to 8"))
    );
}

#[tokio::test]
async fn a_closed_store_refuses_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.close();
    let record = push("1", "u", now(), &["hi"]);
    let key = record.key.clone();
    assert!(matches!(store.claim(&key, now()).unwrap(), Claim::New));
    assert_eq!(store.commit(record).await.unwrap(), Err(StoreError::Closed));
    // The claim was released, so a retry is not left waiting forever.
    assert!(matches!(store.claim(&key, now()).unwrap(), Claim::New));
}

// ---------------------------------------------------------------------------------------------
// sessions

#[tokio::test]
async fn sessions_are_visible_after_commit_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    let session = Session {
        menu: Some(Menu {
            options: vec!["mp-dereg-general".into(), "oa-dereg-general".into()],
            expires_at: at + 600,
            question: Some("注销需要什么".into()),
        }),
        handoff_until: Some(at + 1800),
        last_faq: None,
    };
    {
        let store = open(dir.path());
        assert_eq!(store.session("demo", "u", at).unwrap(), Session::default());
        let mut record = push("1", "u", at, &[]);
        record.session = Some(session.clone());
        commit(&store, record).await;
        assert_eq!(store.session("demo", "u", at).unwrap(), session);
        assert_eq!(
            store.session("demo", "other", at).unwrap(),
            Session::default()
        );
    }
    let store = open(dir.path());
    assert_eq!(store.session("demo", "u", at).unwrap(), session);
    // The menu expires before the handoff.
    assert_eq!(
        store.session("demo", "u", at + 700).unwrap(),
        Session {
            menu: None,
            handoff_until: Some(at + 1800),
            last_faq: None,
        }
    );
    // A default session clears it, on disk too.
    let mut record = push("2", "u", at, &[]);
    record.session = Some(Session::default());
    commit(&store, record).await;
    assert_eq!(store.session("demo", "u", at).unwrap(), Session::default());
    store.close();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.session("demo", "u", at).unwrap(), Session::default());
}

// ---------------------------------------------------------------------------------------------
// quotas

#[tokio::test]
async fn a_user_message_allows_five_and_drops_are_reported_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let at = now();
    let texts = ["1", "2", "3", "4", "5", "6", "7"];
    let report = commit(&store, push("1", "u", at, &texts)).await;
    assert_eq!(report.queued, 5);
    assert_eq!(report.dropped.len(), 2);
    assert!(
        report.dropped[0].contains("over quota"),
        "{:?}",
        report.dropped
    );
    assert!(report.dropped[0].contains("[6]"), "{:?}", report.dropped);

    // A push that opens no window (an event) shares what is left: nothing.
    let mut event = push("2", "u", at + 1, &["more"]);
    event.quota_trigger = None;
    assert_eq!(commit(&store, event).await.dropped.len(), 1);

    // Another user is unaffected.
    assert_eq!(
        commit(&store, push("3", "v", at, &texts[..2])).await.queued,
        2
    );

    // The next user message resets the allowance to five (it does not add up).
    let report = commit(&store, push("4", "u", at + 2, &texts)).await;
    assert_eq!((report.queued, report.dropped.len()), (5, 2));

    let stats = store.stats(at - 10, chrono_tz::Asia::Shanghai).unwrap();
    assert_eq!(stats.sends.dropped, 5);
    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 12);
}

#[tokio::test]
async fn entering_the_chat_allows_two_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let at = now();
    let mut enter = push("e1", "u", at, &["welcome", "menu", "extra"]);
    enter.quota_trigger = Some(QuotaTrigger::SessionEnter);
    let report = commit(&store, enter).await;
    assert_eq!((report.queued, report.dropped.len()), (2, 1));
    assert!(report.dropped[0].contains("entering the chat"));

    // After the minute, a push without trigger finds the window closed.
    let mut later = push("e2", "u", at + 61, &["late"]);
    later.quota_trigger = None;
    let report = commit(&store, later).await;
    assert_eq!(report.queued, 0);
    assert!(report.dropped[0].contains("no send window"));
}

#[tokio::test]
async fn quota_windows_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    {
        let store = open(dir.path());
        commit(&store, push("1", "u", at, &["a", "b", "c", "d"])).await;
        let w = store.quota_window("demo", "u").unwrap().unwrap();
        assert_eq!((w.used, w.limit), (4, 5));
    }
    let store = open(dir.path());
    let mut event = push("2", "u", at + 10, &["e", "f"]);
    event.quota_trigger = None;
    let report = commit(&store, event).await;
    assert_eq!((report.queued, report.dropped.len()), (1, 1));
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
                Settlement::Sent => *state = MemState::Sent,
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

// ---------------------------------------------------------------------------------------------
// retention, stats

#[tokio::test]
async fn retention_purges_old_log_rows_dedupe_and_expired_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now();
    let old = t - 40 * 86_400;
    let mut ancient = push("old", "u", old, &[]);
    ancient.quota_trigger = None;
    ancient.session = Some(Session {
        menu: None,
        handoff_until: Some(old + 60),
        last_faq: None,
    });
    commit(&store, ancient).await;
    commit(&store, push("yesterday", "u", t - 2 * 86_400, &[])).await;
    // A queued reply writes the user's quota window to disk (a push that queues nothing keeps
    // it in memory only).
    commit(&store, push("fresh", "u", t, &["hello"])).await;
    assert_eq!(count(&store, "SELECT count(*) FROM messages"), 3);

    let report = store.purge(t).await.unwrap();
    assert_eq!(report.messages, 1, "{report:?}");
    assert_eq!(report.dedupe, 2, "memos older than a day go");
    assert_eq!(report.sessions, 1);
    assert_eq!(count(&store, "SELECT count(*) FROM messages"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM dedupe"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM quota"), 1);
    // Purging again finds nothing.
    assert_eq!(store.purge(t).await.unwrap(), Default::default());
}

#[tokio::test]
async fn stats_count_rules_faqs_handoffs_and_unmatched() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now();
    let mut n = 0;
    let mut log = |store: &SqliteStore,
                   text: &str,
                   rule: Option<&str>,
                   faq: Option<&str>,
                   action: &str,
                   handoff: bool| {
        n += 1;
        let mut r = push(&n.to_string(), "u", t, &[]);
        r.log = LogRecord {
            msg_type: "text".into(),
            text: Some(text.into()),
            rule: rule.map(Into::into),
            faq: faq.map(Into::into),
            action: action.into(),
            handoff,
        };
        store.commit(r)
    };
    let tickets = vec![
        log(&store, "人工", Some("human"), None, "handoff", true),
        log(&store, "转人工", Some("human"), None, "handoff", true),
        log(
            &store,
            "怎么注销小程序",
            None,
            Some("mp-dereg-general"),
            "faq",
            false,
        ),
        log(
            &store,
            "个体户小程序注销",
            Some("mp-dereg-individual-explicit"),
            Some("mp-dereg-individual"),
            "faq",
            false,
        ),
        log(&store, "开发票", None, None, "ignore", false),
        log(&store, " 开发票 ", None, None, "ignore", false),
        log(&store, "Invoice", Some("default"), None, "default", true),
        log(&store, "invoice", Some("default"), None, "default", true),
        log(&store, "invoice", Some("default"), None, "default", true),
    ];
    for ticket in tickets {
        ticket.await.unwrap().unwrap();
    }
    let db = store.path().to_path_buf();
    let report = stats::collect(&db, t - 3600, chrono_tz::Asia::Shanghai).unwrap();
    assert_eq!(
        report,
        store.stats(t - 3600, chrono_tz::Asia::Shanghai).unwrap()
    );
    assert_eq!(report.messages, 9);
    assert_eq!(report.handoffs, 5);
    assert_eq!(report.unmatched, 5);
    let pairs = |v: &[stats::Count]| -> Vec<(String, u64)> {
        v.iter().map(|c| (c.key.clone(), c.count)).collect()
    };
    assert_eq!(
        pairs(&report.rules),
        [
            ("default".to_string(), 3),
            ("human".to_string(), 2),
            ("mp-dereg-individual-explicit".to_string(), 1)
        ]
    );
    assert_eq!(
        pairs(&report.faqs),
        [
            ("mp-dereg-general".to_string(), 1),
            ("mp-dereg-individual".to_string(), 1)
        ]
    );
    assert_eq!(
        pairs(&report.top_unmatched),
        [("invoice".to_string(), 3), ("开发票".to_string(), 2)]
    );
    assert_eq!(report.days.len(), 1);
    assert_eq!(report.days[0].messages, 9);

    let text = report.to_string();
    for needle in [
        "hits per rule",
        "mp-dereg-general",
        "\"开发票\"",
        "handoffs",
        "per day",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["messages"], 9);

    // Nothing before the window is counted.
    assert_eq!(
        store
            .stats(t + 1, chrono_tz::Asia::Shanghai)
            .unwrap()
            .messages,
        0
    );
}

#[test]
fn stats_of_a_missing_database_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = stats::collect(&dir.path().join("kefu.sqlite3"), 0, chrono_tz::UTC).unwrap_err();
    assert!(err.to_string().contains("no conversation log"), "{err}");
}

#[test]
fn watch_receivers_keep_the_memo_after_the_sender_is_gone() {
    // resolve_claim relies on this: the writer drops the sender right after sending.
    let (tx, mut rx) = watch::channel(None::<Memo>);
    tx.send_replace(Some(memo("x")));
    drop(tx);
    let got =
        futures_lite_block_on(async move { rx.wait_for(Option::is_some).await.map(|m| m.clone()) });
    assert_eq!(got.unwrap(), Some(memo("x")));
}

fn futures_lite_block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[tokio::test]
async fn a_claim_guard_abandons_unless_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let at = now();
    let key = PushKey("demo|m|77".into());
    {
        assert_eq!(
            resolve_claim(&store, &key, at).await.unwrap(),
            Resolved::New
        );
        let _guard = ClaimGuard::new(&store, key.clone());
        // The handler bails out (error, dropped future) without committing.
    }
    assert!(matches!(store.claim(&key, at).unwrap(), Claim::New));
    let guard = ClaimGuard::new(&store, key.clone());
    let ticket = store.commit(push("77", "u", at, &[]));
    guard.committed();
    ticket.await.unwrap().unwrap();
    assert!(matches!(store.claim(&key, at).unwrap(), Claim::Done(_)));
}

#[tokio::test]
async fn a_failed_batch_publishes_nothing_and_releases_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    // Inject a failure: the conversation-log insert of a text "boom" aborts.
    Connection::open(store.path())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.text = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let at = now();
    let mut record = push("13", "u", at, &["hi"]);
    record.log.text = Some("boom".into());
    record.session = Some(Session {
        menu: None,
        handoff_until: Some(at + 600),
        last_faq: None,
    });
    let key = record.key.clone();
    assert!(matches!(store.claim(&key, at).unwrap(), Claim::New));
    let Claim::InFlight(mut waiter) = store.claim(&key, at).unwrap() else {
        panic!()
    };
    let err = store.commit(record).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(waiter.changed().await.is_err(), "the waiter is released");
    assert!(matches!(store.claim(&key, at).unwrap(), Claim::New));
    assert_eq!(store.session("demo", "u", at).unwrap(), Session::default());
    assert_eq!(store.outbox_depth(), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM quota"), 0);
    // The store goes on serving.
    commit(&store, push("14", "u", at, &["hi"])).await;
    assert_eq!(store.outbox_depth(), 1);
}

#[tokio::test]
async fn a_push_that_queues_nothing_opens_its_window_in_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now();
    commit(&store, push("quiet", "u", t, &[])).await;
    assert_eq!(count(&store, "SELECT count(*) FROM quota"), 0, "no write");
    // …but the window is open: a later push from the same user without a trigger may send.
    let mut follow = push("follow", "u", t + 1, &["welcome back"]);
    follow.quota_trigger = None;
    let report = store.commit(follow).await.unwrap().unwrap();
    assert_eq!(report.queued, 1, "{report:?}");
    assert_eq!(
        count(&store, "SELECT count(*) FROM quota"),
        1,
        "written once used"
    );
}
