//! The checkpointer thread: copies the WAL back into the database file off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, so one push in
//! a thousand would pay two fsyncs and a large copy. The writer connection turns it off
//! (`wal_autocheckpoint = 0`) and this thread, with its own connection, runs `PASSIVE`
//! checkpoints — they never block the writer — whenever the writer reports a commit (at most one
//! per `min_gap`) and once a second when idle. If the WAL still grows past `restart_frames`
//! (a sustained load never leaves it fully checkpointed, so it cannot wrap around), a `RESTART`
//! checkpoint briefly holds the writer back so the WAL starts over. When the writer stops, a final
//! `TRUNCATE` checkpoint leaves a compact database.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

/// WAL size (in pages) past which a `RESTART` checkpoint runs: 16384 pages of 4 KiB = 64 MiB.
pub const RESTART_FRAMES: i64 = 16_384;

/// Runs until the writer drops its end of `ticks`.
pub fn run(conn: Connection, ticks: mpsc::Receiver<()>, min_gap: Duration) {
    let idle = Duration::from_secs(1);
    while awake(&ticks, idle) {
        match checkpoint(&conn, "PASSIVE") {
            Ok(frames) if frames > RESTART_FRAMES => {
                if let Err(e) = checkpoint(&conn, "RESTART") {
                    tracing::warn!(error = %e, "store: RESTART checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store: checkpoint failed"),
        }
        // At most one checkpoint per `min_gap`: each copies pages (and costs fsyncs that commits
        // share the disk with). Sleep rather than wait on `ticks`, which the writer sends after
        // every commit: a wait would end at the next commit.
        std::thread::sleep(min_gap);
        if matches!(ticks.try_recv(), Err(mpsc::TryRecvError::Disconnected)) {
            break;
        }
    }
    if let Err(e) = checkpoint(&conn, "TRUNCATE") {
        tracing::warn!(error = %e, "store: final checkpoint failed");
    }
}

/// Waits for a tick or `timeout`; false once the writer is gone.
fn awake(ticks: &mpsc::Receiver<()>, timeout: Duration) -> bool {
    !matches!(
        ticks.recv_timeout(timeout),
        Err(mpsc::RecvTimeoutError::Disconnected)
    )
}

/// Runs one checkpoint; returns the WAL size in frames it saw.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(1)
    })
}
