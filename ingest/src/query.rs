//! The read side of the state database, for `/health`, the CLI and the HTTP API: outbox
//! depth, device states, series and their points. [`Reader`] opens its own connection
//! (WAL lets it read while the pipeline writes).

use std::path::Path;
use std::time::Duration;

use std::collections::HashMap;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::chunk;
use crate::config::Synchronous;
use crate::error::{IngestError, Result};
use crate::hot::{CHUNK_SPAN_NS, HotHead, blob_at};

pub use crate::outbox::OutboxDepth;

pub use crate::devices::DeviceState;

/// A point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Time, ns since the epoch.
    pub ts_ns: i64,
    /// Value.
    pub value: f64,
}

/// Outbox totals on `conn`.
pub fn outbox_depth(conn: &Connection) -> Result<OutboxDepth> {
    crate::outbox::depth(conn)
}

/// Every device, by id.
pub fn device_states(conn: &Connection) -> Result<Vec<DeviceState>> {
    crate::devices::list(conn)
}

/// A series of the hot tier as its row describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    /// Its id.
    pub id: u32,
    /// Device.
    pub device: String,
    /// Metric.
    pub metric: String,
    /// Oldest time in its chunks (none while all its readings are in the head).
    pub first_ns: Option<i64>,
    /// Newest time in its chunks.
    pub last_ns: Option<i64>,
    /// The value at `last_ns`.
    pub last_value: Option<f64>,
}

fn series_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SeriesRow> {
    Ok(SeriesRow {
        id: r.get(0)?,
        device: r.get(1)?,
        metric: r.get(2)?,
        first_ns: r.get(3)?,
        last_ns: r.get(4)?,
        last_value: r.get(5)?,
    })
}

const SERIES_COLUMNS: &str = "id, device, metric, first_ns, last_ns, last_value";

/// The hot tier as one reader sees it: the database (chunks, series, and every other
/// table through `Deref`) and the head. In the writer's process the head is the writer's
/// own ([`Pipeline::hot_head`](crate::Pipeline::hot_head)); elsewhere it is read from the
/// stored head rows.
///
/// Readers take the head first and the chunks after: a flush between the two shows its
/// readings in both, never in neither, and every answer drops such doubles (a reading is
/// unique by series and time).
#[derive(Debug)]
pub struct HotRead<'c> {
    conn: &'c Connection,
    head: HotHead,
}

impl HotRead<'_> {
    /// The head's count of batches with late readings ([`crate::hot::HeadData::late_writes`]):
    /// caches of past hours are stale once it changes.
    pub fn late_writes(&self) -> u64 {
        self.head.read().late_writes()
    }
}

impl std::ops::Deref for HotRead<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// Sorts by time and drops readings at a time already seen.
fn sort_dedup(v: &mut Vec<(i64, f64)>) {
    v.sort_by_key(|(t, _)| *t);
    v.dedup_by_key(|(t, _)| *t);
}

impl<'c> HotRead<'c> {
    /// A view on `conn` with the writer's shared `head`, or (`None`) the stored one.
    pub fn new(conn: &'c Connection, head: Option<&HotHead>) -> Result<Self> {
        let head = match head {
            Some(h) => h.clone(),
            None => HotHead::load(conn)?,
        };
        Ok(Self { conn, head })
    }

