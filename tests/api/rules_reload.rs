//! Hot reload seen through the running server (SPEC §4 "Hot reload"): a change under the rules
//! folder is followed by the next pushes, a broken change is refused whole while the old rules
//! keep answering (and `/healthz` and `/metrics` say so), an editor's atomic save counts, pushes
//! made while rules change never fail, and SIGHUP reloads the real binary.
//!
//! Answers are read from an official account's passive text reply, so each test sees exactly
//! what a user would get. Every wait polls with a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bot_helpers::*;
use crate::cli_helpers::Daemon;
use crate::helpers::*;

const BASE: &str = r#"
rules:
  - id: hello
    keywords: [你好]
    reply: 您好！
"#;

async fn spawn_oa(files: &[(&'static str, &str)]) -> TestApp {
    spawn_app_with(TestConfig {
        apps: vec![oa("oa")],
        rules: files.iter().map(|(n, t)| (*n, t.to_string())).collect(),
        ..TestConfig::default()
    })
    .await
}

/// Waits until `text` from a fresh user gets `want`.
async fn answers(app: &TestApp, text: &str, want: Answer) -> bool {
    let mut n = 0u32;
    eventually(RELOAD_WITHIN, async || {
        n += 1;
        app.ask("oa", &format!("o_poll_{n}"), text).await == want
    })
    .await
}

fn text(t: &str) -> Answer {
    Answer::Text(t.to_string())
}

#[tokio::test]
async fn healthz_shows_exactly_the_spec_fields() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    let h = app.healthz().await;
    let mut top: Vec<&str> = h.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    // SPEC §3, §9 (apps and their dry-run) and §11 (the store's health).
    assert_eq!(top, ["apps", "rules", "status", "store"]);
    assert_eq!(h["apps"]["oa"]["dry_run"], true, "{h}");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["store"], serde_json::json!({"ok": true}));
    let mut keys: Vec<&str> = h["rules"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["faq", "last_error", "loaded_at", "rules", "version"]);
    assert_eq!(h["rules"]["version"], 1);
    assert_eq!(h["rules"]["rules"], 1);
    assert_eq!(h["rules"]["faq"], 0);
    assert!(h["rules"]["last_error"].is_null());
    let loaded_at = h["rules"]["loaded_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(loaded_at).is_ok(),
        "{loaded_at}"
    );
}

#[tokio::test]
async fn a_new_rules_file_is_followed_by_the_next_pushes() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    // No rule, no FAQ, no default: nothing to say.
    assert_eq!(app.ask("oa", "o_1", "我要开发票").await, Answer::Success);

    app.write_rules(
        "invoice.yaml",
        &keyword_rule("invoice", "发票", "发票请在订单详情页申请。"),
    );
    assert!(
        answers(&app, "我要开发票", text("发票请在订单详情页申请。")).await,
        "the new rule never answered"
    );
    let h = app.healthz().await;
    assert_eq!(h["rules"]["version"], 2);
    assert_eq!(h["rules"]["rules"], 2);
    // The old rule still answers.
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));
}

#[tokio::test]
async fn a_modified_rule_answers_with_its_new_reply() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));
    app.write_rules("base.yaml", &BASE.replace("您好！", "您好，请讲。"));
    assert!(answers(&app, "你好", text("您好，请讲。")).await);
    assert_eq!(app.rules_version().await, 2);
}

#[tokio::test]
async fn a_deleted_file_takes_its_rules_with_it() {
    let app = spawn_oa(&[
        ("base.yaml", BASE),
        (
            "invoice.yaml",
            &keyword_rule("invoice", "发票", "发票请在订单详情页申请。"),
        ),
    ])
    .await;
    assert_eq!(
        app.ask("oa", "o_1", "发票").await,
        text("发票请在订单详情页申请。")
    );
    std::fs::remove_file(app.rules_dir().join("invoice.yaml")).unwrap();
    assert!(answers(&app, "发票", Answer::Success).await);
    let h = app.healthz().await;
    assert_eq!(
        (h["rules"]["version"].as_u64(), h["rules"]["rules"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));
}

#[tokio::test]
async fn invalid_yaml_keeps_the_old_rules_serving_until_the_next_valid_edit() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    let before = metric(
        &app.metrics().await,
        "kefu_reloads_total{outcome=\"refused\"}",
    );
    assert_eq!(before, None, "nothing refused yet");

    // A syntax error in the edited file (the rule's reply changes too: it must not serve).
    app.write_rules(
        "base.yaml",
        "rules:\n  - id: hello\n    keywords: [你好\n    reply: 坏了\n",
    );
    let mut error = String::new();
    assert!(
        eventually(RELOAD_WITHIN, async || {
            error = app.healthz().await["rules"]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !error.is_empty()
        })
        .await,
        "last_error never set"
    );
    assert!(
        error.contains("base.yaml:") && error.contains("YAML syntax error"),
        "last_error should locate the problem: {error}"
    );
    assert_eq!(
        app.rules_version().await,
        1,
        "a refused set is not a new version"
    );
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));
    let refused = metric(
        &app.metrics().await,
        "kefu_reloads_total{outcome=\"refused\"}",
    );
    assert!(
        refused >= Some(1.0),
        "refused reloads not counted: {refused:?}"
    );

    // The next valid edit serves and clears the error.
    app.write_rules("base.yaml", &BASE.replace("您好！", "修好了"));
    assert!(answers(&app, "你好", text("修好了")).await);
    let h = app.healthz().await;
    assert!(h["rules"]["last_error"].is_null(), "{h}");
    assert_eq!(h["rules"]["version"], 2);
    let swapped = metric(
        &app.metrics().await,
        "kefu_reloads_total{outcome=\"swapped\"}",
    );
    assert!(swapped >= Some(1.0), "{swapped:?}");
}

