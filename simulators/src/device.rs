//! One simulated device as a sans-IO state machine: it is told the time, samples its
//! model, applies faults and says what to put on the wire ([`Event`]). The fleet runner
//! does the MQTT I/O; tests drive devices directly, without a broker.
//!
//! Native devices mirror the firmware core's behaviour: one SenML-CBOR pack per period,
//! `seq` counting packs since boot, a bounded backlog of packs while the link is down
//! that is flushed oldest-first on reconnect, and a `droppedReadings` report when the
//! backlog overflowed.

use std::collections::VecDeque;

use rand::Rng;
use schemas::topic::{Channel, DeviceKind, HANOI_DISTRICTS, STATUS_OFFLINE, STATUS_ONLINE, Topic};

use crate::faults::FaultRates;
use crate::formats::{self, Format, FormatMix, Sender};
use crate::model::{self, DeviceRng, Model, Place, Reading, Site, device_rng, metrics_of};

/// Packs a device keeps while offline (the firmware's default backlog size).
pub const BACKLOG_PACKS: usize = 32;

/// Row flags in the manifest.
pub mod flags {
    /// The message carries no time: the gateway stamps it on receipt.
    pub const RECEIPT_TIME: u8 = 1;
    /// A spike fault pushed the value outside the catalog range: validation should reject it.
    pub const OUT_OF_RANGE: u8 = 2;
    /// A deliberate second publish of the same pack.
    pub const DUPLICATE: u8 = 4;
    /// Sent late, from the backlog after an outage.
    pub const BACKLOG: u8 = 8;
    /// The device's clock is skewed (fault): the time is off, and a gateway may refuse
    /// it as too far in the future or the past.
    pub const SKEWED: u8 = 16;
}

/// A reading as it went out.
#[derive(Debug, Clone, PartialEq)]
pub struct SentReading {
    /// Catalog metric name.
    pub metric: &'static str,
    /// The reading's time as the device stated it, Unix ms (the simulated time when the
    /// format carries no time).
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
    /// [`flags`] bits.
    pub flags: u8,
}

/// One MQTT publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Retain flag (birth messages).
    pub retain: bool,
    /// Readings the message carries (empty for birth messages and garbled payloads).
    pub readings: Vec<SentReading>,
    /// The payload was garbled on purpose.
    pub malformed: bool,
}

/// What the device wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// (Re)connect and publish the birth messages that follow.
    LinkUp,
    /// The link drops abruptly: no DISCONNECT, so the broker publishes the last will.
    LinkDown,
    /// Publish a message.
    Publish(Outgoing),
}

/// Static description of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    /// Device id slug.
    pub id: String,
    /// Kind.
    pub kind: DeviceKind,
    /// Where it stands.
    pub site: Site,
    /// Wire format.
    pub format: Format,
    /// Reporting period, seconds.
    pub period_s: u32,
    /// Offset of this device's reports within the period, seconds.
    pub phase_s: u32,
}

/// Counters of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStats {
    /// Packs produced.
    pub packs: u64,
    /// Readings dropped from a full backlog.
    pub dropped: u64,
    /// Reboots.
    pub reboots: u64,
    /// Outages.
    pub outages: u64,
    /// Garbled payloads.
    pub malformed: u64,
    /// Duplicate publishes.
    pub duplicates: u64,
}

/// One simulated device.
#[derive(Debug, Clone)]
pub struct SimDevice {
    spec: DeviceSpec,
    apikey: String,
    rng: DeviceRng,
    model: Model,
    faults: FaultRates,
    /// Clock error, seconds.
    skew_s: i64,
    /// Simulated time of the next report.
    next_s: i64,
    seq: u32,
    stuck: Vec<Option<(f64, u32)>>,
    outage_left: u32,
    backlog: VecDeque<Outgoing>,
    dropped_unreported: u64,
    stats: DeviceStats,
    started: bool,
    buf: Vec<Reading>,
}

/// Short id prefix of each kind.
pub fn kind_prefix(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::AirQuality => "aq",
        DeviceKind::Weather => "wx",
        DeviceKind::Noise => "nz",
        DeviceKind::Wifi => "wf",
    }
}

