//! Reaching Redis: the three URL forms of SPEC §8, one reconnecting connection shared by every
//! call, and the start-up checks that refuse a server that would lose acknowledged state.
//!
//! - `redis://[:password@]host:port/db` and `rediss://…` (TLS, rustls) go straight to one server
//!   through a [`ConnectionManager`], which reconnects by itself.
//! - `redis+sentinel://[:password@]host:port,host:port/<master>/<db>` asks the Sentinels for the
//!   master, connects to it, and asks again every few seconds: after a failover the connection
//!   moves to the new master.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::store::StoreError;

/// A parsed `store:` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://` or `rediss://`: one server.
    Direct(String),
    /// `redis+sentinel://`: the Sentinels, the master's name, the database, the password.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        db: i64,
        password: Option<String>,
    },
}

/// Parses a `store:` value that names Redis; the error says what is wrong in the operator's
/// words. Secrets are never echoed.
pub fn parse_url(url: &str) -> Result<Target, String> {
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let password = auth
            .map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_string())
            .filter(|p| !p.is_empty());
        let mut parts = rest.split('/');
        let hosts = parts.next().unwrap_or_default();
        let master = parts.next().unwrap_or_default().to_string();
        let db = match parts.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .map_err(|_| format!("redis+sentinel URL: database `{db}` is not a number"))?,
        };
        if parts.next().is_some() {
            return Err(
                "redis+sentinel URL: expected redis+sentinel://host:port,host:port/<master>/<db>"
                    .into(),
            );
        }
        if master.is_empty() {
            return Err(
                "redis+sentinel URL: the master's name is missing (…/<master>/<db>)".into(),
            );
        }
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if sentinels.is_empty() {
            return Err("redis+sentinel URL: no Sentinel address".into());
        }
        for s in &sentinels {
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!(
                    "redis+sentinel URL: `{s}` is not host:port of a Sentinel"
                ));
            }
        }
        return Ok(Target::Sentinel {
            sentinels,
            master,
            db,
            password,
        });
    }
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://"))
    {
        return Err(
            "a Redis store URL starts with redis://, rediss:// or redis+sentinel://".into(),
        );
    }
    match url.into_connection_info() {
        Ok(_) => Ok(Target::Direct(url.to_string())),
        Err(e) => Err(format!("not a valid Redis URL ({})", e.category())),
    }
}

/// The one connection every store call clones: multiplexed (calls pipeline on it), reconnecting.
#[derive(Clone)]
pub struct Conn {
    current: Arc<ArcSwap<ConnectionManager>>,
}

impl Conn {
    /// A handle for one call (cheap: a clone of the multiplexed connection).
    pub fn get(&self) -> ConnectionManager {
        (**self.current.load()).clone()
    }
}

fn manager_config(op_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(op_timeout))
        .set_connection_timeout(Some(op_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

fn failed(what: &str, e: redis::RedisError) -> StoreError {
    StoreError::caused(what, e)
}

/// Connects to `target`; in Sentinel mode also starts the task that follows a failover.
pub async fn connect(target: &Target, op_timeout: Duration) -> Result<Conn, StoreError> {
    match target {
        Target::Direct(url) => {
            let client = Client::open(url.as_str()).map_err(|e| failed("invalid Redis URL", e))?;
            let manager = ConnectionManager::new_with_config(client, manager_config(op_timeout))
                .await
                .map_err(|e| failed("cannot connect to Redis", e))?;
            Ok(Conn {
                current: Arc::new(ArcSwap::from_pointee(manager)),
            })
        }
        Target::Sentinel { .. } => {
            let mut sentinel = sentinel_client(target)?;
            let client = sentinel
                .async_get_client()
                .await
                .map_err(|e| failed("the Sentinels named no master", e))?;
            let addr = client.get_connection_info().addr().clone();
            let manager = ConnectionManager::new_with_config(client, manager_config(op_timeout))
                .await
                .map_err(|e| failed("cannot connect to the master the Sentinels named", e))?;
            let conn = Conn {
                current: Arc::new(ArcSwap::from_pointee(manager)),
            };
            tokio::spawn(follow_failover(
                sentinel,
                addr,
                Arc::downgrade(&conn.current),
                op_timeout,
            ));
            Ok(conn)
        }
    }
}

fn sentinel_client(target: &Target) -> Result<SentinelClient, StoreError> {
    let Target::Sentinel {
        sentinels,
        master,
        db,
        password,
    } = target
    else {
        return Err(StoreError::backend("not a Sentinel URL"));
    };
    let mut info = RedisConnectionInfo::default().set_db(*db);
    if let Some(p) = password {
        info = info.set_password(p);
    }
    let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
    SentinelClient::build(
        urls,
        master.as_str(),
        Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(info)),
        SentinelServerType::Master,
    )
    .map_err(|e| failed("invalid Sentinel settings", e))
}

/// Asks the Sentinels every 2 s which server is the master; when it changed, reconnects there.
/// Ends when the store is dropped.
async fn follow_failover(
    mut sentinel: SentinelClient,
    mut addr: ConnectionAddr,
    current: std::sync::Weak<ArcSwap<ConnectionManager>>,
    op_timeout: Duration,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(current) = current.upgrade() else {
            return;
        };
        let client = match sentinel.async_get_client().await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "redis: no Sentinel answered; keeping the current master");
                continue;
            }
        };
        let now = client.get_connection_info().addr().clone();
        if now == addr {
            continue;
        }
        match ConnectionManager::new_with_config(client, manager_config(op_timeout)).await {
            Ok(manager) => {
                tracing::warn!(from = %addr, to = %now, "redis: the Sentinels named a new master; connected to it");
                current.store(Arc::new(manager));
                addr = now;
            }
            Err(e) => tracing::warn!(error = %e, "redis: cannot connect to the new master yet"),
        }
    }
}

