//! Tests of the SQLite store as a whole: group commit, dedupe, sessions, quotas, retention and
//! stats. The outbox worker's tests are in `crate::delivery`. Waits poll with a deadline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use super::*;
use crate::outbound::OutboundMessage;

// ---------------------------------------------------------------------------------------------
// helpers

pub(crate) fn now() -> i64 {
    writer::unix_now()
}

pub(crate) fn memo(body: &str) -> Memo {
    Memo {
        content_type: Some("application/xml".into()),
        body: body.into(),
    }
}

pub(crate) fn push(key: &str, openid: &str, at: i64, texts: &[&str]) -> PushRecord {
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
            ..LogRecord::default()
        },
    }
}

/// The rows of a query for `(id, text, number)` triples.
pub(crate) fn triples(conn: &Connection, sql: &str) -> Vec<(i64, String, i64)> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub(crate) fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, StoreOptions::default()).unwrap()
}

pub(crate) async fn commit(store: &SqliteStore, record: PushRecord) -> CommitReport {
    store.commit(record).await.unwrap().unwrap()
}

pub(crate) fn count(store: &SqliteStore, sql: &str) -> i64 {
    let conn = Connection::open(store.path()).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Polls `done` until it holds, failing after `secs` (tokio time: virtual when paused).
pub(crate) async fn eventually(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
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
        ..Session::default()
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
            ..Session::default()
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
        ..Session::default()
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
            action: action.to_owned().into(),
            handoff,
            ..LogRecord::default()
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
        ..Session::default()
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

// ---------------------------------------------------------------------------------------------
// conversation history and operators ending a session (SPEC §9)

fn in_handoff(until: i64) -> Session {
    Session {
        handoff_until: Some(until),
        misses: 1,
        misses_until: Some(until),
        ..Session::default()
    }
}

#[tokio::test]
async fn an_end_request_is_applied_by_the_running_writer_to_cache_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now();
    let mut r = push("1", "u", t, &["您好"]);
    r.session = Some(in_handoff(t + 1800));
    r.log.replies = vec!["您好".into()];
    commit(&store, r).await;
    assert!(
        store
            .session("demo", "u", t)
            .unwrap()
            .handoff_until
            .is_some()
    );
    // What `kefu session end` does from another process, through the same interface.
    let ops: &dyn Operations = &store;
    let path = store.path().to_path_buf();
    let outcome = tokio::task::spawn_blocking(move || {
        history::end_session(&path, "demo", "u", now(), Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome, history::SessionEnd::Applied);
    assert_eq!(store.session("demo", "u", t).unwrap(), Session::default());
    assert_eq!(count(&store, "SELECT count(*) FROM sessions"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM session_ends"), 0);
    // Both sides and the operator's action are in the thread.
    let threads = ops
        .threads(&history::LogQuery {
            openid: Some("u".into()),
            ..history::LogQuery::default()
        })
        .unwrap();
    assert_eq!(threads.len(), 1);
    let actions: Vec<&str> = threads[0]
        .exchanges
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["reply", "session_end"]);
    assert_eq!(threads[0].exchanges[0].replies, ["您好"]);
    let users = ops.recent_users(&history::LogQuery::default()).unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].last_text.as_deref(), Some("message 1"));
    store.close();
}

#[tokio::test]
async fn without_a_daemon_the_end_is_stored_and_a_stale_request_is_never_applied_later() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    {
        let store = open(dir.path());
        let mut r = push("1", "u", t, &[]);
        r.session = Some(in_handoff(t + 1800));
        commit(&store, r).await;
        let mut r = push("2", "v", t, &[]);
        r.session = Some(in_handoff(t + 1800));
        commit(&store, r).await;
        store.close();
    }
    let path = dir.path().join(schema::DB_FILE);
    let outcome = history::end_session(&path, "demo", "u", t, Duration::from_millis(100)).unwrap();
    assert_eq!(outcome, history::SessionEnd::Stored);
    // An old request left behind (its process applied it to the store itself): discarded.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO session_ends (app, openid, at) VALUES ('demo', 'v', ?1)",
        [t - 3600],
    )
    .unwrap();
    drop(conn);
    let store = open(dir.path());
    assert_eq!(store.session("demo", "u", t).unwrap(), Session::default());
    eventually("the old request is discarded", 5, || {
        count(&store, "SELECT count(*) FROM session_ends") == 0
    })
    .await;
    assert!(
        store
            .session("demo", "v", t)
            .unwrap()
            .handoff_until
            .is_some(),
        "a stale request does not end a handoff"
    );
    store.close();
}

