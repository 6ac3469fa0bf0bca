//! The command line of SPEC §1, run as the real binary: `kefu check` (exit codes, one
//! `path:line:column: message` line per problem, for every error and warning class of SPEC §4),
//! `kefu try` (the exact `--json` fields for every action, sessions in stdin mode) and
//! `kefu eval` (the shipped evaluation sets pass, a bad set fails with its misses listed).

use serde_json::Value;

use crate::cli_helpers::*;

// ---- kefu check ---------------------------------------------------------------------------

#[test]
fn check_passes_the_shipped_rules_without_a_warning() {
    let run = kefu(&["check"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "", "no problem, no warning: {run:?}");
    assert!(!run.stderr.contains("warning"), "{run:?}");
    assert!(run.stderr.contains(": ok, "), "{run:?}");
    // The same through --rules.
    let run = kefu(&["check", "--rules", "rules"]);
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), ""), "{run:?}");
}

/// One error class of SPEC §4: the files, then the diagnostic line expected (file, line,
/// column, and the start of the message).
struct Case {
    what: &'static str,
    files: &'static [(&'static str, &'static str)],
    file: &'static str,
    at: (usize, usize),
    message: &'static str,
}

const ERRORS: &[Case] = &[
    Case {
        what: "YAML syntax",
        files: &[("a.yaml", "rules:\n  - id: a\n    keywords: [x\n")],
        file: "a.yaml",
        at: (4, 1),
        message: "YAML syntax error",
    },
    Case {
        what: "unknown key",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply: y\n    colour: red\n",
        )],
        file: "a.yaml",
        at: (5, 5),
        message: "unknown key `colour`",
    },
    Case {
        what: "unknown top-level key",
        files: &[("a.yaml", "rule:\n  - id: a\n")],
        file: "a.yaml",
        at: (1, 1),
        message: "unknown key `rule`",
    },
    Case {
        what: "wrong type",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply: y\n    priority: high\n",
        )],
        file: "a.yaml",
        at: (5, 15),
        message: "`priority` must be a whole number",
    },
    Case {
        what: "wrong type (bool)",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    handoff: sure\n",
        )],
        file: "a.yaml",
        at: (4, 14),
        message: "`handoff` must be true or false",
    },
    Case {
        what: "null value",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply: ~\n",
        )],
        file: "a.yaml",
        at: (4, 12),
        message: "`reply` is null (`~`)",
    },
    Case {
        what: "duplicate id across files",
        files: &[
            (
                "1.yaml",
                "rules:\n  - id: a\n    keywords: [x]\n    reply: y\n",
            ),
            (
                "sub/2.yaml",
                "rules:\n  - id: a\n    keywords: [q]\n    reply: z\n",
            ),
        ],
        file: "sub/2.yaml",
        at: (2, 9),
        message: "duplicate rule id `a` (first at ",
    },
    Case {
        what: "invalid regex",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    regex: \"(unclosed\"\n    reply: y\n",
        )],
        file: "a.yaml",
        at: (3, 12),
        message: "invalid regex",
    },
    Case {
        what: "regex over the size limit",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    regex: '\\w{1000}\\w{1000}\\w{1000}'\n    reply: y\n",
        )],
        file: "a.yaml",
        at: (3, 12),
        message: "regex is over the size limit",
    },
    Case {
        what: "faq naming no entry",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    faq: nope\n",
        )],
        file: "a.yaml",
        at: (4, 10),
        message: "`faq: nope` names no FAQ entry",
    },
    Case {
        what: "empty keyword",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x, \"\"]\n    reply: y\n",
        )],
        file: "a.yaml",
        at: (3, 19),
        message: "empty keyword",
    },
    Case {
        what: "two defaults",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    default: true\n    reply: y\n  - id: b\n    default: true\n    reply: z\n",
        )],
        file: "a.yaml",
        at: (6, 14),
        message: "two default rules with the same conditions and priority",
    },
    Case {
        what: "placeholder a keyword rule cannot fill",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [快递]\n    reply: 单号 {1}\n",
        )],
        file: "a.yaml",
        at: (4, 12),
        message: "`{1}` cannot be filled: rule `a` has no regex",
    },
    Case {
        what: "placeholder one of the regexes cannot fill",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    regex: ['快递(?P<no>\\d+)', '物流']\n    reply: 单号 {no}\n",
        )],
        file: "a.yaml",
        at: (4, 12),
        message: "`{no}` cannot be filled when the regex `物流` matches",
    },
    Case {
        what: "a calendar date that is not one",
        files: &[(
            "a.yaml",
            "calendar:\n  holidays: [2026-10-01..2026-10-08, 2026-02-30]\n",
        )],
        file: "a.yaml",
        at: (2, 38),
        message: "`2026-02-30` is not a date",
    },
    Case {
        what: "misses on a rule that is not a default",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    misses: 2\n    reply: y\n",
        )],
        file: "a.yaml",
        at: (4, 13),
        message: "`misses` applies only to a default rule",
    },
    Case {
        what: "a day that is not one",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    schedule: {days: [holiday]}\n    reply: y\n",
        )],
        file: "a.yaml",
        at: (4, 23),
        message: "`holiday` is not a day; use mon, tue, wed, thu, fri, sat, sun, workday or offday",
    },
    Case {
        what: "rule without condition",
        files: &[("a.yaml", "rules:\n  - id: a\n    reply: y\n")],
        file: "a.yaml",
        at: (2, 5),
        message: "rule `a` has no condition",
    },
    Case {
        what: "rule without action",
        files: &[("a.yaml", "rules:\n  - id: a\n    keywords: [x]\n")],
        file: "a.yaml",
        at: (2, 5),
        message: "rule `a` has no action",
    },
    Case {
        what: "failing example",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply: y\n    examples: [zzz]\n",
        )],
        file: "a.yaml",
        at: (5, 16),
        message: "example \"zzz\" is not won by rule `a`",
    },
    Case {
        what: "example won by a higher rule",
        files: &[(
            "a.yaml",
            "rules:\n  - id: big\n    priority: 5\n    keywords: [订单]\n    reply: y\n  - id: a\n    keywords: [订单号]\n    reply: z\n    examples: [订单号123]\n",
        )],
        file: "a.yaml",
        at: (9, 16),
        message: "example \"订单号123\" is not won by rule `a`: rule `big`",
    },
    Case {
        what: "not_example that wins",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply: y\n    not_examples: [xyz]\n",
        )],
        file: "a.yaml",
        at: (5, 20),
        message: "not_example \"xyz\" is won by rule `a`",
    },
    Case {
        what: "FAQ entry without answer",
        files: &[(
            "a.yaml",
            "faq:\n  - id: f\n    question: 怎么注销\n    answer: \"\"\n",
        )],
        file: "a.yaml",
        // FAQ problems point at the entry (its fields carry no position of their own).
        at: (2, 5),
        message: "FAQ entry `f`: empty `answer`",
    },
];

