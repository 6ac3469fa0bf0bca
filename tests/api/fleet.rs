//! Several instances on one Redis (SPEC §8), with the real binary: two `kefu serve` processes
//! share a redis-server started for the test, pushes are spread over both by a round-robin TCP
//! proxy, and the mock WeChat API counts what reaches it. Skipped (saying so) where
//! `redis-server` is not installed; CI sets `KEFU_REQUIRE_REDIS=1`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kefu::cli::send::build_push;
use kefu::config::Settings;
use kefu::protocol::InboundMessage;
use kefu::store::redis::testing::TestRedis;
use tokio::net::{TcpListener, TcpStream};

use crate::delivery_helpers::*;
use crate::helpers::*;
use crate::mock_wechat::{MockReply, MockWechat, RecordedSend};

/// 人工 hands off; 订单 N answers with the order number.
const RULES: &str = ORDER_RULES;

/// Short timings, so that a takeover takes a second or two.
fn fleet_extra(redis: &TestRedis, prefix: &str) -> String {
    format!(
        "store: \"{}\"\nredis_prefix: {prefix}\noutbox:\n  backoff_base_ms: 20\n  backoff_max_ms: 200\n  max_attempts: 100000\n  request_timeout_ms: 1000\n  send_timeout_ms: 1500\n  lease_ms: 2000\n",
        redis.url()
    )
}

/// One instance: its folder and its process.
struct Instance {
    _dir: DaemonDir,
    daemon: Daemon,
}

/// Starts an instance on `redis` with `rules` (or the shipped rules folder when `None`).
async fn instance(
    redis: &TestRedis,
    prefix: &str,
    api: &str,
    rules: Option<&str>,
    name: &str,
) -> Instance {
    let dir = DaemonDir::new(rules.unwrap_or(RULES));
    if rules.is_none() {
        let target = dir.dir.path().join("rules");
        std::fs::remove_dir_all(&target).expect("clear rules");
        let copied = std::process::Command::new("cp")
            .args(["-r", concat!(env!("CARGO_MANIFEST_DIR"), "/rules")])
            .arg(&target)
            .status()
            .expect("cp runs");
        assert!(copied.success());
    }
    let settings = dir.write_config(api, &fleet_extra(redis, prefix));
    let daemon = Daemon::start(&dir, settings, name).await;
    Instance { _dir: dir, daemon }
}

fn prefix() -> String {
    format!("f{:08x}", rand::random::<u32>())
}

