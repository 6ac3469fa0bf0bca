//! Deduplication through the server (SPEC §6): a push WeChat repeats — same MsgId, or for an
//! event the same FromUserName, CreateTime and Event — is acted on once and answered with the
//! first answer, whether the repeats come one after another or all at once.

use futures_util::future::join_all;

use crate::delivery_helpers::*;
use crate::helpers::*;
use crate::mock_wechat::{MockGate, MockReply, MockWechat};
use kefu::protocol::InboundMessage;

/// The basic rules: 人工 (handoff), 你好, and a welcome for user_enter_tempsession.
const RULES: &str = BASIC_RULES;

/// Messages in the conversation log since a minute ago.
fn logged(app: &TestApp) -> u64 {
    app.state
        .ops
        .stats(TestApp::now() - 60, app.settings.tz)
        .expect("stats")
        .messages
}

async fn three_in_a_row(app: &TestApp, msg: &InboundMessage) -> Vec<Reply> {
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(app.post_message("mp", msg).await);
    }
    replies
}

async fn three_at_once(app: &TestApp, msg: &InboundMessage) -> Vec<Reply> {
    join_all((0..3).map(|_| app.post_message("mp", msg))).await
}

fn assert_same_answer(replies: &[Reply]) {
    assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|r| r.body == replies[0].body && r.content_type == replies[0].content_type),
        "every repeat gets the first answer: {replies:?}"
    );
}

#[tokio::test]
async fn a_message_posted_three_times_in_a_row_is_sent_once_and_answered_alike() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let msg = text_msg("o_seq", "你好");
    let replies = three_in_a_row(&app, &msg).await;
    assert_same_answer(&replies);
    assert_eq!(replies[0].body, "success");

    wait_outbox_empty(&app).await;
    let texts: Vec<String> = sends_to(&mock, "o_seq").iter().map(content).collect();
    assert_eq!(texts, ["您好！"]);
    assert_eq!(logged(&app), 1, "logged once");
    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, "kefu_duplicates_total{app=\"mp\"}"),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_message_posted_three_times_at_once_is_sent_once_and_answered_alike() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    for i in 0..5 {
        let user = format!("o_par_{i}");
        let replies = three_at_once(&app, &text_msg(&user, "你好")).await;
        assert_same_answer(&replies);
        assert_eq!(replies[0].body, "success");
    }
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 5, "{:?}", mock.sends());
    for i in 0..5 {
        assert_eq!(sends_to(&mock, &format!("o_par_{i}")).len(), 1);
    }
    assert_eq!(logged(&app), 5);
}

#[tokio::test]
async fn a_repeated_handoff_gets_the_same_transfer_and_one_send() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    let seq = three_in_a_row(&app, &text_msg("o_hand_seq", "转人工")).await;
    let par = three_at_once(&app, &text_msg("o_hand_par", "转人工")).await;
    for replies in [&seq, &par] {
        assert_same_answer(replies);
        assert!(
            replies[0].body.contains("transfer_customer_service"),
            "a repeated handoff is never a bare success: {replies:?}"
        );
    }
    wait_outbox_empty(&app).await;
    for user in ["o_hand_seq", "o_hand_par"] {
        let texts: Vec<String> = sends_to(&mock, user).iter().map(content).collect();
        assert_eq!(texts, ["正在为您转接人工客服，请稍候。"], "{user}");
    }
    assert_eq!(logged(&app), 2);
}

#[tokio::test]
async fn repeats_while_the_api_is_slow_still_send_once() {
    // The first attempt's send hangs at the API while WeChat's retries arrive.
    let mock = MockWechat::start().await;
    let gate = MockGate::new();
    mock.script_send(vec![MockReply::ok().held(&gate)]);
    let app = spawn_app_with(patient_config(&mock, RULES)).await;

    let msg = text_msg("o_slow_api", "你好");
    let first = app.post_message("mp", &msg).await;
    mock.wait_for_sends(1, WAIT).await;
    let mut replies = vec![first];
    replies.extend(three_at_once(&app, &msg).await);
    assert_same_answer(&replies);
    gate.open();
    wait_outbox_empty(&app).await;
    assert_eq!(mock.sends().len(), 1);
}

#[tokio::test]
async fn a_repeated_event_acts_once() {
    let mock = MockWechat::start().await;
    let app = spawn_live(&mock, RULES).await;

    // Events have no MsgId: FromUserName, CreateTime and Event identify them.
    let seq = event_msg("o_ev_seq", "user_enter_tempsession");
    assert!(seq.msg_id.is_none());
    assert_same_answer(&three_in_a_row(&app, &seq).await);
    let par = event_msg("o_ev_par", "user_enter_tempsession");
    assert_same_answer(&three_at_once(&app, &par).await);
    // The same user entering again later is a new event.
    let later = InboundMessage {
        create_time: seq.create_time + 7,
        ..seq.clone()
    };
    assert_same_answer(&three_in_a_row(&app, &later).await);

    wait_outbox_empty(&app).await;
    assert_eq!(sends_to(&mock, "o_ev_seq").len(), 2, "two distinct entries");
    assert_eq!(sends_to(&mock, "o_ev_par").len(), 1);
    assert!(mock.sends().iter().all(|s| content(s) == "欢迎光临"));
    assert_eq!(logged(&app), 3);
}
