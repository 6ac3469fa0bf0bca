//! Conversations as real users have them (issue 12, SPEC §9): small talk and misses, handoffs
//! that end (the agent closes, the operator ends it, time), every kind of push, the bot's side
//! in the log (`kefu log`, the console's conversations page), dry-run made loud, and `try`/`eval`
//! at a time and an event.

use std::time::Duration;

use kefu::store::history::LogQuery;

use crate::bot_helpers::{Answer, oa};
use crate::cli_helpers::{Daemon, kefu, kefu_in};
use crate::helpers::*;

/// Small talk, a first miss that explains, a second miss that hands off.
const DAY_RULES: &str = r#"
rules:
  - id: human
    priority: 100
    keywords: [人工, 转人工]
    handoff: true
    reply: 正在为您转接人工客服，请稍候。
  - id: hello
    keywords: [你好]
    reply: 您好！
  - id: thanks
    exact: [谢谢, 好的, ok, 收到, "[微笑]", "/::)", "?"]
    reply: 不客气，还有问题随时问我。
  - id: voice-only
    msg_type: voice
    keywords: [语音]
    reply: 收到您的语音。
  - id: first-miss
    default: true
    reply: 我可以回答小程序和公众号注销的问题；发送“人工”可转接人工客服。
  - id: second-miss
    default: true
    misses: 2
    priority: 10
    handoff: true
    reply: 正在为您转接人工客服，请稍候。
"#;

fn day_app() -> TestConfig {
    TestConfig {
        apps: vec![oa("demo")],
        rules: vec![("day.yaml", DAY_RULES.to_string())],
        ..TestConfig::default()
    }
}

async fn post_xml(app: &TestApp, body: &str) -> Reply {
    let now = TestApp::now();
    let nonce = format!("n{}", rand::random::<u32>());
    app.post_raw(
        &format!("/wechat/demo?{}", app.signed_query(now, &nonce)),
        body.to_string(),
    )
    .await
}

fn event_xml(user: &str, event: &str, extra: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}</xml>",
        TestApp::now()
    )
}

fn threads(app: &TestApp, user: &str) -> Vec<kefu::store::history::Thread> {
    app.state
        .ops
        .threads(&LogQuery {
            openid: Some(user.into()),
            ..LogQuery::default()
        })
        .expect("threads")
}

#[tokio::test]
async fn small_talk_is_never_a_handoff_and_the_second_consecutive_miss_is() {
    let app = spawn_app_with(day_app()).await;
    let u = "o_day_small";
    for text in ["谢谢", "好的", "OK", "收到", "[微笑]", "/::)", "？"] {
        assert_eq!(
            app.ask("demo", u, text).await,
            Answer::Text("不客气，还有问题随时问我。".into()),
            "{text}"
        );
    }
    // A first miss explains; small talk in between resets the count.
    let first = app.ask("demo", u, "qwerty 这是什么").await;
    assert!(
        first.text().is_some_and(|t| t.contains("注销")),
        "{first:?}"
    );
    assert!(matches!(app.ask("demo", u, "谢谢").await, Answer::Text(_)));
    let again = app.ask("demo", u, "asdf 还是不懂").await;
    assert!(
        again.text().is_some_and(|t| t.contains("注销")),
        "still a first miss after small talk: {again:?}"
    );
    // The second consecutive miss hands off.
    assert_eq!(app.ask("demo", u, "zxcv 什么鬼").await, Answer::Transfer);
    assert_eq!(app.ask("demo", u, "你好").await, Answer::Transfer, "sticky");
}