/// What start-up found: problems refuse the start, warnings are logged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServerCheck {
    /// Settings that would lose acknowledged state, each naming the setting.
    pub problems: Vec<String>,
    /// What the operator should know (a weaker fsync, CONFIG refused).
    pub warnings: Vec<String>,
}

/// Reads the server's persistence and eviction settings (SPEC §8: `appendonly yes`,
/// `maxmemory-policy noeviction`; `appendfsync always` recommended). Where `CONFIG GET` is
/// refused (managed services rename it), `INFO persistence` still tells whether AOF is on, and
/// a warning says what must hold.
pub async fn check_server(conn: &Conn) -> Result<ServerCheck, StoreError> {
    let mut c = conn.get();
    let mut check = ServerCheck::default();
    let config: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .arg("appendfsync")
        .arg("maxmemory-policy")
        .query_async(&mut c)
        .await;
    match config {
        Ok(pairs) => {
            let get = |name: &str| {
                pairs
                    .chunks(2)
                    .find(|kv| kv.first().is_some_and(|k| k == name))
                    .and_then(|kv| kv.get(1).cloned())
                    .unwrap_or_default()
            };
            let appendonly = get("appendonly");
            if appendonly != "yes" {
                check.problems.push(format!(
                    "appendonly is `{appendonly}`: Redis would lose acknowledged pushes and queued replies on a restart; set `appendonly yes` (and `appendfsync always`)"
                ));
            }
            match get("appendfsync").as_str() {
                "always" => {}
                "everysec" => check.warnings.push(
                    "appendfsync is `everysec`: a crash of the Redis host may lose the last second of acknowledged pushes; `appendfsync always` loses none".into(),
                ),
                other => check.problems.push(format!(
                    "appendfsync is `{other}`: acknowledged state may be lost; set `appendfsync always`"
                )),
            }
            let policy = get("maxmemory-policy");
            if policy != "noeviction" {
                check.problems.push(format!(
                    "maxmemory-policy is `{policy}`: Redis would evict dedupe memos, sessions or queued replies when full; set `maxmemory-policy noeviction`"
                ));
            }
        }
        Err(e) => {
            check.warnings.push(format!(
                "CONFIG GET is refused ({}): cannot verify the server's settings; make sure `appendonly yes` (`appendfsync always`) and `maxmemory-policy noeviction` hold, or acknowledged pushes and replies may be lost",
                e.code().unwrap_or("error")
            ));
            let info: Result<String, _> = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut c)
                .await;
            if let Ok(info) = info
                && info.contains("aof_enabled:0")
            {
                check.problems.push(
                    "appendonly is off (INFO persistence: aof_enabled:0): Redis would lose acknowledged pushes on a restart; set `appendonly yes`".into(),
                );
            }
        }
    }
    Ok(check)
}
