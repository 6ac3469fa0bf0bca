//! `kefu.yaml` → typed [`Settings`].
//!
//! The file is read, `${VAR}` / `${VAR:-default}` are expanded line by line (so an unset variable
//! is reported with its line), then parsed with unknown keys refused. Every problem names the key
//! and the file line. Relative paths are resolved against the config file's folder, so a config
//! means the same thing from any working directory. Secrets are wrapped in [`Secret`], whose
//! `Debug` never shows them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dispatch::Context;
use crate::faq::FaqSettings;
use crate::protocol::Format;
use crate::protocol::crypto::AesKey;

/// A config error: where, and what.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The io error is the source: `{:#}` prints it once, after this.
    #[error("{path}: cannot read config")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

pub use crate::secret::Secret;

/// Mini Program or Official Account: decides whether a passive text reply is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    Miniprogram,
    OfficialAccount,
}

/// The message encryption mode chosen in the WeChat console. It decides what the server accepts
/// (never what a request claims) and what `kefu send` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Plaintext,
    Compatible,
    Safe,
}

pub use crate::store::QuotaSettings;

/// How replies leave the outbox: retry pacing and timeouts of the send API (SPEC §6). The
/// defaults suit WeChat; tests shorten them so that a retry or a timeout takes milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Backoff before the first retry, in milliseconds; doubles per attempt (with jitter).
    pub backoff_base_ms: u64,
    /// Backoff ceiling, in milliseconds.
    pub backoff_max_ms: u64,
    /// A reply still failing this many seconds after its first attempt is recorded as failed.
    pub give_up_after_secs: u64,
    /// …or after this many attempts.
    pub max_attempts: u32,
    /// Bound on one HTTP request to WeChat (a token fetch or a send), in milliseconds.
    pub request_timeout_ms: u64,
    /// Bound on one delivery (token fetch, send, and the resend after a token refresh), in
    /// milliseconds; a delivery cut off counts as a retryable failure.
    pub send_timeout_ms: u64,
    /// Sends in flight at once (always to different users).
    pub concurrency: usize,
    /// With a shared store (`store: redis://…`): how long a claimed entry belongs to the
    /// instance that claimed it; after that a peer takes it over (SPEC §8). Must exceed
    /// `send_timeout_ms`, so a live instance never loses an entry mid-send.
    pub lease_ms: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            give_up_after_secs: 600,
            max_attempts: 30,
            request_timeout_ms: 5_000,
            send_timeout_ms: 20_000,
            concurrency: 16,
            lease_ms: 30_000,
        }
    }
}

impl OutboxSettings {
    /// The first thing wrong with these settings, as `outbox.<key>: problem`.
    fn problem(&self) -> Option<String> {
        let positive = [
            ("backoff_base_ms", self.backoff_base_ms),
            ("backoff_max_ms", self.backoff_max_ms),
            ("give_up_after_secs", self.give_up_after_secs),
            ("max_attempts", u64::from(self.max_attempts)),
            ("request_timeout_ms", self.request_timeout_ms),
            ("send_timeout_ms", self.send_timeout_ms),
            ("concurrency", self.concurrency as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Some(format!("outbox.{key}: must be positive"));
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return Some("outbox.backoff_max_ms: must not be below backoff_base_ms".into());
        }
        None
    }
}

/// One WeChat app (Mini Program or Official Account) served under `/wechat/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// URL path segment: `/wechat/{id}`.
    pub id: String,
    #[serde(default = "default_kind")]
    pub kind: AppKind,
    /// The appid: checked inside every encrypted payload, and used to fetch the access token.
    pub appid: String,
    /// The AppSecret; empty means dry-run.
    #[serde(default)]
    pub secret: Secret,
    /// The console's Token: the key of every signature.
    pub token: Secret,
    #[serde(default)]
    pub encoding_aes_key: Secret,
    /// The key before the last rotation, still accepted (protocol doc §3.8).
    #[serde(default)]
    pub encoding_aes_key_previous: Secret,
    #[serde(default = "default_format")]
    pub format: Format,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_handoff_minutes")]
    pub handoff_minutes: u64,
    /// Record and log outbound API calls instead of making them.
    #[serde(default)]
    pub dry_run: bool,
    /// Rules folder of this app; the global `rules_dir` when absent.
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,

