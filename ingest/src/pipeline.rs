//! The pipeline: a batch of messages (from the message log, or dead letters replayed) ->
//! decode -> validate -> ONE SQLite transaction holding the new hot-tier rows, one outbox
//! entry, the dead letters, the device state and, when applying the log, the applied log
//! position. It orchestrates; each table's statements live in the module that owns it
//! ([`crate::hot`], [`crate::outbox`], [`crate::devices`], [`crate::deadletter`], the log
//! position in [`crate::store`]; the hot tier is read in [`crate::query`]).
//!
//! Decoding and validation run before the transaction opens (pure CPU, no lock held).
//! `Ok` from [`Pipeline::apply`] or [`Pipeline::process`] means the transaction committed:
//! every message of the batch is in the state, as readings or as a dead letter. Sequence
//! numbers are explained in [`crate::devices`].

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use schemas::topic::{Channel, RawTopic, TopicError};

use crate::config::{IngestConfig, OutboxPolicy};
use crate::decode::{self, Context, Decoded};
use crate::devices::{DeviceCache, SeqEvent, Sighting, seq_event};
use crate::error::{IngestError, Result};
use crate::hot::{FlushOutcome, HotHead, HotOptions, HotWriter};
use crate::lineproto::TagSet;
use crate::message::Inbound;
use crate::metrics as m;
use crate::outbox;
use crate::route::{Format, Router};
use crate::store;
use crate::validate::{Limits, Reason, Rejection, check_reading};

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Messages in the batch.
    pub messages: usize,
    /// Readings newly inserted into the hot tier.
    pub readings_committed: usize,
    /// Readings already present (redeliveries), ignored.
    pub duplicates: usize,
    /// Dead letters written (a message with several bad readings writes one).
    pub dead_letters: usize,
    /// Readings refused inside otherwise good messages.
    pub rejected_readings: usize,
    /// Readings dropped from the outbox to make room (policy `drop-oldest`).
    pub outbox_dropped_readings: u64,
    /// Outbox entries after the commit.
    pub outbox_entries: u64,
    /// Outbox bytes after the commit.
    pub outbox_bytes: u64,
}

/// The decode -> validate -> commit pipeline over one state database.
#[derive(Debug)]
pub struct Pipeline {
    conn: Connection,
    cfg: IngestConfig,
    router: Router,
    limits: Limits,
    /// Readings older than this before receipt skip the hot tier (they still go to the
    /// store).
    hot_retention_ns: i64,
    tasmota_offset_s: i32,
    /// The hot tier's writing side and its head.
    hot: HotWriter,
    /// Device rows as this pipeline last committed them, saving a read per device per
    /// batch. Valid while `PRAGMA data_version` is unchanged, i.e. no other connection
    /// (another pipeline replaying dead letters, the forwarder) has committed since.
    devices: DeviceCache,
    /// `PRAGMA data_version` when `devices` was last known valid.
    data_version: Option<i64>,
    /// Buffers kept from batch to batch (emptied, their allocations reused).
    scratch: Scratch,
    /// `device_kinds` of the configuration, shared with each batch's decoding.
    device_kinds: std::sync::Arc<[String]>,
    /// Foreign formats' availability topics.
    status_router: crate::status::StatusRouter,
    /// Devices of the registry (`registry`), by id.
    registry: foldhash::HashMap<Box<str>, Registered>,
}

/// What the device registry says about one device.
#[derive(Debug)]
struct Registered {
    format: Format,
    district: String,
    kind: &'static str,
    apikey: Option<String>,
}

/// A batch's working buffers. The decoded groups and outcomes borrow from the batch's
/// messages, so between batches they are kept empty, as `'static`, and [`recycle`]d.
#[derive(Debug, Default)]
struct Scratch {
    outcomes: Vec<Outcome<'static>>,
    groups: Vec<Decoded<'static>>,
    /// The batch's outbox entry (line protocol).
    body: String,
}

/// An empty vector holding `v`'s allocation, for items of another lifetime: the standard
/// library collects a vector's `into_iter()` in place when the item layouts match, as they
/// do for one type at two lifetimes.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!("cleared")).collect()
}

/// What a replay adds to a batch's transaction.
struct Replay<'a> {
    /// Dead letters to delete with the commit.
    delete_dead_letters: &'a [i64],
    /// Store-rejected lines going back to the outbox.
    requeue_lines: &'a str,
    /// How many lines that is.
    requeue_readings: i64,
}

/// What one message turned into, before the transaction.
#[derive(Debug)]
enum Outcome<'a> {
    Readings {
        format: Format,
        /// The message's groups (one per device) in the batch's decoded groups.
        groups: Range<usize>,
        /// Refused readings (decode- and validation-time) of this message.
        rejected: Vec<Rejection>,
    },
    Status {
        device: Cow<'a, str>,
        district: Option<&'a str>,
        kind: Option<&'a str>,
        /// The format of the topic it came on (native: `senml`).
        format: Format,
        online: bool,
    },
    Meta {
        device: &'a str,
        district: &'a str,
        kind: &'a str,
        json: String,
    },
    /// Retained payload cleared (empty status/meta): nothing to do.
    Cleared,
    /// A retained message on a readings route: the topic's last value, delivered again
    /// because of a (re)subscription, not a new reading. Skipped and counted.
    Retained,
    Dead(Rejection),
}

