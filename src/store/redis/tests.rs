//! The store contract, run against both implementations (SQLite and Redis): dedupe and memo
//! replay, quota grant and spend, sessions, the outbox's state transitions. Then what only a
//! shared store has: fencing and lease takeover, session compare-and-write, the media cache's
//! compare-and-delete, shared values, the start-up refusals. Redis tests start their own
//! redis-server ([`super::testing`]) and are skipped, saying so, where there is none.

use std::sync::Arc;
use std::time::Duration;

use super::testing::TestRedis;
use super::{RedisOptions, RedisStore};
use crate::store::tests::{memo, now, push};
use crate::store::{
    Claim, MediaCache, MediaEntry, Outbox, Session, Settlement, SharedValues, SqliteStore, Store,
    StoreOptions,
};

fn options(redis: &TestRedis) -> RedisOptions {
    RedisOptions {
        prefix: format!("t{:06x}", rand::random::<u32>() & 0xff_ffff),
        ..RedisOptions::new(&redis.url(), vec!["demo".into()])
    }
}

async fn redis_store(redis: &TestRedis) -> RedisStore {
    RedisStore::open(options(redis)).await.unwrap()
}

/// Both backends, behind the interfaces the daemon uses.
struct Backend {
    store: Arc<dyn Store>,
    outbox: Arc<dyn Outbox>,
    media: Arc<dyn MediaCache>,
    ops: Arc<dyn crate::store::Operations>,
    _dir: Option<tempfile::TempDir>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    Backend {
        store: Arc::new(s.clone()),
        outbox: Arc::new(s.clone()),
        media: Arc::new(s.clone()),
        ops: Arc::new(s),
        _dir: Some(dir),
    }
}

fn redis_backend(s: RedisStore) -> Backend {
    Backend {
        store: Arc::new(s.clone()),
        outbox: Arc::new(s.clone()),
        media: Arc::new(s.clone()),
        ops: Arc::new(s),
        _dir: None,
    }
}

// ---- the contract ----------------------------------------------------------------------------