    /// Parsed AES keys: current first, then the previous one. Filled by [`load`].
    #[serde(skip)]
    pub aes_keys: Vec<AesKey>,
}

impl AppConfig {
    /// No secret means no token, so nothing can be sent: the app runs in dry-run.
    pub fn effective_dry_run(&self) -> bool {
        self.dry_run || self.secret.is_empty()
    }
}

fn default_kind() -> AppKind {
    AppKind::Miniprogram
}
fn default_format() -> Format {
    Format::Xml
}
fn default_mode() -> Mode {
    Mode::Plaintext
}
fn default_handoff_minutes() -> u64 {
    30
}

/// `media:` in kefu.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// A cached media_id older than this is uploaded again before use. WeChat forgets
    /// temporary media after 3 days (259,200 s); the default leaves an hour's margin.
    #[serde(default = "default_reupload_after")]
    pub reupload_after_secs: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            reupload_after_secs: default_reupload_after(),
        }
    }
}

fn default_reupload_after() -> u64 {
    3 * 24 * 3600 - 3600
}

/// The whole of `kefu.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_rules_dir")]
    pub rules_dir: PathBuf,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    #[serde(default = "default_skew")]
    pub max_timestamp_skew_secs: u64,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// A request whose headers and body have not arrived within this many seconds is answered
    /// 408 and closed (slow clients cannot hold sockets or memory).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Open connections of the public listener at most (further ones wait in the kernel's
    /// backlog until one closes).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_retention")]
    pub log_retention_days: u32,
    /// `sqlite` (the default: one instance, `data_dir`), or a Redis URL shared by several
    /// instances: `redis://…`, `rediss://…` (TLS), `redis+sentinel://h:p,h:p/<master>/<db>`.
    #[serde(default = "default_store")]
    pub store: String,
    /// The first part of every Redis key, so several deployments can share one Redis.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// `normal`: a committed push survives a crash of kefu; `full`: also a power loss (an fsync
    /// per group commit).
    #[serde(default)]
    pub durability: crate::store::Durability,
    #[serde(default)]
    pub faq: FaqSettings,
    #[serde(default)]
    pub quota: QuotaSettings,
    #[serde(default)]
    pub outbox: OutboxSettings,
    /// Bearer token required by the admin listener (`/metrics`, console) when set.
    #[serde(default)]
    pub admin_token: Secret,
    /// Host names the admin listener answers besides its own address and localhost (for a
    /// name an operator's browser uses); any other Host header gets 421 (no DNS rebinding).
    #[serde(default)]
    pub admin_hosts: Vec<String>,
    /// Hosts (`host` or `host:port`) that `fetch` rules may call (SPEC §10); none by default.
    #[serde(default)]
    pub fetch_hosts: Vec<String>,
    /// Image files uploaded as temporary media (SPEC §10).
    #[serde(default)]
    pub media: MediaSettings,
    pub apps: Vec<AppConfig>,

    /// The parsed `timezone`. Filled by [`load`].
    #[serde(skip, default = "default_tz")]
    pub tz: chrono_tz::Tz,
    /// The file this was loaded from.
    #[serde(skip)]
    pub source: PathBuf,
    /// Rules folders written as relative paths (resolved against the config's folder), for
    /// [`load`]'s fallback to the working directory.
    #[serde(skip)]
    relative_rules_dirs: Vec<PathBuf>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_admin_listen() -> String {
    "127.0.0.1:9091".into()
}
fn default_data_dir() -> PathBuf {
    "./data".into()
}
fn default_rules_dir() -> PathBuf {
    "./rules".into()
}
fn default_timezone() -> String {
    "Asia/Shanghai".into()
}
fn default_tz() -> chrono_tz::Tz {
    chrono_tz::Asia::Shanghai
}
fn default_api_base() -> String {
    "https://api.weixin.qq.com".into()
}
fn default_skew() -> u64 {
    300
}
fn default_max_body() -> usize {
    65536
}
fn default_store() -> String {
    "sqlite".into()
}
fn default_redis_prefix() -> String {
    "kefu".into()
}
fn default_retention() -> u32 {
    30
}
fn default_request_timeout() -> u64 {
    10
}
fn default_max_connections() -> usize {
    10_000
}