impl Pipeline {
    /// Opens (creating) the state database in `data_dir`.
    pub fn open(data_dir: &Path, cfg: IngestConfig) -> Result<Self> {
        cfg.validate()?;
        let conn = store::open(
            data_dir,
            cfg.synchronous,
            Duration::from_millis(cfg.busy_timeout_ms),
        )?;
        let router = Router::new(&cfg.routes)?;
        let secs = |s: u64| {
            i64::try_from(s)
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1_000_000_000)
        };
        let limits = Limits {
            max_future_skew_ns: secs(cfg.max_future_skew_s),
            max_past_age_ns: secs(cfg.max_past_age_s),
        };
        let hot_retention_ns = secs(cfg.hot_retention_s);
        let tasmota_offset_s = cfg.tasmota_offset_s()?;
        Ok(Self {
            conn,
            router,
            limits,
            hot_retention_ns,
            tasmota_offset_s,
            hot: HotWriter::new(HotOptions {
                head_max_readings: cfg.hot_head_max_readings,
                flush_interval: Duration::from_secs(cfg.hot_flush_interval_s),
            }),
            devices: DeviceCache::default(),
            data_version: None,
            scratch: Scratch::default(),
            registry: load_registry(cfg.registry.as_deref())?,
            status_router: crate::status::StatusRouter::new(&cfg.status_routes)?,
            device_kinds: cfg.device_kinds.clone().into(),
            cfg,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    /// The pipeline's connection, for the read side in the same process (tests, tools).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Decodes, validates and commits the batch in one transaction. See the module docs.
    /// `Err(OutboxFull)` (policy `block`): nothing committed, do not acknowledge.
    pub fn process(&mut self, batch: &[Inbound]) -> Result<BatchOutcome> {
        self.process_inner(batch, None, None)
    }

    /// Applies messages read from the message log, up to and including log position
    /// `applied_seq`, in one transaction that also records that position: a crash re-applies
    /// from the position the state holds, so nothing is applied twice.
    /// `Err(OutboxFull)` (policy `block`): nothing applied; retry later.
    pub fn apply(&mut self, batch: &[Inbound], applied_seq: u64) -> Result<BatchOutcome> {
        self.hot.own(&self.conn)?;
        self.process_inner(batch, None, Some(applied_seq))
    }

    /// Makes this pipeline the owner of the hot tier's head (the log's applier is): it
    /// takes over the stored head and keeps later readings in it until a flush, instead of
    /// writing them into chunks in each batch. Returns the head for readers in this
    /// process. [`Pipeline::apply`] does this on its first call.
    pub fn own_hot_head(&mut self) -> Result<HotHead> {
        self.hot.own(&self.conn)?;
        Ok(self.hot.head().clone())
    }

    /// The hot tier's head, for readers in this process ([`crate::query::HotRead`]).
    pub fn hot_head(&self) -> HotHead {
        self.hot.head().clone()
    }

    /// Flushes the head into chunks when it is due (full, or its oldest reading has
    /// waited `hot_flush_interval_s`). The applier calls this between batches.
    pub fn maintain(&mut self) -> Result<Option<FlushOutcome>> {
        if !self.hot.flush_due() {
            return Ok(None);
        }
        self.flush_hot().map(Some)
    }

    /// Writes the head into chunks now (at a stop, so that the data directory holds no
    /// head; a restart would take it over anyway).
    pub fn flush_hot(&mut self) -> Result<FlushOutcome> {
        let started = Instant::now();
        let out = self.hot.flush(&mut self.conn)?;
        if out.readings > 0 {
            ::metrics::histogram!(m::HOT_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
            ::metrics::counter!(m::HOT_FLUSHED_READINGS).increment(out.readings as u64);
            tracing::debug!(
                ?out,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "hot tier flushed"
            );
        }
        Ok(out)
    }

    /// The message-log position the state has applied up to.
    pub fn applied_seq(&self) -> Result<u64> {
        store::applied_seq(&self.conn)
    }

    /// Makes every transaction committed so far durable (one fsync of SQLite's WAL), so that
    /// log segments they cover may be deleted. A no-op cost with `synchronous = full`.
    pub fn sync(&mut self) -> Result<()> {
        if self.cfg.synchronous == crate::config::Synchronous::Full {
            return Ok(());
        }
        store::sync_committed(&self.conn)
    }

    /// Re-injects dead letters (after a fix: a new route, a wider limit) and deletes them, in
    /// the same transaction as their outcome. Dead letters the store rejected go straight
    /// back to the outbox. Returns what the replay did; unknown ids are ignored.
    pub fn replay_dead_letters(&mut self, ids: &[i64]) -> Result<BatchOutcome> {
        let letters = crate::deadletter::load(&self.conn, ids)?;
        let mut batch = Vec::new();
        let mut requeue = Vec::new();
        for d in &letters {
            if d.reason_kind() == Some(Reason::StoreRejected) {
                requeue.push(d.id);
            } else {
                batch.push(d.to_inbound());
            }
        }
        let all: Vec<i64> = letters.iter().map(|d| d.id).collect();
        let mut lines = String::new();
        let mut n = 0i64;
        for d in letters.iter().filter(|d| requeue.contains(&d.id)) {
            lines.push_str(&String::from_utf8_lossy(&d.payload));
            if !lines.ends_with('\n') {
                lines.push('\n');
            }
            n += 1;
        }
        let replay = Replay {
            delete_dead_letters: &all,
            requeue_lines: &lines,
            requeue_readings: n,
        };
        self.process_inner(&batch, Some(replay), None)
    }

    /// What `msg` is; decoded readings are appended to `groups`.
    fn classify<'a>(
        &self,
        msg: &'a Inbound,
        device_kinds: &'a [String],
        groups: &mut Vec<Decoded<'a>>,
    ) -> Outcome<'a> {
        if msg.payload.len() > self.cfg.max_payload_bytes {
            return Outcome::Dead(Rejection::new(
                Reason::PayloadTooLarge,
                format!(
                    "{} bytes, limit {} (dead letter keeps the first {})",
                    msg.payload.len(),
                    self.cfg.max_payload_bytes,
                    self.cfg
                        .deadletter_payload_keep_bytes
                        .min(msg.payload.len())
                ),
            ));
        }
        // Native status/meta first, so a catch-all route cannot swallow them.
        match RawTopic::parse(&msg.topic) {
            Ok(t) if t.channel != Channel::Up => {
                if !decode::known_kind(t.kind, &self.cfg.device_kinds) {
                    return Outcome::Dead(decode::unknown_kind(t.kind));
                }
                return self.device_channel(t, msg);
            }
            Ok(_) => {}
            Err(e) => {
                if self.router.route(&msg.topic).is_none() && msg.topic.starts_with("city/") {
                    let reason = match e {
                        TopicError::UnknownChannel => Reason::UnknownChannel,
                        _ => Reason::BadTopic,
                    };
                    return Outcome::Dead(Rejection::new(reason, e.to_string()));
                }
            }
        }
        if let Some(s) = self.status_router.matched(&msg.topic, &msg.payload) {
            return status_outcome(s, msg);
        }
        let Some(matched) = self.router.matched(&msg.topic) else {
            return Outcome::Dead(Rejection::new(
                Reason::NoRoute,
                format!("no route matches topic `{}`", msg.topic),
            ));
        };
        let (format, captures) = (matched.format, matched.captures);
        if !matched.rules.apikey_allowed(captures.apikey) {
            // The key itself is a credential: not repeated in the dead letter's reason.
            return Outcome::Dead(Rejection::new(
                Reason::UnknownApikey,
                "the topic's API key is not among the route's `apikeys`",
            ));
        }
        if msg.retained {
            // A retained reading was delivered live when it was published, and stored then
            // if this gateway was subscribed; delivered again at a (re)subscription it would
            // be stamped anew (ESPHome, UltraLight and SenML without `bt` carry no time).
            return Outcome::Retained;
        }
        let ctx = Context {
            captures,
            received_at_ns: msg.received_at_ns,
            tasmota_utc_offset_s: self.tasmota_offset_s,
            device_kinds,
        };
        let first = groups.len();
        match decode::decode_into(format, &msg.payload, &ctx, groups) {
            Err(r) => Outcome::Dead(r),
            Ok(()) => {
                let mut rejected = Vec::new();
                // Devices outside the route's allow-list, or registered to another format
                // or another API key: refused, and not in the device table at all.
                let mut i = first;
                while i < groups.len() {
                    let refusal = self.identity_refusal(&mut groups[i], &matched);
                    let Some((reason, why)) = refusal else {
                        i += 1;
                        continue;
                    };
                    let g = groups.remove(i);
                    rejected.extend(g.rejected);
                    rejected.push(Rejection::new(
                        reason,
                        format!(
                            "device `{}` {why} ({} readings refused)",
                            g.device,
                            g.readings.len()
                        ),
                    ));
                }
                for g in &mut groups[first..] {
                    rejected.append(&mut g.rejected);
                    g.readings.retain(|r| {
                        match check_reading(r, msg.received_at_ns, &self.limits) {
                            Ok(()) => true,
                            Err(rej) => {
                                rejected.push(rej);
                                false
                            }
                        }
                    });
                }
                Outcome::Readings {
                    format,
                    groups: first..groups.len(),
                    rejected,
                }
            }
        }
    }

    /// Why `g` may not be written through this route, if it may not: outside the route's
    /// `devices`, registered to another format, or (UltraLight) to another API key. A
    /// registered device without a district or kind in its message gets the registry's.
    fn identity_refusal(
        &self,
        g: &mut Decoded<'_>,
        matched: &crate::route::Matched<'_, '_>,
    ) -> Option<(Reason, String)> {
        if !matched.rules.device_allowed(&g.device) {
            return Some((
                Reason::DeviceNotAllowed,
                "is not in the route's `devices`".to_owned(),
            ));
        }
        let reg = self.registry.get(&*g.device)?;
        if reg.format != matched.format {
            return Some((
                Reason::SpoofedDevice,
                format!(
                    "is registered as {}: a {} message may not write it",
                    reg.format, matched.format
                ),
            ));
        }
        if let Some(key) = &reg.apikey
            && matched.captures.apikey != Some(key.as_str())
        {
            return Some((
                Reason::UnknownApikey,
                "is registered with another API key".to_owned(),
            ));
        }
        if g.district.is_none() {
            g.district = Some(Cow::Owned(reg.district.clone()));
        }
        if g.kind.is_none() {
            g.kind = Some(Cow::Borrowed(reg.kind));
        }
        None
    }

    fn device_channel<'a>(&self, t: RawTopic<'a>, msg: &Inbound) -> Outcome<'a> {
        let (device, district, kind) = (t.device, t.district, t.kind);
        if msg.payload.is_empty() {
            return Outcome::Cleared;
        }
        match t.channel {
            Channel::Status => match &msg.payload[..] {
                p if p == schemas::topic::STATUS_ONLINE || p == schemas::topic::STATUS_OFFLINE => {
                    Outcome::Status {
                        device: Cow::Borrowed(device),
                        district: Some(district),
                        kind: Some(kind),
                        format: Format::Senml,
                        online: p == schemas::topic::STATUS_ONLINE,
                    }
                }
                _ => Outcome::Dead(decode::malformed(
                    "status payload must be `online` or `offline`",
                )),
            },
            _ => match serde_json::from_slice::<serde_json::Value>(&msg.payload) {
                Ok(v @ serde_json::Value::Object(_)) => Outcome::Meta {
                    device,
                    district,
                    kind,
                    json: v.to_string(),
                },
                Ok(_) => Outcome::Dead(decode::malformed("meta payload must be a JSON object")),
                Err(e) => Outcome::Dead(decode::malformed(format!("meta payload: {e}"))),
            },
        }
    }

    fn process_inner(
        &mut self,
        batch: &[Inbound],
        replay: Option<Replay<'_>>,
        position: Option<u64>,
    ) -> Result<BatchOutcome> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let out = self.process_tx(batch, replay, position, &mut scratch);
        match &out {
            Ok(_) => {
                self.hot.committed();
                self.devices.committed();
                // A flood of device ids must not grow memory without a bound: past it the
                // caches are emptied and refilled from the database as devices speak.
                if self.devices.len() > self.cfg.max_cached_devices {
                    self.devices.clear();
                }
                if self.hot.cached_series() > self.cfg.max_cached_devices.saturating_mul(16) {
                    self.hot.forget();
                }
            }
            Err(_) => {
                self.hot.rolled_back();
                // The rows were changed in memory for a transaction that did not commit.
                self.devices.clear();
            }
        }
        scratch.body.clear();
        self.scratch = scratch;
        out
    }

    /// [`Pipeline::process_inner`] up to the commit; the caller settles the hot tier's
    /// in-memory state by the result.
    fn process_tx(
        &mut self,
        batch: &[Inbound],
        replay: Option<Replay<'_>>,
        position: Option<u64>,
        scratch: &mut Scratch,
    ) -> Result<BatchOutcome> {
        let forwarding = self.cfg.forward_enabled;
        if forwarding && self.cfg.outbox_policy == OutboxPolicy::Block {
            let d = outbox::depth(&self.conn)?;
            if d.entries > 0 && d.bytes >= self.cfg.outbox_max_bytes {
                return Err(IngestError::OutboxFull {
                    bytes: d.bytes,
                    limit: self.cfg.outbox_max_bytes,
                });
            }
        }
        let mut groups: Vec<Decoded<'_>> = recycle(std::mem::take(&mut scratch.groups));
        let mut outcomes: Vec<Outcome<'_>> = recycle(std::mem::take(&mut scratch.outcomes));
        // The configured kinds, shared: decoded groups may borrow from them for the batch.
        let kinds = std::sync::Arc::clone(&self.device_kinds);
        outcomes.extend(
            batch
                .iter()
                .map(|msg| self.classify(msg, &kinds, &mut groups)),
        );
        let result = self.commit(
            batch,
            &outcomes,
            &groups,
            replay,
            position,
            &mut scratch.body,
        );
        scratch.groups = recycle(groups);
        scratch.outcomes = recycle(outcomes);
        result
    }

    /// The transaction of a classified batch.
    fn commit(
        &mut self,
        batch: &[Inbound],
        outcomes: &[Outcome<'_>],
        groups: &[Decoded<'_>],
        replay: Option<Replay<'_>>,
        position: Option<u64>,
        body: &mut String,
    ) -> Result<BatchOutcome> {
        let started = Instant::now();
        let cfg = &self.cfg;
        let forwarding = cfg.forward_enabled;
        // What this gateway observes of each device, for a query side that merges several
        // gateways (README "Device state in the store"). Replays are out of band.
        let device_series = forwarding && cfg.forward_device_series && replay.is_none();
        let mut out = BatchOutcome {
            messages: batch.len(),
            ..BatchOutcome::default()
        };
        let mut tagset = TagSet::default();
        let mut body_readings = 0i64;
        let mut rejections: Vec<Reason> = Vec::new();
        let mut seq_events: Vec<(String, SeqEvent)> = Vec::new();
        let mut latest_ts: Vec<i64> = Vec::new();
        let hot_retention_ns = self.hot_retention_ns;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(IngestError::sql("begin transaction"))?;
        let data_version: i64 = tx
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(IngestError::sql("read data version"))?;
        if self.data_version != Some(data_version) {
            self.devices.clear();
        }
        let devices = &mut self.devices;
        let registry = &self.registry;
        let hot = &mut self.hot;
        hot.begin(&tx)?;
        {
            for (msg, outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Outcome::Dead(rej) => {
                        insert_dead_letter(&tx, msg, rej, cfg.deadletter_payload_keep_bytes)?;
                        out.dead_letters += 1;
                        rejections.push(rej.reason);
                    }
                    Outcome::Cleared | Outcome::Retained => {}
                    Outcome::Status {
                        device,
                        district,
                        kind,
                        format,
                        online,
                    } => {
                        // The same owner rule as readings: a status names its device
                        // through a topic of one format only.
                        if let Some(owner) = other_owner(registry, devices, &tx, device, *format)? {
                            let rej = Rejection::new(
                                Reason::SpoofedDevice,
                                format!(
                                    "device `{device}` reports as {owner}: a {format} status may not change it"
                                ),
                            );
                            insert_dead_letter(&tx, msg, &rej, cfg.deadletter_payload_keep_bytes)?;
                            out.dead_letters += 1;
                            rejections.push(rej.reason);
                            continue;
                        }
                        let row = devices.row(
                            &tx,
                            device,
                            Sighting {
                                district: *district,
                                kind: *kind,
                                format: *format,
                                received_at_ns: msg.received_at_ns,
                                // A retained status or meta is what the broker kept, not a
                                // sign that the device is alive now.
                                alive: !msg.retained,
                            },
                        )?;
                        row.set_status(*online, msg.received_at_ns);
                        if device_series {
                            tagset.set(&row.tags(device, *district, *kind, *format));
                            tagset.write_fields(
                                body,
                                DEVICE_STATUS_SERIES,
                                &[],
                                &[("online", if *online { 1.0 } else { 0.0 })],
                                msg.received_at_ns,
                            );
                        }
                    }
                    Outcome::Meta {
                        device,
                        district,
                        kind,
                        json,
                    } => {
                        let row = devices.row(
                            &tx,
                            device,
                            Sighting {
                                district: Some(district),
                                kind: Some(kind),
                                format: Format::Senml,
                                received_at_ns: msg.received_at_ns,
                                // A retained status or meta is what the broker kept, not a
                                // sign that the device is alive now.
                                alive: !msg.retained,
                            },
                        )?;
                        row.set_meta(json, msg.received_at_ns);
                        if device_series {
                            tagset.set(&row.tags(
                                device,
                                Some(district),
                                Some(kind),
                                Format::Senml,
                            ));
                            write_meta_line(body, &tagset, json, msg.received_at_ns);
                        }
                    }
                    Outcome::Readings {
                        format,
                        groups: groups_in,
                        rejected,
                    } => {
                        let mut spoofed: Vec<Rejection> = Vec::new();
                        for g in &groups[groups_in.clone()] {
                            // A device belongs to the format that reported it first: another
                            // format naming it (a line-protocol tag, a Tasmota topic) would
                            // write a device it does not own. Refused without touching its row.
                            if let Some(owner) =
                                other_owner(registry, devices, &tx, &g.device, *format)?
                            {
                                spoofed.push(Rejection::new(
                                    Reason::SpoofedDevice,
                                    format!(
                                        "device `{}` reports as {owner}: a {format} message may not write it ({} readings refused)",
                                        g.device,
                                        g.readings.len()
                                    ),
                                ));
                                continue;
                            }
                            let row = devices.row(
                                &tx,
                                &g.device,
                                Sighting {
                                    district: g.district.as_deref(),
                                    kind: g.kind.as_deref(),
                                    format: *format,
                                    received_at_ns: msg.received_at_ns,
                                    alive: true,
                                },
                            )?;
                            row.messages += 1;
                            if forwarding {
                                tagset.set(&row.tags(
                                    &g.device,
                                    g.district.as_deref(),
                                    g.kind.as_deref(),
                                    *format,
                                ));
                            }
                            let mut newest = i64::MIN;
                            let mut fresh = false;
                            let mut new_readings = 0u32;
                            // The message's own time: its newest reading's.
                            let mut message_ts = i64::MIN;
                            for r in &g.readings {
                                message_ts = message_ts.max(r.ts_ns);
                                let name = r.metric.name();
                                // Older than the hot window (a backfill, an old recording):
                                // to the store only. Redeliveries of it are caught by the log.
                                let cold =
                                    r.ts_ns < msg.received_at_ns.saturating_sub(hot_retention_ns);
                                let new = cold || {
                                    let id = hot.series(&tx, &g.device, name)?;
                                    hot.insert(&tx, id, r.ts_ns, r.value)?
                                };
                                if !new {
                                    out.duplicates += 1;
                                    row.duplicate_readings += 1;
                                    continue;
                                }
                                out.readings_committed += 1;
                                row.readings += 1;
                                fresh = true;
                                new_readings += 1;
                                if !cold {
                                    newest = newest.max(r.ts_ns);
                                }
                                if name == "droppedReadings" {
                                    // A device's own count: any number it sends (a float
                                    // cast saturates) adds without overflowing.
                                    row.dropped_readings = row
                                        .dropped_readings
                                        .saturating_add(r.value.max(0.0) as i64);
                                }
                                if forwarding {
                                    tagset.write_line(body, name, r.value, r.ts_ns);
                                    body_readings += 1;
                                }
                            }
                            // Replayed messages are out of band: their old sequence numbers
                            // say nothing about the device's current run.
                            if let Some(seq) = g.seq.filter(|_| replay.is_none()) {
                                let ev = seq_event(row.last_seq, seq, fresh);
                                match ev {
                                    SeqEvent::First | SeqEvent::InOrder => row.last_seq = Some(seq),
                                    SeqEvent::Gap(n) => {
                                        row.gaps = row.gaps.saturating_add(i64::from(n));
                                        row.last_seq = Some(seq);
                                    }
                                    SeqEvent::Duplicate => row.duplicates += 1,
                                    SeqEvent::Reboot { missed } => {
                                        row.reboots += 1;
                                        row.gaps = row.gaps.saturating_add(i64::from(missed));
                                        row.last_seq = Some(seq);
                                    }
                                }
                                // Only gaps and redeliveries are counted per device.
                                if matches!(ev, SeqEvent::Gap(_) | SeqEvent::Duplicate) {
                                    seq_events.push((g.device.to_string(), ev));
                                }
                            }
                            if newest > i64::MIN {
                                latest_ts.push(newest);
                            }
                            if device_series {
                                let mut fields = [("readings", f64::from(new_readings)); 2];
                                let mut n = 1;
                                // This gateway's first message of the device: the query
                                // side takes the earliest over all gateways.
                                if row.messages == 1 && row.first_seen > 0 {
                                    fields[n] = (
                                        "first_seen_ms",
                                        row.first_seen.div_euclid(1_000_000) as f64,
                                    );
                                    n += 1;
                                }
                                tagset.write_fields(
                                    body,
                                    DEVICE_SERIES,
                                    &[],
                                    &fields[..n],
                                    msg.received_at_ns,
                                );
                                // The sequence number at the message's own time (its newest
                                // reading): the same for every gateway that may receive
                                // the message, and distinct per message, so that the store
                                // (deduplicating within 1 ms) keeps one sample per message
                                // however close two messages arrive.
                                if let Some(seq) = g.seq {
                                    let at = if message_ts > i64::MIN {
                                        message_ts
                                    } else {
                                        msg.received_at_ns
                                    };
                                    tagset.write_fields(
                                        body,
                                        DEVICE_SERIES,
                                        &[],
                                        &[("seq", f64::from(seq))],
                                        at,
                                    );
                                }
                            }
                        }
                        if !rejected.is_empty() || !spoofed.is_empty() {
                            let all = || rejected.iter().chain(&spoofed);
                            out.rejected_readings += rejected.len() + spoofed.len();
                            rejections.extend(all().map(|r| r.reason));
                            let detail = all()
                                .map(|r| format!("{}: {}", r.reason, r.detail))
                                .collect::<Vec<_>>()
                                .join("\n");
                            let first = all().next().map_or(Reason::SpoofedDevice, |r| r.reason);
                            let combined = Rejection::new(first, detail);
                            insert_dead_letter(
                                &tx,
                                msg,
                                &combined,
                                cfg.deadletter_payload_keep_bytes,
                            )?;
                            out.dead_letters += 1;
                            // Counted on the message's (first) device, when this batch
                            // wrote its row: a spoofed device's row stays as it was.
                            if let Some(g) = groups[groups_in.clone()].first()
                                && !rejected.is_empty()
                                && let Some(row) = devices.touched_mut(&g.device)
                            {
                                row.rejected = row.rejected.saturating_add(rejected.len() as i64);
                            }
                        }
                    }
                }
            }
        }
        devices.write_touched(&tx)?;
        hot.finish(&tx)?;
        if out.dead_letters > 0 {
            crate::deadletter::enforce_bound(&tx, cfg.deadletter_max_bytes)?;
        }
        let delete_dead_letters = replay.as_ref().map_or(&[][..], |r| r.delete_dead_letters);
        if let Some(r) = &replay
            && r.requeue_readings > 0
        {
            body.push_str(r.requeue_lines);
            body_readings += r.requeue_readings;
            out.readings_committed += r.requeue_readings as usize;
        }
        if !delete_dead_letters.is_empty() {
            let mut s = tx
                .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
                .map_err(IngestError::sql("prepare dead letter delete"))?;
            for id in delete_dead_letters {
                s.execute([id])
                    .map_err(IngestError::sql("delete dead letter"))?;
            }
        }
        if !body.is_empty() {
            let outbox::OutboxDepth { entries, bytes, .. } = outbox::depth(&tx)?;
            let need = body.len() as u64;
            if entries > 0 && bytes + need > cfg.outbox_max_bytes {
                match cfg.outbox_policy {
                    OutboxPolicy::Block => {
                        drop(tx);
                        return Err(IngestError::OutboxFull {
                            bytes,
                            limit: cfg.outbox_max_bytes,
                        });
                    }
                    OutboxPolicy::DropOldest => {
                        out.outbox_dropped_readings =
                            outbox::drop_oldest(&tx, bytes + need - cfg.outbox_max_bytes)?;
                    }
                }
            }
            outbox::insert(&tx, body.as_bytes(), body_readings)?;
        }
        if let Some(seq) = position {
            store::set_applied_seq(&tx, seq)?;
        }
        let depth = outbox::depth(&tx)?;
        tx.commit().map_err(IngestError::sql("commit batch"))?;
        out.outbox_entries = depth.entries;
        out.outbox_bytes = depth.bytes;
        self.data_version = Some(data_version);

        // Committed: now the metrics.
        let now_ns = crate::message::now_ns();
        ::metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        if position.is_some() {
            let applied = ::metrics::histogram!(m::RECEIVE_TO_APPLIED);
            for msg in batch {
                applied.record((now_ns - msg.received_at_ns).max(0) as f64 / 1e9);
            }
        }
        for ts in latest_ts {
            ::metrics::histogram!(m::END_TO_END_SECONDS).record((now_ns - ts) as f64 / 1e9);
        }
        // Summed per format first: a labelled counter update builds its key and takes the
        // recorder's lock, once per batch and format instead of once per message.
        let mut per_format: Vec<(&'static str, u64)> = Vec::new();
        for o in outcomes {
            let format = match o {
                Outcome::Readings { format, .. } => format.as_str(),
                Outcome::Status { .. } | Outcome::Meta { .. } | Outcome::Cleared => "device-state",
                Outcome::Retained => "retained",
                Outcome::Dead(_) => "none",
            };
            match per_format.iter_mut().find(|(f, _)| *f == format) {
                Some((_, n)) => *n += 1,
                None => per_format.push((format, 1)),
            }
        }
        for (format, n) in per_format {
            ::metrics::counter!(m::MESSAGES, "format" => format).increment(n);
        }
        ::metrics::counter!(m::READINGS_COMMITTED).increment(out.readings_committed as u64);
        ::metrics::counter!(m::DUPLICATES).increment(out.duplicates as u64);
        for r in rejections {
            ::metrics::counter!(m::REJECTED, "reason" => r.as_str()).increment(1);
        }
        for (device, ev) in seq_events {
            match ev {
                SeqEvent::Gap(n) => {
                    ::metrics::counter!(m::DEVICE_GAPS, "device" => device).increment(u64::from(n))
                }
                SeqEvent::Duplicate => {
                    ::metrics::counter!(m::DEVICE_REDELIVERIES, "device" => device).increment(1)
                }
                _ => {}
            }
        }
        if out.outbox_dropped_readings > 0 {
            ::metrics::counter!(m::OUTBOX_DROPPED_READINGS).increment(out.outbox_dropped_readings);
            tracing::warn!(
                dropped_readings = out.outbox_dropped_readings,
                limit = cfg.outbox_max_bytes,
                "outbox full: dropped the oldest entries (policy drop-oldest); the hot tier keeps them"
            );
        }
        ::metrics::gauge!(m::OUTBOX_DEPTH).set(depth.entries as f64);
        ::metrics::gauge!(m::OUTBOX_BYTES).set(depth.bytes as f64);
        Ok(out)
    }

    /// Deletes hot-tier readings and dead letters past their retention. See [`crate::retention`].
    pub fn enforce_retention(&mut self, now_ns: i64) -> Result<crate::retention::RetentionOutcome> {
        let head_ids = self.hot.head_ids(&self.conn)?;
        let out = crate::retention::enforce(&mut self.conn, &self.cfg, now_ns, &head_ids)?;
        // Retention may have deleted device rows.
        self.devices.clear();
        // Retention may have forgotten series: learn them again from the next inserts.
        self.hot.forget();
        Ok(out)
    }
}

/// Measurement of the per-message device series (`gateway_device_readings`,
/// `gateway_device_seq`, `gateway_device_first_seen_ms` in VictoriaMetrics).
pub const DEVICE_SERIES: &str = "gateway_device";
/// Measurement of device status changes (`gateway_device_status_online`).
pub const DEVICE_STATUS_SERIES: &str = "gateway_device_status";
/// Measurement of device meta messages (`gateway_device_meta_updated{firmware}`,
/// `gateway_device_meta_period_s`, `gateway_device_meta_lat`, `gateway_device_meta_lon`).
pub const DEVICE_META_SERIES: &str = "gateway_device_meta";

/// One `gateway_device_meta` line for a device's meta JSON: `updated=1`, the period,
/// latitude and longitude when the meta has them (any of their names), the firmware as a
/// tag.
fn write_meta_line(body: &mut String, tags: &TagSet, json: &str, at_ns: i64) {
    use schemas::meta::keys;
    let meta: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let field = |names: &[&str]| names.iter().find_map(|k| meta.get(*k));
    let number = |names: &[&str]| field(names).and_then(serde_json::Value::as_f64);
    let firmware = field(keys::FIRMWARE).and_then(serde_json::Value::as_str);
    let mut fields = vec![("updated", 1.0)];
    for (name, keys) in [
        ("period_s", keys::PERIOD),
        ("lat", keys::LAT),
        ("lon", keys::LON),
    ] {
        if let Some(v) = number(keys).filter(|v| v.is_finite()) {
            fields.push((name, v));
        }
    }
    let extra: &[(&str, &str)] = match firmware {
        Some(fw) if !fw.is_empty() => &[("firmware", fw)],
        _ => &[],
    };
    tags.write_fields(body, DEVICE_META_SERIES, extra, &fields, at_ns);
}

/// The format owning `device` when it is not `format`: the registry's, else the format of
/// the device's first message (its row). `None`: `format` may write it (it owns it, or the
/// device is new).
fn other_owner(
    registry: &foldhash::HashMap<Box<str>, Registered>,
    devices: &mut DeviceCache,
    tx: &Transaction<'_>,
    device: &str,
    format: Format,
) -> Result<Option<String>> {
    let owner = match registry.get(device) {
        Some(r) => Some(r.format.as_str()),
        None => devices.format_of(tx, device)?,
    };
    Ok(owner.filter(|o| *o != format.as_str()).map(str::to_owned))
}

/// A foreign format's availability message as an outcome.
fn status_outcome<'a>(s: crate::status::StatusMatch<'a>, msg: &Inbound) -> Outcome<'a> {
    if msg.payload.is_empty() {
        // A cleared retained will.
        return Outcome::Cleared;
    }
    let Some(online) = s.online else {
        return Outcome::Dead(decode::malformed(format!(
            "{} status payload {:?} is neither its online nor its offline word",
            s.format,
            String::from_utf8_lossy(&msg.payload[..msg.payload.len().min(64)])
        )));
    };
    match decode::normalise_device(s.device) {
        Ok(device) => Outcome::Status {
            device,
            district: None,
            kind: None,
            format: s.format,
            online,
        },
        Err(r) => Outcome::Dead(r),
    }
}

