//! The hot tier's writing side: the `readings` and `series` tables, owned here (their read
//! side is [`crate::query`]). The applier inserts a batch's readings through an
//! [`Inserter`] inside its transaction and extends the recorded span of the series the
//! batch touched; retention deletes whole time buckets and forgets series past retention.
//! Table layout and why it leads with the time bucket: [`crate::store`].

use std::collections::HashMap;

use rusqlite::{CachedStatement, Connection, OptionalExtension, Transaction, params};

use crate::decode::Reading;
use crate::error::{IngestError, Result};
use crate::store::{BUCKET_NS, bucket};

/// Inserts readings, idempotently on (device, metric, time). Bindings persist across
/// executions: the device is bound once per message, each reading binds its own values.
pub(crate) struct Inserter<'tx> {
    stmt: CachedStatement<'tx>,
}

impl<'tx> Inserter<'tx> {
    /// The prepared insert of `tx`.
    pub(crate) fn new(tx: &'tx Transaction<'_>) -> Result<Self> {
        let stmt = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO readings(bucket, device, metric, ts_ns, value) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(IngestError::sql("prepare reading insert"))?;
        Ok(Self { stmt })
    }

    /// The device of the readings inserted next.
    pub(crate) fn device(&mut self, device: &str) -> Result<()> {
        self.stmt
            .raw_bind_parameter(2, device)
            .map_err(IngestError::sql("bind reading device"))
    }

    /// Inserts one reading of the current device; `false` when it was already stored.
    pub(crate) fn insert(&mut self, r: &Reading) -> Result<bool> {
        let s = &mut self.stmt;
        s.raw_bind_parameter(1, bucket(r.ts_ns))
            .and_then(|()| s.raw_bind_parameter(3, r.metric.name()))
            .and_then(|()| s.raw_bind_parameter(4, r.ts_ns))
            .and_then(|()| s.raw_bind_parameter(5, r.value))
            .and_then(|()| s.raw_execute())
            .map(|n| n > 0)
            .map_err(IngestError::sql("insert reading"))
    }
}

/// Widens the recorded span of each (device, metric) series to cover `spans` (first and
/// last ns of the batch's new readings).
pub(crate) fn extend_series(
    tx: &Transaction<'_>,
    spans: &HashMap<(String, String), (i64, i64)>,
) -> Result<()> {
    if spans.is_empty() {
        return Ok(());
    }
    let mut s = tx
        .prepare_cached(
            "INSERT INTO series(device, metric, first_ns, last_ns) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(device, metric) DO UPDATE SET
                first_ns = min(first_ns, excluded.first_ns),
                last_ns = max(last_ns, excluded.last_ns)",
        )
        .map_err(IngestError::sql("prepare series upsert"))?;
    for ((d, m), (first, last)) in spans {
        s.execute(params![d, m, first, last])
            .map_err(IngestError::sql("upsert series"))?;
    }
    Ok(())
}

/// Buckets deleted per transaction by retention (10 minutes of readings), so that the
/// applier never waits long for the write lock.
pub const BUCKETS_PER_TX: i64 = 600_000_000_000 / BUCKET_NS;

/// Deletes readings older than `cutoff_ns`, a few buckets per transaction; returns how many.
pub(crate) fn delete_readings_before(conn: &Connection, cutoff_ns: i64) -> Result<u64> {
    let cut_bucket = bucket(cutoff_ns);
    let mut deleted = 0u64;
    let oldest: Option<i64> = conn
        .query_row("SELECT MIN(bucket) FROM readings", [], |r| r.get(0))
        .optional()
        .map_err(IngestError::sql("find oldest bucket"))?
        .flatten();
    let Some(mut b) = oldest else {
        return Ok(0);
    };
    // Whole buckets before the cutoff's, a few at a time.
    while b < cut_bucket {
        let end = b.saturating_add(BUCKETS_PER_TX).min(cut_bucket);
        deleted += conn
            .execute(
                "DELETE FROM readings WHERE bucket >= ?1 AND bucket < ?2",
                params![b, end],
            )
            .map_err(IngestError::sql("delete old readings"))? as u64;
        b = end;
    }
    // Then the part of the cutoff's bucket before it.
    deleted += conn
        .execute(
            "DELETE FROM readings WHERE bucket = ?1 AND ts_ns < ?2",
            params![cut_bucket, cutoff_ns],
        )
        .map_err(IngestError::sql("delete old readings"))? as u64;
    Ok(deleted)
}

/// Forgets series whose newest reading is older than `cutoff_ns` and trims the others'
/// spans to it; returns how many were forgotten.
pub(crate) fn trim_series(tx: &Transaction<'_>, cutoff_ns: i64) -> Result<u64> {
    let deleted = tx
        .execute("DELETE FROM series WHERE last_ns < ?1", [cutoff_ns])
        .map_err(IngestError::sql("delete old series"))? as u64;
    tx.execute(
        "UPDATE series SET first_ns = ?1 WHERE first_ns < ?1",
        [cutoff_ns],
    )
    .map_err(IngestError::sql("trim series spans"))?;
    Ok(deleted)
}
