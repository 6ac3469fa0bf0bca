//! The Redis store: the second implementation of the store interface, for several instances
//! behind one load balancer (SPEC §8; design and departures in docs/operations.md, "Running
//! several instances").
//!
//! Shared through Redis: dedupe leases and memos, sessions, send windows, the outbox (a lease
//! queue with a fence per entry), the conversation log (a stream per app, trimmed to
//! `log_retention_days`), the media cache and small shared values (the access token). Every
//! multi-key change of a push is one script ([`scripts`]); every key of an app shares the hash
//! tag `{app}` ([`keys`]); leases and send windows run on the server's clock (`TIME`).
//!
//! Module map: [`connect`] (URLs, the reconnecting connection, start-up checks), [`keys`],
//! [`scripts`], [`push`] (the request path: [`crate::store::Store`]), [`outbox`]
//! ([`crate::store::Outbox`]), [`ops`] (what operators read), [`media`] (the media cache and
//! shared values), [`migrate`] (the SQLite outbox moved in at start), [`testing`] (a throwaway
//! redis-server for tests).

pub mod connect;
pub mod keys;
pub mod media;
pub mod migrate;
pub mod ops;
pub mod outbox;
pub mod push;
pub mod scripts;
pub mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::{PushKey, QuotaSettings, RecordedHook, StoreError};
use connect::{Conn, Target};
use keys::Keys;
use scripts::Scripts;

/// How the Redis store is set up (start-up builds it from `kefu.yaml`).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://…`, `rediss://…` or `redis+sentinel://…`.
    pub url: String,
    /// `redis_prefix`: the first part of every key.
    pub prefix: String,
    /// The app ids of `kefu.yaml` (the outbox and the log are per app).
    pub apps: Vec<String>,
    /// The send windows.
    pub quota: QuotaSettings,
    /// `outbox.lease_ms`: how long a claimed entry is this instance's before a peer may take it.
    pub lease_ms: i64,
    /// How long a push being decided is held (a retry on another instance waits meanwhile).
    pub dedupe_lease_ms: i64,
    /// How long an answered push's memo stays (WeChat retries within seconds).
    pub memo_ttl_secs: i64,
    /// The conversation log and failed entries are trimmed after this many days.
    pub log_retention_days: u32,
    /// Bound on one Redis call.
    pub op_timeout: Duration,
    /// How often the outbox worker looks for peers' expired leases and due retries.
    pub poll: Duration,
    /// This instance's name on its leases (unique per process).
    pub instance: String,
    /// Told of every recorded push (the message metrics).
    pub on_recorded: Option<RecordedHook>,
    /// Told of every settle refused for a stale fence (a metric).
    pub on_stale_fence: Option<StaleFenceHook>,
}

/// Called when a peer's takeover made this instance's send outcome stale.
#[derive(Clone)]
pub struct StaleFenceHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for StaleFenceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaleFenceHook")
    }
}

impl RedisOptions {
    /// Defaults for `url` and the apps.
    pub fn new(url: &str, apps: Vec<String>) -> Self {
        Self {
            url: url.to_string(),
            prefix: "kefu".into(),
            apps,
            quota: QuotaSettings::default(),
            lease_ms: 30_000,
            dedupe_lease_ms: 4_000,
            memo_ttl_secs: 300,
            log_retention_days: 30,
            op_timeout: Duration::from_millis(1500),
            poll: Duration::from_millis(500),
            instance: instance_name(),
            on_recorded: None,
            on_stale_fence: None,
        }
    }

    fn retention_ms(&self) -> i64 {
        i64::from(self.log_retention_days) * 86_400_000
    }
}

