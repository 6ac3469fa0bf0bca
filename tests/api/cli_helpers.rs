//! Running the real `kefu` binary: one-shot commands (`check`, `try`, `eval`) with their exit
//! code and output, temporary rules folders, and a daemon (`kefu serve`) in its own process for
//! what an in-process server cannot show (signals).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kefu::cli::send::{build_push, message_for};
use kefu::config::{self, Settings};

use crate::bot_helpers::{Answer, answer_of};
use crate::helpers::{APPID, Reply, TOKEN, TestApp, eventually};

/// The repository root: the shipped `kefu.yaml`, `rules/` and `tests/data/` are relative to it.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// What a command did.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kefu"));
    cmd.args(args)
        .current_dir(dir)
        // The tools log warnings only; a RUST_LOG of the caller would add lines to stderr.
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("kefu runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `kefu ARGS` in the repository root (the shipped `kefu.yaml` is the default config).
pub fn kefu(args: &[&str]) -> Run {
    kefu_in(Path::new(REPO), args)
}

/// `kefu ARGS` in `dir`.
pub fn kefu_in(dir: &Path, args: &[&str]) -> Run {
    finish(command(dir, args).spawn().expect("spawn kefu"))
}

/// `kefu ARGS` in the repository root with these environment variables set.
pub fn kefu_env(args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut cmd = command(Path::new(REPO), args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    finish(cmd.spawn().expect("spawn kefu"))
}

/// `kefu ARGS` in the repository root with `input` on stdin.
pub fn kefu_stdin(args: &[&str], input: &str) -> Run {
    let mut child = command(Path::new(REPO), args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn kefu");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    finish(child)
}

/// `kefu ARGS` with `input` on stdin, whose reader goes away after `keep` bytes of output (as
/// `kefu … | head -c keep` does): the exit status and stderr.
pub fn kefu_into_closed_pipe(args: &[&str], input: &str, keep: usize) -> (ExitStatus, String) {
    use std::io::Read;
    let mut child = command(Path::new(REPO), args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn kefu");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    // Fed from a thread: kefu stops reading once its stdout is gone.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut head = vec![0u8; keep];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("the first bytes of output");
    // The stdout pipe is dropped here: kefu's next writes fail.
    let out = child.wait_with_output().expect("kefu ends");
    let _ = feeder.join();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A temporary rules folder.
pub struct RulesDir {
    pub dir: tempfile::TempDir,
}

impl RulesDir {
    /// A folder holding `files` (name, text); names may contain `/`.
    pub fn new(files: &[(&str, &str)]) -> RulesDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, text).expect("write rules file");
        }
        RulesDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The folder as a command-line argument.
    pub fn arg(&self) -> &str {
        self.dir.path().to_str().expect("UTF-8 temp path")
    }

    /// The path of one of its files, as diagnostics print it.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// `kefu serve` in its own process, on loopback ports it chose itself.
pub struct Daemon {
    child: Mutex<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub settings: Settings,
    /// Every stderr line so far (JSON logs), for failure messages.
    pub logs: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Daemon {
    /// Writes `dir/kefu.yaml` (rules in `dir/rules`, one app `oa` of `kind` in `format`,
    /// plaintext, dry-run) and starts `kefu serve` on it; returns once it listens.
    pub async fn start(dir: &Path, format: &str, kind: &str) -> Daemon {
        let config = dir.join("kefu.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\ndata_dir: ./data\nrules_dir: ./rules\napi_base: \"http://127.0.0.1:9\"\napps:\n  - id: oa\n    kind: {kind}\n    appid: \"{APPID}\"\n    token: \"{TOKEN}\"\n    format: {format}\n    mode: plaintext\n    dry_run: true\n"
            ),
        )
        .expect("write config");
        let settings = config::load(&config).expect("daemon config loads");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kefu"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&config)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kefu serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        // Drained for the whole life of the process: a full pipe would block its logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut ports = None;
        let listening = eventually(Duration::from_secs(30), async || {
            ports = logs
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["message"] == "kefu is listening")
                .and_then(|v| Some((v["port"].as_u64()? as u16, v["admin_port"].as_u64()? as u16)));
            ports.is_some() || child.try_wait().ok().flatten().is_some()
        })
        .await;
        let Some((port, admin_port)) = ports.filter(|_| listening) else {
            let _ = child.kill();
            panic!("kefu serve did not start: {:#?}", logs.lock().unwrap());
        };
        Daemon {
            child: Mutex::new(child),
            port,
            admin_port,
            settings,
            logs,
            client: crate::helpers::test_client(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Sends a signal (`HUP`, `TERM`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    /// SIGTERM, then waits (with a deadline) for the exit; true when it exited 0.
    pub async fn stop(&self) -> bool {
        self.signal("TERM");
        let mut code = None;
        eventually(Duration::from_secs(20), async || {
            code = self.child.lock().unwrap().try_wait().ok().flatten();
            code.is_some()
        })
        .await;
        code.is_some_and(|c| c.success())
    }

    pub async fn healthz(&self) -> serde_json::Value {
        self.client
            .get(format!("http://127.0.0.1:{}/healthz", self.port))
            .send()
            .await
            .expect("GET /healthz")
            .json()
            .await
            .expect("healthz JSON")
    }

    pub async fn rules_version(&self) -> u64 {
        self.healthz().await["rules"]["version"]
            .as_u64()
            .expect("rules.version")
    }

    /// Posts a text push from `user` to the app `oa` as WeChat would and reads the answer.
    pub async fn ask(&self, user: &str, text: &str) -> Answer {
        let cfg = self.settings.app("oa").expect("app oa");
        let now = TestApp::now();
        let msg = message_for(user, None, Some(text), now).expect("message");
        let push = build_push(cfg, &msg, now, &format!("{}", rand_nonce())).expect("push");
        let r = self
            .client
            .post(format!(
                "http://127.0.0.1:{}/wechat/oa?{}",
                self.port, push.query
            ))
            .header("Content-Type", push.content_type)
            .body(push.body)
            .send()
            .await
            .expect("POST");
        let reply = Reply {
            status: r.status().as_u16(),
            content_type: String::new(),
            body: r.text().await.expect("body"),
        };
        answer_of(&reply)
    }

    /// The folder the daemon runs in.
    pub fn rules_dir(&self) -> PathBuf {
        self.settings.rules_dir.clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rand_nonce() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(500_000);
    N.fetch_add(1, Ordering::Relaxed)
}
