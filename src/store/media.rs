//! The media cache: which media_id WeChat gave for one app's copy of one file (SPEC §10).
//!
//! Keyed by app and the file's content hash (SHA-256, hex), so a file edited under the rules
//! folder is uploaded again, and two rules naming the same picture share one upload. The cache is
//! shared state: with several instances (SPEC §8) it lives in the shared store, so one upload
//! serves the fleet. Entries record when WeChat will forget the media (temporary media live
//! 3 days); the caller uploads again before then, and after a send refused with 40007.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::StoreError;

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
