//! SPEC §11: hostile clients, failing stores and small leaks. Slow bodies are cut off at the
//! request timeout and give their memory back; a failing store shows in `/healthz` and the
//! metrics and records nothing; the admin listener refuses foreign Host headers; user-supplied
//! fields cannot break the metrics or the log; the data folder is private.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use kefu::store::{Claim, CommitTicket, PushKey, PushRecord, Session, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::delivery_helpers::*;
use crate::helpers::*;

const RULES: &str = r#"
rules:
  - id: human
    keywords: [人工]
    handoff: true
  - id: hello
    keywords: [你好]
    reply: 您好！
"#;

// ---- slow bodies ----------------------------------------------------------------------------

/// Reads what the server sends until it closes the connection (bounded by `wait`); `None` when
/// the connection is still open at the end of the wait.
async fn read_until_closed(conn: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&raw).into_owned()),
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// Opens `n` connections that each send `head` and 60 KB of the body it announces, then stall.
async fn stall(port: u16, head: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        conn.write_all(head.as_bytes()).await.expect("head");
        conn.write_all(&[b'x'; 60_000]).await.expect("body");
        conns.push(conn);
    }
    conns
}

#[tokio::test]
async fn slow_bodies_are_cut_off_at_the_request_timeout_and_memory_comes_back() {
    const CONNECTIONS: usize = 400;
    const TIMEOUT_SECS: u64 = 3;
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(
        &dead_api_base(),
        &format!("request_timeout_secs: {TIMEOUT_SECS}\n"),
    );
    let daemon = Daemon::start(&dir, settings, "slow").await;
    // Warm up, then take the idle figures.
    for i in 0..20 {
        let r = daemon
            .post(&text_msg(&format!("o_warm_{i}"), "随便问问"))
            .await;
        assert_eq!(r.status, 200);
    }
    let idle_rss = daemon.rss_kib();
    let idle_files = daemon.open_files();

    // Each client sends its headers and 60 KB of a 65,000-byte body, then stalls.
    let head = "POST /wechat/nope?signature=x&timestamp=1&nonce=1 HTTP/1.1\r\n\
                Host: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: 65000\r\n\r\n";
    let started = Instant::now();
    let mut conns = stall(daemon.port, head, CONNECTIONS).await;
    // And one trickles its body a byte at a time.
    let mut trickle = tokio::net::TcpStream::connect(("127.0.0.1", daemon.port))
        .await
        .expect("connect");
    trickle.write_all(head.as_bytes()).await.expect("head");
    let trickle_started = Instant::now();
    let trickled = async {
        let mut sent = 0;
        loop {
            if trickle.write_all(b"<").await.is_err() {
                break;
            }
            sent += 1;
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(300), trickle.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                    break;
                }
                Err(_) => {}
            }
            assert!(sent < 100, "a trickled body kept its connection for 30 s");
        }
        trickle_started.elapsed()
    };
    // The server holds them all (and their bodies) until the deadline.
    let mut peak_rss = 0;
    let held = eventually(Duration::from_secs(TIMEOUT_SECS), async || {
        peak_rss = peak_rss.max(daemon.rss_kib());
        daemon.open_files() >= idle_files + CONNECTIONS
    })
    .await;
    assert!(
        held,
        "open files {} (idle {idle_files})",
        daemon.open_files()
    );

    let trickle_lasted = trickled.await;
    assert!(
        trickle_lasted >= Duration::from_secs(TIMEOUT_SECS) - Duration::from_millis(100)
            && trickle_lasted < Duration::from_secs(TIMEOUT_SECS + 5),
        "the trickled request was cut off after {trickle_lasted:?}"
    );
    for (i, conn) in conns.iter_mut().enumerate() {
        let answer = read_until_closed(conn, Duration::from_secs(TIMEOUT_SECS + 10)).await;
        let Some(answer) = answer else {
            panic!(
                "connection {i} still open {:?} after it started",
                started.elapsed()
            );
        };
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "connection {i}: {answer}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(TIMEOUT_SECS + 10),
        "closed after {:?}",
        started.elapsed()
    );
    drop(conns);

    let back = eventually(Duration::from_secs(10), async || {
        daemon.open_files() <= idle_files + 2
    })
    .await;
    assert!(
        back,
        "open files {} (idle {idle_files})",
        daemon.open_files()
    );
    // The memory the stalled clients caused is reused, not kept per connection: a second burst
    // like the first leaves the daemon no bigger than the first did. (The allocator keeps
    // freed pages for reuse rather than handing each back to the OS; docs/operations.md.)
    let after_first = daemon.rss_kib();
    let mut again = stall(daemon.port, head, CONNECTIONS).await;
    let mut second_peak = 0;
    eventually(Duration::from_secs(TIMEOUT_SECS), async || {
        second_peak = second_peak.max(daemon.rss_kib());
        daemon.open_files() >= idle_files + CONNECTIONS
    })
    .await;
    for conn in &mut again {
        let answer = read_until_closed(conn, Duration::from_secs(TIMEOUT_SECS + 10)).await;
        assert!(
            answer.is_some(),
            "a connection of the second burst stayed open"
        );
    }
    drop(again);
    let bounded = eventually(Duration::from_secs(10), async || {
        daemon.rss_kib() <= after_first + 4 * 1024
    })
    .await;
    eprintln!(
        "RSS KiB: idle {idle_rss}, first peak {peak_rss}, after {after_first}, second peak {second_peak}, after {}",
        daemon.rss_kib()
    );
    assert!(
        // The first burst's high-water mark is the larger of its sampled peak and what it left
        // (sampling every few ms can miss the real peak on a loaded machine).
        bounded && second_peak <= peak_rss.max(after_first) + 8 * 1024,
        "RSS idle {idle_rss} KiB, first peak {peak_rss}, after it {after_first}, second peak \
         {second_peak}, now {}",
        daemon.rss_kib()
    );
    // The server still answers.
    let r = daemon.post(&text_msg("o_after", "你好")).await;
    assert_eq!(r.status, 200, "{r:?}");
}

