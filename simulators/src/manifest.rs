//! The manifest: what a fleet or replay run sent, one row per reading, so that
//! `verify` can compare it with what landed.
//!
//! Format (documented in the crate README): UTF-8 CSV, zstd-compressed when the file
//! name ends in `.zst` (readers detect compression by the zstd magic bytes, not the
//! name). The first line is `# simulators manifest v1`, the second the header
//! `device,metric,ts_ms,value,sent_ns,flags`:
//!
//! - `ts_ms`: the reading's time as the device stated it, Unix milliseconds;
//! - `value`: shortest decimal that reads back as the same f64;
//! - `sent_ns`: wall-clock Unix nanoseconds when the message was handed to the MQTT client;
//! - `flags`: letters, `-` for none: `r` time stamped by the gateway on receipt (the
//!   format carries no time), `x` outside the catalog range on purpose (a spike fault:
//!   validation should reject it), `d` a deliberate duplicate publish, `b` sent late from
//!   the backlog after an outage, `s` the device clock is skewed (a fault).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::device::{SentReading, flags};

/// The first line of every manifest.
pub const MAGIC_LINE: &str = "# simulators manifest v1";
/// The column header.
pub const HEADER: &str = "device,metric,ts_ms,value,sent_ns,flags";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// One manifest row.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// Device id.
    pub device: String,
    /// Catalog metric name.
    pub metric: String,
    /// Reading time, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
    /// Send time, Unix ns.
    pub sent_ns: i64,
    /// [`flags`] bits.
    pub flags: u8,
}

/// Why a manifest cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// I/O.
    #[error("manifest I/O: {0}")]
    Io(#[from] io::Error),
    /// Not a manifest.
    #[error("not a simulators manifest (first line must be {MAGIC_LINE:?})")]
    Magic,
    /// A bad row.
    #[error("manifest line {line}: {detail}")]
    Row {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

/// Writes flags as letters.
pub fn flags_str(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (flags::RECEIPT_TIME, 'r'),
        (flags::OUT_OF_RANGE, 'x'),
        (flags::DUPLICATE, 'd'),
        (flags::BACKLOG, 'b'),
        (flags::SKEWED, 's'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

fn parse_flags(s: &str) -> Option<u8> {
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'r' => flags::RECEIPT_TIME,
            'x' => flags::OUT_OF_RANGE,
            'd' => flags::DUPLICATE,
            'b' => flags::BACKLOG,
            's' => flags::SKEWED,
            '-' => 0,
            _ => return None,
        };
    }
    Some(f)
}

/// A streaming manifest writer.
pub struct ManifestWriter {
    out: Box<dyn Write + Send>,
    rows: u64,
}

impl std::fmt::Debug for ManifestWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestWriter")
            .field("rows", &self.rows)
            .finish()
    }
}

impl ManifestWriter {
    /// Creates `path`; compressed when it ends in `.zst`.
    pub fn create(path: &Path) -> Result<Self, ManifestError> {
        let file = BufWriter::with_capacity(1 << 16, File::create(path)?);
        let mut out: Box<dyn Write + Send> = if path.extension().is_some_and(|e| e == "zst") {
            Box::new(zstd::Encoder::new(file, 3)?.auto_finish())
        } else {
            Box::new(file)
        };
        writeln!(out, "{MAGIC_LINE}\n{HEADER}")?;
        Ok(Self { out, rows: 0 })
    }

    /// Appends one reading.
    pub fn write(
        &mut self,
        device: &str,
        r: &SentReading,
        sent_ns: i64,
    ) -> Result<(), ManifestError> {
        self.rows += 1;
        writeln!(
            self.out,
            "{device},{},{},{},{sent_ns},{}",
            r.metric,
            r.ts_ms,
            r.value,
            flags_str(r.flags)
        )?;
        Ok(())
    }

    /// Appends a row.
    pub fn write_row(&mut self, r: &ManifestRow) -> Result<(), ManifestError> {
        self.rows += 1;
        writeln!(
            self.out,
            "{},{},{},{},{},{}",
            r.device,
            r.metric,
            r.ts_ms,
            r.value,
            r.sent_ns,
            flags_str(r.flags)
        )?;
        Ok(())
    }

    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and closes the file (finishing the zstd frame).
    pub fn finish(mut self) -> Result<u64, ManifestError> {
        self.out.flush()?;
        Ok(self.rows)
    }
}

/// Opens a file, transparently decompressing zstd.
pub fn open_maybe_zstd(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let mut f = File::open(path)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    drop(f);
    let f = File::open(path)?;
    Ok(if n == 4 && magic == ZSTD_MAGIC {
        Box::new(BufReader::new(zstd::Decoder::new(f)?))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// Reads a whole manifest.
pub fn read(path: &Path) -> Result<Vec<ManifestRow>, ManifestError> {
    let mut lines = open_maybe_zstd(path)?.lines();
    match lines.next() {
        Some(Ok(l)) if l == MAGIC_LINE => {}
        Some(Err(e)) => return Err(e.into()),
        _ => return Err(ManifestError::Magic),
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line?;
        let n = i + 2;
        if n == 2 && line == HEADER || line.is_empty() {
            continue;
        }
        rows.push(parse_row(&line).map_err(|detail| ManifestError::Row { line: n, detail })?);
    }
    Ok(rows)
}

fn parse_row(line: &str) -> Result<ManifestRow, String> {
    let mut it = line.split(',');
    let mut next = |what: &str| it.next().ok_or_else(|| format!("missing {what}"));
    let device = next("device")?.to_owned();
    let metric = next("metric")?.to_owned();
    let ts_ms = next("ts_ms")?.parse().map_err(|e| format!("ts_ms: {e}"))?;
    let value = next("value")?.parse().map_err(|e| format!("value: {e}"))?;
    let sent_ns = next("sent_ns")?
        .parse()
        .map_err(|e| format!("sent_ns: {e}"))?;
    let flags = parse_flags(next("flags")?).ok_or("bad flags")?;
    Ok(ManifestRow {
        device,
        metric,
        ts_ms,
        value,
        sent_ns,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_and_zstd() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["m.csv", "m.csv.zst"] {
            let p = dir.path().join(name);
            let mut w = ManifestWriter::create(&p).unwrap();
            let r = SentReading {
                metric: "pm25",
                ts_ms: 1_767_225_600_000,
                value: 0.1 + 0.2,
                flags: flags::RECEIPT_TIME | flags::DUPLICATE,
            };
            w.write("aq-0001", &r, 17).unwrap();
            assert_eq!(w.finish().unwrap(), 1);
            let rows = read(&p).unwrap();
            assert_eq!(
                rows,
                vec![ManifestRow {
                    device: "aq-0001".into(),
                    metric: "pm25".into(),
                    ts_ms: 1_767_225_600_000,
                    value: 0.1 + 0.2,
                    sent_ns: 17,
                    flags: 5
                }]
            );
        }
        std::fs::write(dir.path().join("bad"), "hello\n").unwrap();
        assert!(matches!(
            read(&dir.path().join("bad")),
            Err(ManifestError::Magic)
        ));
    }
}
