//! The firmware core with its MQTT 5 link on QEMU's `mps2-an386` board (Cortex-M4F):
//! the image that the end-to-end tests run under `qemu-system-arm`.
//!
//! The board crate is only the shell, as on the ESP32-C3: it binds the LAN9118 Ethernet
//! (the `lan9118` crate, polled), DHCP and TCP (embassy-net), time (SysTick) and the
//! configuration (semihosting arguments, see [`config`]) to the core. Sampling,
//! encoding, the backlog, the MQTT session and the reconnect policy are the core's, the
//! same code the host tests and the ESP32-C3 run. QEMU has no sensors, so the sensors
//! are simulated ([`sensors`]); that is the one stand-in.
//!
//! Why embassy-net over a hand-driven smoltcp interface: the core's link wants
//! `embedded-io-async` sockets and an async clock, which embassy-net's `TcpSocket` and
//! embassy-time give as they do on the ESP32-C3, so the two boards share the shape of
//! their shells (connector, clock) and the link code runs unchanged.
//!
//! Run it (after `scripts/build-boards.sh mps2-an386`):
//!
//! ```text
//! qemu-system-arm -M mps2-an386 -nographic -monitor none -serial null \
//!   -nic user,model=lan9118 -kernel target/thumbv7em-none-eabihf/release/mps2-an386 \
//!   -semihosting-config enable=on,target=native,arg=mps2-an386,arg=port=1883,arg=period=5
//! ```
//!
//! It logs to QEMU's stdout, and exits (QEMU with it) with 0 after `run=` seconds or 1
//! when it cannot run (bad arguments, no NIC).

#![no_std]
#![no_main]

mod config;
mod executor;
mod nic;
mod semihosting;
mod sensors;
mod time;

use embassy_executor::Spawner;
use embassy_net::{Runner, Stack, StackResources, tcp::TcpSocket};
use embassy_time::{Duration, Timer};
use firmware::{
    Node, NodeConfig,
    link::{BackoffConfig, Connector, EmbassyClock, Link, LinkConfig, SCRATCH_MIN},
};
use lan9118::{Lan9118, Mmio};
use schemas::topic::DeviceKind;
use static_cell::StaticCell;

use crate::{
    config::{BoardConfig, CMDLINE_MAX},
    nic::Nic,
    semihosting::log,
    sensors::{SimParticulates, SimWeather},
};

/// Core clock of the MPS2 FPGA images, SysTick's source.
const CORE_HZ: u32 = 25_000_000;
/// The LAN9118 on the MPS2 boards.
const LAN9118_BASE: usize = 0x4020_0000;

/// Backlog: 16 packs of up to 256 bytes. Small on purpose: at a 1 s period a test
/// overflows it with a broker outage of a quarter of a minute.
const SLOTS: usize = 16;
const SLOT_BYTES: usize = 256;
/// TCP socket buffers: an MQTT packet of this board is a few hundred bytes.
const SOCKET_BUF: usize = 1536;

type QemuNode = Node<(SimWeather, SimParticulates), SLOTS, SLOT_BYTES>;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log!("panic: {}", info);
    semihosting::exit(false)
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let Some(core) = cortex_m::Peripherals::take() else {
        fatal("core peripherals already taken")
    };
    time::start(core.SYST, CORE_HZ);
    executor::run(|spawner| match board_task(spawner) {
        Ok(task) => spawner.spawn(task),
        Err(_) => fatal("cannot spawn the board task"),
    })
}

