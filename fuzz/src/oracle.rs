//! The oracles: what every decoder must do with any input. Each function takes raw bytes
//! as they could arrive from the network and panics (the fuzzer's crash signal) when a
//! decoder panics, accepts something it must not, or disagrees with its own encoder.
//!
//! The same file serves the fuzz targets (`fuzz/fuzz_targets/*`) and the ordinary test
//! over the nasty corpus (`tests/tests/nasty_inputs.rs` includes it with `#[path]`), so
//! both check the same properties.

use schemas::meta::{Meta, MetaError, OwnedMeta};
use schemas::senml::{
    self, EncodeError, OwnedPack, RELATIVE_TIME_LIMIT, Record, Resolver, Time, Value, cbor, json,
};
use schemas::topic::{self, DeviceKind, Topic};

/// Largest encode buffer tried for one pack. A decoded pack re-encodes to a bounded
/// multiple of its input (JSON spells `1e-300` with 300 digits), so 64 MiB is only ever
/// reached by an encoder that loops or lies about its length.
const MAX_ENCODE_BUF: usize = 64 << 20;

/// Every decoder and parser, on the same bytes.
pub fn all(data: &[u8]) {
    senml_cbor(data);
    senml_json(data);
    topic(data);
    meta(data);
}

/// SenML-CBOR: `decode_any`'s sniffing (see [`senml_any`]), the borrowing iterator, `decode_vec`, base-field resolution, and the
/// round trips CBOR -> records -> CBOR and records -> JSON -> records.
pub fn senml_cbor(data: &[u8]) {
    senml_any(data);
    let Ok(mut iter) = cbor::decode(data) else {
        return;
    };
    let mut records = Vec::new();
    let mut failed = None;
    for item in iter.by_ref() {
        match item {
            Ok(r) => records.push(r),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        // Every record takes at least one byte (an empty map), so a pack cannot hold
        // more records than it has bytes: more would mean the iterator does not advance.
        assert!(
            records.len() <= data.len(),
            "more records ({}) than input bytes ({})",
            records.len(),
            data.len()
        );
    }
    assert!(
        iter.next().is_none(),
        "the record iterator yields after its end"
    );
    let collected = cbor::decode_vec(data);
    match (&failed, &collected) {
        (None, Ok(v)) => assert_same(v, &records, "decode_vec disagrees with the iterator"),
        (Some(e1), Err(e2)) => assert_eq!(e1, e2, "decode_vec fails differently"),
        _ => panic!("decode_vec ({collected:?}) disagrees with the iterator ({failed:?})"),
    }
    if failed.is_some() {
        return;
    }
    assert!(!records.is_empty(), "an empty pack decoded without error");
    resolve_all(&records);
    roundtrip_records(&records, data.len());
}

/// SenML-JSON: `decode_any`'s sniffing, `decode_owned`, resolution, and the round trips JSON -> records -> JSON and
/// records -> CBOR -> records.
pub fn senml_json(data: &[u8]) {
    senml_any(data);
    let Ok(pack) = json::decode_owned(data) else {
        return;
    };
    assert!(
        !pack.records.is_empty(),
        "an empty pack decoded without error"
    );
    let records: Vec<Record<'_>> = pack.records().collect();
    resolve_all(&records);
    roundtrip_records(&records, data.len());
}

/// `decode_any` must pick the decoder the first byte names and agree with it exactly.
pub fn senml_any(data: &[u8]) {
    let any = senml::decode_any(data);
    let direct = if senml::looks_like_json(data) {
        json::decode_owned(data)
    } else {
        cbor::decode(data).and_then(OwnedPack::from_records)
    };
    assert_same(
        &any,
        &direct,
        "decode_any disagrees with the decoder it sniffed",
    );
    if let Ok(pack) = any {
        let records: Vec<Record<'_>> = pack.records().collect();
        resolve_all(&records);
    }
}

/// Equality that holds for NaN too: two runs of the same decoder on the same bytes must
/// agree bit for bit, and `Debug` prints every `f64` distinctly (NaN included).
fn assert_same<T: std::fmt::Debug>(a: &T, b: &T, what: &str) {
    let (a, b) = (format!("{a:?}"), format!("{b:?}"));
    assert!(a == b, "{what}:\n  {a}\n  {b}");
}

/// Resolves a pack and checks what a resolved record promises: a valid name, finite
/// numbers, and the relative/absolute split at 2^28.
fn resolve_all(records: &[Record<'_>]) {
    let mut resolver = Resolver::new();
    for r in records {
        let Ok(res) = resolver.resolve(r) else {
            // Packs are rejected as a whole at the first bad record; no need to go on.
            return;
        };
        assert!(!res.full_name().is_empty(), "resolved an empty name");
        assert!(
            res.full_name()
                .to_string()
                .bytes()
                .all(|b| b.is_ascii_graphic()),
            "resolved name with non-printable bytes"
        );
        if let Some(Value::Float(v)) = res.value {
            assert!(v.is_finite(), "resolved a non-finite value");
        }
        if let Some(s) = res.sum {
            assert!(s.is_finite(), "resolved a non-finite sum");
        }
        assert!(
            res.value.is_some() || res.sum.is_some(),
            "resolved without value or sum"
        );
        match res.time {
            Time::Absolute(t) => assert!(t.is_finite() && t >= RELATIVE_TIME_LIMIT),
            Time::Relative(t) => assert!(t.is_finite() && t < RELATIVE_TIME_LIMIT),
        }
    }
    assert_eq!(resolver.seq(), records.first().and_then(|r| r.seq));
}

/// Whether any number of the pack is NaN or infinite (the encoders refuse those).
fn has_non_finite(records: &[Record<'_>]) -> bool {
    let bad = |v: Option<f64>| v.is_some_and(|v| !v.is_finite());
    records.iter().any(|r| {
        bad(r.base_time)
            || bad(r.base_value)
            || bad(r.base_sum)
            || bad(r.sum)
            || bad(r.time)
            || bad(r.update_time)
            || matches!(r.value, Some(Value::Float(v)) if !v.is_finite())
    })
}

/// Encodes with growing buffers until the encoder stops asking for room.
fn encode_growing(
    records: &[Record<'_>],
    start: usize,
    encode: fn(&[Record<'_>], &mut [u8]) -> Result<usize, EncodeError>,
) -> Result<Vec<u8>, EncodeError> {
    let mut size = start.max(64);
    loop {
        let mut buf = vec![0u8; size];
        match encode(records, &mut buf) {
            Ok(n) => {
                assert!(n <= buf.len(), "encoder reports more bytes than its buffer");
                buf.truncate(n);
                return Ok(buf);
            }
            Err(EncodeError::BufferTooSmall) if size < MAX_ENCODE_BUF => size *= 4,
            Err(e) => return Err(e),
        }
    }
}

/// Decoded records -> CBOR and JSON -> the same records, and encoding is stable.
pub fn roundtrip_records(records: &[Record<'_>], input_len: usize) {
    if records.is_empty() {
        return;
    }
    let non_finite = has_non_finite(records);
    // CBOR: numbers may widen (an f32 integer becomes a 9-byte integer), so twice the
    // input is enough; the loop only guards against a wrong guess.
    match encode_growing(records, 2 * input_len + 64, cbor::encode) {
        Ok(bytes) => {
            assert!(!non_finite, "CBOR encoder accepted a non-finite number");
            let back = cbor::decode_vec(&bytes)
                .unwrap_or_else(|e| panic!("own CBOR does not decode: {e} ({bytes:02x?})"));
            assert_eq!(back, records, "CBOR round trip changed the pack");
            let again = encode_growing(&back, bytes.len(), cbor::encode)
                .unwrap_or_else(|e| panic!("re-encoding CBOR failed: {e}"));
            assert_eq!(again, bytes, "CBOR encoding is not stable");
        }
        Err(EncodeError::NonFinite) => assert!(non_finite, "CBOR encoder: false NonFinite"),
        Err(e) => panic!("CBOR encoder failed: {e}"),
    }
    match encode_growing(records, 4 * input_len + 64, json::encode) {
        Ok(bytes) => {
            assert!(!non_finite, "JSON encoder accepted a non-finite number");
            let back = json::decode_owned(&bytes).unwrap_or_else(|e| {
                panic!(
                    "own JSON does not decode: {e} ({})",
                    String::from_utf8_lossy(&bytes)
                )
            });
            let back: Vec<Record<'_>> = back.records().collect();
            assert_eq!(back, records, "JSON round trip changed the pack");
            let again = encode_growing(&back, bytes.len(), json::encode)
                .unwrap_or_else(|e| panic!("re-encoding JSON failed: {e}"));
            assert_eq!(again, bytes, "JSON encoding is not stable");
        }
        Err(EncodeError::NonFinite) => assert!(non_finite, "JSON encoder: false NonFinite"),
        Err(e) => panic!("JSON encoder failed: {e}"),
    }
}

/// The topic parser: never panics on any UTF-8, and what it accepts prints back to the
/// same string and passes the slug rules.
pub fn topic(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Topic::parse(s) else {
        return;
    };
    topic::check_slug(t.district).unwrap_or_else(|e| panic!("bad district accepted: {e}"));
    topic::check_slug(t.device).unwrap_or_else(|e| panic!("bad device accepted: {e}"));
    assert_eq!(t.to_string(), s, "topic does not print back to itself");
    let h = t
        .to_heapless::<{ topic::MAX_TOPIC_LEN }>()
        .unwrap_or_else(|e| panic!("a parsed topic does not fit MAX_TOPIC_LEN: {e}"));
    assert_eq!(h.as_str(), s);
    assert_eq!(Topic::parse(&h), Ok(t));
}

/// The retained `meta` decoder, and the device-side encoder on what it accepts.
pub fn meta(data: &[u8]) {
    let Ok(m) = OwnedMeta::decode(data) else {
        return;
    };
    let (Some(kind), Some(district), Some(period_s)) = (
        m.kind.as_deref().and_then(DeviceKind::parse),
        m.district.as_deref(),
        m.period_s,
    ) else {
        return;
    };
    // The device encoder writes a position only when it has both finite coordinates.
    let (lat, lon) = match (m.lat, m.lon) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() => (Some(a), Some(b)),
        (None, None) => (None, None),
        _ => return,
    };
    let sensors: Vec<&str> = m.sensors.iter().map(String::as_str).collect();
    let device_side = Meta {
        firmware: &m.firmware,
        kind,
        district,
        sensors: &sensors,
        lat,
        lon,
        period_s,
    };
    // Two coordinates of at most ~330 digits each, and the rest no longer than the input.
    let mut buf = vec![0u8; data.len() + 1024];
    let n = match device_side.encode(&mut buf) {
        Ok(n) => n,
        // Names needing JSON escapes are refused by design.
        Err(MetaError::BadName) => return,
        Err(e) => panic!("meta encoder failed: {e}"),
    };
    let back = OwnedMeta::decode(&buf[..n]).unwrap_or_else(|e| {
        panic!(
            "own meta JSON does not decode: {e} ({})",
            String::from_utf8_lossy(&buf[..n])
        )
    });
    assert_eq!(back.firmware, m.firmware);
    assert_eq!(back.kind, m.kind);
    assert_eq!(back.district, m.district);
    assert_eq!(back.sensors, m.sensors);
    assert_eq!((back.lat, back.lon), (lat, lon));
    assert_eq!(back.period_s, m.period_s);
}
