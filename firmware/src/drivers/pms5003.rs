//! Plantower PMS5003 particulate sensor on a UART: a byte-at-a-time frame parser and the
//! sensor driver around it.
//!
//! In its default active mode the sensor streams a 32-byte frame every 0.2 to 2.3 s:
//!
//! ```text
//! 0x42 0x4D  len(=28, u16 BE)  13 data words (u16 BE)  checksum (u16 BE: sum of bytes 0..30)
//! ```
//!
//! Data words 4..6 are the "atmospheric environment" concentrations (PM1.0, PM2.5, PM10 in
//! ug/m3), the ones meant for ambient air; words 1..3 are the factory "CF=1" values.
//!
//! A UART drops and corrupts bytes (buffer overruns while the CPU is busy with Wi-Fi,
//! noise on long cables), so the parser never trusts a frame boundary: a frame with a bad
//! header, length or checksum is rejected and the parser rescans the bytes it already holds
//! for the next `0x42 0x4D`, so a truncated frame followed by a good one still yields the
//! good one. The crates.io `pmsx003` crate reads whole frames with blocking reads and
//! cannot resynchronise inside a buffered stream, hence this small parser.
//!
//! The fan needs about 30 s after power-on before readings are stable: until then the
//! driver reports [`SensorStatus::WarmingUp`] and discards frames.

use embedded_io::{Read, ReadReady};

use super::{Fault, Readings, Sensor, SensorStatus, metric};

/// Bytes in one frame.
pub const FRAME_LEN: usize = 32;
const HEADER: [u8; 2] = [0x42, 0x4D];
/// The length field: 13 data words and the checksum.
const LENGTH_FIELD: u16 = 28;

/// One decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// PM1.0 / PM2.5 / PM10, factory CF=1 calibration, ug/m3.
    pub pm_cf1: [u16; 3],
    /// PM1.0 / PM2.5 / PM10, atmospheric environment, ug/m3.
    pub pm_atm: [u16; 3],
    /// Particles per 0.1 L beyond 0.3, 0.5, 1.0, 2.5, 5.0 and 10 um.
    pub counts: [u16; 6],
    /// Reserved word (firmware version and error code on some revisions).
    pub reserved: u16,
}

impl Frame {
    /// Builds the 32 wire bytes of this frame (for tests and simulated sensors).
    pub fn to_bytes(&self) -> [u8; FRAME_LEN] {
        let mut b = [0u8; FRAME_LEN];
        b[..2].copy_from_slice(&HEADER);
        b[2..4].copy_from_slice(&LENGTH_FIELD.to_be_bytes());
        let words = self
            .pm_cf1
            .iter()
            .chain(&self.pm_atm)
            .chain(&self.counts)
            .chain(core::iter::once(&self.reserved));
        for (i, w) in words.enumerate() {
            b[4 + 2 * i..6 + 2 * i].copy_from_slice(&w.to_be_bytes());
        }
        let sum = checksum(&b[..30]);
        b[30..].copy_from_slice(&sum.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8; FRAME_LEN]) -> Self {
        let w = |i: usize| u16::from_be_bytes([b[4 + 2 * i], b[5 + 2 * i]]);
        Frame {
            pm_cf1: [w(0), w(1), w(2)],
            pm_atm: [w(3), w(4), w(5)],
            counts: [w(6), w(7), w(8), w(9), w(10), w(11)],
            reserved: w(12),
        }
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    bytes
        .iter()
        .fold(0u16, |s, &b| s.wrapping_add(u16::from(b)))
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is not 28.
    #[error("PMS5003 frame length field is not 28")]
    Length,
    /// The checksum does not match the bytes.
    #[error("PMS5003 frame checksum mismatch")]
    Checksum,
}

/// Counters of what the parser saw, for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParserStats {
    /// Frames accepted.
    pub frames: u32,
    /// Frames rejected for their checksum.
    pub checksum_errors: u32,
    /// Frames rejected for their length field.
    pub length_errors: u32,
    /// Bytes thrown away while looking for a header.
    pub skipped_bytes: u32,
}

/// Byte-at-a-time PMS5003 frame parser.
#[derive(Debug, Clone)]
pub struct FrameParser {
    buf: [u8; FRAME_LEN],
    pos: usize,
    stats: ParserStats,
}