/// `<host>-<pid>-<random>`: unique per process, readable in `ob:s`.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kefu".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// The Redis store. Clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: Conn,
    pub(crate) opts: RedisOptions,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    /// The runtime the connection lives on (operators' blocking reads run on it).
    pub(crate) rt: Handle,
    /// Push keys this instance leased, with the lease's token.
    pub(crate) leases: Mutex<HashMap<PushKey, String>>,
    /// The raw session each user's last read found, for the commit's compare-and-write.
    pub(crate) seen_sessions: Mutex<HashMap<(String, String), String>>,
    /// Outbox entries this instance claimed, by the id the worker knows.
    pub(crate) claimed: Mutex<HashMap<i64, outbox::Held>>,
    /// Entries this instance's commits leased to it, not yet handed to the worker.
    pub(crate) ready: Mutex<std::collections::VecDeque<crate::store::OutboxEntry>>,
    /// When the claim script last ran.
    pub(crate) last_poll: Mutex<Option<std::time::Instant>>,
    pub(crate) next_local_id: AtomicI64,
    /// Entries not settled for good, as last seen (the `/metrics` gauge).
    pub(crate) depth: AtomicU64,
    /// A stale owner's settle refused (a possible duplicate send).
    pub(crate) stale_fences: AtomicU64,
    pub(crate) wakeup: Arc<Notify>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn failed(what: &str, e: redis::RedisError) -> StoreError {
    StoreError::caused(what, e)
}

impl RedisStore {
    /// Connects, checks the server (a setting that would lose acknowledged state refuses the
    /// start, naming it), and starts the outbox's poll. Call inside the tokio runtime.
    pub async fn open(opts: RedisOptions) -> Result<Self, StoreError> {
        let target = connect::parse_url(&opts.url)
            .map_err(|e| StoreError::backend(format!("store: {e}")))?;
        let conn = connect::connect(&target, opts.op_timeout).await?;
        let check = connect::check_server(&conn).await?;
        for w in &check.warnings {
            tracing::warn!("redis: {w}");
        }
        if !check.problems.is_empty() {
            return Err(StoreError::backend(format!(
                "refusing to start on this Redis: {}",
                check.problems.join("; ")
            )));
        }
        Ok(Self::from_conn(conn, opts))
    }

    /// Connects without the start-up checks (the CLI's read side).
    pub async fn open_reader(opts: RedisOptions) -> Result<Self, StoreError> {
        let target = connect::parse_url(&opts.url).map_err(StoreError::backend)?;
        let conn = connect::connect(&target, opts.op_timeout).await?;
        Ok(Self::from_conn(conn, opts))
    }

    fn from_conn(conn: Conn, opts: RedisOptions) -> Self {
        let store = Self {
            inner: Arc::new(Inner {
                conn,
                keys: Keys::new(&opts.prefix),
                opts,
                scripts: Scripts::default(),
                rt: Handle::current(),
                leases: Mutex::new(HashMap::new()),
                seen_sessions: Mutex::new(HashMap::new()),
                claimed: Mutex::new(HashMap::new()),
                ready: Mutex::new(std::collections::VecDeque::new()),
                last_poll: Mutex::new(None),
                next_local_id: AtomicI64::new(1),
                depth: AtomicU64::new(0),
                stale_fences: AtomicU64::new(0),
                wakeup: Arc::new(Notify::new()),
            }),
        };
        tokio::spawn(poll_peers(
            Arc::downgrade(&store.inner),
            store.inner.opts.poll,
        ));
        store
    }

    /// Parses a `store:` value naming Redis (config validation uses it).
    pub fn check_url(url: &str) -> Result<(), String> {
        connect::parse_url(url).map(|_: Target| ())
    }

    /// This instance's name on its leases.
    pub fn instance(&self) -> &str {
        &self.inner.opts.instance
    }

    /// Settles refused because a peer had taken the entry over (each a possible duplicate).
    pub fn stale_fences(&self) -> u64 {
        self.inner.stale_fences.load(Ordering::Relaxed)
    }

    /// Runs `f` bounded by the call timeout, turning a timeout into a store error.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.opts.op_timeout * 2, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(failed(what, e)),
            Err(_) => Err(StoreError::backend(format!("{what}: Redis did not answer"))),
        }
    }

    /// Blocks on `f` from a thread that is not a runtime worker (the operators' read side).
    pub(crate) fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.inner.rt.block_on(f))
            }
            _ => self.inner.rt.block_on(f),
        }
    }
}

/// Wakes the outbox worker every `every`: entries of dead peers and due retries are found by
/// polling (a commit on this instance wakes it at once).
async fn poll_peers(inner: std::sync::Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match inner.upgrade() {
            Some(inner) => inner.wakeup.notify_one(),
            None => return,
        }
    }
}