/// A round-robin TCP proxy in front of the instances: connection n goes to port n mod len.
async fn proxy(ports: Vec<u16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let i = next.fetch_add(1, Ordering::Relaxed) % ports.len();
            let target = ports[i];
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

/// Posts `msg` to app `mp` at `port` on a fresh connection (so the proxy spreads requests).
async fn post_at(settings: &Settings, port: u16, msg: &InboundMessage) -> Reply {
    let app = settings.app("mp").expect("app mp");
    let nonce = rand::random::<u32>().to_string();
    let push = build_push(app, msg, TestApp::now(), &nonce).expect("push");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let r = client
        .post(format!("http://127.0.0.1:{port}/wechat/mp?{}", push.query))
        .header("Content-Type", push.content_type)
        .body(push.body)
        .send()
        .await
        .expect("POST");
    Reply {
        status: r.status().as_u16(),
        content_type: r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: r.text().await.expect("body"),
    }
}

/// Entries left in the shared outbox (all apps are `mp`).
fn shared_outbox(redis: &TestRedis, prefix: &str) -> usize {
    redis
        .cli(&["HLEN", &format!("{prefix}:{{mp}}:ob:s")])
        .parse()
        .unwrap_or(usize::MAX)
}

async fn wait_shared_outbox_empty(redis: &TestRedis, prefix: &str) {
    let drained = eventually(Duration::from_secs(20), async || {
        shared_outbox(redis, prefix) == 0
    })
    .await;
    assert!(
        drained,
        "the shared outbox drains: {}",
        shared_outbox(redis, prefix)
    );
}

fn tally(sends: &[RecordedSend]) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for s in sends {
        *seen.entry(to_and_text(s)).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn the_same_push_at_both_instances_at_once_is_decided_and_sent_once() {
    let Some(redis) = TestRedis::start("fleet: the same push at both instances at once") else {
        return;
    };
    let mock = MockWechat::start().await;
    let p = prefix();
    let a = instance(&redis, &p, &mock.base_url(), Some(RULES), "a").await;
    let b = instance(&redis, &p, &mock.base_url(), Some(RULES), "b").await;
    for i in 0..5 {
        let msg = text_msg(&format!("o_same_{i}"), &format!("订单 {i}"));
        let (ra, rb) = tokio::join!(a.daemon.post(&msg), b.daemon.post(&msg));
        assert_eq!((ra.status, rb.status), (200, 200), "{ra:?} {rb:?}");
        assert_eq!(ra.body, rb.body, "the same answer from both");
    }
    wait_shared_outbox_empty(&redis, &p).await;
    let sends = mock.sends();
    assert_eq!(sends.len(), 5, "one send per push: {sends:?}");
    assert!(tally(&sends).values().all(|n| *n == 1));
    // One decision each: one line per push in the fleet's log (and one per send).
    let log = redis.cli(&["XRANGE", &format!("{p}:{{mp}}:log"), "-", "+"]);
    let pushes = log
        .lines()
        .filter(|l| l.contains("\"msg_type\":\"text\""))
        .count();
    assert_eq!(pushes, 5, "{log}");
}

#[tokio::test]
async fn a_menu_from_a_is_answered_at_b_and_a_handoff_at_a_holds_at_b() {
    let Some(redis) = TestRedis::start("fleet: a menu from A answered at B") else {
        return;
    };
    let mock = MockWechat::start().await;
    let p = prefix();
    let a = instance(&redis, &p, &mock.base_url(), None, "a").await;
    let b = instance(&redis, &p, &mock.base_url(), None, "b").await;
    let user = "o_menu";
    let r = a.daemon.post(&text_msg(user, "注销需要什么")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let sends = mock.wait_for_sends(1, WAIT).await;
    assert!(
        content(&sends[0]).contains("2. 公众号如何注销"),
        "{}",
        content(&sends[0])
    );
    let r = b.daemon.post(&text_msg(user, "2")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let sends = mock.wait_for_sends(2, WAIT).await;
    assert!(
        content(&sends[1]).starts_with("您好，公众号可以注销"),
        "B answered A's menu: {}",
        content(&sends[1])
    );

    // A handoff at A: B transfers the user's next message to a human too.
    let user = "o_handoff";
    let at_a = a.daemon.post(&text_msg(user, "人工")).await;
    assert!(at_a.body.contains("transfer_customer_service"), "{at_a:?}");
    let at_b = b.daemon.post(&text_msg(user, "注销需要什么")).await;
    assert!(
        at_b.body.contains("transfer_customer_service"),
        "sticky at B: {at_b:?}"
    );
}

#[tokio::test]
async fn twenty_cold_sends_across_both_instances_fetch_one_token() {
    let Some(redis) = TestRedis::start("fleet: 20 cold sends, one token fetch") else {
        return;
    };
    let mock = MockWechat::start().await;
    let p = prefix();
    let a = instance(&redis, &p, &mock.base_url(), Some(RULES), "a").await;
    let b = instance(&redis, &p, &mock.base_url(), Some(RULES), "b").await;
    let lb = proxy(vec![a.daemon.port, b.daemon.port]).await;
    let settings = a.daemon.settings.clone();
    let posts = (0..20).map(|i| {
        let settings = settings.clone();
        async move {
            let msg = text_msg(&format!("o_cold_{i:02}"), &format!("订单 {i}"));
            post_at(&settings, lb, &msg).await
        }
    });
    for r in futures_util::future::join_all(posts).await {
        assert_eq!((r.status, r.body.as_str()), (200, "success"), "{r:?}");
    }
    mock.wait_for_sends(20, WAIT).await;
    assert_eq!(mock.token_fetches(), 1, "{:?}", mock.token_requests());
    // Both instances sent some of them (the proxy spread the pushes, each sends its own).
    let log_a = a.daemon.log_text();
    let log_b = b.daemon.log_text();
    assert!(!log_a.is_empty() && !log_b.is_empty());
}

#[tokio::test]
async fn a_killed_instance_s_queued_replies_are_sent_once_by_its_peer() {
    let Some(redis) = TestRedis::start("fleet: kill -9 of A, B sends its replies") else {
        return;
    };
    let mock = MockWechat::start().await;
    // The API is down: every send answered 503 until it is up again.
    mock.script_send(vec![MockReply::http(503); 100_000]);
    let p = prefix();
    let mut a = instance(&redis, &p, &mock.base_url(), Some(RULES), "a").await;
    const USERS: usize = 10;
    for i in 0..USERS {
        let r = a
            .daemon
            .post(&text_msg(
                &format!("o_kill_{i:02}"),
                &format!("订单 {}", 100 + i),
            ))
            .await;
        assert_eq!((r.status, r.body.as_str()), (200, "success"), "{r:?}");
    }
    mock.wait_for_sends(USERS, WAIT).await;
    a.daemon.kill();
    assert_eq!(
        shared_outbox(&redis, &p),
        USERS,
        "A's replies wait in Redis"
    );
    mock.api_up();
    let refused = mock.sends().len();

    let b = instance(&redis, &p, &mock.base_url(), Some(RULES), "b").await;
    wait_shared_outbox_empty(&redis, &p).await;
    let accepted = &mock.sends()[refused..];
    let want: BTreeMap<(String, String), usize> = (0..USERS)
        .map(|i| {
            (
                (format!("o_kill_{i:02}"), format!("已收到订单 {}", 100 + i)),
                1,
            )
        })
        .collect();
    assert_eq!(
        tally(accepted),
        want,
        "B sent each of A's replies exactly once"
    );
    drop(b);
}

#[tokio::test]
async fn redis_down_answers_503_and_after_its_restart_nothing_is_lost() {
    let Some(mut redis) = TestRedis::start("fleet: Redis stopped and restarted") else {
        return;
    };
    let mock = MockWechat::start().await;
    let p = prefix();
    let a = instance(&redis, &p, &mock.base_url(), Some(RULES), "a").await;
    let b = instance(&redis, &p, &mock.base_url(), Some(RULES), "b").await;
    let first = text_msg("o_down_1", "订单 1");
    assert_eq!(a.daemon.post(&first).await.status, 200);

    redis.stop();
    let during = text_msg("o_down_2", "订单 2");
    let r = b.daemon.post(&during).await;
    assert_eq!(r.status, 503, "no success without a durable memo: {r:?}");
    let down = eventually(Duration::from_secs(15), async || {
        let h = b
            .daemon
            .client
            .get(format!("http://127.0.0.1:{}/healthz", b.daemon.port))
            .send()
            .await;
        match h {
            Ok(h) if h.status().as_u16() == 503 => {
                let v: serde_json::Value = h.json().await.unwrap_or_default();
                v["store"] == "down" && v["store_error"].is_string() && v["store_since"].is_string()
            }
            _ => false,
        }
    })
    .await;
    assert!(down, "healthz says the store is down");

    redis.restart();
    // WeChat retries the push it got no success for; the instances reconnect by themselves.
    let retried = eventually(Duration::from_secs(20), async || {
        a.daemon.post(&during).await.status == 200
    })
    .await;
    assert!(
        retried,
        "A answers again after Redis is back:\n{}",
        a.daemon.log_text()
    );
    let up = eventually(Duration::from_secs(15), async || {
        b.daemon
            .client
            .get(format!("http://127.0.0.1:{}/healthz", b.daemon.port))
            .send()
            .await
            .is_ok_and(|h| h.status().as_u16() == 200)
    })
    .await;
    assert!(up, "healthz recovers");
    wait_shared_outbox_empty(&redis, &p).await;
    let sends = mock.sends();
    let want: BTreeMap<(String, String), usize> = [
        (("o_down_1".to_string(), "已收到订单 1".to_string()), 1),
        (("o_down_2".to_string(), "已收到订单 2".to_string()), 1),
    ]
    .into();
    assert_eq!(tally(&sends), want, "nothing lost, nothing twice");
}

#[tokio::test]
async fn start_up_names_the_setting_that_would_lose_replies() {
    for (setting, value) in [
        ("--appendonly", "no"),
        ("--maxmemory-policy", "allkeys-lru"),
    ] {
        let Some(redis) = TestRedis::start_with("fleet: start-up refusal", &[setting, value])
        else {
            return;
        };
        let dir = DaemonDir::new(RULES);
        dir.write_config("http://127.0.0.1:9", &fleet_extra(&redis, &prefix()));
        let out = std::process::Command::new(KEFU)
            .args(["serve", "--config"])
            .arg(dir.config())
            .output()
            .expect("kefu runs");
        assert!(
            !out.status.success(),
            "{setting} {value}: kefu refuses to start"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = setting.trim_start_matches("--");
        assert!(stderr.contains(name), "{setting} {value}: {stderr}");
    }
}

#[test]
fn a_bad_redis_url_is_refused_at_load() {
    let dir = DaemonDir::new(RULES);
    for (url, says) in [
        ("http://127.0.0.1:6379", "redis://"),
        ("redis+sentinel://127.0.0.1:26379", "master"),
    ] {
        let config = dir.config();
        let text = format!(
            "store: \"{url}\"\napps:\n{}",
            TestAppSpec::new("mp", "json", "plaintext").yaml()
        );
        std::fs::write(&config, text).expect("write");
        let e = kefu::config::load(&config)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("store") && e.contains(says), "{url}: {e}");
    }
}

#[tokio::test]
async fn kefu_log_stats_and_session_end_see_the_whole_fleet() {
    let Some(redis) = TestRedis::start("fleet: kefu log, stats and session end") else {
        return;
    };
    let mock = MockWechat::start().await;
    let p = prefix();
    let a = instance(&redis, &p, &mock.base_url(), Some(RULES), "a").await;
    let b = instance(&redis, &p, &mock.base_url(), Some(RULES), "b").await;
    assert_eq!(
        a.daemon.post(&text_msg("o_at_a", "订单 1")).await.status,
        200
    );
    assert_eq!(b.daemon.post(&text_msg("o_at_b", "人工")).await.status, 200);
    let config = a._dir.config();
    let config = config.to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        std::process::Command::new(KEFU)
            .args(args)
            .args(["--config", config])
            .output()
            .expect("kefu runs")
    };
    // `kefu log` at A's config shows B's user too.
    let log = run(&["log", "--since", "1h"]);
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.status.success(),
        "{}",
        String::from_utf8_lossy(&log.stderr)
    );
    assert!(text.contains("o_at_a") && text.contains("o_at_b"), "{text}");
    let stats = run(&["stats", "--json"]);
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.contains("\"human\""),
        "both instances' rules counted: {stats}"
    );
    // The handoff B started is ended from A's config; B answers the user again.
    let end = run(&["session", "end", "--app", "mp", "o_at_b"]);
    assert!(
        end.status.success(),
        "{}",
        String::from_utf8_lossy(&end.stderr)
    );
    let again = b.daemon.post(&text_msg("o_at_b", "订单 2")).await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (200, "success"),
        "{again:?}"
    );
    let sends = mock.wait_for_sends(2, WAIT).await;
    assert!(
        sends.iter().any(|s| content(s) == "已收到订单 2"),
        "the bot answers after the end: {sends:?}"
    );
}
