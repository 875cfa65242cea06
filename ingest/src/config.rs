//! Configuration of the pipeline, with the defaults documented where they are defined.
//! Deserializable from the gateway's config file (every field optional).

use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::route::{RouteConfig, default_routes};

/// What to do when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboxPolicy {
    /// Refuse the batch ([`IngestError::OutboxFull`]): the gateway stops acknowledging and
    /// the broker keeps the data. Nothing is lost. The default.
    #[default]
    Block,
    /// Delete the oldest outbox entries to make room; every dropped reading is counted
    /// (`outbox_dropped_readings_total`) and logged. The hot tier keeps them.
    DropOldest,
}

/// SQLite `synchronous` mode of the state database.
///
/// The message log is the commit point: a message is acknowledged once its log record is
/// synced, and the state is derived from the log. So the state database does not need an
/// fsync per transaction: after a power loss it may lose its last transactions, and the
/// applier re-applies them from the log (log segments are deleted only after a synced
/// state transaction covers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Synchronous {
    /// fsync at every state transaction. Safe, and costs one fsync per applied batch for
    /// no gain in safety while the log is in use.
    Full,
    /// WAL `NORMAL`: the state's last transactions may be lost on power loss and are
    /// re-applied from the log. The default.
    #[default]
    Normal,
}