impl Default for FrameParser {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameParser {
    /// A parser waiting for a header.
    pub const fn new() -> Self {
        Self {
            buf: [0; FRAME_LEN],
            pos: 0,
            stats: ParserStats {
                frames: 0,
                checksum_errors: 0,
                length_errors: 0,
                skipped_bytes: 0,
            },
        }
    }

    /// What the parser has seen so far.
    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Forgets a partial frame (e.g. after a UART error or a long silence).
    pub fn reset(&mut self) {
        self.stats.skipped_bytes += self.pos as u32;
        self.pos = 0;
    }

    /// Feeds one byte. Returns a frame when this byte completes a valid one, an error when
    /// it completes an invalid one (the parser has already resynchronised), else `None`.
    pub fn feed(&mut self, byte: u8) -> Option<Result<Frame, FrameError>> {
        self.buf[self.pos] = byte;
        self.pos += 1;
        if let Err(e) = self.check_prefix() {
            self.resync();
            return e;
        }
        if self.pos < FRAME_LEN {
            return None;
        }
        let expected = u16::from_be_bytes([self.buf[30], self.buf[31]]);
        if checksum(&self.buf[..30]) != expected {
            self.stats.checksum_errors += 1;
            self.resync();
            return Some(Err(FrameError::Checksum));
        }
        self.pos = 0;
        self.stats.frames += 1;
        Some(Ok(Frame::from_bytes(&self.buf)))
    }

    /// Feeds many bytes and returns the last valid frame among them, if any.
    pub fn feed_all(&mut self, bytes: &[u8]) -> Option<Frame> {
        bytes
            .iter()
            .filter_map(|&b| self.feed(b))
            .filter_map(Result::ok)
            .last()
    }

    /// Checks what can be checked of the bytes held so far. `Err(None)` is a plain
    /// mismatch while hunting for a header, `Err(Some(_))` a rejected frame.
    fn check_prefix(&mut self) -> Result<(), Option<Result<Frame, FrameError>>> {
        if self.pos >= 1 && self.buf[0] != HEADER[0] {
            return Err(None);
        }
        if self.pos >= 2 && self.buf[1] != HEADER[1] {
            return Err(None);
        }
        if self.pos >= 4 && u16::from_be_bytes([self.buf[2], self.buf[3]]) != LENGTH_FIELD {
            self.stats.length_errors += 1;
            return Err(Some(Err(FrameError::Length)));
        }
        Ok(())
    }

    /// Drops the first held byte and slides to the next candidate header inside the held
    /// bytes, repeating until the held prefix is plausible (or nothing is held).
    fn resync(&mut self) {
        loop {
            let next = self.buf[1..self.pos]
                .iter()
                .position(|&b| b == HEADER[0])
                .map(|i| i + 1);
            match next {
                None => {
                    self.stats.skipped_bytes += self.pos as u32;
                    self.pos = 0;
                    return;
                }
                Some(start) => {
                    self.stats.skipped_bytes += start as u32;
                    self.buf.copy_within(start..self.pos, 0);
                    self.pos -= start;
                    // A length error found here was already part of a rejected frame:
                    // the plain header hunt decides, without counting it twice.
                    let plausible = !(self.pos >= 2 && self.buf[1] != HEADER[1]
                        || self.pos >= 4
                            && u16::from_be_bytes([self.buf[2], self.buf[3]]) != LENGTH_FIELD);
                    if plausible {
                        return;
                    }
                }
            }
        }
    }
}

/// Settings of the PMS5003 driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pms5003Config {
    /// Sampling interval. Default 5 000 ms: the sensor updates every 1 to 2.3 s and the
    /// sampler averages over the reporting period anyway.
    pub interval_ms: u32,
    /// Fan spin-up time after power-on, during which frames are discarded. Default
    /// 30 000 ms (Plantower data sheet: "at least 30 s after the sensor wakes up").
    pub warmup_ms: u32,
    /// With no valid frame for this long the sensor is reported as faulty. Default
    /// 10 000 ms: several missed frames even in the sensor's slowest mode.
    pub stale_after_ms: u32,
}

