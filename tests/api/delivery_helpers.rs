//! Helpers of the delivery tests (issue 5): a live app wired to a [`MockWechat`] with fast retry
//! pacing, read-side probes of the outbox and the send log, and [`Daemon`], the real `kefu`
//! binary run as a child process (for the crash, SIGTERM and retention tests).
#![allow(dead_code)] // shared by several test files; each uses a part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kefu::cli::send::{build_push, message_for};
use kefu::config::{self, Settings};
use kefu::protocol::InboundMessage;
use kefu::store::{FailedEntry, OutboxCounts};
use serde_json::Value;

use crate::helpers::*;
use crate::mock_wechat::{MockWechat, RecordedSend};

/// Retry pacing for tests: retries after tens of milliseconds (timeouts stay at their defaults,
/// so that a loaded test machine never cuts off a send and sends it twice).
pub const FAST_OUTBOX: &str = "outbox:
  backoff_base_ms: 20
  backoff_max_ms: 100
";

/// Fast retries, but requests never cut off and never given up within a test: for tests that
/// hold the API's answers at a gate (a cut-off request would be retried and sent twice, as it
/// should, which is not what those tests are about).
pub const PATIENT_OUTBOX: &str = "outbox:
  backoff_base_ms: 20
  backoff_max_ms: 200
  max_attempts: 100000
  request_timeout_ms: 60000
  send_timeout_ms: 60000
";

/// [`live_config`] with [`PATIENT_OUTBOX`].
pub fn patient_config(mock: &MockWechat, rules: &str) -> TestConfig {
    TestConfig {
        extra: PATIENT_OUTBOX.to_string(),
        ..live_config(mock, rules)
    }
}

/// How long a test waits for something that should take milliseconds.
pub const WAIT: Duration = Duration::from_secs(10);

/// One live Mini Program app (`mp`, JSON, plaintext) sending to `mock`, with `rules`.
pub fn live_config(mock: &MockWechat, rules: &str) -> TestConfig {
    live_config_at(&mock.base_url(), rules)
}

/// [`live_config`] with the API at `api_base` (see [`dead_api_base`]).
pub fn live_config_at(api_base: &str, rules: &str) -> TestConfig {
    TestConfig {
        apps: vec![TestAppSpec::new("mp", "json", "plaintext").live()],
        rules: vec![("delivery.yaml", rules.to_string())],
        extra: FAST_OUTBOX.to_string(),
        api_base: api_base.to_string(),
        ..TestConfig::default()
    }
}

/// [`live_config`], started.
pub async fn spawn_live(mock: &MockWechat, rules: &str) -> TestApp {
    spawn_app_with(live_config(mock, rules)).await
}