/// Whether a listen address is reachable only from this host (`127.0.0.0/8`, `::1`,
/// `localhost`).
pub fn is_loopback_listen(addr: &str) -> bool {
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return sock.ip().is_loopback();
    }
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.eq_ignore_ascii_case("localhost")
}

impl Settings {
    /// Whether `store:` names a shared store (Redis, for several instances) rather than the
    /// embedded SQLite in `data_dir`.
    pub fn shared_store(&self) -> bool {
        self.store != "sqlite"
    }

    /// The decision context of a tool (`kefu try`, `kefu eval`, the console's try box), which
    /// answers as the first app would.
    pub fn tool_context(&self, now: i64) -> Context {
        let handoff_minutes = self.apps.first().map_or(30, |a| a.handoff_minutes);
        Context::for_tools(now, self.tz, handoff_minutes, self.faq.menu_ttl_secs)
    }

    /// Relative rules folders are the config file's; but when such a folder does not exist there
    /// and does exist relative to the working directory (a config written elsewhere and run from
    /// the project folder), the existing one is used, and the choice is logged.
    fn prefer_existing_rules_dirs(&mut self, config: &Path) {
        let base = config.parent().unwrap_or(Path::new(""));
        if base.as_os_str().is_empty() {
            return;
        }
        let relative = std::mem::take(&mut self.relative_rules_dirs);
        let pick = |dir: &mut PathBuf| {
            if !relative.contains(dir) || dir.exists() {
                return;
            }
            let Ok(in_cwd) = dir.strip_prefix(base) else {
                return;
            };
            if in_cwd.exists() {
                tracing::warn!(
                    config_relative = %dir.display(),
                    used = %in_cwd.display(),
                    "rules folder not found next to the config file; using the one in the working directory"
                );
                *dir = in_cwd.to_path_buf();
            }
        };
        pick(&mut self.rules_dir);
        for app in &mut self.apps {
            if let Some(dir) = app.rules_dir.as_mut() {
                pick(dir);
            }
        }
    }

    /// The app served at `/wechat/{id}`.
    pub fn app(&self, id: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.id == id)
    }

    /// The rules folder an app uses.
    pub fn rules_dir_of<'a>(&'a self, app: &'a AppConfig) -> &'a Path {
        app.rules_dir.as_deref().unwrap_or(&self.rules_dir)
    }

    /// Every distinct rules folder, in the order the apps name them (global one first).
    pub fn all_rules_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.rules_dir.clone()];
        for app in &self.apps {
            if let Some(dir) = &app.rules_dir
                && !dirs.contains(dir)
            {
                dirs.push(dir.clone());
            }
        }
        dirs
    }
}

/// Reads, expands and validates a config file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut settings = parse(&text, path, &|name| std::env::var(name).ok())?;
    settings.prefer_existing_rules_dirs(path);
    Ok(settings)
}

