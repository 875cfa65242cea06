//! The sans-IO device core: time in, packs out.
//!
//! A [`Node`] owns the board's sensors, the sampling schedule, the clock and the backlog.
//! The board (or the host runner) calls [`Node::poll`] with the monotonic time whenever
//! [`Node::next_deadline`] comes (or sooner); the node samples what is due, and when a
//! reporting period ends it encodes one SenML-CBOR pack (layout in [`crate::encode`]) into
//! the backlog. The link publishes [`Node::begin_publish`] (the backlog's oldest pack,
//! stamped if it was encoded before the time was known) and acknowledges it on PUBACK
//! ([`Backlog::ack_oldest`]). The node never reads a clock and never touches the network,
//! so a host test can run a week of a node's life in a few milliseconds.
//!
//! Time: until [`Node::set_unix_time`] is called, packs carry relative times (no `bt`).
//! Once the clock is set, [`Node::poll`] gives every pack still waiting in the backlog its
//! absolute time; a pack published while the time is still unknown gets its age as a
//! negative relative `bt`.
//!
//! ```
//! use firmware::drivers::{Readings, Sensor, SensorStatus, metric};
//! use firmware::{Node, NodeConfig};
//! use schemas::topic::DeviceKind;
//!
//! /// A board's sensor: here a constant PM2.5 concentration every 5 s.
//! struct Fixed;
//! impl Sensor for Fixed {
//!     fn interval_ms(&self) -> u32 { 5_000 }
//!     fn sample(&mut self, _now_ms: u64, out: &mut Readings) -> SensorStatus {
//!         out.push(metric!("pm25"), 12.0);
//!         SensorStatus::Ok
//!     }
//! }
//!
//! let cfg = NodeConfig::new("aq-0001", "hoan-kiem", DeviceKind::AirQuality)?;
//! // 16 packs of up to 256 bytes wait for the broker.
//! let mut node: Node<_, 16, 256> = Node::new(cfg, (Fixed,));
//! let mut now = 0;
//! while now <= 60_000 {
//!     node.poll(now);
//!     now = node.next_deadline(); // a board sleeps until then
//! }
//! // The link: publish, and on PUBACK drop the pack from the backlog.
//! let pack = node.begin_publish().expect("one period is over").to_vec();
//! assert_eq!(node.up_topic().as_str(), "city/hoan-kiem/airquality/aq-0001/up");
//! node.backlog().ack_oldest();
//! assert!(node.backlog().is_empty());
//! # let _ = pack;
//! # Ok::<(), firmware::node::ConfigError>(())
//! ```
//!
//! Every pack gets the next sequence number, also a pack that had to be discarded (too
//! large for a slot), whose readings are then counted as dropped: a gap in `seq` at the
//! gateway always comes with a `droppedReadings` report that explains it.

use schemas::meta::{Meta, MetaError};
use schemas::topic::{self, Channel, DeviceKind, SlugError, Topic};

use crate::backlog::Backlog;
use crate::clock::Clock;
use crate::drivers::{Metric, Reading, SensorStatus, Sensors, metric};

/// The metric a node reports its backlog's dropped readings as.
const DROPPED_READINGS: &Metric = metric!("droppedReadings");
use crate::encode::{self, PackHeader};
use crate::sampler::Sampler;

/// A slug (device id or district) as stored in the config.
pub type Slug = heapless::String<{ topic::MAX_SLUG_LEN }>;
/// A topic of this node.
pub type TopicString = heapless::String<{ topic::MAX_TOPIC_LEN }>;

/// Why a [`NodeConfig`] is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The device id is not a slug.
    #[error("invalid device id: {0}")]
    BadDevice(SlugError),
    /// The district is not a slug.
    #[error("invalid district: {0}")]
    BadDistrict(SlugError),
    /// The reporting period is zero.
    #[error("reporting period must be at least 1 s")]
    ZeroPeriod,
}

/// Default reporting period: 60 s, a pack a minute (what city dashboards plot, and
/// about 200 bytes a minute on a metered link).
pub const DEFAULT_PERIOD_S: u32 = 60;

