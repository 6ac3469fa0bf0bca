//! Tests of the whole pipeline (files → `RuleSet` → decision), through the `RuleSet` API rather
//! than the matcher's indexes, so that they survive a change of index: table-driven matcher tests
//! grouped by semantics, and one test per error and warning class with its position.

use std::path::{Path, PathBuf};

use chrono::TimeZone;
use chrono_tz::Asia::Shanghai;

use super::*;
use crate::text::normalize;

/// Monday 2026-03-02 10:00 in Shanghai: inside office hours.
fn monday_morning() -> DateTime<Tz> {
    at(2, 10, 0)
}

/// 2026-03-02 is a Monday, 2026-03-07 a Saturday.
fn at(day_of_march: u32, hour: u32, minute: u32) -> DateTime<Tz> {
    Shanghai
        .with_ymd_and_hms(2026, 3, day_of_march, hour, minute, 0)
        .single()
        .unwrap()
}

fn files(named: &[(&str, &str)]) -> Vec<SourceFile> {
    named
        .iter()
        .map(|(path, text)| SourceFile {
            path: PathBuf::from(path),
            text: text.to_string(),
        })
        .collect()
}

fn report(named: &[(&str, &str)]) -> LoadReport {
    RuleSet::load_files(Path::new("rules"), &files(named), &FaqSettings::default())
}

/// Loads one file `r.yaml` that must have no error.
fn set(yaml: &str) -> RuleSet {
    let report = report(&[("r.yaml", yaml)]);
    let shown: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    report.set.unwrap_or_else(|| panic!("refused: {shown:#?}"))
}

/// Every diagnostic of one file, as `path:line:column: message`.
fn problems(yaml: &str) -> Vec<String> {
    report(&[("r.yaml", yaml)])
        .diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect()
}

/// Asserts that the diagnostics are exactly `want`, each given as a prefix.
fn assert_problems(got: &[String], want: &[&str]) {
    assert_eq!(got.len(), want.len(), "got {got:#?}\nwant {want:#?}");
    for (got, want) in got.iter().zip(want) {
        assert!(got.starts_with(want), "got  {got}\nwant {want}…");
    }
}

fn text_at(set: &RuleSet, text: &str, now: DateTime<Tz>) -> Option<String> {
    let normalized = normalize(text);
    let input = MatchInput {
        msg_type: "text",
        event: None,
        event_key: None,
        text: &normalized,
        now,
    };
    set.match_message(&input).map(|hit| hit.rule.id.clone())
}

fn winner(set: &RuleSet, text: &str) -> Option<String> {
    text_at(set, text, monday_morning())
}

fn check_table(set: &RuleSet, table: &[(&str, Option<&str>)]) {
    for &(text, want) in table {
        assert_eq!(winner(set, text).as_deref(), want, "message {text:?}");
    }
}

// ── Matching ─────────────────────────────────────────────────────────────────────────────────