// ---- a failing store ------------------------------------------------------------------------

/// The SQLite store behind a switch: while `failing`, every write fails as a full disk would.
struct FailingStore {
    inner: Arc<dyn Store>,
    failing: Arc<AtomicBool>,
}

const DISK_FULL: &str = "injected: database or disk is full";

impl Store for FailingStore {
    fn claim(&self, key: &PushKey, now: i64) -> BoxFuture<'_, Result<Claim, StoreError>> {
        self.inner.claim(key, now)
    }

    fn abandon(&self, key: &PushKey) {
        self.inner.abandon(key);
    }

    fn session(
        &self,
        app: &str,
        openid: &kefu::openid::OpenId,
        now: i64,
    ) -> BoxFuture<'_, Result<Session, StoreError>> {
        self.inner.session(app, openid, now)
    }

    fn commit(&self, record: PushRecord) -> CommitTicket {
        if !self.failing.load(Ordering::SeqCst) {
            return self.inner.commit(record);
        }
        // As the writer does with a failed batch: the claim is released, the ticket fails.
        self.inner.abandon(&record.key);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Err(StoreError::backend(DISK_FULL)));
        rx
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        if self.failing.load(Ordering::SeqCst) {
            Box::pin(async { Err(StoreError::backend(DISK_FULL)) })
        } else {
            self.inner.probe()
        }
    }
}

async fn healthz_status(app: &TestApp) -> (u16, serde_json::Value) {
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    let status = r.status().as_u16();
    (status, r.json().await.expect("healthz json"))
}

