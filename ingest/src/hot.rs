//! The hot tier: every series' recent readings, in compressed chunks with an in-memory
//! head. This module is its writing side and its layout; [`crate::query`] reads it.
//!
//! # Layout
//! - `series(id, device, metric, first_ns, last_ns, last_value)`: one row per
//!   (device, metric), created the first time it has a reading. The integer `id` is what
//!   every other structure keys on. `first_ns`/`last_ns`/`last_value` describe the
//!   series' chunks (NULL while all its readings are in the head).
//! - `chunks(series, start_ns, end_ns, count, data)`, primary key (series, start_ns): one
//!   series' readings between two times, at most [`CHUNK_SPAN_NS`] apart and at most
//!   [`CHUNK_MAX_READINGS`] of them, encoded by [`crate::chunk`]. Chunks of a series may
//!   overlap in time (a late reading lands in a later chunk); a reading is in one chunk
//!   only.
//! - `hot_head(id, data)`: the head, durable: each applied batch writes one row holding
//!   its new readings as 20-byte records (series id `u32`, time `i64`, value `f64`, little
//!   endian), in the batch's transaction. A flush writes the head into chunks and deletes
//!   these rows in one transaction.
//!
//! # Why
//! One SQLite row per reading cost about 10,000 instructions per reading on the apply
//! path (B-tree seeks and compares on a text key, page balancing, WAL frames); one blob
//! per batch costs a copy. The head lives in memory ([`HotHead`], shared with the readers
//! of the same process) and in `hot_head` (for a restart, and for readers in other
//! processes: `gateway query --data-dir`, `simulators verify`). It is flushed when it
//! holds [`HotOptions::head_max_readings`] or its oldest reading has waited
//! [`HotOptions::flush_interval`]; a flush appends to a series' last chunk while that
//! chunk is small, so a slow series does not end up in many tiny chunks.
//!
//! # Exactly once
//! A reading's identity is (series, time): a second reading with both equal is a
//! duplicate, counted and not stored. The writer keeps per series the newest time it
//! holds; a reading newer than that is new without a lookup, an older one is looked for in
//! the head and then in the chunks that can hold it. A crash loses nothing of the head
//! (its rows commit with the batch) and cannot double it (the flush deletes the rows it
//! wrote into chunks in the same transaction).
//!
//! # Writers
//! The log's applier owns the head ([`HotWriter::own`]). Another writer on the same
//! database (`gateway deadletters replay` while the service runs, tests) writes its
//! readings straight into chunks in its own transaction, counting the owner's head rows
//! as present, and bumps `hot_state.version` so that the owner reloads what it caches
//! about the series.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use foldhash::{HashMap, HashMapExt};

use crate::chunk;
use crate::error::{IngestError, Result};

/// The longest time between the first and the last reading of a chunk (1 hour). Readers
/// look for the chunks that can hold a time `t` among those starting in
/// `(t - CHUNK_SPAN_NS, t]`.
pub const CHUNK_SPAN_NS: i64 = 3_600_000_000_000;

/// The most readings in one chunk.
pub const CHUNK_MAX_READINGS: usize = 8_192;

/// Bytes of one reading in a `hot_head` row.
const HEAD_RECORD: usize = 20;

/// When the head is written into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotOptions {
    /// Readings held in the head before a flush (memory: about 20 bytes each).
    pub head_max_readings: usize,
    /// The longest a reading stays in the head.
    pub flush_interval: Duration,
}

impl Default for HotOptions {
    fn default() -> Self {
        Self {
            head_max_readings: 200_000,
            flush_interval: Duration::from_secs(600),
        }
    }
}

/// The head's readings by series id, in arrival order (mostly ascending in time).
#[derive(Debug, Default)]
pub struct HeadData {
    series: HashMap<u32, Vec<(i64, f64)>>,
    readings: usize,
    /// Batches committed with a reading older than [`LATE_NS`] when it was committed (a
    /// device's backlog, a backfill): readers that cache results for past hours compare it
    /// to know that an hour may have changed.
    late_writes: u64,
}