#[test]
fn check_reports_each_error_class_at_its_place_and_exits_1() {
    let mut failures = Vec::new();
    for case in ERRORS {
        let dir = RulesDir::new(case.files);
        let run = kefu(&["check", "--rules", dir.arg()]);
        let want = format!(
            "{}:{}:{}: {}",
            dir.file(case.file),
            case.at.0,
            case.at.1,
            case.message
        );
        let found = run.lines().iter().any(|l| l.starts_with(&want));
        if run.code != Some(1) || !found {
            failures.push(format!(
                "{}: want exit 1 and a line starting {want:?}, got {:?}\n{}{}",
                case.what, run.code, run.stdout, run.stderr
            ));
        }
        // Every line is a located problem.
        for line in run.lines() {
            let located = line
                .strip_prefix(dir.arg())
                .and_then(|rest| rest.split(':').nth(2))
                .is_some_and(|col| col.parse::<usize>().is_ok());
            if !located {
                failures.push(format!("{}: not path:line:column: {line}", case.what));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn check_reports_every_problem_of_a_file_not_only_the_first() {
    let dir = RulesDir::new(&[(
        "a.yaml",
        "rules:\n  - id: a\n    keywords: [\"\"]\n    reply: y\n  - id: b\n    keywords: [x]\n  - id: c\n    regex: \"(\"\n    reply: z\n",
    )]);
    let run = kefu(&["check", "--rules", dir.arg()]);
    assert_eq!(run.code, Some(1));
    let file = dir.file("a.yaml");
    let lines = run.lines();
    for want in [
        format!("{file}:3:16: empty keyword"),
        format!("{file}:5:5: rule `b` has no action"),
        format!("{file}:8:12: invalid regex"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&want)),
            "missing {want:?} in {lines:#?}"
        );
    }
}

const WARNINGS: &[Case] = &[
    Case {
        what: "shared keyword",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply: y\n  - id: b\n    keywords: [x, w]\n    reply: z\n",
        )],
        file: "a.yaml",
        at: (6, 16),
        message: "warning: keyword \"x\" is also used by rule `a`",
    },
    Case {
        what: "shadowed rule",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    priority: 10\n    keywords: [x]\n    reply: y\n  - id: b\n    all: [x, q]\n    reply: z\n",
        )],
        file: "a.yaml",
        at: (6, 5),
        message: "warning: rule `b` can never win: rule `a`",
    },
    Case {
        what: "a clarify topic capturing an entry's own phrasing",
        files: &[(
            "shop.yaml",
            "faq:\n  - id: vip-open\n    question: 怎么开通会员？\n    answer: 在会员中心开通。\n  - id: vip-cancel\n    question: 怎么取消会员自动续费？\n    similar: [不想续会员了]\n    answer: 在会员中心关闭自动续费。\nclarify:\n  - id: membership\n    when: [会员]\n    unless: [开通, 续费]\n    options: [vip-open, vip-cancel]\n",
        )],
        file: "shop.yaml",
        at: (5, 5),
        message: "warning: clarify `membership` (at ",
    },
    Case {
        what: "more than 5 replies",
        files: &[(
            "a.yaml",
            "rules:\n  - id: a\n    keywords: [x]\n    reply_all: true\n    reply: [1, 2, 3, 4, 5, 6]\n",
        )],
        file: "a.yaml",
        at: (2, 5),
        message: "warning: one hit of rule `a` sends 6 messages",
    },
];

