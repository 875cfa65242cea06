//! The hot tier's chunk codec: one series' readings, times and values, as one compressed
//! block (the `data` column of the `chunks` table, see [`crate::hot`]).
//!
//! The scheme is Gorilla's (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time
//! Series Database", VLDB 2015), as Prometheus's and VictoriaMetrics' heads use it: times
//! as deltas of deltas, values as the XOR with the previous value with its leading and
//! trailing zero bits elided. It costs tens of nanoseconds per reading whatever the chunk
//! size. Pco (<https://docs.rs/pco>) compresses better, but its per-chunk setup dominates
//! at the sizes a flush writes: measured on this machine, 1.4 µs per reading for chunks of
//! 20 readings and 0.2-0.4 µs for 100-360, against a budget of 1 µs per reading for the
//! whole gateway; see `ingest/README.md`. The Gorilla crates on crates.io are
//! unmaintained or pre-release, so the codec is here, with a property test.
//!
//! Layout (format 2): a format byte, the reading count (`u32` LE), the time unit as a
//! power of ten (`u8`: the largest of 10^9, 10^6, 10^3, 1 that divides every time's
//! distance from the first), then a bit stream, most significant bit first:
//! - the first time (64 bits) and value (64 bits) as they are;
//! - per later reading, the delta of deltas `dod` in units, zigzag-coded:
//!   `0` (zero), `10`+7 bits, `110`+20 bits, `1110`+32 bits, `1111`+64 bits;
//! - then its value XOR the previous: `0` (equal), `10` + the meaningful bits inside the
//!   previous window of leading and trailing zeros, or `11` + 6 bits of leading zeros +
//!   6 bits of (meaningful bits - 1) + the meaningful bits.
//!
//! Lossless to the bit: negative zero, subnormals, any gap between times.

use crate::error::{IngestError, Result};

/// The layout written by [`encode`].
const FORMAT: u8 = 2;

fn corrupt(detail: impl std::fmt::Display) -> IngestError {
    IngestError::Chunk(detail.to_string())
}

/// Bits appended most significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc` (less than 8 between calls).
    n: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, acc: 0, n: 0 }
    }

    /// Appends the low `bits` bits of `v` (`bits` <= 64).
    fn put(&mut self, v: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        if bits > 56 {
            self.put(v >> 32, bits - 32);
            self.put(v & 0xffff_ffff, 32);
            return;
        }
        let v = if bits == 64 {
            v
        } else {
            v & ((1u64 << bits) - 1)
        };
        self.acc = (self.acc << bits) | v;
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u64 << self.n) - 1;
    }

    fn finish(mut self) {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put(0, pad);
        }
    }
}

/// Bits read most significant first.
struct BitReader<'a> {
    data: &'a [u8],
    /// Next bit, counted from the start.
    pos: usize,
}

impl BitReader<'_> {
    fn get(&mut self, bits: u32) -> Result<u64> {
        let end = self.pos + bits as usize;
        if end > self.data.len() * 8 {
            return Err(corrupt("bit stream ends early"));
        }
        let mut v = 0u64;
        let mut left = bits;
        while left > 0 {
            let byte = self.data[self.pos / 8];
            let used = (self.pos % 8) as u32;
            let take = (8 - used).min(left);
            let chunk = (u64::from(byte) >> (8 - used - take)) & ((1u64 << take) - 1);
            v = (v << take) | chunk;
            self.pos += take as usize;
            left -= take;
        }
        Ok(v)
    }

    fn bit(&mut self) -> Result<bool> {
        Ok(self.get(1)? == 1)
    }
}

