//! The MQTT topic scheme, parsed and built without allocation.
//!
//! ```text
//! city/{district}/{kind}/{device}/up       readings (SenML, QoS 1)
//! city/{district}/{kind}/{device}/status   "online" / "offline", retained; "offline" is the last will
//! city/{district}/{kind}/{device}/meta     retained JSON: firmware version, sensors, location
//! ```
//!
//! `district` and `device` are slugs: 1 to 64 bytes of `a-z`, `0-9`, `-` and `_`. That keeps
//! them safe as MQTT topic levels (no wildcards, no `$`), as store tags and as URL path
//! segments, and makes a device id unambiguous across formats.

use core::fmt;

/// Prefix of every topic of the native scheme.
pub const ROOT: &str = "city";
/// Retained status payload of a connected device.
pub const STATUS_ONLINE: &[u8] = b"online";
/// Retained status payload (and last will) of a disconnected device.
pub const STATUS_OFFLINE: &[u8] = b"offline";
/// Longest district or device slug.
pub const MAX_SLUG_LEN: usize = 64;
/// Longest topic the scheme produces: `city/` + 3 slugs + kind + channel + separators.
pub const MAX_TOPIC_LEN: usize = 5 + 3 * (MAX_SLUG_LEN + 1) + 11 + 7;

/// Hanoi's twelve urban districts, as topic slugs: the reference city's defaults.
pub static HANOI_DISTRICTS: &[&str] = &[
    "ba-dinh",
    "hoan-kiem",
    "tay-ho",
    "long-bien",
    "cau-giay",
    "dong-da",
    "hai-ba-trung",
    "hoang-mai",
    "thanh-xuan",
    "nam-tu-liem",
    "bac-tu-liem",
    "ha-dong",
];

/// The kinds of device the city runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// Air-quality station: particulates, gases, temperature, humidity, pressure.
    AirQuality,
    /// Weather station.
    Weather,
    /// Street noise meter.
    Noise,
    /// Board inside a public Wi-Fi access point.
    Wifi,
}

impl DeviceKind {
    /// All kinds, in a stable order.
    pub const ALL: [DeviceKind; 4] = [Self::AirQuality, Self::Weather, Self::Noise, Self::Wifi];

    /// The topic slug.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AirQuality => "airquality",
            Self::Weather => "weather",
            Self::Noise => "noise",
            Self::Wifi => "wifi",
        }
    }

    /// Parses a topic slug.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last topic level: what the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Readings.
    Up,
    /// Online/offline status (retained, last will).
    Status,
    /// Device description (retained).
    Meta,
}

impl Channel {
    /// The topic level.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Status => "status",
            Self::Meta => "meta",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "up" => Some(Self::Up),
            "status" => Some(Self::Status),
            "meta" => Some(Self::Meta),
            _ => None,
        }
    }
}

/// Why a topic does not fit the scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not start with `city/`.
    #[error("topic does not start with `city/`")]
    WrongRoot,
    /// Fewer or more than five levels.
    #[error("topic must have 5 levels: city/{{district}}/{{kind}}/{{device}}/{{up|status|meta}}")]
    WrongLevelCount,
    /// The kind level is not a known device kind.
    #[error("unknown device kind (expected airquality, weather, noise or wifi)")]
    UnknownKind,
    /// The last level is not `up`, `status` or `meta`.
    #[error("unknown channel (expected up, status or meta)")]
    UnknownChannel,
    /// A district slug breaks the slug rules.
    #[error("invalid district: {0}")]
    BadDistrict(SlugError),
    /// A device slug breaks the slug rules.
    #[error("invalid device id: {0}")]
    BadDevice(SlugError),
    /// The destination buffer is too small.
    #[error("topic does not fit the buffer")]
    BufferTooSmall,
}

/// What is wrong with a slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Zero length.
    #[error("empty")]
    Empty,
    /// Longer than [`MAX_SLUG_LEN`].
    #[error("longer than 64 bytes")]
    TooLong,
    /// A byte outside `a-z0-9-_`.
    #[error("only a-z, 0-9, '-' and '_' are allowed")]
    BadChar,
}

/// Checks the slug rules for districts and device ids.
pub fn check_slug(s: &str) -> Result<(), SlugError> {
    if s.is_empty() {
        return Err(SlugError::Empty);
    }
    if s.len() > MAX_SLUG_LEN {
        return Err(SlugError::TooLong);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(SlugError::BadChar);
    }
    Ok(())
}

/// The four levels after `city/`: district, kind, device, channel.
fn split_levels(topic: &str) -> Result<[&str; 4], TopicError> {
    let mut levels = topic.split('/');
    if levels.next() != Some(ROOT) {
        return Err(TopicError::WrongRoot);
    }
    let (Some(district), Some(kind), Some(device), Some(channel), None) = (
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
    ) else {
        return Err(TopicError::WrongLevelCount);
    };
    Ok([district, kind, device, channel])
}

/// A topic of the native scheme, borrowing its slugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic<'a> {
    /// District slug.
    pub district: &'a str,
    /// Device kind.
    pub kind: DeviceKind,
    /// Device id slug.
    pub device: &'a str,
    /// Message channel.
    pub channel: Channel,
}

impl<'a> Topic<'a> {
    /// Builds a topic, checking the slugs.
    pub fn new(
        district: &'a str,
        kind: DeviceKind,
        device: &'a str,
        channel: Channel,
    ) -> Result<Self, TopicError> {
        check_slug(district).map_err(TopicError::BadDistrict)?;
        check_slug(device).map_err(TopicError::BadDevice)?;
        Ok(Self {
            district,
            kind,
            device,
            channel,
        })
    }