/// The registry's devices by id (none without a registry file).
fn load_registry(path: Option<&Path>) -> Result<foldhash::HashMap<Box<str>, Registered>> {
    let mut map = foldhash::HashMap::default();
    let Some(path) = path else {
        return Ok(map);
    };
    let registry = crate::registry::Registry::from_path(path)
        .map_err(|e| IngestError::Config(format!("`registry` {}: {e}", path.display())))?;
    for d in registry.devices {
        map.insert(
            d.id.into_boxed_str(),
            Registered {
                format: d.format,
                district: d.district,
                kind: d.kind.as_str(),
                apikey: d.apikey,
            },
        );
    }
    Ok(map)
}

fn insert_dead_letter(
    tx: &Transaction<'_>,
    msg: &Inbound,
    rej: &Rejection,
    keep: usize,
) -> Result<()> {
    let payload = if rej.reason == Reason::PayloadTooLarge {
        &msg.payload[..keep.min(msg.payload.len())]
    } else {
        &msg.payload[..]
    };
    crate::deadletter::insert(
        tx,
        &crate::deadletter::NewDeadLetter {
            received_ns: msg.received_at_ns,
            topic: &msg.topic,
            payload,
            reason: rej.reason,
            detail: &rej.detail,
            payload_bytes: msg.payload.len(),
        },
    )
}