async fn contract_dedupe_and_replay(b: &Backend) {
    let store = &*b.store;
    let record = push("7", "u", now(), &[]);
    assert!(matches!(
        store.claim(&record.key, now()).await.unwrap(),
        Claim::New
    ));
    let Claim::InFlight(mut rx) = store.claim(&record.key, now()).await.unwrap() else {
        panic!("a second claim while the first is decided waits");
    };
    let report = store.commit(record.clone()).await.unwrap().unwrap();
    assert_eq!(report.replay, None);
    let waited = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(waited, Some(memo("answer to 7")));
    assert!(
        matches!(store.claim(&record.key, now()).await.unwrap(), Claim::Done(m) if m == memo("answer to 7"))
    );
    // An abandoned claim is claimable again.
    let other = push("8", "u", now(), &[]);
    assert!(matches!(
        store.claim(&other.key, now()).await.unwrap(),
        Claim::New
    ));
    store.abandon(&other.key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if matches!(store.claim(&other.key, now()).await.unwrap(), Claim::New) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "abandon released the claim"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn contract_quota_grant_and_spend(b: &Backend) {
    let store = &*b.store;
    let texts = ["1", "2", "3", "4", "5", "6", "7"];
    let first = push("q1", "quser", now(), &texts);
    assert!(matches!(
        store.claim(&first.key, now()).await.unwrap(),
        Claim::New
    ));
    let report = store.commit(first).await.unwrap().unwrap();
    assert_eq!(report.queued, 5, "a user message grants 5");
    assert_eq!(report.dropped.len(), 2);
    assert!(
        report.dropped[0].contains("over quota"),
        "{:?}",
        report.dropped
    );
    // Without a trigger, nothing is left.
    let mut event = push("q2", "quser", now(), &["more"]);
    event.quota_trigger = None;
    assert!(matches!(
        store.claim(&event.key, now()).await.unwrap(),
        Claim::New
    ));
    let report = store.commit(event).await.unwrap().unwrap();
    assert_eq!((report.queued, report.dropped.len()), (0, 1));
    // A new user message resets the window (it does not add to it).
    let again = push("q3", "quser", now(), &["a", "b"]);
    assert!(matches!(
        store.claim(&again.key, now()).await.unwrap(),
        Claim::New
    ));
    assert_eq!(store.commit(again).await.unwrap().unwrap().queued, 2);
}

async fn contract_session_roundtrip(b: &Backend) {
    let store = &*b.store;
    let at = now();
    assert_eq!(
        store.session("demo", &"s1".into(), at).await.unwrap(),
        Session::default()
    );
    let session = Session {
        handoff_until: Some(at + 600),
        ..Session::default()
    };
    let mut record = push("s1", "s1", at, &[]);
    record.session = Some(session.clone());
    assert!(matches!(
        store.claim(&record.key, at).await.unwrap(),
        Claim::New
    ));
    store.commit(record).await.unwrap().unwrap();
    assert_eq!(
        store.session("demo", &"s1".into(), at).await.unwrap(),
        session
    );
    assert_eq!(
        store.session("demo", &"s1".into(), at + 700).await.unwrap(),
        Session::default(),
        "expired parts are gone"
    );
}

async fn contract_outbox_transitions(b: &Backend) {
    let store = &*b.store;
    let outbox = &*b.outbox;
    let record = push("o1", "ouser", now(), &["first", "second"]);
    assert!(matches!(
        store.claim(&record.key, now()).await.unwrap(),
        Claim::New
    ));
    store.commit(record).await.unwrap().unwrap();
    let ms = crate::clock::unix_now() * 1000 + 1000;
    // queued → sending: only the user's oldest entry.
    let claimed = outbox.claim_due(ms, 10).await.unwrap();
    assert_eq!(claimed.entries.len(), 1, "{claimed:?}");
    let first = &claimed.entries[0];
    assert_eq!(
        first.message,
        crate::outbound::OutboundMessage::text("first")
    );
    assert!(!first.interrupted);
    assert!(
        outbox.claim_due(ms, 10).await.unwrap().entries.is_empty(),
        "one at a time per user"
    );
    // sending → queued again (retry), then claimed with the attempt counted.
    outbox
        .settle(
            first.id,
            Settlement::Retry {
                next_attempt_ms: 0,
                reason: "-1".into(),
            },
            ms,
        )
        .await
        .unwrap();
    let retried = outbox.claim_due(ms, 10).await.unwrap();
    assert_eq!(retried.entries.len(), 1);
    assert_eq!(retried.entries[0].attempts, 1);
    // sending → gone (sent); the next entry follows.
    outbox
        .settle(retried.entries[0].id, Settlement::Sent { text: None }, ms)
        .await
        .unwrap();
    let next = outbox.claim_due(ms, 10).await.unwrap();
    assert_eq!(next.entries.len(), 1);
    assert_eq!(
        next.entries[0].message,
        crate::outbound::OutboundMessage::text("second")
    );
    // sending → failed for good.
    outbox
        .settle(
            next.entries[0].id,
            Settlement::Failed {
                errcode: Some(45015),
                reason: "too late".into(),
            },
            ms,
        )
        .await
        .unwrap();
    assert!(outbox.claim_due(ms, 10).await.unwrap().entries.is_empty());
    assert_eq!(outbox.depth(), 0);
}

/// A send whose text was made at send time (a `fetch` reply) is logged with that text; one
/// without keeps the queued message's summary.
async fn contract_the_send_log_shows_what_was_sent(b: &Backend) {
    let record = push("s1", "osent", now(), &["queued text", "second"]);
    b.store.claim(&record.key, now()).await.unwrap();
    b.store.commit(record).await.unwrap().unwrap();
    let ms = crate::clock::unix_now() * 1000 + 1000;
    for text in [Some("composed 已发货".to_string()), None] {
        let claimed = b.outbox.claim_due(ms, 10).await.unwrap();
        b.outbox
            .settle(claimed.entries[0].id, Settlement::Sent { text }, ms)
            .await
            .unwrap();
    }
    let threads = b
        .ops
        .threads(&crate::store::history::LogQuery {
            openid: Some("osent".into()),
            ..Default::default()
        })
        .unwrap();
    let mut sent: Vec<_> = threads[0]
        .sends
        .iter()
        .map(|s| (s.outcome.as_str(), s.summary.as_deref()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [("sent", Some("composed 已发货")), ("sent", Some("second"))]
    );
}

async fn contract_media_compare_and_delete(b: &Backend) {
    let store = &*b.media;
    let at = now();
    let entry = |id: &str| MediaEntry {
        media_id: id.into(),
        uploaded_at: at,
        expires_at: at + 3 * 86_400 - 3600,
    };
    assert_eq!(store.media("demo", "abc", at).await.unwrap(), None);
    store.put_media("demo", "abc", entry("m1")).await.unwrap();
    assert_eq!(
        store.media("demo", "abc", at).await.unwrap(),
        Some(entry("m1"))
    );
    store.put_media("demo", "abc", entry("m2")).await.unwrap();
    store.forget_media("demo", "abc", "m1").await.unwrap();
    assert_eq!(
        store.media("demo", "abc", at).await.unwrap(),
        Some(entry("m2")),
        "a late 40007 for m1 keeps m2"
    );
    store.forget_media("demo", "abc", "m2").await.unwrap();
    assert_eq!(store.media("demo", "abc", at).await.unwrap(), None);
    store.put_media("demo", "abc", entry("m3")).await.unwrap();
    assert_eq!(
        store.media("demo", "abc", at + 4 * 86_400).await.unwrap(),
        None,
        "expired"
    );
}

macro_rules! contract {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(&super::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let Some(server) =
                    TestRedis::start(concat!("contract ", stringify!($name), " on redis"))
                else {
                    return;
                };
                super::$name(&redis_backend(redis_store(&server).await)).await;
            }
        }
    };
}

contract!(contract_dedupe_and_replay);
contract!(contract_quota_grant_and_spend);
contract!(contract_session_roundtrip);
contract!(contract_outbox_transitions);
contract!(contract_media_compare_and_delete);
contract!(contract_the_send_log_shows_what_was_sent);

// ---- only a shared store -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_cannot_settle_after_a_takeover() {
    let Some(server) = TestRedis::start("a_stale_owner_cannot_settle_after_a_takeover") else {
        return;
    };
    let opts = RedisOptions {
        lease_ms: 300,
        ..options(&server)
    };
    let a = RedisStore::open(RedisOptions {
        instance: "a".into(),
        ..opts.clone()
    })
    .await
    .unwrap();
    let b = RedisStore::open(RedisOptions {
        instance: "b".into(),
        ..opts
    })
    .await
    .unwrap();
    let record = push("f1", "fuser", now(), &["once"]);
    assert!(matches!(
        Store::claim(&a, &record.key, now()).await.unwrap(),
        Claim::New
    ));
    a.commit(record).await.unwrap().unwrap();
    let held = a.claim_due(0, 10).await.unwrap();
    assert_eq!(held.entries.len(), 1);
    assert!(
        b.claim_due(0, 10).await.unwrap().entries.is_empty(),
        "leased to A"
    );
    // A's lease expires (A paused or died); B takes it over, marked as a possible duplicate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let taken = loop {
        let c = b.claim_due(0, 10).await.unwrap();
        if !c.entries.is_empty() {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B takes the entry over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(taken.entries[0].interrupted);
    // A's late outcome is refused (fenced) and counted; B's is accepted.
    a.settle(held.entries[0].id, Settlement::Sent { text: None }, 0)
        .await
        .unwrap();
    assert_eq!(a.stale_fences(), 1);
    assert_eq!(
        server.cli(&["HLEN", &format!("{}:{{demo}}:ob:s", a.inner.opts.prefix)]),
        "1"
    );
    b.settle(taken.entries[0].id, Settlement::Sent { text: None }, 0)
        .await
        .unwrap();
    assert_eq!(b.stale_fences(), 0);
    assert_eq!(
        server.cli(&["HLEN", &format!("{}:{{demo}}:ob:s", a.inner.opts.prefix)]),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_changed_by_a_peer_refuses_the_commit() {
    let Some(server) = TestRedis::start("a_session_changed_by_a_peer_refuses_the_commit") else {
        return;
    };
    let opts = options(&server);
    let a = RedisStore::open(opts.clone()).await.unwrap();
    let b = RedisStore::open(opts).await.unwrap();
    let at = now();
    // Both read the user's (empty) session, B commits a handoff first.
    a.session("demo", &"cas".into(), at).await.unwrap();
    b.session("demo", &"cas".into(), at).await.unwrap();
    let handoff = Session {
        handoff_until: Some(at + 600),
        ..Session::default()
    };
    let mut rb = push("cas-b", "cas", at, &[]);
    rb.session = Some(handoff.clone());
    assert!(matches!(
        Store::claim(&b, &rb.key, at).await.unwrap(),
        Claim::New
    ));
    b.commit(rb).await.unwrap().unwrap();
    let mut ra = push("cas-a", "cas", at, &[]);
    ra.session = Some(Session {
        misses: 1,
        misses_until: Some(at + 600),
        ..Session::default()
    });
    assert!(matches!(
        Store::claim(&a, &ra.key, at).await.unwrap(),
        Claim::New
    ));
    let refused = a.commit(ra.clone()).await.unwrap();
    assert!(
        refused.is_err(),
        "A decided on a session B changed: {refused:?}"
    );
    assert_eq!(
        a.session("demo", &"cas".into(), at).await.unwrap(),
        handoff,
        "B's write stands"
    );
    // The lease was released: WeChat's retry decides again, on the new session.
    assert!(matches!(
        Store::claim(&a, &ra.key, at).await.unwrap(),
        Claim::New
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_values_lock_and_compare_and_delete() {
    let Some(server) = TestRedis::start("shared_values_lock_and_compare_and_delete") else {
        return;
    };
    let store = redis_store(&server).await;
    assert!(
        store
            .put_value("demo", "lock", "a", 10_000, true)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_value("demo", "lock", "b", 10_000, true)
            .await
            .unwrap()
    );
    assert!(!store.delete_value_if("demo", "lock", "b").await.unwrap());
    assert!(store.delete_value_if("demo", "lock", "a").await.unwrap());
    store
        .put_value("demo", "token", "T1", 60_000, false)
        .await
        .unwrap();
    let (v, ttl) = store.get_value("demo", "token").await.unwrap().unwrap();
    assert_eq!(v, "T1");
    assert!(ttl > 50_000 && ttl <= 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_a_redis_that_would_lose_state() {
    let Some(no_aof) =
        TestRedis::start_with("start_up_refuses…appendonly", &["--appendonly", "no"])
    else {
        return;
    };
    let e = RedisStore::open(options(&no_aof))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("appendonly"), "{e}");
    let Some(lru) = TestRedis::start_with(
        "start_up_refuses…policy",
        &["--maxmemory-policy", "allkeys-lru"],
    ) else {
        return;
    };
    let e = RedisStore::open(options(&lru))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("maxmemory-policy"), "{e}");
    // CONFIG renamed away (as managed services do): a warning, and the start goes on.
    let Some(managed) = TestRedis::start_with(
        "start_up_refuses…config",
        &["--rename-command", "CONFIG", ""],
    ) else {
        return;
    };
    assert!(RedisStore::open(options(&managed)).await.is_ok());
}

#[test]
fn bad_urls_are_refused_with_a_reason() {
    for (url, says) in [
        ("http://x:6379", "redis://"),
        ("redis+sentinel://h:26379", "master"),
        ("redis+sentinel://h:26379/m/x", "not a number"),
        ("redis+sentinel://nohost/m/0", "host:port"),
        ("redis://:secret@", "not a valid Redis URL"),
    ] {
        let e = RedisStore::check_url(url).err().unwrap_or_default();
        assert!(e.contains(says), "{url}: {e}");
        assert!(!e.contains("secret"), "{e}");
    }
    assert!(RedisStore::check_url("redis://10.0.0.5:6379/0").is_ok());
    assert!(RedisStore::check_url("rediss://:pw@10.0.0.5:6380/1").is_ok());
    assert!(RedisStore::check_url("redis+sentinel://:pw@a:26379,b:26379/mymaster/0").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_shared_and_read_like_sqlite() {
    let Some(server) = TestRedis::start("the_log_is_shared_and_read_like_sqlite") else {
        return;
    };
    let opts = options(&server);
    let a = RedisStore::open(opts.clone()).await.unwrap();
    let b = RedisStore::open(opts).await.unwrap();
    for (i, s) in [&a, &b].into_iter().enumerate() {
        let r = push(&format!("log{i}"), &format!("user{i}"), now(), &["hi"]);
        assert!(matches!(
            Store::claim(s, &r.key, now()).await.unwrap(),
            Claim::New
        ));
        s.commit(r).await.unwrap().unwrap();
    }
    let a2 = a.clone();
    let stats = tokio::task::spawn_blocking(move || {
        crate::store::Operations::stats(&a2, 0, chrono_tz::Asia::Shanghai)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(stats.to_string().contains('2'), "{stats}");
    let users = tokio::task::spawn_blocking(move || {
        crate::store::Operations::recent_users(
            &b,
            &crate::store::history::LogQuery {
                app: None,
                openid: None,
                since: 0,
                grep: None,
                limit: 10,
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(users.len(), 2, "both instances' users, read at either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_range_holds_across_apps_whose_logs_interleave() {
    let Some(server) = TestRedis::start("a_time_range_holds_across_apps_whose_logs_interleave")
    else {
        return;
    };
    // The view reads one app's stream after the other: "demo" is read first and is the newer.
    let opts = RedisOptions {
        prefix: format!("t{:06x}", rand::random::<u32>() & 0xff_ffff),
        ..RedisOptions::new(&server.url(), vec!["demo".into(), "shop".into()])
    };
    let s = RedisStore::open(opts).await.unwrap();
    let t = now();
    for (app, key, at) in [
        ("demo", "n1", t),
        ("demo", "n2", t),
        ("shop", "o1", t - 3_600),
        ("shop", "o2", t - 3_600),
        ("shop", "o3", t - 3_600),
    ] {
        let mut r = push(key, "u", at, &[]);
        r.app = app.into();
        r.key = crate::store::PushKey(format!("{app}|m|{key}"));
        s.commit(r).await.unwrap().unwrap();
    }
    for (since, messages) in [(t - 60, 2), (t - 7_200, 5)] {
        let s = s.clone();
        let stats = tokio::task::spawn_blocking(move || {
            crate::store::Operations::stats(&s, since, chrono_tz::Asia::Shanghai)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stats.messages, messages, "since {since}: {stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_from_sqlite_moves_the_unsent_replies_once() {
    let Some(server) = TestRedis::start("switching_from_sqlite_moves_the_unsent_replies_once")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let sqlite = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        sqlite
            .commit(push("m1", "mover", now(), &["one", "two"]))
            .await
            .unwrap()
            .unwrap();
        sqlite.close();
    }
    let store = redis_store(&server).await;
    assert_eq!(store.move_sqlite_outbox(dir.path()).await.unwrap(), 2);
    assert_eq!(
        store.move_sqlite_outbox(dir.path()).await.unwrap(),
        0,
        "moved once"
    );
    let first = store.claim_due(0, 10).await.unwrap();
    assert_eq!(first.entries.len(), 1, "in order, one at a time");
    assert_eq!(
        first.entries[0].message,
        crate::outbound::OutboundMessage::text("one")
    );
    store
        .settle(first.entries[0].id, Settlement::Sent { text: None }, 0)
        .await
        .unwrap();
    let second = store.claim_due(0, 10).await.unwrap();
    assert_eq!(
        second.entries[0].message,
        crate::outbound::OutboundMessage::text("two")
    );
    // A directory that never held a SQLite store: nothing to move.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(store.move_sqlite_outbox(empty.path()).await.unwrap(), 0);
}

/// The conversation log's cost in Redis memory: 10,000 pushes (a text, a rule, one reply each)
/// and their send lines. Run with `cargo test --lib log_memory -- --ignored --nocapture`;
/// docs/operations.md quotes its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn log_memory_per_10k_messages() {
    let Some(server) = TestRedis::start("log_memory_per_10k_messages") else {
        return;
    };
    let store = redis_store(&server).await;
    let log_key = format!("{}:{{demo}}:log", store.inner.opts.prefix);
    let used = || -> i64 {
        server
            .cli(&["MEMORY", "USAGE", &log_key, "SAMPLES", "0"])
            .parse()
            .unwrap_or(0)
    };
    let mut tickets = Vec::new();
    for i in 0..10_000 {
        let mut r = push(
            &format!("mem{i}"),
            &format!("o_user_{:05}", i % 2000),
            now(),
            &[],
        );
        r.log.text = Some("请问小程序怎么注销？".into());
        r.log.replies = vec!["您好，小程序可以注销，请看说明：https://kf.qq.com/faq/…".into()];
        tickets.push(store.commit(r));
    }
    for t in tickets {
        t.await.unwrap().unwrap();
    }
    let bytes = used();
    println!(
        "conversation log: 10,000 pushes = {bytes} bytes in Redis ({:.0} bytes per push)",
        bytes as f64 / 10_000.0
    );
    assert!(bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_url_finds_the_master() {
    let Some(master) = TestRedis::start("a_sentinel_url_finds_the_master") else {
        return;
    };
    let sentinel = super::testing::TestSentinel::start(&master, "kefumaster")
        .expect("redis-server --sentinel starts");
    let url = format!("redis+sentinel://127.0.0.1:{}/kefumaster/0", sentinel.port);
    let store = RedisStore::open(RedisOptions {
        prefix: "sentinel".into(),
        ..RedisOptions::new(&url, vec!["demo".into()])
    })
    .await
    .unwrap();
    let record = push("s1", "u", now(), &["hi"]);
    assert!(matches!(
        Store::claim(&store, &record.key, now()).await.unwrap(),
        Claim::New
    ));
    store.commit(record).await.unwrap().unwrap();
    assert_eq!(
        master.cli(&["HLEN", "sentinel:{demo}:ob:s"]),
        "1",
        "written to the master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_counts_are_read_fleet_wide() {
    let Some(server) = TestRedis::start("failures_and_counts_are_read_fleet_wide") else {
        return;
    };
    let store = redis_store(&server).await;
    let record = push("fail1", "fuser", now(), &["doomed", "queued"]);
    assert!(matches!(
        Store::claim(&store, &record.key, now()).await.unwrap(),
        Claim::New
    ));
    store.commit(record).await.unwrap().unwrap();
    let claimed = store.claim_due(0, 10).await.unwrap();
    let reader = store.clone();
    let counts =
        tokio::task::spawn_blocking(move || crate::store::Operations::outbox_counts(&reader))
            .await
            .unwrap()
            .unwrap();
    assert_eq!((counts.queued, counts.sending, counts.failed), (1, 1, 0));
    let failed = Settlement::Failed {
        errcode: Some(45015),
        reason: "response out of time limit".into(),
    };
    store
        .settle(claimed.entries[0].id, failed, 0)
        .await
        .unwrap();
    let reader = store.clone();
    let failures =
        tokio::task::spawn_blocking(move || crate::store::Operations::recent_failures(&reader, 10))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (
            failures[0].errcode,
            failures[0].preview.as_str(),
            failures[0].attempts
        ),
        (Some(45015), "doomed", 1)
    );
}
