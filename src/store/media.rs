//! The media cache: which media_id WeChat gave for one app's copy of one file (SPEC §10).
//!
//! Keyed by app and the file's content hash (SHA-256, hex), so a file edited under the rules
//! folder is uploaded again, and two rules naming the same picture share one upload. The cache is
//! shared state: with several instances (SPEC §8) it lives in the shared store, so one upload
//! serves the fleet. Entries record when WeChat will forget the media (temporary media live
//! 3 days); the caller uploads again before then, and after a send refused with 40007.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::StoreError;
use super::schema::backend;
use super::sqlite::SqliteStore;
use super::writer::Cmd;

/// One uploaded file of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaEntry {
    /// The media_id WeChat returned.
    pub media_id: String,
    /// Unix seconds of the upload (WeChat's `created_at` when it sent one).
    pub uploaded_at: i64,
    /// Unix seconds after which the media_id must not be used any more (upload time + 3 days,
    /// less a margin the caller chooses).
    pub expires_at: i64,
}

/// The media cache of a store backend.
pub trait MediaCache: Send + Sync + 'static {
    /// The entry for `(app, sha256)`, if one was stored and has not expired at `now`.
    fn media(
        &self,
        app: &str,
        sha256: &str,
        now: i64,
    ) -> BoxFuture<'_, Result<Option<MediaEntry>, StoreError>>;
    /// Stores (or replaces) the entry for `(app, sha256)`; resolves once durable.
    fn put_media(
        &self,
        app: &str,
        sha256: &str,
        entry: MediaEntry,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Forgets the entry for `(app, sha256)` only if it still holds `media_id` (compare and
    /// delete: a late 40007 for an old media_id never drops a newer upload).
    fn forget_media(
        &self,
        app: &str,
        sha256: &str,
        media_id: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// A write to the media cache, applied by the SQLite writer in its next group commit.
#[derive(Debug, Clone)]
pub enum MediaWrite {
    /// Insert or replace the entry of `(app, sha256)`.
    Put {
        app: String,
        sha256: String,
        entry: MediaEntry,
    },
    /// Delete the entry of `(app, sha256)` if it still holds `media_id`.
    Forget {
        app: String,
        sha256: String,
        media_id: String,
    },
}

/// Applies one write inside the writer's transaction.
pub(crate) fn apply(tx: &Transaction<'_>, op: &MediaWrite) -> Result<(), StoreError> {
    match op {
        MediaWrite::Put { app, sha256, entry } => tx
            .prepare_cached(
                "INSERT INTO media (app, sha256, media_id, uploaded_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (app, sha256) DO UPDATE SET media_id = excluded.media_id, \
                 uploaded_at = excluded.uploaded_at, expires_at = excluded.expires_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    app,
                    sha256,
                    entry.media_id,
                    entry.uploaded_at,
                    entry.expires_at
                ])
            })
            .map_err(backend)?,
        MediaWrite::Forget {
            app,
            sha256,
            media_id,
        } => tx
            .prepare_cached("DELETE FROM media WHERE app = ?1 AND sha256 = ?2 AND media_id = ?3")
            .and_then(|mut s| s.execute(params![app, sha256, media_id]))
            .map_err(backend)?,
    };
    Ok(())
}

/// Reads the entry of `(app, sha256)` that has not expired at `now`.
pub(crate) fn read(
    conn: &rusqlite::Connection,
    app: &str,
    sha256: &str,
    now: i64,
) -> Result<Option<MediaEntry>, StoreError> {
    conn.prepare_cached(
        "SELECT media_id, uploaded_at, expires_at FROM media \
         WHERE app = ?1 AND sha256 = ?2 AND expires_at > ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![app, sha256, now], |row| {
            Ok(MediaEntry {
                media_id: row.get(0)?,
                uploaded_at: row.get(1)?,
                expires_at: row.get(2)?,
            })
        })
        .optional()
    })
    .map_err(backend)
}

impl SqliteStore {
    fn media_write(&self, op: MediaWrite) -> BoxFuture<'_, Result<(), StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send_cmd(Cmd::Media { op, reply });
        Box::pin(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }
}

impl MediaCache for SqliteStore {
    fn media(
        &self,
        app: &str,
        sha256: &str,
        now: i64,
    ) -> BoxFuture<'_, Result<Option<MediaEntry>, StoreError>> {
        let result = self.with_reader(|conn| read(conn, app, sha256, now));
        Box::pin(async move { result })
    }

    fn put_media(
        &self,
        app: &str,
        sha256: &str,
        entry: MediaEntry,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.media_write(MediaWrite::Put {
            app: app.to_string(),
            sha256: sha256.to_string(),
            entry,
        })
    }

    fn forget_media(
        &self,
        app: &str,
        sha256: &str,
        media_id: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.media_write(MediaWrite::Forget {
            app: app.to_string(),
            sha256: sha256.to_string(),
            media_id: media_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn entry(id: &str, expires_at: i64) -> MediaEntry {
        MediaEntry {
            media_id: id.into(),
            uploaded_at: 100,
            expires_at,
        }
    }

    #[tokio::test]
    async fn entries_are_kept_per_app_and_hash_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.media("a", "h", 150).await.unwrap(), None);
        store.put_media("a", "h", entry("m1", 200)).await.unwrap();
        assert_eq!(
            store.media("a", "h", 150).await.unwrap(),
            Some(entry("m1", 200))
        );
        assert_eq!(store.media("b", "h", 150).await.unwrap(), None);
        assert_eq!(store.media("a", "h", 200).await.unwrap(), None, "expired");
        store.put_media("a", "h", entry("m2", 300)).await.unwrap();
        assert_eq!(
            store.media("a", "h", 150).await.unwrap(),
            Some(entry("m2", 300))
        );
        store.close();
    }

    #[tokio::test]
    async fn forget_deletes_only_the_media_id_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        store.put_media("a", "h", entry("new", 300)).await.unwrap();
        store.forget_media("a", "h", "old").await.unwrap();
        assert_eq!(
            store.media("a", "h", 150).await.unwrap(),
            Some(entry("new", 300))
        );
        store.forget_media("a", "h", "new").await.unwrap();
        assert_eq!(store.media("a", "h", 150).await.unwrap(), None);
        store.close();
        // Survives a restart.
        let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        store.put_media("a", "h", entry("m", 300)).await.unwrap();
        store.close();
        let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            store.media("a", "h", 150).await.unwrap(),
            Some(entry("m", 300))
        );
        store.close();
    }
}
