//! Device state: the `devices` table, owned here. The applier reads a device's row once
//! per batch (or takes it from its cache), updates it in memory with what the batch says
//! (sightings, sequence numbers, status, meta) and writes it back in the batch's
//! transaction; the read side lists every device for the API and the CLI.
//!
//! **Sequence numbers** (SenML `seq`, per device): `seq == last + 1` is in order;
//! `seq > last + 1` adds `seq - last - 1` gaps; `seq <= last` is a device-level repeat
//! (counted in `duplicates`; its readings are ignored by the hot tier's key) when all its
//! readings were already stored, and a reboot (counted in `reboots`, `seq` missed messages
//! of the new run added to `gaps`) when they are new. Broker redeliveries never get here:
//! the message log recognises them ([`crate::log`]).
//!
//! `first_seen`/`last_seen` are 0 for a device known only from retained messages: a
//! retained status or meta is not a sign of life.

use foldhash::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::error::{IngestError, Result};
use crate::route::Format;

/// One device's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceState {
    /// Device id.
    pub device: String,
    /// District, if known.
    pub district: Option<String>,
    /// Kind, if known.
    pub kind: Option<String>,
    /// Format of its first message.
    pub format: String,
    /// First message, ns since the epoch.
    pub first_seen_ns: i64,
    /// Latest message, ns since the epoch.
    pub last_seen_ns: i64,
    /// Latest sequence number (SenML devices).
    pub last_seq: Option<i64>,
    /// Messages with readings.
    pub messages: i64,
    /// Readings stored.
    pub readings: i64,
    /// Missed messages (sequence gaps).
    pub gaps: i64,
    /// Messages seen again (redeliveries).
    pub duplicates: i64,
    /// Readings ignored as already stored.
    pub duplicate_readings: i64,
    /// Reboots seen (sequence back to 0).
    pub reboots: i64,
    /// Readings the device reported dropping from its backlog.
    pub dropped_readings: i64,
    /// Readings refused.
    pub rejected: i64,
    /// `online` / `offline` from the status topic.
    pub status: Option<String>,
    /// When the status last changed, ns.
    pub status_at_ns: Option<i64>,
    /// Retained `meta` JSON.
    pub meta_json: Option<String>,
}

/// Every device, by id.
pub fn list(conn: &Connection) -> Result<Vec<DeviceState>> {
    let mut s = conn
        .prepare_cached(
            "SELECT device, district, kind, format, first_seen, last_seen, last_seq, messages, readings,
                    gaps, duplicates, duplicate_readings, reboots, dropped_readings, rejected, status,
                    status_at, meta_json FROM devices ORDER BY device",
        )
        .map_err(IngestError::sql("list devices"))?;
    let rows = s
        .query_map([], |r| {
            Ok(DeviceState {
                device: r.get(0)?,
                district: r.get(1)?,
                kind: r.get(2)?,
                format: r.get(3)?,
                first_seen_ns: r.get(4)?,
                last_seen_ns: r.get(5)?,
                last_seq: r.get(6)?,
                messages: r.get(7)?,
                readings: r.get(8)?,
                gaps: r.get(9)?,
                duplicates: r.get(10)?,
                duplicate_readings: r.get(11)?,
                reboots: r.get(12)?,
                dropped_readings: r.get(13)?,
                rejected: r.get(14)?,
                status: r.get(15)?,
                status_at_ns: r.get(16)?,
                meta_json: r.get(17)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(IngestError::sql("list devices"))?;
    Ok(rows)
}

/// Device row as read in the transaction, plus what the batch did to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceRow {
    pub(crate) district: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) format: String,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) last_seq: Option<u32>,
    pub(crate) messages: i64,
    pub(crate) readings: i64,
    pub(crate) gaps: i64,
    pub(crate) duplicates: i64,
    pub(crate) duplicate_readings: i64,
    pub(crate) reboots: i64,
    pub(crate) dropped_readings: i64,
    pub(crate) rejected: i64,
    pub(crate) status: Option<String>,
    pub(crate) status_at: Option<i64>,
    pub(crate) meta_json: Option<String>,
    pub(crate) meta_at: Option<i64>,
    /// Whether the database has the row (an update in place instead of an insert).
    pub(crate) stored: bool,
    /// Changed by the current batch (to be written back).
    touched: bool,
    /// A text column (district, kind, status, meta) changed: the next write rewrites the
    /// whole row; otherwise only the counters and times are updated.
    described: bool,
}

impl DeviceRow {
    /// The counters in column order: messages, readings, gaps, duplicates,
    /// duplicate_readings, reboots, dropped_readings, rejected.
    fn counters(&self) -> [i64; 8] {
        [
            self.messages,
            self.readings,
            self.gaps,
            self.duplicates,
            self.duplicate_readings,
            self.reboots,
            self.dropped_readings,
            self.rejected,
        ]
    }

    /// The tags of `device`'s lines for the store: the row's district and kind, else
    /// what the message says.
    pub(crate) fn tags<'a>(
        &'a self,
        device: &'a str,
        district: Option<&'a str>,
        kind: Option<&'a str>,
        format: Format,
    ) -> crate::lineproto::Tags<'a> {
        crate::lineproto::Tags {
            device,
            district: self.district.as_deref().or(district),
            format: format.as_str(),
            kind: self.kind.as_deref().or(kind),
        }
    }

    /// Sets the status from the status topic.
    pub(crate) fn set_status(&mut self, online: bool, at_ns: i64) {
        self.status = Some(if online { "online" } else { "offline" }.to_owned());
        self.status_at = Some(at_ns);
        self.described = true;
    }

    /// Sets the retained meta JSON.
    pub(crate) fn set_meta(&mut self, json: &str, at_ns: i64) {
        self.meta_json = Some(json.to_owned());
        self.meta_at = Some(at_ns);
        self.described = true;
    }
}