    /// The connection.
    pub fn connection(&self) -> &'c Connection {
        self.conn
    }

    /// Every series, by device and metric.
    pub fn series_rows(&self) -> Result<Vec<SeriesRow>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SERIES_COLUMNS} FROM series ORDER BY device, metric"
            ))
            .and_then(|mut s| s.query_map([], series_row)?.collect())
            .map_err(IngestError::sql("list series"))
    }

    /// The series (device, metric), if it exists.
    pub fn find(&self, device: &str, metric: &str) -> Result<Option<SeriesRow>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SERIES_COLUMNS} FROM series WHERE device = ?1 AND metric = ?2"
            ))
            .and_then(|mut s| s.query_row(params![device, metric], series_row).optional())
            .map_err(IngestError::sql("find series"))
    }

    /// The span `[oldest, newest]` of a series' readings, head included.
    pub fn span(&self, row: &SeriesRow) -> Option<(i64, i64)> {
        let head = self.head.read();
        let h = head.of(row.id);
        let lo = h.iter().map(|(t, _)| *t).min();
        let hi = h.iter().map(|(t, _)| *t).max();
        let lo = match (lo, row.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let hi = match (hi, row.last_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        lo.zip(hi)
    }

    /// The readings of series `id` in `[from_ns, to_ns)`, oldest first.
    pub fn points(&self, id: u32, from_ns: i64, to_ns: i64) -> Result<Vec<(i64, f64)>> {
        let mut out: Vec<(i64, f64)> = self
            .head
            .read()
            .of(id)
            .iter()
            .filter(|(t, _)| *t >= from_ns && *t < to_ns)
            .copied()
            .collect();
        if from_ns >= to_ns {
            return Ok(out);
        }
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT data FROM chunks WHERE series = ?1 AND start_ns > ?2 AND start_ns < ?3 \
                 AND end_ns >= ?4 ORDER BY start_ns",
            )
            .map_err(IngestError::sql("read chunks"))?;
        let mut rows = s
            .query(params![
                id,
                from_ns.saturating_sub(CHUNK_SPAN_NS + 1),
                to_ns,
                from_ns
            ])
            .map_err(IngestError::sql("read chunks"))?;
        let mut buf = Vec::new();
        while let Some(r) = rows.next().map_err(IngestError::sql("read chunks"))? {
            buf.clear();
            chunk::decode(blob_at(r, 0, "read chunks")?, &mut buf)?;
            out.extend(buf.iter().filter(|(t, _)| *t >= from_ns && *t < to_ns));
        }
        sort_dedup(&mut out);
        Ok(out)
    }

    /// The readings in `[from_ns, to_ns)` of every series `keep` accepts, by series id,
    /// oldest first. Reads only chunks that can overlap the range.
    pub fn scan(
        &self,
        from_ns: i64,
        to_ns: i64,
        keep: impl Fn(u32) -> bool,
    ) -> Result<HashMap<u32, Vec<(i64, f64)>>> {
        let mut out: HashMap<u32, Vec<(i64, f64)>> = HashMap::new();
        if from_ns >= to_ns {
            return Ok(out);
        }
        for (id, v) in self.head.read().iter() {
            if keep(id) {
                let inside = v.iter().filter(|(t, _)| *t >= from_ns && *t < to_ns);
                let mut inside = inside.peekable();
                if inside.peek().is_some() {
                    out.entry(id).or_default().extend(inside);
                }
            }
        }
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT series, data FROM chunks WHERE end_ns >= ?1 AND end_ns < ?2 \
                 AND start_ns < ?3",
            )
            .map_err(IngestError::sql("read chunks"))?;
        let mut rows = s
            .query(params![from_ns, to_ns.saturating_add(CHUNK_SPAN_NS), to_ns])
            .map_err(IngestError::sql("read chunks"))?;
        let mut buf = Vec::new();
        while let Some(r) = rows.next().map_err(IngestError::sql("read chunks"))? {
            let id: u32 = r.get(0).map_err(IngestError::sql("read chunks"))?;
            if !keep(id) {
                continue;
            }
            buf.clear();
            chunk::decode(blob_at(r, 1, "read chunks")?, &mut buf)?;
            let inside = buf.iter().filter(|(t, _)| *t >= from_ns && *t < to_ns);
            out.entry(id).or_default().extend(inside);
        }
        out.retain(|_, v| !v.is_empty());
        for v in out.values_mut() {
            sort_dedup(v);
        }
        Ok(out)
    }

    /// The newest reading of a series at or before `at_ns` and not before `oldest_ns`.
    pub fn newest(&self, row: &SeriesRow, at_ns: i64, oldest_ns: i64) -> Result<Option<Point>> {
        let inside = |t: i64| t <= at_ns && t >= oldest_ns;
        let mut best: Option<(i64, f64)> = self
            .head
            .read()
            .of(row.id)
            .iter()
            .filter(|(t, _)| inside(*t))
            .max_by_key(|(t, _)| *t)
            .copied();
        let better = |b: &Option<(i64, f64)>, t: i64| b.is_none_or(|(bt, _)| t > bt);
        match (row.last_ns, row.last_value) {
            // The chunks' newest reading answers when it is not after `at`.
            (Some(t), Some(v)) if t <= at_ns => {
                if t >= oldest_ns && better(&best, t) {
                    best = Some((t, v));
                }
            }
            (Some(_), _) => {
                // Newer readings than `at` exist: search the chunks backwards in time.
                let mut s = self
                    .conn
                    .prepare_cached(
                        "SELECT start_ns, data FROM chunks WHERE series = ?1 AND start_ns <= ?2 \
                         AND end_ns >= ?3 ORDER BY start_ns DESC",
                    )
                    .map_err(IngestError::sql("read chunks"))?;
                let mut rows = s
                    .query(params![row.id, at_ns, oldest_ns])
                    .map_err(IngestError::sql("read chunks"))?;
                let mut buf = Vec::new();
                while let Some(r) = rows.next().map_err(IngestError::sql("read chunks"))? {
                    let start: i64 = r.get(0).map_err(IngestError::sql("read chunks"))?;
                    // No chunk starting earlier can hold anything newer than `best`.
                    if best.is_some_and(|(bt, _)| start.saturating_add(CHUNK_SPAN_NS) < bt) {
                        break;
                    }
                    buf.clear();
                    chunk::decode(blob_at(r, 1, "read chunks")?, &mut buf)?;
                    for &(t, v) in &buf {
                        if inside(t) && better(&best, t) {
                            best = Some((t, v));
                        }
                    }
                }
            }
            (None, _) => {}
        }
        Ok(best.map(|(ts_ns, value)| Point { ts_ns, value }))
    }

    /// Readings in the hot tier of the series `keep` accepts (by device and metric).
    pub fn count(&self, keep: impl Fn(&str, &str) -> bool) -> Result<u64> {
        let rows = self.series_rows()?;
        let mut n = 0u64;
        let head = self.head.read();
        let mut s = self
            .conn
            .prepare_cached("SELECT start_ns, end_ns, count, data FROM chunks WHERE series = ?1")
            .map_err(IngestError::sql("count readings"))?;
        for row in rows.iter().filter(|r| keep(&r.device, &r.metric)) {
            // Times in the head, less any also in a chunk (a flush seen half-way).
            let mut times: Vec<i64> = head.of(row.id).iter().map(|(t, _)| *t).collect();
            times.sort_unstable();
            let mut q = s
                .query([row.id])
                .map_err(IngestError::sql("count readings"))?;
            let mut buf = Vec::new();
            while let Some(r) = q.next().map_err(IngestError::sql("count readings"))? {
                let (start, end, count): (i64, i64, i64) = (
                    r.get(0).map_err(IngestError::sql("count readings"))?,
                    r.get(1).map_err(IngestError::sql("count readings"))?,
                    r.get(2).map_err(IngestError::sql("count readings"))?,
                );
                n += count.max(0) as u64;
                if times.iter().any(|t| *t >= start && *t <= end) {
                    buf.clear();
                    chunk::decode(blob_at(r, 3, "count readings")?, &mut buf)?;
                    times.retain(|t| buf.binary_search_by_key(t, |(x, _)| *x).is_err());
                }
            }
            n += times.len() as u64;
        }
        Ok(n)
    }
}

