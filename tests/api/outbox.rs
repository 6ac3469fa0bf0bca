//! Delivery through the real server (issue 5, SPEC §6): a push that a rule answers is answered
//! `success` and its replies reach `custom/send` once, with the protocol's bodies; one test per
//! outcome class of the send API (retried, token refreshed, failed for good, HTTP 5xx, timeout);
//! one token fetch for many users at once; and the push answered fast whatever the API does.
//!
//! "Sent once" is checked after the outbox is empty: every entry is durable before its push is
//! answered, so once all pushes are answered and nothing is queued or being sent, no further
//! send can happen.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::delivery_helpers::*;
use crate::helpers::*;
use crate::mock_wechat::{MockGate, MockReply, MockWechat};

pub const RULES: &str = r#"
rules:
  - id: human
    priority: 100
    keywords: [人工]
    handoff: true
    reply: 正在为您转接人工客服，请稍候。
  - id: hello
    keywords: [你好]
    reply: 您好！
  - id: markup
    keywords: [详情]
    reply: '详情见 <a href="https://example.com/?a=1&b=2">这里</a> "引号" \ 完'
  - id: pic
    keywords: [图片]
    image: {media_id: MEDIA_ID_1}
  - id: card
    keywords: [链接]
    link:
      title: 注销指引
      description: 小程序如何注销
      url: "https://kf.qq.com/faq/x.html?a=1&b=2"
      thumb_url: "https://example.com/thumb.png"
  - id: page
    keywords: [页面]
    miniprogrampage:
      title: 我的订单
      pagepath: "pages/order/index?id=42"
      thumb_media_id: THUMB_MEDIA_1
  - id: steps
    keywords: [步骤]
    reply_all: true
    reply: [第一步：登录, 第二步：设置, 第三步：注销]
"#;

fn elapsed_ms(started: Instant) -> u128 {
    started.elapsed().as_millis()
}

// ---- what is sent ----------------------------------------------------------------------------

#[tokio::test]
async fn a_text_push_a_rule_answers_is_answered_success_and_sent_once() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let r = app.post_text("mp", "o_hello", "你好").await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));

    mock.wait_for_sends(1, WAIT).await;
    wait_outbox_empty(&app).await;
    let sends = mock.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(
        sends[0].body,
        json!({"touser": "o_hello", "msgtype": "text", "text": {"content": "您好！"}})
    );
    assert_eq!(sends[0].access_token, "tok-1");
    assert!(
        sends[0].content_type.starts_with("application/json"),
        "{}",
        sends[0].content_type
    );
    assert_eq!(mock.token_fetches(), 1);
    let log = send_log(&data_dir(&app));
    assert_eq!(
        log,
        vec![("o_hello".to_string(), "sent".to_string(), None)],
        "the send log records the delivery"
    );
}

#[tokio::test]
async fn markup_in_a_text_reply_is_sent_as_raw_utf8() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    app.post_text("mp", "o_markup", "详情").await;
    let sends = mock.wait_for_sends(1, WAIT).await;
    let want = r#"详情见 <a href="https://example.com/?a=1&b=2">这里</a> "引号" \ 完"#;
    assert_eq!(content(&sends[0]), want);
    assert!(
        sends[0].raw.contains("详情见 <a href=") && !sends[0].raw.contains("\\u"),
        "neither non-ASCII nor <, >, & may be \\u-escaped: {}",
        sends[0].raw
    );
}

#[tokio::test]
async fn image_link_and_miniprogrampage_actions_arrive_with_their_bodies() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    for (user, text) in [("o_pic", "图片"), ("o_card", "链接"), ("o_page", "页面")] {
        let r = app.post_text("mp", user, text).await;
        assert_eq!((r.status, r.body.as_str()), (200, "success"), "{text}");
    }
    mock.wait_for_sends(3, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 3);

    let body = |user: &str| {
        let sends = sends_to(&mock, user);
        assert_eq!(sends.len(), 1, "{user}: {sends:?}");
        sends[0].body.clone()
    };
    assert_eq!(
        body("o_pic"),
        json!({"touser": "o_pic", "msgtype": "image", "image": {"media_id": "MEDIA_ID_1"}})
    );
    assert_eq!(
        body("o_card"),
        json!({"touser": "o_card", "msgtype": "link", "link": {
            "title": "注销指引",
            "description": "小程序如何注销",
            "url": "https://kf.qq.com/faq/x.html?a=1&b=2",
            "thumb_url": "https://example.com/thumb.png",
        }})
    );
    assert_eq!(
        body("o_page"),
        json!({"touser": "o_page", "msgtype": "miniprogrampage", "miniprogrampage": {
            "title": "我的订单",
            "pagepath": "pages/order/index?id=42",
            "thumb_media_id": "THUMB_MEDIA_1",
        }})
    );
}

