//! The outbox: line protocol committed with the readings it holds, waiting for the store.
//! Every statement on the `outbox` and `outbox_stats` tables lives here: the applier's
//! insert and overflow policy, the size figures, and the forwarder's read and delete.
//!
//! `outbox_stats` is kept by triggers (see [`crate::store`]), so the size check before
//! each insert is O(1).

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::error::{IngestError, Result};

/// Outbox totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxDepth {
    /// Entries (one per committed batch with new readings).
    pub entries: u64,
    /// Bytes of line protocol.
    pub bytes: u64,
    /// Readings.
    pub readings: u64,
}

/// Current totals from `outbox_stats`.
pub fn depth(conn: &Connection) -> Result<OutboxDepth> {
    conn.prepare_cached("SELECT entries, bytes, readings FROM outbox_stats")
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok(OutboxDepth {
                    entries: r.get::<_, i64>(0)?.max(0) as u64,
                    bytes: r.get::<_, i64>(1)?.max(0) as u64,
                    readings: r.get::<_, i64>(2)?.max(0) as u64,
                })
            })
        })
        .map_err(IngestError::sql("read outbox stats"))
}

/// Creation time of the oldest entry, ns (how far behind the store is).
pub fn oldest_created_ns(conn: &Connection) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT created_ns FROM outbox ORDER BY id LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(IngestError::sql("read the oldest outbox entry"))
}

/// Adds one entry of line protocol holding `readings` readings.
pub(crate) fn insert(tx: &Connection, body: &[u8], readings: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO outbox(created_ns, readings, bytes, body) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            crate::message::now_ns(),
            readings,
            body.len() as i64,
            body
        ])
    })
    .map_err(IngestError::sql("insert outbox entry"))?;
    Ok(())
}

/// Adds one entry from a connection other than the applier's (the gateway's derived series,
/// such as the AQI), in its own transaction, unless it would pass `max_bytes`: `Ok(false)`
/// then, and nothing is added (the store is behind; the caller counts the loss).
pub fn append(conn: &mut Connection, body: &[u8], readings: i64, max_bytes: u64) -> Result<bool> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(IngestError::sql("begin outbox append"))?;
    let d = depth(&tx)?;
    if d.entries > 0 && d.bytes + body.len() as u64 > max_bytes {
        return Ok(false);
    }
    insert(&tx, body, readings)?;
    tx.commit()
        .map_err(IngestError::sql("commit outbox append"))?;
    Ok(true)
}

/// Deletes the oldest entries until `free` bytes are released (policy `drop-oldest`);
/// returns the readings they held.
pub(crate) fn drop_oldest(tx: &Transaction<'_>, free: u64) -> Result<u64> {
    let mut freed = 0u64;
    let mut dropped = 0u64;
    let mut next = tx
        .prepare_cached("SELECT id, readings, bytes FROM outbox ORDER BY id LIMIT 1")
        .map_err(IngestError::sql("prepare outbox scan"))?;
    let mut del = tx
        .prepare_cached("DELETE FROM outbox WHERE id = ?1")
        .map_err(IngestError::sql("prepare outbox delete"))?;
    while freed < free {
        let Some((id, readings, bytes)) = next
            .query_row([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()
            .map_err(IngestError::sql("scan outbox"))?
        else {
            break;
        };
        del.execute([id])
            .map_err(IngestError::sql("drop outbox entry"))?;
        freed += bytes.max(0) as u64;
        dropped += readings.max(0) as u64;
    }
    Ok(dropped)
}

/// One entry as the forwarder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// Readings it holds.
    pub readings: u64,
    /// Line protocol.
    pub body: Vec<u8>,
    /// When its transaction committed, ns since the epoch.
    pub created_ns: i64,
}

/// The oldest entries, up to about `max_bytes` of line protocol (at least one).
pub fn oldest(conn: &Connection, max_bytes: usize) -> Result<Vec<Entry>> {
    let mut s = conn
        .prepare_cached("SELECT id, readings, body, created_ns FROM outbox ORDER BY id LIMIT 256")
        .map_err(IngestError::sql("read outbox"))?;
    let mut rows = s.query([]).map_err(IngestError::sql("read outbox"))?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = rows.next().map_err(IngestError::sql("read outbox"))? {
        let body: Vec<u8> = r.get(2).map_err(IngestError::sql("read outbox"))?;
        if !out.is_empty() && bytes + body.len() > max_bytes {
            break;
        }
        bytes += body.len();
        let id: i64 = r.get(0).map_err(IngestError::sql("read outbox"))?;
        let n: i64 = r.get(1).map_err(IngestError::sql("read outbox"))?;
        let created_ns: i64 = r.get(3).map_err(IngestError::sql("read outbox"))?;
        out.push(Entry {
            id,
            readings: n.max(0) as u64,
            body,
            created_ns,
        });
    }
    Ok(out)
}

/// Deletes entries the store accepted (inside the caller's transaction).
pub(crate) fn delete(tx: &Transaction<'_>, ids: &[i64]) -> Result<()> {
    let mut del = tx
        .prepare_cached("DELETE FROM outbox WHERE id = ?1")
        .map_err(IngestError::sql("delete outbox entry"))?;
    for id in ids {
        del.execute([id])
            .map_err(IngestError::sql("delete outbox entry"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    #[test]
    fn stats_follow_inserts_drops_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(
            dir.path(),
            Synchronous::Normal,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        insert(&tx, b"a 1\n", 3).unwrap();
        insert(&tx, b"bb 2\n", 2).unwrap();
        insert(&tx, b"ccc 3\n", 1).unwrap();
        tx.commit().unwrap();
        let d = depth(&conn).unwrap();
        assert_eq!((d.entries, d.bytes, d.readings), (3, 15, 6));
        assert!(oldest_created_ns(&conn).unwrap().is_some());
        let got = oldest(&conn, 6).unwrap();
        assert_eq!(got.len(), 1, "a second entry would pass 6 bytes");
        let tx = conn.transaction().unwrap();
        // Freeing 5 bytes drops the two oldest (4 + 5 bytes, 5 readings).
        assert_eq!(drop_oldest(&tx, 5).unwrap(), 5);
        tx.commit().unwrap();
        let last = oldest(&conn, 1 << 20).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].body, b"ccc 3\n");
        let tx = conn.transaction().unwrap();
        delete(&tx, &[last[0].id]).unwrap();
        tx.commit().unwrap();
        assert_eq!(depth(&conn).unwrap(), OutboxDepth::default());
        assert_eq!(oldest_created_ns(&conn).unwrap(), None);
    }
}