/// The firmware version reported in `meta`.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A node's identity and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Device id (topic level and SenML base name).
    pub device: Slug,
    /// District slug (topic level).
    pub district: Slug,
    /// Device kind (topic level).
    pub kind: DeviceKind,
    /// Reporting period in seconds. Default [`DEFAULT_PERIOD_S`].
    pub period_s: u32,
    /// Sensor part names announced in `meta`. Default [`default_sensors`] of the kind.
    pub sensors: &'static [&'static str],
    /// Position announced in `meta` (latitude, longitude in degrees). Default none.
    pub position: Option<(f64, f64)>,
    /// Firmware version announced in `meta`. Default [`FIRMWARE_VERSION`].
    pub firmware: &'static str,
}

impl NodeConfig {
    /// A config with defaults, checking the slugs.
    pub fn new(device: &str, district: &str, kind: DeviceKind) -> Result<Self, ConfigError> {
        topic::check_slug(device).map_err(ConfigError::BadDevice)?;
        topic::check_slug(district).map_err(ConfigError::BadDistrict)?;
        let mut d = Slug::new();
        let mut z = Slug::new();
        // Both fit: check_slug bounds them by MAX_SLUG_LEN.
        let _ = d.push_str(device);
        let _ = z.push_str(district);
        Ok(Self {
            device: d,
            district: z,
            kind,
            period_s: DEFAULT_PERIOD_S,
            sensors: default_sensors(kind),
            position: None,
            firmware: FIRMWARE_VERSION,
        })
    }

    /// Sets the reporting period.
    pub fn with_period_s(mut self, period_s: u32) -> Result<Self, ConfigError> {
        if period_s == 0 {
            return Err(ConfigError::ZeroPeriod);
        }
        self.period_s = period_s;
        Ok(self)
    }

    /// Sets the sensor part names announced in `meta`.
    pub fn with_sensors(mut self, sensors: &'static [&'static str]) -> Self {
        self.sensors = sensors;
        self
    }

    /// Sets the position announced in `meta`.
    pub fn with_position(mut self, lat: f64, lon: f64) -> Self {
        self.position = Some((lat, lon));
        self
    }

    fn topic(&self, channel: Channel) -> TopicString {
        let t = Topic {
            district: &self.district,
            kind: self.kind,
            device: &self.device,
            channel,
        };
        // MAX_TOPIC_LEN holds the longest topic of checked slugs: never empty in practice.
        t.to_heapless().unwrap_or_default()
    }
}

/// The sensor parts a device of `kind` carries in this project's reference boards.
pub const fn default_sensors(kind: DeviceKind) -> &'static [&'static str] {
    match kind {
        DeviceKind::AirQuality => &["bme280", "pms5003", "scd41"],
        DeviceKind::Weather => &["bme280"],
        DeviceKind::Noise => &["mems-mic"],
        DeviceKind::Wifi => &["wifi-ap"],
    }
}

/// Counters of the node's own work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Packs encoded into the backlog.
    pub packs: u32,
    /// Packs that could not be encoded (larger than a slot), their readings counted as
    /// dropped.
    pub encode_failures: u32,
}

/// The device core. `SLOTS` packs of up to `SLOT_BYTES` bytes wait in the backlog: a
/// 7-metric air-quality pack takes about 150 bytes, so 256-byte slots leave room for
/// long device ids.
#[derive(Debug)]
pub struct Node<S: Sensors, const SLOTS: usize, const SLOT_BYTES: usize> {
    cfg: NodeConfig,
    base_name: heapless::String<{ encode::MAX_BASE_NAME }>,
    sensors: S,
    sampler: Sampler,
    clock: Clock,
    backlog: Backlog<SLOTS, SLOT_BYTES>,
    seq: u32,
    stats: NodeStats,
    /// Time of the last poll: "now" for stamping packs at publish time.
    last_poll_ms: u64,
}