/// The `text.content` of a recorded send ("" for other message types).
pub fn content(send: &RecordedSend) -> String {
    send.body["text"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `(touser, text content)` of a recorded send.
pub fn to_and_text(send: &RecordedSend) -> (String, String) {
    (
        send.body["touser"].as_str().unwrap_or_default().to_string(),
        content(send),
    )
}

/// The sends the mock recorded for `user`, in arrival order.
pub fn sends_to(mock: &MockWechat, user: &str) -> Vec<RecordedSend> {
    mock.sends()
        .into_iter()
        .filter(|s| s.body["touser"] == user)
        .collect()
}

/// Outbox entries by state, from the store's read side.
pub fn counts(app: &TestApp) -> OutboxCounts {
    app.state.ops.outbox_counts().expect("outbox counts")
}

/// Waits until nothing is queued or being sent; panics after [`WAIT`].
pub async fn wait_outbox_empty(app: &TestApp) {
    let drained = eventually(WAIT, async || {
        let c = counts(app);
        c.queued == 0 && c.sending == 0
    })
    .await;
    assert!(drained, "outbox still busy: {:?}", counts(app));
}

/// Waits until `n` entries are recorded failed and returns them, newest first.
pub async fn wait_failures(app: &TestApp, n: usize) -> Vec<FailedEntry> {
    let recorded = eventually(WAIT, async || counts(app).failed as usize >= n).await;
    let failures = app.state.ops.recent_failures(n + 10).expect("failures");
    assert!(recorded, "expected {n} failures, got {failures:?}");
    failures
}

/// The admin listener's `/metrics` text.
pub async fn metrics(app: &TestApp) -> String {
    metrics_at(&app.client, app.admin_port).await
}

/// `/metrics` of the admin listener on `admin_port`.
pub async fn metrics_at(client: &reqwest::Client, admin_port: u16) -> String {
    client
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// A text message from `user` with a fresh MsgId.
pub fn text_msg(user: &str, text: &str) -> InboundMessage {
    message_for(user, None, Some(text), TestApp::now()).expect("message")
}

/// An event from `user`, stamped now.
pub fn event_msg(user: &str, event: &str) -> InboundMessage {
    message_for(user, Some(event), None, TestApp::now()).expect("message")
}

/// Rows of the send log (`sends`) of a data dir: `(openid, outcome, reason)`, oldest first.
/// Read with a separate connection, as an operator's tool would.
pub fn send_log(data_dir: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(data_dir.join("kefu.sqlite3")).expect("open db");
    let mut stmt = conn
        .prepare("SELECT openid, outcome, reason FROM sends ORDER BY id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The data dir of an in-process test app.
pub fn data_dir(app: &TestApp) -> PathBuf {
    app.settings.data_dir.clone()
}

// ---- the real binary -----------------------------------------------------------------------

/// The `kefu` binary Cargo built for these tests.
pub const KEFU: &str = env!("CARGO_BIN_EXE_kefu");

/// A config folder for the real binary: `kefu.yaml`, `rules/`, `data/`, and the daemon's logs.
pub struct DaemonDir {
    pub dir: tempfile::TempDir,
}

impl DaemonDir {
    /// Writes `rules` and a config with one live app, listening on free loopback ports.
    pub fn new(rules: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        std::fs::write(dir.path().join("rules/delivery.yaml"), rules).expect("rules");
        Self { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("kefu.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (Re)writes `kefu.yaml` pointing the API at `api_base`, with `extra` top-level lines.
    pub fn write_config(&self, api_base: &str, extra: &str) -> Settings {
        let app = TestAppSpec::new("mp", "json", "plaintext").live();
        let text = format!(
            "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\ndata_dir: \"{}\"\nrules_dir: \"{}\"\napi_base: \"{api_base}\"\n{extra}\napps:\n{}",
            self.data_dir().display(),
            self.dir.path().join("rules").display(),
            app.yaml(),
        );
        std::fs::write(self.config(), text).expect("write config");
        config::load(&self.config()).expect("config loads")
    }
}

/// A running `kefu serve`. Killed (SIGKILL) when dropped, so a failing test leaves no process.
pub struct Daemon {
    child: Child,
    /// The public port, read from the daemon's "kefu is listening" log line.
    pub port: u16,
    /// The admin port (0 when off), from the same line.
    pub admin_port: u16,
    /// The daemon's stderr (JSON log lines), for failure messages.
    pub log: PathBuf,
    pub settings: Settings,
    pub client: reqwest::Client,
}

impl Daemon {
    /// Starts `kefu serve --config <dir>/kefu.yaml` and waits (bounded) until it listens.
    pub async fn start(dir: &DaemonDir, settings: Settings, name: &str) -> Self {
        Self::start_logging(dir, settings, name, "json").await
    }

    /// [`Self::start`] with the given `--log-format` (`json` or `text`).
    pub async fn start_logging(
        dir: &DaemonDir,
        settings: Settings,
        name: &str,
        log_format: &str,
    ) -> Self {
        let log = dir.dir.path().join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(KEFU)
            .args(["--log-format", log_format, "serve", "--config"])
            .arg(dir.config())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("kefu starts");
        let mut daemon = Self {
            child,
            port: 0,
            admin_port: 0,
            log,
            settings,
            client: crate::helpers::test_client(),
        };
        (daemon.port, daemon.admin_port) = daemon.wait_for_ports().await;
        daemon
    }

    /// The ports of the "kefu is listening" line, in either log format.
    fn listening_ports(&self) -> Option<(u16, u16)> {
        let field = |line: &str, name: &str| -> Option<u16> {
            let at = line.find(&format!(" {name}="))? + name.len() + 2;
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        self.log_text().lines().find_map(|line| {
            if let Ok(l) = serde_json::from_str::<Value>(line) {
                if l["message"] != "kefu is listening" {
                    return None;
                }
                let port = |k: &str| u16::try_from(l[k].as_u64()?).ok();
                return Some((port("port")?, port("admin_port")?));
            }
            line.contains("kefu is listening")
                .then(|| Some((field(line, "port")?, field(line, "admin_port")?)))?
        })
    }

    async fn wait_for_ports(&mut self) -> (u16, u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(ports) = self.listening_ports() {
                return ports;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kefu exited with {status} before listening:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kefu did not listen within 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon's log so far, one JSON object per line.
    pub fn log_lines(&self) -> Vec<Value> {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return Vec::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/metrics` of the admin listener.
    pub async fn metrics(&self) -> String {
        metrics_at(&self.client, self.admin_port).await
    }

    /// The daemon's resident memory, in KiB (`VmRSS` of /proc).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// File descriptors the daemon has open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Posts `msg` to app `mp` as WeChat would.
    pub async fn post(&self, msg: &InboundMessage) -> Reply {
        let app = self.settings.app("mp").expect("app mp");
        static NONCE: AtomicU32 = AtomicU32::new(1);
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed).to_string();
        let push = build_push(app, msg, TestApp::now(), &nonce).expect("push");
        let r = self
            .client
            .post(format!(
                "http://127.0.0.1:{}/wechat/mp?{}",
                self.port, push.query
            ))
            .header("Content-Type", push.content_type)
            .body(push.body)
            .send()
            .await
            .expect("POST to kefu");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Reply {
            status,
            content_type,
            body: r.text().await.expect("body"),
        }
    }

    /// SIGKILL, as a crash or an OOM kill would; waits for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM (through `kill -TERM`, libc is not a dependency); waits (bounded) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(sent.success(), "kill -TERM failed");
        self.wait_exit().await
    }

    /// Waits (bounded) for the process to exit by itself, e.g. after a signal already sent.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kefu did not stop within 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Outbox entries by state, read from a stopped (or running) daemon's database file.
pub fn counts_on_disk(data_dir: &Path) -> OutboxCounts {
    let conn = rusqlite::Connection::open(data_dir.join("kefu.sqlite3")).expect("open db");
    let mut c = OutboxCounts::default();
    let mut stmt = conn
        .prepare("SELECT state, count(*) FROM outbox GROUP BY state")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
        .expect("query");
    for row in rows {
        let (state, n) = row.expect("row");
        match state.as_str() {
            "queued" => c.queued = n,
            "sending" => c.sending = n,
            "failed" => c.failed = n,
            other => panic!("unknown outbox state {other}"),
        }
    }
    c
}

/// An address where nothing listens (the API is "down"): a privileged port, so that no test's
/// mock can be given it by the kernel in the meantime, as a port bound and released could be.
pub fn dead_api_base() -> String {
    let base = "http://127.0.0.1:9";
    assert!(
        std::net::TcpStream::connect("127.0.0.1:9").is_err(),
        "something listens on 127.0.0.1:9"
    );
    base.to_string()
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
