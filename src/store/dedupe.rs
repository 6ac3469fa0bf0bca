//! Dedupe of WeChat's retries: the in-memory map behind [`Store::claim`](super::Store::claim),
//! and the rows that back it on disk.
//!
//! A key is either in flight (its first attempt is being handled; later attempts wait on a watch
//! channel) or done (its memo is durable and is replayed). Done keys stay in memory for the hot
//! window (they are reloaded from disk at open, so a retry across a restart is still answered
//! with the same memo) and on disk for a day, where a later commit of the same key finds them.
//!
//! The map is sharded so that concurrent requests rarely meet on one lock. Lock poisoning is
//! ignored on purpose: every critical section is a single map operation that leaves the map
//! consistent even if a panic unwinds through it, and refusing every later push would be worse.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, Transaction};
use tokio::sync::watch;

use super::arrival::ARRIVAL_SLACK_SECS;
use super::multirow::MultiRow;
use super::schema::backend;
use super::{Claim, Memo, PushKey, PushRecord, StoreError};

const SHARDS: usize = 32;

/// An in-flight claim older than this is presumed dead (its handler vanished without committing
/// or abandoning) and a new claim takes over. Safe even if the first handler is merely slow: a
/// second commit of the key finds the first's row and is answered with its memo
/// ([`super::CommitReport::replay`]). WeChat stops retrying after about 15 s.
pub const STALE_IN_FLIGHT_SECS: i64 = 30;

/// The state of one key.
enum Slot {
    /// Being handled since `since` (unix seconds); waiters hold receivers of `tx`, which the
    /// first waiter creates (nearly every push has none).
    InFlight {
        tx: Option<watch::Sender<Option<Memo>>>,
        since: i64,
    },
    /// Answered with this memo; `at` is when (unix seconds).
    Done { memo: Memo, at: i64 },
}

/// A push key's seeded 128-bit XXH3 digest: what the map holds instead of the key's text. A
/// look-up hashes the key once, never clones it, and compares two integers where a string
/// compare would read the key from another cache line. Two keys of the map's at most
/// [`MAX_HOT_KEYS`] share a digest with a probability below 10^-28.
type Digest = u128;

/// The map's hasher: a digest is already a hash, its low half is the bucket's.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only digests are hashed here (`write_u128`); anything else still spreads.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

#[derive(Default)]
struct Shard {
    /// Every key known to this shard.
    map: HashMap<Digest, Slot, BuildHasherDefault<DigestHasher>>,
    /// Done keys in the order they were resolved, for eviction after the hot window.
    order: VecDeque<(i64, Digest)>,
}

/// Answered keys held in memory at most, whatever the hot window: under sustained load the
/// window alone would grow without bound. A retry that misses memory still gets its first
/// answer, from disk, at commit ([`super::CommitReport::replay`]).
pub const MAX_HOT_KEYS: usize = 50_000;

impl Shard {
    fn evict(&mut self, now: i64, hot_secs: i64) {
        let cap = MAX_HOT_KEYS / SHARDS;
        while let Some((at, _)) = self.order.front() {
            if *at >= now.saturating_sub(hot_secs) && self.order.len() <= cap {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && let Entry::Occupied(e) = self.map.entry(key)
                && matches!(e.get(), Slot::Done { at: done, .. } if *done == at)
            {
                e.remove();
            }
        }
    }
}

/// The hot dedupe map.
pub struct DedupeCache {
    /// The shards, chosen by the key's hash.
    shards: Box<[Mutex<Shard>]>,
    /// How long done keys stay in memory.
    hot_secs: i64,
    /// The digests' seed, drawn at start: nobody outside can aim two keys at one digest.
    seed: u64,
}

impl DedupeCache {
    /// An empty cache keeping done keys for `hot_secs`.
    pub fn new(hot_secs: i64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hot_secs,
            seed: rand::random(),
        }
    }

    /// The key's digest and its shard (chosen by the digest's high half; the map uses the low).
    fn shard(&self, key: &PushKey) -> (Digest, MutexGuard<'_, Shard>) {
        let digest = xxhash_rust::xxh3::xxh3_128_with_seed(key.0.as_bytes(), self.seed);
        let i = ((digest >> 64) as usize) % self.shards.len();
        let shard = self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (digest, shard)
    }

    /// Looks a key up; marks it in flight when it is new.
    pub fn claim(&self, key: &PushKey, now: i64) -> Claim {
        let (digest, mut shard) = self.shard(key);
        shard.evict(now, self.hot_secs);
        match shard.map.get_mut(&digest) {
            Some(Slot::Done { memo, .. }) => Claim::Done(memo.clone()),
            Some(Slot::InFlight { tx, since })
                if now.saturating_sub(*since) < STALE_IN_FLIGHT_SECS =>
            {
                Claim::InFlight(tx.get_or_insert_with(|| watch::channel(None).0).subscribe())
            }
            // New, or a stale claim: replacing it closes the old waiters, who claim again.
            _ => {
                shard.map.insert(
                    digest,
                    Slot::InFlight {
                        tx: None,
                        since: now,
                    },
                );
                Claim::New
            }
        }
    }