#[tokio::test]
async fn reply_all_sends_every_reply_in_order() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    app.post_text("mp", "o_steps", "注销步骤").await;
    mock.wait_for_sends(3, WAIT).await;
    wait_outbox_empty(&app).await;
    let texts: Vec<String> = mock.sends().iter().map(content).collect();
    assert_eq!(texts, ["第一步：登录", "第二步：设置", "第三步：注销"]);
}

#[tokio::test]
async fn a_handoff_answers_the_transfer_and_sends_its_reply_through_the_api() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let r = app.post_text("mp", "o_human", "转人工").await;
    assert_eq!(r.status, 200);
    let transfer: serde_json::Value = serde_json::from_str(&r.body).expect("JSON transfer");
    assert_eq!(transfer["MsgType"], "transfer_customer_service");
    assert_eq!(transfer["ToUserName"], "o_human");

    let sends = mock.wait_for_sends(1, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 1);
    assert_eq!(
        to_and_text(&sends[0]),
        ("o_human".into(), "正在为您转接人工客服，请稍候。".into())
    );
}

#[tokio::test]
async fn a_safe_mode_push_is_answered_success_and_its_replies_sent() {
    let mock = MockWechat::start().await;
    let mut cfg = live_config(&mock, RULES);
    cfg.apps = vec![TestAppSpec::new("mp", "xml", "safe").live()];
    let app = spawn_app_with(cfg).await;

    let r = app.post_text("mp", "o_safe", "注销步骤").await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    mock.wait_for_sends(3, WAIT).await;
    wait_outbox_empty(&app).await;
    let texts: Vec<String> = sends_to(&mock, "o_safe").iter().map(content).collect();
    assert_eq!(texts, ["第一步：登录", "第二步：设置", "第三步：注销"]);
}

#[tokio::test]
async fn an_official_account_answers_its_first_text_passively_and_sends_the_rest() {
    let mock = MockWechat::start().await;
    let mut cfg = live_config(&mock, RULES);
    cfg.apps = vec![
        TestAppSpec::new("mp", "xml", "plaintext")
            .official_account()
            .live(),
    ];
    let app = spawn_app_with(cfg).await;

    let r = app.post_text("mp", "o_oa", "注销步骤").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<MsgType><![CDATA[text]]></MsgType>") && r.body.contains("第一步：登录"),
        "the first text goes back in the answer: {}",
        r.body
    );
    mock.wait_for_sends(2, WAIT).await;
    wait_outbox_empty(&app).await;
    let texts: Vec<String> = sends_to(&mock, "o_oa").iter().map(content).collect();
    assert_eq!(
        texts,
        ["第二步：设置", "第三步：注销"],
        "the rest through the API"
    );
}

// ---- one test per outcome class of custom/send ------------------------------------------------

#[tokio::test]
async fn errcode_minus_1_and_45011_are_retried_then_delivered() {
    let mock = MockWechat::start().await;
    mock.script_send(vec![
        MockReply::errcode(-1),
        MockReply::errcode(45011),
        MockReply::errcode(-1),
    ]);
    let app = spawn_live(&mock, RULES).await;

    let r = app.post_text("mp", "o_busy", "你好").await;
    assert_eq!(r.body, "success");
    let sends = mock.wait_for_sends(4, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 4, "three refusals, then the delivery");
    for s in &sends {
        assert_eq!(to_and_text(s), ("o_busy".into(), "您好！".into()));
        assert_eq!(s.access_token, "tok-1", "a busy API does not cost a token");
    }
    assert_eq!(mock.token_fetches(), 1);
    assert_eq!(counts(&app).failed, 0);
    let outcomes: Vec<String> = send_log(&data_dir(&app))
        .into_iter()
        .map(|(_, outcome, _)| outcome)
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "retrying", "sent"]);
}

