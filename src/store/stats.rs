//! `kefu stats` and the console: what the conversation log says since a point in time — messages,
//! hits per rule and per FAQ entry, handoffs, the unmatched messages most often seen, send
//! outcomes, and a per-day series (days cut in the configured time zone).
//!
//! Read-only: it works on a running daemon's database (WAL lets readers run beside the writer) or
//! on a stopped one. It never migrates; a database of another schema version is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::StoreError;
use super::arrival::{self, ArrivalTable};
use super::schema::{self, backend};

/// How many unmatched texts the report lists.
pub const TOP_UNMATCHED: usize = 20;

/// A name and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// A rule id, FAQ id, action, or message text.
    pub key: String,
    /// How often.
    pub count: u64,
}

/// Send outcomes in the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SendCounts {
    /// Accepted by WeChat.
    pub sent: u64,
    /// Failed for good.
    pub failed: u64,
    /// Never queued (over quota).
    pub dropped: u64,
    /// Attempts that will be retried.
    pub retrying: u64,
}

/// One day of the series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayStats {
    /// `YYYY-MM-DD` in the report's time zone.
    pub date: String,
    /// Pushes received.
    pub messages: u64,
    /// Pushes transferred to humans.
    pub handoffs: u64,
    /// Pushes no rule or FAQ entry answered (`ignore` or `default`).
    pub unmatched: u64,
}

/// What the conversation log says about a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    /// Start of the period (unix seconds).
    pub since: i64,
    /// When the report was made (unix seconds).
    pub until: i64,
    /// The time zone of `days` and of the printed times.
    pub timezone: String,
    /// Pushes received.
    pub messages: u64,
    /// Pushes per action (`reply`, `faq`, `clarify`, `handoff`, `default`, `ignore`).
    pub actions: Vec<Count>,
    /// Hits per rule, most first.
    pub rules: Vec<Count>,
    /// Hits per FAQ entry, most first.
    pub faqs: Vec<Count>,
    /// Pushes transferred to humans.
    pub handoffs: u64,
    /// Pushes no rule or FAQ entry answered (`ignore` or `default`).
    pub unmatched: u64,
    /// The unmatched texts most often seen (trimmed, ASCII lower-cased), most first.
    pub top_unmatched: Vec<Count>,
    /// Send outcomes.
    pub sends: SendCounts,
    /// Per day, oldest first (days without messages left out).
    pub days: Vec<DayStats>,
}

/// Opens the database at `db_path` read-only and collects the report for `since_unix..now`.
pub fn collect(db_path: &Path, since_unix: i64, tz: Tz) -> Result<StatsReport, StoreError> {
    let conn = open_read_only(db_path)?;
    collect_from(&conn, since_unix, super::writer::unix_now(), tz)
}

/// A read-only connection to a database a running daemon may be writing, of this build's
/// schema version.
pub fn open_read_only(db_path: &Path) -> Result<Connection, StoreError> {
    if !db_path.exists() {
        return Err(StoreError::backend(format!(
            "no conversation log at {} (has kefu serve run with this data_dir?)",
            db_path.display()
        )));
    }
    // Read-write without create: a read-only open of a WAL database fails when its -shm file
    // does not exist yet; `query_only` then keeps this connection from writing.
    let conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::caused(&format!("cannot open {}", db_path.display()), e))?;
    schema::configure_reader(&conn)?;
    let version = schema::version(&conn)?;
    if version != schema::latest_version() {
        return Err(StoreError::backend(format!(
            "{} has schema version {version}, this kefu reads {}",
            db_path.display(),
            schema::latest_version()
        )));
    }
    Ok(conn)
}