#[tokio::test]
async fn a_set_with_an_error_in_another_file_is_refused_whole() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    // One new valid rule and one duplicate id, in a new file: neither may serve.
    app.write_rules(
        "more.yaml",
        "rules:\n  - id: invoice\n    keywords: [发票]\n    reply: 新规则\n  - id: hello\n    keywords: [嗨]\n    reply: 重复\n",
    );
    let mut error = String::new();
    assert!(
        eventually(RELOAD_WITHIN, async || {
            error = app.healthz().await["rules"]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !error.is_empty()
        })
        .await
    );
    assert!(
        error.contains("more.yaml:5:9: duplicate rule id `hello`"),
        "{error}"
    );
    assert_eq!(app.ask("oa", "o_1", "发票").await, Answer::Success);
    assert_eq!(app.ask("oa", "o_1", "嗨").await, Answer::Success);
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));

    // Removing the duplicate lets the valid rule in.
    app.write_rules("more.yaml", &keyword_rule("invoice", "发票", "新规则"));
    assert!(answers(&app, "发票", text("新规则")).await);
    assert!(app.healthz().await["rules"]["last_error"].is_null());
}

#[tokio::test]
async fn an_editors_atomic_save_is_picked_up() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    save_atomically(
        &app.rules_dir().join("base.yaml"),
        &BASE.replace("您好！", "原子保存"),
    );
    assert!(answers(&app, "你好", text("原子保存")).await);
    // Twice: the watch survives the file it watched being replaced.
    save_atomically(
        &app.rules_dir().join("base.yaml"),
        &BASE.replace("您好！", "再存一次"),
    );
    assert!(answers(&app, "你好", text("再存一次")).await);
    assert_eq!(app.rules_version().await, 3);
}

#[tokio::test]
async fn a_touch_without_change_is_not_a_new_version() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    // A real change first, so that the watcher is known to be live…
    app.write_rules("x.yaml", &keyword_rule("x", "发票", "x"));
    assert!(answers(&app, "发票", text("x")).await);
    // …then the same bytes again, and a change after it: only the change counts.
    app.write_rules("x.yaml", &keyword_rule("x", "发票", "x"));
    app.write_rules("base.yaml", &BASE.replace("您好！", "变了"));
    assert!(answers(&app, "你好", text("变了")).await);
    assert_eq!(app.rules_version().await, 3);
}

/// Several reloads (and one refused edit) while pushes keep coming: every push is answered 200
/// with a reply of one whole set (SPEC: "No request ever sees a half-loaded set").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_edited_under_load_never_fail_a_request() {
    let rules = |v: u32| {
        format!(
            "rules:\n  - id: hello\n    keywords: [你好]\n    reply: 版本{v}\n  - id: other\n    keywords: [再见]\n    reply: 再见{v}\n"
        )
    };
    let app = Arc::new(spawn_oa(&[("base.yaml", &rules(0))]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let app = app.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let r = app
                    .post_text("oa", &format!("o_load_{w}_{n}"), "你好")
                    .await;
                seen.push((r.status, answer_of(&r)));
            }
            seen
        }));
    }
    let last = 5;
    for v in 1..=last {
        if v == 3 {
            // A broken edit in the middle: refused, the previous version keeps answering.
            app.write_rules("base.yaml", "rules:\n  - id: hello\n    keywords: [你好\n");
            assert!(
                eventually(RELOAD_WITHIN, async || {
                    !app.healthz().await["rules"]["last_error"].is_null()
                })
                .await
            );
        }
        app.write_rules("base.yaml", &rules(v));
        let want = format!("版本{v}");
        assert!(
            eventually(RELOAD_WITHIN, async || {
                app.ask("oa", "o_probe", "你好").await.text() == Some(want.as_str())
            })
            .await,
            "version {v} never served"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        for (status, answer) in w.await.unwrap() {
            total += 1;
            assert_eq!(status, 200);
            let t = answer.text().unwrap_or_default().to_string();
            let version: u32 = t
                .strip_prefix("版本")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("not an answer of any set: {answer:?}"));
            assert!(version <= last);
        }
    }
    assert!(total >= 20, "too few pushes under reload: {total}");
    assert_eq!(app.rules_version().await, u64::from(last) + 1);
}

