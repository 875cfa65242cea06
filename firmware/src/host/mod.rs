//! The host runner: the device core and its MQTT link on a PC, over tokio TCP, with
//! simulated sensors and a clock that may run faster than real time.
//!
//! Simulators and end-to-end tests use it to run the same node (sampler, encoder,
//! backlog) and link code that a board runs, against a real broker. Only the shell
//! differs: tokio instead of embassy, [`Synthetic`] sensors instead of I2C and UART, the
//! system clock instead of SNTP.
//!
//! A device's future is not `Send` (the MQTT client borrows a caller buffer through a
//! raw pointer): run it on a `LocalSet` or a current-thread runtime, or start devices as
//! a [`Fleet`], which gives them a thread of their own behind a `Send` handle.
//!
//! ```no_run
//! # async fn demo() {
//! use firmware::NodeConfig;
//! use firmware::host::{HostConfig, Synthetic, run_device};
//! use schemas::topic::DeviceKind;
//!
//! let node = NodeConfig::new("aq-0001", "hoan-kiem", DeviceKind::AirQuality).unwrap();
//! let sensors = (Synthetic::weather(1), Synthetic::particulates(1));
//! let broker = "127.0.0.1:1883".parse().unwrap();
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! let report = run_device(HostConfig::new(node), sensors, broker, shutdown).await;
//! println!("{report:?}");
//! # }
//! ```

pub mod clock;
pub mod fleet;
pub mod net;
pub mod sensors;

use core::future::Future;
use std::{
    net::SocketAddr,
    string::String,
    time::{SystemTime, UNIX_EPOCH},
};

pub use clock::HostClock;
pub use fleet::Fleet;
pub use net::TokioConnector;
pub use sensors::{Synthetic, SyntheticSet, Waveform};

use crate::{
    Node, NodeConfig, Sensors,
    link::{BackoffConfig, Clock, Device, Link, LinkConfig, LinkStats, SCRATCH_MIN},
    node::NodeStats,
};

/// Backlog slots of a host node: an hour of packs at the default 60 s period.
pub const HOST_SLOTS: usize = 64;
/// Bytes per backlog slot of a host node (a 7-metric pack is about 150 bytes).
pub const HOST_SLOT_BYTES: usize = 256;

/// The node the host runner builds.
pub type HostNode<S> = Node<S, HOST_SLOTS, HOST_SLOT_BYTES>;

/// Where the node's wall-clock time comes from (a board learns it by SNTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WallClock {
    /// The system clock at start; with a speed-up, simulated time runs ahead from there.
    System,
    /// A simulated start instant, Unix ms: replaying a past day, say.
    Fixed(u64),
    /// Unknown, as on a board whose SNTP failed: packs carry relative times and the
    /// gateway stamps them.
    Unknown,
}

/// How a host device runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The node's identity and reporting period.
    pub node: NodeConfig,
    /// Keep-alive asked of the broker, seconds. Default: 30.
    pub keep_alive_s: u16,
    /// Bound on a TCP connect, CONNACK, PUBACK, PINGRESP, in real ms (like the
    /// keep-alive, whatever the speed-up). Default: 10 000.
    pub op_timeout_ms: u32,
    /// Reconnect schedule, in device ms (it is the device's policy, so it speeds up
    /// with the clock). Default: [`BackoffConfig::default`].
    pub backoff: BackoffConfig,
    /// Broker user name. Default: none.
    pub username: Option<String>,
    /// Broker password. Default: none.
    pub password: Option<String>,
    /// Device time runs this many times faster than real time. Default: 1.
    pub speedup: u32,
    /// Wall-clock source. Default: [`WallClock::System`].
    pub wall_clock: WallClock,
    /// Seed of the backoff jitter. Default: a hash of the device id, so a simulated
    /// fleet spreads its reconnects like a real one.
    pub seed: u32,
}

impl HostConfig {
    /// Defaults around a node config.
    pub fn new(node: NodeConfig) -> Self {
        let seed = node.device.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Self {
            node,
            keep_alive_s: 30,
            op_timeout_ms: 10_000,
            backoff: BackoffConfig::default(),
            username: None,
            password: None,
            speedup: 1,
            wall_clock: WallClock::System,
            seed,
        }
    }
}

/// What a host device did, when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceReport {
    /// The link's counters.
    pub link: LinkStats,
    /// The node's counters.
    pub node: NodeStats,
    /// Packs still in the backlog (not acknowledged by the broker).
    pub backlog_len: usize,
    /// Readings the backlog dropped on overflow since start.
    pub dropped_total: u64,
}

/// Builds a node from `config` and `sensors`, runs it and its link against `broker`
/// until `shutdown` completes (then says `offline` and disconnects), and reports.
pub async fn run_device<S: Sensors>(
    config: HostConfig,
    sensors: S,
    broker: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> DeviceReport {
    let mut node: HostNode<S> = Node::new(config.node.clone(), sensors);
    let link = run_node(&mut node, &config, broker, shutdown).await;
    DeviceReport {
        link,
        node: node.stats(),
        backlog_len: node.backlog_ref().len(),
        dropped_total: node.backlog_ref().dropped_total(),
    }
}

/// Runs an existing node (any backlog size) and its link until `shutdown`; for
/// simulators that build or inspect nodes themselves. `config.node` is not used.
pub async fn run_node<S: Sensors, const SLOTS: usize, const SLOT_BYTES: usize>(
    node: &mut Node<S, SLOTS, SLOT_BYTES>,
    config: &HostConfig,
    broker: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> LinkStats {
    let clock = HostClock::new(config.speedup);
    let unix_at_boot = match config.wall_clock {
        WallClock::System => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok()),
        WallClock::Fixed(ms) => Some(ms),
        WallClock::Unknown => None,
    };
    if let Some(unix_ms) = unix_at_boot {
        node.set_unix_time(clock.now_ms(), unix_ms);
    }
    // The client id borrows from here, not from the node the link drives.
    let client_id: String = node.config().device.as_str().into();
    let link = LinkConfig {
        client_id: &client_id,
        username: config.username.as_deref(),
        password: config.password.as_deref().map(str::as_bytes),
        keep_alive_s: config.keep_alive_s,
        op_timeout_ms: config.op_timeout_ms,
        time_scale: config.speedup,
        backoff: config.backoff,
    };
    run_link(node, broker, link, &clock, config.seed, shutdown).await
}

/// Runs any [`Device`] and its link against `broker` until `shutdown`, on `clock`.
pub async fn run_link<D: Device>(
    device: &mut D,
    broker: SocketAddr,
    link: LinkConfig<'_>,
    clock: &HostClock,
    seed: u32,
    shutdown: impl Future<Output = ()>,
) -> LinkStats {
    let mut connector = TokioConnector::new(broker);
    let mut link = Link::new(link, seed);
    // Exactly what the boards give it, so these tests cover their setting.
    let mut scratch = [0u8; SCRATCH_MIN];
    link.run(&mut connector, device, clock, &mut scratch, shutdown)
        .await;
    link.stats()
}
