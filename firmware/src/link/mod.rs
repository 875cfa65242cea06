//! The device's MQTT 5 link: one session over any TCP socket, and the policy that
//! keeps it up.
//!
//! What the link does, in order, on every connection:
//! 1. CONNECT with a last will: `status` = `offline`, retained, QoS 1, so the city sees a
//!    board that vanished without saying goodbye;
//! 2. birth messages: `status` = `online` and the device description on `meta`, both
//!    retained, so a dashboard that subscribes later still learns both;
//! 3. publishes `backlog.oldest()` with QoS 1 and removes it only on its PUBACK, one pack
//!    in flight at a time, so readings leave in the order they were taken;
//! 4. pings when idle and gives up a silent broker;
//! 5. on any failure, waits per the [`Backoff`] policy while the node keeps sampling into
//!    its backlog, then starts over.
//!
//! The decisions (when to reconnect, when to ping, when a PUBACK clears the backlog) are
//! sans-IO state machines ([`backoff`], [`keepalive`], [`outbox`]) tested with simulated
//! time. The I/O shell drives `rust-mqtt` over [`embedded_io_async`] and is generic over
//! how a socket is opened ([`Connector`]) and how time passes ([`Clock`]): embassy-net on
//! the ESP32-C3, tokio on the host.

pub mod backoff;
#[cfg(feature = "embassy-clock")]
mod embassy;
pub mod keepalive;
pub mod outbox;
mod runner;
mod session;

use core::future::Future;

pub use backoff::{Backoff, BackoffConfig, LinkState};
#[cfg(feature = "embassy-clock")]
pub use embassy::EmbassyClock;
pub use runner::{Link, LinkStats};
use schemas::topic::{Channel, MAX_TOPIC_LEN};

use crate::{Node, Sensors};

/// A topic of the native scheme, built without allocation.
pub type TopicString = heapless::String<MAX_TOPIC_LEN>;

/// Largest `meta` payload the link publishes (retained JSON description).
pub const META_MAX: usize = 512;

/// Scratch the MQTT client needs for what the broker sends (CONNACK properties).
/// Pass at least this much to [`Link::run`].
pub const SCRATCH_MIN: usize = 256;

/// What the link needs from the device core (implemented by `firmware::node::Node`).
pub trait Device {
    /// Advances the core to `now_ms` (ms since boot): samples, closes windows, fills the backlog.
    fn poll(&mut self, now_ms: u64);
    /// Next instant at which [`poll`](Self::poll) has work.
    fn next_deadline(&self) -> u64;
    /// The oldest encoded pack not yet acknowledged by the broker.
    fn oldest(&mut self) -> Option<&[u8]>;
    /// The broker acknowledged the oldest pack: drop it from the backlog.
    fn ack_oldest(&mut self);
    /// The broker can never take the oldest pack (it exceeds the broker's maximum
    /// packet size): drop it, counting its readings as dropped so that the next pack
    /// reports them. The default drops it without counting.
    fn discard_oldest(&mut self) {
        self.ack_oldest();
    }
    /// The device's topic for `channel` (`city/{district}/{kind}/{device}/{channel}`).
    fn topic(&self, channel: Channel) -> TopicString;
    /// Writes the retained `meta` payload into `buf`; returns its length, or `None` if it
    /// does not fit (the link then publishes no `meta`).
    fn meta_payload(&self, buf: &mut [u8]) -> Option<usize>;
}

impl<S: Sensors, const SLOTS: usize, const SLOT_BYTES: usize> Device
    for Node<S, SLOTS, SLOT_BYTES>
{
    fn poll(&mut self, now_ms: u64) {
        Node::poll(self, now_ms);
    }

    fn next_deadline(&self) -> u64 {
        Node::next_deadline(self)
    }

    fn oldest(&mut self) -> Option<&[u8]> {
        // Marks the pack as in flight (overflow then drops the next-oldest instead) and,
        // before SNTP, stamps it with its age so a backlog flushed in a burst keeps its times.
        Node::begin_publish(self)
    }

    fn ack_oldest(&mut self) {
        self.backlog().ack_oldest();
    }

    fn discard_oldest(&mut self) {
        let backlog = self.backlog();
        let before = backlog.queued_readings();
        backlog.ack_oldest();
        let lost = before.saturating_sub(backlog.queued_readings());
        backlog.count_dropped(lost);
    }

    fn topic(&self, channel: Channel) -> TopicString {
        match channel {
            Channel::Up => self.up_topic(),
            Channel::Status => self.status_topic(),
            Channel::Meta => self.meta_topic(),
        }
    }

    fn meta_payload(&self, buf: &mut [u8]) -> Option<usize> {
        Node::meta_payload(self, buf).ok()
    }
}