/// SIGHUP reloads the real binary. The edit is made to a file outside the watched folders,
/// reached through a symlink in the rules folder (as a mounted ConfigMap is): the watcher sees
/// no event for it, so only the signal can make the new text serve.
#[tokio::test]
async fn sighup_reloads_the_running_daemon() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(
        outside.join("ext.yaml"),
        keyword_rule("ext", "扩展", "第一版"),
    )
    .unwrap();
    let rules = root.path().join("srv").join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("base.yaml"), BASE).unwrap();
    std::os::unix::fs::symlink(outside.join("ext.yaml"), rules.join("ext.yaml")).unwrap();

    let daemon = Daemon::start(&root.path().join("srv"), "xml", "official_account").await;
    assert_eq!(daemon.ask("o_1", "扩展").await, text("第一版"));
    assert_eq!(daemon.rules_version().await, 1);

    std::fs::write(
        outside.join("ext.yaml"),
        keyword_rule("ext", "扩展", "第二版"),
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(
        eventually(RELOAD_WITHIN, async || daemon.rules_version().await == 2).await,
        "SIGHUP did not reload"
    );
    assert_eq!(daemon.ask("o_2", "扩展").await, text("第二版"));
    assert!(daemon.is_running(), "SIGHUP must not stop the daemon");

    // A second SIGHUP with nothing changed: still running, same version.
    daemon.signal("HUP");
    assert_eq!(daemon.ask("o_3", "你好").await, text("您好！"));
    assert!(daemon.is_running());
    // That reload reads the files: wait for it to end before the next edit rewrites one, or it
    // could read it half-written (as CI once saw).
    let client = test_client();
    let unchanged = r#"kefu_reloads_total{outcome="unchanged"}"#;
    assert!(
        eventually(RELOAD_WITHIN, async || {
            let m = crate::delivery_helpers::metrics_at(&client, daemon.admin_port).await;
            crate::delivery_helpers::sample(&m, unchanged).is_some_and(|n| n >= 1.0)
        })
        .await,
        "the second SIGHUP's reload did not end"
    );
    assert_eq!(daemon.rules_version().await, 2);

    // A broken edit seen through SIGHUP is refused like any other: shown, old rules serve.
    std::fs::write(
        outside.join("ext.yaml"),
        "rules:\n  - id: ext\n    keywords: [扩展\n",
    )
    .unwrap();
    daemon.signal("HUP");
    let mut error = String::new();
    assert!(
        eventually(RELOAD_WITHIN, async || {
            error = daemon.healthz().await["rules"]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !error.is_empty()
        })
        .await,
        "a refused SIGHUP reload is not shown"
    );
    assert!(error.contains("ext.yaml:"), "{error}");
    assert_eq!(daemon.ask("o_4", "扩展").await, text("第二版"));
    assert!(daemon.is_running());

    assert!(daemon.stop().await, "SIGTERM: the daemon should exit 0");
}