    /// Forgets an in-flight key; its waiters see the channel close and claim again.
    pub fn abandon(&self, key: &PushKey) {
        let (digest, mut shard) = self.shard(key);
        if let Entry::Occupied(e) = shard.map.entry(digest)
            && matches!(e.get(), Slot::InFlight { .. })
        {
            e.remove();
        }
    }

    /// Records a durable memo and hands it to the waiters.
    pub fn resolve(&self, key: &PushKey, memo: Memo, at: i64) {
        let (digest, mut shard) = self.shard(key);
        let slot = shard.map.entry(digest).or_insert(Slot::Done {
            memo: Memo::default(),
            at,
        });
        // Only retries waiting on the first attempt need a copy of the memo. They read it even
        // after the sender is dropped.
        if let Slot::InFlight { tx: Some(tx), .. } = slot
            && tx.receiver_count() > 0
        {
            tx.send_replace(Some(memo.clone()));
        }
        *slot = Slot::Done { memo, at };
        shard.order.push_back((at, digest));
        if shard.order.len() > MAX_HOT_KEYS / SHARDS {
            shard.evict(at, self.hot_secs);
        }
    }

    /// Evicts expired keys from every shard.
    pub fn sweep(&self, now: i64) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .evict(now, self.hot_secs);
        }
    }

    /// Number of keys held (in flight or done).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills the cache with the memos committed within the hot window before `now`, reading
    /// back from the newest until memos are older than the window by more than
    /// [`ARRIVAL_SLACK_SECS`] (arrival order is `at` order only to within a commit), or until
    /// [`MAX_HOT_KEYS`] are read.
    pub fn load(&self, conn: &Connection, now: i64) -> Result<usize, StoreError> {
        let since = now.saturating_sub(self.hot_secs);
        let mut stmt = conn
            .prepare("SELECT key, content_type, body, at FROM dedupe ORDER BY id DESC")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    PushKey(r.get(0)?),
                    Memo {
                        content_type: r.get(1)?,
                        body: r.get(2)?,
                    },
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(backend)?;
        let mut hot = Vec::new();
        for row in rows {
            let (key, memo, at) = row.map_err(backend)?;
            if at < since.saturating_sub(ARRIVAL_SLACK_SECS) {
                break;
            }
            if at >= since {
                hot.push((key, memo, at));
                // The cache keeps no more than this; the newest are the ones it would keep.
                if hot.len() >= MAX_HOT_KEYS {
                    break;
                }
            }
        }
        hot.sort_by_key(|(_, _, at)| *at);
        let n = hot.len();
        for (key, memo, at) in hot {
            self.resolve(&key, memo, at);
        }
        Ok(n)
    }
}

/// The multi-row statement that appends memos whose keys are not stored yet.
static INSERT: std::sync::LazyLock<MultiRow> = std::sync::LazyLock::new(|| {
    MultiRow::new(
        "INSERT OR IGNORE INTO dedupe (key, content_type, body, at)",
        4,
    )
});

/// Writes the memos of `records`, in order, [`super::multirow`] rows to a statement. Returns,
/// for each record, the memo already stored when its key was committed before (by an earlier
/// batch, or by an earlier record of this one): that record's row is not written, and the push is
/// a retry to answer with the stored memo.
pub fn insert_all(
    tx: &Transaction<'_>,
    records: &[&PushRecord],
) -> Result<Vec<Option<Memo>>, StoreError> {
    let written = INSERT.insert(tx, records, |row, r| {
        row.values(&[&r.key.0, &r.memo.content_type, &r.memo.body, &r.received_at])
    })?;
    let mut firsts = Vec::with_capacity(records.len());
    for chunk in written {
        if chunk.written == chunk.items.len() {
            firsts.extend(std::iter::repeat_n(None, chunk.items.len()));
            continue;
        }
        // Rare: a retry that left the hot map. A row of the key that this statement did not
        // write is older, and the first answer.
        let ours = chunk.ids();
        let mut seen: Vec<&str> = Vec::with_capacity(chunk.items.len());
        for r in chunk.items {
            let first_in_chunk = !seen.contains(&r.key.0.as_str());
            seen.push(&r.key.0);
            let (id, memo) = stored(tx, &r.key)?;
            firsts.push((!(first_in_chunk && ours.contains(&id))).then_some(memo));
        }
    }
    Ok(firsts)
}