/// A reading committed this long after its own time is a late write.
pub const LATE_NS: i64 = 3_600_000_000_000;

impl HeadData {
    /// Readings held.
    pub fn readings(&self) -> usize {
        self.readings
    }

    /// Batches with late readings committed since this process took the head over (see
    /// the field): a changed count means past hours may hold new readings.
    pub fn late_writes(&self) -> u64 {
        self.late_writes
    }

    /// The readings of series `id`, in arrival order.
    pub fn of(&self, id: u32) -> &[(i64, f64)] {
        self.series.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Every series with readings in the head.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[(i64, f64)])> {
        self.series.iter().map(|(id, v)| (*id, v.as_slice()))
    }

    fn push(&mut self, id: u32, ts: i64, value: f64) {
        self.series.entry(id).or_default().push((ts, value));
        self.readings += 1;
    }

    fn clear(&mut self) {
        self.series.clear();
        self.readings = 0;
    }

    /// Decodes `hot_head` records into the head.
    fn extend_from_records(&mut self, data: &[u8]) -> Result<()> {
        if !data.len().is_multiple_of(HEAD_RECORD) {
            return Err(IngestError::Chunk(format!(
                "head row of {} bytes is not whole records",
                data.len()
            )));
        }
        for r in data.chunks_exact(HEAD_RECORD) {
            let id = u32::from_le_bytes(r[0..4].try_into().unwrap_or_default());
            let ts = i64::from_le_bytes(r[4..12].try_into().unwrap_or_default());
            let v = f64::from_le_bytes(r[12..20].try_into().unwrap_or_default());
            self.push(id, ts, v);
        }
        Ok(())
    }
}

/// The head, shared between the writer and the readers of one process.
#[derive(Debug, Clone, Default)]
pub struct HotHead(Arc<RwLock<HeadData>>);

impl HotHead {
    /// The head as stored in `conn`'s `hot_head` rows: what a reader in another process
    /// sees of the running writer's head.
    pub fn load(conn: &Connection) -> Result<Self> {
        let mut head = HeadData::default();
        load_rows(conn, &mut head)?;
        Ok(Self(Arc::new(RwLock::new(head))))
    }

    /// Read access.
    pub fn read(&self) -> RwLockReadGuard<'_, HeadData> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HeadData> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn load_rows(conn: &Connection, head: &mut HeadData) -> Result<()> {
    let mut s = conn
        .prepare_cached("SELECT data FROM hot_head ORDER BY id")
        .map_err(IngestError::sql("read the hot tier's head"))?;
    let mut rows = s
        .query([])
        .map_err(IngestError::sql("read the hot tier's head"))?;
    while let Some(r) = rows
        .next()
        .map_err(IngestError::sql("read the hot tier's head"))?
    {
        head.extend_from_records(blob_at(r, 0, "read the hot tier's head")?)?;
    }
    Ok(())
}

/// Column `i` of `r` as a blob.
pub(crate) fn blob_at<'r>(
    r: &'r rusqlite::Row<'_>,
    i: usize,
    context: &'static str,
) -> Result<&'r [u8]> {
    r.get_ref(i)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .map_err(IngestError::sql(context))
}

/// A flush's reused buffers: a series' readings sorted, and a chunk.
type Scratch = (Vec<(i64, f64)>, Vec<u8>);

/// What the writer knows of a series.
#[derive(Debug, Clone, Copy)]
struct SeriesState {
    /// Newest time in its chunks (`i64::MIN`: none).
    chunk_max: i64,
    /// Newest time it holds anywhere (this batch included).
    max: i64,
}

/// What a flush or a write-through did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Readings written into chunks.
    pub readings: usize,
    /// Chunks written (new or extended).
    pub chunks: usize,
    /// Series flushed.
    pub series: usize,
}

