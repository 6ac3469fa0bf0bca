//! Tests of the richer replies of SPEC §10 as rules files declare them: image files, `fetch`
//! with `fetch_hosts` and `${VAR}`, `event_key`; every refused input has its test.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::dispatch::{Context, Session, decide};
use crate::outbound::OutboundMessage;
use crate::protocol::{InboundMessage, MsgKind};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn options() -> LoadOptions {
    LoadOptions {
        fetch_hosts: Vec::new(),
        env: Arc::new(|name| (name == "SHOP_TOKEN").then(|| "s3cret".to_string())),
        max_image_bytes: 1024,
    }
    .with_fetch_hosts(&["shop.example.com".to_string()])
}

fn load(dir: &Path, yaml: &str) -> LoadReport {
    let files = [SourceFile {
        path: dir.join("r.yaml"),
        text: yaml.to_string(),
    }];
    RuleSet::load_files_with(dir, &files, &FaqSettings::default(), &options())
}

fn errors(dir: &Path, yaml: &str) -> Vec<String> {
    load(dir, yaml)
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect()
}

fn assert_refused(yaml: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.png"), PNG).unwrap();
    let errors = errors(dir.path(), yaml);
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "expected an error with {needle:?}, got {errors:#?}"
    );
}

fn event(name: &str, key: Option<&str>) -> InboundMessage {
    InboundMessage {
        to_user_name: "gh".into(),
        from_user_name: "u".into(),
        create_time: 1,
        msg_id: None,
        kind: MsgKind::Event {
            event: name.into(),
            session_from: None,
            event_key: key.map(str::to_string),
            kf_account: None,
        },
    }
}

fn ctx() -> Context {
    Context::at_unix(1_796_090_400, chrono_tz::Asia::Shanghai, 30, 600)
}

#[test]
fn an_image_file_becomes_an_image_file_message_with_its_full_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    std::fs::write(dir.path().join("images/poster.png"), PNG).unwrap();
    let report = load(
        dir.path(),
        "rules:\n  - id: poster\n    keywords: [海报]\n    image: {file: images/poster.png}\n  - id: card\n    keywords: [卡片]\n    miniprogrampage: {title: t, pagepath: p, thumb_file: images/poster.png}\n",
    );
    let set = report.set.expect("loads");
    let action = &set.rule("poster").unwrap().action;
    assert_eq!(
        action.media,
        vec![OutboundMessage::ImageFile {
            name: "images/poster.png".into(),
            path: dir.path().join("images/poster.png").display().to_string(),
        }]
    );
    assert!(matches!(
        set.rule("card").unwrap().action.media.first(),
        Some(OutboundMessage::MiniProgramPageFile { .. })
    ));
}

#[test]
fn bad_image_files_are_refused() {
    let rule = |image: &str| format!("rules:\n  - id: a\n    keywords: [x]\n    image: {image}\n");
    assert_refused(&rule("{file: missing.png}"), "cannot be read");
    assert_refused(&rule("{file: ../ok.png}"), "inside the rules folder");
    assert_refused(&rule("{file: ok.png, media_id: m}"), "exactly one of");
    assert_refused(&rule("{}"), "exactly one of");
    assert_refused(&rule("{path: ok.png}"), "unknown key");
    assert_refused(
        "rules:\n  - id: a\n    keywords: [x]\n    miniprogrampage: {title: t, pagepath: p}\n",
        "exactly one of",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fake.png"), b"GIF89a....").unwrap();
    std::fs::write(dir.path().join("big.png"), [PNG, &[0u8; 2000]].concat()).unwrap();
    let e = errors(dir.path(), &rule("{file: fake.png}"));
    assert!(e.iter().any(|e| e.contains("not a JPG or PNG")), "{e:#?}");
    let e = errors(dir.path(), &rule("{file: big.png}"));
    assert!(e.iter().any(|e| e.contains("at most 1024 bytes")), "{e:#?}");
}

const FETCH: &str = r#"rules:
  - id: order-status
    regex: '订单号?\s*[:：]?\s*(?P<order>\d{10,20})'
    fetch:
      url: "https://shop.example.com/api/orders/{order}"
      headers: {Authorization: "Bearer ${SHOP_TOKEN}"}
      timeout_ms: 2000
    reply: "订单 {order}：{fetch.status}"
    fallback: "订单查询暂时不可用"
"#;

#[test]
fn a_fetch_rule_decides_a_fetch_reply_with_the_capture_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let set = load(dir.path(), FETCH).set.expect("loads");
    let msg = InboundMessage {
        to_user_name: "gh".into(),
        from_user_name: "u".into(),
        create_time: 1,
        msg_id: None,
        kind: MsgKind::Text {
            content: "订单号：20261127000123".into(),
        },
    };
    let d = decide(&set, &msg, &Session::default(), &ctx());
    let Some(OutboundMessage::Fetch(f)) = d.replies.first() else {
        panic!("{:?}", d.replies)
    };
    assert_eq!(
        f.request.url,
        "https://shop.example.com/api/orders/20261127000123"
    );
    assert_eq!(f.request.method, "GET");
    // The secret stays a variable until the call.
    assert_eq!(f.request.headers["Authorization"], "Bearer ${SHOP_TOKEN}");
    assert_eq!(f.template, "订单 {order}：{fetch.status}");
    assert_eq!(f.fallback, "订单查询暂时不可用");
}