fn assert_warns(what: &str, files: &[(&str, &str)], file: &str, at: (usize, usize), msg: &str) {
    let dir = RulesDir::new(files);
    let run = kefu(&["check", "--rules", dir.arg()]);
    let want = format!("{}:{}:{}: {msg}", dir.file(file), at.0, at.1);
    assert_eq!(
        run.code,
        Some(0),
        "{what}: a warning does not fail: {run:?}"
    );
    assert!(
        run.lines().iter().any(|l| l.starts_with(&want)),
        "{what}: want a line starting {want:?}: {run:?}"
    );
}

#[test]
fn check_prints_warnings_and_still_exits_0() {
    for case in WARNINGS {
        assert_warns(case.what, case.files, case.file, case.at, case.message);
    }
    let long = format!(
        "rules:\n  - id: a\n    keywords: [x]\n    reply: {}\n",
        "长".repeat(700)
    );
    assert_warns(
        "reply over 2000 bytes",
        &[("a.yaml", &long)],
        "a.yaml",
        (4, 12),
        "warning: reply is 2100 bytes",
    );
}

#[test]
fn check_of_a_config_checks_every_rules_folder_it_names() {
    let good = RulesDir::new(&[(
        "a.yaml",
        "rules:\n  - id: a\n    keywords: [x]\n    reply: y\n",
    )]);
    let bad = RulesDir::new(&[("b.yaml", "rules:\n  - id: b\n    keywords: [x]\n")]);
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("kefu.yaml"),
        format!(
            "rules_dir: \"{}\"\napps:\n  - id: a\n    appid: wx0000000000000000\n    token: t\n  - id: b\n    appid: wx0000000000000001\n    token: t\n    rules_dir: \"{}\"\n",
            good.arg(),
            bad.arg()
        ),
    )
    .unwrap();
    let run = kefu_in(root.path(), &["check"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "{}:2:5: rule `b` has no action",
            bad.file("b.yaml")
        )),
        "{run:?}"
    );
}

