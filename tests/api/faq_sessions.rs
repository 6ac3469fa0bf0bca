//! The FAQ over HTTP with real per-user sessions (SPEC §4 order of decision, §5): a clarify
//! menu answered by its number from the same user only, only by the very next message and only
//! until it expires; a handoff that sticks for `handoff_minutes` to the user who asked, never to
//! events, and not at all with `handoff_minutes: 0`.
//!
//! Official accounts show the answer in the HTTP body; one Mini Program test follows the
//! replies through the outbox to the dry-run send record.

use futures_util::FutureExt as _;
use std::time::Duration;

use kefu::outbound::OutboundMessage;

use crate::bot_helpers::*;
use crate::helpers::*;

/// The shipped deregistration FAQ (entries, synonyms, clarify topic).
const FAQ: &str = include_str!("../../rules/faq/deregistration.yaml");

/// Test rules instead of the shipped service rules, whose after-hours handoff depends on the
/// clock: the basic ones (人工/转人工 handoff, 你好, a welcome), ahead of the shipped FAQ.
const RULES: &str = BASIC_RULES;

fn config(apps: Vec<TestAppSpec>, extra: &str) -> TestConfig {
    TestConfig {
        apps,
        rules: vec![
            ("00-rules.yaml", RULES.to_string()),
            ("deregistration.yaml", FAQ.to_string()),
        ],
        extra: extra.to_string(),
        ..TestConfig::default()
    }
}

/// The options of `user`'s pending menu, as the store holds them.
fn menu_of(app: &TestApp, user: &str) -> Vec<String> {
    app.state
        .store
        .session("oa", &user.into(), TestApp::now())
        // The SQLite store answers from memory: its future is ready at once.
        .now_or_never()
        .expect("ready")
        .expect("session")
        .menu
        .map(|m| m.options)
        .unwrap_or_default()
}

fn answer_of_entry(app: &TestApp, id: &str) -> Answer {
    let set = app.state.rules.current();
    let entry = set.faq().get(id).expect("FAQ entry");
    Answer::Text(entry.answer.clone())
}

/// Asks `注销需要什么` and checks the menu; returns its options.
async fn open_menu(app: &TestApp, user: &str) -> Vec<String> {
    let menu = app.ask("oa", user, "注销需要什么").await;
    let text = menu.text().unwrap_or_else(|| panic!("no menu: {menu:?}"));
    for n in ["\n1. ", "\n2. ", "\n3. "] {
        assert!(text.contains(n), "{text}");
    }
    let options = menu_of(app, user);
    assert_eq!(options.len(), 3, "{options:?}");
    options
}

#[tokio::test]
async fn a_menu_number_from_the_same_user_answers_that_entry() {
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    let options = open_menu(&app, "o_alice").await;
    assert_eq!(
        app.ask("oa", "o_alice", "2").await,
        answer_of_entry(&app, &options[1])
    );
    // The menu is used up: the next `2` is not a choice.
    assert!(menu_of(&app, "o_alice").is_empty());
    assert_ne!(
        app.ask("oa", "o_alice", "2").await,
        answer_of_entry(&app, &options[1])
    );
}

#[tokio::test]
async fn full_width_and_dotted_numbers_are_choices_too() {
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    let options = open_menu(&app, "o_alice").await;
    assert_eq!(
        app.ask("oa", "o_alice", "３").await,
        answer_of_entry(&app, &options[2])
    );
    let options = open_menu(&app, "o_alice").await;
    assert_eq!(
        app.ask("oa", "o_alice", " 1。").await,
        answer_of_entry(&app, &options[0])
    );
}

#[tokio::test]
async fn another_users_number_is_not_a_choice() {
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    let options = open_menu(&app, "o_alice").await;
    // Bob has no menu: his `2` is just a message (nothing answers it here).
    assert_eq!(app.ask("oa", "o_bob", "2").await, Answer::Success);
    // …and it did not use up Alice's menu.
    assert_eq!(
        app.ask("oa", "o_alice", "2").await,
        answer_of_entry(&app, &options[1])
    );
}

#[tokio::test]
async fn the_same_openid_in_another_app_has_its_own_session() {
    let app = spawn_app_with(config(vec![oa("oa"), oa("oa2")], "")).await;
    open_menu(&app, "o_alice").await;
    assert_eq!(app.ask("oa2", "o_alice", "1").await, Answer::Success);
}