#[test]
fn priority_wins_then_load_order() {
    let set = set("
rules:
  - id: first
    keywords: [退款]
    reply: a
  - id: second
    keywords: [退款, 退钱]
    reply: b
  - id: urgent
    priority: 10
    keywords: [加急]
    reply: c
  - id: low
    priority: -5
    keywords: [问题]
    reply: d
  - id: normal
    keywords: [问题]
    not: [退款]
    reply: e
");
    check_table(
        &set,
        &[
            ("退款", Some("first")),
            ("退钱", Some("second")),
            ("加急退款", Some("urgent")),
            ("退款加急", Some("urgent")),
            ("有个问题", Some("normal")),
            ("退款问题", Some("first")),
            ("随便说说", None),
        ],
    );
}

#[test]
fn ties_across_files_go_to_the_file_first_in_path_order() {
    let report = report(&[
        (
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply: a\n",
        ),
        (
            "b.yaml",
            "rules:\n  - id: b\n    keywords: [x]\n    reply: b\n  - id: c\n    priority: 1\n    keywords: [y]\n    reply: c\n",
        ),
    ]);
    let set = report.set.unwrap();
    check_table(&set, &[("x", Some("a")), ("xy", Some("c"))]);
}

#[test]
fn all_and_not() {
    let set = set("
rules:
  - id: mp-individual
    priority: 10
    all: [个体, 小程序, 注销]
    not: [公众号]
    reply: a
  - id: dereg
    keywords: [注销]
    reply: b
  - id: not-only
    not: [注销, 小程序]
    msg_type: text
    priority: -1
    reply: c
");
    check_table(
        &set,
        &[
            ("个体户的小程序怎么注销", Some("mp-individual")),
            ("注销小程序，我是个体", Some("mp-individual")),
            ("个体户公众号和小程序注销", Some("dereg")),
            ("小程序注销", Some("dereg")),
            ("个体户小程序", None),
            ("你们几点上班", Some("not-only")),
        ],
    );
}

#[test]
fn exact_is_the_whole_normalized_message() {
    let set = set("
rules:
  - id: one
    exact: ['1', 一]
    reply: a
  - id: hello
    exact: 你好
    reply: b
  - id: vip
    exact: VIP
    reply: c
");
    check_table(
        &set,
        &[
            ("1", Some("one")),
            ("  1 ", Some("one")),
            ("１", Some("one")),
            ("一", Some("one")),
            ("11", None),
            ("你好", Some("hello")),
            ("你好啊", None),
            ("ｖｉｐ", Some("vip")),
            ("Vip", Some("vip")),
        ],
    );
}

#[test]
fn regex_captures_fill_templates() {
    let set = set(r"
rules:
  - id: order-query
    regex: '订单号?\s*[:：]?\s*(?P<order>\d{10,20})'
    reply: 已收到订单 {order}（{1}），我们会尽快为您查询。
    examples: [我的订单号：20261127000123]
    not_examples: [订单怎么取消]
  - id: two
    regex: ['^退(款|货)$', 'refund (\w+)']
    reply: '{1}'
");
    let text = normalize("我的订单号：20261127000123");
    let input = MatchInput {
        msg_type: "text",
        event: None,
        event_key: None,
        text: &text,
        now: monday_morning(),
    };
    let hit = set.match_message(&input).unwrap();
    assert_eq!(hit.rule.id, "order-query");
    assert_eq!(hit.captures["order"], "20261127000123");
    assert_eq!(hit.captures["1"], "20261127000123");
    assert_eq!(
        render_template(&hit.rule.action.replies[0], &hit.captures),
        "已收到订单 20261127000123（20261127000123），我们会尽快为您查询。"
    );
    let why = set.explain(&hit, &input);
    assert!(why.starts_with("regex 订单号?"), "{why}");
    assert!(why.ends_with("at chars 2..20 (rule order-query)"), "{why}");

    for (message, capture) in [("退货", "货"), ("REFUND please", "please")] {
        let text = normalize(message);
        let input = MatchInput {
            msg_type: "text",
            event: None,
            event_key: None,
            text: &text,
            now: monday_morning(),
        };
        let hit = set.match_message(&input).unwrap();
        assert_eq!(hit.rule.id, "two");
        assert_eq!(hit.captures["1"], capture, "{message}");
    }
}

#[test]
fn full_width_and_case_are_normalized_on_both_sides() {
    let set = set("
rules:
  - id: vip
    keywords: [ＶＩＰ会员]
    reply: a
  - id: wifi
    keywords: [WiFi]
    reply: b
");
    check_table(
        &set,
        &[
            ("我是vip会员", Some("vip")),
            ("我是ＶＩＰ会员", Some("vip")),
            ("我是Vip会员", Some("vip")),
            ("ｗｉｆｉ连不上", Some("wifi")),
            ("WIFI", Some("wifi")),
        ],
    );
}

#[test]
fn message_types_and_events() {
    let set = set("
rules:
  - id: welcome
    event: user_enter_tempsession
    reply: 欢迎
  - id: any-event
    msg_type: event
    priority: -1
    reply: 事件
  - id: image
    msg_type: image
    reply: 收到图片
  - id: text
    keywords: [图片]
    reply: 文本
");
    let decide = |msg_type: &str, event: Option<&str>, text: &str| {
        let input = MatchInput {
            msg_type,
            event,
            event_key: None,
            text,
            now: monday_morning(),
        };
        set.match_message(&input)
            .map(|h| (h.rule.id.clone(), set.explain(&h, &input)))
    };
    let (id, why) = decide("event", Some("user_enter_tempsession"), "").unwrap();
    assert_eq!(id, "welcome");
    assert_eq!(
        why,
        "msg_type event, event user_enter_tempsession (rule welcome)"
    );
    assert_eq!(
        decide("event", Some("subscribe"), "").unwrap().0,
        "any-event"
    );
    assert_eq!(decide("event", None, "").unwrap().0, "any-event");
    assert_eq!(decide("image", None, "").unwrap().0, "image");
    assert_eq!(decide("IMAGE", None, "").unwrap().0, "image");
    assert_eq!(decide("text", None, "图片").unwrap().0, "text");
    // A text rule never matches an image, an image rule never a text.
    assert!(decide("voice", None, "").is_none());
    assert!(decide("text", None, "你好").is_none());
}

#[test]
fn schedules_follow_the_clock_including_past_midnight() {
    let set = set(r#"
rules:
  - id: weekend
    priority: 200
    keywords: [人工]
    schedule: {days: [sat, sun]}
    reply: a
  - id: night
    priority: 200
    keywords: [人工]
    schedule: {days: [sun, mon, tue, wed, thu, fri], from: "18:00", to: "09:00"}
    reply: b
  - id: human
    priority: 100
    keywords: [人工]
    reply: c
"#);
    // (day of March 2026, hour, minute, winner); the 2nd is a Monday, the 7th a Saturday.
    let table: &[(u32, u32, u32, &str)] = &[
        (2, 10, 0, "human"),   // Monday, office hours
        (2, 17, 59, "human"),  // Monday, last minute
        (2, 18, 0, "night"),   // Monday evening
        (3, 2, 0, "night"),    // Tuesday 02:00: Monday's window
        (3, 8, 59, "night"),   // Tuesday, before 9
        (3, 9, 0, "human"),    // Tuesday 09:00
        (6, 23, 0, "night"),   // Friday night
        (7, 8, 0, "weekend"),  // Saturday morning: weekend ranks first
        (7, 20, 0, "weekend"), // Saturday evening
        (9, 8, 0, "night"),    // Monday 08:00: Sunday's window
        (9, 9, 30, "human"),   // Monday 09:30
    ];
    for &(day, hour, minute, want) in table {
        assert_eq!(
            text_at(&set, "转人工", at(day, hour, minute)).as_deref(),
            Some(want),
            "March {day} {hour:02}:{minute:02}"
        );
    }
}

#[test]
fn the_default_rule_is_never_matched_but_is_found() {
    let set = set("
rules:
  - id: hello
    exact: 你好
    reply: a
  - id: fallback
    default: true
    handoff: true
    reply: b
");
    assert_eq!(winner(&set, "随便"), None);
    assert_eq!(set.default_rule().unwrap().id, "fallback");
    assert!(set.default_rule().unwrap().is_default);
    assert_eq!(set.rule_count(), 2);
    assert_eq!(set.rule("hello").unwrap().id, "hello");
    assert!(set.rule("nope").is_none());
}

#[test]
fn why_names_keywords_with_character_offsets() {
    let set = set("
rules:
  - id: mp-dereg
    all: [注销, 小程序]
    reply: a
  - id: human
    keywords: [人工, 客服]
    reply: b
");
    let why = |text: &str| {
        let input = MatchInput {
            msg_type: "text",
            event: None,
            event_key: None,
            text,
            now: monday_morning(),
        };
        let hit = set.match_message(&input).unwrap();
        set.explain(&hit, &input)
    };
    assert_eq!(
        why("我要注销小程序"),
        "all 注销 + 小程序 at chars 2..4, 4..7 (rule mp-dereg)"
    );
    assert_eq!(
        why("转人工客服"),
        "keyword 人工 + 客服 at chars 1..3, 3..5 (rule human)"
    );
}

#[test]
fn actions_are_read_in_order() {
    let set = set("
rules:
  - id: card
    keywords: [小程序码]
    link: {title: 帮助, url: 'https://example.com/help'}
    image: {media_id: MEDIA}
    miniprogrampage: {title: 首页, pagepath: pages/index, thumb_media_id: THUMB}
    reply: [a, b]
    reply_all: true
    handoff: false
");
    let rule = set.rule("card").unwrap();
    assert_eq!(rule.action.replies, ["a", "b"]);
    assert!(rule.action.reply_all);
    assert!(!rule.action.handoff);
    let kinds: Vec<String> = rule.action.media.iter().map(|m| m.preview()).collect();
    assert_eq!(
        kinds,
        [
            "[link 帮助 https://example.com/help]",
            "[image MEDIA]",
            "[miniprogrampage 首页 pages/index]"
        ]
    );
}

#[test]
fn faq_entries_load_with_the_rules() {
    let set = set("
faq:
  - id: mp-dereg-general
    question: 如何注销小程序？
    answer: 见帮助页。
rules:
  - id: mp-dereg
    all: [注销, 小程序]
    faq: mp-dereg-general
");
    assert_eq!(set.faq().len(), 1);
    assert_eq!(
        set.rule("mp-dereg").unwrap().action.faq.as_deref(),
        Some("mp-dereg-general")
    );
}

#[test]
fn rule_set_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    assert_send_sync::<RulesHandle>();
}

#[test]
fn the_shipped_rules_load_without_any_problem() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let report = RuleSet::load_dir(&dir, &FaqSettings::default());
    let shown: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(shown.is_empty(), "{shown:#?}");
    let set = report.set.unwrap();
    assert_eq!(
        set.default_rule().map(|r| r.id.as_str()),
        Some("first-miss")
    );
    let welcome = MatchInput {
        msg_type: "event",
        event: Some("user_enter_tempsession"),
        event_key: None,
        text: "",
        now: monday_morning(),
    };
    let hit = set.match_message(&welcome).unwrap();
    assert_eq!(hit.rule.id, "welcome");
    assert!(!hit.rule.action.handoff);
    check_table(
        &set,
        &[
            ("转人工", Some("human")),
            ("人工客服", Some("human")),
            ("你好", Some("greeting")),
            ("你好，我想注销小程序", None),
            ("人工智能", None),
        ],
    );
    // Out of office hours (a Saturday, an early morning) the after-hours rule answers.
    assert_eq!(
        text_at(&set, "转人工", at(7, 12, 0)).as_deref(),
        Some("human-after-hours")
    );
    assert_eq!(
        text_at(&set, "转人工", at(3, 7, 0)).as_deref(),
        Some("human-after-hours")
    );
    // The calendar: National Day 2026 is a holiday, Saturday 2026-10-10 a working day.
    let day = |m: u32, d: u32, h: u32| {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, m, d, h, 0, 0)
            .single()
            .unwrap()
    };
    assert_eq!(
        text_at(&set, "转人工", day(10, 1, 10)).as_deref(),
        Some("human-after-hours")
    );
    assert_eq!(
        text_at(&set, "转人工", day(10, 10, 10)).as_deref(),
        Some("human")
    );
    // A second miss in a row hands off; the first one does not.
    assert_eq!(
        set.pick_default(&day(12, 1, 10), 1).map(|r| r.id.as_str()),
        Some("first-miss")
    );
    assert_eq!(
        set.pick_default(&day(12, 1, 10), 2).map(|r| r.id.as_str()),
        Some("second-miss")
    );
    assert_eq!(
        set.pick_default(&day(12, 1, 23), 3).map(|r| r.id.as_str()),
        Some("second-miss-after-hours")
    );
}

// ── Errors (the set is refused), each at its position ───────────────────────────────────────

#[test]
fn syntax_unknown_keys_and_wrong_types_are_located() {
    let got = problems("rules:\n  - id: a\n    keyword: [x]\n    reply: b\n");
    assert_problems(&got, &["r.yaml:3:5: unknown key `keyword`"]);
    let got = problems("rules:\n  - id: a\n    priority: [1]\n");
    assert_problems(&got, &["r.yaml:3:15: `priority`:"]);
    let got = problems("rules:\n  - id: a\n    keywords: [x\n");
    assert_problems(&got, &["r.yaml:4:1: YAML syntax error"]);
    let got = problems("rule:\n  - id: a\n");
    assert_problems(&got, &["r.yaml:1:1: unknown key `rule`"]);
    assert!(report(&[("r.yaml", "rule: []\n")]).set.is_none());
}

/// Regression: the loader reads every scalar as text, so `reply: ~` sent users a "~" and
/// `keywords: ~` matched one. A plain null is an error wherever it is; a quoted one is text.
#[test]
fn null_values_are_refused_and_quoted_ones_are_text() {
    let got =
        problems("rules:\n  - id: a\n    keywords: [x, ~]\n    reply: ~\n    handoff: true\n");
    assert_problems(
        &got,
        &[
            "r.yaml:3:19: a list item is null (`~`)",
            "r.yaml:4:12: `reply` is null (`~`)",
        ],
    );
    let got = problems("rules:\n  - id: null\n    keywords: [x]\n    reply: y\n");
    assert_problems(&got, &["r.yaml:2:9: `id` is null (`null`)"]);
    let got = problems("faq:\n  - id: f\n    question: q\n    answer: ~\n");
    assert_problems(&got, &["r.yaml:4:13: `answer` is null (`~`)"]);

    let set = set("rules:\n  - id: a\n    keywords: [\"~\", 'null']\n    reply: \"~\"\n");
    assert_eq!(winner(&set, "null"), Some("a".into()));
    assert_eq!(winner(&set, "~"), Some("a".into()));
    // Quoted booleans are text too: YAML's own rule, said in the message.
    let got = problems("rules:\n  - id: a\n    keywords: [x]\n    handoff: \"true\"\n");
    assert_problems(
        &got,
        &["r.yaml:4:14: `handoff` must be true or false (without quotes)"],
    );
    // An empty `rules:` (or `rules: ~`) is still an empty list.
    assert!(report(&[("r.yaml", "rules: ~\nfaq:\n")]).set.is_some());
}

#[test]
fn duplicate_ids_across_files() {
    let report = report(&[
        (
            "a.yaml",
            "rules:\n  - id: same\n    keywords: [x]\n    reply: a\n",
        ),
        (
            "b.yaml",
            "rules:\n  - id: other\n    keywords: [y]\n    reply: a\n  - id: same\n    keywords: [z]\n    reply: b\n",
        ),
    ]);
    assert!(report.set.is_none());
    let got: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_problems(
        &got,
        &["b.yaml:5:9: duplicate rule id `same` (first at a.yaml:2:9)"],
    );
}

#[test]
fn invalid_and_oversized_regexes() {
    let got = problems(
        r"rules:
  - id: a
    regex: ['ok', '(unclosed']
    reply: x
  - id: b
    regex: '(?:\w{100}){100}'
    reply: y
  - id: c
    regex: ''
    reply: z
",
    );
    assert_problems(
        &got,
        &[
            "r.yaml:3:19: invalid regex: unclosed group",
            "r.yaml:6:12: regex is over the size limit",
            "r.yaml:9:12: empty regex",
        ],
    );
}

#[test]
fn faq_naming_no_entry() {
    let got = problems(
        "faq:\n  - id: known\n    question: q\n    answer: a\nrules:\n  - id: a\n    keywords: [x]\n    faq: unknown\n",
    );
    assert_problems(
        &got,
        &["r.yaml:8:10: `faq: unknown` names no FAQ entry (known: known)"],
    );
}

#[test]
fn empty_keywords_and_lists() {
    let got = problems(
        "rules:
  - id: a
    keywords: [x, '', '  ']
    reply: r
  - id: b
    all: []
    reply: r
  - id: c
    exact: ''
    reply: r
",
    );
    assert_problems(
        &got,
        &[
            "r.yaml:3:19: empty keyword",
            "r.yaml:3:23: empty keyword",
            "r.yaml:6:10: `all` is an empty list",
            "r.yaml:9:12: empty exact value",
        ],
    );
}

#[test]
fn more_than_one_default_rule() {
    let got = problems(
        "rules:
  - id: d1
    default: true
    handoff: true
  - id: d2
    default: true
    reply: x
  - id: d3
    default: true
    misses: 2
    priority: 5
    reply: y
  - id: d4
    default: true
    schedule: {days: [offday]}
    reply: z
",
    );
    assert_problems(
        &got,
        &[
            "r.yaml:6:14: two default rules with the same conditions and priority: `d1` (at r.yaml:2:5)",
        ],
    );
    let got = problems(
        "rules:
  - id: d1
    default: true
    misses: 2
    handoff: true
  - id: d2
    default: true
    schedule: {days: [offday]}
    reply: x
  - id: kw
    keywords: [a]
    misses: 1
    reply: y
",
    );
    assert_problems(
        &got,
        &[
            "r.yaml:3:14: warning: no default rule without conditions",
            "r.yaml:12:13: `misses` applies only to a default rule",
        ],
    );
}

#[test]
fn rules_without_condition_or_action() {
    let got = problems(
        "rules:
  - id: no-condition
    reply: x
  - id: no-action
    keywords: [y]
    handoff: false
  - id: default-with-condition
    default: true
    keywords: [z]
    handoff: true
",
    );
    assert_problems(
        &got,
        &[
            "r.yaml:2:5: rule `no-condition` has no condition",
            "r.yaml:4:5: rule `no-action` has no action",
            "r.yaml:8:14: a default rule applies when nothing else does; its only conditions are `schedule` and `misses` (found `keywords`)",
        ],
    );
}

#[test]
fn examples_the_rule_does_not_win() {
    let got = problems(
        "rules:
  - id: human
    priority: 10
    keywords: [人工]
    reply: a
  - id: dereg
    keywords: [注销]
    reply: b
    examples: [怎么注销, 注销转人工, 你好]
    not_examples: [注销什么意思]
",
    );
    assert_problems(
        &got,
        &[
            "r.yaml:9:22: example \"注销转人工\" is not won by rule `dereg`: rule `human` (at r.yaml:2:5) wins it",
            "r.yaml:9:29: example \"你好\" is not won by rule `dereg`: no rule matches it",
            "r.yaml:10:20: not_example \"注销什么意思\" is won by rule `dereg`",
        ],
    );
}

#[test]
fn examples_take_schedules_as_satisfied() {
    let got = problems(
        "rules:
  - id: weekend
    keywords: [人工]
    schedule: {days: [sat]}
    reply: a
    examples: [人工]
",
    );
    assert!(got.is_empty(), "{got:#?}");
}

#[test]
fn schedule_and_event_errors() {
    let got = problems(
        r#"rules:
  - id: a
    keywords: [x]
    schedule: {days: [mon, funday], from: "25:00", to: "9:00"}
    reply: r
  - id: b
    msg_type: text
    event: subscribe
    reply: r
  - id: c
    keywords: [y]
    schedule: {from: "09:00", to: "09:00"}
    reply: r
"#,
    );
    assert_problems(
        &got,
        &[
            "r.yaml:4:28: `funday` is not a day",
            "r.yaml:4:43: `25:00` is not a time",
            "r.yaml:8:12: `event` applies only to `msg_type: event`",
            "r.yaml:12:15: `from` and `to` are equal",
        ],
    );
}

// ── Warnings (the set still loads), each at its position ────────────────────────────────────

#[test]
fn a_keyword_used_by_two_rules() {
    let report = report(&[(
        "r.yaml",
        "rules:
  - id: a
    keywords: [退款, 退货]
    reply: x
  - id: b
    keywords: [换货, 退货]
    reply: y
  - id: scheduled
    priority: 1
    keywords: [退货]
    schedule: {days: [sun]}
    reply: z
",
    )]);
    assert!(report.set.is_some());
    let got: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_problems(
        &got,
        &["r.yaml:6:20: warning: keyword \"退货\" is also used by rule `a` (at r.yaml:2:5)"],
    );
}

#[test]
fn a_shadowed_rule() {
    let report = report(&[(
        "r.yaml",
        "rules:
  - id: refund
    keywords: [退款]
    reply: x
  - id: refund-progress
    keywords: [退款进度, 查退款]
    reply: y
  - id: refund-all
    all: [退款, 多久]
    reply: z
  - id: refund-exact
    exact: [我要退款]
    reply: z
  - id: not-shadowed
    keywords: [进度查询, 进度]
    reply: w
  - id: higher
    priority: 1
    keywords: [查退款进度]
    reply: v
  - id: any-image
    msg_type: image
    reply: i
  - id: image-again
    msg_type: image
    reply: j
",
    )]);
    assert!(report.set.is_some());
    let got: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    let shadow = "can never win: rule";
    assert_problems(
        &got,
        &[
            "r.yaml:5:5: warning: rule `refund-progress` can never win: rule `refund` (at r.yaml:2:5)",
            "r.yaml:8:5: warning: rule `refund-all` can never win: rule `refund` (at r.yaml:2:5)",
            "r.yaml:11:5: warning: rule `refund-exact` can never win: rule `refund` (at r.yaml:2:5)",
            "r.yaml:24:5: warning: rule `image-again` can never win: rule `any-image` (at r.yaml:21:5)",
        ],
    );
    assert!(got.iter().all(|g| g.contains(shadow)));
}

#[test]
fn long_replies_too_many_messages_and_unknown_placeholders() {
    let long = "长".repeat(700);
    let yaml = format!(
        "rules:
  - id: long
    keywords: [a]
    reply: {long}
  - id: many
    keywords: [b]
    reply: [1, 2, 3, 4]
    reply_all: true
    image: {{media_id: m}}
    link: {{title: t, url: u}}
  - id: few
    keywords: [c]
    reply: [1, 2, 3, 4, 5, 6]
  - id: template
    regex: '订单(?P<order>\\d+)'
    reply: 订单 {{order}} / {{orderid}} / {{2}}
"
    );
    let report = report(&[("r.yaml", &yaml)]);
    assert!(report.set.is_none());
    let got: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_problems(
        &got,
        &[
            "r.yaml:4:12: warning: reply is 2100 bytes; WeChat takes at most 2000",
            "r.yaml:5:5: warning: one hit of rule `many` sends 6 messages; WeChat lets one user message receive at most 5",
            "r.yaml:16:12: `{2}` cannot be filled when the regex `订单(?P<order>\\d+)` matches",
            "r.yaml:16:12: `{orderid}` cannot be filled when the regex",
        ],
    );
    // Every regex of the rule must have the group; a keyword rule has none.
    let got = problems(
        "rules:
  - id: parcel
    regex: ['快递(?P<no>\\d+)', '物流']
    reply: 单号 {no}
  - id: kw
    keywords: [a]
    reply: '{1}'
",
    );
    assert_problems(
        &got,
        &[
            "r.yaml:4:12: `{no}` cannot be filled when the regex `物流` matches",
            "r.yaml:7:12: `{1}` cannot be filled: rule `kw` has no regex",
        ],
    );
}

#[test]
fn check_dirs_reports_every_folder_sorted() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("x.yaml"), "rules:\n  - id: x\n    reply: r\n").unwrap();
    std::fs::write(b.path().join("y.yaml"), "bogus: 1\n").unwrap();
    let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    let got = check_dirs(
        &dirs,
        &FaqSettings::default(),
        &crate::rules::LoadOptions::default(),
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got.windows(2).all(|w| w[0].location <= w[1].location));
    assert!(got.iter().all(Diagnostic::is_error));
}

#[test]
fn regexes_found_by_literals_and_regexes_in_the_set_both_match() {
    let set = set(r"
rules:
  - id: phone
    regex: '^1\d{10}$'
    reply: a
  - id: refund-form
    regex: '\w*退款单'
    reply: b
  - id: order
    regex: ['订单(?P<n>\d+)', '单号(?P<n>\d+)']
    reply: 'c {n}'
  - id: hello
    regex: '^(?:Hello|你好)'
    reply: d
");
    check_table(
        &set,
        &[
            ("13800138000", Some("phone")),
            ("138001380001", None),
            ("我的退款单", Some("refund-form")),
            ("订单123", Some("order")),
            ("单号456", Some("order")),
            ("HELLO there", Some("hello")),
            ("say hello", None),
        ],
    );
    assert_eq!(super::matcher::prefix_literals(r"\w*退款单"), None);
    assert_eq!(
        super::matcher::prefix_literals("^(?:Hello|你好)"),
        Some(vec!["hello".to_string(), "你好".to_string()])
    );
    assert_eq!(
        super::matcher::prefix_literals(r"订单号?\s*(\d+)"),
        Some(vec!["订单".to_string()])
    );
}