/// Pipeline configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct IngestConfig {
    /// Topic routes, first match wins. Default: [`default_routes`].
    pub routes: Vec<RouteConfig>,
    /// Availability topics of foreign formats (their last wills), mapped to the device's
    /// status. Default: [`crate::status::default_status_routes`] (Tasmota's
    /// `tele/{device}/LWT`, ESPHome's `{node}/status`).
    pub status_routes: Vec<crate::status::StatusRouteConfig>,
    /// Device kinds accepted besides the four built in (`airquality`, `weather`, `noise`,
    /// `wifi`), as topic slugs: a city that adds traffic counters or water-level sensors
    /// lists them here instead of seeing their messages dead-lettered (`bad-topic`, whose
    /// reason names this key). The dashboard shows them with a generic treatment.
    /// Default: none.
    pub device_kinds: Vec<String>,
    /// The device registry (`devices.toml`, see [`crate::registry`]): each listed device
    /// may be written only through its format (else `spoofed-device`), an UltraLight
    /// device only under its `apikey` (else `unknown-apikey`), and its district and kind
    /// fill in what its messages do not say. Default: none.
    pub registry: Option<std::path::PathBuf>,
    /// Larger payloads are dead-lettered as `payload-too-large` (only the first
    /// [`IngestConfig::deadletter_payload_keep_bytes`] are kept). Default: 65536 (64 KiB).
    pub max_payload_bytes: usize,
    /// Bytes of an oversized payload kept in its dead letter. Default: 4096.
    pub deadletter_payload_keep_bytes: usize,
    /// Readings stamped more than this after receipt are refused (`future-timestamp`).
    /// Default: 300 s.
    pub max_future_skew_s: u64,
    /// How long the hot tier keeps readings; retention deletes older ones. A reading that
    /// arrives already older than this skips the hot tier and still goes to the store (a
    /// backfill, an import, a replay of an old recording). Default: 604800 s (7 days).
    pub hot_retention_s: u64,
    /// Readings the hot tier's head holds in memory (about 20 bytes each, plus the same in
    /// the state database's `hot_head` rows) before they are written into compressed
    /// chunks. Default: 200000.
    pub hot_head_max_readings: usize,
    /// The longest a reading stays in the head before it is written into a chunk: larger
    /// makes fewer, larger chunks; a restart takes the head over either way. Default: 600 s.
    pub hot_flush_interval_s: u64,
    /// Readings stamped more than this before receipt are refused (`too-old`): a bound for
    /// absurd times (a clock at its epoch, seconds read as milliseconds), not a retention.
    /// Default: 315576000 s (10 years).
    pub max_past_age_s: u64,
    /// How long dead letters are kept. Default: 2592000 s (30 days).
    pub deadletter_retention_s: u64,
    /// Most bytes dead letters may hold (payloads, reasons, topics); beyond it the oldest
    /// are dropped, each counted in `deadletters_dropped_total`. Default: 268435456
    /// (256 MiB).
    pub deadletter_max_bytes: u64,
    /// Device rows of devices silent for longer than this are deleted by the retention
    /// pass (a device that speaks again gets a new row; its first format owns it again).
    /// Default: 7776000 s (90 days).
    pub device_retention_s: u64,
    /// Device rows the applier keeps in memory; beyond it the cache is emptied and rows are
    /// read again as devices speak. Default: 50000.
    pub max_cached_devices: usize,
    /// Outbox size limit in bytes of line protocol. Default: 268435456 (256 MiB).
    pub outbox_max_bytes: u64,
    /// What to do when the outbox is full. Default: `block`.
    pub outbox_policy: OutboxPolicy,
    /// Queue readings for the external store in the outbox. Default: `false` (hot tier
    /// only); the gateway turns it on when a store URL is configured.
    pub forward_enabled: bool,
    /// With forwarding, also write what this gateway observes of each device (sequence
    /// numbers, first sight, status, meta) as `gateway_device*` series, so that a query
    /// side reading the store can merge several gateways' views (README "Device state in
    /// the store"). Default: `true`.
    pub forward_device_series: bool,
    /// UTC offset of the local time in Tasmota's `Time` field, `+HH:MM` or `-HH:MM`.
    /// Default: `+07:00` (Hanoi).
    pub tasmota_utc_offset: String,
    /// SQLite durability of the state database (see [`Synchronous`]). Default: `normal`.
    pub synchronous: Synchronous,
    /// Size of a message-log segment file, preallocated (zeros written) when it is
    /// started, so that group commits overwrite instead of growing a file; whole segments
    /// are deleted once applied. Default: 16777216 (16 MiB).
    pub log_segment_bytes: u64,
    /// Apply backlog (bytes logged but not yet applied to the state) beyond which the
    /// gateway stops acknowledging, so the broker holds further messages. Default:
    /// 268435456 (256 MiB).
    pub log_max_backlog_bytes: u64,
    /// Most payload bytes applied in one state transaction (its decoded form is held in
    /// memory until the commit). Default: 1048576 (1 MiB).
    pub apply_max_bytes: usize,
    /// After new messages become durable, how long the applier waits for more before its
    /// transaction: fewer, larger transactions at a steady rate (each costs tens of
    /// microseconds however small). The log's group commit already gathers what arrives
    /// together, and a transaction in progress gathers the next batch. Default: 1 ms.
    pub apply_linger_ms: u64,
    /// How long a write waits for a lock held by another connection (the forwarder, the
    /// CLI) before failing. Default: 5000 ms.
    pub busy_timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            routes: default_routes(),
            status_routes: crate::status::default_status_routes(),
            device_kinds: Vec::new(),
            registry: None,
            max_payload_bytes: 64 * 1024,
            deadletter_payload_keep_bytes: 4096,
            max_future_skew_s: 300,
            hot_retention_s: 7 * 86_400,
            hot_head_max_readings: 200_000,
            hot_flush_interval_s: 600,
            max_past_age_s: 315_576_000,
            deadletter_retention_s: 30 * 86_400,
            deadletter_max_bytes: 256 * 1024 * 1024,
            device_retention_s: 90 * 86_400,
            max_cached_devices: 50_000,
            outbox_max_bytes: 256 * 1024 * 1024,
            outbox_policy: OutboxPolicy::Block,
            forward_enabled: false,
            forward_device_series: true,
            tasmota_utc_offset: "+07:00".to_owned(),
            synchronous: Synchronous::Normal,
            log_segment_bytes: 16 * 1024 * 1024,
            log_max_backlog_bytes: 256 * 1024 * 1024,
            apply_max_bytes: 1024 * 1024,
            apply_linger_ms: 1,
            busy_timeout_ms: 5000,
        }
    }
}