/// Parses config text; `env` looks variables up (the process environment in [`load`]).
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let expanded = expand_env(text, path, env)?;
    let mut settings: Settings = serde_yaml::from_str(&expanded).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        ConfigError::At {
            path: path.to_path_buf(),
            line,
            message: e.to_string(),
        }
    })?;
    settings.source = path.to_path_buf();
    let at = |key: &str, nth: usize, message: String| ConfigError::At {
        path: path.to_path_buf(),
        line: line_of_key(text, key, nth),
        message,
    };

    settings.tz = settings.timezone.parse().map_err(|_| {
        at(
            "timezone",
            0,
            format!("timezone: unknown time zone {:?}", settings.timezone),
        )
    })?;
    if settings.apps.is_empty() {
        return Err(at("apps", 0, "apps: at least one app is required".into()));
    }
    if settings.max_body_bytes == 0 {
        return Err(at(
            "max_body_bytes",
            0,
            "max_body_bytes: must be positive".into(),
        ));
    }
    if settings.request_timeout_secs == 0 {
        return Err(at(
            "request_timeout_secs",
            0,
            "request_timeout_secs: must be positive".into(),
        ));
    }
    if settings.max_connections == 0 {
        return Err(at(
            "max_connections",
            0,
            "max_connections: must be positive".into(),
        ));
    }
    let admin = settings.admin_listen.trim();
    if !admin.is_empty() && !is_loopback_listen(admin) && settings.admin_token.is_empty() {
        return Err(at(
            "admin_listen",
            0,
            format!(
                "admin_listen: {admin:?} is reachable from other hosts; set admin_token \
                 (the console shows users' messages) or listen on 127.0.0.1"
            ),
        ));
    }
    if let Some(problem) = settings.outbox.problem() {
        return Err(at("outbox", 0, problem));
    }
    if settings.shared_store() {
        if let Err(problem) = crate::store::RedisStore::check_url(&settings.store) {
            return Err(at("store", 0, format!("store: {problem}")));
        }
        if settings.outbox.lease_ms <= settings.outbox.send_timeout_ms {
            return Err(at(
                "outbox",
                0,
                format!(
                    "outbox.lease_ms: must exceed send_timeout_ms ({}), or a peer could take over an entry still being sent",
                    settings.outbox.send_timeout_ms
                ),
            ));
        }
    }
    if settings.redis_prefix.is_empty() || settings.redis_prefix.contains(['{', '}', ' ']) {
        return Err(at(
            "redis_prefix",
            0,
            "redis_prefix: must be non-empty, without spaces or braces".into(),
        ));
    }
    let in_app = |i: usize, key: &str, message: String| ConfigError::At {
        path: path.to_path_buf(),
        line: app_key_line(text, i, key),
        message,
    };
    for (i, app) in settings.apps.iter_mut().enumerate() {
        let app_id = app.id.clone();
        if app_id.is_empty()
            || !app_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(in_app(
                i,
                "id",
                format!("apps[{i}].id: {app_id:?} must be letters, digits, - or _"),
            ));
        }
        if app.token.is_empty() {
            return Err(in_app(
                i,
                "token",
                format!("apps[{i}].token: must not be empty"),
            ));
        }
        // `dry_run: false` says the operator means to send; an empty secret (typically an unset
        // `${VAR:-}`) would silently turn that into dry-run, and users would never get a reply.
        if !app.dry_run && app.secret.is_empty() && app_writes_key(text, i, "dry_run") {
            return Err(in_app(
                i,
                "dry_run",
                format!(
                    "apps[{i}].dry_run: false, but apps[{i}].secret is empty (an unset \
                     environment variable?): nothing could be sent; set the secret, or write \
                     dry_run: true"
                ),
            ));
        }
        let mut keys = Vec::new();
        for (key, value) in [
            ("encoding_aes_key", &app.encoding_aes_key),
            ("encoding_aes_key_previous", &app.encoding_aes_key_previous),
        ] {
            if !value.is_empty() {
                keys.push(
                    AesKey::parse(value.expose())
                        .map_err(|e| in_app(i, key, format!("apps[{i}].{key}: {e}")))?,
                );
            }
        }
        if app.mode != Mode::Plaintext && keys.is_empty() {
            return Err(in_app(
                i,
                "mode",
                format!("apps[{i}].mode: {:?} mode needs encoding_aes_key", app.mode)
                    .to_lowercase(),
            ));
        }
        app.aes_keys = keys;
    }
    for (i, app) in settings.apps.iter().enumerate() {
        if settings.apps[..i].iter().any(|a| a.id == app.id) {
            return Err(in_app(
                i,
                "id",
                format!("apps[{i}].id: duplicate app id {:?}", app.id),
            ));
        }
    }

    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    settings.data_dir = resolve(&settings.data_dir);
    if settings.rules_dir.is_relative() {
        settings
            .relative_rules_dirs
            .push(base.join(&settings.rules_dir));
    }
    settings.rules_dir = resolve(&settings.rules_dir);
    for app in &mut settings.apps {
        if let Some(dir) = &app.rules_dir {
            if dir.is_relative() {
                settings.relative_rules_dirs.push(base.join(dir));
            }
            app.rules_dir = Some(resolve(dir));
        }
    }
    Ok(settings)
}

