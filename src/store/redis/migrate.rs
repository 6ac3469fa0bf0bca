//! Switching from sqlite to redis loses nothing (SPEC §8): at start, the unsent entries of the
//! local SQLite outbox (`data_dir/kefu.sqlite3`, if there is one) are moved into Redis, each
//! once (a marker per SQLite row id makes a repeated move after a crash a no-op), and then
//! deleted from the file.

use std::path::Path;

use super::RedisStore;
use super::push::StoredMessage;
use crate::store::StoreError;

impl RedisStore {
    /// Moves the unsent outbox entries of the SQLite store in `data_dir` into Redis; returns how
    /// many were moved. No database file: nothing to do.
    pub async fn move_sqlite_outbox(&self, data_dir: &Path) -> Result<usize, StoreError> {
        let rows = crate::store::outbox::take_unsent(data_dir)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let keys = &self.inner.keys;
        let mut moved = 0;
        for row in &rows {
            let summary = crate::store::log::one_line(&row.message.preview());
            let entry = serde_json::to_string(&StoredMessage {
                openid: row.openid.clone(),
                summary,
                message: row.message.clone(),
            })
            .map_err(|e| StoreError::caused("cannot encode an outbox entry", e))?;
            let app = row.app.as_str();
            let mut c = self.inner.conn.get();
            let n: i64 = self
                .bounded(
                    "move the SQLite outbox",
                    self.inner
                        .scripts
                        .enqueue
                        .key(keys.app(app, &format!("ob:moved:{}", row.id)))
                        .key(keys.app(app, "ob:m"))
                        .key(keys.app(app, "ob:s"))
                        .key(keys.app(app, "ob:due"))
                        .key(keys.queue(app, &row.openid))
                        .key(keys.app(app, "ob:seq"))
                        .arg(entry)
                        .arg(&row.openid)
                        .arg(row.created_ms)
                        .arg(row.attempts)
                        .invoke_async(&mut c),
                )
                .await?;
            moved += n as usize;
        }
        crate::store::outbox::forget_unsent(data_dir, rows.iter().map(|r| r.id))?;
        self.inner.wakeup.notify_one();
        Ok(moved)
    }
}
