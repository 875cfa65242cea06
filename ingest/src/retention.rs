//! Retention: deletes hot-tier readings older than `hot_retention_s` and dead letters
//! older than `deadletter_retention_s`. The gateway calls it periodically (e.g. hourly).
//!
//! Readings are deleted per series through the primary key (device, metric, ts_ns), so no
//! extra index on time is needed; each series is its own short transaction, so the
//! pipeline is never blocked for long.

use rusqlite::{Connection, params};

use crate::config::IngestConfig;
use crate::error::{IngestError, Result};

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
    let readings_cutoff = now_ns.saturating_sub(ns(cfg.hot_retention_s));
    let letters_cutoff = now_ns.saturating_sub(ns(cfg.deadletter_retention_s));
    let mut out = RetentionOutcome::default();
    let series: Vec<(String, String)> = conn
        .prepare("SELECT device, metric FROM series")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(IngestError::sql("list series"))?;
    for (device, metric) in series {
        let tx = conn
            .transaction()
            .map_err(IngestError::sql("begin retention"))?;
        let n = tx
            .prepare_cached("DELETE FROM readings WHERE device = ?1 AND metric = ?2 AND ts_ns < ?3")
            .and_then(|mut s| s.execute(params![device, metric, readings_cutoff]))
            .map_err(IngestError::sql("delete old readings"))?;
        out.readings_deleted += n as u64;
        let left: bool = tx
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM readings WHERE device = ?1 AND metric = ?2)",
            )
            .and_then(|mut s| s.query_row(params![device, metric], |r| r.get(0)))
            .map_err(IngestError::sql("check series"))?;
        if !left {
            tx.execute(
                "DELETE FROM series WHERE device = ?1 AND metric = ?2",
                params![device, metric],
            )
            .map_err(IngestError::sql("delete series"))?;
            out.series_deleted += 1;
        }
        tx.commit().map_err(IngestError::sql("commit retention"))?;
    }
    out.dead_letters_deleted =
        conn.execute(
            "DELETE FROM dead_letters WHERE received_ns < ?1",
            [letters_cutoff],
        )
        .map_err(IngestError::sql("delete old dead letters"))? as u64;
    Ok(out)
}
