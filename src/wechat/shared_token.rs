//! One access token for the whole fleet (SPEC §8): with several instances, the app's token lives
//! in the shared store, so N cold senders on any number of instances cause one `stable_token`
//! call, and a refused token is expired once, compare-and-delete.
//!
//! This module holds the policy; [`TokenShare`] is what it needs from a shared store (start-up
//! adapts the store's shared values to it, so `wechat` knows no store and the store no tokens).
//! Per instance the [`super::token`] slot still caches and single-flights; its fetch goes here:
//!
//! 1. the shared token, if it has more than the refresh margin left;
//! 2. else the fetch lock (`SET NX PX 10 s`): its holder calls `stable_token`, shares the token
//!    for its lifetime and releases the lock (compare-and-delete); the others poll the shared
//!    token every 50 ms;
//! 3. the shared store unreachable or the lock held past 10 s: fetch alone (normal mode is safe:
//!    every caller gets the same token), so a Redis outage never stops sending.

use std::time::Duration;

use super::BoxFuture;

/// What the fleet token needs from a shared store; errors are reasons for the log.
pub trait TokenShare: Send + Sync + 'static {
    /// The shared token of `app` and its milliseconds left.
    fn get(&self, app: &str) -> BoxFuture<'_, Result<Option<(String, i64)>, String>>;
    /// Shares `token` for `ttl_ms`.
    fn put(&self, app: &str, token: &str, ttl_ms: i64) -> BoxFuture<'_, Result<(), String>>;
    /// Takes the fetch lock of `app` as `holder` for `ttl_ms`; whether it did.
    fn lock(&self, app: &str, holder: &str, ttl_ms: i64) -> BoxFuture<'_, Result<bool, String>>;
    /// Releases the fetch lock if `holder` still holds it.
    fn unlock(&self, app: &str, holder: &str) -> BoxFuture<'_, Result<(), String>>;
    /// Expires the shared token only if it is still `token`; whether it did.
    fn expire_if(&self, app: &str, token: &str) -> BoxFuture<'_, Result<bool, String>>;
}

/// How long the fetch lock is held at most (a `stable_token` call is bounded well below).
pub(crate) const LOCK_TTL: Duration = Duration::from_secs(10);
/// How often a caller waiting on a peer's fetch looks again.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// A holder name for the lock: unique per attempt.
pub(crate) fn holder() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl std::fmt::Debug for dyn TokenShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenShare")
    }
}
