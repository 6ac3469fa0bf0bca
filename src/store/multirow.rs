//! Multi-row `INSERT`s: one statement appends up to [`MAX_ROWS`] rows.
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

/// Rows per statement at most; the chunk sizes are the powers of two up to it.
pub const MAX_ROWS: usize = 32;

/// The chunk sizes, largest first.
const SIZES: [usize; 6] = [32, 16, 8, 4, 2, 1];

/// The SQL of one multi-row `INSERT` for every chunk size.
pub struct MultiRow {
    /// `columns` placeholders per row.
    columns: usize,
    /// The statement for `SIZES[i]` rows.
    sql: [String; SIZES.len()],
}

impl MultiRow {
    /// `head` names the table and columns (`INSERT OR IGNORE INTO t (a, b)`).
    pub fn new(head: &str, columns: usize) -> Self {
        let tuple = format!("({})", vec!["?"; columns].join(","));
        let sql =
            SIZES.map(|rows| format!("{head} VALUES {}", vec![tuple.as_str(); rows].join(",")));
        Self { columns, sql }
    }

    /// Splits `items` into chunks of the sizes above, in order.
    pub fn chunks<'a, T>(&self, items: &'a [T]) -> Chunks<'a, T> {
        Chunks { rest: items }
    }

    /// Prepares (from the cache) the statement for a chunk of `rows` rows, one of the sizes
    /// [`Self::chunks`] yields.
    pub fn prepare<'c>(
        &self,
        tx: &'c Transaction<'_>,
        rows: usize,
    ) -> Result<CachedStatement<'c>, StoreError> {
        let i = SIZES.iter().position(|&s| s == rows).ok_or_else(|| {
            StoreError::backend(format!("internal: no multi-row statement for {rows} rows"))
        })?;
        tx.prepare_cached(&self.sql[i]).map_err(backend)
    }

    /// Binds one row's values at its place in a chunk (`row` counts from 0).
    pub fn bind(
        &self,
        stmt: &mut CachedStatement<'_>,
        row: usize,
        values: &[&dyn ToSql],
    ) -> Result<(), StoreError> {
        debug_assert_eq!(values.len(), self.columns);
        let first = row * self.columns + 1;
        for (i, value) in values.iter().enumerate() {
            stmt.raw_bind_parameter(first + i, value).map_err(backend)?;
        }
        Ok(())
    }
}

/// The chunks of a slice, largest sizes first (see [`MultiRow::chunks`]).
pub struct Chunks<'a, T> {
    rest: &'a [T],
}

impl<'a, T> Iterator for Chunks<'a, T> {
    type Item = &'a [T];

    fn next(&mut self) -> Option<&'a [T]> {
        let size = SIZES.iter().copied().find(|&s| s <= self.rest.len())?;
        let (chunk, rest) = self.rest.split_at(size);
        self.rest = rest;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn chunks_are_the_binary_digits_of_the_length_in_order() {
        let m = MultiRow::new("INSERT INTO t (a)", 1);
        let items: Vec<u32> = (0..35).collect();
        let sizes: Vec<usize> = m.chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![32, 2, 1]);
        let again: Vec<u32> = m.chunks(&items).flatten().copied().collect();
        assert_eq!(again, items);
        assert_eq!(m.chunks(&items[..0]).count(), 0);
        let many: Vec<u32> = (0..70).collect();
        let sizes: Vec<usize> = m.chunks(&many).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![32, 32, 4, 2]);
    }

    #[test]
    fn a_chunk_inserts_its_rows_in_order_and_a_conflict_skips_only_its_row() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v INTEGER)")
            .unwrap();
        let m = MultiRow::new("INSERT OR IGNORE INTO t (k, v)", 2);
        let rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4)];
        let tx = conn.transaction().unwrap();
        let mut changed = 0;
        for chunk in m.chunks(&rows) {
            let mut stmt = m.prepare(&tx, chunk.len()).unwrap();
            for (i, (k, v)) in chunk.iter().enumerate() {
                m.bind(&mut stmt, i, &[k, v]).unwrap();
            }
            changed += stmt.raw_execute().unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(changed, 3);
        assert_eq!(
            crate::store::tests::triples(&conn, "SELECT id, k, v FROM t ORDER BY id"),
            vec![
                (1, "a".to_string(), 1),
                (2, "b".to_string(), 2),
                (3, "c".to_string(), 4)
            ]
        );
    }
}