/// Collects the report from an open connection.
pub fn collect_from(
    conn: &Connection,
    since: i64,
    until: i64,
    tz: Tz,
) -> Result<StatsReport, StoreError> {
    let first = arrival::first_id_since(conn, ArrivalTable::Messages, since)?;
    let counts = |sql: &str, limit: Option<usize>| -> Result<Vec<Count>, StoreError> {
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let limit = limit.map_or(-1, |l| l as i64);
        let rows = stmt
            .query_map(rusqlite::params![since, limit, first], |r| {
                Ok(Count {
                    key: r.get(0)?,
                    count: r.get(1)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    };
    // Open-ended: a push stamped after `until` (clock skew) still counts. Both logs are found by
    // row id first (they have no index on `at`).
    // (`?2` is the limit of the `counts` queries; the others bind it unused.)
    let range = "id >= ?3 AND at >= ?1";
    let sends_range = "id >= ?2 AND at >= ?1";
    // An operator's action (kefu session end) is in the thread, not a message a user sent.
    let pushes = "msg_type != 'operator'";

    let (messages, handoffs, unmatched): (u64, u64, u64) = conn
        .query_row(
            &format!(
                "SELECT count(*), coalesce(sum(handoff), 0), \
                 coalesce(sum(action IN ('ignore', 'default')), 0) FROM messages WHERE {range} AND {pushes}"
            ),
            rusqlite::params![since, 0, first],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(backend)?;
    let actions = counts(
        &format!(
            "SELECT action, count(*) AS n FROM messages WHERE {range} AND {pushes} \
             GROUP BY action ORDER BY n DESC, action LIMIT ?2"
        ),
        None,
    )?;
    let rules = counts(
        &format!(
            "SELECT rule, count(*) AS n FROM messages WHERE {range} AND {pushes} AND rule IS NOT NULL \
             GROUP BY rule ORDER BY n DESC, rule LIMIT ?2"
        ),
        None,
    )?;
    let faqs = counts(
        &format!(
            "SELECT faq, count(*) AS n FROM messages WHERE {range} AND {pushes} AND faq IS NOT NULL \
             GROUP BY faq ORDER BY n DESC, faq LIMIT ?2"
        ),
        None,
    )?;
    let top_unmatched = counts(
        &format!(
            "SELECT lower(trim(text)) AS t, count(*) AS n FROM messages WHERE {range} AND {pushes} \
             AND action IN ('ignore', 'default') AND text IS NOT NULL AND trim(text) != '' \
             GROUP BY t ORDER BY n DESC, t LIMIT ?2"
        ),
        Some(TOP_UNMATCHED),
    )?;

    let mut sends = SendCounts::default();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT outcome, count(*) FROM sends WHERE {sends_range} GROUP BY outcome"
        ))
        .map_err(backend)?;
    let outcomes = stmt
        .query_map(
            [
                since,
                arrival::first_id_since(conn, ArrivalTable::Sends, since)?,
            ],
            |r| {
                Ok(Count {
                    key: r.get(0)?,
                    count: r.get(1)?,
                })
            },
        )
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    for c in outcomes {
        match c.key.as_str() {
            "sent" => sends.sent = c.count,
            "failed" => sends.failed = c.count,
            "dropped" => sends.dropped = c.count,
            "retrying" => sends.retrying = c.count,
            _ => {}
        }
    }

    // Hourly buckets from SQL, folded into local days here (time zones with half-hour offsets
    // would need finer buckets; an hour boundary is a day boundary in nearly every zone).
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT (at / 3600) * 3600 AS h, count(*), sum(handoff), \
             sum(action IN ('ignore', 'default')) FROM messages WHERE {range} AND {pushes} GROUP BY h"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params![since, 0, first], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u64>(1)?,
                r.get::<_, u64>(2)?,
                r.get::<_, u64>(3)?,
            ))
        })
        .map_err(backend)?;
    let mut days: BTreeMap<String, DayStats> = BTreeMap::new();
    for row in rows {
        let (hour, m, h, u) = row.map_err(backend)?;
        let date = local(hour, tz, "%Y-%m-%d");
        let day = days.entry(date.clone()).or_insert(DayStats {
            date,
            messages: 0,
            handoffs: 0,
            unmatched: 0,
        });
        day.messages += m;
        day.handoffs += h;
        day.unmatched += u;
    }

    Ok(StatsReport {
        since,
        until,
        timezone: tz.name().to_string(),
        messages,
        actions,
        rules,
        faqs,
        handoffs,
        unmatched,
        top_unmatched,
        sends,
        days: days.into_values().collect(),
    })
}

fn local(unix: i64, tz: Tz, format: &str) -> String {
    match Utc.timestamp_opt(unix, 0).single() {
        Some(t) => t.with_timezone(&tz).format(format).to_string(),
        None => unix.to_string(),
    }
}

