//! Multi-row `INSERT`s: one statement appends up to 32 rows.
//!
//! Each execution of a statement pays fixed costs that have nothing to do with its row: a cursor
//! opened and freed, a seek to the table's last row for the new rowid, the halt that closes it
//! all. Per push these cost about as much as writing the row. The writer therefore appends a
//! batch's rows in chunks, each chunk one statement of that many `VALUES` tuples: a batch of `n`
//! rows takes one statement per binary digit of `n` that is set (35 = 32 + 2 + 1), each a
//! statement of the connection's cache.
//!
//! The statements are `INSERT OR IGNORE`. A multi-row statement that could abort half-way (an
//! `ON CONFLICT … DO NOTHING` still aborts on a `NOT NULL` column) makes SQLite copy every page
//! it touches into a statement journal first, which cost more than the rows saved. With `OR
//! IGNORE` nothing aborts: a row that breaks a constraint is skipped. The callers bind no NULL
//! where the schema forbids one (those values are Rust values that cannot be absent), so the
//! only rows skipped are the dedupe memos of keys already stored, which is what they want.

use rusqlite::types::ToSql;
use rusqlite::{CachedStatement, Transaction};

use super::StoreError;
use super::schema::backend;

/// The rows of a statement, largest first: the chunk sizes.
const SIZES: [usize; 6] = [32, 16, 8, 4, 2, 1];

/// The SQL of one multi-row `INSERT` for every chunk size.
pub struct MultiRow {
    /// `columns` placeholders per row.
    columns: usize,
    /// The statement for `SIZES[i]` rows.
    sql: [String; SIZES.len()],
}

/// What one statement of [`MultiRow::insert`] did.
pub struct Chunk<'a, T> {
    /// The items it was given, in order.
    pub items: &'a [T],
    /// The rows it wrote: fewer than `items` when `OR IGNORE` skipped some.
    pub written: usize,
    /// The row id SQLite reported for the last row written so far (`last_insert_rowid`).
    last_id: i64,
}

impl<T> Chunk<'_, T> {
    /// The row ids of the rows this statement wrote (empty when it wrote none). New rows of a
    /// rowid table take the ids after its last, one after the other.
    pub fn ids(&self) -> std::ops::RangeInclusive<i64> {
        (self.last_id - self.written as i64 + 1)..=self.last_id
    }
}

/// One row of a chunk's statement, for the caller to give its values.
pub struct Row<'s, 'c> {
    stmt: &'s mut CachedStatement<'c>,
    /// The row's first parameter (parameters count from 1).
    first: usize,
    columns: usize,
}

impl Row<'_, '_> {
    /// Binds the row's values, one per column, in the order of the columns.
    pub fn values(&mut self, values: &[&dyn ToSql]) -> Result<(), StoreError> {
        debug_assert_eq!(values.len(), self.columns);
        for (i, value) in values.iter().enumerate() {
            self.stmt
                .raw_bind_parameter(self.first + i, value)
                .map_err(backend)?;
        }
        Ok(())
    }
}

impl MultiRow {
    /// `head` names the table and columns (`INSERT OR IGNORE INTO t (a, b)`).
    pub fn new(head: &str, columns: usize) -> Self {
        let tuple = format!("({})", vec!["?"; columns].join(","));
        let sql =
            SIZES.map(|rows| format!("{head} VALUES {}", vec![tuple.as_str(); rows].join(",")));
        Self { columns, sql }
    }

    /// Appends one row per item, in order, with `bind` giving an item's values. Returns what
    /// each statement did.
    pub fn insert<'a, T>(
        &self,
        tx: &Transaction<'_>,
        items: &'a [T],
        mut bind: impl FnMut(&mut Row<'_, '_>, &T) -> Result<(), StoreError>,
    ) -> Result<Vec<Chunk<'a, T>>, StoreError> {
        let mut written = Vec::with_capacity(4);
        let mut rest = items;
        for (sql, &size) in self.sql.iter().zip(&SIZES) {
            if rest.len() < size {
                continue;
            }
            let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
            while rest.len() >= size {
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                for (i, item) in chunk.iter().enumerate() {
                    let mut row = Row {
                        stmt: &mut stmt,
                        first: i * self.columns + 1,
                        columns: self.columns,
                    };
                    bind(&mut row, item)?;
                }
                let rows = stmt.raw_execute().map_err(backend)?;
                written.push(Chunk {
                    items: chunk,
                    written: rows,
                    last_id: tx.last_insert_rowid(),
                });
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// Each statement's items and rows written.
    type Sizes = Vec<(usize, usize)>;

    /// Inserts `rows` into a fresh table with a unique `k`; returns the chunks' sizes and rows
    /// written, and the table.
    fn run(rows: &[(String, i64)]) -> (Sizes, Vec<(i64, String, i64)>) {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v INTEGER)")
            .unwrap();
        let m = MultiRow::new("INSERT OR IGNORE INTO t (k, v)", 2);
        let tx = conn.transaction().unwrap();
        let chunks: Vec<(usize, usize)> = m
            .insert(&tx, rows, |row, (k, v)| row.values(&[k, v]))
            .unwrap()
            .into_iter()
            .map(|chunk| (chunk.items.len(), chunk.written))
            .collect();
        tx.commit().unwrap();
        let table = crate::store::tests::triples(&conn, "SELECT id, k, v FROM t ORDER BY id");
        (chunks, table)
    }

    fn rows(n: i64) -> Vec<(String, i64)> {
        (0..n).map(|i| (format!("k{i}"), i)).collect()
    }

    #[test]
    fn chunks_are_the_binary_digits_of_the_length_and_rows_keep_their_order() {
        let (chunks, table) = run(&rows(35));
        assert_eq!(chunks, vec![(32, 32), (2, 2), (1, 1)]);
        let expected: Vec<(i64, String, i64)> =
            rows(35).into_iter().map(|(k, v)| (v + 1, k, v)).collect();
        assert_eq!(table, expected);
        assert_eq!(run(&rows(70)).0, vec![(32, 32), (32, 32), (4, 4), (2, 2)]);
        assert_eq!(run(&[]).0, vec![]);
    }

    #[test]
    fn a_conflict_skips_only_its_row_and_is_counted() {
        let rows: Vec<(String, i64)> = [("a", 1), ("b", 2), ("a", 3), ("c", 4)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let (chunks, table) = run(&rows);
        assert_eq!(chunks, vec![(4, 3)]);
        assert_eq!(
            table,
            vec![
                (1, "a".to_string(), 1),
                (2, "b".to_string(), 2),
                (3, "c".to_string(), 4)
            ]
        );
    }
}
