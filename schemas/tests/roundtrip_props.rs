//! Property tests: anything encodable decodes back to the same records, in both codecs.

use proptest::prelude::*;
use schemas::senml::{OwnedPack, OwnedRecord, OwnedValue, Record, cbor, json};

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1.0e12f64..1.0e12),
        (-100_000i64..100_000).prop_map(|i| i as f64),
        (-1000.0f32..1000.0).prop_map(f64::from),
        Just(0.0),
        Just(1.767_600_000_123e9),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:./_\\- \"\\\\\u{e9}\u{1}]{0,20}"
}

fn value() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        finite().prop_map(OwnedValue::Float),
        text().prop_map(OwnedValue::Str),
        any::<bool>().prop_map(OwnedValue::Bool),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(OwnedValue::Data),
    ]
}

prop_compose! {
    fn record()(
        base_name in proptest::option::of(text()),
        base_time in proptest::option::of(finite()),
        base_unit in proptest::option::of(text()),
        base_value in proptest::option::of(finite()),
        base_sum in proptest::option::of(finite()),
        base_version in proptest::option::of(0u64..20),
        name in proptest::option::of(text()),
        unit in proptest::option::of(text()),
        value in proptest::option::of(value()),
        sum in proptest::option::of(finite()),
        time in proptest::option::of(finite()),
        update_time in proptest::option::of(finite()),
        seq in proptest::option::of(any::<u32>()),
    ) -> OwnedRecord {
        OwnedRecord { base_name, base_time, base_unit, base_value, base_sum, base_version,
                      name, unit, value, sum, time, update_time, seq }
    }
}

proptest! {
    #[test]
    fn cbor_round_trip(pack in proptest::collection::vec(record(), 1..8)) {
        let recs: Vec<Record<'_>> = pack.iter().map(OwnedRecord::as_record).collect();
        let mut buf = vec![0u8; 8192];
        let n = cbor::encode(&recs, &mut buf).unwrap();
        let back = OwnedPack::from_records(cbor::decode(&buf[..n]).unwrap()).unwrap();
        prop_assert_eq!(back.records, pack);
    }

    #[test]
    fn json_round_trip(pack in proptest::collection::vec(record(), 1..8)) {
        let recs: Vec<Record<'_>> = pack.iter().map(OwnedRecord::as_record).collect();
        let mut buf = vec![0u8; 16384];
        let n = json::encode(&recs, &mut buf).unwrap();
        let back = json::decode_owned(&buf[..n]);
        prop_assert!(back.is_ok(), "{:?} for {}", back, String::from_utf8_lossy(&buf[..n]));
        prop_assert_eq!(back.unwrap().records, pack);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = schemas::senml::decode_any(&bytes);
        if let Ok(it) = cbor::decode(&bytes) { let _ = it.collect::<Vec<_>>(); }
    }

    #[test]
    fn topics_never_panic(s in "[a-z/+#0-9-]{0,60}") {
        if let Ok(t) = schemas::topic::Topic::parse(&s) {
            prop_assert_eq!(t.to_string(), s);
        }
    }
}