impl IngestConfig {
    /// Checks values that serde cannot, naming the key at fault.
    pub fn validate(&self) -> Result<(), IngestError> {
        let bad = |key: &str, why: &str| Err(IngestError::Config(format!("`{key}`: {why}")));
        if self.max_payload_bytes == 0 {
            return bad("max_payload_bytes", "must be greater than 0");
        }
        if self.hot_retention_s == 0 {
            return bad("hot_retention_s", "must be greater than 0");
        }
        if self.hot_head_max_readings == 0 {
            return bad("hot_head_max_readings", "must be greater than 0");
        }
        if self.hot_flush_interval_s == 0 {
            return bad("hot_flush_interval_s", "must be greater than 0");
        }
        if self.max_past_age_s == 0 {
            return bad("max_past_age_s", "must be greater than 0");
        }
        if self.log_segment_bytes < 4096 {
            return bad("log_segment_bytes", "must be at least 4096");
        }
        if self.log_max_backlog_bytes == 0 {
            return bad("log_max_backlog_bytes", "must be greater than 0");
        }
        if self.apply_max_bytes == 0 {
            return bad("apply_max_bytes", "must be greater than 0");
        }
        if self.apply_linger_ms > 10_000 {
            return bad("apply_linger_ms", "must be at most 10000");
        }
        if self.deadletter_max_bytes < self.max_payload_bytes as u64 {
            return bad(
                "deadletter_max_bytes",
                "must be at least max_payload_bytes (one dead letter must fit)",
            );
        }
        if self.device_retention_s == 0 {
            return bad("device_retention_s", "must be greater than 0");
        }
        if self.max_cached_devices == 0 {
            return bad("max_cached_devices", "must be greater than 0");
        }
        if self.outbox_max_bytes == 0 {
            return bad("outbox_max_bytes", "must be greater than 0");
        }
        if self.routes.is_empty() {
            return bad("routes", "at least one route is needed");
        }
        self.tasmota_offset_s()?;
        crate::route::Router::new(&self.routes)?;
        crate::status::StatusRouter::new(&self.status_routes)?;
        for k in &self.device_kinds {
            if schemas::topic::check_slug(k).is_err() {
                return bad(
                    "device_kinds",
                    &format!("`{k}` is not a slug (a-z, 0-9, '-', '_'; 1-64 bytes)"),
                );
            }
            if schemas::topic::DeviceKind::parse(k).is_some() {
                return bad(
                    "device_kinds",
                    &format!("`{k}` is built in; list only new kinds"),
                );
            }
        }
        Ok(())
    }

    /// [`IngestConfig::tasmota_utc_offset`] in seconds east of UTC.
    pub fn tasmota_offset_s(&self) -> Result<i32, IngestError> {
        parse_utc_offset(&self.tasmota_utc_offset).ok_or_else(|| {
            IngestError::Config(format!(
                "`tasmota_utc_offset`: {:?} is not an offset like +07:00",
                self.tasmota_utc_offset
            ))
        })
    }
}

/// `+07:00`, `-03:30`, `Z` -> seconds east of UTC.
fn parse_utc_offset(s: &str) -> Option<i32> {
    if s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_offsets_parse() {
        let c = IngestConfig::default();
        c.validate().unwrap();
        assert_eq!(c.tasmota_offset_s().unwrap(), 25_200);
        assert_eq!(parse_utc_offset("-03:30"), Some(-12_600));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        for bad in ["07:00", "+7", "+25:00", "+07:60", ""] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let c = IngestConfig {
            tasmota_utc_offset: "UTC+7".into(),
            ..IngestConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("tasmota_utc_offset")
        );
        let c: IngestConfig =
            serde_json::from_str(r#"{"outbox_policy":"drop-oldest","forward_enabled":true}"#)
                .unwrap();
        assert_eq!(c.outbox_policy, OutboxPolicy::DropOldest);
        assert_eq!(c.max_payload_bytes, 65_536);
        let c = IngestConfig {
            outbox_max_bytes: 0,
            ..IngestConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("outbox_max_bytes")
        );
    }
}