/// Every (device, metric) series in the hot tier.
pub fn series_list(conn: &Connection) -> Result<Vec<(String, String)>> {
    conn.prepare_cached("SELECT device, metric FROM series ORDER BY device, metric")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(IngestError::sql("list series"))
}

/// Points of one series in `[from_ns, to_ns)`, oldest first, at most `limit`, as stored
/// in `conn` (head rows included).
pub fn series(
    conn: &Connection,
    device: &str,
    metric: &str,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
) -> Result<Vec<Point>> {
    let hot = HotRead::new(conn, None)?;
    let Some(row) = hot.find(device, metric)? else {
        return Ok(Vec::new());
    };
    Ok(hot
        .points(row.id, from_ns, to_ns)?
        .into_iter()
        .take(limit)
        .map(|(ts_ns, value)| Point { ts_ns, value })
        .collect())
}

/// The newest point of one series.
pub fn latest(conn: &Connection, device: &str, metric: &str) -> Result<Option<Point>> {
    let hot = HotRead::new(conn, None)?;
    let Some(row) = hot.find(device, metric)? else {
        return Ok(None);
    };
    hot.newest(&row, i64::MAX, i64::MIN)
}

/// Number of readings in the hot tier (a full count: for tests and tools, not hot paths).
pub fn reading_count(conn: &Connection) -> Result<u64> {
    HotRead::new(conn, None)?.count(|_, _| true)
}