/// How many devices of each kind, and how they behave.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPlan {
    /// Fleet seed: the same seed gives the same devices and the same traffic.
    pub seed: u64,
    /// Devices per kind.
    pub counts: [(DeviceKind, usize); 4],
    /// Reporting period, seconds. Default 60.
    pub period_s: u32,
    /// Share of foreign formats.
    pub mix: FormatMix,
    /// Prefix of device ids, to run several fleets against one broker. Default empty.
    pub id_prefix: String,
}

impl FleetPlan {
    /// The device specs, in a stable order.
    pub fn specs(&self) -> Vec<DeviceSpec> {
        let mut out = Vec::new();
        for (kind, n) in self.counts {
            for i in 0..n {
                let id = format!("{}{}-{:04}", self.id_prefix, kind_prefix(kind), i + 1);
                let h = model::stable_hash(&id) ^ model::mix64(self.seed);
                let u = |k: u64| model::city_uniform(h, k, 0);
                let district = HANOI_DISTRICTS[(i + (h as usize % 5)) % HANOI_DISTRICTS.len()];
                let place = pick_place(kind, district, u(1));
                // A format that cannot carry any of the kind's metrics (Tasmota for a
                // Wi-Fi access point) falls back to native.
                let format = Some(self.mix.pick(u(2)))
                    .filter(|f| formats::kind_speaks(kind, *f))
                    .unwrap_or(Format::Senml);
                out.push(DeviceSpec {
                    format,
                    phase_s: (u(3) * f64::from(self.period_s)) as u32,
                    period_s: self.period_s,
                    site: Site { district, place },
                    kind,
                    id,
                });
            }
        }
        out
    }
}

fn pick_place(kind: DeviceKind, district: &str, u: f64) -> Place {
    let lake_district = matches!(district, "hoan-kiem" | "tay-ho" | "ba-dinh");
    let table: &[(Place, f64)] = match kind {
        DeviceKind::AirQuality => &[
            (Place::MainRoad, 0.4),
            (Place::Residential, 0.3),
            (Place::Market, 0.1),
            (Place::LakeSide, 0.1),
        ],
        DeviceKind::Noise => &[
            (Place::MainRoad, 0.6),
            (Place::Market, 0.15),
            (Place::Residential, 0.15),
        ],
        DeviceKind::Weather => &[
            (Place::Residential, 0.5),
            (Place::LakeSide, 0.2),
            (Place::MainRoad, 0.2),
        ],
        DeviceKind::Wifi if lake_district => &[
            (Place::LakeSide, 0.5),
            (Place::Market, 0.2),
            (Place::Office, 0.1),
            (Place::MainRoad, 0.1),
        ],
        DeviceKind::Wifi => &[
            (Place::Market, 0.35),
            (Place::Office, 0.25),
            (Place::LakeSide, 0.1),
            (Place::MainRoad, 0.15),
        ],
    };
    let mut acc = 0.0;
    for &(p, share) in table {
        acc += share;
        if u < acc {
            return p;
        }
    }
    if kind == DeviceKind::Wifi {
        Place::Residential
    } else {
        Place::Office
    }
}

impl SimDevice {
    /// A device of the fleet seeded `seed`, first reporting at `start_s + phase`.
    pub fn new(
        spec: DeviceSpec,
        seed: u64,
        start_s: i64,
        faults: FaultRates,
        apikey: &str,
    ) -> Self {
        let mut rng = device_rng(seed, &spec.id);
        let model = Model::new(spec.kind, spec.site, seed, &mut rng);
        let skew_s = if faults.skew > 0.0 && rng.random::<f64>() < faults.skew {
            let mag = rng.random_range(10..=900);
            if rng.random::<bool>() { mag } else { -mag }
        } else {
            0
        };
        let n = metrics_of(spec.kind).len();
        Self {
            next_s: start_s + i64::from(spec.phase_s),
            apikey: apikey.to_owned(),
            spec,
            rng,
            model,
            faults,
            skew_s,
            seq: 0,
            stuck: vec![None; n],
            outage_left: 0,
            backlog: VecDeque::new(),
            dropped_unreported: 0,
            stats: DeviceStats::default(),
            started: false,
            buf: Vec::with_capacity(n + 1),
        }
    }

    /// The spec.
    pub fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    /// Counters.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Clock error of this device, seconds.
    pub fn skew_s(&self) -> i64 {
        self.skew_s
    }

