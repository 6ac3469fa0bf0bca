//! Small shared values with a time to live, for state that is neither a push nor the outbox:
//! the access token and its fetch lock (SPEC §8: one token fetch fleet-wide).
//!
//! The store knows nothing of tokens: `wechat` defines what it needs, and start-up wires it to
//! this interface. Every value lives under a `scope` (the app id) and a `name`. Only the Redis
//! backend implements it: with one instance (SQLite), the API client's own cache is the fleet.

use futures_util::future::BoxFuture;

use super::StoreError;

/// Values with an expiry, written either unconditionally or only when absent, and deleted only
/// while they still hold what the caller saw (compare and delete).
pub trait SharedValues: Send + Sync + 'static {
    /// The value and the milliseconds it has left; `None` when absent or expired.
    fn get_value(
        &self,
        scope: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<(String, i64)>, StoreError>>;
    /// Writes the value for `ttl_ms`; with `only_if_absent`, only when there is none (a lock).
    /// Returns whether it was written.
    fn put_value(
        &self,
        scope: &str,
        name: &str,
        value: &str,
        ttl_ms: i64,
        only_if_absent: bool,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// Deletes the value only if it is still `value`; returns whether it did.
    fn delete_value_if(
        &self,
        scope: &str,
        name: &str,
        value: &str,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
}