/// The writing side of the hot tier, owned by a [`crate::Pipeline`].
#[derive(Debug)]
pub(crate) struct HotWriter {
    head: HotHead,
    opts: HotOptions,
    /// Holds the durable head (`hot_head` rows) and flushes it; else writes through.
    owner: bool,
    /// When the head got its first reading since the last flush.
    oldest: Option<Instant>,
    /// device -> (metric, series id).
    ids: HashMap<Box<str>, Vec<(Box<str>, u32)>>,
    state: HashMap<u32, SeriesState>,
    /// `hot_state.version` as last seen.
    version: Option<i64>,
    /// Other writers' head rows (write-through writers only).
    foreign: HeadData,
    /// This batch's new readings (series, time, value): they join the head when the
    /// batch commits, so readers never see a batch that rolls back.
    pending: Vec<(u32, i64, f64)>,
    /// The `hot_head` row of a batch (reused).
    record: Vec<u8>,
    /// Reused buffers of the flush.
    scratch: Scratch,
}

impl HotWriter {
    pub(crate) fn new(opts: HotOptions) -> Self {
        Self {
            head: HotHead::default(),
            opts,
            owner: false,
            oldest: None,
            ids: HashMap::new(),
            state: HashMap::new(),
            version: None,
            foreign: HeadData::default(),
            pending: Vec::new(),
            record: Vec::new(),
            scratch: Default::default(),
        }
    }

    /// The head, for readers in this process.
    pub(crate) fn head(&self) -> &HotHead {
        &self.head
    }

    /// Takes over the stored head: its rows become this writer's (after a restart, what
    /// the last run had not flushed), and later batches add rows instead of writing
    /// through. One owner per database: the log's applier.
    pub(crate) fn own(&mut self, conn: &Connection) -> Result<()> {
        if self.owner {
            return Ok(());
        }
        let mut head = self.head.write();
        head.clear();
        load_rows(conn, &mut head)?;
        if head.readings > 0 {
            self.oldest = Some(Instant::now());
        }
        drop(head);
        self.owner = true;
        self.forget();
        Ok(())
    }

    /// Series whose ids and newest times are cached.
    pub(crate) fn cached_series(&self) -> usize {
        self.state.len()
    }

    /// Drops what is cached about series (re-read from the database when next needed).
    pub(crate) fn forget(&mut self) {
        self.ids.clear();
        self.state.clear();
    }

    /// Starts a batch inside `tx`.
    pub(crate) fn begin(&mut self, tx: &Transaction<'_>) -> Result<()> {
        self.pending.clear();
        let version: i64 = tx
            .prepare_cached("SELECT version FROM hot_state")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(IngestError::sql("read the hot tier's version"))?;
        if !self.owner {
            // Another writer may own a head and flush it at any time.
            self.forget();
            self.foreign.clear();
            load_rows(tx, &mut self.foreign)?;
        } else if self.version.is_some_and(|v| v != version) {
            self.forget();
        }
        self.version = Some(version);
        Ok(())
    }

