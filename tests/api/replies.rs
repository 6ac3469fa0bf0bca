//! Replies that do real work (issue 13, SPEC §10), end to end through the real server: images
//! from files uploaded to the mock WeChat API (cached, uploaded again when due and after 40007),
//! `fetch` answered by a real HTTP backend on loopback (and its fallback on every failure kind)
//! for a Mini Program and an Official Account, `event_key` rules, and long texts in parts.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::delivery_helpers::*;
use crate::helpers::*;
use crate::mock_wechat::{MockGate, MockWechat};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

// ---- a backend for fetch rules ------------------------------------------------------------------

/// One request the backend received.
#[derive(Debug, Clone)]
struct BackendRequest {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// The operator's backend, on loopback: `/{kind}/{order}` answers per kind (`orders`, `slow`,
/// `error`, `badjson`, `huge`, `missing`, `redirect`, `held`).
struct Backend {
    port: u16,
    requests: Arc<Mutex<Vec<BackendRequest>>>,
    gate: MockGate,
    server: ServerHandle,
}

impl Drop for Backend {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

impl Backend {
    async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let gate = MockGate::new();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let data = web::Data::new((requests.clone(), gate.clone()));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(backend))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            requests,
            gate,
            server: handle,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<BackendRequest> {
        self.requests.lock().unwrap().clone()
    }
}

type BackendState = (Arc<Mutex<Vec<BackendRequest>>>, MockGate);

async fn backend(
    state: web::Data<BackendState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let path = req.path().to_string();
    state.0.lock().unwrap().push(BackendRequest {
        method: req.method().to_string(),
        path: path.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let kind = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let ok = json!({"status": "已发货", "eta": {"date": "12-03"}});
    match kind {
        "orders" => HttpResponse::Ok().json(ok),
        "post" => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            HttpResponse::Ok().json(json!({
                "status": format!("{}/{}/{}", body["app"].as_str().unwrap_or("?"),
                    body["captures"]["order"].as_str().unwrap_or("?"),
                    body["text"].as_str().unwrap_or("?")),
                "eta": {"date": "POST"},
            }))
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            HttpResponse::Ok().json(ok)
        }
        "held" => {
            state.1.passed_public().await;
            HttpResponse::Ok().json(ok)
        }
        "error" => HttpResponse::InternalServerError().json(ok),
        "badjson" => HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"status\": "),
        "huge" => HttpResponse::Ok().json(json!({
            "status": "x".repeat(100 * 1024), "eta": {"date": "1"}
        })),
        "missing" => HttpResponse::Ok().json(json!({"status": "已发货"})),
        // Chunked, without a Content-Length: the cap must hold while reading.
        "stream" => {
            let chunk = web::Bytes::from(vec![b' '; 8 * 1024]);
            let chunks = (0..20).map(move |_| Ok::<_, actix_web::Error>(chunk.clone()));
            HttpResponse::Ok()
                .content_type("application/json")
                .streaming(futures_util::stream::iter(chunks))
        }
        "redirect" => HttpResponse::Found()
            .insert_header(("Location", "/orders/1"))
            .finish(),
        _ => HttpResponse::NotFound().finish(),
    }
}

fn fetch_rules(backend: &Backend, timeout_ms: u64) -> String {
    format!(
        r#"
rules:
  - id: order-status
    regex: '(?P<kind>[a-z]+) 订单\s*(?P<order>\d+)'
    fetch:
      url: "http://{host}/{{kind}}/{{order}}"
      headers: {{X-Shop: "${{CARGO_PKG_NAME}}"}}
      timeout_ms: {timeout_ms}
    reply: "订单 {{order}}：{{fetch.status}}，预计 {{fetch.eta.date}} 送达。"
    fallback: "订单 {{order}} 查询暂时不可用"
  - id: order-post
    regex: 'post (?P<order>\d+)'
    fetch:
      url: "http://{host}/post"
      method: POST
      timeout_ms: {timeout_ms}
    reply: "{{fetch.status}}"
    fallback: "不可用"
"#,
        host = backend.host()
    )
}

const FAILURES: [&str; 7] = [
    "slow", "error", "badjson", "huge", "stream", "missing", "redirect",
];

// ---- fetch ------------------------------------------------------------------------------------

#[tokio::test]
async fn a_mini_program_fetch_reply_is_composed_in_the_worker_and_falls_back_on_each_failure() {
    let mock = MockWechat::start().await;
    let backend = Backend::start().await;
    let mut cfg = live_config(&mock, &fetch_rules(&backend, 500));
    cfg.extra
        .push_str(&format!("fetch_hosts: [\"{}\"]\n", backend.host()));
    let app = spawn_app_with(cfg).await;

    let r = app.post_text("mp", "o_fetch", "orders 订单 123").await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    let sends = mock.wait_for_sends(1, WAIT).await;
    assert_eq!(content(&sends[0]), "订单 123：已发货，预计 12-03 送达。");
    let request = &backend.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/orders/123")
    );
    assert_eq!(
        request.headers.get("x-shop").map(String::as_str),
        Some("kefu"),
        "${{VAR}} filled"
    );

