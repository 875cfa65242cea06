//! Retention: deletes hot-tier readings older than `hot_retention_s` and dead letters
//! older than `deadletter_retention_s`. The gateway calls it periodically (e.g. every few
//! minutes) through [`crate::Pipeline::enforce_retention`].
//!
//! Readings lead their primary key with the time bucket, so old readings are a key-range
//! delete. It runs in transactions of at most [`BUCKETS_PER_TX`] buckets so the pipeline
//! never waits long for the write lock. Series whose newest reading is past retention are
//! forgotten.

use rusqlite::Connection;

use crate::config::IngestConfig;
use crate::error::{IngestError, Result};

pub use crate::hot::BUCKETS_PER_TX;

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
    let mut out = RetentionOutcome {
        readings_deleted: crate::hot::delete_readings_before(conn, cutoff)?,
        ..RetentionOutcome::default()
    };
    let tx = conn
        .transaction()
        .map_err(IngestError::sql("begin retention"))?;
    out.series_deleted = crate::hot::trim_series(&tx, cutoff)?;
    out.dead_letters_deleted = crate::deadletter::delete_before(&tx, letters_cutoff)?;
    tx.commit().map_err(IngestError::sql("commit retention"))?;
    Ok(out)
}
