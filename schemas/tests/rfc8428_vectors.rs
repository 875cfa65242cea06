//! The examples of RFC 8428 as test vectors, both codecs, and round trips.

use schemas::senml::{self, OwnedPack, Record, Resolver, Time, Value, cbor, json};

/// RFC 8428 section 6: the CBOR representation of the example in section 5.1.2.
const RFC_CBOR_HEX: &str = "82a421781c\
75726e3a6465763a6f773a31306532303733613031303830303633\
3a0067766f6c7461676501615602fb405e066666666666a3006763757272656e74\
01614102fb3ff3333333333333";

const RFC_5_1_2_JSON: &str = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
     {"n":"current","u":"A","v":1.2}
   ]"#;

const RFC_5_1_6_JSON: &str = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]"#;

const RFC_5_1_7_JSON: &str = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063:","bt":1.320078429e+09,
      "bu":"%RH","v":20.0},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965}
   ]"#;

#[test]
fn rfc_cbor_example_decodes() {
    let bytes = hex::decode(RFC_CBOR_HEX).unwrap();
    let recs = cbor::decode_vec(&bytes).unwrap();
    assert_eq!(recs.len(), 2);
    let mut res = Resolver::new();
    let a = res.resolve(&recs[0]).unwrap();
    let b = res.resolve(&recs[1]).unwrap();
    assert_eq!(
        a.full_name().to_string(),
        "urn:dev:ow:10e2073a01080063:voltage"
    );
    assert_eq!((a.unit, a.number()), (Some("V"), Some(120.1)));
    assert_eq!(
        b.full_name().to_string(),
        "urn:dev:ow:10e2073a01080063:current"
    );
    assert_eq!((b.unit, b.number()), (Some("A"), Some(1.2)));
}

#[test]
fn rfc_cbor_example_encodes_byte_for_byte() {
    let pack = json::decode_owned(RFC_5_1_2_JSON.as_bytes()).unwrap();
    let recs: Vec<Record<'_>> = pack.records().collect();
    let mut buf = [0u8; 128];
    let n = cbor::encode(&recs, &mut buf).unwrap();
    assert_eq!(hex::encode(&buf[..n]), RFC_CBOR_HEX);
}

#[test]
fn rfc_multiple_datapoints_resolve() {
    let pack = json::decode_owned(RFC_5_1_6_JSON.as_bytes()).unwrap();
    let mut res = Resolver::new();
    let resolved: Vec<_> = pack
        .records
        .iter()
        .map(|r| {
            let r = res.resolve(&r.as_record()).unwrap();
            (
                r.full_name().to_string(),
                r.unit.map(String::from),
                r.number().unwrap(),
                r.time,
            )
        })
        .collect();
    assert_eq!(resolved.len(), 7);
    assert_eq!(resolved[0].0, "urn:dev:ow:10e2073a01080063:voltage");
    assert_eq!(resolved[0].1.as_deref(), Some("V"));
    assert_eq!(resolved[1].1.as_deref(), Some("A"), "base unit applies");
    assert_eq!(resolved[1].3, Time::Absolute(1.276020076001e9 - 5.0));
    assert_eq!(resolved[6].3, Time::Absolute(1.276020076001e9));
    assert_eq!(resolved[6].2, 1.7);
}

#[test]
fn rfc_multiple_measurements_use_base_name_alone() {
    let pack = json::decode_owned(RFC_5_1_7_JSON.as_bytes()).unwrap();
    let mut res = Resolver::new();
    let first = res.resolve(&pack.records[0].as_record()).unwrap();
    assert_eq!(
        first.full_name().to_string(),
        "urn:dev:ow:10e2073a01080063:"
    );
    let lat = res.resolve(&pack.records[2].as_record()).unwrap();
    assert_eq!((lat.unit, lat.number()), (Some("lat"), Some(60.07965)));
}

#[test]
fn json_and_cbor_agree() {
    let pack = json::decode_owned(RFC_5_1_6_JSON.as_bytes()).unwrap();
    let recs: Vec<Record<'_>> = pack.records().collect();
    let mut c = [0u8; 512];
    let n = cbor::encode(&recs, &mut c).unwrap();
    let back = OwnedPack::from_records(cbor::decode(&c[..n]).unwrap()).unwrap();
    assert_eq!(back, pack);
    let mut j = [0u8; 1024];
    let n = json::encode(&recs, &mut j).unwrap();
    assert_eq!(json::decode_owned(&j[..n]).unwrap(), pack);
    assert_eq!(senml::decode_any(&j[..n]).unwrap(), pack);
    assert_eq!(
        senml::decode_any(&c[..cbor::encode(&recs, &mut [0; 512]).unwrap()]).unwrap(),
        pack
    );
}

