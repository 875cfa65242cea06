//! The unit of input: one MQTT message as the gateway received it.

use bytes::Bytes;

/// One raw message, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The MQTT topic it was published on.
    pub topic: String,
    /// The payload, untouched.
    pub payload: Bytes,
    /// When the gateway received it, in nanoseconds since the Unix epoch. Readings without
    /// a time of their own (ESPHome, UltraLight, SenML relative times) are stamped with it.
    pub received_at_ns: i64,
    /// The broker sent it because of a new subscription (MQTT RETAIN flag on delivery): the
    /// last value of the topic, published some time before, not a new message.
    pub retained: bool,
}

impl Inbound {
    /// A message received now.
    pub fn now(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            received_at_ns: now_ns(),
            retained: false,
        }
    }
}

/// Nanoseconds since the Unix epoch, from the system clock (0 if it is set before 1970).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