/// Delta-of-delta classes: (prefix, prefix bits, payload bits).
const DOD_CLASSES: [(u64, u32, u32); 4] = [
    (0b10, 2, 7),
    (0b110, 3, 20),
    (0b1110, 4, 32),
    (0b1111, 4, 64),
];

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends the chunk of `readings` (time, value), ascending in time, to `out`.
pub fn encode(readings: &[(i64, f64)], out: &mut Vec<u8>) -> Result<()> {
    let count = u32::try_from(readings.len()).map_err(corrupt)?;
    out.push(FORMAT);
    out.extend_from_slice(&count.to_le_bytes());
    let Some(&(t0, v0)) = readings.first() else {
        out.push(0);
        return Ok(());
    };
    // The coarsest unit every distance from the first time is a multiple of (times are
    // ascending; otherwise the unit is 1 ns).
    let ascending = readings.iter().all(|(t, _)| *t >= t0);
    let exp = [9u8, 6, 3]
        .into_iter()
        .find(|e| {
            let unit = 10u64.pow(u32::from(*e));
            ascending
                && readings
                    .iter()
                    .all(|(t, _)| (t.wrapping_sub(t0) as u64).is_multiple_of(unit))
        })
        .unwrap_or(0);
    out.push(exp);
    let unit = 10u64.pow(u32::from(exp));
    let mut w = BitWriter::new(out);
    w.put(t0 as u64, 64);
    w.put(v0.to_bits(), 64);
    // Units since the first time, their deltas and deltas of deltas, all modulo 2^64: the
    // decoder's additions undo the subtractions exactly, and each time fits an i64.
    let (mut prev_u, mut prev_delta) = (0u64, 0i64);
    let mut prev_v = v0.to_bits();
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for &(t, v) in &readings[1..] {
        let u = t.wrapping_sub(t0) as u64 / unit;
        let delta = u.wrapping_sub(prev_u) as i64;
        let dod = delta.wrapping_sub(prev_delta);
        (prev_u, prev_delta) = (u, delta);
        if dod == 0 {
            w.put(0, 1);
        } else {
            let z = zigzag(dod);
            let &(prefix, pbits, bits) = DOD_CLASSES
                .iter()
                .find(|(_, _, bits)| *bits == 64 || z < 1u64 << bits)
                .unwrap_or(&DOD_CLASSES[3]);
            w.put(prefix, pbits);
            w.put(z, bits);
        }
        let x = v.to_bits() ^ prev_v;
        prev_v = v.to_bits();
        if x == 0 {
            w.put(0, 1);
            continue;
        }
        let (l, r) = (x.leading_zeros(), x.trailing_zeros());
        if lead != u32::MAX && l >= lead && r >= trail {
            w.put(0b10, 2);
            w.put(x >> trail, 64 - lead - trail);
        } else {
            let l = l.min(63);
            let meaningful = 64 - l - r;
            w.put(0b11, 2);
            w.put(u64::from(l), 6);
            w.put(u64::from(meaningful - 1), 6);
            w.put(x >> r, meaningful);
            (lead, trail) = (l, r);
        }
    }
    w.finish();
    Ok(())
}