    /// Simulated time of the next report.
    pub fn next_due_s(&self) -> i64 {
        self.next_s
    }

    fn sender(&self) -> Sender<'_> {
        Sender {
            device: &self.spec.id,
            district: self.spec.site.district,
            kind: self.spec.kind,
            apikey: &self.apikey,
        }
    }

    /// The last will: topic and payload, retained.
    pub fn will(&self) -> Option<(String, Vec<u8>)> {
        let id = &self.spec.id;
        match self.spec.format {
            Format::Senml => {
                let t = Topic::new(self.spec.site.district, self.spec.kind, id, Channel::Status)
                    .ok()?;
                Some((t.to_string(), STATUS_OFFLINE.to_vec()))
            }
            Format::Tasmota => Some((format!("tele/{id}/LWT"), b"Offline".to_vec())),
            Format::Esphome => Some((format!("{id}/status"), b"offline".to_vec())),
            // Formats without a will (and any the fleet does not know).
            _ => None,
        }
    }

    /// Messages published right after connecting (retained).
    pub fn birth(&self) -> Vec<Outgoing> {
        let id = &self.spec.id;
        let retained = |topic: String, payload: Vec<u8>| Outgoing {
            topic,
            payload,
            retain: true,
            readings: Vec::new(),
            malformed: false,
        };
        match self.spec.format {
            Format::Senml => {
                let Ok(t) =
                    Topic::new(self.spec.site.district, self.spec.kind, id, Channel::Status)
                else {
                    return Vec::new();
                };
                let meta = formats::meta_json(&self.sender(), self.spec.period_s);
                vec![
                    retained(t.to_string(), STATUS_ONLINE.to_vec()),
                    retained(t.with_channel(Channel::Meta).to_string(), meta),
                ]
            }
            Format::Tasmota => vec![retained(format!("tele/{id}/LWT"), b"Online".to_vec())],
            Format::Esphome => vec![retained(format!("{id}/status"), b"online".to_vec())],
            _ => Vec::new(),
        }
    }

    /// Powers the device on: it connects at once, before its first report is due.
    /// [`Self::step`] does this itself if it was not done.
    pub fn boot(&mut self, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            out.push(Event::LinkUp);
        }
    }

    /// Runs the report due at [`Self::next_due_s`] and schedules the next one.
    pub fn step(&mut self, out: &mut Vec<Event>) {
        let now = self.next_s;
        self.next_s += i64::from(self.spec.period_s);
        if !self.started {
            self.started = true;
            out.push(Event::LinkUp);
        }
        if self.faults.reboot > 0.0 && self.rng.random::<f64>() < self.faults.reboot {
            self.reboot(out);
        }
        let Some(msgs) = self.produce(now) else {
            return;
        };
        if self.outage_left > 0 {
            self.queue(msgs);
            self.outage_left -= 1;
            if self.outage_left == 0 {
                out.push(Event::LinkUp);
                while let Some(mut m) = self.backlog.pop_front() {
                    m.readings
                        .iter_mut()
                        .for_each(|r| r.flags |= flags::BACKLOG);
                    out.push(Event::Publish(m));
                }
            }
            return;
        }
        if self.faults.outage > 0.0 && self.rng.random::<f64>() < self.faults.outage {
            self.stats.outages += 1;
            self.outage_left = self.rng.random_range(3..=30);
            out.push(Event::LinkDown);
            self.queue(msgs);
            return;
        }
        for m in msgs {
            let dup = self.faults.dup > 0.0 && self.rng.random::<f64>() < self.faults.dup;
            if dup {
                self.stats.duplicates += 1;
                let mut copy = m.clone();
                copy.readings
                    .iter_mut()
                    .for_each(|r| r.flags |= flags::DUPLICATE);
                out.push(Event::Publish(m));
                out.push(Event::Publish(copy));
            } else {
                out.push(Event::Publish(m));
            }
        }
    }

    fn reboot(&mut self, out: &mut Vec<Event>) {
        self.stats.reboots += 1;
        self.seq = 0;
        self.model.reboot();
        // RAM is lost: the backlog and the outage with it (the board rejoins Wi-Fi).
        self.backlog.clear();
        self.outage_left = 0;
        self.stuck.iter_mut().for_each(|s| *s = None);
        out.push(Event::LinkDown);
        out.push(Event::LinkUp);
    }

    fn queue(&mut self, msgs: Vec<Outgoing>) {
        for m in msgs {
            if self.backlog.len() >= BACKLOG_PACKS
                && let Some(old) = self.backlog.pop_front()
            {
                let n = old.readings.len() as u64;
                self.stats.dropped += n;
                self.dropped_unreported += n;
            }
            self.backlog.push_back(m);
        }
    }

    /// Samples, applies reading faults and encodes; `None` if every reading dropped out.
    fn produce(&mut self, now: i64) -> Option<Vec<Outgoing>> {
        self.buf.clear();
        self.model
            .sample(now, self.spec.period_s, &mut self.rng, &mut self.buf);
        let mut oor = Vec::with_capacity(self.buf.len() + 1);
        let mut kept = Vec::with_capacity(self.buf.len() + 1);
        for (i, r) in self.buf.iter().enumerate() {
            let mut r = *r;
            let f = self.faults;
            if f.stuck > 0.0 {
                match &mut self.stuck[i] {
                    Some((v, left)) => {
                        r.value = *v;
                        *left -= 1;
                        if *left == 0 {
                            self.stuck[i] = None;
                        }
                    }
                    None if self.rng.random::<f64>() < f.stuck => {
                        self.stuck[i] = Some((r.value, self.rng.random_range(10..=100)));
                    }
                    None => {}
                }
            }
            if f.spike > 0.0 && self.rng.random::<f64>() < f.spike {
                let factor = self.rng.random_range(3.0..20.0);
                r.value = weather_round(if r.value == 0.0 {
                    r.metric.max * 0.5 * factor
                } else {
                    r.value * factor
                });
            }
            if f.dropout > 0.0 && self.rng.random::<f64>() < f.dropout {
                continue;
            }
            oor.push(!r.metric.in_range(r.value));
            kept.push(r);
        }
        if self.dropped_unreported > 0 && self.spec.format == Format::Senml {
            kept.push(Reading::of(
                "droppedReadings",
                self.dropped_unreported as f64,
            ));
            oor.push(false);
            self.dropped_unreported = 0;
        }
        if kept.is_empty() {
            return None;
        }
        let ts = now + self.skew_s;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.stats.packs += 1;
        let wires = formats::encode(self.spec.format, &self.sender(), ts, seq, &kept).ok()?;
        let base_flags = if formats::carries_time(self.spec.format) {
            if self.skew_s != 0 { flags::SKEWED } else { 0 }
        } else {
            flags::RECEIPT_TIME
        };
        let mut msgs = Vec::with_capacity(wires.len());
        for w in wires {
            let mut m = Outgoing {
                topic: w.topic,
                payload: w.payload,
                retain: false,
                readings: w
                    .readings
                    .into_iter()
                    .map(|i| SentReading {
                        metric: kept[i].metric.name,
                        ts_ms: ts * 1000,
                        value: kept[i].value,
                        flags: base_flags | if oor[i] { flags::OUT_OF_RANGE } else { 0 },
                    })
                    .collect(),
                malformed: false,
            };
            if self.faults.malformed > 0.0 && self.rng.random::<f64>() < self.faults.malformed {
                self.stats.malformed += 1;
                garble(&mut m.payload, &mut self.rng);
                m.readings.clear();
                m.malformed = true;
            }
            msgs.push(m);
        }
        Some(msgs)
    }
}

