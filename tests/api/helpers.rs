//! The harness of the black-box tests: `spawn_app` writes a config and rules into a temp
#![allow(dead_code)]
//! folder, starts the real server on port 0 (with the API pointed at a mock WeChat on loopback)
//! and returns a [`TestApp`] with one method per thing WeChat (or an operator) does.

use std::path::PathBuf;
use std::time::Duration;

use kefu::cli::send::{build_push, message_for, open_reply};
use kefu::config::{self, AppConfig, Settings};
use kefu::protocol::{InboundMessage, crypto, signature};
use kefu::startup::Application;

/// The AES key of the protocol doc's V5/V6 vectors (its last character has trailing bits).
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// Another valid key, for rotation tests.
pub const AES_KEY_2: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
pub const APPID: &str = "wx2c2769f8efd9abc2";
pub const TOKEN: &str = "test-token";
/// The AppSecret of live apps (the mock accepts any).
pub const SECRET: &str = "test-secret";

/// One app of the test config.
#[derive(Debug, Clone)]
pub struct TestAppSpec {
    pub id: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub mode: &'static str,
    pub aes_key: &'static str,
    pub aes_key_previous: &'static str,
    pub extra: &'static str,
    /// With a secret and `dry_run: false` the app really calls the (mock) API.
    pub live: bool,
    /// The app's appid and token ([`APPID`], [`TOKEN`] unless a test replays a published vector).
    pub appid: &'static str,
    pub token: &'static str,
}

impl TestAppSpec {
    pub fn new(id: &'static str, format: &'static str, mode: &'static str) -> Self {
        Self {
            id,
            kind: "miniprogram",
            format,
            mode,
            aes_key: if mode == "plaintext" { "" } else { AES_KEY },
            aes_key_previous: "",
            extra: "",
            live: false,
            appid: APPID,
            token: TOKEN,
        }
    }

    /// Another appid and token, e.g. those of a published test vector.
    pub fn credentials(mut self, appid: &'static str, token: &'static str) -> Self {
        self.appid = appid;
        self.token = token;
        self
    }

    /// Calls the API for real (a secret, not dry-run): point `TestConfig::api_base` at a mock.
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    pub fn official_account(mut self) -> Self {
        self.kind = "official_account";
        self
    }

    pub fn yaml(&self) -> String {
        // A live app needs a secret (no secret means dry-run) and `dry_run: false`.
        let sending = if self.live {
            format!("    secret: \"{SECRET}\"\n    dry_run: false\n")
        } else {
            "    dry_run: true\n".to_string()
        };
        format!(
            "  - id: {}\n    kind: {}\n    appid: \"{}\"\n    token: \"{}\"\n    encoding_aes_key: \"{}\"\n    encoding_aes_key_previous: \"{}\"\n    format: {}\n    mode: {}\n{sending}{}",
            self.id,
            self.kind,
            self.appid,
            self.token,
            self.aes_key,
            self.aes_key_previous,
            self.format,
            self.mode,
            self.extra
        )
    }
}

/// Rules every test gets unless it brings its own.
/// A handoff on 人工 and a reply that repeats an order number (crash and fleet tests).
pub const ORDER_RULES: &str = r#"
rules:
  - id: human
    keywords: [人工]
    handoff: true
  - id: order
    regex: '订单\s*(?P<n>\d+)'
    reply: 已收到订单 {n}
"#;

pub const BASIC_RULES: &str = r#"
rules:
  - id: human
    priority: 100
    keywords: [人工, 转人工]
    handoff: true
    reply: 正在为您转接人工客服，请稍候。
  - id: hello
    keywords: [你好]
    reply: 您好！
  - id: welcome
    msg_type: event
    event: user_enter_tempsession
    reply: 欢迎光临
"#;

/// What to start.
pub struct TestConfig {
    pub apps: Vec<TestAppSpec>,
    pub rules: Vec<(&'static str, String)>,
    /// More top-level config lines.
    pub extra: String,
    /// The WeChat API base (a `MockWechat::base_url()`); nothing listens there by default.
    pub api_base: String,
    /// The admin listener's address.
    pub admin_listen: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            apps: vec![TestAppSpec::new("demo", "json", "plaintext")],
            rules: vec![("basic.yaml", BASIC_RULES.to_string())],
            extra: String::new(),
            api_base: "http://127.0.0.1:9".into(),
            admin_listen: "127.0.0.1:0".into(),
        }
    }
}

pub struct TestApp {
    pub port: u16,
    pub admin_port: u16,
    /// Reloads every rules folder, as SIGHUP does for `kefu serve`.
    pub reload: tokio::sync::mpsc::Sender<()>,
    pub settings: Settings,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub state: actix_web::web::Data<kefu::http::State>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestConfig::default()).await
}

