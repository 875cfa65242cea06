//! Golden SenML-CBOR vectors: the exact bytes the node puts on the wire, kept in
//! `tests/vectors/` so that the gateway's tests decode the same files.
//!
//! `tests/vectors/manifest.json` lists each file with what it must decode to. When the
//! encoding changes on purpose, regenerate with `UPDATE_VECTORS=1 cargo test -p firmware
//! --test vectors` and review the diff: any other change to these bytes breaks deployed
//! gateways' expectations.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use common::decode;
use firmware::drivers::{Metric, Reading, metric};
use firmware::encode::{PackHeader, base_name, encode_pack};
use schemas::senml::Time;

struct Vector {
    file: &'static str,
    what: &'static str,
    device: &'static str,
    seq: u32,
    unix_ms: Option<u64>,
    readings: Vec<(&'static Metric, f64)>,
}

/// 2026-11-22T22:00:00Z.
const T0_MS: u64 = 1_795_384_800_000;

fn vectors() -> Vec<Vector> {
    // Gauges go through f32 in the sampler, as they do on the device.
    let g = |v: f64| f64::from(v as f32);
    vec![
        Vector {
            file: "airquality-6-metrics.cbor",
            what: "air-quality station, PMS5003 + BME280, time known",
            device: "aq-0001",
            seq: 41,
            unix_ms: Some(T0_MS + 999),
            readings: vec![
                (metric!("pm1"), g(7.0)),
                (metric!("pm25"), g(12.5)),
                (metric!("pm10"), g(20.25)),
                (metric!("temperature"), g(28.4)),
                (metric!("relativeHumidity"), g(78.5)),
                (metric!("pressure"), g(1008.3)),
            ],
        },
        Vector {
            file: "airquality-relative-time.cbor",
            what: "air-quality station before SNTP: no bt, the gateway stamps on receipt",
            device: "aq-0002",
            seq: 0,
            unix_ms: None,
            readings: vec![(metric!("pm25"), g(35.0)), (metric!("co2"), g(612.0))],
        },
        Vector {
            file: "wifi-counters.cbor",
            what: "Wi-Fi access point: counters past 2^32 stay exact",
            device: "wifi-hk-017",
            seq: 1234,
            unix_ms: Some(T0_MS + 60_000),
            readings: vec![
                (metric!("clientsConnected"), g(23.25)),
                (metric!("rssi"), g(-67.5)),
                (metric!("channelUtilization"), g(41.0)),
                (metric!("rxBytes"), 5_368_709_121.0),
                (metric!("txBytes"), 21_474_836_481.0),
                (metric!("authFailures"), 3.0),
                (metric!("uptime"), 864_000.0),
            ],
        },
        Vector {
            file: "noise-with-dropped.cbor",
            what: "noise meter after an outage: droppedReadings reports lost readings",
            device: "noise-07",
            seq: 90,
            unix_ms: Some(T0_MS + 120_000),
            readings: vec![
                (metric!("LAeq"), g(71.3)),
                (metric!("droppedReadings"), 16.0),
            ],
        },
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn encode(v: &Vector) -> Vec<u8> {
    let bn = base_name(v.device);
    let header = PackHeader {
        base_name: &bn,
        unix_ms: v.unix_ms,
        seq: v.seq,
    };
    let readings: Vec<Reading> = v
        .readings
        .iter()
        .map(|&(metric, value)| Reading { metric, value })
        .collect();
    let mut buf = [0u8; 512];
    let n = encode_pack(&header, &readings, &mut buf).expect("encodes");
    buf[..n].to_vec()
}

fn manifest(vs: &[Vector]) -> String {
    let mut s = String::from("[\n");
    for (i, v) in vs.iter().enumerate() {
        let time = v
            .unix_ms
            .map_or("null".to_string(), |ms| (ms / 1000).to_string());
        write!(
            s,
            "  {{\"file\": \"{}\", \"what\": \"{}\", \"device\": \"{}\", \"base_name\": \"{}:\", \
             \"seq\": {}, \"time\": {}, \"bytes\": {}, \"readings\": {{",
            v.file,
            v.what,
            v.device,
            v.device,
            v.seq,
            time,
            encode(v).len()
        )
        .expect("string");
        for (j, (m, val)) in v.readings.iter().enumerate() {
            let sep = if j == 0 { "" } else { ", " };
            write!(
                s,
                "{sep}\"{}\": {{\"v\": {val:?}, \"u\": \"{}\"}}",
                m.name, m.unit
            )
            .expect("string");
        }
        s.push_str(if i + 1 == vs.len() { "}}\n" } else { "}},\n" });
    }
    s.push_str("]\n");
    s
}

#[test]
fn golden_vectors_match_the_encoder_and_decode_to_their_values() {
    let vs = vectors();
    let update = std::env::var_os("UPDATE_VECTORS").is_some();
    if update {
        std::fs::create_dir_all(dir()).expect("vectors dir");
        for v in &vs {
            std::fs::write(dir().join(v.file), encode(v)).expect("write vector");
        }
        std::fs::write(dir().join("manifest.json"), manifest(&vs)).expect("write manifest");
    }
    for v in &vs {
        let path = dir().join(v.file);
        let golden = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_VECTORS=1 to create)",
                path.display()
            )
        });
        assert_eq!(encode(v), golden, "{} changed", v.file);

        let d = decode(&golden);
        assert_eq!(d.base_name, format!("{}:", v.device));
        assert_eq!(d.seq, Some(v.seq));
        let expected_time = match v.unix_ms {
            Some(ms) => Time::Absolute((ms / 1000) as f64),
            None => Time::Relative(0.0),
        };
        assert_eq!(d.time, expected_time, "{}", v.file);
        let got: Vec<_> = d
            .records
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_deref(), r.2))
            .collect();
        let want: Vec<_> = v
            .readings
            .iter()
            .map(|(m, val)| (m.name, Some(m.unit), *val))
            .collect();
        assert_eq!(got, want, "{}", v.file);
        // Every name is a catalog metric and every value is in its valid range.
        for (name, unit, val) in got {
            let m = schemas::catalog::lookup(name).expect("catalog name");
            assert_eq!(Some(m.unit), unit);
            assert!(m.in_range(val), "{name} = {val}");
        }
    }
    let on_disk = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest");
    assert_eq!(on_disk, manifest(&vs), "manifest.json is stale");
}

#[test]
fn a_six_metric_pack_is_small() {
    let v = &vectors()[0];
    let n = encode(v).len();
    // Reported in the README as the bytes on the wire per 6-metric pack.
    eprintln!("6-metric air-quality pack: {n} bytes");
    assert!(n <= 160, "{n} bytes");
}