#[tokio::test]
async fn a_retried_reply_keeps_its_place_before_the_users_later_replies() {
    let mock = MockWechat::start().await;
    mock.script_send(vec![MockReply::errcode(-1), MockReply::http(503)]);
    let app = spawn_live(&mock, RULES).await;

    app.post_text("mp", "o_order", "注销步骤").await;
    mock.wait_for_sends(5, WAIT).await;
    wait_outbox_empty(&app).await;
    let texts: Vec<String> = mock.sends().iter().map(content).collect();
    assert_eq!(
        texts,
        [
            "第一步：登录",
            "第一步：登录",
            "第一步：登录",
            "第二步：设置",
            "第三步：注销"
        ],
        "one user's replies go strictly in order, retries included"
    );
}

#[tokio::test]
async fn a_reply_that_keeps_failing_is_given_up_after_max_attempts() {
    let mock = MockWechat::start().await;
    mock.script_send(vec![MockReply::errcode(-1); 3]);
    let mut cfg = live_config(&mock, RULES);
    cfg.extra = format!("{FAST_OUTBOX}  max_attempts: 3\n");
    let app = spawn_app_with(cfg).await;

    app.post_text("mp", "o_give_up", "你好").await;
    let failures = wait_failures(&app, 1).await;
    assert_eq!(mock.sends().len(), 3);
    let failed = &failures[0];
    assert_eq!((failed.attempts, failed.errcode), (3, None), "{failed:?}");
    assert!(
        failed.reason.starts_with("gave up after 3 attempts") && failed.reason.contains("-1"),
        "{}",
        failed.reason
    );
    // The user's next reply is not held up by the failed one.
    app.post_text("mp", "o_give_up", "你好").await;
    mock.wait_for_sends(4, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 4);
}

#[tokio::test]
async fn token_errors_refresh_the_token_once_and_resend() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    for (i, code) in [40001, 40014, 42001].into_iter().enumerate() {
        let user = format!("o_token_{code}");
        let fetches = mock.token_fetches();
        mock.script_send(vec![MockReply::errcode(code)]);
        let before = mock.sends().len();

        app.post_text("mp", &user, "你好").await;
        mock.wait_for_sends(before + 2, WAIT).await;
        wait_outbox_empty(&app).await;

        let sends = sends_to(&mock, &user);
        assert_eq!(
            sends.len(),
            2,
            "{code}: refused once, resent once: {sends:?}"
        );
        assert_eq!(sends[0].body, sends[1].body);
        assert_ne!(
            sends[0].access_token, sends[1].access_token,
            "{code}: resent with a new token"
        );
        assert_eq!(sends[1].access_token, format!("tok-{}", i + 2));
        let expected = if i == 0 { 2 } else { fetches + 1 };
        assert_eq!(
            mock.token_fetches(),
            expected,
            "{code}: exactly one refresh"
        );
    }
    assert_eq!(counts(&app).failed, 0);
    let requests = mock.token_requests();
    assert!(
        requests.iter().all(|r| r["force_refresh"] == false),
        "a single refusal never forces a refresh: {requests:?}"
    );
}

#[tokio::test]
async fn errors_that_cannot_succeed_are_recorded_failed_and_not_retried() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let codes = [45015, 45047, 40003, 43004, 48001, 45009];
    for (i, code) in codes.into_iter().enumerate() {
        let user = format!("o_fail_{code}");
        mock.script_send(vec![MockReply::errcode(code)]);
        app.post_text("mp", &user, "你好").await;

        let failures = wait_failures(&app, i + 1).await;
        let failed = &failures[0];
        assert_eq!(
            (failed.openid.as_str(), failed.errcode, failed.attempts),
            (user.as_str(), Some(code), 1),
            "{failed:?}"
        );
        assert!(
            failed.reason.contains(&format!("errcode {code}")),
            "the reason names the errcode: {}",
            failed.reason
        );
        assert_eq!(failed.preview, "您好！");

        // The user's next message still goes out, and the failed one was not sent again
        // (one user's entries go strictly in order, so this send comes after any retry would).
        app.post_text("mp", &user, "注销步骤").await;
        let barrier = eventually(WAIT, async || sends_to(&mock, &user).len() >= 4).await;
        assert!(barrier, "{code}: {:?}", sends_to(&mock, &user));
        wait_outbox_empty(&app).await;
        let texts: Vec<String> = sends_to(&mock, &user).iter().map(content).collect();
        assert_eq!(
            texts,
            ["您好！", "第一步：登录", "第二步：设置", "第三步：注销"],
            "{code}: sent once, not retried"
        );
    }
    assert_eq!(counts(&app).failed, codes.len() as u64);
    let failed_in_log = send_log(&data_dir(&app))
        .into_iter()
        .filter(|(_, outcome, _)| outcome == "failed")
        .count();
    assert_eq!(failed_in_log, codes.len());
}