pub async fn spawn_app_with(cfg: TestConfig) -> TestApp {
    spawn_app_layered(cfg, Box::new(|store| store)).await
}

/// [`spawn_app_with`], with the store seen through `layer` (failure injection).
pub async fn spawn_app_layered(cfg: TestConfig, layer: kefu::startup::StoreLayer) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    for (name, text) in &cfg.rules {
        std::fs::write(rules_dir.join(name), text).expect("write rules");
    }
    let apps: String = cfg.apps.iter().map(TestAppSpec::yaml).collect();
    let text = format!(
        "listen: \"127.0.0.1:0\"\nadmin_listen: \"{}\"\ndata_dir: \"{}\"\nrules_dir: \"{}\"\napi_base: \"{}\"\n{}\napps:\n{apps}",
        cfg.admin_listen,
        dir.path().join("data").display(),
        rules_dir.display(),
        cfg.api_base,
        cfg.extra,
    );
    let path = dir.path().join("kefu.yaml");
    std::fs::write(&path, &text).expect("write config");
    let settings = config::load(&path).expect("test config loads");
    let app = Application::build_with_store_layer(settings.clone(), layer)
        .await
        .expect("app builds");
    let port = app.port();
    let admin_port = app.admin_port();
    let state = app.state();
    // Shutdown and reload are inputs: an in-process app installs no signal handler. It runs
    // until the test's runtime ends.
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    tokio::spawn(app.run(std::future::pending(), reloads));
    TestApp {
        port,
        admin_port,
        reload,
        settings,
        client: test_client(),
        dir,
        state,
    }
}

/// A reply as the test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn app(&self, id: &str) -> &AppConfig {
        self.settings.app(id).expect("app in config")
    }

    pub fn rules_dir(&self) -> PathBuf {
        self.settings.rules_dir.clone()
    }

    pub fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// A signed query (signature, timestamp, nonce) for `app`'s token.
    pub fn signed_query(&self, timestamp: i64, nonce: &str) -> String {
        let ts = timestamp.to_string();
        let sig = signature::sign(&[TOKEN, &ts, nonce]);
        format!("signature={sig}&timestamp={ts}&nonce={nonce}")
    }

    pub async fn get(&self, path_and_query: &str) -> Reply {
        let r = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("GET");
        to_reply(r).await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let r = self
            .client
            .request(method, self.url(path_and_query))
            .body(body)
            .send()
            .await
            .expect("request");
        to_reply(r).await
    }

    pub async fn post_raw(&self, path_and_query: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.request(reqwest::Method::POST, path_and_query, body)
            .await
    }

    /// Posts `msg` to `app` exactly as WeChat would in the app's format and mode.
    pub async fn post_message(&self, app: &str, msg: &InboundMessage) -> Reply {
        let cfg = self.app(app);
        let nonce = format!("{}", rand_nonce());
        let push = build_push(cfg, msg, Self::now(), &nonce).expect("push builds");
        let r = self
            .client
            .post(self.url(&format!("/wechat/{app}?{}", push.query)))
            .header("Content-Type", push.content_type)
            .body(push.body)
            .send()
            .await
            .expect("POST");
        to_reply(r).await
    }

    pub async fn post_text(&self, app: &str, user: &str, text: &str) -> Reply {
        let msg = message_for(user, None, Some(text), Self::now()).expect("message");
        self.post_message(app, &msg).await
    }

    pub async fn post_event(&self, app: &str, user: &str, event: &str) -> Reply {
        let msg = message_for(user, Some(event), None, Self::now()).expect("message");
        self.post_message(app, &msg).await
    }

    /// Decrypts an encrypted reply of `app` (plain replies come back as they are).
    pub fn open(&self, app: &str, body: &str) -> String {
        open_reply(self.app(app), body).expect("reply opens")
    }

    /// Encrypts `plain` for `app` with its current key.
    pub fn seal_push(&self, app: &str, plain: &str) -> String {
        let cfg = self.app(app);
        crypto::encrypt(&cfg.aes_keys[0], plain.as_bytes(), &cfg.appid, &[7u8; 16])
    }

    pub async fn healthz(&self) -> serde_json::Value {
        let r = self
            .client
            .get(self.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        r.json().await.expect("healthz json")
    }
}

fn rand_nonce() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(100_000);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn to_reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.text().await.expect("body");
    Reply {
        status,
        content_type,
        body,
    }
}

/// The HTTP client every test drives kefu with.
///
/// It drops an idle connection after 2 s, before the server's 5 s keep-alive (actix-web's
/// default) closes it: reusing a connection the server is closing at that moment fails the
/// request with `IncompleteMessage`, as a test that polled for a few seconds once saw in CI.
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("test HTTP client: {e}"))
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