#[tokio::test]
async fn a_failing_store_shows_in_health_and_metrics_and_counts_no_message() {
    let failing = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&failing);
    let app = spawn_app_layered(
        TestConfig {
            rules: vec![("rules.yaml", RULES.to_string())],
            ..TestConfig::default()
        },
        Box::new(move |inner| {
            Arc::new(FailingStore {
                inner,
                failing: switch,
            })
        }),
    )
    .await;
    let (status, health) = healthz_status(&app).await;
    assert_eq!(
        (status, &health["store"]["ok"]),
        (200, &serde_json::json!(true))
    );

    failing.store(true, Ordering::SeqCst);
    for i in 0..5 {
        let r = app
            .post_text("demo", &format!("o_full_{i}"), "转人工")
            .await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "store unavailable"),
            "{r:?}"
        );
    }
    let r = app.post_text("demo", "o_full_hello", "你好").await;
    assert_eq!(r.status, 503, "{r:?}");

    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, r#"kefu_store_errors_total{op="commit"}"#),
        Some(6.0),
        "{m}"
    );
    for series in [
        "kefu_messages_total",
        "kefu_handoffs_total",
        "kefu_rule_hits_total",
    ] {
        assert!(
            !m.lines().any(|l| l.starts_with(series)),
            "{series} counted a push that was not recorded:\n{m}"
        );
    }
    let (status, health) = healthz_status(&app).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "error");
    assert_eq!(health["store"]["ok"], false);
    assert!(
        health["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("disk is full")),
        "{health}"
    );
    assert!(health["store"]["since"].is_string(), "{health}");

    // The disk has room again: the probe notices with no traffic at all.
    failing.store(false, Ordering::SeqCst);
    let healthy = eventually(Duration::from_secs(10), async || {
        healthz_status(&app).await.0 == 200
    })
    .await;
    assert!(healthy, "{:?}", healthz_status(&app).await);
    // And WeChat's retry of a refused push is now handled.
    let r = app.post_text("demo", "o_full_0", "转人工").await;
    assert!(r.body.contains("transfer_customer_service"), "{r:?}");
    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, r#"kefu_messages_total{app="demo",type="text"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, r#"kefu_handoffs_total{app="demo"}"#), Some(1.0));
}

// ---- the admin listener ---------------------------------------------------------------------

#[tokio::test]
async fn the_admin_listener_answers_421_to_a_foreign_host() {
    let app = spawn_app_with(TestConfig {
        extra: "admin_hosts: [kefu-ops.example.com]\n".into(),
        ..TestConfig::default()
    })
    .await;
    let port = app.admin_port;
    for (host, want) in [
        ("evil.example".to_string(), 421),
        (format!("evil.example:{port}"), 421),
        (format!("127.0.0.1.nip.example:{port}"), 421),
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        ("kefu-ops.example.com".to_string(), 200),
    ] {
        for path in ["/api/summary", "/metrics", "/"] {
            let r = app
                .client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .header("Host", &host)
                .send()
                .await
                .expect("admin request");
            assert_eq!(r.status().as_u16(), want, "Host {host} {path}");
        }
    }
}

#[tokio::test]
async fn a_public_admin_listener_without_a_token_refuses_to_start() {
    let dir = DaemonDir::new(RULES);
    dir.write_config(&dead_api_base(), "");
    let text = std::fs::read_to_string(dir.config())
        .expect("config")
        .replace(
            "admin_listen: \"127.0.0.1:0\"",
            "admin_listen: \"0.0.0.0:0\"",
        );
    std::fs::write(dir.config(), &text).expect("config");
    let out = std::process::Command::new(KEFU)
        .args(["serve", "--config"])
        .arg(dir.config())
        .output()
        .expect("kefu runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("admin_listen") && stderr.contains("admin_token"),
        "{stderr}"
    );
    // With a token it starts.
    std::fs::write(dir.config(), format!("admin_token: \"s3cret\"\n{text}")).expect("config");
    let settings = kefu::config::load(&dir.config()).expect("config with a token loads");
    let mut daemon = Daemon::start(&dir, settings, "public-admin").await;
    assert_eq!(daemon.terminate().await.code(), Some(0));
}

