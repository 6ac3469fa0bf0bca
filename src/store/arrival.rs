//! Time ranges found by row id, for tables appended in arrival order.
//!
//! The conversation and send logs (`messages`, `sends`) have no index on `at` (nor per user): an
//! index is a B-tree insert on every push or send, and every one pays for it while only
//! operators' questions (`kefu stats`, `kefu log`, the console, the retention purge) ever ask
//! for a time range. Rows are appended as pushes
//! are committed, so `at` grows with the row id, except that a push received in one second can
//! be committed after one received in the next ([`ARRIVAL_SLACK_SECS`]). A time range is found
//! by a binary search over row ids (a few dozen primary-key look-ups whatever the table's size)
//! with that slack, and the query then reads `id >= first AND at >= since`: exact whenever the
//! order holds to within the slack.
//!
//! When the system clock is stepped back by more than the slack while the daemon runs, rows
//! written just before the step can fall outside a range that starts inside the stepped-over
//! span; they still appear in ranges that start earlier, and the retention purge reaches them
//! once the clock has passed them again. Views built in memory (the Redis store's operator view)
//! insert their rows in `at` order, so they are exact.

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;
use super::schema::backend;

/// How far `at` may run backwards along arrival order: a push received in one second can be
/// committed after one received in the next (commits are batched within milliseconds, and a
/// commit can wait on a slow disk).
pub const ARRIVAL_SLACK_SECS: i64 = 60;

/// A table whose rows are appended in arrival order, with an `at` column of unix seconds.
#[derive(Debug, Clone, Copy)]
pub enum ArrivalTable {
    /// The conversation log.
    Messages,
    /// The send log.
    Sends,
}

impl ArrivalTable {
    fn bounds_sql(self) -> &'static str {
        match self {
            Self::Messages => "SELECT min(id), max(id) FROM messages",
            Self::Sends => "SELECT min(id), max(id) FROM sends",
        }
    }

    fn at_from_sql(self) -> &'static str {
        match self {
            Self::Messages => "SELECT at FROM messages WHERE id >= ?1 ORDER BY id LIMIT 1",
            Self::Sends => "SELECT at FROM sends WHERE id >= ?1 ORDER BY id LIMIT 1",
        }
    }
}

/// The smallest row id from which on every row has `at >= since`, give or take
/// [`ARRIVAL_SLACK_SECS`]: every row with `at >= since` has an id at or above it (the rows of
/// the slack before it are for the caller's `at >= since` to drop). 0 for an empty table.
pub fn first_id_since(
    conn: &Connection,
    table: ArrivalTable,
    since: i64,
) -> Result<i64, StoreError> {
    let (min, max): (Option<i64>, Option<i64>) = conn
        .prepare_cached(table.bounds_sql())
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(backend)?;
    let (Some(mut lo), Some(max)) = (min, max) else {
        return Ok(0);
    };
    let target = since.saturating_sub(ARRIVAL_SLACK_SECS);
    let mut at_from = conn.prepare_cached(table.at_from_sql()).map_err(backend)?;
    // The first row at or after `id` is young enough: false, then true, along the ids.
    let mut young_from = |id: i64| -> Result<bool, StoreError> {
        let at: Option<i64> = at_from
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        Ok(at.is_none_or(|at| at >= target))
    };
    let mut hi = max.saturating_add(1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if young_from(mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ats: &[i64]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE messages (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
            .unwrap();
        for at in ats {
            conn.execute("INSERT INTO messages (at) VALUES (?1)", [at])
                .unwrap();
        }
        conn
    }

    /// What a range query reads: ids from the boundary, `at` from `since`.
    fn in_range(conn: &Connection, since: i64) -> Vec<i64> {
        let first = first_id_since(conn, ArrivalTable::Messages, since).unwrap();
        let mut s = conn
            .prepare("SELECT id FROM messages WHERE id >= ?1 AND at >= ?2 ORDER BY id")
            .unwrap();
        s.query_map([first, since], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn by_scan(conn: &Connection, since: i64) -> Vec<i64> {
        let mut s = conn
            .prepare("SELECT id FROM messages WHERE at >= ?1 ORDER BY id")
            .unwrap();
        s.query_map([since], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn an_empty_table_has_no_boundary_to_find() {
        let conn = table(&[]);
        assert_eq!(
            first_id_since(&conn, ArrivalTable::Messages, 100).unwrap(),
            0
        );
    }

    #[test]
    fn ranges_agree_with_a_scan_when_order_holds_within_the_slack() {
        // Seconds that run backwards by less than the slack, as batched commits make them.
        let ats: Vec<i64> = (0..5_000i64)
            .map(|i| 1_000_000 + i / 10 - (i * 7919 % 13) * 4)
            .collect();
        let conn = table(&ats);
        for since in [
            0, 999_000, 1_000_000, 1_000_050, 1_000_200, 1_000_499, 1_000_500, 2_000_000,
        ] {
            assert_eq!(
                in_range(&conn, since),
                by_scan(&conn, since),
                "since {since}"
            );
        }
    }

    #[test]
    fn gaps_left_by_the_purge_are_skipped() {
        let conn = table(&(0..1_000).map(|i| 5_000 + i).collect::<Vec<_>>());
        conn.execute("DELETE FROM messages WHERE id % 3 != 0 OR id < 400", [])
            .unwrap();
        for since in [0, 5_100, 5_500, 5_998, 6_100] {
            assert_eq!(
                in_range(&conn, since),
                by_scan(&conn, since),
                "since {since}"
            );
        }
    }

    #[test]
    fn a_range_from_before_the_first_row_starts_at_the_first_row() {
        let conn = table(&[50, 60, 70]);
        assert_eq!(first_id_since(&conn, ArrivalTable::Messages, 0).unwrap(), 1);
        assert_eq!(in_range(&conn, 65), vec![3]);
    }
}