#[test]
fn push_keys_read_as_before() {
    let mut msg = crate::protocol::message::parse_message(
        b"<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName>\
          <CreateTime>17</CreateTime><MsgType>text</MsgType><Content>x</Content>\
          <MsgId>18446744073709551615</MsgId></xml>",
    )
    .unwrap()
    .1;
    for id in [0, 7, 10, 24912345678901234, u64::MAX] {
        msg.msg_id = Some(crate::protocol::MsgId::Number(id));
        assert_eq!(PushKey::of("app", &msg).0, format!("app|m|{id}"));
    }
    msg.msg_id = Some(crate::protocol::MsgId::Text("abc".into()));
    assert_eq!(PushKey::of("app", &msg).0, "app|m|abc");
}

#[tokio::test]
async fn recent_users_count_what_matches_and_show_the_latest_text_of_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now();
    for (key, user, at, text, handoff) in [
        ("1", "a", t - 7_200, "旧消息 refund", false),
        ("2", "a", t - 50, "退款 refund", true),
        ("3", "a", t - 40, "谢谢", false),
        ("4", "b", t - 30, "营业时间", false),
        ("5", "c", t - 20, "refund please", false),
    ] {
        let mut r = push(key, user, at, &[]);
        r.log.text = Some(text.into());
        r.log.handoff = handoff;
        commit(&store, r).await;
    }
    let ops: &dyn Operations = &store;
    let since = t - 3_600;
    let users = ops
        .recent_users(&history::LogQuery {
            since,
            ..history::LogQuery::default()
        })
        .unwrap();
    let seen: Vec<(&str, u64, u64, Option<&str>)> = users
        .iter()
        .map(|u| {
            (
                u.openid.as_str(),
                u.messages,
                u.handoffs,
                u.last_text.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("c", 1, 0, Some("refund please")),
            ("b", 1, 0, Some("营业时间")),
            ("a", 2, 1, Some("谢谢")),
        ]
    );
    // A search counts the pushes it matches; the latest text is the window's, matched or not.
    let users = ops
        .recent_users(&history::LogQuery {
            since,
            grep: Some("refund".into()),
            ..history::LogQuery::default()
        })
        .unwrap();
    let seen: Vec<(&str, u64, i64, Option<&str>)> = users
        .iter()
        .map(|u| {
            (
                u.openid.as_str(),
                u.messages,
                u.last_at,
                u.last_text.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("c", 1, t - 20, Some("refund please")),
            ("a", 1, t - 50, Some("谢谢")),
        ]
    );
    store.close();
}

#[tokio::test]
async fn each_thread_gets_the_sends_to_its_user_from_its_first_exchange_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = now();
    for (key, user, at) in [("1", "a", t - 100), ("2", "b", t - 50), ("3", "a", t - 10)] {
        commit(&store, push(key, user, at, &[])).await;
    }
    {
        let conn = Connection::open(store.path()).unwrap();
        for (user, at, summary) in [
            ("a", t - 200, "before a's first exchange"),
            ("a", t - 99, "to a"),
            ("b", t - 60, "before b's first exchange"),
            ("b", t - 49, "to b"),
            ("c", t - 40, "to a user without a thread"),
            ("a", t - 9, "to a again"),
        ] {
            conn.execute(
                "INSERT INTO sends (at, app, openid, outcome, summary) \
                 VALUES (?1, 'demo', ?2, 'sent', ?3)",
                rusqlite::params![at, user, summary],
            )
            .unwrap();
        }
    }
    let ops: &dyn Operations = &store;
    let threads = ops
        .threads(&history::LogQuery {
            since: t - 3_600,
            ..history::LogQuery::default()
        })
        .unwrap();
    let sends: Vec<(&str, Vec<&str>)> = threads
        .iter()
        .map(|t| {
            (
                t.openid.as_str(),
                t.sends
                    .iter()
                    .filter_map(|s| s.summary.as_deref())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        sends,
        [("a", vec!["to a", "to a again"]), ("b", vec!["to b"])]
    );
    store.close();
}