fn section(f: &mut fmt::Formatter<'_>, title: &str, rows: &[Count]) -> fmt::Result {
    writeln!(f)?;
    writeln!(f, "{title}")?;
    if rows.is_empty() {
        return writeln!(f, "  (none)");
    }
    let width = rows
        .iter()
        .map(|c| c.key.chars().count())
        .max()
        .unwrap_or(0);
    for c in rows {
        let pad = width - c.key.chars().count();
        writeln!(f, "  {}{}  {:>7}", c.key, " ".repeat(pad), c.count)?;
    }
    Ok(())
}

impl fmt::Display for StatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tz = self.timezone.parse::<Tz>().unwrap_or(Tz::UTC);
        writeln!(
            f,
            "kefu stats from {} to {} ({})",
            local(self.since, tz, "%Y-%m-%d %H:%M"),
            local(self.until, tz, "%Y-%m-%d %H:%M"),
            self.timezone
        )?;
        writeln!(f)?;
        writeln!(f, "  messages   {:>7}", self.messages)?;
        writeln!(f, "  handoffs   {:>7}", self.handoffs)?;
        writeln!(f, "  unmatched  {:>7}", self.unmatched)?;
        writeln!(
            f,
            "  sends      {:>7} sent, {} failed, {} dropped over quota, {} retries",
            self.sends.sent, self.sends.failed, self.sends.dropped, self.sends.retrying
        )?;
        section(f, "actions", &self.actions)?;
        section(f, "hits per rule", &self.rules)?;
        section(f, "hits per FAQ entry", &self.faqs)?;
        // Texts are user input: show them on one line each, quoted.
        let unmatched: Vec<Count> = self
            .top_unmatched
            .iter()
            .map(|c| Count {
                key: format!("{:?}", c.key),
                count: c.count,
            })
            .collect();
        section(f, "unmatched messages most often seen", &unmatched)?;
        writeln!(f)?;
        writeln!(f, "per day")?;
        if self.days.is_empty() {
            return writeln!(f, "  (none)");
        }
        writeln!(f, "  date        messages  handoffs  unmatched")?;
        for d in &self.days {
            writeln!(
                f,
                "  {}  {:>8}  {:>8}  {:>9}",
                d.date, d.messages, d.handoffs, d.unmatched
            )?;
        }
        Ok(())
    }
}

/// One bucket of the console's chart.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket (unix seconds).
    pub t: i64,
    /// Messages received.
    pub messages: u64,
    /// Messages answered by a rule or the FAQ (including clarify menus).
    pub answers: u64,
    /// Messages transferred to humans.
    pub handoffs: u64,
    /// Messages only the default rule (or nothing) answered.
    pub unmatched: u64,
}

/// Messages per `bucket_secs` from `since` to `until`, with empty buckets filled in.
pub fn series_from(
    conn: &Connection,
    since: i64,
    until: i64,
    bucket_secs: i64,
) -> Result<Vec<SeriesPoint>, StoreError> {
    let bucket = bucket_secs.max(1);
    let first = since.div_euclid(bucket) * bucket;
    let last = until.div_euclid(bucket) * bucket;
    let mut points: Vec<SeriesPoint> = (0..=((last - first) / bucket).clamp(0, 10_000))
        .map(|i| SeriesPoint {
            t: first + i * bucket,
            ..SeriesPoint::default()
        })
        .collect();
    let mut stmt = conn
        .prepare_cached(
            "SELECT (at / ?2) * ?2 AS b, count(*), \
             coalesce(sum(action IN ('reply', 'faq', 'clarify')), 0), coalesce(sum(handoff), 0), \
             coalesce(sum(action IN ('ignore', 'default')), 0) \
             FROM messages WHERE id >= ?3 AND at >= ?1 AND msg_type != 'operator' \
             GROUP BY b ORDER BY b",
        )
        .map_err(backend)?;
    let first_id = arrival::first_id_since(conn, ArrivalTable::Messages, first)?;
    let rows = stmt
        .query_map(rusqlite::params![first, bucket, first_id], |r| {
            Ok(SeriesPoint {
                t: r.get(0)?,
                messages: r.get(1)?,
                answers: r.get(2)?,
                handoffs: r.get(3)?,
                unmatched: r.get(4)?,
            })
        })
        .map_err(backend)?;
    for row in rows {
        let row = row.map_err(backend)?;
        let index = (row.t - first) / bucket;
        match usize::try_from(index).ok().and_then(|i| points.get_mut(i)) {
            Some(slot) => *slot = row,
            None => points.push(row),
        }
    }
    Ok(points)
}