impl<S: Sensors, const SLOTS: usize, const SLOT_BYTES: usize> Node<S, SLOTS, SLOT_BYTES> {
    /// A node that starts sampling on its first [`Node::poll`].
    pub fn new(cfg: NodeConfig, sensors: S) -> Self {
        let period_ms = cfg.period_s.max(1).saturating_mul(1000);
        Self {
            base_name: encode::base_name(&cfg.device),
            sampler: Sampler::new(period_ms),
            cfg,
            sensors,
            clock: Clock::new(),
            backlog: Backlog::new(),
            seq: 0,
            stats: NodeStats::default(),
            last_poll_ms: 0,
        }
    }

    /// Advance to `now_ms` (monotonic ms since boot): close the period if it ended,
    /// encoding its pack into the backlog, then sample the sensors that are due.
    pub fn poll(&mut self, now_ms: u64) {
        self.last_poll_ms = self.last_poll_ms.max(now_ms);
        self.sampler.start(&self.sensors, now_ms);
        if let Some(end) = self.sampler.window_due(now_ms) {
            self.close_window(end);
            self.sampler.finish_window(now_ms);
        }
        self.sampler.sample_due(&mut self.sensors, now_ms);
        if self.clock.is_set() {
            self.stamp_backlog();
        }
    }

    /// The oldest pack, marked as being published (see [`Backlog::begin_publish`]); what
    /// the link should send. A pack encoded before the time was known is stamped first:
    /// with its absolute time if the clock is set by now, else with its age as a negative
    /// relative `bt`, so that the gateway, adding the age to the time of receipt, files it
    /// close to when it was measured. The bytes then stay as they are until the pack is
    /// acknowledged, even across reconnects, so a PUBACK always matches what was sent.
    pub fn begin_publish(&mut self) -> Option<&[u8]> {
        if !self.backlog.is_publishing()
            && let Some(since) = self.backlog.relative_since(0)
        {
            let stamp = match self.clock.unix_ms(since) {
                Some(unix_ms) => Some(encode::unix_seconds(unix_ms)),
                // Whole seconds of age; none at all when published right away.
                None => match self.last_poll_ms.saturating_sub(since) / 1000 {
                    0 => None,
                    age_s => Some(-(age_s as f64)),
                },
            };
            // Absolute times are final; an age is refreshed if the pack is ever re-stamped.
            let still_relative = stamp.is_none_or(|bt| bt < 0.0).then_some(since);
            self.restamp(0, stamp, still_relative);
        }
        self.backlog.begin_publish().map(|(_, pack)| pack)
    }

    /// Gives packs encoded before the time was known their absolute time.
    fn stamp_backlog(&mut self) {
        for position in 0..self.backlog.len() {
            if position == 0 && self.backlog.is_publishing() {
                continue;
            }
            let Some(since) = self.backlog.relative_since(position) else {
                continue;
            };
            if let Some(unix_ms) = self.clock.unix_ms(since) {
                self.restamp(position, Some(encode::unix_seconds(unix_ms)), None);
            }
        }
    }

    fn restamp(&mut self, position: usize, base_time: Option<f64>, relative_since: Option<u64>) {
        let mut out = [0u8; SLOT_BYTES];
        let Some(pack) = self.backlog.get(position) else {
            return;
        };
        // A pack this node encoded always re-encodes; if not, it goes out as it is.
        if let Ok(n) = encode::restamp(pack, base_time, &mut out) {
            let _ = self.backlog.replace(position, &out[..n], relative_since);
        }
    }

    /// Next instant (ms) at which poll has work: lets boards sleep. `0` before the first
    /// poll (start at once).
    pub fn next_deadline(&self) -> u64 {
        match self.sampler.window_end() {
            None => 0,
            Some(_) => self.sampler.next_deadline(),
        }
    }

