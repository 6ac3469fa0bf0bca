//! The conversation log as operators see it (SPEC §1, §6): `kefu stats` (the real binary, text
//! and `--json`) after pushes through the server, and retention — rows older than
//! `log_retention_days` are purged when the store opens, while replies still waiting are kept.

use std::time::Duration;

use kefu::store::{SqliteStore, StoreOptions};
use serde_json::{Value, json};

use crate::delivery_helpers::*;
use crate::helpers::*;
use crate::mock_wechat::MockWechat;

const RULES: &str = r#"
rules:
  - id: human
    priority: 100
    keywords: [人工]
    handoff: true
    reply: 正在为您转接人工客服，请稍候。
  - id: hello
    keywords: [你好]
    reply: 您好！
  - id: dereg-rule
    keywords: [注销]
    faq: dereg
faq:
  - id: dereg
    question: 小程序如何注销？
    similar: [怎么注销小程序]
    answer: 登录小程序后台，在“设置”中申请注销。
"#;

/// Runs the real `kefu stats --config <config> --since 1h [args]` (bounded) and returns stdout.
async fn kefu_stats(config: &std::path::Path, args: &[&str]) -> String {
    let run = tokio::process::Command::new(KEFU)
        .arg("stats")
        .arg("--config")
        .arg(config)
        .args(["--since", "1h"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("kefu stats finishes within 30 s")
        .expect("kefu stats runs");
    assert!(
        out.status.success(),
        "kefu stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn count_of(list: &Value, key: &str) -> Value {
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["key"] == key))
        .map(|c| c["count"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn kefu_stats_reports_messages_hits_handoffs_and_unmatched() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    for (user, text) in [
        ("o_s1", "你好"),
        ("o_s2", "你好呀"),
        ("o_s3", "转人工"),
        ("o_s4", "小程序怎么注销"),
        ("o_s5", "随便说说"),
        ("o_s6", "随便说说"),
    ] {
        let r = app.post_text("mp", user, text).await;
        assert_eq!(r.status, 200, "{text}");
    }
    wait_outbox_empty(&app).await;
    let config = app.dir.path().join("kefu.yaml");

    let report: Value =
        serde_json::from_str(&kefu_stats(&config, &["--json"]).await).expect("stats JSON");
    assert_eq!(report["messages"], 6, "{report:#}");
    assert_eq!(report["handoffs"], 1, "{report:#}");
    assert_eq!(report["unmatched"], 2, "{report:#}");
    assert_eq!(count_of(&report["rules"], "hello"), 2, "{report:#}");
    assert_eq!(count_of(&report["rules"], "human"), 1, "{report:#}");
    assert_eq!(count_of(&report["rules"], "dereg-rule"), 1, "{report:#}");
    assert_eq!(count_of(&report["faqs"], "dereg"), 1, "{report:#}");
    assert_eq!(
        report["top_unmatched"],
        json!([{"key": "随便说说", "count": 2}]),
        "{report:#}"
    );
    assert_eq!(report["sends"]["sent"], 4, "{report:#}");

    let text = kefu_stats(&config, &[]).await;
    for needle in [
        "messages         6",
        "handoffs         1",
        "unmatched        2",
        "hello",
        "dereg-rule",
        "\"随便说说\"",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[tokio::test]
async fn rows_older_than_log_retention_days_are_purged_at_start_and_waiting_replies_kept() {
    let mock = MockWechat::start().await;
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&mock.base_url(), "log_retention_days: 30\n");

    // A database as a previous run left it, with rows of every age.
    SqliteStore::open(&dir.data_dir(), StoreOptions::default())
        .expect("store opens")
        .close();
    let now = TestApp::now();
    let day = 86_400;
    let old = now - 31 * day;
    let recent = now - 29 * day;
    {
        let conn =
            rusqlite::Connection::open(dir.data_dir().join("kefu.sqlite3")).expect("open db");
        let message = "INSERT INTO messages (at, app, openid, msg_type, text, rule, faq, action, \
                       handoff) VALUES (?1, 'mp', ?2, 'text', 'hi', 'hello', NULL, 'reply', 0)";
        for (at, who) in [(old, "o_old"), (old, "o_old"), (recent, "o_recent")] {
            conn.execute(message, rusqlite::params![at, who])
                .expect("message row");
        }
        let send = "INSERT INTO sends (at, app, openid, outcome) VALUES (?1, 'mp', ?2, 'sent')";
        for (at, who) in [(old, "o_old"), (recent, "o_recent")] {
            conn.execute(send, rusqlite::params![at, who])
                .expect("send row");
        }
        let outbox = "INSERT INTO outbox (app, openid, push_key, message, state, created_ms, \
                      next_attempt_ms, finished_ms, errcode, last_error) VALUES ('mp', ?1, ?2, \
                      ?3, ?4, ?5, ?5, ?6, ?7, ?8)";
        let text = |t: &str| json!({"type": "text", "content": t}).to_string();
        conn.execute(
            outbox,
            rusqlite::params![
                "o_old",
                "k1",
                text("old failure"),
                "failed",
                old * 1000,
                old * 1000,
                45015,
                "reply window expired"
            ],
        )
        .expect("old failed entry");
        conn.execute(
            outbox,
            rusqlite::params![
                "o_recent",
                "k2",
                text("recent failure"),
                "failed",
                recent * 1000,
                recent * 1000,
                45015,
                "reply window expired"
            ],
        )
        .expect("recent failed entry");
        // A reply still waiting (say the API was down for a long time): never purged, sent.
        conn.execute(
            outbox,
            rusqlite::params![
                "o_waiting",
                "k3",
                text("still waiting"),
                "queued",
                old * 1000,
                None::<i64>,
                None::<i64>,
                None::<String>
            ],
        )
        .expect("queued entry");
        conn.execute(
            "INSERT INTO dedupe (key, content_type, body, at) VALUES ('mp|m|1', NULL, 'success', ?1)",
            [now - 2 * day],
        )
        .expect("dedupe row");
    }

    let mut daemon = Daemon::start(&dir, settings, "retention").await;
    let sends = mock.wait_for_sends(1, WAIT).await;
    assert_eq!(
        to_and_text(&sends[0]),
        ("o_waiting".into(), "still waiting".into())
    );
    assert_eq!(daemon.terminate().await.code(), Some(0));

    let conn = rusqlite::Connection::open(dir.data_dir().join("kefu.sqlite3")).expect("open db");
    let strings = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(strings("SELECT openid FROM messages"), ["o_recent"]);
    assert_eq!(
        strings("SELECT openid || ':' || outcome FROM sends ORDER BY id"),
        ["o_recent:sent", "o_waiting:sent"],
        "old send-log rows purged; the waiting reply's delivery logged"
    );
    assert_eq!(
        strings("SELECT openid || ':' || state FROM outbox ORDER BY id"),
        ["o_recent:failed"],
        "the old failure purged, the recent one kept, the waiting reply sent"
    );
    assert!(strings("SELECT key FROM dedupe").is_empty());
}
