//! The sensor-node core: a `no_std`, allocation-free library that the board images and the
//! host runner share.
//!
//! Data flows one way through it:
//!
//! ```text
//! drivers (Sensor) -> sampler (windows per metric) -> node (one pack per period,
//!   SenML-CBOR via encode) -> backlog (ring of packs) -> link (MQTT 5, QoS 1, PUBACK acks)
//! ```
//!
//! - [`drivers`]: BME280, SCD41, PMS5003, noise (LAeq) and the Wi-Fi access point trait,
//!   all behind the [`drivers::Sensor`] interface; faults and warm-up are statuses, never
//!   values.
//! - [`sampler`]: per-sensor intervals and per-metric windows (mean/min/max/last).
//! - [`clock`]: monotonic-to-Unix offset and a sans-IO SNTP codec.
//! - [`backlog`]: bounded ring of encoded packs, overflow accounting.
//! - [`encode`]: pack layout (`bn` = `"{device}:"`, `bt`, `seq`).
//! - [`node`]: the sans-IO state machine that ties them together.
//! - [`link`]: the MQTT 5 session over any `embedded-io-async` socket, with reconnect policy.
//! - `host` (feature `std`): the same node and link over tokio TCP with simulated sensors.
#![no_std]

pub mod backlog;
pub mod clock;
pub mod drivers;
pub mod encode;
pub mod node;
pub mod sampler;

pub use backlog::{Backlog, BacklogError, PackId};
pub use drivers::{Metric, Reading, Readings, Sensor, SensorStatus, Sensors};
pub use node::{Node, NodeConfig};
pub mod link;

// The host runner (tokio TCP, simulated sensors) needs std; the core never does.
#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
pub mod host;
