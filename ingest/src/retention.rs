//! Retention: deletes hot-tier readings older than `hot_retention_s` and dead letters
//! older than `deadletter_retention_s`. The gateway calls it periodically (e.g. every few
//! minutes) through [`crate::Pipeline::enforce_retention`].
//!
//! Readings lead their primary key with the time bucket, so old readings are a key-range
//! delete. It runs in transactions of at most [`BUCKETS_PER_TX`] buckets so the pipeline
//! never waits long for the write lock. Series whose newest reading is past retention are
//! forgotten.

use rusqlite::{Connection, OptionalExtension, params};

use crate::config::IngestConfig;
use crate::error::{IngestError, Result};
use crate::store::{BUCKET_NS, bucket};

/// Buckets deleted per transaction (10 minutes of readings).
pub const BUCKETS_PER_TX: i64 = 600_000_000_000 / BUCKET_NS;

/// What retention deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Readings deleted.
    pub readings_deleted: u64,
    /// Series left empty and forgotten.
    pub series_deleted: u64,
    /// Dead letters deleted.
    pub dead_letters_deleted: u64,
}

/// Applies retention as of `now_ns`.
pub fn enforce(conn: &mut Connection, cfg: &IngestConfig, now_ns: i64) -> Result<RetentionOutcome> {
    let ns = |s: u64| {
        i64::try_from(s)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1_000_000_000)
    };
    let cutoff = now_ns.saturating_sub(ns(cfg.hot_retention_s));
    let letters_cutoff = now_ns.saturating_sub(ns(cfg.deadletter_retention_s));
    let cut_bucket = bucket(cutoff);
    let mut out = RetentionOutcome::default();
    let oldest: Option<i64> = conn
        .query_row("SELECT MIN(bucket) FROM readings", [], |r| r.get(0))
        .optional()
        .map_err(IngestError::sql("find oldest bucket"))?
        .flatten();
    if let Some(mut b) = oldest {
        // Whole buckets before the cutoff's, a few at a time.
        while b < cut_bucket {
            let end = b.saturating_add(BUCKETS_PER_TX).min(cut_bucket);
            out.readings_deleted +=
                conn.execute(
                    "DELETE FROM readings WHERE bucket >= ?1 AND bucket < ?2",
                    params![b, end],
                )
                .map_err(IngestError::sql("delete old readings"))? as u64;
            b = end;
        }
        // Then the part of the cutoff's bucket before it.
        out.readings_deleted +=
            conn.execute(
                "DELETE FROM readings WHERE bucket = ?1 AND ts_ns < ?2",
                params![cut_bucket, cutoff],
            )
            .map_err(IngestError::sql("delete old readings"))? as u64;
    }
    let tx = conn
        .transaction()
        .map_err(IngestError::sql("begin retention"))?;
    out.series_deleted = tx
        .execute("DELETE FROM series WHERE last_ns < ?1", [cutoff])
        .map_err(IngestError::sql("delete old series"))? as u64;
    tx.execute(
        "UPDATE series SET first_ns = ?1 WHERE first_ns < ?1",
        [cutoff],
    )
    .map_err(IngestError::sql("trim series spans"))?;
    out.dead_letters_deleted = crate::deadletter::delete_before(&tx, letters_cutoff)?;
    tx.commit().map_err(IngestError::sql("commit retention"))?;
    Ok(out)
}