    for (i, kind) in FAILURES.iter().enumerate() {
        let user = format!("o_fail_{kind}");
        let r = app
            .post_text("mp", &user, &format!("{kind} 订单 9{i}"))
            .await;
        assert_eq!(r.body, "success", "{kind}: answered at once");
        let sent = eventually(WAIT, async || !sends_to(&mock, &user).is_empty()).await;
        assert!(sent, "{kind}: a reply was sent");
        assert_eq!(
            content(&sends_to(&mock, &user)[0]),
            format!("订单 9{i} 查询暂时不可用"),
            "{kind}: the fallback"
        );
    }
    // The redirect was not followed: the backend saw no request for its target after it.
    assert_eq!(
        backend
            .requests()
            .iter()
            .filter(|r| r.path == "/orders/1")
            .count(),
        0
    );
    wait_outbox_empty(&app).await;
    // `kefu log` shows the text the backend's answer made, under the push it answered.
    let threads = app
        .state
        .ops
        .threads(&kefu::store::history::LogQuery {
            openid: Some("o_fetch".into()),
            ..Default::default()
        })
        .expect("threads");
    let view = kefu::store::history::view(&threads[0], chrono_tz::Asia::Shanghai);
    let lines: Vec<(&str, &str)> = view
        .entries
        .iter()
        .map(|e| (e.side, e.text.as_str()))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], ("user", "orders 订单 123"));
    assert!(lines[1].1.starts_with("[fetch GET "), "{lines:?}");
    assert_eq!(lines[2], ("send", "订单 123：已发货，预计 12-03 送达。"));
    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, r#"kefu_fetch_total{rule="order-status",outcome="ok"}"#),
        Some(1.0)
    );
    for outcome in [
        "timeout",
        "status",
        "bad_json",
        "too_large",
        "missing_field",
        "redirect",
    ] {
        assert_eq!(
            sample(
                &m,
                &format!(r#"kefu_fetch_total{{rule="order-status",outcome="{outcome}"}}"#)
            ),
            Some(if outcome == "too_large" { 2.0 } else { 1.0 }),
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn a_mini_program_push_is_answered_before_the_backend_answers() {
    let mock = MockWechat::start().await;
    let backend = Backend::start().await;
    let mut cfg = live_config(&mock, &fetch_rules(&backend, 3000));
    cfg.extra
        .push_str(&format!("fetch_hosts: [\"{}\"]\n", backend.host()));
    let app = spawn_app_with(cfg).await;

    let r = app.post_text("mp", "o_held", "held 订单 7").await;
    assert_eq!(
        r.body, "success",
        "answered while the backend holds its answer"
    );
    assert!(eventually(WAIT, async || !backend.requests().is_empty()).await);
    assert!(
        mock.sends().is_empty(),
        "nothing sent before the backend answers"
    );
    backend.gate.open();
    let sends = mock.wait_for_sends(1, WAIT).await;
    assert_eq!(content(&sends[0]), "订单 7：已发货，预计 12-03 送达。");
}

#[tokio::test]
async fn a_post_fetch_sends_app_openid_text_and_captures() {
    let mock = MockWechat::start().await;
    let backend = Backend::start().await;
    let mut cfg = live_config(&mock, &fetch_rules(&backend, 1000));
    cfg.extra
        .push_str(&format!("fetch_hosts: [\"{}\"]\n", backend.host()));
    let app = spawn_app_with(cfg).await;

    app.post_text("mp", "o_post", "post 42").await;
    let sends = mock.wait_for_sends(1, WAIT).await;
    assert_eq!(content(&sends[0]), "mp/42/post 42");
    let body = &backend.requests()[0].body;
    assert_eq!(body["openid"], "o_post");
    assert_eq!(body["app"], "mp");
}

#[tokio::test]
async fn an_official_account_answers_a_fetch_passively_within_the_budget() {
    let mock = MockWechat::start().await;
    let backend = Backend::start().await;
    let mut cfg = live_config(&mock, &fetch_rules(&backend, 800));
    cfg.extra
        .push_str(&format!("fetch_hosts: [\"{}\"]\n", backend.host()));
    cfg.apps = vec![
        TestAppSpec::new("oa", "xml", "plaintext")
            .official_account()
            .live(),
    ];
    let app = spawn_app_with(cfg).await;

    let r = app.post_text("oa", "o_oa", "orders 订单 5").await;
    assert!(
        r.body.contains("订单 5：已发货，预计 12-03 送达。"),
        "the fetched text is the passive reply: {}",
        r.body
    );
    for (i, kind) in FAILURES.iter().enumerate() {
        let started = Instant::now();
        let r = app
            .post_text("oa", "o_oa", &format!("{kind} 订单 8{i}"))
            .await;
        let took = started.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            r.body.contains(&format!("订单 8{i} 查询暂时不可用")),
            "{kind}: the fallback, passively: {}",
            r.body
        );
        assert!(
            took < Duration::from_millis(2500),
            "{kind}: answered in {took:?}"
        );
    }
    assert!(mock.sends().is_empty(), "all passive: {:?}", mock.sends());
}

#[tokio::test]
async fn a_fetch_to_a_host_not_in_fetch_hosts_refuses_the_start() {
    let mock = MockWechat::start().await;
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), fetch_rules(&backend, 500)).unwrap();
    // No fetch_hosts: kefu check names the host.
    let cfg = dir.path().join("kefu.yaml");
    std::fs::write(
        &cfg,
        format!(
            "rules_dir: \"{}\"\napi_base: \"{}\"\napps:\n{}",
            dir.path().display(),
            mock.base_url(),
            TestAppSpec::new("mp", "json", "plaintext").yaml()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(KEFU)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("is not in kefu.yaml `fetch_hosts`"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_crash_before_the_fetch_answers_loses_no_reply_and_sends_none_twice() {
    let mock = MockWechat::start().await;
    let backend = Backend::start().await;
    let dir = DaemonDir::new(&fetch_rules(&backend, 3000));
    let extra = format!("{PATIENT_OUTBOX}fetch_hosts: [\"{}\"]\n", backend.host());
    let settings = dir.write_config(&mock.base_url(), &extra);

    let mut first = Daemon::start(&dir, settings.clone(), "first").await;
    let r = first.post(&text_msg("o_crash", "held 订单 31")).await;
    assert_eq!(r.body, "success");
    assert!(eventually(WAIT, async || !backend.requests().is_empty()).await);
    first.kill();
    assert!(mock.sends().is_empty());

    backend.gate.open();
    let mut second = Daemon::start(&dir, settings, "second").await;
    mock.wait_for_sends(1, WAIT).await;
    assert!(
        eventually(WAIT, async || {
            let c = counts_on_disk(&dir.data_dir());
            c.queued + c.sending == 0
        })
        .await
    );
    assert_eq!(second.terminate().await.code(), Some(0));
    let texts: Vec<String> = mock.sends().iter().map(content).collect();
    assert_eq!(texts, ["订单 31：已发货，预计 12-03 送达。"]);
}

// ---- images from files --------------------------------------------------------------------------

const IMAGE_RULES: &str = "
rules:
  - id: poster
    keywords: [海报]
    image: {file: images/poster.png}
  - id: card
    keywords: [卡片]
    miniprogrampage: {title: 活动, pagepath: pages/index, thumb_file: images/poster.png}
  - id: gone
    keywords: [丢失]
    image: {file: images/gone.png}
";

async fn image_app(mock: &MockWechat, extra: &str) -> TestApp {
    let mut cfg = live_config(mock, "rules: []\n");
    cfg.extra.push_str(extra);
    let app = spawn_app_with(cfg).await;
    let images = app.rules_dir().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("poster.png"), PNG).unwrap();
    std::fs::write(images.join("gone.png"), PNG).unwrap();
    std::fs::write(app.rules_dir().join("delivery.yaml"), IMAGE_RULES).unwrap();
    app.reload.send(()).await.unwrap();
    assert!(
        eventually(WAIT, async || app.healthz().await["rules"]["rules"] == 3).await,
        "the image rules load: {}",
        app.healthz().await
    );
    app
}

fn media_id(send: &crate::mock_wechat::RecordedSend) -> String {
    send.body["image"]["media_id"]
        .as_str()
        .or_else(|| send.body["miniprogrampage"]["thumb_media_id"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn an_image_file_is_uploaded_once_then_sent_from_the_cache() {
    let mock = MockWechat::start().await;
    let app = image_app(&mock, "").await;

    app.post_text("mp", "o_img", "海报").await;
    let sends = mock.wait_for_sends(1, WAIT).await;
    let uploads = mock.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        (
            uploads[0].filename.as_str(),
            uploads[0].content_type.as_str(),
            uploads[0].kind.as_str()
        ),
        ("poster.png", "image/png", "image")
    );
    assert_eq!(uploads[0].bytes, PNG);
    assert_eq!(sends[0].body["msgtype"], "image");
    assert_eq!(media_id(&sends[0]), "mock-media-1");

    app.post_text("mp", "o_img2", "卡片").await;
    let sends = mock.wait_for_sends(2, WAIT).await;
    assert_eq!(sends[1].body["msgtype"], "miniprogrampage");
    assert_eq!(
        media_id(&sends[1]),
        "mock-media-1",
        "same content, same media"
    );
    assert_eq!(mock.uploads().len(), 1, "served from the media cache");

    // A file edited under the rules folder is a new content: uploaded again.
    std::fs::write(
        app.rules_dir().join("images/poster.png"),
        [PNG, b"edited"].concat(),
    )
    .unwrap();
    app.post_text("mp", "o_img3", "海报").await;
    let sends = mock.wait_for_sends(3, WAIT).await;
    assert_eq!(mock.uploads().len(), 2);
    assert_eq!(media_id(&sends[2]), "mock-media-2");
}

#[tokio::test]
async fn an_expired_media_is_uploaded_again_before_the_send() {
    let mock = MockWechat::start().await;
    // Every cached media_id is due for renewal at once.
    let app = image_app(&mock, "media: {reupload_after_secs: 0}\n").await;
    app.post_text("mp", "o_a", "海报").await;
    mock.wait_for_sends(1, WAIT).await;
    app.post_text("mp", "o_b", "海报").await;
    let sends = mock.wait_for_sends(2, WAIT).await;
    assert_eq!(mock.uploads().len(), 2, "uploaded again when due");
    assert_eq!(media_id(&sends[1]), "mock-media-2");
    assert!(sends.iter().all(|s| s.body["errcode"].is_null()));
}

#[tokio::test]
async fn a_send_refused_with_40007_uploads_again_and_resends_once() {
    let mock = MockWechat::start().await;
    let app = image_app(&mock, "").await;
    app.post_text("mp", "o_a", "海报").await;
    mock.wait_for_sends(1, WAIT).await;
    // WeChat forgets the media before kefu's cache does.
    mock.expire_media("mock-media-1");
    app.post_text("mp", "o_b", "海报").await;
    let sends = mock.wait_for_sends(3, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(media_id(&sends[1]), "mock-media-1", "refused with 40007");
    assert_eq!(
        media_id(&sends[2]),
        "mock-media-2",
        "resent with a new upload"
    );
    assert_eq!(mock.uploads().len(), 2);
    assert!(counts(&app).failed == 0);
    // The cache now holds the new media: a third send uploads nothing.
    app.post_text("mp", "o_c", "海报").await;
    let sends = mock.wait_for_sends(4, WAIT).await;
    assert_eq!(media_id(&sends[3]), "mock-media-2");
    assert_eq!(mock.uploads().len(), 2);
}

#[tokio::test]
async fn a_file_missing_at_send_time_is_a_failed_send_with_its_reason_and_a_metric() {
    let mock = MockWechat::start().await;
    let app = image_app(&mock, "").await;
    std::fs::remove_file(app.rules_dir().join("images/gone.png")).unwrap();
    app.post_text("mp", "o_gone", "丢失").await;
    let failures = wait_failures(&app, 1).await;
    assert!(
        failures[0].reason.contains("images/gone.png")
            && failures[0].reason.contains("cannot be read"),
        "{failures:?}"
    );
    assert!(mock.sends().is_empty());
    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, r#"kefu_media_total{app="mp",outcome="missing_file"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn kefu_upload_prints_a_media_id_and_refuses_a_non_image() {
    let mock = MockWechat::start().await;
    let dir = DaemonDir::new("rules: []\n");
    dir.write_config(&mock.base_url(), "");
    let png = dir.dir.path().join("a.png");
    std::fs::write(&png, PNG).unwrap();
    let config = dir.config();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(KEFU)
            .args(["upload", "--app", "mp", "--config"])
            .arg(&config)
            .arg(&png)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mock-media-1");
    assert_eq!(mock.uploads()[0].filename, "a.png");

    let txt = dir.dir.path().join("a.txt");
    std::fs::write(&txt, "hello").unwrap();
    let config = dir.config();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(KEFU)
            .args(["upload", "--app", "mp", "--config"])
            .arg(&config)
            .arg(&txt)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a JPG or PNG"));
    assert_eq!(mock.uploads().len(), 1);
}

// ---- events and long texts ----------------------------------------------------------------------

#[tokio::test]
async fn event_key_rules_answer_menu_clicks_and_scene_subscriptions() {
    let mock = MockWechat::start().await;
    let rules = "
rules:
  - id: menu-hours
    event: CLICK
    event_key: [MENU_HOURS]
    reply: 我们 9:00-18:00 在线
  - id: scene
    event: subscribe
    event_key: shop42
    reply: 欢迎来自 42 号店的朋友
";
    let mut cfg = live_config(&mock, rules);
    cfg.apps = vec![
        TestAppSpec::new("oa", "xml", "plaintext")
            .official_account()
            .live(),
    ];
    let app = spawn_app_with(cfg).await;
    // Each from its own user: events are deduplicated by (user, CreateTime, Event).
    let event = |name: &str, key: &str, user: &str| {
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{name}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>",
            TestApp::now()
        );
        let (_, msg) = kefu::protocol::message::parse_message(xml.as_bytes()).unwrap();
        msg
    };
    let r = app
        .post_message("oa", &event("CLICK", "MENU_HOURS", "o_ev1"))
        .await;
    assert!(r.body.contains("我们 9:00-18:00 在线"), "{}", r.body);
    let r = app
        .post_message("oa", &event("subscribe", "qrscene_shop42", "o_ev2"))
        .await;
    assert!(r.body.contains("欢迎来自 42 号店的朋友"), "{}", r.body);
    let r = app
        .post_message("oa", &event("CLICK", "OTHER", "o_ev3"))
        .await;
    assert_eq!(r.body, "success");
}

#[tokio::test]
async fn a_5000_byte_answer_arrives_as_ordered_parts() {
    let mock = MockWechat::start().await;
    let line = format!("{}。", "这是一段很长的说明".repeat(5)); // 138 bytes
    let long: String = (0..37).map(|i| format!("{i:02}{line}\n")).collect();
    assert!(long.len() > 5000, "{}", long.len());
    let rules = format!(
        "rules:\n  - id: long\n    keywords: [长]\n    reply: |\n{}",
        long.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let app = spawn_live(&mock, &rules).await;
    app.post_text("mp", "o_long", "长").await;
    mock.wait_for_sends(3, WAIT).await;
    wait_outbox_empty(&app).await;
    let parts: Vec<String> = sends_to(&mock, "o_long").iter().map(content).collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
    for part in &parts {
        assert!(part.len() <= 2048, "{}", part.len());
    }
    assert_eq!(
        parts.join("\n").trim_end(),
        long.trim_end(),
        "in order, cut at line ends"
    );
}

#[tokio::test]
async fn kefu_try_shows_the_request_and_makes_it_with_fetch() {
    let backend = Backend::start().await;
    let dir = DaemonDir::new(&fetch_rules(&backend, 1000));
    dir.write_config(
        "http://127.0.0.1:9",
        &format!("fetch_hosts: [\"{}\"]\n", backend.host()),
    );
    let run = |fetch: bool| {
        let config = dir.config();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut cmd = std::process::Command::new(KEFU);
                cmd.args(["try", "--config"]).arg(&config);
                if fetch {
                    cmd.arg("--fetch");
                }
                cmd.arg("orders 订单 77").output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = run(false).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!("request: GET http://{}/orders/77", backend.host()))
            && text.contains("X-Shop: ${CARGO_PKG_NAME}"),
        "the request, variables unexpanded: {text}"
    );
    assert!(backend.requests().is_empty(), "not made without --fetch");
    let out = run(true).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("reply: 订单 77：已发货，预计 12-03 送达。"),
        "{text}"
    );
    assert_eq!(backend.requests().len(), 1);
}