#[tokio::test]
async fn http_5xx_is_retried_then_delivered() {
    let mock = MockWechat::start().await;
    mock.script_send(vec![MockReply::http(500), MockReply::http(502)]);
    let app = spawn_live(&mock, RULES).await;

    app.post_text("mp", "o_5xx", "你好").await;
    mock.wait_for_sends(3, WAIT).await;
    wait_outbox_empty(&app).await;
    let sends = mock.sends();
    assert_eq!(sends.len(), 3);
    assert!(sends.iter().all(|s| content(s) == "您好！"));
    let log = send_log(&data_dir(&app));
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[0].2.as_deref().unwrap_or("").contains("500"),
        "the retry reason names the status: {log:?}"
    );
    assert_eq!(log[2].1, "sent");
}

#[tokio::test]
async fn a_send_not_answered_within_the_request_timeout_is_retried() {
    let mock = MockWechat::start().await;
    mock.script_send(vec![MockReply::ok().delayed(Duration::from_secs(5))]);
    let mut cfg = live_config(&mock, RULES);
    cfg.extra = format!("{FAST_OUTBOX}  request_timeout_ms: 1000\n");
    let app = spawn_app_with(cfg).await;

    let started = Instant::now();
    let r = app.post_text("mp", "o_slow", "你好").await;
    assert_eq!(r.body, "success");
    assert!(
        elapsed_ms(started) < 1000,
        "answered in {:?}",
        started.elapsed()
    );

    mock.wait_for_sends(2, WAIT).await;
    wait_outbox_empty(&app).await;
    let sends = mock.sends();
    assert_eq!(sends.len(), 2, "cut off once, then delivered");
    assert_eq!(sends[0].body, sends[1].body);
    let log = send_log(&data_dir(&app));
    assert_eq!(log[0].1, "retrying", "{log:?}");
    assert!(
        log[0].2.as_deref().unwrap_or("").contains("timed out"),
        "{log:?}"
    );
    assert_eq!(log.last().map(|l| l.1.as_str()), Some("sent"));
    // The cut-off request may have reached WeChat (here it did): it is counted, so that the
    // duplicate it can cause is visible.
    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, r#"kefu_sends_total{outcome="unknown"}"#),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_delivery_over_the_send_timeout_is_cut_off_and_retried() {
    let mock = MockWechat::start().await;
    // The token API hangs past the whole-delivery bound (1 s) but not the request bound (5 s).
    mock.script_token(vec![MockReply::ok().delayed(Duration::from_secs(4))]);
    let mut cfg = live_config(&mock, RULES);
    cfg.extra = format!("{FAST_OUTBOX}  send_timeout_ms: 1000\n");
    let app = spawn_app_with(cfg).await;

    app.post_text("mp", "o_hang", "你好").await;
    let sends = mock.wait_for_sends(1, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 1);
    assert_eq!(content(&sends[0]), "您好！");
    let log = send_log(&data_dir(&app));
    assert_eq!(log[0].1, "retrying", "{log:?}");
    assert!(
        log[0]
            .2
            .as_deref()
            .unwrap_or("")
            .contains("no answer within 1s"),
        "{log:?}"
    );
    assert_eq!(log.last().map(|l| l.1.as_str()), Some("sent"));
}

#[tokio::test]
async fn fifty_users_at_once_on_a_cold_start_fetch_the_token_once() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let users: Vec<String> = (0..50).map(|i| format!("o_crowd_{i:02}")).collect();
    let replies = join_all(users.iter().map(|u| app.post_text("mp", u, "你好"))).await;
    assert!(
        replies
            .iter()
            .all(|r| r.status == 200 && r.body == "success"),
        "{replies:?}"
    );
    mock.wait_for_sends(50, WAIT).await;
    wait_outbox_empty(&app).await;

    assert_eq!(mock.token_fetches(), 1, "one fetch however many sends wait");
    let sends = mock.sends();
    assert_eq!(sends.len(), 50);
    assert!(sends.iter().all(|s| s.access_token == "tok-1"));
    let mut to: Vec<String> = sends.iter().map(|s| to_and_text(s).0).collect();
    to.sort();
    assert_eq!(to, users, "each user exactly once");
}