/// An app with its own rules folder reloads it on its own, and a refused reload there shows in
/// `/healthz` `last_error` like one of the global folder (the operator has one place to look).
#[tokio::test]
async fn an_apps_own_rules_folder_reloads_and_reports_its_errors() {
    let own = tempfile::tempdir().unwrap();
    std::fs::write(
        own.path().join("own.yaml"),
        keyword_rule("own", "你好", "独立规则"),
    )
    .unwrap();
    let mut spec = oa("oa2");
    spec.extra =
        Box::leak(format!("    rules_dir: \"{}\"\n", own.path().display()).into_boxed_str());
    let app = spawn_app_with(TestConfig {
        apps: vec![oa("oa"), spec],
        rules: vec![("base.yaml", BASE.to_string())],
        ..TestConfig::default()
    })
    .await;
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));
    assert_eq!(app.ask("oa2", "o_1", "你好").await, text("独立规则"));

    std::fs::write(
        own.path().join("own.yaml"),
        keyword_rule("own", "你好", "改了"),
    )
    .unwrap();
    let mut n = 0;
    assert!(
        eventually(RELOAD_WITHIN, async || {
            n += 1;
            app.ask("oa2", &format!("o_p{n}"), "你好").await == text("改了")
        })
        .await
    );
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));

    std::fs::write(
        own.path().join("own.yaml"),
        "rules:\n  - id: own\n    keywords: [你好\n",
    )
    .unwrap();
    let mut error = String::new();
    assert!(
        eventually(RELOAD_WITHIN, async || {
            error = app.healthz().await["rules"]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !error.is_empty()
        })
        .await,
        "a refused reload of an app's folder is not in /healthz"
    );
    assert!(error.contains("own.yaml:"), "{error}");
    assert_eq!(app.ask("oa2", "o_1", "你好").await, text("改了"));

    std::fs::write(
        own.path().join("own.yaml"),
        keyword_rule("own", "你好", "又好了"),
    )
    .unwrap();
    assert!(
        eventually(RELOAD_WITHIN, async || {
            app.healthz().await["rules"]["last_error"].is_null()
        })
        .await
    );
    assert_eq!(app.ask("oa2", "o_1", "你好").await, text("又好了"));
}

#[tokio::test]
async fn a_removed_rules_folder_is_refused_and_its_return_is_served() {
    let app = spawn_oa(&[("base.yaml", BASE)]).await;
    let dir = app.rules_dir();
    let aside = dir.with_file_name("rules.aside");
    std::fs::rename(&dir, &aside).unwrap();
    assert!(
        eventually(RELOAD_WITHIN, async || {
            !app.healthz().await["rules"]["last_error"].is_null()
        })
        .await,
        "a missing rules folder should be an error"
    );
    assert_eq!(app.ask("oa", "o_1", "你好").await, text("您好！"));
    std::fs::write(aside.join("base.yaml"), BASE.replace("您好！", "回来了")).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    assert!(answers(&app, "你好", text("回来了")).await);
    assert!(app.healthz().await["rules"]["last_error"].is_null());
}

#[tokio::test]
async fn an_faq_edit_is_served_by_the_next_push() {
    const ENTRY: &str = "faq:\n  - id: invoice\n    question: 怎么开发票？\n    similar: [发票怎么开, 如何开具发票]\n    answer: 在订单页申请。\n";
    let app = spawn_oa(&[("base.yaml", BASE), ("faq.yaml", ENTRY)]).await;
    assert_eq!(app.healthz().await["rules"]["faq"], 1);
    assert_eq!(
        app.ask("oa", "o_1", "发票怎么开").await,
        text("在订单页申请。")
    );
    app.write_rules(
        "faq.yaml",
        &ENTRY.replace("在订单页申请。", "在“我的-发票”申请。"),
    );
    assert!(answers(&app, "发票怎么开", text("在“我的-发票”申请。")).await);

    // A second entry: counted by /healthz.
    app.write_rules(
        "faq2.yaml",
        "faq:\n  - id: refund\n    question: 怎么退款？\n    similar: [退款怎么申请]\n    answer: 在订单页退款。\n",
    );
    assert!(
        eventually(RELOAD_WITHIN, async || app.healthz().await["rules"]["faq"]
            == 2)
        .await
    );
}

#[tokio::test]
async fn a_rules_folder_created_after_start_is_picked_up() {
    let dir = tempfile::tempdir().expect("dir");
    let rules = dir.path().join("rules");
    let config = dir.path().join("kefu.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin_listen: \"\"\ndata_dir: \"{}\"\nrules_dir: \"{}\"\napps:\n  - id: demo\n    kind: official_account\n    appid: wx1\n    token: \"{TOKEN}\"\n    dry_run: true\n",
            dir.path().join("data").display(),
            rules.display()
        ),
    )
    .expect("config");
    let settings = kefu::config::load(&config).expect("config loads");
    let app = kefu::startup::Application::build(settings)
        .await
        .expect("starts without the folder");
    let port = app.port();
    let (_reload, reloads) = tokio::sync::mpsc::channel(1);
    tokio::spawn(app.run(std::future::pending(), reloads));
    let client = crate::helpers::test_client();
    let health = || async {
        client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .expect("healthz")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    };
    assert_eq!(health().await["rules"]["rules"], 0);

    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(
        rules.join("a.yaml"),
        "rules:\n  - id: hi\n    keywords: [你好]\n    reply: 您好\n",
    )
    .expect("rule");
    let served = eventually(std::time::Duration::from_secs(10), async || {
        health().await["rules"]["rules"] == 1
    })
    .await;
    assert!(
        served,
        "the new folder's rule is served: {}",
        health().await
    );
}
