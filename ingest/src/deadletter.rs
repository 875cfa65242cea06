//! Dead letters: what was refused, with its topic, payload, reason and time, for
//! `gateway deadletters list|show|replay`.
//!
//! Reading goes through [`DeadLetters`], which opens its own connection so the CLI can run
//! beside a live gateway. Replaying should go through
//! [`crate::Pipeline::replay_dead_letters`], which re-processes and deletes in one
//! transaction (nothing is lost if it crashes half-way).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::config::Synchronous;
use crate::error::{IngestError, Result};
use crate::message::Inbound;

/// Topic recorded on dead letters of lines the store rejected (they came from the outbox,
/// not from MQTT).
pub const STORE_TOPIC: &str = "$store";

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Row id.
    pub id: i64,
    /// MQTT topic (or [`STORE_TOPIC`]).
    pub topic: String,
    /// The payload (the first bytes only for `payload-too-large`; see `payload_bytes`).
    pub payload: Vec<u8>,
    /// Stable kebab-case reason ([`crate::Reason`]).
    pub reason: String,
    /// Details for humans (one line per refused reading).
    pub detail: String,
    /// When the message was received, ns since the epoch.
    pub received_at_ns: i64,
    /// Size of the original payload.
    pub payload_bytes: i64,
}

impl DeadLetter {
    /// The reason as the enum, for comparisons (`None`: a reason this build does not know,
    /// written by another version).
    pub fn reason_kind(&self) -> Option<crate::Reason> {
        crate::Reason::parse(&self.reason)
    }

    /// The message again, with its original time of receipt.
    pub fn to_inbound(&self) -> Inbound {
        Inbound {
            topic: self.topic.clone(),
            payload: bytes::Bytes::from(self.payload.clone()),
            received_at_ns: self.received_at_ns,
            retained: false,
        }
    }
}

/// A dead letter to write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewDeadLetter<'a> {
    pub received_ns: i64,
    pub topic: &'a str,
    /// What is kept of the payload.
    pub payload: &'a [u8],
    pub reason: crate::validate::Reason,
    pub detail: &'a str,
    /// Size of the whole original payload.
    pub payload_bytes: usize,
}

/// Writes a dead letter (inside the caller's transaction).
/// Dead letters kept and their bytes (payload, detail and topic).
pub fn totals(conn: &Connection) -> Result<(u64, u64)> {
    conn.prepare_cached("SELECT letters, bytes FROM dead_letter_stats")
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            })
        })
        .map_err(IngestError::sql("read dead letter stats"))
}

/// Deletes the oldest dead letters until they hold at most `max_bytes`; returns how many
/// went. Each is counted in [`crate::metrics::DEADLETTERS_DROPPED`].
pub(crate) fn enforce_bound(conn: &Connection, max_bytes: u64) -> Result<u64> {
    let mut dropped = 0u64;
    loop {
        let (letters, bytes) = totals(conn)?;
        if bytes <= max_bytes || letters == 0 {
            break;
        }
        let n = conn
            .prepare_cached(
                "DELETE FROM dead_letters WHERE id IN
                    (SELECT id FROM dead_letters ORDER BY id LIMIT 64)",
            )
            .and_then(|mut s| s.execute([]))
            .map_err(IngestError::sql("drop the oldest dead letters"))?;
        dropped += n as u64;
        if n == 0 {
            break;
        }
    }
    if dropped > 0 {
        ::metrics::counter!(crate::metrics::DEADLETTERS_DROPPED).increment(dropped);
        tracing::warn!(
            dropped,
            limit = max_bytes,
            "dead letters over their byte bound: the oldest were dropped (ingest.deadletter_max_bytes)"
        );
    }
    Ok(dropped)
}

pub(crate) fn insert(conn: &Connection, d: &NewDeadLetter<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO dead_letters(received_ns, topic, payload, reason, detail, payload_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.received_ns,
            d.topic,
            d.payload,
            d.reason.as_str(),
            d.detail,
            d.payload_bytes as i64
        ])
    })
    .map_err(IngestError::sql("insert dead letter"))?;
    Ok(())
}

/// Dead letters per reason, most first.
pub fn count_by_reason(conn: &Connection) -> Result<Vec<(String, u64)>> {
    conn.prepare_cached(
        "SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY n DESC, reason",
    )
    .and_then(|mut s| {
        s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect()
    })
    .map_err(IngestError::sql("count dead letters"))
}