/// Brings the board up and runs the core and its link until the configured stop.
#[embassy_executor::task]
async fn board_task(spawner: Spawner) {
    let mut line = [0u8; CMDLINE_MAX];
    let cmdline = semihosting::cmdline(&mut line).unwrap_or("");
    let cfg = match BoardConfig::parse(cmdline) {
        Ok(cfg) => cfg,
        Err(e) => fatal_args(e),
    };
    let seed = fnv1a(cfg.device.as_bytes());

    // SAFETY: the MPS2 memory map puts the LAN9118 there; nothing else touches it.
    let mmio = unsafe { Mmio::new(LAN9118_BASE) };
    let dev = match Lan9118::new(mmio, lan9118::Config::default()) {
        Ok(dev) => dev,
        Err(e) => {
            log!("LAN9118 bring-up failed: {}", e);
            semihosting::exit(false)
        }
    };
    let mac = dev.mac_address();
    log!(
        "boot: device {} district {} broker {}:{} period {} s, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        cfg.device,
        cfg.district,
        cfg.host,
        cfg.port,
        cfg.period_s,
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );

    static NIC: StaticCell<Nic> = StaticCell::new();
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        NIC.init(Nic::new(dev)),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        u64::from(seed) << 32 | u64::from(!seed),
    );
    match (net_task(runner), dhcp_log_task(stack)) {
        (Ok(net), Ok(dhcp)) => {
            spawner.spawn(net);
            spawner.spawn(dhcp);
        }
        _ => fatal("cannot spawn the network tasks"),
    }

    // The core, with simulated sensors sampled twice a period.
    let sample_ms = (cfg.period_s * 1_000 / 2).max(100);
    let sensors = (
        SimWeather::new(sample_ms, seed),
        SimParticulates::new(sample_ms, seed),
    );
    let node_cfg = match NodeConfig::new(&cfg.device, &cfg.district, DeviceKind::AirQuality)
        .and_then(|c| c.with_period_s(cfg.period_s))
    {
        Ok(c) => c.with_sensors(&["sim-weather", "sim-particulates"]),
        Err(_) => fatal("device id, district or period refused by the core"),
    };
    static NODE: StaticCell<QemuNode> = StaticCell::new();
    let node = NODE.init(Node::new(node_cfg, sensors));

    static SOCKET_BUFFERS: StaticCell<([u8; SOCKET_BUF], [u8; SOCKET_BUF])> = StaticCell::new();
    let (rx, tx) = SOCKET_BUFFERS.init(([0; SOCKET_BUF], [0; SOCKET_BUF]));
    let mut connector = EmbassyConnector {
        stack,
        cfg: &cfg,
        rx,
        tx,
        attempts: 0,
    };
    let mut link = Link::new(
        LinkConfig {
            client_id: &cfg.device,
            keep_alive_s: cfg.keep_alive_s,
            op_timeout_ms: 10_000,
            // Quicker than a street board's: the broker is on the same machine, and a
            // test waits for the reconnection.
            backoff: BackoffConfig {
                initial_ms: 500,
                max_ms: 4_000,
                jitter_percent: 25,
                stable_after_ms: 10_000,
            },
            ..LinkConfig::default()
        },
        seed,
    );
    let stop = async {
        if cfg.run_s == 0 {
            core::future::pending::<()>().await;
        }
        Timer::after(Duration::from_secs(u64::from(cfg.run_s))).await;
    };
    let mut scratch = [0u8; SCRATCH_MIN];
    link.run(&mut connector, node, &EmbassyClock, &mut scratch, stop)
        .await;

    let stats = link.stats();
    let backlog = node.backlog_ref();
    log!(
        "stop: next_seq {} attempts {} connects {} published {} acked {} backlog {} dropped_readings {}",
        node.next_seq(),
        stats.attempts,
        stats.connects,
        stats.published,
        stats.acked,
        backlog.len(),
        backlog.dropped_total()
    );
    let nic = nic::stats();
    log!(
        "nic: rx_frames {} rx_errors {} rx_too_large {} rx_dumped {} rx_chip_dropped {} tx_frames {} tx_errors {} tx_failed {}",
        nic.driver.rx_frames,
        nic.driver.rx_errors,
        nic.driver.rx_too_large,
        nic.driver.rx_dumped,
        nic.driver.rx_chip_dropped,
        nic.driver.tx_frames,
        nic.driver.tx_errors,
        nic.tx_failed
    );
    semihosting::exit(true)
}

/// Runs the IP stack.
#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, &'static mut Nic>) -> ! {
    runner.run().await
}

/// Logs each DHCP lease: the test log shows when the board got its address.
#[embassy_executor::task]
async fn dhcp_log_task(stack: Stack<'static>) {
    loop {
        stack.wait_config_up().await;
        if let Some(v4) = stack.config_v4() {
            log!("dhcp: address {}", v4.address);
        }
        stack.wait_config_down().await;
        log!("dhcp: lease lost");
    }
}

/// Opens TCP connections to the broker over embassy-net, reusing static socket buffers.
struct EmbassyConnector<'c> {
    stack: Stack<'static>,
    cfg: &'c BoardConfig,
    rx: &'static mut [u8; SOCKET_BUF],
    tx: &'static mut [u8; SOCKET_BUF],
    attempts: u32,
}

impl Connector for EmbassyConnector<'_> {
    type Conn<'a>
        = TcpSocket<'a>
    where
        Self: 'a;
    type Error = embassy_net::tcp::ConnectError;

    async fn connect(&mut self) -> Result<TcpSocket<'_>, Self::Error> {
        // No address before DHCP; the link bounds this wait and backs off.
        self.stack.wait_config_up().await;
        self.attempts += 1;
        log!(
            "mqtt: connect attempt {} to {}:{}",
            self.attempts,
            self.cfg.host,
            self.cfg.port
        );
        let mut socket = TcpSocket::new(self.stack, &mut self.rx[..], &mut self.tx[..]);
        // Unacknowledged data for this long aborts the socket: a broker that went away
        // is noticed even between pings.
        socket.set_timeout(Some(Duration::from_secs(20)));
        socket.connect((self.cfg.host, self.cfg.port)).await?;
        log!("mqtt: TCP connected");
        Ok(socket)
    }
}

/// FNV-1a of the device id: the seed of the IP stack, the backoff jitter and the
/// simulated values, different per device and the same on every boot.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn fatal(why: &str) -> ! {
    log!("fatal: {}", why);
    semihosting::exit(false)
}

fn fatal_args(e: config::ConfigError<'_>) -> ! {
    log!("fatal: bad semihosting arguments: {:?}", e);
    semihosting::exit(false)
}