/// Decodes a chunk written by [`encode`], appending its (time, value) readings to `out`.
pub fn decode(data: &[u8], out: &mut Vec<(i64, f64)>) -> Result<()> {
    let (&format, rest) = data.split_first().ok_or_else(|| corrupt("empty"))?;
    if format != FORMAT {
        return Err(corrupt(format!("unknown format {format}")));
    }
    let (count, rest) = rest.split_at_checked(4).ok_or_else(|| corrupt("short"))?;
    let count = u32::from_le_bytes(count.try_into().map_err(corrupt)?) as usize;
    let (&exp, rest) = rest.split_first().ok_or_else(|| corrupt("short"))?;
    if count == 0 {
        return Ok(());
    }
    if exp > 18 || count > rest.len() * 8 {
        return Err(corrupt("bad header"));
    }
    let unit = 10u64.pow(u32::from(exp));
    out.reserve(count);
    let mut r = BitReader { data: rest, pos: 0 };
    let t0 = r.get(64)? as i64;
    let mut prev_v = r.get(64)?;
    out.push((t0, f64::from_bits(prev_v)));
    let (mut prev_u, mut prev_delta) = (0u64, 0i64);
    let (mut lead, mut trail) = (0u32, 0u32);
    for _ in 1..count {
        let dod = if !r.bit()? {
            0
        } else {
            let mut class = 0;
            while class < 3 && r.bit()? {
                class += 1;
            }
            unzigzag(r.get(DOD_CLASSES[class].2)?)
        };
        let delta = prev_delta.wrapping_add(dod);
        let u = prev_u.wrapping_add(delta as u64);
        (prev_u, prev_delta) = (u, delta);
        let t = t0.wrapping_add(u.wrapping_mul(unit) as i64);
        let x = if !r.bit()? {
            0
        } else if !r.bit()? {
            if lead + trail >= 64 {
                return Err(corrupt("value window before any"));
            }
            r.get(64 - lead - trail)? << trail
        } else {
            let l = r.get(6)? as u32;
            let meaningful = r.get(6)? as u32 + 1;
            if l + meaningful > 64 {
                return Err(corrupt("value window out of range"));
            }
            (lead, trail) = (l, 64 - l - meaningful);
            r.get(meaningful)? << trail
        };
        prev_v ^= x;
        out.push((t, f64::from_bits(prev_v)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(ts: &[i64], values: &[f64]) -> Vec<(i64, f64)> {
        ts.iter().copied().zip(values.iter().copied()).collect()
    }

    fn encoded(ts: &[i64], values: &[f64]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&pairs(ts, values), &mut buf).unwrap();
        buf
    }

    fn roundtrip(ts: &[i64], values: &[f64]) -> (Vec<i64>, Vec<f64>) {
        let mut out = Vec::new();
        decode(&encoded(ts, values), &mut out).unwrap();
        out.into_iter().unzip()
    }

    /// Finite values and the edges a codec gets wrong: zeros of both signs, subnormals,
    /// the extremes, values one ulp apart.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => -1.0e6f64..1.0e6,
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => Just(f64::MIN_POSITIVE),
            1 => Just(-f64::MIN_POSITIVE),
            1 => Just(f64::from_bits(1)),
            1 => Just(-f64::from_bits(1)),
            1 => Just(f64::MAX),
            1 => Just(f64::MIN),
            1 => Just(f64::EPSILON),
            1 => (0u64..(1 << 52)).prop_map(f64::from_bits),
            1 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
            2 => (0i32..1000).prop_map(|i| f64::from(i) / 10.0),
        ]
    }

    /// Ascending distinct times: regular steps, jitter, and gaps of any size up to years.
    fn times() -> impl Strategy<Value = Vec<i64>> {
        (
            -4_000_000_000_000_000_000i64..4_000_000_000_000_000_000,
            prop::collection::vec(
                prop_oneof![
                    4 => Just(10_000_000_000i64),
                    2 => 1i64..10_000_000_000,
                    1 => 1i64..1_000_000_000_000_000_000,
                    1 => Just(1i64),
                ],
                0..600,
            ),
        )
            .prop_map(|(start, steps)| {
                let mut t = start;
                let mut out = vec![t];
                for s in steps {
                    match t.checked_add(s) {
                        Some(n) => {
                            t = n;
                            out.push(t);
                        }
                        None => break,
                    }
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn returns_every_time_and_value_bit_for_bit(
            (ts, values) in times().prop_flat_map(|ts| {
                let n = ts.len();
                (Just(ts), prop::collection::vec(value(), n))
            })
        ) {
            let (t, v) = roundtrip(&ts, &values);
            prop_assert_eq!(t, ts);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&v), bits(&values));
        }
    }

    #[test]
    fn extremes_and_empty() {
        let ts = [i64::MIN, -1, 0, 1, i64::MAX];
        let values = [-0.0, f64::from_bits(1), f64::MAX, f64::MIN, 0.0];
        let (t, v) = roundtrip(&ts, &values);
        assert_eq!(t, ts);
        assert_eq!(
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(roundtrip(&[], &[]), (vec![], vec![]));
    }

    #[test]
    fn damage_is_an_error() {
        let buf = encoded(&[1, 2, 3], &[1.0, 2.0, 3.0]);
        assert!(decode(&[], &mut Vec::new()).is_err());
        assert!(decode(&buf[..3], &mut Vec::new()).is_err());
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(decode(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_regular_series_compresses() {
        // An hour every 10 s of a value that changes every 5 minutes: one bit per time and
        // per repeated value, under a byte per reading in all.
        let ts: Vec<i64> = (0..360)
            .map(|i| 1_780_000_000_000_000_000 + i * 10_000_000_000)
            .collect();
        let values: Vec<f64> = (0..360).map(|i| 20.0 + f64::from(i / 30) / 10.0).collect();
        let buf = encoded(&ts, &values);
        assert!(buf.len() < 360, "{} bytes", buf.len());
        // Receipt times in ns with jitter still decode exactly (see the property test).
        let jitter: Vec<i64> = ts.iter().map(|t| t + (t % 7_919) * 1_013).collect();
        let (t, _) = roundtrip(&jitter, &values);
        assert_eq!(t, jitter);
    }

    #[test]
    fn times_in_any_order_decode_exactly() {
        let ts = [5, -3, i64::MAX, 0, i64::MIN, 7];
        let values = [1.0; 6];
        let (t, _) = roundtrip(&ts, &values);
        assert_eq!(t, ts);
    }
}