#[tokio::test]
async fn the_agent_closing_the_session_ends_the_handoff_and_agent_events_are_logged() {
    let app = spawn_app_with(day_app()).await;
    let u = "o_day_agent";
    assert_eq!(app.ask("demo", u, "转人工").await, Answer::Transfer);
    // The agent takes the session: logged with the agent, answered success, still a handoff.
    let r = post_xml(
        &app,
        &event_xml(
            u,
            "kf_create_session",
            "<KfAccount><![CDATA[agent1@gh_test]]></KfAccount>",
        ),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    assert_eq!(app.ask("demo", u, "你好").await, Answer::Transfer);
    // The agent closes it: the bot answers again.
    let r = post_xml(
        &app,
        &event_xml(
            u,
            "kf_close_session",
            "<KfAccount><![CDATA[agent1@gh_test]]></KfAccount><CloseType><![CDATA[KF]]></CloseType>",
        ),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    assert_eq!(
        app.ask("demo", u, "你好").await,
        Answer::Text("您好！".into())
    );
    // A kf_switch_session never starts a handoff either.
    let other = "o_day_switch";
    let r = post_xml(
        &app,
        &event_xml(
            other,
            "kf_switch_session",
            "<FromKfAccount><![CDATA[a1]]></FromKfAccount><ToKfAccount><![CDATA[a2]]></ToKfAccount>",
        ),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    assert_eq!(
        app.ask("demo", other, "你好").await,
        Answer::Text("您好！".into())
    );
    let mut agents = Vec::new();
    assert!(
        eventually(Duration::from_secs(5), async || {
            agents = threads(&app, u)
                .iter()
                .flat_map(|t| t.exchanges.clone())
                .filter_map(|e| e.event.clone().zip(e.agent.clone()))
                .collect();
            agents.len() == 2
        })
        .await,
        "{agents:?}"
    );
    assert_eq!(
        agents[0],
        ("kf_create_session".into(), "agent1@gh_test".into())
    );
}

#[tokio::test]
async fn cards_in_documented_layout_voice_and_unknown_types_are_what_they_are() {
    let app = spawn_app_with(day_app()).await;
    let u = "o_day_kinds";
    // WeChat's card documentation writes blanks around the CDATA sections.
    let card = format!(
        "<xml> <ToUserName> <![CDATA[gh_test]]> </ToUserName> <FromUserName> <![CDATA[{u}]]> </FromUserName> <CreateTime>{}</CreateTime> <MsgType> <![CDATA[event]]> </MsgType> <Event> <![CDATA[user_get_card]]> </Event> <CardId> <![CDATA[pFS7Fjg8kV1IdDz01r4SQwMkuCKc]]> </CardId> </xml>",
        TestApp::now()
    );
    let r = post_xml(&app, &card).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "success"),
        "an event, not a message handed off"
    );
    // A device message and an unknown type: success, never the default rule's handoff, not
    // even for a user in a handoff.
    for (n, msg_type) in ["device_text", "brand_new_type"].iter().enumerate() {
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{u}]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType><Content><![CDATA[x]]></Content><MsgId>{}</MsgId></xml>",
            TestApp::now(),
            777_000 + n
        );
        for _ in 0..2 {
            // Twice: a second miss would hand off if these counted.
            let r = post_xml(&app, &body.replace("<MsgId>", "<MsgId>1")).await;
            assert_eq!((r.status, r.body.as_str()), (200, "success"), "{msg_type}");
        }
    }
    // Voice: Recognition is read as typed, and `msg_type: voice` rules see voice.
    let voice = |text: &str, id: u64| {
        format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{u}]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[m]]></MediaId><Format><![CDATA[amr]]></Format><Recognition><![CDATA[{text}]]></Recognition><MsgId>{id}</MsgId></xml>",
            TestApp::now()
        )
    };
    let r = post_xml(&app, &voice("你好。", 888_001)).await;
    assert!(r.body.contains("您好！"), "recognition as typed: {r:?}");
    let r = post_xml(&app, &voice("这是语音", 888_002)).await;
    assert!(r.body.contains("收到您的语音"), "a voice rule: {r:?}");
    // The unknown types are logged.
    let mut kinds: Vec<String> = Vec::new();
    eventually(Duration::from_secs(5), async || {
        kinds = threads(&app, u)
            .iter()
            .flat_map(|t| t.exchanges.iter().map(|e| e.msg_type.clone()))
            .collect();
        kinds.iter().any(|k| k == "brand_new_type")
    })
    .await;
    assert!(kinds.contains(&"device_text".to_string()), "{kinds:?}");
    assert!(
        threads(&app, u)
            .iter()
            .flat_map(|t| &t.exchanges)
            .all(|e| !e.handoff && e.openid == u),
        "no handoff, and the openid has no blanks"
    );
}

#[tokio::test]
async fn healthz_shows_which_apps_run_in_dry_run() {
    let app = spawn_app_with(day_app()).await;
    let h = app.healthz().await;
    assert_eq!(h["apps"]["demo"]["dry_run"], true, "{h}");
    assert_eq!(h["status"], "ok");
    assert!(h["rules"]["version"].is_u64(), "existing fields kept: {h}");
}