// ---- kefu try -----------------------------------------------------------------------------

/// The fields of SPEC §1, in its order.
const TRY_FIELDS: [&str; 8] = [
    "input",
    "rule",
    "faq",
    "action",
    "replies",
    "handoff",
    "candidates",
    "why",
];

/// Parses one `kefu try --json` line and checks it has exactly the SPEC fields and types.
fn try_line(line: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = TRY_FIELDS.to_vec();
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want, "{line}");
    assert!(v["input"].is_string());
    assert!(v["rule"].is_string() || v["rule"].is_null());
    assert!(v["faq"].is_string() || v["faq"].is_null());
    assert!(
        ["reply", "faq", "clarify", "handoff", "default", "ignore"]
            .contains(&v["action"].as_str().unwrap()),
        "{line}"
    );
    assert!(
        v["replies"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );
    assert!(v["handoff"].is_boolean());
    for c in v["candidates"].as_array().unwrap() {
        let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["faq", "score"], "{line}");
        let score = c["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{line}");
    }
    assert!(!v["why"].as_str().unwrap().is_empty(), "{line}");
    v
}

/// `kefu try --json ARGS MESSAGE`: the one JSON line it prints.
fn try_json(args: &[&str]) -> Value {
    let mut all = vec!["try", "--json"];
    all.extend_from_slice(args);
    let run = kefu(&all);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "one line per message: {run:?}");
    try_line(lines[0])
}

const TEST_RULES: &str = r#"
rules:
  - id: order
    regex: '订单号?\s*[:：]?\s*(?P<order>\d{6,20})'
    reply: 已收到订单 {order}，我们会尽快为您查询。
  - id: human
    keywords: [转人工]
    reply: 正在为您转接人工客服。
    handoff: true
  - id: dereg
    all: [个体, 小程序, 注销]
    faq: f
faq:
  - id: f
    question: 个体户小程序怎么注销？
    answer: 个体户的答案。
"#;

#[test]
fn try_json_for_a_rule_hit() {
    let dir = RulesDir::new(&[("a.yaml", TEST_RULES)]);
    let v = try_json(&["--rules", dir.arg(), "我的订单号：2026112700"]);
    assert_eq!(v["input"], "我的订单号：2026112700");
    assert_eq!(v["rule"], "order");
    assert_eq!(v["faq"], Value::Null);
    assert_eq!(v["action"], "reply");
    assert_eq!(
        v["replies"],
        serde_json::json!(["已收到订单 2026112700，我们会尽快为您查询。"])
    );
    assert_eq!(v["handoff"], false);
    assert_eq!(v["candidates"], serde_json::json!([]), "a rule decided");
    assert!(v["why"].as_str().unwrap().contains("order"), "{v}");

    let v = try_json(&["--rules", dir.arg(), "转人工"]);
    assert_eq!(
        (&v["rule"], &v["action"], &v["handoff"]),
        (&"human".into(), &"handoff".into(), &true.into())
    );
    assert_eq!(v["replies"], serde_json::json!(["正在为您转接人工客服。"]));

    // A rule with `faq:`: action faq, through the rule.
    let v = try_json(&["--rules", dir.arg(), "个体户的小程序如何注销"]);
    assert_eq!(
        (&v["rule"], &v["faq"], &v["action"]),
        (&"dereg".into(), &"f".into(), &"faq".into())
    );
    assert_eq!(v["replies"], serde_json::json!(["个体户的答案。"]));
}