/// The 1-based line of `key:` inside the block of the `nth` app (the lines from its `- id:` to
/// the next one), or of the block's first line when the key is not written there; 0 when there
/// is no such app. A rough scan is enough: the values were already validated by serde.
fn app_key_line(text: &str, nth: usize, key: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&n| lines[n].trim_start().starts_with("- id:"))
        .collect();
    let Some(&start) = starts.get(nth) else {
        return 0;
    };
    let end = starts.get(nth + 1).copied().unwrap_or(lines.len());
    (start..end)
        .find(|&n| is_key_line(lines[n], key))
        .unwrap_or(start)
        + 1
}

/// Whether the `nth` app's block writes `key:`.
fn app_writes_key(text: &str, nth: usize, key: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&n| lines[n].trim_start().starts_with("- id:"))
        .collect();
    let Some(&start) = starts.get(nth) else {
        return false;
    };
    let end = starts.get(nth + 1).copied().unwrap_or(lines.len());
    lines
        .get(start..end)
        .is_some_and(|block| block.iter().any(|l| is_key_line(l, key)))
}

/// Whether a line writes `key:` (possibly as a list item).
fn is_key_line(line: &str, key: &str) -> bool {
    line.trim_start()
        .trim_start_matches("- ")
        .strip_prefix(key)
        .is_some_and(|r| r.trim_start().starts_with(':'))
}

/// The 1-based line of the `nth` (0-based) occurrence of `key:`; 0 when not found.
fn line_of_key(text: &str, key: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| is_key_line(l, key))
        .nth(nth)
        .map(|(n, _)| n + 1)
        .unwrap_or(0)
}