#[test]
fn malformed_inputs_are_errors_not_panics() {
    let good = hex::decode(RFC_CBOR_HEX).unwrap();
    for cut in 0..good.len() {
        let r = cbor::decode(&good[..cut]).and_then(|it| it.collect::<Result<Vec<_>, _>>());
        assert!(r.is_err(), "truncated at {cut} accepted");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(cbor::decode_vec(&trailing).is_err());
    assert!(matches!(
        cbor::decode(&[0x80]),
        Err(senml::DecodeError::Empty)
    ));
    assert!(cbor::decode(b"\xa1\x00\x01").is_err(), "map at top level");
    for bad in [
        &b"{\"n\":1}"[..],
        b"[{\"v\":\"x\"}]",
        b"[1,2]",
        b"[]",
        b"[{\"n\":\"a\",\"v\":1}",
        b"[{\"n\":\"a\",\"v\":1}] x",
        b"\xff\xfe",
    ] {
        assert!(
            senml::decode_any(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        json::decode_owned(br#"[{"n":"a","v":1,"foo_":2}]"#),
        Err(senml::DecodeError::MustUnderstand)
    );
    // Unknown labels without the must-understand suffix are ignored.
    assert!(json::decode_owned(br#"[{"n":"a","v":1,"foo":{"x":[1]}}]"#).is_ok());
}

#[test]
fn seq_extension_travels_in_both_codecs() {
    let recs = [
        Record {
            base_name: Some("aq-0001:"),
            seq: Some(4_000_000_000),
            ..Record::measurement("pm25", "ug/m3", 41.5)
        },
        Record::measurement("pm10", "ug/m3", 60.0),
    ];
    let mut buf = [0u8; 256];
    let n = cbor::encode(&recs, &mut buf).unwrap();
    let dec = cbor::decode_vec(&buf[..n]).unwrap();
    assert_eq!(dec[0].seq, Some(4_000_000_000));
    let mut res = Resolver::new();
    res.resolve(&dec[0]).unwrap();
    assert_eq!(res.seq(), Some(4_000_000_000));
    let n = json::encode(&recs, &mut buf).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(text.contains("\"seq\":4000000000"), "{text}");
    assert_eq!(
        json::decode_owned(&buf[..n]).unwrap().records[0].seq,
        Some(4_000_000_000)
    );
}

#[test]
fn data_values_are_base64url_in_json() {
    let recs = [Record {
        name: Some("blob"),
        value: Some(Value::Data(&[0xfb, 0xff, 0x00])),
        ..Default::default()
    }];
    let mut buf = [0u8; 64];
    let n = json::encode(&recs, &mut buf).unwrap();
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        r#"[{"n":"blob","vd":"-_8A"}]"#
    );
    let back = json::decode_owned(&buf[..n]).unwrap();
    assert_eq!(
        back.records[0].as_record().value,
        Some(Value::Data(&[0xfb, 0xff, 0x00]))
    );
}

/// A typical air-quality station's report: six metrics, sequence number, absolute time.
#[test]
fn typical_air_quality_pack_size() {
    let recs = [
        Record {
            base_name: Some("aq-0001:"),
            base_time: Some(1_767_600_000.0),
            seq: Some(1234),
            ..Record::measurement("pm1", "ug/m3", 28.0)
        },
        Record::measurement("pm25", "ug/m3", 41.5),
        Record::measurement("pm10", "ug/m3", 63.0),
        Record::measurement("temperature", "Cel", 17.3),
        Record::measurement("relativeHumidity", "%RH", 86.0),
        Record::measurement("pressure", "hPa", 1017.2),
    ];
    let mut c = [0u8; 512];
    let mut j = [0u8; 512];
    let cbor_len = cbor::encode(&recs, &mut c).unwrap();
    let json_len = json::encode(&recs, &mut j).unwrap();
    println!("6-metric air-quality pack: SenML-CBOR {cbor_len} bytes, SenML-JSON {json_len} bytes");
    assert!(cbor_len < json_len, "CBOR must be the compact format");
    assert!(cbor_len <= 160, "CBOR pack grew to {cbor_len} bytes");
}