    /// The id of series (device, metric), created if new.
    pub(crate) fn series(
        &mut self,
        tx: &Transaction<'_>,
        device: &str,
        metric: &str,
    ) -> Result<u32> {
        if let Some(v) = self.ids.get(device)
            && let Some((_, id)) = v.iter().find(|(m, _)| &**m == metric)
        {
            return Ok(*id);
        }
        let found: Option<(i64, Option<i64>)> = tx
            .prepare_cached("SELECT id, last_ns FROM series WHERE device = ?1 AND metric = ?2")
            .and_then(|mut s| {
                s.query_row(params![device, metric], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(IngestError::sql("find series"))?;
        let (id, chunk_max) = match found {
            Some((id, last)) => (id, last.unwrap_or(i64::MIN)),
            None => {
                tx.prepare_cached("INSERT INTO series(device, metric) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![device, metric]))
                    .map_err(IngestError::sql("create series"))?;
                (tx.last_insert_rowid(), i64::MIN)
            }
        };
        let id = u32::try_from(id)
            .map_err(|_| IngestError::Config(format!("series id {id} out of range")))?;
        let newest = |h: &HeadData| h.of(id).iter().map(|(t, _)| *t).max();
        let max = chunk_max
            .max(newest(&self.head.read()).unwrap_or(i64::MIN))
            .max(newest(&self.foreign).unwrap_or(i64::MIN));
        self.state.insert(id, SeriesState { chunk_max, max });
        self.ids
            .entry(device.into())
            .or_default()
            .push((metric.into(), id));
        Ok(id)
    }

    /// Adds a reading of series `id` unless the hot tier holds one at the same time;
    /// `false` for such a duplicate.
    pub(crate) fn insert(
        &mut self,
        tx: &Transaction<'_>,
        id: u32,
        ts: i64,
        value: f64,
    ) -> Result<bool> {
        let Some(st) = self.state.get_mut(&id) else {
            return Err(IngestError::Config(format!(
                "series {id} used before lookup"
            )));
        };
        if ts <= st.max {
            let chunk_max = st.chunk_max;
            let holds = |h: &HeadData| h.of(id).iter().rev().any(|(t, _)| *t == ts);
            let dup = self.pending.iter().any(|(i, t, _)| *i == id && *t == ts)
                || holds(&self.head.read())
                || holds(&self.foreign)
                || (ts <= chunk_max && chunk_holds(tx, id, ts)?);
            if dup {
                return Ok(false);
            }
        } else {
            st.max = ts;
        }
        self.pending.push((id, ts, value));
        Ok(true)
    }

    /// Ends a batch inside `tx`: the owner records its new readings as a `hot_head` row,
    /// another writer writes them into chunks.
    pub(crate) fn finish(&mut self, tx: &Transaction<'_>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.owner {
            let r = &mut self.record;
            r.clear();
            r.reserve(self.pending.len() * HEAD_RECORD);
            for (id, ts, v) in &self.pending {
                r.extend_from_slice(&id.to_le_bytes());
                r.extend_from_slice(&ts.to_le_bytes());
                r.extend_from_slice(&v.to_le_bytes());
            }
            tx.prepare_cached("INSERT INTO hot_head(data) VALUES (?1)")
                .and_then(|mut s| s.execute([&*r]))
                .map_err(IngestError::sql("write the hot tier's head"))?;
        } else {
            let mut head = HeadData::default();
            for (id, ts, v) in &self.pending {
                head.push(*id, *ts, *v);
            }
            write_chunks(tx, &head, &mut self.scratch)?;
            tx.execute("UPDATE hot_state SET version = version + 1", [])
                .map_err(IngestError::sql("bump the hot tier's version"))?;
        }
        Ok(())
    }

    /// The batch's transaction committed: its readings join the head (owner).
    pub(crate) fn committed(&mut self) {
        if self.owner {
            if !self.pending.is_empty() {
                let late_before = crate::message::now_ns().saturating_sub(LATE_NS);
                let mut head = self.head.write();
                let mut late = false;
                for (id, ts, v) in &self.pending {
                    head.push(*id, *ts, *v);
                    late |= *ts < late_before;
                }
                head.late_writes += u64::from(late);
                drop(head);
                self.oldest.get_or_insert_with(Instant::now);
            }
        } else {
            // Written through into chunks; another writer may flush at any time.
            self.forget();
        }
        self.pending.clear();
    }

    /// The batch's transaction rolled back: its readings are dropped.
    pub(crate) fn rolled_back(&mut self) {
        self.pending.clear();
        // Series created by the batch are gone, and the newest times may be too high.
        self.forget();
    }

    /// Whether the head is due for a flush.
    pub(crate) fn flush_due(&self) -> bool {
        self.owner
            && (self.head.read().readings >= self.opts.head_max_readings
                || self
                    .oldest
                    .is_some_and(|t| t.elapsed() >= self.opts.flush_interval))
    }

    /// Writes the owner's head into chunks and deletes its rows, in one transaction.
    pub(crate) fn flush(&mut self, conn: &mut Connection) -> Result<FlushOutcome> {
        if self.head.read().readings == 0 {
            self.oldest = None;
            return Ok(FlushOutcome::default());
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(IngestError::sql("begin flush"))?;
        let out = write_chunks(&tx, &self.head.read(), &mut self.scratch)?;
        tx.execute("DELETE FROM hot_head", [])
            .map_err(IngestError::sql("delete flushed head rows"))?;
        tx.commit().map_err(IngestError::sql("commit flush"))?;
        let mut head = self.head.write();
        for (id, v) in head.iter() {
            if let (Some(st), Some(max)) =
                (self.state.get_mut(&id), v.iter().map(|(t, _)| *t).max())
            {
                st.chunk_max = st.chunk_max.max(max);
            }
        }
        head.clear();
        self.oldest = None;
        Ok(out)
    }
}

/// Writes every series of `head` into chunks inside `tx`, extending each series' last
/// chunk while it is small and ends before the new readings.
fn write_chunks(
    tx: &Transaction<'_>,
    head: &HeadData,
    scratch: &mut Scratch,
) -> Result<FlushOutcome> {
    let (sorted, buf) = scratch;
    let mut out = FlushOutcome::default();
    let mut ids: Vec<u32> = head.series.keys().copied().collect();
    ids.sort_unstable();
    let mut last_chunk = tx
        .prepare_cached(
            "SELECT start_ns, end_ns, count, data FROM chunks WHERE series = ?1 \
             ORDER BY start_ns DESC LIMIT 1",
        )
        .map_err(IngestError::sql("prepare flush"))?;
    let mut delete = tx
        .prepare_cached("DELETE FROM chunks WHERE series = ?1 AND start_ns = ?2")
        .map_err(IngestError::sql("prepare flush"))?;
    for id in ids {
        let samples = head.of(id);
        if samples.is_empty() {
            continue;
        }
        sorted.clear();
        sorted.extend_from_slice(samples);
        sorted.sort_unstable_by_key(|(t, _)| *t);
        let (first, last) = (sorted[0].0, sorted[sorted.len() - 1].0);
        // Extend the series' last chunk while it is small and ends before these.
        let tail: Option<(i64, i64, i64, Vec<u8>)> = last_chunk
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()
            .map_err(IngestError::sql("read a series' last chunk"))?;
        if let Some((start, end, count, data)) = tail
            && end < first
            && last.saturating_sub(start) <= CHUNK_SPAN_NS
            && count as usize + sorted.len() <= CHUNK_MAX_READINGS
        {
            let mut old = Vec::with_capacity(count as usize + sorted.len());
            chunk::decode(&data, &mut old)?;
            old.extend_from_slice(sorted);
            *sorted = old;
            delete
                .execute(params![id, start])
                .map_err(IngestError::sql("replace a chunk"))?;
        }
        out.series += 1;
        out.readings += samples.len();
        let mut i = 0;
        while i < sorted.len() {
            let start = sorted[i].0;
            let mut j = i + 1;
            while j < sorted.len()
                && j - i < CHUNK_MAX_READINGS
                && sorted[j].0.saturating_sub(start) <= CHUNK_SPAN_NS
            {
                j += 1;
            }
            insert_chunk(tx, id, &sorted[i..j], buf)?;
            out.chunks += 1;
            i = j;
        }
        let (newest_ts, newest_v) = sorted[sorted.len() - 1];
        tx.prepare_cached(
            "UPDATE series SET first_ns = min(coalesce(first_ns, ?2), ?2),
                last_value = CASE WHEN last_ns IS NULL OR ?3 > last_ns THEN ?4 ELSE last_value END,
                last_ns = max(coalesce(last_ns, ?3), ?3)
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id, sorted[0].0, newest_ts, newest_v]))
        .map_err(IngestError::sql("update a series' span"))?;
    }
    Ok(out)
}

/// Encodes `readings` (ascending, not empty) into the reused `buf` and writes them as one
/// chunk of series `id`.
fn insert_chunk(
    tx: &Transaction<'_>,
    id: u32,
    readings: &[(i64, f64)],
    buf: &mut Vec<u8>,
) -> Result<()> {
    buf.clear();
    chunk::encode(readings, buf)?;
    let (first, last) = (readings[0].0, readings[readings.len() - 1].0);
    tx.prepare_cached(
        "INSERT INTO chunks(series, start_ns, end_ns, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![id, first, last, readings.len() as i64, &buf[..]]))
    .map_err(IngestError::sql("write a chunk"))?;
    Ok(())
}

/// Whether a chunk of series `id` holds a reading at `ts`.
fn chunk_holds(conn: &Connection, id: u32, ts: i64) -> Result<bool> {
    let mut s = conn
        .prepare_cached(
            "SELECT data FROM chunks WHERE series = ?1 AND start_ns <= ?2 AND start_ns >= ?3 \
             AND end_ns >= ?2",
        )
        .map_err(IngestError::sql("look up a reading"))?;
    let mut rows = s
        .query(params![id, ts, ts.saturating_sub(CHUNK_SPAN_NS)])
        .map_err(IngestError::sql("look up a reading"))?;
    let mut readings = Vec::new();
    while let Some(r) = rows.next().map_err(IngestError::sql("look up a reading"))? {
        readings.clear();
        chunk::decode(blob_at(r, 0, "look up a reading")?, &mut readings)?;
        if readings.binary_search_by_key(&ts, |(t, _)| *t).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What retention removed from the hot tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Trimmed {
    pub readings: u64,
    pub series: u64,
}

/// Deletes readings older than `cutoff_ns` (whole chunks, and the older part of chunks
/// that straddle it) and forgets series left with no readings, except those the head
/// (`head_ids`) still holds.
pub(crate) fn delete_before(
    tx: &Transaction<'_>,
    cutoff_ns: i64,
    head_ids: &[u32],
) -> Result<Trimmed> {
    let mut out = Trimmed::default();
    let whole: i64 = tx
        .query_row(
            "SELECT coalesce(sum(count), 0) FROM chunks WHERE end_ns < ?1",
            [cutoff_ns],
            |r| r.get(0),
        )
        .map_err(IngestError::sql("count old readings"))?;
    tx.execute("DELETE FROM chunks WHERE end_ns < ?1", [cutoff_ns])
        .map_err(IngestError::sql("delete old chunks"))?;
    out.readings = whole.max(0) as u64;
    // Chunks that straddle the cutoff keep their newer part.
    let straddling: Vec<(u32, i64, Vec<u8>)> = tx
        .prepare(
            "SELECT series, start_ns, data FROM chunks \
             WHERE end_ns >= ?1 AND end_ns <= ?2 AND start_ns < ?1",
        )
        .and_then(|mut s| {
            s.query_map(
                params![cutoff_ns, cutoff_ns.saturating_add(CHUNK_SPAN_NS)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .collect()
        })
        .map_err(IngestError::sql("find chunks across the cutoff"))?;
    let (mut pairs, mut buf) = (Vec::new(), Vec::new());
    for (id, start, data) in straddling {
        pairs.clear();
        chunk::decode(&data, &mut pairs)?;
        let before = pairs.len();
        pairs.retain(|(t, _)| *t >= cutoff_ns);
        out.readings += (before - pairs.len()) as u64;
        tx.execute(
            "DELETE FROM chunks WHERE series = ?1 AND start_ns = ?2",
            params![id, start],
        )
        .map_err(IngestError::sql("rewrite a chunk"))?;
        if pairs.is_empty() {
            continue;
        }
        insert_chunk(tx, id, &pairs, &mut buf)?;
    }
    tx.execute(
        "UPDATE series SET first_ns = ?1 WHERE first_ns < ?1",
        [cutoff_ns],
    )
    .map_err(IngestError::sql("trim series spans"))?;
    tx.execute(
        "UPDATE series SET first_ns = NULL, last_ns = NULL, last_value = NULL \
         WHERE last_ns < ?1",
        [cutoff_ns],
    )
    .map_err(IngestError::sql("trim series spans"))?;
    let mut candidates: Vec<u32> = tx
        .prepare("SELECT id FROM series WHERE last_ns IS NULL")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(IngestError::sql("find empty series"))?;
    candidates.retain(|id| !head_ids.contains(id));
    let mut del = tx
        .prepare("DELETE FROM series WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM chunks WHERE series = ?1)")
        .map_err(IngestError::sql("delete empty series"))?;
    for id in candidates {
        out.series += del
            .execute([id])
            .map_err(IngestError::sql("delete empty series"))? as u64;
    }
    Ok(out)
}

impl HotWriter {
    /// Series ids with readings in the head, this writer's or (for a write-through
    /// writer) the stored one.
    pub(crate) fn head_ids(&self, conn: &Connection) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.head.read().series.keys().copied().collect();
        if !self.owner {
            let mut other = HeadData::default();
            load_rows(conn, &mut other)?;
            ids.extend(other.series.keys());
        }
        Ok(ids)
    }
}

/// Moves the readings of schema 2 (one row per reading in `readings`, the text-keyed
/// `series` renamed `series_v2` by the migration) into chunks, then drops those tables.
pub(crate) fn migrate_rows(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "INSERT INTO series(device, metric) SELECT device, metric FROM series_v2
             ORDER BY device, metric;
         INSERT OR IGNORE INTO series(device, metric)
             SELECT DISTINCT device, metric FROM readings;",
    )
    .map_err(IngestError::sql("migrate series"))?;
    let series: Vec<(u32, String, String)> = tx
        .prepare("SELECT id, device, metric FROM series")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(IngestError::sql("migrate series"))?;
    let mut scratch = Scratch::default();
    let mut head = HeadData::default();
    let mut read = tx
        .prepare(
            "SELECT ts_ns, value FROM readings WHERE device = ?1 AND metric = ?2 ORDER BY ts_ns",
        )
        .map_err(IngestError::sql("migrate readings"))?;
    for (id, device, metric) in series {
        {
            head.clear();
            let rows = read
                .query_map(params![device, metric], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(IngestError::sql("migrate readings"))?;
            for row in rows {
                let (t, v): (i64, f64) = row.map_err(IngestError::sql("migrate readings"))?;
                head.push(id, t, v);
            }
        }
        write_chunks(tx, &head, &mut scratch)?;
    }
    drop(read);
    tx.execute_batch("DROP TABLE readings; DROP TABLE series_v2;")
        .map_err(IngestError::sql("drop the old hot tier"))?;
    Ok(())
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Readings written.
    pub written: usize,
    /// Readings the hot tier already held (same series and time), skipped.
    pub duplicates: usize,
}

/// Writes readings `(device, metric, time ns, value)` straight into chunks inside `tx`,
/// skipping those the hot tier already holds: for loading a hot tier outside the message
/// log (test fixtures, benchmarks, backfills). A running gateway sees them as it sees any
/// other writer's (see the module docs).
pub fn import<'a>(
    tx: &Transaction<'_>,
    readings: impl IntoIterator<Item = (&'a str, &'a str, i64, f64)>,
) -> Result<Imported> {
    let mut w = HotWriter::new(HotOptions::default());
    w.begin(tx)?;
    let mut out = Imported::default();
    for (device, metric, ts, value) in readings {
        let id = w.series(tx, device, metric)?;
        if w.insert(tx, id, ts, value)? {
            out.written += 1;
        } else {
            out.duplicates += 1;
        }
    }
    w.finish(tx)?;
    Ok(out)
}