/// A read-side connection of its own.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
}

impl Reader {
    /// Opens the state database in `data_dir` for reading (created if missing).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let conn = crate::store::open(data_dir, Synchronous::Normal, Duration::from_secs(5))?;
        conn.pragma_update(None, "query_only", true)
            .map_err(IngestError::sql("set query_only"))?;
        Ok(Self { conn })
    }

    /// Opens the existing state database in `data_dir` read-only: it neither creates nor
    /// migrates anything, so it suits tools looking at a running gateway's data.
    pub fn open_read_only(data_dir: &Path) -> Result<Self> {
        Self::open_file_read_only(&crate::store::db_path(data_dir))
    }

    /// [`Reader::open_read_only`] on the database file itself.
    pub fn open_file_read_only(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(IngestError::sql("open database read-only"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(IngestError::sql("set busy timeout"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(IngestError::sql("read schema version"))?;
        if version != crate::store::SCHEMA_VERSION {
            return Err(IngestError::Config(format!(
                "{} has schema version {version}, this build reads {}: start the gateway on it \
                 once to migrate it",
                path.display(),
                crate::store::SCHEMA_VERSION
            )));
        }
        Ok(Self { conn })
    }

    /// The connection, for the functions of this module.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The hot tier, with the head as stored.
    pub fn hot(&self) -> Result<HotRead<'_>> {
        HotRead::new(&self.conn, None)
    }

    /// Readings in the hot tier of the series `keep` accepts (by device and metric).
    pub fn reading_count(&self, keep: impl Fn(&str, &str) -> bool) -> Result<u64> {
        self.hot()?.count(keep)
    }

    /// See [`outbox_depth`].
    pub fn outbox_depth(&self) -> Result<OutboxDepth> {
        outbox_depth(&self.conn)
    }

    /// See [`device_states`].
    pub fn device_states(&self) -> Result<Vec<DeviceState>> {
        device_states(&self.conn)
    }

    /// See [`series_list`].
    pub fn series_list(&self) -> Result<Vec<(String, String)>> {
        series_list(&self.conn)
    }

    /// See [`latest`].
    pub fn latest(&self, device: &str, metric: &str) -> Result<Option<Point>> {
        latest(&self.conn, device, metric)
    }

    /// See [`series`].
    pub fn series(
        &self,
        device: &str,
        metric: &str,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
    ) -> Result<Vec<Point>> {
        series(&self.conn, device, metric, from_ns, to_ns, limit)
    }
}