#[tokio::test]
async fn only_the_very_next_message_answers_a_menu() {
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    open_menu(&app, "o_alice").await;
    assert_eq!(
        app.ask("oa", "o_alice", "你好").await,
        Answer::Text("您好！".into())
    );
    assert_eq!(app.ask("oa", "o_alice", "1").await, Answer::Success);
}

#[tokio::test]
async fn an_expired_menu_does_not_take_numbers() {
    let app = spawn_app_with(config(vec![oa("oa")], "faq:\n  menu_ttl_secs: 1\n")).await;
    // Not `open_menu`: with a one-second menu, reading it back from the store right after can
    // already find it expired (the push at x.999 s, the read at x+1), as a loaded machine once
    // did. The menu was sent; that is all this test needs before it expires.
    let menu = app.ask("oa", "o_alice", "注销需要什么").await;
    assert!(
        menu.text().is_some_and(|t| t.contains("\n1. ")),
        "no menu: {menu:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), async || menu_of(&app, "o_alice")
            .is_empty())
        .await,
        "the menu never expired"
    );
    assert_eq!(app.ask("oa", "o_alice", "1").await, Answer::Success);
}

#[tokio::test]
async fn a_handoff_sticks_to_the_user_who_asked() {
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    assert_eq!(app.ask("oa", "o_alice", "转人工").await, Answer::Transfer);
    // Alice is with humans: her greeting goes to them too.
    assert_eq!(app.ask("oa", "o_alice", "你好").await, Answer::Transfer);
    // …and so does a question the FAQ could answer.
    assert_eq!(
        app.ask("oa", "o_alice", "个体户小程序注销流程").await,
        Answer::Transfer
    );
    // Bob is not.
    assert_eq!(
        app.ask("oa", "o_bob", "你好").await,
        Answer::Text("您好！".into())
    );
    let until = app
        .state
        .store
        .session("oa", &"o_alice".into(), TestApp::now())
        .await
        .unwrap()
        .handoff_until
        .expect("a sticky handoff");
    let minutes = (until - TestApp::now() + 59) / 60;
    assert!(
        (29..=30).contains(&minutes),
        "handoff_minutes 30: {minutes}"
    );
}

#[tokio::test]
async fn events_never_hand_off_and_do_not_end_a_handoff() {
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    assert_eq!(app.ask("oa", "o_alice", "转人工").await, Answer::Transfer);
    assert_eq!(
        app.ask_event("oa", "o_alice", "user_enter_tempsession")
            .await,
        Answer::Text("欢迎光临".into())
    );
    assert_eq!(app.ask("oa", "o_alice", "你好").await, Answer::Transfer);
}

#[tokio::test]
async fn a_handoff_rule_on_an_event_does_not_transfer() {
    let mut cfg = config(vec![oa("oa")], "");
    cfg.rules = vec![(
        "a.yaml",
        "rules:\n  - id: enter\n    event: user_enter_tempsession\n    reply: 欢迎\n    handoff: true\n"
            .to_string(),
    )];
    let app = spawn_app_with(cfg).await;
    assert_eq!(
        app.ask_event("oa", "o_alice", "user_enter_tempsession")
            .await,
        Answer::Text("欢迎".into())
    );
    assert_eq!(
        app.state
            .store
            .session("oa", &"o_alice".into(), TestApp::now())
            .await
            .unwrap()
            .handoff_until,
        None
    );
}

#[tokio::test]
async fn handoff_minutes_0_means_no_stickiness() {
    let mut spec = oa("oa");
    spec.extra = "    handoff_minutes: 0\n";
    let app = spawn_app_with(config(vec![spec], "")).await;
    assert_eq!(app.ask("oa", "o_alice", "转人工").await, Answer::Transfer);
    assert_eq!(
        app.ask("oa", "o_alice", "你好").await,
        Answer::Text("您好！".into())
    );
    assert_eq!(
        app.state
            .store
            .session("oa", &"o_alice".into(), TestApp::now())
            .await
            .unwrap()
            .handoff_until,
        None
    );
}

#[tokio::test]
async fn a_pending_menu_is_answered_before_a_handoff_rule_applies() {
    // SPEC §4: the menu comes first in the order of decision; a handoff keyword is not a number,
    // so it dismisses the menu and transfers.
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    open_menu(&app, "o_alice").await;
    assert_eq!(app.ask("oa", "o_alice", "转人工").await, Answer::Transfer);
    assert!(menu_of(&app, "o_alice").is_empty());
}