/// What a sequence number says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The device's first message we see.
    First,
    /// `last + 1`.
    InOrder,
    /// `n` messages were missed.
    Gap(u32),
    /// Not newer than the last one: a redelivery.
    Duplicate,
    /// The sequence restarted (the device rebooted); `missed` messages of the new run
    /// (before this one) were not seen.
    Reboot {
        /// Messages of the new run not seen.
        missed: u32,
    },
}

/// Classifies `seq` against the device's last sequence number. `new_data` says whether the
/// message brought readings not stored yet: a sequence number that goes back is a
/// redelivery when everything was already stored, and a reboot when the data is new (this
/// tells a redelivered `seq` 0 from a reboot, and catches a reboot whose `seq` 0 was lost).
pub fn seq_event(last: Option<u32>, seq: u32, new_data: bool) -> SeqEvent {
    match last {
        None => SeqEvent::First,
        Some(last) if Some(seq) == last.checked_add(1) => SeqEvent::InOrder,
        Some(last) if seq > last => SeqEvent::Gap(seq - last - 1),
        Some(_) if new_data => SeqEvent::Reboot { missed: seq },
        Some(_) => SeqEvent::Duplicate,
    }
}

/// What a message says about its device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sighting<'a> {
    pub(crate) district: Option<&'a str>,
    pub(crate) kind: Option<&'a str>,
    pub(crate) format: Format,
    pub(crate) received_at_ns: i64,
    /// The message shows the device alive now (not a retained copy).
    pub(crate) alive: bool,
}

/// Device rows by id, as this pipeline last committed them: one lookup by the borrowed id
/// per message, no `String` key built. Rows a batch changes are marked and written back
/// in its transaction ([`DeviceCache::write_touched`]). The owner clears the cache when its
/// transaction rolls back or another connection has committed (the rows may be stale).
#[derive(Debug, Default)]
pub(crate) struct DeviceCache {
    index: HashMap<Box<str>, usize>,
    rows: Vec<(Box<str>, DeviceRow)>,
    /// Rows changed by the current batch.
    touched: Vec<usize>,
}

