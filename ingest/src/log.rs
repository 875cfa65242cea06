//! The raw-message log: the gateway's commit point.
//!
//! Every PUBLISH the broker delivers is appended here as it arrived (topic, payload, QoS,
//! retain and DUP flags, packet id, time of receipt). A group commit writes what arrived
//! meanwhile with one `write` and one `fdatasync`; only then are the messages acknowledged
//! to the broker. Everything else (decoding, validation, hot tier, outbox, device state,
//! dead letters) is derived from the log by the applier ([`crate::applier`]), which stores
//! the applied position in the same SQLite transaction as its results. This is the shape
//! of Kafka's log, Prometheus' WAL and InfluxDB 3's WAL: append, sync, acknowledge, index
//! later. The append-only file costs a copy and a CRC per message; an SQLite inbox table
//! would cost a B-tree insert per message (see `ingest/README.md`).
//!
//! **Files.** `<data_dir>/log/<first seq, 20 digits>.log`, numbered segments. A segment is
//! a 16-byte header (magic `CTLOG\0\0\x01`, first sequence number, little endian) and then
//! records: `len: u32 LE | crc32(body): u32 LE | body`. Every record has a sequence number
//! one above the previous one, across segments.
//! - a *message* body: `kind = 1 | seq u64 | received_ns i64 | pkid u16 | flags u8 |
//!   topic_len u16 | topic | payload` (flags: bits 0-1 QoS, bit 2 retain, bit 3 DUP);
//! - an *index* body (the first record of every segment): `kind = 2 | seq u64 | count u32 |
//!   count x (pkid u16, digest u64)`, the redelivery index as the segment began, so that
//!   older segments can be deleted without losing it.
//!
//! **Crash safety.** A crash can leave a torn tail: part of a record, or a whole record
//! whose bytes did not all reach the disk. On open every segment is scanned; a bad length,
//! a CRC mismatch or a sequence number out of order in the *last* segment is truncated away
//! with a warning (it was never acknowledged: acks follow the fdatasync). The same in an
//! earlier segment is damage, not a torn write (segments are synced before the next one
//! starts), and opening fails with the file and offset, never silently skipping data.
//!
//! **Redeliveries (exactly once).** MQTT 3.1.1 and MQTT 5, section 4.4: when a session
//! resumes, the server resends every PUBLISH it has not seen a PUBACK for, with DUP=1 and
//! its original packet id, and it reuses a packet id only after the PUBACK of the previous
//! message with that id. So a message with DUP=1 whose packet id, topic and payload match
//! the last logged message with that id is a redelivery of a message that is already
//! durable here (we crashed, or the connection dropped, before our PUBACK reached the
//! broker): it is acknowledged and not logged again. A message with DUP=0 is always new,
//! even when it reuses a packet id: it *supersedes* the id. The index holds, per packet id,
//! a 64-bit digest (xxh3) of the topic and payload of the last logged message; it is at
//! most 65,536 entries, rebuilt on open from the index record of the oldest segment and
//! the records after it. Readings without a time of their own are stamped with the time of
//! receipt written here, once, so re-applying the log stamps them the same way.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// The log's folder inside the data directory.
pub const LOG_DIR: &str = "log";

const MAGIC: [u8; 8] = *b"CTLOG\x00\x00\x02";
const SEGMENT_HEADER: u64 = 16;
const RECORD_HEADER: usize = 8;
const KIND_MESSAGE: u8 = 1;
const KIND_INDEX: u8 = 2;
/// Fixed part of a message body before the topic.
const MESSAGE_FIXED: usize = 1 + 8 + 8 + 2 + 1 + 2;
/// Largest record body accepted when reading: an MQTT packet is at most 256 MiB.
const MAX_BODY: usize = 256 * 1024 * 1024 + 64 * 1024;

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("message log {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A segment other than the last one is damaged: not a torn write of a crash.
    #[error(
        "message log segment {path} is damaged at byte {offset} ({reason}); it is not the last \
         segment, so this is not a torn write: move the file aside to start (the messages after \
         that byte are then lost) and check the disk"
    )]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the first bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The log does not reach back to the first message not yet applied.
    #[error(
        "message log in {dir} starts at message {first} but the state database has applied only \
         up to {applied}: segments were removed by hand. Messages {missing_from}..{first} are lost; \
         to start anyway, move the log folder aside"
    )]
    Gap {
        /// The log folder.
        dir: PathBuf,
        /// First sequence number in the log.
        first: u64,
        /// Applied position of the state.
        applied: u64,
        /// First missing sequence number.
        missing_from: u64,
    },
}