#[test]
fn try_json_for_an_faq_answer_lists_scored_candidates() {
    let v = try_json(&["个体户小程序注销流程"]);
    assert_eq!(v["rule"], Value::Null);
    assert_eq!(v["faq"], "mp-dereg-individual");
    assert_eq!(v["action"], "faq");
    assert_eq!(v["handoff"], false);
    let reply = v["replies"][0].as_str().unwrap();
    assert!(reply.contains("https://kf.qq.com/"), "{reply}");
    let candidates = v["candidates"].as_array().unwrap();
    assert!(!candidates.is_empty());
    assert_eq!(candidates[0]["faq"], "mp-dereg-individual");
    let scores: Vec<f64> = candidates
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
}

#[test]
fn try_json_for_a_clarify_menu() {
    let v = try_json(&["注销需要什么"]);
    assert_eq!(
        (&v["rule"], &v["faq"], &v["action"]),
        (&Value::Null, &Value::Null, &"clarify".into())
    );
    let replies = v["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "one text with the numbered questions");
    let menu = replies[0].as_str().unwrap();
    for n in ["\n1. ", "\n2. ", "\n3. "] {
        assert!(menu.contains(n), "{menu}");
    }
    assert!(v["candidates"].as_array().unwrap().len() >= 2, "{v}");
}

#[test]
fn try_json_for_the_default_rule() {
    // The shipped rules: a first miss explains what the bot answers, without a handoff (a
    // second one in a row hands off: tests/data/day.yaml).
    let v = try_json(&["今天天气怎么样"]);
    assert_eq!(
        (&v["rule"], &v["faq"], &v["action"], &v["handoff"]),
        (
            &"first-miss".into(),
            &Value::Null,
            &"default".into(),
            &false.into()
        )
    );
    assert_eq!(v["replies"].as_array().unwrap().len(), 1);
    assert!(v["replies"][0].as_str().unwrap().contains("人工"), "{v}");
}

#[test]
fn try_json_ignores_when_nothing_applies_and_there_is_no_default() {
    let dir = RulesDir::new(&[("a.yaml", TEST_RULES)]);
    let v = try_json(&["--rules", dir.arg(), "今天天气怎么样"]);
    assert_eq!(
        (&v["rule"], &v["faq"], &v["action"], &v["handoff"]),
        (&Value::Null, &Value::Null, &"ignore".into(), &false.into())
    );
    assert_eq!(v["replies"], serde_json::json!([]));
}

#[test]
fn try_stdin_keeps_the_session_so_a_menu_is_answered_by_its_number() {
    let run = kefu_stdin(&["try", "--json"], "注销需要什么\n1\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 2, "{run:?}");
    let menu = try_line(lines[0]);
    assert_eq!(menu["action"], "clarify");
    // The shipped deregistration menu lists the Mini Program entry first.
    let first = menu["replies"][0].as_str().unwrap();
    assert!(first.contains("1. 小程序如何注销"), "{first}");
    let answer = try_line(lines[1]);
    assert_eq!(answer["input"], "1");
    assert_eq!(
        (&answer["action"], &answer["faq"]),
        (&"faq".into(), &"mp-dereg-general".into())
    );
    let text = answer["replies"][0].as_str().unwrap();
    assert!(text.starts_with("您好，小程序可以注销"), "{text}");

    // The number answers only the next message: a second `1` is not a choice any more.
    let run = kefu_stdin(&["try", "--json"], "注销需要什么\n1\n1\n");
    let third = try_line(run.lines()[2]);
    assert_ne!(third["action"], "faq", "{third}");
}

#[test]
fn try_without_a_menu_does_not_read_a_number_as_a_choice() {
    let v = try_json(&["1"]);
    assert_ne!(v["action"], "faq", "{v}");
    assert_eq!(v["faq"], Value::Null);
}

#[test]
fn try_stdin_text_output_shows_each_message() {
    let run = kefu_stdin(&["try"], "注销需要什么\n\n2\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("> 注销需要什么\n  action: clarify"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("> 2\n  action: faq  faq: oa-dereg-general"),
        "a blank line is skipped, not a message: {run:?}"
    );
}

// ---- kefu eval ----------------------------------------------------------------------------

#[test]
fn eval_passes_the_shipped_sets() {
    for set in [
        "tests/data/dev-set.yaml",
        "tests/data/faq-eval.yaml",
        "tests/data/faq-issue-14.yaml",
    ] {
        let run = kefu(&["eval", "--min-accuracy", "0.95", "--max-false", "0", set]);
        assert_eq!(run.code, Some(0), "{set}: {run:?}");
        assert!(
            run.stdout.contains("(100.0%)") && run.stdout.contains(", 0 false answers"),
            "{set}: {run:?}"
        );
        assert!(!run.stdout.contains("miss:"), "{set}: {run:?}");

        let run = kefu(&["eval", "--json", "--min-accuracy", "95", set]);
        assert_eq!(run.code, Some(0), "{set}: {run:?}");
        let v: Value = serde_json::from_str(&run.stdout).expect("--json parses");
        assert_eq!(v["accuracy"], 1.0, "{set}: {v}");
        assert_eq!(v["false_answers"], 0);
        assert_eq!(v["right"], v["total"]);
        assert_eq!(v["misses"], serde_json::json!([]));
    }
}

#[test]
fn eval_fails_below_the_threshold_and_lists_the_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("bad.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - {q: \"如何注销小程序\", expect: oa-dereg-general}\n  - {q: \"怎么申请退款\", expect: none}\n  - {q: \"帮我注销一下\", expect: clarify}\n",
    )
    .unwrap();
    let cases = cases.to_str().unwrap();
    let run = kefu(&["eval", "--min-accuracy", "0.95", "--max-false", "0", cases]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("3 cases: 2 right"), "{run:?}");
    assert!(
        run.lines().iter().any(|l| l.contains("miss:")
            && l.contains("如何注销小程序")
            && l.contains("expected oa-dereg-general")
            && l.contains("got mp-dereg-general")),
        "{run:?}"
    );

    let run = kefu(&["eval", "--json", "--min-accuracy", "0.95", cases]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).expect("--json parses");
    assert_eq!(v["misses"][0]["q"], "如何注销小程序");
    assert_eq!(v["misses"][0]["got"]["faq"], "mp-dereg-general");
}

#[test]
fn eval_fails_on_a_false_answer_over_max_false() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("false.yaml");
    // Called off topic, but it is answered from the FAQ: a false answer.
    std::fs::write(
        &cases,
        "cases:\n  - {q: \"个体户小程序注销流程\", expect: none}\n  - {q: \"怎么申请退款\", expect: none}\n",
    )
    .unwrap();
    let cases = cases.to_str().unwrap();
    let run = kefu(&["eval", "--max-false", "0", cases]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("1 false answers"), "{run:?}");
    let run = kefu(&["eval", "--max-false", "1", cases]);
    assert_eq!(run.code, Some(0), "{run:?}");
}