fn weather_round(v: f64) -> f64 {
    crate::model::weather::round_to(v, 0.1)
}

/// Corrupts a payload the way flaky links and buggy firmware do: a truncation, or
/// bytes overwritten with noise.
fn garble(payload: &mut Vec<u8>, rng: &mut DeviceRng) {
    if payload.len() > 2 && rng.random::<bool>() {
        payload.truncate(payload.len() / 2);
    } else {
        payload.insert(0, 0xff);
        for b in payload.iter_mut().skip(1).step_by(3) {
            *b = rng.random();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> FleetPlan {
        FleetPlan {
            seed,
            counts: [
                (DeviceKind::AirQuality, 3),
                (DeviceKind::Weather, 2),
                (DeviceKind::Noise, 2),
                (DeviceKind::Wifi, 3),
            ],
            period_s: 60,
            mix: "tasmota=0.2,esphome=0.2,ultralight=0.1,line=0.1"
                .parse()
                .unwrap(),
            id_prefix: String::new(),
        }
    }

    fn traffic(seed: u64, faults: FaultRates, steps: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for spec in plan(seed).specs() {
            let mut d = SimDevice::new(spec, seed, 1_767_225_600, faults, "city");
            for _ in 0..steps {
                d.step(&mut out);
            }
        }
        out
    }

    #[test]
    fn same_seed_same_traffic() {
        let faults: FaultRates = "stuck=0.05,spike=0.05,dropout=0.05,reboot=0.02,skew=0.5,outage=0.02,dup=0.05,malformed=0.05"
            .parse()
            .unwrap();
        let a = traffic(42, faults, 300);
        assert_eq!(a, traffic(42, faults, 300));
        assert_ne!(a, traffic(43, faults, 300));
    }

    #[test]
    fn healthy_fleet_values_in_range_and_seq_counts_up() {
        let out = traffic(1, FaultRates::default(), 200);
        let mut n = 0;
        for e in &out {
            if let Event::Publish(m) = e {
                for r in &m.readings {
                    let metric = schemas::catalog::lookup(r.metric).unwrap();
                    assert!(metric.in_range(r.value), "{} {}", r.metric, r.value);
                    assert_eq!(r.flags & !flags::RECEIPT_TIME, 0);
                    n += 1;
                }
            }
        }
        assert!(n > 1000);
        // A native device's seq runs 0, 1, 2, ... without faults.
        let spec = plan(1)
            .specs()
            .into_iter()
            .find(|s| s.format == Format::Senml)
            .unwrap();
        let mut d = SimDevice::new(spec, 1, 1_767_225_600, FaultRates::default(), "city");
        let mut ev = Vec::new();
        for _ in 0..5 {
            d.step(&mut ev);
        }
        let seqs: Vec<u32> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Publish(m) => schemas::senml::decode_any(&m.payload).ok()?.records[0].seq,
                _ => None,
            })
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn outage_builds_backlog_and_flushes_in_a_burst() {
        let faults = FaultRates {
            outage: 0.05,
            ..Default::default()
        };
        let spec = DeviceSpec {
            id: "aq-0001".into(),
            kind: DeviceKind::AirQuality,
            site: Site {
                district: "ba-dinh",
                place: Place::MainRoad,
            },
            format: Format::Senml,
            period_s: 60,
            phase_s: 0,
        };
        let mut d = SimDevice::new(spec, 9, 1_767_225_600, faults, "city");
        let mut ev = Vec::new();
        for _ in 0..2000 {
            d.step(&mut ev);
        }
        assert!(d.stats().outages > 0);
        // After each LinkDown, the next LinkUp is followed by several publishes at once,
        // all flagged as backlog, in time order.
        let down = ev.iter().position(|e| *e == Event::LinkDown).unwrap();
        let up = down + ev[down..].iter().position(|e| *e == Event::LinkUp).unwrap();
        let burst: Vec<_> = ev[up + 1..]
            .iter()
            .map_while(|e| match e {
                Event::Publish(m)
                    if m.readings
                        .first()
                        .is_some_and(|r| r.flags & flags::BACKLOG != 0) =>
                {
                    Some(m)
                }
                _ => None,
            })
            .collect();
        assert!(burst.len() >= 3, "burst of {}", burst.len());
        assert!(
            burst
                .windows(2)
                .all(|w| w[0].readings[0].ts_ms < w[1].readings[0].ts_ms)
        );
    }

    #[test]
    fn reboot_restarts_seq() {
        let faults = FaultRates {
            reboot: 0.1,
            ..Default::default()
        };
        let spec = plan(3)
            .specs()
            .into_iter()
            .find(|s| s.format == Format::Senml)
            .unwrap();
        let mut d = SimDevice::new(spec, 3, 1_767_225_600, faults, "city");
        let mut ev = Vec::new();
        for _ in 0..200 {
            d.step(&mut ev);
        }
        let seqs: Vec<u32> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Publish(m) => schemas::senml::decode_any(&m.payload).ok()?.records[0].seq,
                _ => None,
            })
            .collect();
        assert!(d.stats().reboots > 0);
        assert!(
            seqs.windows(2).any(|w| w[1] == 0 && w[0] > 0),
            "no restart in {seqs:?}"
        );
    }
}