#[test]
fn dry_run_false_with_an_empty_secret_is_a_config_error_naming_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules");
    std::fs::write(
        dir.path().join("kefu.yaml"),
        "apps:\n  - id: shop\n    appid: wx1\n    token: t\n    secret: \"${KEFU_NOT_SET_SECRET:-}\"\n    dry_run: false\n",
    )
    .expect("config");
    for cmd in ["check", "try"] {
        let run = kefu_in(
            dir.path(),
            &[cmd, "--config", "kefu.yaml", "你好"][..if cmd == "check" { 3 } else { 4 }],
        );
        assert_eq!(run.code, Some(2), "{cmd}: {run:?}");
        assert!(
            run.stderr.contains("kefu.yaml:6") && run.stderr.contains("dry_run"),
            "{cmd}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_given_config_that_is_missing_is_an_error_everywhere() {
    for args in [
        &["check", "--config", "nonexist.yaml"][..],
        &["try", "--config", "nonexist.yaml", "你好"][..],
        &["eval", "--config", "nonexist.yaml", "tests/data/day.yaml"][..],
        &["log", "--config", "nonexist.yaml"][..],
        &[
            "session",
            "end",
            "--config",
            "nonexist.yaml",
            "--app",
            "demo",
            "o_x",
        ][..],
    ] {
        let run = kefu(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("nonexist.yaml"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Usage errors are 2 as well.
    assert_eq!(kefu(&["try", "--at", "tomorrow", "你好"]).code, Some(2));
}

#[test]
fn try_at_a_time_an_event_and_another_message_type() {
    let rules = crate::cli_helpers::RulesDir::new(&[(
        "r.yaml",
        "calendar:\n  holidays: [2026-10-01..2026-10-08]\n  workdays: [2026-10-10]\nrules:\n  - id: welcome\n    event: user_enter_tempsession\n    reply: 欢迎\n  - id: menu\n    event: CLICK\n    reply: 菜单\n  - id: pic\n    msg_type: image\n    reply: 收到图片\n  - id: office\n    default: true\n    schedule: {days: [workday], from: \"09:00\", to: \"18:00\"}\n    priority: 1\n    handoff: true\n  - id: closed\n    default: true\n    reply: 现在是休息时间，工作日 9:00 再来。\n",
    )]);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["try", "--json", "--rules", rules.arg()];
        all.extend_from_slice(args);
        let run = kefu(&all);
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        serde_json::from_str(run.stdout.trim()).expect("one JSON line")
    };
    // A Friday at 10:00: office hours, a handoff. The same time on National Day: closed.
    assert_eq!(
        json(&["--at", "2026-10-09 10:00", "随便问问"])["rule"],
        "office"
    );
    assert_eq!(
        json(&["--at", "2026-10-02 10:00", "随便问问"])["rule"],
        "closed"
    );
    // Saturday 2026-10-10 is a working day (调休); 03:00 is not office hours.
    assert_eq!(
        json(&["--at", "2026-10-10 10:00", "随便问问"])["rule"],
        "office"
    );
    assert_eq!(
        json(&["--at", "2026-10-09 03:00", "随便问问"])["rule"],
        "closed"
    );
    assert_eq!(
        json(&["--event", "user_enter_tempsession"])["rule"],
        "welcome"
    );
    assert_eq!(
        json(&["--event", "CLICK", "--event-key", "V1001"])["rule"],
        "menu"
    );
    let ignored = json(&["--event", "kf_close_session"]);
    assert_eq!(
        (ignored["action"].as_str(), ignored["handoff"].as_bool()),
        (Some("ignore"), Some(false))
    );
    assert_eq!(json(&["--msg-type", "image"])["rule"], "pic");
}

#[test]
fn the_shipped_rules_walk_a_user_through_a_day() {
    let run = kefu(&[
        "eval",
        "--at",
        "2026-12-01 09:00",
        "--min-accuracy",
        "1.0",
        "tests/data/day.yaml",
    ]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("(100.0%)"), "{}", run.stdout);
    let check = kefu(&["check"]);
    assert_eq!(check.code, Some(0), "{}{}", check.stdout, check.stderr);
}

fn daemon_dir(rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules");
    std::fs::write(dir.path().join("rules/day.yaml"), rules).expect("rules file");
    dir
}

#[tokio::test]
async fn kefu_session_end_ends_a_handoff_while_the_daemon_runs_and_kefu_log_shows_it() {
    let dir = daemon_dir(DAY_RULES);
    let daemon = Daemon::start(dir.path(), "xml", "official_account").await;
    let u = "o_day_operator";
    assert_eq!(daemon.ask(u, "转人工").await, Answer::Transfer);
    assert_eq!(daemon.ask(u, "你好").await, Answer::Transfer);
    let end = kefu_in(
        dir.path(),
        &["session", "end", "--config", "kefu.yaml", "--app", "oa", u],
    );
    assert_eq!(end.code, Some(0), "{end:?}");
    assert!(end.stdout.contains("running kefu"), "{}", end.stdout);
    assert_eq!(daemon.ask(u, "你好").await, Answer::Text("您好！".into()));
    // The WARN line of a dry-run app.
    assert!(
        daemon
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("DRY-RUN")),
        "{:#?}",
        daemon.logs.lock().unwrap()
    );
    // The thread, both sides.
    let log = kefu_in(dir.path(), &["log", "--user", u]);
    assert_eq!(log.code, Some(0), "{log:?}");
    for want in ["转人工", "[transferred to a person]", "operator", "您好！"] {
        assert!(log.stdout.contains(want), "{want}: {}", log.stdout);
    }
    // An unknown app is a usage error.
    let bad = kefu_in(dir.path(), &["session", "end", "--app", "nope", u]);
    assert_eq!(bad.code, Some(2));
    assert!(daemon.stop().await);
}

#[tokio::test]
async fn kefu_log_shows_each_sends_outcome_in_text_json_and_csv() {
    let dir = daemon_dir(DAY_RULES);
    let daemon = Daemon::start(dir.path(), "json", "miniprogram").await;
    let u = "o_day_sends";
    assert_eq!(daemon.ask(u, "你好").await, Answer::Success);
    assert_eq!(
        daemon.ask(u, "<img src=x onerror=alert(1)>").await,
        Answer::Success
    );
    let mut json = serde_json::Value::Null;
    let sent = eventually(Duration::from_secs(10), async || {
        let run = kefu_in(dir.path(), &["log", "--json", "--user", u]);
        json = serde_json::from_str(&run.stdout).unwrap_or_default();
        json[0]["entries"].as_array().is_some_and(|e| {
            e.iter()
                .filter(|e| e["side"] == "send" && e["outcome"] == "sent")
                .count()
                == 2
        })
    })
    .await;
    assert!(sent, "{json:#}");
    let entries = json[0]["entries"].as_array().expect("entries");
    let sides: Vec<&str> = entries.iter().filter_map(|e| e["side"].as_str()).collect();
    assert_eq!(sides.first(), Some(&"user"), "{sides:?}");
    assert!(
        entries
            .iter()
            .any(|e| e["side"] == "bot" && e["text"] == "您好！")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["side"] == "send" && e["text"] == "您好！")
    );
    let text = kefu_in(dir.path(), &["log", "--user", u, "--grep", "你好"]);
    assert!(text.stdout.contains("[sent]"), "{}", text.stdout);
    assert!(
        !text.stdout.contains("onerror"),
        "grep keeps matching exchanges only: {}",
        text.stdout
    );
    let csv = kefu_in(dir.path(), &["log", "--csv", "--app", "oa"]);
    assert!(
        csv.stdout.starts_with("time,app,openid,side,text"),
        "{}",
        csv.stdout
    );
    assert!(csv.stdout.contains(",send,"), "{}", csv.stdout);
    assert!(daemon.stop().await);
}

#[tokio::test]
async fn the_console_conversations_page_shows_a_thread_with_markup_as_text() {
    let Some(browser) = crate::console::chromium() else {
        assert!(
            std::env::var_os("KEFU_REQUIRE_BROWSER").is_none(),
            "KEFU_REQUIRE_BROWSER is set but no chromium was found"
        );
        return;
    };
    let app = spawn_app_with(day_app()).await;
    let u = "o_day_console";
    assert!(matches!(app.ask("demo", u, "你好").await, Answer::Text(_)));
    app.ask("demo", u, "<img src=x onerror=document.title='owned'>")
        .await;
    app.ask("demo", "o_day_other", "转人工").await;
    // Both users listed; the thread opened from the link shows both sides, markup as text.
    let url = format!("http://127.0.0.1:{}/?user={u}&app=demo", app.admin_port);
    let profile = tempfile::tempdir().expect("profile");
    let p = profile.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        crate::console::headless(&browser, &p, &["--dump-dom"], &url)
    })
    .await
    .expect("browser");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("o_day_other"), "recent users listed: {dom}");
    assert!(
        dom.contains("&lt;img src=x onerror=document.title='owned'&gt;"),
        "the message is shown as text: {dom}"
    );
    assert!(!dom.contains("<img src=\"x\""), "never as markup");
    assert!(dom.contains("您好！"), "the bot's side");
    assert!(dom.contains("DRY-RUN"), "the dry-run banner");
    assert!(!dom.contains("<title>owned"), "no script ran");
    // Search finds a user by what they wrote.
    let found: serde_json::Value = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/api/conversations?q=%E8%BD%AC%E4%BA%BA%E5%B7%A5",
            app.admin_port
        ))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    let users: Vec<&str> = found["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["openid"].as_str())
        .collect();
    assert_eq!(users, ["o_day_other"]);
    // The thread's button ends a handoff, through the same store interface as the CLI.
    assert_eq!(
        app.ask("demo", "o_day_other", "你好").await,
        Answer::Transfer
    );
    let r = app
        .client
        .post(format!(
            "http://127.0.0.1:{}/api/session/end",
            app.admin_port
        ))
        .json(&serde_json::json!({"app": "demo", "user": "o_day_other"}))
        .send()
        .await
        .expect("end");
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.ask("demo", "o_day_other", "你好").await,
        Answer::Text("您好！".into())
    );
    assert!(dom.contains("end-handoff"), "the button is on the thread");
}