type Result<T, E = LogError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One message as it arrived from the broker.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The topic.
    pub topic: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// QoS of the delivery (0, 1 or 2).
    pub qos: u8,
    /// RETAIN flag of the delivery: set when the broker sent a retained message because of
    /// a new subscription.
    pub retain: bool,
    /// DUP flag: set when the broker resends a message it may have sent before.
    pub dup: bool,
    /// Packet id (0 for QoS 0).
    pub pkid: u16,
    /// Time of receipt, ns since the Unix epoch.
    pub received_ns: i64,
}

/// What [`LogWriter::append`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Logged under this sequence number; durable after the next [`LogWriter::commit`].
    Logged(u64),
    /// A redelivery (DUP=1) of the last message logged under its packet id: not logged
    /// again; acknowledge it after the next commit.
    Redelivery,
}

/// A message read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number.
    pub seq: u64,
    /// Time of receipt, ns since the Unix epoch.
    pub received_ns: i64,
    /// Packet id.
    pub pkid: u16,
    /// QoS of the delivery.
    pub qos: u8,
    /// RETAIN flag of the delivery.
    pub retain: bool,
    /// DUP flag of the delivery.
    pub dup: bool,
    /// Topic (lossy UTF-8: MQTT requires UTF-8, a broker that sends otherwise gets its bytes
    /// replaced and the message dead-lettered by routing).
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
}

/// What opening the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments found.
    pub segments: usize,
    /// Message records found.
    pub messages: u64,
    /// A torn tail that was cut off: (segment, offset, bytes removed, why).
    pub truncated: Option<(PathBuf, u64, u64, String)>,
}

/// Log settings.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The digest of a message in the redelivery index.
pub fn digest(topic: &[u8], payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(topic.len() as u64).to_le_bytes());
    h.update(topic);
    h.update(payload);
    h.digest()
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Segment first-sequence numbers in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log")
            && stem.len() == 20
            && let Ok(base) = stem.parse::<u64>()
        {
            out.push(base);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A record as parsed, borrowing the body.
enum Parsed<'a> {
    Message {
        seq: u64,
        received_ns: i64,
        pkid: u16,
        flags: u8,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    Index {
        seq: u64,
        entries: &'a [u8],
    },
}

fn parse_body(body: &[u8]) -> std::result::Result<Parsed<'_>, String> {
    let kind = *body.first().ok_or("empty record")?;
    let u64_at = |i: usize| -> std::result::Result<u64, String> {
        body.get(i..i + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or_else(|| "record too short".to_owned())
    };
    let seq = u64_at(1)?;
    match kind {
        KIND_MESSAGE => {
            if body.len() < MESSAGE_FIXED {
                return Err("message record too short".into());
            }
            let received_ns = u64_at(9)? as i64;
            let pkid = u16::from_le_bytes([body[17], body[18]]);
            let flags = body[19];
            let tlen = usize::from(u16::from_le_bytes([body[20], body[21]]));
            let topic = body
                .get(MESSAGE_FIXED..MESSAGE_FIXED + tlen)
                .ok_or("topic runs past the record")?;
            Ok(Parsed::Message {
                seq,
                received_ns,
                pkid,
                flags,
                topic,
                payload: &body[MESSAGE_FIXED + tlen..],
            })
        }
        KIND_INDEX => {
            let count = body
                .get(9..13)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or("index record too short")?;
            let entries = &body[13..];
            if entries.len() != count * 10 {
                return Err("index record length does not match its count".into());
            }
            Ok(Parsed::Index { seq, entries })
        }
        k => Err(format!("unknown record kind {k}")),
    }
}

/// What reading a record found.
enum Read {
    /// A record is in `body`.
    Record,
    /// The end of the written part: the end of the file, or a zeroed header (the unused,
    /// preallocated rest of a segment).
    End,
    /// A short, oversized or corrupt record.
    Bad(String),
}

/// Reads one record at the reader's position into `body`.
fn read_record<R: Read2>(r: &mut R, body: &mut Vec<u8>) -> std::io::Result<Read> {
    let mut head = [0u8; RECORD_HEADER];
    let got = read_full(r, &mut head)?;
    if got == 0 || (got == RECORD_HEADER && head == [0u8; RECORD_HEADER]) {
        return Ok(Read::End);
    }
    if got < RECORD_HEADER {
        return Ok(Read::Bad("record header cut short".into()));
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_BODY {
        return Ok(Read::Bad(format!("record length {len} out of bounds")));
    }
    body.clear();
    body.resize(len, 0);
    let got = read_full(r, body)?;
    if got < len {
        return Ok(Read::Bad(format!(
            "record cut short ({got} of {len} bytes)"
        )));
    }
    if crc32fast::hash(body) != crc {
        return Ok(Read::Bad("CRC mismatch".into()));
    }
    Ok(Read::Record)
}

/// `std::io::Read` under a short name (the enum above takes `Read`).
use std::io::Read as Read2;

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_full<R: Read2>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn push_record(buf: &mut Vec<u8>, body_len: usize, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER]);
    write_body(buf);
    let body = &buf[start + RECORD_HEADER..];
    debug_assert_eq!(body.len(), body_len);
    let crc = crc32fast::hash(body);
    let len = body.len() as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Writes zeros over `[from, to)` of `file`.
fn zero_fill(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// One segment as the writer knows it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    base: u64,
    /// Bytes written (header, records).
    bytes: u64,
    /// The file's preallocated size.
    capacity: u64,
}

/// The appending side of the log: owned by one task (the gateway's log writer).
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    opts: LogOptions,
    segments: Vec<Segment>,
    file: File,
    /// Records appended but not yet written and synced.
    buf: Vec<u8>,
    next_seq: u64,
    durable_seq: u64,
    /// packet id -> digest of the last message logged under it.
    index: HashMap<u16, u64>,
    /// (last seq, total bytes appended up to and including it), one per commit, for the
    /// backlog in bytes; trimmed as the applier advances.
    marks: VecDeque<(u64, u64)>,
    appended_bytes: u64,
}