impl DeviceCache {
    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Forgets every row (they are read again on use).
    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.rows.clear();
        self.touched.clear();
    }

    /// The batch committed: its rows are what the database holds.
    pub(crate) fn committed(&mut self) {
        for &i in &self.touched {
            self.rows[i].1.touched = false;
        }
        self.touched.clear();
    }

    /// The row of a device this batch has touched (and will write back).
    pub(crate) fn touched_mut(&mut self, device: &str) -> Option<&mut DeviceRow> {
        let &i = self.index.get(device)?;
        let row = &mut self.rows[i].1;
        row.touched.then_some(row)
    }

    /// The format that owns `device` (the format of its first message), if it is known.
    pub(crate) fn format_of(&mut self, tx: &Transaction<'_>, device: &str) -> Result<Option<&str>> {
        Ok(self
            .slot(tx, device)?
            .map(|i| self.rows[i].1.format.as_str()))
    }

    /// The cache slot of a device that exists, read from the database on first use.
    fn slot(&mut self, tx: &Transaction<'_>, device: &str) -> Result<Option<usize>> {
        if let Some(&i) = self.index.get(device) {
            return Ok(Some(i));
        }
        let Some(row) = read_row(tx, device)? else {
            return Ok(None);
        };
        let i = self.rows.len();
        self.rows.push((device.into(), row));
        self.index.insert(device.into(), i);
        Ok(Some(i))
    }

    /// The batch's row for `device`, read from the database on first use, updated with
    /// what `seen` says and marked to be written back.
    pub(crate) fn row(
        &mut self,
        tx: &Transaction<'_>,
        device: &str,
        seen: Sighting<'_>,
    ) -> Result<&mut DeviceRow> {
        let Sighting {
            district,
            kind,
            format,
            received_at_ns,
            alive,
        } = seen;
        let seen_at = if alive { received_at_ns } else { 0 };
        let i = match self.slot(tx, device)? {
            Some(i) => i,
            None => {
                let i = self.rows.len();
                self.rows.push((
                    device.into(),
                    DeviceRow {
                        format: format.as_str().to_owned(),
                        first_seen: seen_at,
                        last_seen: seen_at,
                        ..DeviceRow::default()
                    },
                ));
                self.index.insert(device.into(), i);
                i
            }
        };
        let row = &mut self.rows[i].1;
        if !row.touched {
            row.touched = true;
            self.touched.push(i);
        }
        Ok(finish_row(row, district, kind, seen_at))
    }

    /// Writes the rows the batch changed.
    pub(crate) fn write_touched(&mut self, tx: &Transaction<'_>) -> Result<()> {
        for &i in &self.touched {
            let (device, row) = &mut self.rows[i];
            write_device(tx, device, row)?;
        }
        Ok(())
    }
}

fn read_row(tx: &Transaction<'_>, device: &str) -> Result<Option<DeviceRow>> {
    tx.prepare_cached(
        "SELECT district, kind, format, first_seen, last_seen, last_seq, messages, readings, gaps,
                duplicates, duplicate_readings, reboots, dropped_readings, rejected, status,
                status_at, meta_json, meta_at FROM devices WHERE device = ?1",
    )
    .and_then(|mut s| {
        s.query_row([device], |r| {
            Ok(DeviceRow {
                district: r.get(0)?,
                kind: r.get(1)?,
                format: r.get(2)?,
                first_seen: r.get(3)?,
                last_seen: r.get(4)?,
                last_seq: r
                    .get::<_, Option<i64>>(5)?
                    .and_then(|v| u32::try_from(v).ok()),
                messages: r.get(6)?,
                readings: r.get(7)?,
                gaps: r.get(8)?,
                duplicates: r.get(9)?,
                duplicate_readings: r.get(10)?,
                reboots: r.get(11)?,
                dropped_readings: r.get(12)?,
                rejected: r.get(13)?,
                status: r.get(14)?,
                status_at: r.get(15)?,
                meta_json: r.get(16)?,
                meta_at: r.get(17)?,
                stored: true,
                touched: false,
                described: false,
            })
        })
        .optional()
    })
    .map_err(IngestError::sql("read device"))
}

fn finish_row<'m>(
    row: &'m mut DeviceRow,
    district: Option<&str>,
    kind: Option<&str>,
    received_at_ns: i64,
) -> &'m mut DeviceRow {
    row.last_seen = row.last_seen.max(received_at_ns);
    if row.first_seen == 0 {
        row.first_seen = row.last_seen;
    }
    if let Some(d) = district
        && row.district.as_deref() != Some(d)
    {
        row.district = Some(d.to_owned());
        row.described = true;
    }
    if let Some(k) = kind
        && row.kind.as_deref() != Some(k)
    {
        row.kind = Some(k.to_owned());
        row.described = true;
    }
    row
}

