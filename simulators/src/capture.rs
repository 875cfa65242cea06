//! The capture file format written by `record` and read by `replay`: a streaming,
//! length-prefixed log of MQTT messages. The full specification is in the crate README;
//! in short:
//!
//! ```text
//! header (20 bytes, never compressed)
//!   magic    8 bytes  "MQTTCAP\0"
//!   version  u16 LE   1
//!   flags    u16 LE   bit 0: the body is one zstd stream
//!   start    u64 LE   wall-clock Unix ns when the capture began
//! body: records until end of file
//!   len      u32 LE   bytes of the record after this field
//!   offset   u64 LE   ns since `start` when the message arrived
//!   qos      u8       0, 1 or 2
//!   flags    u8       bit 0: retain
//!   tlen     u16 LE   topic length
//!   topic    tlen bytes, UTF-8
//!   payload  len - 12 - tlen bytes
//! ```
//!
//! A record cut short at the end (a recorder killed mid-write) is ignored, so a capture
//! is readable while it is being written and after a crash.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// File magic.
pub const MAGIC: &[u8; 8] = b"MQTTCAP\0";
/// Format version.
pub const VERSION: u16 = 1;
/// Header flag: the body is zstd-compressed.
pub const FLAG_ZSTD: u16 = 1;
/// Record flag: retained message.
pub const RECORD_RETAIN: u8 = 1;
/// Bytes of a record after its length field, not counting topic and payload.
const FIXED: usize = 8 + 1 + 1 + 2;
/// Largest record accepted by readers (MQTT's own limit is 256 MiB).
pub const MAX_RECORD: usize = 256 << 20;

/// One captured message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMessage {
    /// Nanoseconds since the capture started.
    pub offset_ns: u64,
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS 0..=2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
}

/// Why a capture cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// I/O.
    #[error("capture I/O: {0}")]
    Io(#[from] io::Error),
    /// Not a capture file.
    #[error("not a capture file (bad magic)")]
    Magic,
    /// A version this build does not read.
    #[error("capture version {0} not supported (this build reads version {VERSION})")]
    Version(u16),
    /// A record that cannot be right.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
}

/// A streaming capture writer.
pub struct CaptureWriter {
    out: Box<dyn Write + Send>,
    count: u64,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("count", &self.count)
            .finish()
    }
}

impl CaptureWriter {
    /// Creates a capture at `path` whose offsets count from `start_unix_ns`.
    pub fn create(path: &Path, start_unix_ns: u64, compress: bool) -> Result<Self, CaptureError> {
        let mut file = BufWriter::with_capacity(1 << 16, File::create(path)?);
        file.write_all(MAGIC)?;
        file.write_all(&VERSION.to_le_bytes())?;
        file.write_all(&(if compress { FLAG_ZSTD } else { 0 }).to_le_bytes())?;
        file.write_all(&start_unix_ns.to_le_bytes())?;
        let out: Box<dyn Write + Send> = if compress {
            Box::new(zstd::Encoder::new(file, 3)?.auto_finish())
        } else {
            Box::new(file)
        };
        Ok(Self { out, count: 0 })
    }

    /// Appends a message.
    pub fn write(&mut self, m: &CapturedMessage) -> Result<(), CaptureError> {
        let tlen = u16::try_from(m.topic.len())
            .map_err(|_| CaptureError::Corrupt("topic longer than 65535 bytes"))?;
        let len = FIXED + m.topic.len() + m.payload.len();
        let len = u32::try_from(len).map_err(|_| CaptureError::Corrupt("record over 4 GiB"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&m.offset_ns.to_le_bytes())?;
        self.out
            .write_all(&[m.qos, if m.retain { RECORD_RETAIN } else { 0 }])?;
        self.out.write_all(&tlen.to_le_bytes())?;
        self.out.write_all(m.topic.as_bytes())?;
        self.out.write_all(&m.payload)?;
        self.count += 1;
        Ok(())
    }

    /// Pushes buffered records to disk (a zstd block boundary when compressed), so a
    /// reader or a crash sees everything written so far.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.out.flush()?;
        Ok(())
    }

    /// Messages written.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes and closes.
    pub fn finish(mut self) -> Result<u64, CaptureError> {
        self.out.flush()?;
        Ok(self.count)
    }
}