#[test]
fn bad_fetch_rules_are_refused() {
    let with = |from: &str, to: &str| FETCH.replace(from, to);
    assert_refused(
        &with("shop.example.com", "evil.example.com"),
        "not in kefu.yaml `fetch_hosts`",
    );
    assert_refused(
        &with("${SHOP_TOKEN}", "${KEFU_SURELY_UNSET_VAR}"),
        "environment variable `KEFU_SURELY_UNSET_VAR` is not set",
    );
    assert_refused(
        &with("timeout_ms: 2000", "timeout_ms: 5000"),
        "between 1 and 3000",
    );
    assert_refused(&with("timeout_ms: 2000", "method: PUT"), "GET or POST");
    assert_refused(&with("timeout_ms: 2000", "retries: 3"), "unknown key");
    assert_refused(
        &with("    fallback: \"订单查询暂时不可用\"\n", ""),
        "needs a `fallback`",
    );
    assert_refused(
        &with("orders/{order}", "orders/{nope}"),
        "`{nope}` cannot be filled",
    );
    assert_refused(&with("https://shop", "ftp://shop"), "http or https");
    assert_refused(
        &with("查询暂时不可用", "{fetch.status}"),
        "in `fallback` can never be filled",
    );
    assert_refused(
        "rules:\n  - id: a\n    keywords: [x]\n    reply: \"{fetch.status}\"\n",
        "has no `fetch`",
    );
    assert_refused(
        "rules:\n  - id: a\n    keywords: [x]\n    reply: hi\n    fallback: oops\n",
        "`fallback` applies only to a rule with `fetch`",
    );
}

#[test]
fn event_key_rules_answer_menu_clicks_and_scene_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let set = load(
        dir.path(),
        "rules:\n  - id: menu-hours\n    event: CLICK\n    event_key: [MENU_HOURS, MENU_TIME]\n    reply: 9:00-18:00\n  - id: scene\n    event: subscribe\n    event_key: shop42\n    reply: 欢迎来自 42 号店\n  - id: follow\n    event: subscribe\n    reply: 欢迎关注\n",
    )
    .set
    .expect("loads");
    let rule_of = |msg: InboundMessage| decide(&set, &msg, &Session::default(), &ctx()).rule;
    assert_eq!(
        rule_of(event("CLICK", Some("MENU_TIME"))).as_deref(),
        Some("menu-hours")
    );
    assert_eq!(rule_of(event("CLICK", Some("OTHER"))), None);
    assert_eq!(
        rule_of(event("subscribe", Some("qrscene_shop42"))).as_deref(),
        Some("scene")
    );
    assert_eq!(rule_of(event("subscribe", None)).as_deref(), Some("follow"));
    assert_eq!(
        rule_of(event("SCAN", Some("shop42"))),
        None,
        "the event must match too"
    );
}

#[test]
fn bad_event_key_rules_are_refused() {
    assert_refused(
        "rules:\n  - id: a\n    msg_type: text\n    event_key: K\n    reply: x\n",
        "`event_key` applies only to `msg_type: event`",
    );
    assert_refused(
        "rules:\n  - id: a\n    event: CLICK\n    event_key: []\n    reply: x\n",
        "empty list",
    );
}
