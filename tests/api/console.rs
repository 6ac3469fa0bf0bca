//! The admin listener: `/metrics` parsed by a Prometheus text parser, the console's JSON, and
//! the console page loaded in a real browser (headless Chromium) against a running kefu.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::*;

fn admin(app: &TestApp, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", app.admin_port)
}

async fn pushes(app: &TestApp) {
    for (user, text) in [
        ("o_c1", "你好"),
        ("o_c2", "转人工"),
        ("o_c3", "怎么退款"),
        ("o_c4", "怎么退款"),
    ] {
        let r = app.post_text("demo", user, text).await;
        assert_eq!(r.status, 200);
    }
}

fn console_config() -> TestConfig {
    let mut rules = BASIC_RULES.to_string();
    rules.push_str("  - id: fallback\n    default: true\n    reply: 收到\n");
    TestConfig {
        rules: vec![("basic.yaml", rules)],
        ..TestConfig::default()
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_pushes() {
    let app = spawn_app_with(console_config()).await;
    pushes(&app).await;
    let body = app
        .client
        .get(admin(&app, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, label: (&str, &str)| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(value("kefu_messages_total", ("app", "demo")), 4.0, "{body}");
    assert_eq!(
        value("kefu_rule_hits_total", ("rule", "hello")),
        1.0,
        "{body}"
    );
    assert_eq!(value("kefu_handoffs_total", ("app", "demo")), 1.0, "{body}");
    assert_eq!(
        value("kefu_unmatched_total", ("app", "demo")),
        2.0,
        "{body}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("kefu_request_duration_seconds"))
    );
    assert!(body.contains("kefu_outbox_depth"));
    assert!(!body.contains("o_c1"), "no openids in metrics");
    // Not on the public listener.
    assert_eq!(app.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn summary_shows_totals_hits_and_unmatched() {
    let app = spawn_app_with(console_config()).await;
    pushes(&app).await;
    let s: serde_json::Value = app
        .client
        .get(admin(&app, "/api/summary"))
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    assert_eq!(s["totals"]["messages"], 4, "{s}");
    assert_eq!(s["totals"]["handoffs"], 1, "{s}");
    assert_eq!(s["totals"]["unmatched"], 2, "{s}");
    assert_eq!(s["unmatched"][0]["text"], "怎么退款");
    assert_eq!(s["unmatched"][0]["count"], 2);
    assert!(
        s["rule_hits"]
            .as_array()
            .is_some_and(|a| a.iter().any(|h| h["id"] == "hello"))
    );
    assert!(s["rules"]["last_error"].is_null());
}

#[tokio::test]
async fn admin_token_guards_metrics_and_console() {
    let cfg = TestConfig {
        extra: "admin_token: \"s3cret\"".into(),
        ..TestConfig::default()
    };
    let app = spawn_app_with(cfg).await;
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            app.client
                .get(admin(&app, "/metrics"))
                .send()
                .await
                .expect("m")
        ),
        401
    );
    assert_eq!(
        status(
            app.client
                .get(admin(&app, "/api/summary"))
                .send()
                .await
                .expect("s")
        ),
        401
    );
    assert_eq!(
        status(app.client.get(admin(&app, "/")).send().await.expect("c")),
        401
    );
    let ok = app
        .client
        .get(admin(&app, "/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("m");
    assert_eq!(status(ok), 200);
    assert_eq!(
        status(
            app.client
                .get(admin(&app, "/?token=s3cret"))
                .send()
                .await
                .expect("c")
        ),
        200
    );
}

pub(crate) fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

pub(crate) fn headless(
    browser: &PathBuf,
    profile: &std::path::Path,
    extra: &[&str],
    url: &str,
) -> std::process::Output {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url);
    cmd.output().expect("chromium runs")
}

#[tokio::test]
async fn console_page_in_a_real_browser_shows_figures_and_tries_a_message() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("KEFU_REQUIRE_BROWSER").is_none(),
            "KEFU_REQUIRE_BROWSER is set but no chromium was found"
        );
        eprintln!("skipped: no chromium on this machine (.ci/run installs it)");
        return;
    };
    let app = spawn_app_with(console_config()).await;
    pushes(&app).await;
    let url = admin(&app, "/?try=%E8%BD%AC%E4%BA%BA%E5%B7%A5");
    let profile = tempfile::tempdir().expect("profile");
    let b = browser.clone();
    let p = profile.path().to_path_buf();
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || headless(&b, &p, &["--dump-dom"], &u))
        .await
        .expect("browser task");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"<b id="t-messages">4</b>"#),
        "messages total shown: {dom}"
    );
    assert!(
        dom.contains(r#"<b id="t-handoffs">1</b>"#),
        "handoffs shown"
    );
    assert!(
        dom.contains(r#"<b id="t-unmatched">2</b>"#),
        "unmatched shown"
    );
    assert!(dom.contains("怎么退款"), "unmatched message listed");
    assert!(
        dom.contains(r#"<b id="try-action">handoff</b>"#),
        "the try box answered: {dom}"
    );
    assert!(dom.contains("rule human"), "with the rule that decided");
    assert!(dom.contains("<polyline"), "the chart is drawn");

    // A screenshot for the test output.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let arg = format!("--screenshot={}", shot.display());
    let profile2 = tempfile::tempdir().expect("profile");
    let p2 = profile2.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        headless(&browser, &p2, &[&arg, "--window-size=1280,1400"], &url)
    })
    .await
    .expect("browser task");
    assert!(
        shot.exists(),
        "screenshot written: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("console screenshot: {}", shot.display());
}

#[tokio::test]
async fn a_taken_admin_port_does_not_stop_the_webhook() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let app = spawn_app_with(TestConfig {
        admin_listen: addr.to_string(),
        ..TestConfig::default()
    })
    .await;
    assert_eq!(app.admin_port, 0, "the admin listener is off");
    let r = app.post_text("demo", "o_adm", "你好").await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
}

#[tokio::test]
async fn an_empty_admin_listen_turns_the_admin_listener_off() {
    let app = spawn_app_with(TestConfig {
        admin_listen: String::new(),
        ..TestConfig::default()
    })
    .await;
    assert_eq!(app.admin_port, 0);
    assert_eq!(app.healthz().await["status"], "ok");
}
