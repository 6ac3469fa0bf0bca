//! Send quotas through the server (SPEC §6): after a user message at most 5 replies, after
//! `user_enter_tempsession` at most 2; what is over is never queued, and the send log records
//! each dropped message with the reason.

use crate::delivery_helpers::*;
use crate::helpers::*;
use crate::mock_wechat::MockWechat;

const RULES: &str = r#"
rules:
  - id: seven
    keywords: [七条]
    reply_all: true
    reply: [一, 二, 三, 四, 五, 六, 七]
  - id: hello
    keywords: [你好]
    reply: 您好！
  - id: welcome
    msg_type: event
    event: user_enter_tempsession
    reply_all: true
    reply: [欢迎光临, 发送“人工”可转接人工客服, 第三条欢迎语]
"#;

fn dropped(app: &TestApp, user: &str) -> Vec<String> {
    send_log(&data_dir(app))
        .into_iter()
        .filter(|(openid, outcome, _)| openid == user && outcome == "dropped")
        .map(|(_, _, reason)| reason.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn seven_replies_to_one_message_send_five_and_record_two_dropped() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let r = app.post_text("mp", "o_seven", "来七条").await;
    assert_eq!(r.body, "success");
    wait_outbox_empty(&app).await;

    let texts: Vec<String> = sends_to(&mock, "o_seven").iter().map(content).collect();
    assert_eq!(
        texts,
        ["一", "二", "三", "四", "五"],
        "the first five, in order"
    );
    let dropped = dropped(&app, "o_seven");
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    for (reason, text) in dropped.iter().zip(["六", "七"]) {
        assert!(reason.contains("over quota"), "{reason}");
        assert!(reason.contains('5'), "the reason names the limit: {reason}");
        assert!(
            reason.contains(text),
            "the reason shows the message: {reason}"
        );
    }
    let stats = app
        .state
        .ops
        .stats(TestApp::now() - 60, app.settings.tz)
        .expect("stats");
    assert_eq!((stats.sends.sent, stats.sends.dropped), (5, 2));
    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, "kefu_sends_total{outcome=\"dropped\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "kefu_sends_total{outcome=\"sent\"}"),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        counts(&app).failed,
        0,
        "a dropped message is not a failed send"
    );
}

#[tokio::test]
async fn the_daemon_logs_what_it_dropped_and_why() {
    let mock = MockWechat::start().await;
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&mock.base_url(), FAST_OUTBOX);
    let mut daemon = Daemon::start(&dir, settings, "quota").await;

    let r = daemon.post(&text_msg("o_logged", "来七条")).await;
    assert_eq!(r.body, "success");
    mock.wait_for_sends(5, WAIT).await;
    assert_eq!(daemon.terminate().await.code(), Some(0));

    let lines = daemon.log_lines();
    let warning = lines
        .iter()
        .find(|l| l["message"] == "replies over the send quota were not queued")
        .unwrap_or_else(|| panic!("no drop warning in:\n{}", daemon.log_text()));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["openid"], "o_logged");
    assert_eq!(warning["dropped"], 2, "{warning}");
    // The texts are in the send log (kefu stats), never in the process log.
    let text = daemon.log_text();
    assert!(!text.contains('六') && !text.contains('七'), "{text}");
    assert_eq!(mock.sends().len(), 5);
}

#[tokio::test]
async fn the_users_next_message_opens_a_new_window() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    app.post_text("mp", "o_again", "来七条").await;
    app.post_text("mp", "o_again", "你好").await;
    wait_outbox_empty(&app).await;
    let texts: Vec<String> = sends_to(&mock, "o_again").iter().map(content).collect();
    assert_eq!(texts, ["一", "二", "三", "四", "五", "您好！"]);
    assert_eq!(dropped(&app, "o_again").len(), 2);
}

#[tokio::test]
async fn entering_the_chat_allows_two_welcome_messages() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let r = app
        .post_event("mp", "o_enter", "user_enter_tempsession")
        .await;
    assert_eq!(r.body, "success");
    wait_outbox_empty(&app).await;

    let texts: Vec<String> = sends_to(&mock, "o_enter").iter().map(content).collect();
    assert_eq!(texts, ["欢迎光临", "发送“人工”可转接人工客服"]);
    let dropped = dropped(&app, "o_enter");
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].contains("entering the chat"), "{}", dropped[0]);
    assert!(dropped[0].contains("第三条欢迎语"), "{}", dropped[0]);
}
