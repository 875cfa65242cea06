//! The hot tier's chunk codec: one series' readings, times and values, as one compressed
//! block (the `data` column of the `chunks` table, see [`crate::hot`]).
//!
//! Layout: a format byte (1), the byte length of the times part as a little-endian `u32`,
//! the times (`i64` ns, ascending) as a standalone [pco](https://docs.rs/pco) file, then the
//! values (`f64`) as another. Pco is lossless to the bit (negative zero, subnormals, any
//! gap between times) and finds on its own what a sensor series offers: near-constant time
//! deltas, values that repeat or move in small steps, decimals of fixed precision.

use pco::ChunkConfig;
use pco::standalone::{simple_compress_into, simple_decompress};

use crate::error::{IngestError, Result};

/// The layout written by [`encode`].
const FORMAT: u8 = 1;

/// Pco's compression level (0..=12; its default is 8). Chunks are small (a flush's worth
/// of one series), where the higher levels find little more and cost encoding time on the
/// applier's thread.
const LEVEL: usize = 4;

fn corrupt(detail: impl std::fmt::Display) -> IngestError {
    IngestError::Chunk(detail.to_string())
}

/// Appends the chunk of `ts` (ascending) and `values` (as many) to `out`.
pub fn encode(ts: &[i64], values: &[f64], out: &mut Vec<u8>) -> Result<()> {
    debug_assert_eq!(ts.len(), values.len());
    let cfg = ChunkConfig::default().with_compression_level(LEVEL);
    out.push(FORMAT);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let before = out.len();
    let out = simple_compress_into(ts, &cfg, out).map_err(corrupt)?;
    let ts_len = u32::try_from(out.len() - before).map_err(corrupt)?;
    out[len_at..len_at + 4].copy_from_slice(&ts_len.to_le_bytes());
    simple_compress_into(values, &cfg, out).map_err(corrupt)?;
    Ok(())
}

/// Decodes a chunk written by [`encode`], appending to `ts` and `values`.
pub fn decode(data: &[u8], ts: &mut Vec<i64>, values: &mut Vec<f64>) -> Result<()> {
    let (&format, rest) = data.split_first().ok_or_else(|| corrupt("empty"))?;
    if format != FORMAT {
        return Err(corrupt(format!("unknown format {format}")));
    }
    let (len, rest) = rest.split_at_checked(4).ok_or_else(|| corrupt("short"))?;
    let len = u32::from_le_bytes(len.try_into().map_err(corrupt)?) as usize;
    let (t, v) = rest.split_at_checked(len).ok_or_else(|| corrupt("short"))?;
    let t: Vec<i64> = simple_decompress(t).map_err(corrupt)?;
    let v: Vec<f64> = simple_decompress(v).map_err(corrupt)?;
    if t.len() != v.len() {
        return Err(corrupt(format!("{} times, {} values", t.len(), v.len())));
    }
    ts.extend_from_slice(&t);
    values.extend_from_slice(&v);
    Ok(())
}

/// Decodes a chunk into `(time, value)` pairs, appending to `out`.
pub fn decode_pairs(data: &[u8], out: &mut Vec<(i64, f64)>) -> Result<()> {
    let (mut t, mut v) = (Vec::new(), Vec::new());
    decode(data, &mut t, &mut v)?;
    out.extend(t.into_iter().zip(v));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(ts: &[i64], values: &[f64]) -> (Vec<i64>, Vec<f64>) {
        let mut buf = Vec::new();
        encode(ts, values, &mut buf).unwrap();
        let (mut t, mut v) = (Vec::new(), Vec::new());
        decode(&buf, &mut t, &mut v).unwrap();
        (t, v)
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
        let mut buf = Vec::new();
        encode(&[1, 2, 3], &[1.0, 2.0, 3.0], &mut buf).unwrap();
        assert!(decode(&[], &mut Vec::new(), &mut Vec::new()).is_err());
        assert!(decode(&buf[..3], &mut Vec::new(), &mut Vec::new()).is_err());
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(decode(&bad, &mut Vec::new(), &mut Vec::new()).is_err());
    }

    #[test]
    fn a_regular_series_compresses() {
        let ts: Vec<i64> = (0..360)
            .map(|i| 1_780_000_000_000_000_000 + i * 10_000_000_000)
            .collect();
        let values: Vec<f64> = (0..360).map(|i| 20.0 + f64::from(i % 17) / 10.0).collect();
        let mut buf = Vec::new();
        encode(&ts, &values, &mut buf).unwrap();
        assert!(buf.len() < 360 * 16 / 4, "{} bytes", buf.len());
    }
}
