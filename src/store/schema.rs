//! The SQLite schema: connection pragmas and migrations versioned in code.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Each migration is one step, run
//! in its own transaction together with the version bump, so a crash mid-upgrade leaves the
//! previous version intact. Migrations are append-only: never edit a shipped step, add one.
//! Times: `at`-style columns are unix seconds; `*_ms` columns are unix milliseconds (outbox
//! scheduling needs sub-second backoff).

use rusqlite::Connection;

use super::{Durability, StoreError};

/// The file name under `data_dir`.
pub const DB_FILE: &str = "kefu.sqlite3";

/// Migration steps; step `i` brings `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE dedupe (
        key          TEXT PRIMARY KEY,
        content_type TEXT,
        body         TEXT NOT NULL,
        at           INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX dedupe_at ON dedupe(at);

    CREATE TABLE sessions (
        app        TEXT NOT NULL,
        openid     TEXT NOT NULL,
        data       TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (app, openid)
    ) WITHOUT ROWID;

    CREATE TABLE quota (
        app     TEXT NOT NULL,
        openid  TEXT NOT NULL,
        trigger TEXT NOT NULL,
        lim     INTEGER NOT NULL,
        used    INTEGER NOT NULL,
        until   INTEGER NOT NULL,
        PRIMARY KEY (app, openid)
    ) WITHOUT ROWID;

    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        app              TEXT NOT NULL,
        openid           TEXT NOT NULL,
        push_key         TEXT NOT NULL,
        message          TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'failed')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        created_ms       INTEGER NOT NULL,
        next_attempt_ms  INTEGER NOT NULL,
        first_attempt_ms INTEGER,
        finished_ms      INTEGER,
        errcode          INTEGER,
        last_error       TEXT
    );
    CREATE INDEX outbox_pending_user ON outbox(app, openid, id)
        WHERE state IN ('queued', 'sending');
    CREATE INDEX outbox_due ON outbox(next_attempt_ms, id) WHERE state = 'queued';
    CREATE INDEX outbox_failed ON outbox(finished_ms) WHERE state = 'failed';

    CREATE TABLE messages (
        id       INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        app      TEXT NOT NULL,
        openid   TEXT NOT NULL,
        msg_type TEXT NOT NULL,
        text     TEXT,
        rule     TEXT,
        faq      TEXT,
        action   TEXT NOT NULL,
        handoff  INTEGER NOT NULL
    );
    CREATE INDEX messages_at ON messages(at);

    CREATE TABLE sends (
        id        INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        app       TEXT NOT NULL,
        openid    TEXT NOT NULL,
        outbox_id INTEGER,
        outcome   TEXT NOT NULL,
        errcode   INTEGER,
        reason    TEXT
    );
    CREATE INDEX sends_at ON sends(at);
    ",
    // 2: entries a restart found `sending` are marked, so that their resend is counted; and a
    // one-row table the health probe writes (a write is what a full disk refuses).
    "
    ALTER TABLE outbox ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE probe (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        at INTEGER NOT NULL
    );
    ",
    // 3: the bot's side of the conversation (each reply's text or a one-line description, the
    // event and the agent of agent sessions), what each send carried, a per-user index for
    // threads, and the operators' requests to end a user's handoff (`kefu session end`), which
    // the running daemon applies.
    "
    ALTER TABLE messages ADD COLUMN replies TEXT;
    ALTER TABLE messages ADD COLUMN event TEXT;
    ALTER TABLE messages ADD COLUMN agent TEXT;
    CREATE INDEX messages_user ON messages(app, openid, at);
    ALTER TABLE outbox ADD COLUMN summary TEXT;
    ALTER TABLE sends ADD COLUMN summary TEXT;
    CREATE INDEX sends_user ON sends(app, openid, at);
    CREATE TABLE session_ends (
        id     INTEGER PRIMARY KEY,
        app    TEXT NOT NULL,
        openid TEXT NOT NULL,
        at     INTEGER NOT NULL
    );
    ",
    // 4: the media cache (SPEC §10): the media_id WeChat gave one app for one file content
    // (SHA-256, hex), and until when kefu uses it.
    "
    CREATE TABLE media (
        app         TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        media_id    TEXT NOT NULL,
        uploaded_at INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        PRIMARY KEY (app, sha256)
    ) WITHOUT ROWID;
    ",
    // 5: dedupe memos in arrival order. A memo (a whole reply body) used to sit inside the
    // key's B-tree, so its pages split every dozen pushes, with a second index on `at`. Now the
    // row is appended and only the key goes into an index; the purge and the load at open walk
    // the rows in arrival order, which is `at` order to within a commit.
    "
    CREATE TABLE dedupe_by_arrival (
        id           INTEGER PRIMARY KEY,
        key          TEXT NOT NULL,
        content_type TEXT,
        body         TEXT NOT NULL,
        at           INTEGER NOT NULL
    );
    INSERT INTO dedupe_by_arrival (key, content_type, body, at)
        SELECT key, content_type, body, at FROM dedupe ORDER BY at;
    DROP TABLE dedupe;
    ALTER TABLE dedupe_by_arrival RENAME TO dedupe;
    CREATE UNIQUE INDEX dedupe_key ON dedupe(key);
    ",
    // 6: the conversation log without its index on `at`, one B-tree insert less per push; time
    // ranges are found by row id, the log being appended in arrival order (`super::arrival`).
    "
    DROP INDEX messages_at;
    ",
    // 7: nor a per-user index, one more B-tree insert less per push (a text key, its compares
    // and page splits cost about a tenth of a push). Operators' per-user questions read the
    // time range by row id and filter it, as they already did.
    "
    DROP INDEX messages_user;
    ",
    // 8: the send log likewise (one row per send of the outbox, on the Mini Program path).
    "
    DROP INDEX sends_at;
    DROP INDEX sends_user;
    ",
];

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// A backend error, its message kept as the store error's text and the error as its source.
pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend {
        what: e.to_string(),
        source: Some(std::sync::Arc::new(e)),
    }
}

