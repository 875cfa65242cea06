//! Helpers shared by the host tests: a scripted sensor and a pack decoder.
#![allow(dead_code)]

use firmware::drivers::{Metric, Readings, Sensor, SensorStatus};
use schemas::senml::{Resolver, Time, Value, cbor};

/// A sensor that reports a scripted sequence of values for one metric; `None` entries are
/// samples where the sensor warms up.
pub struct Script {
    pub interval_ms: u32,
    pub metric: &'static Metric,
    pub values: Vec<Option<f64>>,
    pub next: usize,
    pub sampled_at: Vec<u64>,
}

impl Script {
    pub fn new(metric: &'static Metric, interval_ms: u32, values: &[f64]) -> Self {
        Self {
            interval_ms,
            metric,
            values: values.iter().copied().map(Some).collect(),
            next: 0,
            sampled_at: Vec::new(),
        }
    }

    /// A sensor whose value is `f(n)` for the n-th sample (forever).
    pub fn counting(metric: &'static Metric, interval_ms: u32) -> Self {
        Self::new(metric, interval_ms, &[])
    }
}

impl Sensor for Script {
    fn interval_ms(&self) -> u32 {
        self.interval_ms
    }
    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus {
        self.sampled_at.push(now_ms);
        let i = self.next;
        self.next += 1;
        let v = if self.values.is_empty() {
            Some(i as f64)
        } else {
            self.values.get(i % self.values.len()).copied().flatten()
        };
        match v {
            Some(v) => {
                out.push(self.metric, v);
                SensorStatus::Ok
            }
            None => SensorStatus::WarmingUp { remaining_ms: 0 },
        }
    }
}

/// A decoded pack: base name, seq, time of the first record, and (name, unit, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub base_name: String,
    pub seq: Option<u32>,
    pub time: Time,
    pub records: Vec<(String, Option<String>, f64)>,
}

impl Decoded {
    pub fn value(&self, name: &str) -> Option<f64> {
        self.records.iter().find(|r| r.0 == name).map(|r| r.2)
    }
}

/// Decodes a SenML-CBOR pack with the schemas crate's decoder and resolver.
pub fn decode(pack: &[u8]) -> Decoded {
    let mut resolver = Resolver::new();
    let mut out = Decoded {
        base_name: String::new(),
        seq: None,
        time: Time::Relative(f64::NAN),
        records: Vec::new(),
    };
    for (i, rec) in cbor::decode(pack).expect("pack header").enumerate() {
        let rec = rec.expect("record");
        let r = resolver.resolve(&rec).expect("resolvable record");
        if i == 0 {
            out.base_name = r.base_name.to_string();
            out.time = r.time;
        }
        assert_eq!(r.time, out.time, "all records of a pack share one time");
        let Some(Value::Float(v)) = r.value else {
            panic!("record without a number: {r:?}")
        };
        out.records
            .push((r.name.to_string(), r.unit.map(str::to_string), v));
    }
    out.seq = resolver.seq();
    out
}
