//! Validation: why a message or a reading is refused, as stable kebab-case reasons, and the
//! per-reading checks (catalog ranges, finiteness, time window).
//!
//! **Granularity.** A message that cannot be decoded at all (bad topic, malformed payload,
//! spoofed device, too large, empty) is dead-lettered whole. A message that decodes but has
//! some bad readings keeps its good readings; the bad ones are dead-lettered together as one
//! dead letter per message, carrying the whole payload for context, the reason of the first
//! bad reading and a detail line per bad reading. Operators keep every good reading, and a
//! replay of the dead letter after a fix re-inserts only what was missing (the rest is
//! ignored as duplicates).

use crate::decode::Reading;

/// Why something was refused. The string forms are stable: they are metric labels, dead
/// letter reasons and part of the CLI output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not decodable in the route's format (bad CBOR/JSON/text, wrong structure).
    MalformedPayload,
    /// A catalog metric outside its physical range.
    OutOfRange,
    /// NaN or an infinity.
    NonFinite,
    /// Stamped more than `max_future_skew_s` after receipt.
    FutureTimestamp,
    /// Older than `max_past_age_s` before receipt: an absurd time (a clock at its epoch,
    /// a wrong unit). Older readings within that bound are kept and forwarded.
    TooOld,
    /// Larger than `max_payload_bytes`.
    PayloadTooLarge,
    /// The payload names another device than the topic (SenML base name), or a message
    /// of one format writes a device another format owns (the format that reported it
    /// first).
    SpoofedDevice,
    /// No route matches the topic.
    NoRoute,
    /// The topic matches a route but its captures are not valid (device slug, kind).
    BadTopic,
    /// A native topic with a channel other than `up`, `status` or `meta`.
    UnknownChannel,
    /// The message holds no readings.
    Empty,
    /// A reading whose unit differs from the catalog's.
    WrongUnit,
    /// A line-protocol line with neither a `device` nor a `host` tag.
    NoDevice,
    /// The store answered 400/422 to this line (set by the forwarder).
    StoreRejected,
    /// An UltraLight message whose API key is not among the route's `apikeys`.
    UnknownApikey,
    /// A device outside its route's `devices` allow-list.
    DeviceNotAllowed,
}

impl Reason {
    /// Every reason, for documentation and metric pre-registration.
    pub const ALL: [Reason; 16] = [
        Self::MalformedPayload,
        Self::OutOfRange,
        Self::NonFinite,
        Self::FutureTimestamp,
        Self::TooOld,
        Self::PayloadTooLarge,
        Self::SpoofedDevice,
        Self::NoRoute,
        Self::BadTopic,
        Self::UnknownChannel,
        Self::Empty,
        Self::WrongUnit,
        Self::NoDevice,
        Self::StoreRejected,
        Self::UnknownApikey,
        Self::DeviceNotAllowed,
    ];

    /// The stable kebab-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedPayload => "malformed-payload",
            Self::OutOfRange => "out-of-range",
            Self::NonFinite => "non-finite",
            Self::FutureTimestamp => "future-timestamp",
            Self::TooOld => "too-old",
            Self::PayloadTooLarge => "payload-too-large",
            Self::SpoofedDevice => "spoofed-device",
            Self::NoRoute => "no-route",
            Self::BadTopic => "bad-topic",
            Self::UnknownChannel => "unknown-channel",
            Self::Empty => "empty",
            Self::WrongUnit => "wrong-unit",
            Self::NoDevice => "no-device",
            Self::StoreRejected => "store-rejected",
            Self::UnknownApikey => "unknown-apikey",
            Self::DeviceNotAllowed => "device-not-allowed",
        }
    }

    /// Parses [`Reason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stable reason.
    pub reason: Reason,
    /// What exactly was wrong, for operators.
    pub detail: String,
}

impl Rejection {
    /// A rejection.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The time window and limits readings are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Readings stamped later than receipt plus this are refused.
    pub max_future_skew_ns: i64,
    /// Readings stamped earlier than receipt minus this are refused (`max_past_age_s`).
    pub max_past_age_ns: i64,
}

/// Checks one decoded reading against the catalog and the time window.
pub fn check_reading(
    r: &Reading<'_>,
    received_at_ns: i64,
    limits: &Limits,
) -> Result<(), Rejection> {
    let what = || format!("{}={} @{}ns", r.metric.name(), r.value, r.ts_ns);
    if !r.value.is_finite() {
        return Err(Rejection::new(Reason::NonFinite, what()));
    }
    if let Some(m) = r.metric.catalog()
        && !m.in_range(r.value)
    {
        return Err(Rejection::new(
            Reason::OutOfRange,
            format!(
                "{}: valid range is [{}, {}] {}",
                what(),
                m.min,
                m.max,
                m.unit
            ),
        ));
    }
    if r.ts_ns > received_at_ns.saturating_add(limits.max_future_skew_ns) {
        return Err(Rejection::new(
            Reason::FutureTimestamp,
            format!(
                "{}: {} s after receipt",
                what(),
                (i128::from(r.ts_ns) - i128::from(received_at_ns)) / 1_000_000_000
            ),
        ));
    }
    if r.ts_ns < received_at_ns.saturating_sub(limits.max_past_age_ns) {
        return Err(Rejection::new(
            Reason::TooOld,
            format!(
                "{}: {} s before receipt, older than max_past_age_s",
                what(),
                (i128::from(received_at_ns) - i128::from(r.ts_ns)) / 1_000_000_000
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::MetricName;

    const NOW: i64 = 1_767_600_000_000_000_000;
    const LIMITS: Limits = Limits {
        max_future_skew_ns: 300_000_000_000,
        max_past_age_ns: 10 * 365 * 86_400_000_000_000,
    };

    fn reading(name: &str, value: f64, ts_ns: i64) -> Reading<'_> {
        Reading {
            metric: MetricName::of(name),
            value,
            ts_ns,
        }
    }

    #[test]
    fn each_check_has_its_reason() {
        let cases = [
            (reading("pm25", 12.0, NOW), None),
            (reading("pm25", -1.0, NOW), Some(Reason::OutOfRange)),
            (reading("temperature", 120.0, NOW), Some(Reason::OutOfRange)),
            (reading("custom_thing", 1e12, NOW), None),
            (reading("pm25", f64::NAN, NOW), Some(Reason::NonFinite)),
            (
                reading("custom_thing", f64::INFINITY, NOW),
                Some(Reason::NonFinite),
            ),
            (
                reading("pm25", 1.0, NOW + 301_000_000_000),
                Some(Reason::FutureTimestamp),
            ),
            (reading("pm25", 1.0, NOW + 299_000_000_000), None),
            // Older than the hot tier's week: kept (it goes to the store only).
            (reading("pm25", 1.0, NOW - 30 * 86_400_000_000_000), None),
            (
                reading("pm25", 1.0, NOW - 50 * 365 * 86_400_000_000_000),
                Some(Reason::TooOld),
            ),
        ];
        for (r, want) in cases {
            let got = check_reading(&r, NOW, &LIMITS).err().map(|e| e.reason);
            assert_eq!(got, want, "{r:?}");
        }
    }

    #[test]
    fn reasons_round_trip_and_are_kebab_case() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert!(
                r.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-')
            );
        }
    }
}