/// The row id and memo stored for a key (which was just written, or found).
fn stored(tx: &Transaction<'_>, key: &PushKey) -> Result<(i64, Memo), StoreError> {
    tx.prepare_cached("SELECT id, content_type, body FROM dedupe WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row([&key.0], |r| {
                Ok((
                    r.get(0)?,
                    Memo {
                        content_type: r.get(1)?,
                        body: r.get(2)?,
                    },
                ))
            })
        })
        .map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memo(body: &str) -> Memo {
        Memo {
            content_type: None,
            body: body.into(),
        }
    }

    /// A record of key `k` whose memo says `answer`.
    fn record(k: &str, answer: &str) -> PushRecord {
        let mut r = crate::store::tests::push(k, "u", 100, &[]);
        r.memo = memo(answer);
        r
    }

    #[test]
    fn insert_all_writes_new_keys_and_finds_the_first_memo_of_any_other() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let old = record("old", "first answer");
        assert_eq!(insert_all(&tx, &[&old]).unwrap(), vec![None]);

        // One chunk: a new key, a key from before, the new key again, another new key.
        let batch = [
            record("a", "a1"),
            record("old", "second answer"),
            record("a", "a2"),
            record("c", "c1"),
        ];
        let refs: Vec<&PushRecord> = batch.iter().collect();
        assert_eq!(
            insert_all(&tx, &refs).unwrap(),
            vec![None, Some(memo("first answer")), Some(memo("a1")), None]
        );

        // 40 records, chunks of 32 and 8: the last repeats the first, across chunks.
        let mut many: Vec<PushRecord> = (0..39).map(|i| record(&format!("m{i}"), "m")).collect();
        many.push(record("m0", "again"));
        let refs: Vec<&PushRecord> = many.iter().collect();
        let firsts = insert_all(&tx, &refs).unwrap();
        assert!(firsts[..39].iter().all(Option::is_none));
        assert_eq!(firsts[39], Some(memo("m")));

        // 35 records, chunks of 32, 2 and 1: a repeat in the first chunk, whose rows are told
        // from the older one by their ids although two more statements ran after it.
        let mut more: Vec<PushRecord> = (0..35).map(|i| record(&format!("n{i}"), "n")).collect();
        more[5] = record("old", "third answer");
        let refs: Vec<&PushRecord> = more.iter().collect();
        let firsts = insert_all(&tx, &refs).unwrap();
        assert_eq!(firsts[5], Some(memo("first answer")));
        assert_eq!(firsts.iter().filter(|f| f.is_some()).count(), 1);

        let rows: i64 = tx
            .query_row("SELECT count(*) FROM dedupe", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1 + 2 + 39 + 34);
    }

    #[test]
    fn new_then_inflight_then_done() {
        let c = DedupeCache::new(600);
        let k = PushKey("a|m|1".into());
        assert!(matches!(c.claim(&k, 100), Claim::New));
        let Claim::InFlight(rx) = c.claim(&k, 100) else {
            panic!("expected in flight")
        };
        c.resolve(&k, memo("success"), 100);
        assert_eq!(rx.borrow().clone(), Some(memo("success")));
        assert!(matches!(c.claim(&k, 101), Claim::Done(m) if m.body == "success"));
    }

    #[test]
    fn abandon_closes_waiters_and_frees_the_key() {
        let c = DedupeCache::new(600);
        let k = PushKey("a|m|2".into());
        assert!(matches!(c.claim(&k, 0), Claim::New));
        let Claim::InFlight(rx) = c.claim(&k, 0) else {
            panic!()
        };
        c.abandon(&k);
        assert!(rx.has_changed().is_err(), "sender dropped");
        assert!(matches!(c.claim(&k, 0), Claim::New));
    }

    #[test]
    fn abandon_never_forgets_a_done_key() {
        let c = DedupeCache::new(600);
        let k = PushKey("a|m|3".into());
        c.resolve(&k, memo("x"), 0);
        c.abandon(&k);
        assert!(matches!(c.claim(&k, 1), Claim::Done(_)));
    }

    #[test]
    fn a_stale_in_flight_claim_is_taken_over() {
        let c = DedupeCache::new(600);
        let k = PushKey("a|m|5".into());
        assert!(matches!(c.claim(&k, 0), Claim::New));
        let Claim::InFlight(rx) = c.claim(&k, STALE_IN_FLIGHT_SECS - 1) else {
            panic!()
        };
        assert!(matches!(c.claim(&k, STALE_IN_FLIGHT_SECS), Claim::New));
        assert!(rx.has_changed().is_err(), "old waiters are released");
        assert!(matches!(
            c.claim(&k, STALE_IN_FLIGHT_SECS),
            Claim::InFlight(_)
        ));
    }

    #[test]
    fn done_keys_leave_memory_after_the_hot_window() {
        let c = DedupeCache::new(600);
        let k = PushKey("a|m|4".into());
        c.resolve(&k, memo("x"), 1000);
        assert!(matches!(c.claim(&k, 1600), Claim::Done(_)));
        c.sweep(1601);
        assert!(c.is_empty());
        assert!(matches!(c.claim(&k, 1601), Claim::New));
    }
}