impl Default for Pms5003Config {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            warmup_ms: 30_000,
            stale_after_ms: 10_000,
        }
    }
}

/// Largest plausible concentration (the sensor's effective range is 0..500 ug/m3, the
/// maximum 1000): anything above is a corrupted frame that happened to pass the checksum.
const MAX_PLAUSIBLE_UG_M3: u16 = 1000;

/// PMS5003 on a UART in active mode. The UART must not block: the driver only reads what
/// `read_ready` says is there.
#[derive(Debug)]
pub struct Pms5003<U> {
    uart: U,
    cfg: Pms5003Config,
    parser: FrameParser,
    powered_at_ms: u64,
    latest: Option<Frame>,
    last_frame_ms: Option<u64>,
    fresh: bool,
    last_error: Option<Fault>,
}

/// Most bytes read per sample: a few frames' worth. If the UART holds more, the rest is
/// read on the next sample; only the latest frame matters.
const MAX_BYTES_PER_SAMPLE: usize = 8 * FRAME_LEN;

impl<U: Read + ReadReady> Pms5003<U> {
    /// A driver for a sensor that was powered on at `powered_at_ms` (monotonic ms).
    pub fn new(uart: U, cfg: Pms5003Config, powered_at_ms: u64) -> Self {
        Self {
            uart,
            cfg,
            parser: FrameParser::new(),
            powered_at_ms,
            latest: None,
            last_frame_ms: None,
            fresh: false,
            last_error: None,
        }
    }

    /// Parser counters.
    pub fn stats(&self) -> ParserStats {
        self.parser.stats()
    }

    /// Gives the UART back.
    pub fn release(self) -> U {
        self.uart
    }

    /// Reads what the UART holds and parses it.
    fn drain(&mut self, now_ms: u64) {
        let mut chunk = [0u8; FRAME_LEN];
        let mut total = 0;
        while total < MAX_BYTES_PER_SAMPLE {
            match self.uart.read_ready() {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    self.bus_error();
                    break;
                }
            }
            let n = match self.uart.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => {
                    self.bus_error();
                    break;
                }
            };
            total += n;
            for &b in &chunk[..n] {
                match self.parser.feed(b) {
                    Some(Ok(frame)) => {
                        self.latest = Some(frame);
                        self.last_frame_ms = Some(now_ms);
                        self.fresh = true;
                        self.last_error = None;
                    }
                    Some(Err(_)) => self.last_error = Some(Fault::Checksum),
                    None => {}
                }
            }
        }
    }

    fn bus_error(&mut self) {
        // Bytes around a UART error (overrun, framing) are suspect: start a fresh frame.
        self.parser.reset();
        self.last_error = Some(Fault::Bus);
    }
}

impl<U: Read + ReadReady> Sensor for Pms5003<U> {
    fn interval_ms(&self) -> u32 {
        self.cfg.interval_ms
    }

    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus {
        self.drain(now_ms);
        let up_for = now_ms.saturating_sub(self.powered_at_ms);
        if up_for < u64::from(self.cfg.warmup_ms) {
            self.fresh = false;
            let remaining_ms = (u64::from(self.cfg.warmup_ms) - up_for) as u32;
            return SensorStatus::WarmingUp { remaining_ms };
        }
        let Some(frame) = self.latest.filter(|_| self.fresh) else {
            let silent_since = self
                .last_frame_ms
                .unwrap_or(self.powered_at_ms + u64::from(self.cfg.warmup_ms));
            if now_ms.saturating_sub(silent_since) >= u64::from(self.cfg.stale_after_ms) {
                return SensorStatus::Fault(self.last_error.unwrap_or(Fault::NoData));
            }
            return SensorStatus::NoNewData;
        };
        self.fresh = false;
        let [pm1, pm25, pm10] = frame.pm_atm;
        if pm1.max(pm25).max(pm10) > MAX_PLAUSIBLE_UG_M3 {
            return SensorStatus::Fault(Fault::InvalidData);
        }
        out.push(metric!("pm1"), f64::from(pm1));
        out.push(metric!("pm25"), f64::from(pm25));
        out.push(metric!("pm10"), f64::from(pm10));
        SensorStatus::Ok
    }
}