impl LogWriter {
    /// Opens the log in `dir` (creating it), scanning every segment: rebuilds the
    /// redelivery index and cuts off a torn tail. `applied` is the state's applied
    /// position: the log must reach back to `applied + 1`, and continues above it.
    pub fn open(dir: &Path, opts: LogOptions, applied: u64) -> Result<(Self, OpenReport)> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut report = OpenReport::default();
        let bases = list_segments(dir)?;
        let mut segments: Vec<Segment> = Vec::new();
        let mut index = HashMap::new();
        let mut next_seq: Option<u64> = None;
        let mut body = Vec::new();
        let last_i = bases.len().checked_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_path(dir, base);
            let is_last = Some(i) == last_i;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let file_len = file.metadata().map_err(io_err(&path))?.len();
            let mut r = BufReader::with_capacity(1 << 20, &file);
            let mut offset = 0u64;
            let mut bad: Option<String> = None;
            let mut header = [0u8; SEGMENT_HEADER as usize];
            let got = read_full(&mut r, &mut header).map_err(io_err(&path))?;
            if got == header.len() && header[..8] == MAGIC && header[8..] == base.to_le_bytes() {
                offset = SEGMENT_HEADER;
            } else if got < header.len() || header.iter().all(|b| *b == 0) {
                bad = Some("segment header missing (a crash while the segment was created)".into());
            } else {
                bad = Some("bad segment header".into());
            }
            let mut expect = next_seq.unwrap_or(base);
            if bad.is_none() && expect != base {
                bad = Some(format!("segment starts at {base}, expected {expect}"));
            }
            while bad.is_none() {
                match read_record(&mut r, &mut body).map_err(io_err(&path))? {
                    Read::End => break,
                    Read::Record => {}
                    Read::Bad(reason) => {
                        bad = Some(reason);
                        break;
                    }
                }
                match parse_body(&body) {
                    Ok(Parsed::Message {
                        seq,
                        pkid,
                        flags,
                        topic,
                        payload,
                        ..
                    }) if seq == expect => {
                        if flags & 3 != 0 {
                            index.insert(pkid, digest(topic, payload));
                        }
                        report.messages += 1;
                        expect += 1;
                    }
                    // The index as of the next message: replaces what was rebuilt so far
                    // (the same thing when the older segments are still there).
                    Ok(Parsed::Index { seq, entries }) if seq == expect => {
                        index = decode_index(entries);
                    }
                    Ok(Parsed::Message { seq, .. } | Parsed::Index { seq, .. }) => {
                        bad = Some(format!("record {seq} where {expect} was expected"));
                        break;
                    }
                    Err(reason) => {
                        bad = Some(reason);
                        break;
                    }
                }
                offset += (RECORD_HEADER + body.len()) as u64;
            }
            drop(r);
            if let Some(reason) = bad {
                if !is_last {
                    return Err(LogError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                }
                let removed = file_len.saturating_sub(offset);
                tracing::warn!(
                    segment = %path.display(),
                    offset,
                    reason = %reason,
                    "message log: torn tail after a crash, cut off (it was never acknowledged)"
                );
                ::metrics::counter!(crate::metrics::LOG_TORN_TAILS).increment(1);
                report.truncated = Some((path.clone(), offset, removed, reason));
                if offset <= SEGMENT_HEADER {
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                    sync_dir(dir)?;
                    continue;
                }
                // The segment is preallocated: zero what follows the last good record, so
                // that the damaged bytes are never read as records again.
                zero_fill(&file, offset, file_len)
                    .and_then(|()| file.sync_all())
                    .map_err(io_err(&path))?;
            }
            segments.push(Segment {
                base,
                bytes: offset,
                capacity: file_len.max(offset),
            });
            next_seq = Some(expect);
        }
        report.segments = segments.len();
        if let Some(first) = segments.first()
            && first.base > applied + 1
        {
            return Err(LogError::Gap {
                dir: dir.to_owned(),
                first: first.base,
                applied,
                missing_from: applied + 1,
            });
        }
        let next = next_seq.unwrap_or(applied + 1).max(applied + 1);
        if next_seq.is_some_and(|n| n < next) {
            // Everything logged is applied and the state is ahead of the log's end (the log
            // folder was replaced): the old segments hold nothing needed.
            for s in segments.drain(..) {
                let path = segment_path(dir, s.base);
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        let file = match segments.last() {
            // Continue the last segment.
            Some(s) => {
                let path = segment_path(dir, s.base);
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?
            }
            None => {
                let (file, seg) = create_segment(dir, next, &index, opts.segment_bytes, 0)?;
                segments.push(seg);
                file
            }
        };
        let appended_bytes = segments.iter().map(|s| s.bytes).sum();
        let mut w = Self {
            dir: dir.to_owned(),
            opts,
            segments,
            file,
            buf: Vec::new(),
            next_seq: next,
            durable_seq: next - 1,
            index,
            marks: VecDeque::new(),
            appended_bytes,
        };
        w.marks.push_back((w.durable_seq, w.appended_bytes));
        Ok((w, report))
    }

    /// Appends a message to the commit buffer, or recognises a redelivery (see the module
    /// docs for the rule and its reasoning).
    pub fn append(&mut self, m: &Arrival<'_>) -> Appended {
        let d = digest(m.topic, m.payload);
        if m.qos > 0 {
            if m.dup && self.index.get(&m.pkid) == Some(&d) {
                return Appended::Redelivery;
            }
            // A first delivery (or a DUP=1 that does not match) supersedes the packet id.
            self.index.insert(m.pkid, d);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let topic = &m.topic[..m.topic.len().min(usize::from(u16::MAX))];
        let body_len = MESSAGE_FIXED + topic.len() + m.payload.len();
        let flags = (m.qos & 3) | (u8::from(m.retain) << 2) | (u8::from(m.dup) << 3);
        push_record(&mut self.buf, body_len, |b| {
            b.push(KIND_MESSAGE);
            b.extend_from_slice(&seq.to_le_bytes());
            b.extend_from_slice(&m.received_ns.to_le_bytes());
            b.extend_from_slice(&m.pkid.to_le_bytes());
            b.push(flags);
            b.extend_from_slice(&(topic.len() as u16).to_le_bytes());
            b.extend_from_slice(topic);
            b.extend_from_slice(m.payload);
        });
        Appended::Logged(seq)
    }

    /// Writes what was appended with one `pwrite` into the preallocated segment and makes
    /// it durable with one `fdatasync`: the file's size does not change, so the sync writes
    /// data only, without a filesystem journal commit that would wait for every other
    /// file's dirty data. Starts a new segment first when the buffer does not fit. Returns
    /// the highest durable sequence number. On error nothing appended since the last commit
    /// may be acknowledged; the caller retries (the buffer is kept).
    pub fn commit(&mut self) -> Result<u64> {
        if self.buf.is_empty() {
            return Ok(self.durable_seq);
        }
        let active = self.active();
        if active.bytes + self.buf.len() as u64 > active.capacity {
            // The first buffered record starts the new segment.
            let base = self.durable_seq + 1;
            let (file, seg) = create_segment(
                &self.dir,
                base,
                &self.index,
                self.opts.segment_bytes,
                self.buf.len() as u64,
            )?;
            self.file = file;
            if active.base == base {
                // The active segment holds no message yet (a fresh log whose first group
                // is larger than a segment): it was just made again, larger, in place.
                self.appended_bytes -= active.bytes;
                if let Some(last) = self.segments.last_mut() {
                    *last = seg;
                }
            } else {
                self.segments.push(seg);
            }
            self.appended_bytes += seg.bytes;
        }
        let active = self.active();
        let path = segment_path(&self.dir, active.base);
        self.file
            .write_all_at(&self.buf, active.bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(io_err(&path))?;
        let n = self.buf.len() as u64;
        self.buf.clear();
        if let Some(s) = self.segments.last_mut() {
            s.bytes += n;
        }
        self.appended_bytes += n;
        self.durable_seq = self.next_seq - 1;
        self.marks
            .push_back((self.durable_seq, self.appended_bytes));
        Ok(self.durable_seq)
    }

    fn active(&self) -> Segment {
        self.segments.last().copied().unwrap_or(Segment {
            base: 0,
            bytes: 0,
            capacity: 0,
        })
    }

    /// The highest durable sequence number.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Deletes the segments whose every record is at or below `applied` (durably applied
    /// to the state), never the one being written. Returns the bytes freed.
    pub fn release(&mut self, applied: u64) -> Result<u64> {
        let mut freed = 0;
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].base <= applied + 1 {
            let s = self.segments.remove(0);
            let path = segment_path(&self.dir, s.base);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            freed += s.capacity;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        while self.marks.len() > 1 && self.marks[1].0 <= applied {
            self.marks.pop_front();
        }
        Ok(freed)
    }

    /// Bytes of durable records above `applied` (approximate to a commit): the apply
    /// backlog.
    pub fn backlog_bytes(&self, applied: u64) -> u64 {
        let at = self
            .marks
            .iter()
            .rev()
            .find(|(seq, _)| *seq <= applied)
            .map_or(0, |(_, b)| *b);
        self.appended_bytes.saturating_sub(at)
    }

    /// Bytes of the segment files on disk (preallocated).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.capacity).sum()
    }
}

fn decode_index(entries: &[u8]) -> HashMap<u16, u64> {
    entries
        .chunks_exact(10)
        .map(|c| {
            (
                u16::from_le_bytes([c[0], c[1]]),
                u64::from_le_bytes(c[2..10].try_into().unwrap_or([0; 8])),
            )
        })
        .collect()
}

/// Creates segment `base`: the header and the index record (as of message `base`), then
/// zeros up to `segment_bytes` (or more, to hold `room` bytes of records), synced with its
/// folder. The zeros are written, not just allocated: writing into allocated-but-unwritten
/// extents would change metadata at every commit again.
fn create_segment(
    dir: &Path,
    base: u64,
    index: &HashMap<u16, u64>,
    segment_bytes: u64,
    room: u64,
) -> Result<(File, Segment)> {
    let path = segment_path(dir, base);
    let mut buf = Vec::with_capacity(SEGMENT_HEADER as usize + 32 + index.len() * 10);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&base.to_le_bytes());
    let body_len = 13 + index.len() * 10;
    push_record(&mut buf, body_len, |b| {
        b.push(KIND_INDEX);
        b.extend_from_slice(&base.to_le_bytes());
        b.extend_from_slice(&(index.len() as u32).to_le_bytes());
        let mut ids: Vec<_> = index.iter().collect();
        ids.sort_unstable();
        for (pkid, d) in ids {
            b.extend_from_slice(&pkid.to_le_bytes());
            b.extend_from_slice(&d.to_le_bytes());
        }
    });
    let used = buf.len() as u64;
    let capacity = segment_bytes.max(used + room);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.write_all_at(&buf, 0)
        .and_then(|()| zero_fill(&file, used, capacity))
        .and_then(|()| file.sync_all())
        .map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok((
        file,
        Segment {
            base,
            bytes: used,
            capacity,
        },
    ))
}

/// The reading side: the applier's cursor over durable records.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    /// The next sequence number to read.
    next_seq: u64,
    /// The segment being read: its base, reader, and the offset of the next record.
    file: Option<(u64, BufReader<File>, u64)>,
    body: Vec<u8>,
}