#[tokio::test]
async fn fifty_sends_refused_for_an_expired_token_refresh_it_once() {
    let mock = MockWechat::start().await;
    mock.reject_token("tok-1", 42001);
    let app = spawn_live(&mock, RULES).await;

    let users: Vec<String> = (0..50).map(|i| format!("o_expired_{i:02}")).collect();
    join_all(users.iter().map(|u| app.post_text("mp", u, "你好"))).await;
    wait_outbox_empty(&app).await;

    assert_eq!(mock.token_fetches(), 2, "one fetch, one refresh");
    let accepted: Vec<_> = mock
        .sends()
        .into_iter()
        .filter(|s| s.access_token == "tok-2")
        .collect();
    assert_eq!(accepted.len(), 50);
    assert_eq!(counts(&app).failed, 0);
}

// ---- the answer never waits on the API -----------------------------------------------------

#[tokio::test]
async fn pushes_are_answered_fast_while_the_api_holds_every_send() {
    let mock = MockWechat::start().await;
    let gate = MockGate::new();
    mock.script_send(vec![MockReply::ok().held(&gate); 6]);
    let app = spawn_app_with(patient_config(&mock, RULES)).await;

    // The first send reaches the API and hangs there…
    app.post_text("mp", "o_held_0", "你好").await;
    mock.wait_for_sends(1, WAIT).await;
    // …while more pushes, a handoff among them, are answered at once.
    for i in 1..6 {
        let text = if i == 3 { "转人工" } else { "你好" };
        let started = Instant::now();
        let r = app.post_text("mp", &format!("o_held_{i}"), text).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            took < Duration::from_millis(1000),
            "push {i} answered in {took:?} while the API holds its sends"
        );
        if i == 3 {
            assert!(r.body.contains("transfer_customer_service"), "{}", r.body);
        } else {
            assert_eq!(r.body, "success");
        }
    }
    let c = counts(&app);
    assert_eq!(
        c.queued + c.sending,
        6,
        "every reply waits in the outbox: {c:?}"
    );

    gate.open();
    mock.wait_for_sends(6, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 6);
}

#[tokio::test]
async fn pushes_are_answered_fast_while_the_token_api_hangs() {
    let mock = MockWechat::start().await;
    let gate = MockGate::new();
    mock.script_token(vec![MockReply::ok().held(&gate)]);
    let app = spawn_app_with(patient_config(&mock, RULES)).await;

    for i in 0..5 {
        let started = Instant::now();
        let r = app.post_text("mp", &format!("o_tok_{i}"), "你好").await;
        assert_eq!(r.body, "success");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "push {i} answered in {:?}",
            started.elapsed()
        );
    }
    assert!(
        eventually(WAIT, async || mock.token_fetches() == 1).await,
        "the token fetch is under way"
    );
    assert!(mock.sends().is_empty(), "nothing sent without a token");

    gate.open();
    mock.wait_for_sends(5, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 5);
}

#[tokio::test]
async fn pushes_are_answered_fast_while_the_api_is_down() {
    let app = spawn_app_with(TestConfig {
        extra: PATIENT_OUTBOX.to_string(),
        ..live_config_at(&dead_api_base(), RULES)
    })
    .await;

    for i in 0..5 {
        let text = if i == 2 { "转人工" } else { "你好" };
        let started = Instant::now();
        let r = app.post_text("mp", &format!("o_down_{i}"), text).await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "push {i} answered in {:?} with the API down",
            started.elapsed()
        );
    }
    // The replies wait in the outbox, being retried.
    let retried = eventually(WAIT, async || {
        send_log(&data_dir(&app))
            .iter()
            .any(|(_, outcome, reason)| {
                outcome == "retrying" && reason.as_deref().unwrap_or("").contains("connect")
            })
    })
    .await;
    assert!(retried, "{:?}", send_log(&data_dir(&app)));
    let c = counts(&app);
    assert_eq!((c.queued + c.sending, c.failed), (5, 0), "{c:?}");
}