    /// Wall-clock offset learnt from SNTP: monotonic `now_ms` is Unix `unix_ms`. Before
    /// it is set, packs carry relative times (no `bt`) so the gateway stamps them.
    pub fn set_unix_time(&mut self, now_ms: u64, unix_ms: u64) {
        self.clock.set(now_ms, unix_ms);
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The backlog the link publishes from.
    pub fn backlog(&mut self) -> &mut Backlog<SLOTS, SLOT_BYTES> {
        &mut self.backlog
    }

    /// The backlog, read-only.
    pub fn backlog_ref(&self) -> &Backlog<SLOTS, SLOT_BYTES> {
        &self.backlog
    }

    /// The sensors, e.g. to feed a simulated one.
    pub fn sensors_mut(&mut self) -> &mut S {
        &mut self.sensors
    }

    /// Adds a reading from outside the sensor set (e.g. the board's supply voltage) to the
    /// current window.
    pub fn record(&mut self, reading: Reading) {
        self.sampler.record(reading);
    }

    /// Last status of sensor `index`.
    pub fn sensor_status(&self, index: usize) -> Option<SensorStatus> {
        self.sampler.status(index)
    }

    /// The sampler (current window's aggregates with min/max).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// The config.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Sequence number the next pack gets.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    /// The node's counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// `city/{district}/{kind}/{device}/up`: readings, QoS 1.
    pub fn up_topic(&self) -> TopicString {
        self.cfg.topic(Channel::Up)
    }

    /// `.../status`: retained `online`; the last will is a retained `offline`.
    pub fn status_topic(&self) -> TopicString {
        self.cfg.topic(Channel::Status)
    }

    /// `.../meta`: retained JSON description of the node.
    pub fn meta_topic(&self) -> TopicString {
        self.cfg.topic(Channel::Meta)
    }

    /// Retained birth payload for [`Node::status_topic`].
    pub fn status_online(&self) -> &'static [u8] {
        topic::STATUS_ONLINE
    }

    /// Last-will payload for [`Node::status_topic`].
    pub fn status_offline(&self) -> &'static [u8] {
        topic::STATUS_OFFLINE
    }

    /// Writes the retained `meta` JSON (`schemas::meta`) into `buf`; 256 bytes hold any
    /// node's document with a handful of sensors.
    pub fn meta_payload(&self, buf: &mut [u8]) -> Result<usize, MetaError> {
        Meta {
            firmware: self.cfg.firmware,
            kind: self.cfg.kind,
            district: &self.cfg.district,
            sensors: self.cfg.sensors,
            lat: self.cfg.position.map(|p| p.0),
            lon: self.cfg.position.map(|p| p.1),
            period_s: self.cfg.period_s,
        }
        .encode(buf)
    }

    fn close_window(&mut self, end_ms: u64) {
        let mut readings: heapless::Vec<Reading, { encode::MAX_RECORDS }> = heapless::Vec::new();
        for a in self.sampler.aggregates() {
            // Room for every metric: MAX_RECORDS is the number of metrics.
            let _ = readings.push(Reading {
                metric: a.metric,
                value: a.value,
            });
        }
        // The sampler never records DroppedReadings from sensors into a pack of its own
        // making; a board that did would be overridden here.
        readings.retain(|r| r.metric.name != DROPPED_READINGS.name);
        let measured = readings.len() as u16;
        let dropped = self.backlog.take_dropped();
        if dropped > 0 {
            let _ = readings.push(Reading {
                metric: DROPPED_READINGS,
                value: f64::from(dropped),
            });
        }
        if readings.is_empty() {
            return;
        }
        let header = PackHeader {
            base_name: &self.base_name,
            unix_ms: self.clock.unix_ms(end_ms),
            seq: self.seq,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut buf = [0u8; SLOT_BYTES];
        let stored = encode::encode_pack(&header, &readings, &mut buf)
            .ok()
            .and_then(|n| {
                let relative_since = header.unix_ms.is_none().then_some(end_ms);
                self.backlog
                    .push_entry(&buf[..n], measured, dropped, relative_since)
                    .ok()
            });
        match stored {
            Some(_) => self.stats.packs += 1,
            None => {
                self.stats.encode_failures += 1;
                self.backlog.count_dropped(u32::from(measured));
                self.backlog.restore_dropped(dropped);
            }
        }
    }
}