/// Regression: the io error was printed twice (in the message and again as its source).
#[test]
fn eval_of_a_missing_cases_file_names_it_and_its_cause_once() {
    let run = kefu(&["eval", "tests/data/no-such-set.yaml"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("tests/data/no-such-set.yaml"),
        "{run:?}"
    );
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{run:?}"
    );
}

#[test]
fn a_config_elsewhere_with_a_relative_rules_dir_uses_the_working_directorys_rules() {
    // `./rules` is not next to this config, but is in the working directory (the repository).
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("kefu.yaml");
    std::fs::write(
        &config,
        "rules_dir: \"./rules\"\napps:\n  - id: x\n    appid: wx1\n    token: t\n",
    )
    .expect("config");
    let run = kefu(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("15 FAQ entries"), "{run:?}");
    assert!(
        run.stderr.contains("working directory"),
        "the choice is logged: {run:?}"
    );
}

#[test]
fn the_shop_example_passes_check_and_its_cases() {
    let run = kefu(&["check", "--config", "examples/shop/kefu.yaml"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.trim().is_empty(),
        "no problem, not even a warning: {run:?}"
    );
    let run = kefu(&[
        "eval",
        "--config",
        "examples/shop/kefu.yaml",
        "--min-accuracy",
        "1.0",
        "--max-false",
        "0",
        "examples/shop/cases.yaml",
    ]);
    assert_eq!(run.code, Some(0), "{run:?}");
}

#[test]
fn the_rule_examples_in_the_guide_pass_check() {
    // docs/rules.md teaches with YAML examples: each must load without errors, next to the
    // shipped FAQ (examples point at its entries). Fragments (list items) are wrapped in the
    // top-level key they belong under.
    let root = std::path::Path::new(REPO);
    let guide = std::fs::read_to_string(root.join("docs/rules.md")).expect("guide");
    let faq = std::fs::read_to_string(root.join("rules/faq/deregistration.yaml")).expect("faq");
    let mut faq_entries = String::new();
    let mut inside = false;
    for line in faq.lines() {
        if !line.starts_with([' ', '#']) && !line.is_empty() {
            inside = line.starts_with("faq:");
        }
        if inside {
            faq_entries.push_str(line);
            faq_entries.push('\n');
        }
    }
    let mut checked = 0;
    for block in guide.split("```yaml").skip(1) {
        let Some((yaml, _)) = block.split_once("```") else {
            continue;
        };
        if yaml.contains("apps:") || yaml.contains("cases:") {
            continue;
        }
        let top_level = yaml.lines().any(|l| {
            ["rules:", "faq:", "synonyms:", "clarify:"]
                .iter()
                .any(|k| l.starts_with(k))
        });
        let text = if top_level {
            yaml.to_string()
        } else if yaml.lines().any(|l| l.trim_start().starts_with("- id:")) {
            let key = if yaml.contains("answer:") {
                "faq"
            } else {
                "rules"
            };
            format!("{key}:\n{yaml}")
        } else {
            continue;
        };
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("example.yaml"), &text).expect("write");
        // Examples point at the shipped entries (`faq: <id>`, clarify options): put the shipped
        // `faq:` list (without its synonyms and clarify topics) beside any example that does not
        // bring its own.
        if !text.lines().any(|l| l.starts_with("faq:")) {
            std::fs::write(dir.path().join("shipped-faq.yaml"), &faq_entries).expect("write faq");
        }
        // Image files the example names exist (a PNG header), and its fetch hosts and
        // variables are configured, as an operator would have them.
        for line in text.lines() {
            for key in ["file:", "thumb_file:"] {
                if let Some((_, rest)) = line.split_once(key) {
                    let name = rest.trim().trim_end_matches('}').trim().trim_matches('"');
                    let name = name.split_whitespace().next().unwrap_or(name);
                    let path = dir.path().join(name);
                    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&path, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").expect("image");
                }
            }
        }
        let config = dir.path().join("kefu.yaml.cfg");
        std::fs::write(
            &config,
            format!(
                "rules_dir: \"{}\"\nfetch_hosts: [shop.example.com, \"127.0.0.1:8000\"]\napps:\n  - id: a\n    appid: wx0000000000000000\n    token: t\n",
                dir.path().display()
            ),
        )
        .expect("config");
        let run = kefu_env(
            &["check", "--config", config.to_str().expect("utf-8")],
            &[("SHOP_TOKEN", "demo-token")],
        );
        assert_eq!(run.code, Some(0), "example does not load:\n{text}\n{run:?}");
        checked += 1;
    }
    assert!(checked >= 8, "found {checked} examples");
}