/// Monotonic time and sleeping, as the board's runtime provides them.
pub trait Clock {
    /// Milliseconds since boot; never goes back.
    fn now_ms(&self) -> u64;
    /// Completes at or after `at_ms`. `u64::MAX` means "never".
    fn sleep_until(&self, at_ms: u64) -> impl Future<Output = ()>;
}

/// Opens a fresh TCP connection to the broker.
pub trait Connector {
    /// The connected socket.
    type Conn<'a>: embedded_io_async::Read + embedded_io_async::Write
    where
        Self: 'a;
    /// Why the connection could not be opened.
    type Error: core::fmt::Debug;
    /// Connects to the broker. The link bounds the attempt with its own timeout.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Conn<'_>, Self::Error>>;
}

/// Tuning of the link. Strings borrow from the board's configuration.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig<'a> {
    /// MQTT client identifier; the device id. Default: `"device"` (set it).
    pub client_id: &'a str,
    /// Broker user name. Default: none.
    pub username: Option<&'a str>,
    /// Broker password. Default: none.
    pub password: Option<&'a [u8]>,
    /// Keep-alive interval asked of the broker, in seconds (0 disables). Default: 30 s.
    pub keep_alive_s: u16,
    /// Bound on a TCP connect, the CONNACK and each PUBACK. Default: 10 000 ms.
    pub op_timeout_ms: u32,
    /// Clock milliseconds per real millisecond. 1 on a board (default). A simulation
    /// whose [`Clock`] runs N times faster sets N: the keep-alive and the timeouts are
    /// the broker's business, measured in real time, while sampling and backoff follow
    /// the device's clock.
    pub time_scale: u32,
    /// Reconnect schedule.
    pub backoff: BackoffConfig,
}

impl Default for LinkConfig<'_> {
    fn default() -> Self {
        Self {
            client_id: "device",
            username: None,
            password: None,
            keep_alive_s: 30,
            op_timeout_ms: 10_000,
            time_scale: 1,
            backoff: BackoffConfig::default(),
        }
    }
}

impl LinkConfig<'_> {
    /// [`op_timeout_ms`](Self::op_timeout_ms) on the link's clock.
    pub(crate) fn op_timeout(&self) -> u64 {
        self.clock_ms(u64::from(self.op_timeout_ms))
    }

    /// A real-time span in ms on the link's clock.
    pub(crate) fn clock_ms(&self, real_ms: u64) -> u64 {
        real_ms.saturating_mul(u64::from(self.time_scale.max(1)))
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The TCP connection could not be opened.
    #[error("TCP connect to the broker failed")]
    Connect,
    /// The broker refused the MQTT session (CONNACK reason code) or closed it (DISCONNECT).
    #[error("broker refused or closed the session (reason code {0:#04x})")]
    Refused(u8),
    /// The socket failed.
    #[error("network error: {0:?}")]
    Network(embedded_io_async::ErrorKind),
    /// The broker sent something that breaks the protocol.
    #[error("broker violated the MQTT protocol")]
    Protocol,
    /// The broker did not answer in time (CONNACK, PUBACK, PINGRESP).
    #[error("broker did not answer in time")]
    Timeout,
    /// The broker refused a publish (PUBACK reason code); the pack stays in the backlog.
    #[error("broker rejected a publish (reason code {0:#04x})")]
    Rejected(u8),
    /// A packet exceeds the broker's maximum packet size (a pack is then discarded).
    #[error("packet larger than the broker's maximum packet size")]
    TooLarge,
    /// The client id, a topic or a credential is not a valid MQTT string.
    #[error("client id, topic or credential is not a valid MQTT string")]
    InvalidConfig,
    /// The MQTT client refused an operation (a local limit, such as the scratch buffer).
    #[error("MQTT client error")]
    Client,
}