/// Expands `${VAR}` and `${VAR:-default}`; an unset `${VAR}` without default is an error naming
/// the variable and its line. Comments are left as they are.
fn expand_env(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            // Leave comments alone: a `#` before the `${` that starts a comment.
            if let Some(hash) = comment_start(rest)
                && hash < start
            {
                break;
            }
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ConfigError::At {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: "unterminated ${".into(),
                });
            };
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ConfigError::At {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: format!("invalid variable name in ${{{inner}}}"),
                });
            }
            match (env(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(ConfigError::At {
                        path: path.to_path_buf(),
                        line: n + 1,
                        message: format!(
                            "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                        ),
                    });
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Byte offset of a `#` that starts a YAML comment (at line start or after a blank), if any.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_none(_: &str) -> Option<String> {
        None
    }

    const MINIMAL: &str = "apps:\n  - id: demo\n    appid: wx1\n    token: t\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let s = parse(MINIMAL, Path::new("/etc/kefu/kefu.yaml"), &env_none).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.max_timestamp_skew_secs, 300);
        assert_eq!(s.rules_dir, PathBuf::from("/etc/kefu/./rules"));
        assert_eq!(s.apps[0].format, Format::Xml);
        assert!(s.apps[0].effective_dry_run(), "no secret means dry-run");
        assert_eq!(s.tz, chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn fetch_hosts_and_media_settings_are_read_and_unknown_media_keys_refused() {
        let s = parse(MINIMAL, Path::new("k.yaml"), &env_none).unwrap();
        assert!(s.fetch_hosts.is_empty());
        assert_eq!(s.media.reupload_after_secs, 3 * 24 * 3600 - 3600);
        let text = format!(
            "fetch_hosts: [shop.example.com, \"127.0.0.1:8000\"]\nmedia: {{reupload_after_secs: 60}}\n{MINIMAL}"
        );
        let s = parse(&text, Path::new("k.yaml"), &env_none).unwrap();
        assert_eq!(s.fetch_hosts, ["shop.example.com", "127.0.0.1:8000"]);
        assert_eq!(s.media.reupload_after_secs, 60);
        let text = format!("media: {{reupload_after: 60}}\n{MINIMAL}");
        let err = parse(&text, Path::new("k.yaml"), &env_none).unwrap_err();
        assert!(err.to_string().contains("reupload_after"), "{err}");
    }

    #[test]
    fn env_expansion_with_default_and_value() {
        let text = "apps:\n  - id: demo\n    appid: wx1\n    token: \"${TOK:-fallback}\"\n    secret: \"${SEC}\"\n";
        let env = |name: &str| (name == "SEC").then(|| "s3cret".to_string());
        let s = parse(text, Path::new("k.yaml"), &env).unwrap();
        assert_eq!(s.apps[0].token.expose(), "fallback");
        assert_eq!(s.apps[0].secret.expose(), "s3cret");
        assert_eq!(format!("{:?}", s.apps[0].secret), "***");
    }

    #[test]
    fn unset_variable_names_variable_and_line() {
        let text = "apps:\n  - id: demo\n    appid: wx1\n    token: \"${NOPE}\"\n";
        let err = parse(text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k.yaml:4:"), "{err}");
        assert!(err.contains("NOPE"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "listen: x\nlisten_typo: y\napps: []\n";
        let err = parse(text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k.yaml:2:"), "{err}");
        assert!(err.contains("listen_typo"), "{err}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = "apps:\n  - id: demo\n    appid: wx1\n";
        let err = parse(text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("token"), "{err}");
    }

    #[test]
    fn bad_aes_key_names_key_and_line() {
        let text =
            "apps:\n  - id: demo\n    appid: wx1\n    token: t\n    encoding_aes_key: short\n";
        let err = parse(text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k.yaml:5:"), "{err}");
        assert!(err.contains("encoding_aes_key"), "{err}");
    }

    #[test]
    fn an_error_of_the_second_app_names_its_own_line() {
        // The first app writes no `mode:`; the second app's line must still be found.
        let text = "apps:\n  - id: a\n    appid: wx1\n    token: t\n  - id: b\n    appid: wx2\n    token: t\n    mode: safe\n";
        let err = parse(text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k.yaml:8:"), "{err}");
        assert!(err.contains("apps[1].mode"), "{err}");
    }

    #[test]
    fn safe_mode_without_key_is_refused() {
        let text = "apps:\n  - id: demo\n    appid: wx1\n    token: t\n    mode: safe\n";
        let err = parse(text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("encoding_aes_key"), "{err}");
    }

    #[test]
    fn outbox_section_is_optional_and_checked() {
        let s = parse(MINIMAL, Path::new("k.yaml"), &env_none).unwrap();
        assert_eq!(s.outbox, OutboxSettings::default());
        let text = format!("outbox:\n  backoff_base_ms: 20\n  send_timeout_ms: 300\n{MINIMAL}");
        let s = parse(&text, Path::new("k.yaml"), &env_none).unwrap();
        assert_eq!(s.outbox.backoff_base_ms, 20);
        assert_eq!(s.outbox.send_timeout_ms, 300);
        assert_eq!(s.outbox.max_attempts, 30, "unset keys keep their default");
        let text = format!("outbox:\n  request_timeout_ms: 0\n{MINIMAL}");
        let err = parse(&text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k.yaml:1:"), "{err}");
        assert!(err.contains("outbox.request_timeout_ms"), "{err}");
        let text = format!("outbox:\n  backof_base_ms: 5\n{MINIMAL}");
        let err = parse(&text, Path::new("k.yaml"), &env_none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("backof_base_ms"), "{err}");
    }

    #[test]
    fn comments_are_not_expanded() {
        let text =
            "# uses ${UNSET}\napps:\n  - id: demo # ${ALSO_UNSET}\n    appid: wx1\n    token: t\n";
        assert!(parse(text, Path::new("k.yaml"), &env_none).is_ok());
    }
}
