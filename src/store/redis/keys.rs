//! The key layout: every key of one app starts `<prefix>:{<app>}:`, so the hash tag puts all of
//! an app's keys in one slot (one script may touch them all, on Redis Cluster too).
//!
//! | key | type | expiry | what |
//! |---|---|---|---|
//! | `push:<key>` | STRING | lease, then the memo's TTL | `P\|<token>` while decided, `D\|<memo json>` after |
//! | `s:<openid>` | STRING | the session's own expiry (PXAT) | the session, JSON |
//! | `q:<openid>` | HASH tr, lim, used, until | PEXPIREAT until | the send window |
//! | `ob:m` / `ob:s` | HASH | none | outbox entries by id: message / `fence\|owner\|attempts\|created\|first\|interrupted` |
//! | `ob:due` | ZSET | none | users with entries; score = due or lease-until (ms) |
//! | `ob:q:<openid>` | LIST | none | a user's entry ids, in order |
//! | `ob:seq` | STRING | none | the entry id counter |
//! | `ob:failed` | ZSET | trimmed to the retention | entries that failed for good |
//! | `log` | STREAM | trimmed to the retention (MINID) | the conversation log, fleet-wide |
//! | `media:<sha256>` | STRING | when WeChat forgets the media | the media cache entry |
//! | `v:<name>` | STRING | its own | shared values (the access token, its lock) |

use crate::store::PushKey;

/// Keys of one deployment (`redis_prefix`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>:{<app>}:<rest>`.
    pub fn app(&self, app: &str, rest: &str) -> String {
        format!("{}:{{{app}}}:{rest}", self.prefix)
    }

    /// The app of a push key (`app|…`).
    pub fn app_of(key: &PushKey) -> &str {
        key.0.split_once('|').map_or(key.0.as_str(), |(app, _)| app)
    }

    pub fn push(&self, key: &PushKey) -> String {
        let app = Self::app_of(key);
        let rest = key.0.split_once('|').map_or("", |(_, rest)| rest);
        self.app(app, &format!("push:{rest}"))
    }

    pub fn session(&self, app: &str, openid: &str) -> String {
        self.app(app, &format!("s:{openid}"))
    }

    pub fn quota(&self, app: &str, openid: &str) -> String {
        self.app(app, &format!("q:{openid}"))
    }

    pub fn queue(&self, app: &str, openid: &str) -> String {
        self.app(app, &format!("ob:q:{openid}"))
    }

    pub fn queue_prefix(&self, app: &str) -> String {
        self.app(app, "ob:q:")
    }

    pub fn media(&self, app: &str, sha256: &str) -> String {
        self.app(app, &format!("media:{sha256}"))
    }

    pub fn value(&self, scope: &str, name: &str) -> String {
        self.app(scope, &format!("v:{name}"))
    }

    /// The probe's key (per instance, no app).
    pub fn probe(&self, instance: &str) -> String {
        format!("{}:probe:{instance}", self.prefix)
    }
}