    /// Parses `city/{district}/{kind}/{device}/{channel}`.
    pub fn parse(topic: &'a str) -> Result<Self, TopicError> {
        let [district, kind, device, channel] = split_levels(topic)?;
        let kind = DeviceKind::parse(kind).ok_or(TopicError::UnknownKind)?;
        let channel = Channel::parse(channel).ok_or(TopicError::UnknownChannel)?;
        Self::new(district, kind, device, channel)
    }

    /// The same device on another channel.
    pub fn with_channel(self, channel: Channel) -> Self {
        Self { channel, ..self }
    }

    /// Writes the topic string.
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        write!(
            w,
            "{ROOT}/{}/{}/{}/{}",
            self.district,
            self.kind.as_str(),
            self.device,
            self.channel.as_str()
        )
    }

    /// The topic as a fixed-capacity string.
    pub fn to_heapless<const N: usize>(&self) -> Result<heapless::String<N>, TopicError> {
        let mut s = heapless::String::new();
        self.write_to(&mut s)
            .map_err(|_| TopicError::BufferTooSmall)?;
        Ok(s)
    }

    /// The subscription filter matching every device's readings: `city/+/+/+/up`.
    pub const UP_FILTER: &'static str = "city/+/+/+/up";
}

/// A native-scheme topic whose kind is any slug: what a gateway parses when the city runs
/// device kinds beyond [`DeviceKind`] (traffic counters, water-level sensors), which it
/// checks against its configuration. Devices use [`Topic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawTopic<'a> {
    /// District slug.
    pub district: &'a str,
    /// Device kind slug (a [`DeviceKind`] or a configured one).
    pub kind: &'a str,
    /// Device id slug.
    pub device: &'a str,
    /// Message channel.
    pub channel: Channel,
}

impl<'a> RawTopic<'a> {
    /// Parses `city/{district}/{kind}/{device}/{channel}` with any slug as the kind.
    pub fn parse(topic: &'a str) -> Result<Self, TopicError> {
        let [district, kind, device, channel] = split_levels(topic)?;
        check_slug(kind).map_err(|_| TopicError::UnknownKind)?;
        let channel = Channel::parse(channel).ok_or(TopicError::UnknownChannel)?;
        check_slug(district).map_err(TopicError::BadDistrict)?;
        check_slug(device).map_err(TopicError::BadDevice)?;
        Ok(Self {
            district,
            kind,
            device,
            channel,
        })
    }
}

impl fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_topics_take_any_kind_slug() {
        let t = RawTopic::parse("city/ba-dinh/traffic/tc-1/status").unwrap();
        assert_eq!(
            (t.kind, t.device, t.channel),
            ("traffic", "tc-1", Channel::Status)
        );
        assert_eq!(
            RawTopic::parse("city/ba-dinh/Traffic/tc-1/up"),
            Err(TopicError::UnknownKind)
        );
        assert_eq!(
            RawTopic::parse("city/ba-dinh/traffic/tc-1/x"),
            Err(TopicError::UnknownChannel)
        );
    }

    #[test]
    fn parse_and_build_round_trip() {
        let t = Topic::parse("city/hoan-kiem/airquality/aq-0001/up").unwrap();
        assert_eq!(t.district, "hoan-kiem");
        assert_eq!(t.kind, DeviceKind::AirQuality);
        assert_eq!(t.device, "aq-0001");
        assert_eq!(t.channel, Channel::Up);
        let s: heapless::String<MAX_TOPIC_LEN> = t.to_heapless().unwrap();
        assert_eq!(s.as_str(), "city/hoan-kiem/airquality/aq-0001/up");
        let st = t.with_channel(Channel::Status).to_heapless::<64>().unwrap();
        assert_eq!(st.as_str(), "city/hoan-kiem/airquality/aq-0001/status");
    }

    #[test]
    fn malformed_topics_have_clear_errors() {
        use TopicError::*;
        let cases: &[(&str, TopicError)] = &[
            ("town/a/wifi/d/up", WrongRoot),
            ("city/a/wifi/d", WrongLevelCount),
            ("city/a/wifi/d/up/extra", WrongLevelCount),
            ("city/a/toaster/d/up", UnknownKind),
            ("city/a/wifi/d/down", UnknownChannel),
            ("city//wifi/d/up", BadDistrict(SlugError::Empty)),
            ("city/a/wifi/D1/up", BadDevice(SlugError::BadChar)),
            ("city/a/wifi/+/up", BadDevice(SlugError::BadChar)),
            ("", WrongRoot),
        ];
        for (topic, err) in cases {
            assert_eq!(Topic::parse(topic), Err(*err), "{topic}");
        }
        let long = [b'a'; 65];
        let long = core::str::from_utf8(&long).unwrap();
        assert_eq!(check_slug(long), Err(SlugError::TooLong));
    }

    #[test]
    fn buffer_too_small() {
        let t = Topic::parse("city/hoan-kiem/airquality/aq-0001/up").unwrap();
        assert_eq!(t.to_heapless::<8>(), Err(TopicError::BufferTooSmall));
    }

    #[test]
    fn districts_are_valid_slugs() {
        for d in HANOI_DISTRICTS {
            check_slug(d).unwrap();
        }
    }
}