impl LogReader {
    /// A cursor that reads from `from` on (the first sequence number not applied yet).
    pub fn open(dir: &Path, from: u64) -> Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            next_seq: from,
            file: None,
            body: Vec::new(),
        })
    }

    /// Opens the segment holding `seq` (the last one starting at or before it) and skips
    /// the records before `seq`.
    fn open_at(&mut self, seq: u64) -> Result<()> {
        let bases = list_segments(&self.dir)?;
        let Some(&base) = bases.iter().rev().find(|b| **b <= seq) else {
            return Err(LogError::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                reason: format!("no segment holds message {seq}"),
            });
        };
        let path = segment_path(&self.dir, base);
        let mut f = BufReader::with_capacity(1 << 20, File::open(&path).map_err(io_err(&path))?);
        let mut header = [0u8; SEGMENT_HEADER as usize];
        f.read_exact(&mut header).map_err(io_err(&path))?;
        let mut pos = SEGMENT_HEADER;
        loop {
            match read_record(&mut f, &mut self.body).map_err(io_err(&path))? {
                Read::Record => {}
                Read::End => break,
                Read::Bad(reason) => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: pos,
                        reason,
                    });
                }
            }
            let at = match parse_body(&self.body) {
                Ok(Parsed::Message { seq: s, .. }) => Some(s),
                Ok(Parsed::Index { .. }) => None,
                Err(reason) => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: pos,
                        reason,
                    });
                }
            };
            if at.is_some_and(|s| s >= seq) {
                break;
            }
            pos += (RECORD_HEADER + self.body.len()) as u64;
        }
        // Position before the record found (or at the end of what is written).
        f.seek(SeekFrom::Start(pos)).map_err(io_err(&path))?;
        self.file = Some((base, f, pos));
        Ok(())
    }

    /// The next sequence number this cursor will read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Forgets the open segment: the next read finds `next_seq` again from the files.
    pub fn reset(&mut self) {
        self.file = None;
    }

    /// Reads durable messages with sequence numbers up to `upto` (inclusive), at most
    /// `max_messages` and about `max_bytes` of payload (at least one record), into `out`.
    /// Index records are passed over. Afterwards [`LogReader::next_seq`] is one above the
    /// last record read.
    pub fn read(
        &mut self,
        upto: u64,
        max_messages: usize,
        max_bytes: usize,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        let mut bytes = 0usize;
        let first = out.len();
        // Set after an end or a bad record was seen once at this position: the reader's
        // buffer may hold zeros, or part of a record, read ahead before the writer wrote
        // there; the file is read again before moving to the next segment (an end) or
        // calling it damage (a bad record).
        let mut retried = false;
        while self.next_seq <= upto
            && out.len() - first < max_messages.max(1)
            && (bytes < max_bytes || bytes == 0)
        {
            if self.file.is_none() {
                self.open_at(self.next_seq)?;
            }
            let Some((base, f, pos)) = self.file.as_mut() else {
                break;
            };
            let base = *base;
            let path = segment_path(&self.dir, base);
            match read_record(f, &mut self.body).map_err(io_err(&path))? {
                Read::Record => retried = false,
                Read::End if !retried => {
                    retried = true;
                    f.seek(SeekFrom::Start(*pos)).map_err(io_err(&path))?;
                    continue;
                }
                Read::End => {
                    // The record is in a later segment.
                    retried = false;
                    self.file = None;
                    let next = list_segments(&self.dir)?
                        .into_iter()
                        .find(|b| *b > base && *b <= self.next_seq);
                    if next.is_none() {
                        return Err(LogError::Corrupt {
                            path,
                            offset: 0,
                            reason: format!("message {} is missing", self.next_seq),
                        });
                    }
                    continue;
                }
                // The buffer may hold part of a record that was being written when it was
                // read ahead: read the file again once before calling it damage.
                Read::Bad(_) if !retried => {
                    retried = true;
                    f.seek(SeekFrom::Start(*pos)).map_err(io_err(&path))?;
                    continue;
                }
                Read::Bad(reason) => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: *pos,
                        reason,
                    });
                }
            }
            *pos += (RECORD_HEADER + self.body.len()) as u64;
            match parse_body(&self.body) {
                Ok(Parsed::Message {
                    seq,
                    received_ns,
                    pkid,
                    flags,
                    topic,
                    payload,
                }) if seq == self.next_seq => {
                    bytes += payload.len() + topic.len();
                    out.push(Entry {
                        seq,
                        received_ns,
                        pkid,
                        qos: flags & 3,
                        retain: flags & 4 != 0,
                        dup: flags & 8 != 0,
                        topic: String::from_utf8_lossy(topic).into_owned(),
                        payload: Bytes::copy_from_slice(payload),
                    });
                    self.next_seq += 1;
                }
                Ok(Parsed::Index { seq, .. }) if seq == self.next_seq => {}
                Ok(Parsed::Message { seq, .. } | Parsed::Index { seq, .. }) => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: *pos,
                        reason: format!("record {seq} where {} was expected", self.next_seq),
                    });
                }
                Err(reason) => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: *pos,
                        reason,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: LogOptions = LogOptions {
        segment_bytes: 4096,
    };

    fn arrival<'a>(pkid: u16, dup: bool, topic: &'a str, payload: &'a [u8]) -> Arrival<'a> {
        Arrival {
            topic: topic.as_bytes(),
            payload,
            qos: 1,
            retain: false,
            dup,
            pkid,
            received_ns: 1_000 + i64::from(pkid),
        }
    }

    fn read_all(dir: &Path, from: u64, upto: u64) -> Vec<Entry> {
        let mut r = LogReader::open(dir, from).unwrap();
        let mut out = Vec::new();
        while r.next_seq() <= upto {
            r.read(upto, usize::MAX, 1 << 20, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn appends_commits_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rep) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
        assert_eq!(rep.segments, 0);
        assert_eq!(w.durable_seq(), 0);
        let first = w.append(&arrival(1, false, "a/b", b"x"));
        assert_eq!(first, Appended::Logged(1));
        let second = w.append(&arrival(2, false, "a/c", b"yy"));
        assert_eq!(second, Appended::Logged(2));
        assert_eq!(w.commit().unwrap(), 2);
        // Preallocated: the file is at its full size from the start.
        assert_eq!(w.disk_bytes(), SMALL.segment_bytes);
        let got = read_all(dir.path(), 1, 2);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].seq, got[0].topic.as_str()), (1, "a/b"));
        assert_eq!((got[1].pkid, &got[1].payload[..]), (2, &b"yy"[..]));
        assert_eq!(got[1].received_ns, 1_002);
        assert!(!got[1].dup && !got[1].retain && got[1].qos == 1);
    }

    #[test]
    fn a_first_group_larger_than_a_segment_grows_the_empty_segment() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions { segment_bytes: 100 };
        let (mut w, _) = LogWriter::open(dir.path(), opts, 0).unwrap();
        w.append(&arrival(1, false, "t", &[7; 200]));
        assert_eq!(w.commit().unwrap(), 1);
        // One segment, not two with the same first message.
        assert_eq!(w.segments.len(), 1);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1]);
        // Releasing nothing applied keeps it.
        assert_eq!(w.release(0).unwrap(), 0);
        w.append(&arrival(2, false, "t", &[8; 200]));
        w.commit().unwrap();
        assert_eq!(w.release(0).unwrap(), 0, "message 1 is not applied");
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
        let got = read_all(dir.path(), 1, 2);
        assert_eq!(got.iter().map(|e| e.pkid).collect::<Vec<_>>(), vec![1, 2]);
        assert!(w.release(1).unwrap() > 0);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
    }

    #[test]
    fn a_reader_sees_what_is_committed_after_it_reached_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
        w.append(&arrival(1, false, "t", b"1"));
        w.commit().unwrap();
        let mut r = LogReader::open(dir.path(), 1).unwrap();
        let mut out = Vec::new();
        r.read(1, usize::MAX, 1 << 20, &mut out).unwrap();
        // The reader's buffer now holds the zeros after record 1; record 2 is written
        // over them afterwards and must still be read.
        w.append(&arrival(2, false, "t", b"2"));
        w.commit().unwrap();
        r.read(2, usize::MAX, 1 << 20, &mut out).unwrap();
        let ids: Vec<u16> = out.iter().map(|e| e.pkid).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn a_reader_rereads_a_record_it_saw_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
        w.append(&arrival(1, false, "t", b"1"));
        w.commit().unwrap();
        // Half of record 2 is on disk (as a concurrent read could see it mid-write).
        w.append(&arrival(2, false, "t", b"second"));
        let active = w.active();
        let half = &w.buf[..w.buf.len() / 2];
        w.file.write_all_at(half, active.bytes).unwrap();
        let mut r = LogReader::open(dir.path(), 1).unwrap();
        let mut out = Vec::new();
        r.read(1, usize::MAX, 1 << 20, &mut out).unwrap();
        // Now the whole record is committed; the reader's buffer still holds half of it.
        w.commit().unwrap();
        r.read(2, usize::MAX, 1 << 20, &mut out).unwrap();
        let ids: Vec<u16> = out.iter().map(|e| e.pkid).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn redelivery_rule_follows_mqtt_section_4_4() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
        let logged = |a: Appended| matches!(a, Appended::Logged(_));
        assert!(logged(w.append(&arrival(7, false, "t", b"1"))));
        // The broker resends it (DUP=1, same id, same content): already logged.
        assert_eq!(w.append(&arrival(7, true, "t", b"1")), Appended::Redelivery);
        // The same content again as a first delivery under the reused id: a new message.
        assert!(logged(w.append(&arrival(7, false, "t", b"1"))));
        // DUP=1 with other content: not the logged one, so new.
        assert!(logged(w.append(&arrival(7, true, "t", b"2"))));
        w.commit().unwrap();
        drop(w);
        // The index survives a restart.
        let (mut w, rep) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
        assert_eq!(rep.messages, 3);
        assert_eq!(w.append(&arrival(7, true, "t", b"2")), Appended::Redelivery);
        assert!(logged(w.append(&arrival(7, true, "t", b"1"))));
    }

    #[test]
    fn index_survives_deleted_segments() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions { segment_bytes: 200 };
        let (mut w, _) = LogWriter::open(dir.path(), opts, 0).unwrap();
        for pkid in 1..=20u16 {
            w.append(&arrival(pkid, false, "topic/x", &[pkid as u8; 40]));
            w.commit().unwrap();
        }
        let n = list_segments(dir.path()).unwrap().len();
        assert!(n > 3, "{n} segments");
        let durable = w.durable_seq();
        assert!(w.release(durable).unwrap() > 0);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        drop(w);
        let (mut w, _) = LogWriter::open(dir.path(), opts, durable).unwrap();
        assert_eq!(
            w.append(&arrival(3, true, "topic/x", &[3; 40])),
            Appended::Redelivery
        );
        // Reading from the applied position finds nothing new, then what comes next.
        assert!(read_all(dir.path(), durable + 1, durable).is_empty());
        w.append(&arrival(21, false, "topic/y", b"z"));
        let last = w.commit().unwrap();
        let got = read_all(dir.path(), durable + 1, last);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].topic, "topic/y");
    }

    #[test]
    fn reader_crosses_segments() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions { segment_bytes: 100 };
        let (mut w, _) = LogWriter::open(dir.path(), opts, 0).unwrap();
        for i in 0..30u16 {
            w.append(&arrival(i + 1, false, "s", &i.to_le_bytes()));
            w.commit().unwrap();
        }
        assert!(list_segments(dir.path()).unwrap().len() > 5);
        let got = read_all(dir.path(), 1, w.durable_seq());
        let ids: Vec<u16> = got.iter().map(|e| e.pkid).collect();
        assert_eq!(ids, (1..=30).collect::<Vec<_>>());
        // And from the middle of the log.
        let mid = got[10].seq;
        let got = read_all(dir.path(), mid, w.durable_seq());
        assert_eq!(got[0].pkid, 11);
        assert_eq!(got.len(), 20);
    }

    fn last_segment(dir: &Path) -> PathBuf {
        segment_path(dir, *list_segments(dir).unwrap().last().unwrap())
    }

    #[test]
    fn torn_tail_is_cut_off_and_the_rest_kept() {
        for damage in ["cut", "flip"] {
            let dir = tempfile::tempdir().unwrap();
            let (mut w, _) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
            for pkid in 1..=5 {
                w.append(&arrival(pkid, false, "t", b"payload"));
            }
            w.commit().unwrap();
            let end = w.active().bytes as usize;
            drop(w);
            let path = last_segment(dir.path());
            let mut bytes = std::fs::read(&path).unwrap();
            match damage {
                // The last bytes never reached the disk: zeros where they should be.
                "cut" => bytes[end - 3..end].fill(0),
                _ => bytes[end - 2] ^= 0x40,
            }
            std::fs::write(&path, &bytes).unwrap();
            let (mut w, rep) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
            let (_, _, _, why) = rep.truncated.clone().expect("cut off");
            assert_eq!(rep.messages, 4, "{damage}: {why}");
            // The damaged bytes were zeroed: a second open finds a clean end.
            let (_, again) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
            assert!(again.truncated.is_none(), "{damage}");
            // The log continues where the good part ends.
            assert_eq!(
                w.append(&arrival(9, false, "t", b"new")),
                Appended::Logged(5)
            );
            w.commit().unwrap();
            let got = read_all(dir.path(), 1, 5);
            let ids: Vec<u16> = got.iter().map(|e| e.pkid).collect();
            assert_eq!(ids, vec![1, 2, 3, 4, 9], "{damage}");
        }
    }

    /// A log of ten 50-byte messages in segments of 100 bytes; returns its first segment
    /// and where that segment's records end.
    fn ten_small_segments() -> (tempfile::TempDir, LogOptions, PathBuf, usize) {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions { segment_bytes: 100 };
        let (mut w, _) = LogWriter::open(dir.path(), opts, 0).unwrap();
        for i in 0..10u16 {
            w.append(&arrival(i + 1, false, "s", &[0; 50]));
            w.commit().unwrap();
        }
        let end = w.segments[0].bytes as usize;
        drop(w);
        let first = segment_path(dir.path(), list_segments(dir.path()).unwrap()[0]);
        (dir, opts, first, end)
    }

    #[test]
    fn damage_before_the_last_segment_refuses_to_open() {
        let (dir, opts, first, end) = ten_small_segments();
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[end - 5] ^= 1;
        std::fs::write(&first, &bytes).unwrap();
        let e = LogWriter::open(dir.path(), opts, 0).unwrap_err();
        assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("move the file aside"), "{e}");
    }

    #[test]
    fn a_log_that_does_not_reach_the_applied_position_is_refused() {
        let (dir, opts, first, _) = ten_small_segments();
        std::fs::remove_file(first).unwrap();
        let e = LogWriter::open(dir.path(), opts, 0).unwrap_err();
        assert!(matches!(e, LogError::Gap { .. }), "{e}");
        // An empty folder starts above the applied position.
        let empty = tempfile::tempdir().unwrap();
        let (mut w, _) = LogWriter::open(empty.path(), opts, 41).unwrap();
        assert_eq!(w.durable_seq(), 41);
        assert_eq!(
            w.append(&arrival(1, false, "s", b"x")),
            Appended::Logged(42)
        );
    }

    #[test]
    fn backlog_follows_the_applied_position() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = LogWriter::open(dir.path(), SMALL, 0).unwrap();
        let start = w.durable_seq();
        assert_eq!(w.backlog_bytes(start), 0);
        w.append(&arrival(1, false, "t", &[0; 100]));
        let s = w.commit().unwrap();
        assert!(w.backlog_bytes(start) > 100);
        w.release(s).unwrap();
        assert_eq!(w.backlog_bytes(s), 0);
    }
}