#[test]
fn eval_meets_the_targets_on_the_repos_own_sets() {
    // Through the whole decision (rules, FAQ, default): ≥ 97% and no false answer on the
    // development set and on every set of our own.
    for set in [
        "tests/data/dev-set.yaml",
        "tests/data/faq-eval.yaml",
        "tests/data/faq-holdout.yaml",
        "tests/data/faq-probe.yaml",
        "tests/data/faq-issue-14.yaml",
        "tests/data/faq-after-tuning.yaml",
    ] {
        let run = kefu(&["eval", "--min-accuracy", "0.97", "--max-false", "0", set]);
        assert_eq!(run.code, Some(0), "{set}: {run:?}");
    }
}

#[test]
fn eval_meets_the_targets_on_the_blind_set() {
    // Written and frozen before the tuning of issue 14 (see its header): ≥ 95%, no false answer.
    let run = kefu(&[
        "eval",
        "--min-accuracy",
        "0.95",
        "--max-false",
        "0",
        "tests/data/faq-blind.yaml",
    ]);
    assert_eq!(run.code, Some(0), "{run:?}");
}

#[test]
fn other_wechat_products_get_a_plain_answer_and_a_person_offer() {
    for q in ["怎么注销微信号", "视频号怎么注销", "企业微信怎么注销"] {
        let v = try_json(&[q]);
        assert_eq!(v["rule"], "other-wechat-products", "{q}: {v}");
        assert_eq!(v["faq"], Value::Null, "{q}: {v}");
        let reply = v["replies"][0].as_str().unwrap_or_default().to_string();
        assert!(
            reply.contains("小程序") && reply.contains("公众号"),
            "{q}: {reply}"
        );
        assert!(reply.contains("发送“人工”"), "{q}: {reply}");
    }
    // A question that also names a Mini Program is the FAQ's.
    let v = try_json(&["主体已注销的小程序要提供管理员微信号吗"]);
    assert_ne!(v["rule"], "other-wechat-products", "{v}");
}

