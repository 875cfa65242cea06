//! Retention: deletes hot-tier readings older than `hot_retention_s`, dead letters
//! older than `deadletter_retention_s` (and beyond `deadletter_max_bytes`), and the rows of
//! devices silent for longer than `device_retention_s`. The gateway calls it periodically (e.g. every few
//! minutes) through [`crate::Pipeline::enforce_retention`].
//!
//! Old readings go chunk by chunk: whole chunks through the index on their end time, and
//! the chunks across the cutoff are rewritten without their older part. Series left with
//! no readings are forgotten (unless the head holds some).

use rusqlite::Connection;

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
    /// Rows of silent devices deleted.
    pub devices_deleted: u64,
}

/// Applies retention as of `now_ns`.
pub fn enforce(
    conn: &mut Connection,
    cfg: &IngestConfig,
    now_ns: i64,
    head_ids: &[u32],
) -> Result<RetentionOutcome> {
    let ns = |s: u64| {
        i64::try_from(s)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1_000_000_000)
    };
    let cutoff = now_ns.saturating_sub(ns(cfg.hot_retention_s));
    let letters_cutoff = now_ns.saturating_sub(ns(cfg.deadletter_retention_s));
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(IngestError::sql("begin retention"))?;
    let trimmed = crate::hot::delete_before(&tx, cutoff, head_ids)?;
    let mut out = RetentionOutcome {
        readings_deleted: trimmed.readings,
        series_deleted: trimmed.series,
        ..RetentionOutcome::default()
    };
    out.dead_letters_deleted = crate::deadletter::delete_before(&tx, letters_cutoff)?
        + crate::deadletter::enforce_bound(&tx, cfg.deadletter_max_bytes)?;
    // Silent devices: neither a message nor a status or meta since the cutoff.
    let devices_cutoff = now_ns.saturating_sub(ns(cfg.device_retention_s));
    out.devices_deleted = tx
        .prepare_cached(
            "DELETE FROM devices
             WHERE MAX(last_seen, COALESCE(status_at, 0), COALESCE(meta_at, 0)) < ?1",
        )
        .and_then(|mut s| s.execute([devices_cutoff]))
        .map_err(IngestError::sql("delete silent devices"))? as u64;
    tx.commit().map_err(IngestError::sql("commit retention"))?;
    Ok(out)
}