/// A streaming capture reader: an iterator of messages.
pub struct CaptureReader {
    input: Box<dyn Read + Send>,
    start_unix_ns: u64,
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("start_unix_ns", &self.start_unix_ns)
            .finish()
    }
}

impl CaptureReader {
    /// Opens a capture and reads its header.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let mut file = BufReader::with_capacity(1 << 16, File::open(path)?);
        let mut h = [0u8; 20];
        file.read_exact(&mut h).map_err(|_| CaptureError::Magic)?;
        if &h[..8] != MAGIC {
            return Err(CaptureError::Magic);
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(CaptureError::Version(version));
        }
        let flags = u16::from_le_bytes([h[10], h[11]]);
        let mut start = [0u8; 8];
        start.copy_from_slice(&h[12..20]);
        let input: Box<dyn Read + Send> = if flags & FLAG_ZSTD != 0 {
            Box::new(zstd::Decoder::with_buffer(file)?)
        } else {
            Box::new(file)
        };
        Ok(Self {
            input,
            start_unix_ns: u64::from_le_bytes(start),
        })
    }

    /// Wall-clock Unix ns when the capture began.
    pub fn start_unix_ns(&self) -> u64 {
        self.start_unix_ns
    }

    /// The next message; `Ok(None)` at the end (or at a record cut short).
    pub fn next_message(&mut self) -> Result<Option<CapturedMessage>, CaptureError> {
        let mut len = [0u8; 4];
        if !read_full(&mut self.input, &mut len)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(len) as usize;
        if !(FIXED..=MAX_RECORD).contains(&len) {
            return Err(CaptureError::Corrupt("record length out of bounds"));
        }
        let mut rec = vec![0u8; len];
        if !read_full(&mut self.input, &mut rec)? {
            return Ok(None);
        }
        let mut off = [0u8; 8];
        off.copy_from_slice(&rec[..8]);
        let tlen = usize::from(u16::from_le_bytes([rec[10], rec[11]]));
        if FIXED + tlen > len {
            return Err(CaptureError::Corrupt("topic longer than record"));
        }
        let topic = std::str::from_utf8(&rec[FIXED..FIXED + tlen])
            .map_err(|_| CaptureError::Corrupt("topic is not UTF-8"))?
            .to_owned();
        Ok(Some(CapturedMessage {
            offset_ns: u64::from_le_bytes(off),
            qos: rec[8],
            retain: rec[9] & RECORD_RETAIN != 0,
            payload: rec[FIXED + tlen..].to_vec(),
            topic,
        }))
    }
}

impl Iterator for CaptureReader {
    type Item = Result<CapturedMessage, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_message().transpose()
    }
}

/// Fills `buf`; false on a clean or partial end of input.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A zstd stream cut mid-frame reports an error; treat it like a cut record.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<CapturedMessage> {
        (0..100)
            .map(|i| CapturedMessage {
                offset_ns: i * 1_000_000,
                topic: format!("city/ba-dinh/airquality/aq-{i:04}/up"),
                payload: vec![i as u8; i as usize],
                qos: (i % 3) as u8,
                retain: i % 7 == 0,
            })
            .collect()
    }

    #[test]
    fn round_trip_both_encodings_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        for compress in [false, true] {
            let p = dir.path().join(format!("c{compress}"));
            let mut w = CaptureWriter::create(&p, 42, compress).unwrap();
            for m in msgs() {
                w.write(&m).unwrap();
            }
            assert_eq!(w.finish().unwrap(), 100);
            let r = CaptureReader::open(&p).unwrap();
            assert_eq!(r.start_unix_ns(), 42);
            let back: Vec<_> = r.collect::<Result<_, _>>().unwrap();
            assert_eq!(back, msgs());
            if !compress {
                // Cut the last record in half: the others still read.
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() - 50]).unwrap();
                let back: Vec<_> = CaptureReader::open(&p)
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(back.len(), 99);
            }
        }
        std::fs::write(dir.path().join("x"), b"not a capture file at all").unwrap();
        assert!(matches!(
            CaptureReader::open(&dir.path().join("x")),
            Err(CaptureError::Magic)
        ));
    }
}