/// A Mini Program answers through the send API: the menu and the chosen answer arrive as
/// dry-run sends to the user, in order.
#[tokio::test]
async fn a_mini_program_menu_is_answered_through_the_send_api() {
    let app = spawn_app_with(config(
        vec![TestAppSpec::new("mp", "json", "plaintext")],
        "",
    ))
    .await;
    let texts_to = |user: &str| -> Vec<String> {
        app.state
            .client
            .dry_run_sends()
            .into_iter()
            .filter(|s| s.app_id == "mp" && s.openid == user)
            .filter_map(|s| match s.message {
                OutboundMessage::Text { content } => Some(content),
                _ => None,
            })
            .collect()
    };
    let r = app.post_text("mp", "o_alice", "注销需要什么").await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    assert!(
        eventually(Duration::from_secs(10), async || texts_to("o_alice").len()
            == 1)
        .await,
        "the menu was never sent"
    );
    assert!(texts_to("o_alice")[0].contains("\n1. "));
    let options = app
        .state
        .store
        .session("mp", &"o_alice".into(), TestApp::now())
        .await
        .unwrap()
        .menu
        .expect("a menu")
        .options;

    let r = app.post_text("mp", "o_alice", "1").await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    let want = app
        .state
        .rules
        .current()
        .faq()
        .get(&options[0])
        .expect("entry")
        .answer
        .clone();
    assert!(
        eventually(Duration::from_secs(10), async || texts_to("o_alice").len()
            == 2)
        .await,
        "the answer was never sent"
    );
    assert_eq!(texts_to("o_alice")[1], want);
}

/// Regression: `handoff_minutes` and `menu_ttl_secs` near the integer limits overflowed the
/// expiry computation on the request path.
#[tokio::test]
async fn huge_handoff_minutes_and_menu_ttl_do_not_break_the_push() {
    let mut spec = oa("oa");
    spec.extra = "    handoff_minutes: 18446744073709551615\n";
    let mut spec2 = oa("oa2");
    spec2.extra = "    handoff_minutes: 9223372036854775807\n";
    let app = spawn_app_with(config(
        vec![spec, spec2],
        "faq:\n  menu_ttl_secs: 18446744073709551615\n",
    ))
    .await;
    let options = open_menu(&app, "o_bob").await;
    assert_eq!(
        app.ask("oa", "o_bob", "1").await,
        answer_of_entry(&app, &options[0])
    );
    assert_eq!(app.ask("oa", "o_alice", "转人工").await, Answer::Transfer);
    assert_eq!(app.ask("oa", "o_alice", "你好").await, Answer::Transfer);
    assert_eq!(app.ask("oa2", "o_alice", "转人工").await, Answer::Transfer);
    assert_eq!(app.ask("oa2", "o_alice", "你好").await, Answer::Transfer);
}

#[tokio::test]
async fn a_follow_up_is_read_with_the_kind_of_the_users_last_answer() {
    // Issue 14, point 5: after an answer about Mini Programs, "个体户的呢" means the
    // individual-business Mini Program entry; the store keeps what it needs, per user.
    let app = spawn_app_with(config(vec![oa("oa")], "")).await;
    assert_eq!(
        app.ask("oa", "o_alice", "小程序怎么注销").await,
        answer_of_entry(&app, "mp-dereg-general")
    );
    let last = app
        .state
        .store
        .session("oa", &"o_alice".into(), TestApp::now())
        .await
        .expect("session")
        .last_faq
        .expect("the last answer is kept");
    assert_eq!(last.faq, "mp-dereg-general");
    assert!(
        (290..=300).contains(&(last.expires_at - TestApp::now())),
        "{last:?}"
    );
    assert_eq!(
        app.ask("oa", "o_alice", "个体户的呢").await,
        answer_of_entry(&app, "mp-dereg-individual")
    );
    // Bob's last answer was about Official Accounts.
    app.ask("oa", "o_bob", "公众号怎么注销").await;
    assert_eq!(
        app.ask("oa", "o_bob", "个体户的呢").await,
        answer_of_entry(&app, "oa-dereg-individual")
    );
    // Carol asked nothing before: she is not given either entry.
    let carol = app.ask("oa", "o_carol", "个体户的呢").await;
    assert_ne!(carol, answer_of_entry(&app, "mp-dereg-individual"));
    assert_ne!(carol, answer_of_entry(&app, "oa-dereg-individual"));
}