/// `kefu try --json` in stdin mode (one user's session across the lines): one object per line.
fn try_json_lines(input: &str) -> Vec<Value> {
    let run = kefu_stdin(&["try", "--json"], input);
    assert_eq!(run.code, Some(0), "{run:?}");
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn try_stdin_a_follow_up_is_read_with_the_kind_of_the_last_answer() {
    let lines = try_json_lines("小程序怎么注销\n个体户的呢\n公众号怎么注销\n个体户的呢\n");
    assert_eq!(lines[1]["faq"], "mp-dereg-individual", "{}", lines[1]);
    assert_eq!(lines[3]["faq"], "oa-dereg-individual", "{}", lines[3]);
    // A fresh user asking the same is asked which account.
    let v = try_json(&["个体户的呢"]);
    assert_ne!(v["action"], "faq", "{v}");
}

#[test]
fn try_stdin_a_menu_answered_in_words_is_read_with_its_question() {
    // Users often answer a menu with words, not its number.
    let lines =
        try_json_lines("注销需要什么\n公众号\n帮我注销一下\n个体户的小程序\n注销需要什么\n算了\n");
    assert_eq!(lines[0]["action"], "clarify");
    assert_eq!(lines[1]["faq"], "oa-dereg-general", "{}", lines[1]);
    assert_eq!(lines[3]["faq"], "mp-dereg-individual", "{}", lines[3]);
    // A reply that settles nothing is decided on its own (here: the default rule).
    assert_eq!(lines[5]["action"], "default", "{}", lines[5]);
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    // `kefu try` in stdin mode answers every line: 20,000 lines are far more than a pipe holds.
    let input = "你好\n".repeat(20_000);
    let (status, stderr) = kefu_into_closed_pipe(&["try", "--rules", "rules"], &input, 100);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.code() != Some(101), "{status:?}: {stderr}");
}