/// Pragmas of the writer connection. WAL lets readers (stats, console) run beside the writer;
/// checkpoints are left to the checkpointer thread ([`super::checkpoint`]), and the WAL file is
/// truncated back to 64 MiB when it restarts.
pub fn configure_writer(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::backend(format!(
            "cannot switch the database to WAL (journal_mode is {mode})"
        )));
    }
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync};
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;
         PRAGMA foreign_keys = OFF;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = 67108864;"
    ))
    .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Pragmas of the checkpointer's connection: it waits for the writer rather than fail.
pub fn configure_checkpointer(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)
}

/// Pragmas of a read-only connection (operators' read side).
pub fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    Ok(())
}

/// The schema version of an open database.
pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)
}

/// Applies every migration the database lacks. Refuses a database written by a newer kefu.
pub fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let current = version(conn)?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::backend(format!(
            "the database has schema version {current}, newer than this kefu knows ({latest}); \
             run a newer kefu or restore a backup"
        )));
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::caused(&format!("migration {} failed", step + 1), e))?;
        tx.pragma_update(None, "user_version", step as i64 + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = step + 1, "store: schema migrated");
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_gets_latest_version_and_migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        assert_eq!(version(&conn).unwrap(), latest_version());
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN \
                 ('dedupe','sessions','quota','outbox','messages','sends')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 6);
    }

    #[test]
    fn memos_written_before_migration_5_are_kept_in_arrival_order_and_stay_unique() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (step, sql) in MIGRATIONS.iter().take(4).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", step as i64 + 1)
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO dedupe (key, content_type, body, at) VALUES
                 ('a|m|2', NULL, 'success', 20), ('a|m|1', 'application/xml', '<xml/>', 10);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        assert_eq!(
            crate::store::tests::triples(&conn, "SELECT id, key, at FROM dedupe ORDER BY id"),
            vec![(1, "a|m|1".to_string(), 10), (2, "a|m|2".to_string(), 20)]
        );
        let again = conn.execute(
            "INSERT INTO dedupe (key, body, at) VALUES ('a|m|1', 'x', 30) \
             ON CONFLICT (key) DO NOTHING",
            [],
        );
        assert_eq!(again.unwrap(), 0);
    }

    #[test]
    fn migrations_6_to_8_drop_the_log_indexes_and_keep_the_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (step, sql) in MIGRATIONS.iter().take(5).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", step as i64 + 1)
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO messages (at, app, openid, msg_type, action, handoff) VALUES
                 (10, 'a', 'u', 'text', 'reply', 0), (20, 'a', 'u', 'text', 'faq', 0);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN \
                 ('messages_at', 'messages_user', 'sends_at', 'sends_user')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 0);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest_version() + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
