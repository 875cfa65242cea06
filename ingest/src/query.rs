//! The read side of the state database, for `/health`, the CLI and the HTTP API: outbox
//! depth, device states, series and their points. [`Reader`] opens its own connection
//! (WAL lets it read while the pipeline writes).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::config::Synchronous;
use crate::error::{IngestError, Result};

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

/// Every (device, metric) series in the hot tier.
pub fn series_list(conn: &Connection) -> Result<Vec<(String, String)>> {
    conn.prepare_cached("SELECT device, metric FROM series ORDER BY device, metric")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(IngestError::sql("list series"))
}

/// Points of one series in `[from_ns, to_ns)`, oldest first, at most `limit`. The range
/// is clamped to the buckets of the series' recorded span, then read one 10-second bucket
/// at a time through the primary key.
///
/// `series.first_ns`/`last_ns` are precise to the bucket only: the pipeline rewrites a
/// series row when a reading falls outside the buckets it spans, not for every reading
/// (that would be one more write per reading). The series has no readings outside
/// `[bucket start of first_ns, bucket end of last_ns)`, and its newest reading is the
/// latest one in the bucket of `last_ns` (see [`latest`]).
pub fn series(
    conn: &Connection,
    device: &str,
    metric: &str,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
) -> Result<Vec<Point>> {
    let span: Option<(i64, i64)> = conn
        .prepare_cached("SELECT first_ns, last_ns FROM series WHERE device = ?1 AND metric = ?2")
        .and_then(|mut s| {
            s.query_row(params![device, metric], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(IngestError::sql("read series span"))?;
    let Some((first, last)) = span else {
        return Ok(Vec::new());
    };
    let (lo, hi) = bucket_bounds(first, last);
    let (from, to) = (from_ns.max(lo), to_ns.min(hi));
    let mut out = Vec::new();
    if from >= to {
        return Ok(out);
    }
    let mut s = conn
        .prepare_cached(
            "SELECT ts_ns, value FROM readings
             WHERE bucket = ?1 AND device = ?2 AND metric = ?3 AND ts_ns >= ?4 AND ts_ns < ?5
             ORDER BY ts_ns",
        )
        .map_err(IngestError::sql("read series"))?;
    for b in crate::store::bucket(from)..=crate::store::bucket(to - 1) {
        let mut rows = s
            .query(params![b, device, metric, from, to])
            .map_err(IngestError::sql("read series"))?;
        while let Some(r) = rows.next().map_err(IngestError::sql("read series"))? {
            if out.len() >= limit {
                return Ok(out);
            }
            out.push(Point {
                ts_ns: r.get(0).map_err(IngestError::sql("read series"))?,
                value: r.get(1).map_err(IngestError::sql("read series"))?,
            });
        }
    }
    Ok(out)
}

/// `[start of first's bucket, end of last's bucket)`.
fn bucket_bounds(first_ns: i64, last_ns: i64) -> (i64, i64) {
    use crate::store::{BUCKET_NS, bucket};
    (
        bucket(first_ns).saturating_mul(BUCKET_NS),
        bucket(last_ns).saturating_add(1).saturating_mul(BUCKET_NS),
    )
}

/// The newest point of one series: the latest reading in the bucket of `series.last_ns`.
pub fn latest(conn: &Connection, device: &str, metric: &str) -> Result<Option<Point>> {
    conn.prepare_cached(&format!(
        "SELECT r.ts_ns, r.value FROM series s JOIN readings r
           ON r.bucket = (s.last_ns - ((s.last_ns % {b}) + {b}) % {b}) / {b}
          AND r.device = s.device AND r.metric = s.metric
         WHERE s.device = ?1 AND s.metric = ?2
         ORDER BY r.ts_ns DESC LIMIT 1",
        b = crate::store::BUCKET_NS
    ))
    .and_then(|mut s| {
        s.query_row(params![device, metric], |r| {
            Ok(Point {
                ts_ns: r.get(0)?,
                value: r.get(1)?,
            })
        })
        .optional()
    })
    .map_err(IngestError::sql("read latest point"))
}

/// Number of readings in the hot tier (a full count: for tests and tools, not hot paths).
pub fn reading_count(conn: &Connection) -> Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
        .map_err(IngestError::sql("count readings"))
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

    /// The connection, for the functions of this module.
    pub fn connection(&self) -> &Connection {
        &self.conn
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