// ---- small leaks ----------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_msg_type_is_labelled_other_in_the_metrics() {
    let app = spawn_app().await;
    let ts = TestApp::now();
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_label]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[voice\"}}\n# HELP x]]></MsgType>\
         <MsgId>777000111</MsgId></xml>"
    );
    let r = app
        .post_raw(
            &format!("/wechat/demo?{}", app.signed_query(ts, "n1")),
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let m = eventually(Duration::from_secs(5), async || {
        metrics(&app).await.contains("kefu_messages_total")
    })
    .await;
    assert!(m);
    let text = metrics(&app).await;
    assert!(!text.contains("# HELP x"), "{text}");
    assert_eq!(
        sample(&text, r#"kefu_messages_total{app="demo",type="other"}"#),
        Some(1.0),
        "{text}"
    );
    let lines = text.lines().map(|l| Ok(l.to_string()));
    assert!(prometheus_parse::Scrape::parse(lines).is_ok(), "{text}");
}

#[tokio::test]
async fn control_characters_of_a_push_are_escaped_in_the_human_log() {
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&dead_api_base(), "");
    let mut daemon = Daemon::start_logging(&dir, settings, "text", "text").await;
    let forged = "o_evil\n2026-12-02T08:00:00.000000Z  INFO forged line\u{1b}[2J";
    let r = daemon.post(&text_msg(forged, "你好")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let logged = eventually(Duration::from_secs(5), async || {
        daemon.log_text().contains("forged line")
    })
    .await;
    assert!(logged, "{}", daemon.log_text());
    assert_eq!(daemon.terminate().await.code(), Some(0));
    let log = daemon.log_text();
    assert!(!log.contains('\u{1b}'), "a raw ESC reached the log:\n{log}");
    for line in log.lines().filter(|l| l.contains("forged line")) {
        assert!(
            line.contains("o_evil\\n2026"),
            "a push forged a log line: {line:?}"
        );
    }
}

#[tokio::test]
async fn the_data_folder_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = DaemonDir::new(RULES);
    let settings = dir.write_config(&dead_api_base(), "");
    let mut daemon = Daemon::start(&dir, settings, "private").await;
    let r = daemon.post(&text_msg("o_private", "你好")).await;
    assert_eq!(r.status, 200);
    let mode = |p: std::path::PathBuf| {
        std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let data = dir.data_dir();
    assert_eq!(mode(data.clone()), 0o700, "data_dir");
    for file in ["kefu.sqlite3", "kefu.sqlite3-wal", "kefu.sqlite3-shm"] {
        assert_eq!(mode(data.join(file)), 0o600, "{file}");
    }
    assert_eq!(daemon.terminate().await.code(), Some(0));
}

#[tokio::test]
async fn healthz_names_rule_files_relative_to_the_rules_folder() {
    let app = spawn_app().await;
    let rules = app.rules_dir();
    std::fs::create_dir_all(rules.join("shop")).expect("dir");
    std::fs::write(
        rules.join("shop/broken.yaml"),
        "rules: [ {id: x, keywords: [] } ]\n",
    )
    .expect("write");
    let refused = eventually(Duration::from_secs(10), async || {
        app.healthz().await["rules"]["last_error"].is_string()
    })
    .await;
    assert!(refused);
    let health = app.healthz().await;
    let error = health["rules"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("shop/broken.yaml"), "{error}");
    let root = app.dir.path().to_string_lossy().to_string();
    assert!(
        !error.contains(&root),
        "absolute path in public /healthz: {error}"
    );
}

#[tokio::test]
async fn a_timestamp_near_i64_min_is_refused_not_a_panic() {
    let app = spawn_app().await;
    for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
        let ts_text = ts.to_string();
        let sig = kefu::protocol::signature::sign(&[TOKEN, &ts_text, "n"]);
        let query = format!("signature={sig}&timestamp={ts_text}&nonce=n");
        let r = app
            .post_raw(&format!("/wechat/demo?{query}"), "<xml></xml>")
            .await;
        assert_eq!(r.status, 403, "timestamp {ts}: {r:?}");
        let r = app.get(&format!("/wechat/demo?{query}&echostr=e")).await;
        assert_eq!(r.status, 403, "timestamp {ts}: {r:?}");
    }
}
