//! Helpers shared by the integration tests: messages of every format, stamped now.
#![allow(dead_code, clippy::unwrap_used)]

use ingest::Inbound;
use ingest::message::now_ns;
use schemas::senml::{Record, cbor};

/// A whole second near now, so SenML/Tasmota times are exact.
pub fn now_s() -> i64 {
    now_ns() / 1_000_000_000
}

pub fn msg(topic: &str, payload: impl Into<Vec<u8>>) -> Inbound {
    Inbound {
        topic: topic.to_owned(),
        payload: payload.into().into(),
        received_at_ns: now_ns(),
        retained: false,
    }
}

/// A SenML-CBOR pack from `device` with `seq`, base time `t` and (name, unit, value)s.
pub fn senml_cbor(device: &str, seq: u32, t: i64, readings: &[(&str, &str, f64)]) -> Vec<u8> {
    let bn = format!("{device}:");
    let mut records: Vec<Record<'_>> = readings
        .iter()
        .map(|(n, u, v)| Record::measurement(n, u, *v))
        .collect();
    records[0].base_name = Some(&bn);
    records[0].base_time = Some(t as f64);
    records[0].seq = Some(seq);
    let mut buf = vec![0u8; 1024];
    let n = cbor::encode(&records, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

pub fn senml_topic(device: &str) -> String {
    format!("city/hoan-kiem/airquality/{device}/up")
}

/// Tasmota local time (Hanoi, +07:00) for the UTC second `t`.
pub fn tasmota_time(t: i64) -> String {
    let local = chrono::DateTime::from_timestamp(t + 7 * 3600, 0).unwrap();
    local.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string()
}