/// Dead letters received in `[from_ns, to_ns)`.
pub fn count_between(conn: &Connection, from_ns: i64, to_ns: i64) -> Result<u64> {
    conn.prepare_cached(
        "SELECT count(*) FROM dead_letters WHERE received_ns >= ?1 AND received_ns < ?2",
    )
    .and_then(|mut s| s.query_row(params![from_ns, to_ns], |r| r.get::<_, i64>(0)))
    .map(|n| n.max(0) as u64)
    .map_err(IngestError::sql("count dead letters"))
}

/// Deletes dead letters received before `cutoff_ns` (retention).
pub(crate) fn delete_before(conn: &Connection, cutoff_ns: i64) -> Result<u64> {
    conn.execute(
        "DELETE FROM dead_letters WHERE received_ns < ?1",
        [cutoff_ns],
    )
    .map(|n| n as u64)
    .map_err(IngestError::sql("delete old dead letters"))
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this reason.
    pub reason: Option<String>,
    /// Only ids greater than this (paging: pass the last id seen).
    pub after_id: Option<i64>,
    /// At most this many (default when 0: 100).
    pub limit: usize,
}

/// Read access to dead letters.
#[derive(Debug)]
pub struct DeadLetters {
    conn: Connection,
}

const COLUMNS: &str = "id, topic, payload, reason, detail, received_ns, payload_bytes";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        topic: r.get(1)?,
        payload: r.get(2)?,
        reason: r.get(3)?,
        detail: r.get(4)?,
        received_at_ns: r.get(5)?,
        payload_bytes: r.get(6)?,
    })
}

impl DeadLetters {
    /// Opens the state database in `data_dir` (created if missing).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let conn = crate::store::open(data_dir, Synchronous::Full, Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    /// Dead letters in id order.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<DeadLetter>> {
        list(&self.conn, filter)
    }

    /// One dead letter.
    pub fn get(&self, id: i64) -> Result<Option<DeadLetter>> {
        get(&self.conn, id)
    }

    /// Counts by reason.
    pub fn counts(&self) -> Result<Vec<(String, u64)>> {
        let mut s = self
            .conn
            .prepare("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason ORDER BY reason")
            .map_err(IngestError::sql("count dead letters"))?;
        let rows = s
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .and_then(Iterator::collect)
            .map_err(IngestError::sql("count dead letters"))?;
        Ok(rows)
    }

    /// Removes dead letters and returns them as messages to process again. Prefer
    /// [`crate::Pipeline::replay_dead_letters`]: with this call, a crash before the returned
    /// messages are committed loses them.
    pub fn take_for_replay(&mut self, ids: &[i64]) -> Result<Vec<Inbound>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(IngestError::sql("begin"))?;
        let letters = load(&tx, ids)?;
        for d in &letters {
            tx.execute("DELETE FROM dead_letters WHERE id = ?1", [d.id])
                .map_err(IngestError::sql("delete dead letter"))?;
        }
        tx.commit().map_err(IngestError::sql("commit"))?;
        Ok(letters.iter().map(DeadLetter::to_inbound).collect())
    }
}

/// Dead letters in id order.
pub fn list(conn: &Connection, filter: &ListFilter) -> Result<Vec<DeadLetter>> {
    let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
    let mut s = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE id > ?1 AND (?2 IS NULL OR reason = ?2) ORDER BY id LIMIT ?3"
        ))
        .map_err(IngestError::sql("list dead letters"))?;
    let rows = s
        .query_map(
            params![filter.after_id.unwrap_or(0), filter.reason, limit],
            row,
        )
        .and_then(Iterator::collect)
        .map_err(IngestError::sql("list dead letters"))?;
    Ok(rows)
}

/// One dead letter.
pub fn get(conn: &Connection, id: i64) -> Result<Option<DeadLetter>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], row).optional())
        .map_err(IngestError::sql("get dead letter"))
}

/// The dead letters with these ids (unknown ids are skipped), in id order.
pub fn load(conn: &Connection, ids: &[i64]) -> Result<Vec<DeadLetter>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(d) = get(conn, *id)? {
            out.push(d);
        }
    }
    out.sort_by_key(|d| d.id);
    out.dedup_by_key(|d| d.id);
    Ok(out)
}
