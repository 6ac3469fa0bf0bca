//! A throwaway `redis-server` for tests: started on a free loopback port in a temporary folder
//! with the settings kefu requires (`appendonly yes`, `appendfsync always`, no RDB), killed when
//! dropped. Without `redis-server` on the PATH, [`TestRedis::start`] returns `None` and says
//! which test it skipped and how to run it, unless `KEFU_REQUIRE_REDIS=1` (CI), which makes a
//! missing server a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server of one test.
pub struct TestRedis {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile_dir::TempDir>,
    extra: Vec<String>,
}

/// A minimal temporary directory (the library has no tempfile dependency).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(format!(
                "kefu-redis-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether `redis-server` can be run here.
pub fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl TestRedis {
    /// Starts a server for `test`, or `None` (with a line saying so) when there is none to run.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[])
    }

    /// [`Self::start`] with extra `--name value` settings (e.g. `--appendonly no`).
    pub fn start_with(test: &str, extra: &[&str]) -> Option<Self> {
        if !available() {
            if std::env::var("KEFU_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("{test}: KEFU_REQUIRE_REDIS=1 but redis-server is not installed");
            }
            // Straight to the process's stderr, past the test harness's capture, so that a
            // plain `cargo test` shows what it skipped.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: redis-server is not installed (apt-get install redis-server, \
                 then run `cargo test` again; CI sets KEFU_REQUIRE_REDIS=1)"
            );
            return None;
        }
        let tmp = tempfile_dir::TempDir::new().ok()?;
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.display().to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn();
        assert!(child.is_ok(), "cannot start redis-server: {child:?}");
        self.child = child.ok();
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The folder with its AOF.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server (SIGKILL), keeping its data folder.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data (its AOF).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs `redis-cli` against it; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

/// A Sentinel watching one [`TestRedis`] as master `name`, killed when dropped.
pub struct TestSentinel {
    child: Option<Child>,
    /// Its port (127.0.0.1).
    pub port: u16,
    _tmp: tempfile_dir::TempDir,
}

impl TestSentinel {
    /// Starts `redis-server --sentinel` monitoring `master` (quorum 1).
    pub fn start(master: &TestRedis, name: &str) -> Option<Self> {
        let tmp = tempfile_dir::TempDir::new().ok()?;
        let port = free_port();
        let conf = tmp.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {} 1\n",
                tmp.path().display(),
                master.port
            ),
        )
        .ok()?;
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let sentinel = Self {
            child: Some(child),
            port,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(sentinel)
    }
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
