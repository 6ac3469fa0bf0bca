//! The media cache (SPEC §10) and the shared values (the access token, its lock) on Redis:
//! plain keys with their own expiry, deleted by compare-and-delete scripts.

use futures_util::future::BoxFuture;

use super::RedisStore;
use crate::store::{MediaCache, MediaEntry, SharedValues, StoreError};

impl MediaCache for RedisStore {
    fn media(
        &self,
        app: &str,
        sha256: &str,
        now: i64,
    ) -> BoxFuture<'_, Result<Option<MediaEntry>, StoreError>> {
        let key = self.inner.keys.media(app, sha256);
        Box::pin(async move {
            let mut c = self.inner.conn.get();
            let raw: Option<String> = self
                .bounded("media", redis::cmd("GET").arg(key).query_async(&mut c))
                .await?;
            Ok(raw
                .and_then(|r| serde_json::from_str::<MediaEntry>(&r).ok())
                .filter(|e| e.expires_at > now))
        })
    }

    fn put_media(
        &self,
        app: &str,
        sha256: &str,
        entry: MediaEntry,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let key = self.inner.keys.media(app, sha256);
        Box::pin(async move {
            let value = serde_json::to_string(&entry)
                .map_err(|e| StoreError::caused("cannot encode a media entry", e))?;
            let mut c = self.inner.conn.get();
            let _: () = self
                .bounded(
                    "media",
                    redis::cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("PXAT")
                        .arg(entry.expires_at.max(1).saturating_mul(1000))
                        .query_async(&mut c),
                )
                .await?;
            Ok(())
        })
    }

    fn forget_media(
        &self,
        app: &str,
        sha256: &str,
        media_id: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let key = self.inner.keys.media(app, sha256);
        let media_id = media_id.to_string();
        Box::pin(async move {
            let mut c = self.inner.conn.get();
            let _: i64 = self
                .bounded(
                    "media",
                    self.inner
                        .scripts
                        .forget_media
                        .key(key)
                        .arg(media_id)
                        .invoke_async(&mut c),
                )
                .await?;
            Ok(())
        })
    }
}

impl SharedValues for RedisStore {
    fn get_value(
        &self,
        scope: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<(String, i64)>, StoreError>> {
        let key = self.inner.keys.value(scope, name);
        Box::pin(async move {
            let mut c = self.inner.conn.get();
            let (value, ttl): (Option<String>, i64) = self
                .bounded(
                    "shared value",
                    redis::pipe()
                        .cmd("GET")
                        .arg(&key)
                        .cmd("PTTL")
                        .arg(&key)
                        .query_async(&mut c),
                )
                .await?;
            Ok(value.map(|v| (v, ttl)))
        })
    }

    fn put_value(
        &self,
        scope: &str,
        name: &str,
        value: &str,
        ttl_ms: i64,
        only_if_absent: bool,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = self.inner.keys.value(scope, name);
        let value = value.to_string();
        Box::pin(async move {
            let mut c = self.inner.conn.get();
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("PX").arg(ttl_ms.max(1));
            if only_if_absent {
                cmd.arg("NX");
            }
            let done: Option<String> = self
                .bounded("shared value", cmd.query_async(&mut c))
                .await?;
            Ok(done.is_some())
        })
    }

    fn delete_value_if(
        &self,
        scope: &str,
        name: &str,
        value: &str,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = self.inner.keys.value(scope, name);
        let value = value.to_string();
        Box::pin(async move {
            let mut c = self.inner.conn.get();
            let n: i64 = self
                .bounded(
                    "shared value",
                    self.inner
                        .scripts
                        .delete_if
                        .key(key)
                        .arg(value)
                        .invoke_async(&mut c),
                )
                .await?;
            Ok(n > 0)
        })
    }
}