fn write_device(tx: &Transaction<'_>, device: &str, r: &mut DeviceRow) -> Result<()> {
    let n = if r.stored && !r.described {
        write_counters(tx, device, r)
    } else {
        write_row(tx, device, r)
    }
    .map_err(IngestError::sql("write device"))?;
    if n == 0 {
        // Deleted by another connection since it was read: write it anew.
        r.stored = false;
        return write_device(tx, device, r);
    }
    r.stored = true;
    r.described = false;
    Ok(())
}

/// The usual write: a message changed the device's counters and times only. Binds the ten
/// values one by one (no boxed parameter list) and leaves the text columns alone.
fn write_counters(tx: &Transaction<'_>, device: &str, r: &DeviceRow) -> rusqlite::Result<usize> {
    let mut s = tx.prepare_cached(
        "UPDATE devices SET first_seen = ?2, last_seen = ?3, last_seq = ?4, messages = ?5,
            readings = ?6, gaps = ?7, duplicates = ?8, duplicate_readings = ?9, reboots = ?10,
            dropped_readings = ?11, rejected = ?12
         WHERE device = ?1",
    )?;
    s.raw_bind_parameter(1, device)?;
    s.raw_bind_parameter(2, r.first_seen)?;
    s.raw_bind_parameter(3, r.last_seen)?;
    s.raw_bind_parameter(4, r.last_seq.map(i64::from))?;
    for (i, v) in r.counters().into_iter().enumerate() {
        s.raw_bind_parameter(5 + i, v)?;
    }
    s.raw_execute()
}

/// The whole row: a new device, or a text column changed.
fn write_row(tx: &Transaction<'_>, device: &str, r: &DeviceRow) -> rusqlite::Result<usize> {
    // An update in place when the row exists: `INSERT OR REPLACE` deletes and inserts.
    let sql = if r.stored {
        "UPDATE devices SET district = ?2, kind = ?3, format = ?4, first_seen = ?5,
            last_seen = ?6, last_seq = ?7, messages = ?8, readings = ?9, gaps = ?10,
            duplicates = ?11, duplicate_readings = ?12, reboots = ?13, dropped_readings = ?14,
            rejected = ?15, status = ?16, status_at = ?17, meta_json = ?18, meta_at = ?19
         WHERE device = ?1"
    } else {
        "INSERT OR REPLACE INTO devices(device, district, kind, format, first_seen, last_seen, last_seq,
            messages, readings, gaps, duplicates, duplicate_readings, reboots, dropped_readings,
            rejected, status, status_at, meta_json, meta_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    };
    let [
        messages,
        readings,
        gaps,
        duplicates,
        duplicate_readings,
        reboots,
        dropped,
        rejected,
    ] = r.counters();
    tx.prepare_cached(sql)?.execute(params![
        device,
        r.district,
        r.kind,
        r.format,
        r.first_seen,
        r.last_seen,
        r.last_seq.map(i64::from),
        messages,
        readings,
        gaps,
        duplicates,
        duplicate_readings,
        reboots,
        dropped,
        rejected,
        r.status,
        r.status_at,
        r.meta_json,
        r.meta_at
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_events() {
        assert_eq!(seq_event(None, 5, true), SeqEvent::First);
        assert_eq!(seq_event(Some(5), 6, true), SeqEvent::InOrder);
        assert_eq!(seq_event(Some(5), 9, true), SeqEvent::Gap(3));
        assert_eq!(seq_event(Some(5), 5, false), SeqEvent::Duplicate);
        assert_eq!(seq_event(Some(5), 2, false), SeqEvent::Duplicate);
        assert_eq!(seq_event(Some(5), 0, false), SeqEvent::Duplicate);
        assert_eq!(seq_event(Some(5), 0, true), SeqEvent::Reboot { missed: 0 });
        assert_eq!(seq_event(Some(5), 1, true), SeqEvent::Reboot { missed: 1 });
        assert_eq!(seq_event(Some(0), 0, true), SeqEvent::Reboot { missed: 0 });
        assert_eq!(
            seq_event(Some(u32::MAX), 0, true),
            SeqEvent::Reboot { missed: 0 }
        );
    }
}
