//! ESP32-C3 air-quality node: a BME280 on I2C and a PMS5003 on UART sampled by the
//! firmware core, packs published over Wi-Fi with the core's MQTT 5 link.
//!
//! The board crate is only the shell: peripherals, Wi-Fi association, DHCP and TCP
//! (embassy-net), and the link's [`Clock`] and [`Connector`] on embassy. Sampling,
//! encoding, the backlog, the MQTT session and the reconnect policy are the core's, the
//! same code the host tests run. Configuration comes from the build environment (see
//! `build.rs`).
//!
//! Wiring (ESP32-C3-DevKitM-1): BME280 SDA GPIO6, SCL GPIO7 (address 0x76); PMS5003 TXD to
//! GPIO5 (UART1 RX), RXD to GPIO4 (UART1 TX), 9600 baud, 5 V supply.
//!
//! The core allocates nothing. The Wi-Fi driver's binary blob needs a heap, which
//! `esp-alloc` gives it and nothing else uses.

#![no_std]
#![no_main]

use core::net::Ipv4Addr;

use embassy_executor::Spawner;
use embassy_net::{
    IpAddress, Runner, Stack, StackResources,
    dns::DnsQueryType,
    tcp::{ConnectError, TcpSocket},
    udp::{PacketMetadata, UdpSocket},
};
use embassy_sync::{blocking_mutex::raw::CriticalSectionRawMutex, signal::Signal};
use embassy_time::{Duration, Timer};
use esp_hal::{
    Blocking,
    clock::CpuClock,
    delay::Delay,
    i2c::master::{Config as I2cConfig, I2c},
    rng::Rng,
    timer::timg::TimerGroup,
    uart::{Config as UartConfig, Uart},
};
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, ControllerConfig, Interface, WifiController,
    sta::StationConfig,
};
use firmware::{
    Node, NodeConfig,
    clock::sntp,
    drivers::{
        bme280::{Bme280, Bme280Config},
        pms5003::{Pms5003, Pms5003Config},
    },
    link::{
        Backoff, BackoffConfig, Clock, Connector, Device, EmbassyClock, Link, LinkConfig,
        SCRATCH_MIN, TopicString,
    },
};

use schemas::topic::{Channel, DeviceKind};
use static_cell::StaticCell;

esp_bootloader_esp_idf::esp_app_desc!();

// Checked by build.rs.
const WIFI_SSID: &str = env!("AQ_WIFI_SSID");
const WIFI_PASSWORD: &str = env!("AQ_WIFI_PASSWORD");
const BROKER_HOST: &str = env!("AQ_BROKER_HOST");
const BROKER_PORT: u16 = parse_u32(env!("AQ_BROKER_PORT")) as u16;
const MQTT_USER: &str = env!("AQ_MQTT_USER");
const MQTT_PASSWORD: &str = env!("AQ_MQTT_PASSWORD");
const DEVICE_ID: &str = env!("AQ_DEVICE_ID");
const DISTRICT: &str = env!("AQ_DISTRICT");
const PERIOD_S: u32 = parse_u32(env!("AQ_PERIOD_S"));

const NTP_SERVER: &str = env!("AQ_NTP_SERVER");
const LATITUDE: &str = env!("AQ_LAT");
const LONGITUDE: &str = env!("AQ_LON");

/// The parts on this board (no CO2 sensor), announced in `meta`.
const SENSORS: &[&str] = &["bme280", "pms5003"];

/// Backlog: 48 packs of up to 256 bytes, 12 KiB: 48 minutes of readings at the default
/// period survive a Wi-Fi outage.
const SLOTS: usize = 48;
const SLOT_BYTES: usize = 256;

type AqSensors = (
    Bme280<I2c<'static, Blocking>, Delay>,
    Pms5003<Uart<'static, Blocking>>,
);
type AqNode = Node<AqSensors, SLOTS, SLOT_BYTES>;

/// A reset is the only sane reaction to a panic in the street: the board comes back,
/// the broker publishes the last will meanwhile.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    esp_hal::system::software_reset()
}

/// Something the board cannot run without failed (the radio, a bus): wait a little so a
/// fault does not become a tight reset loop, then reset.
async fn fatal() -> ! {
    Timer::after(Duration::from_secs(10)).await;
    esp_hal::system::software_reset()
}

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // The Wi-Fi blob's heap; the firmware core allocates nothing.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 32 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);
    let rng = Rng::new();

    // Wi-Fi station, DHCP.
    let auth = if WIFI_PASSWORD.is_empty() {
        Ok(AuthenticationMethodConfig::Open)
    } else {
        WIFI_PASSWORD
            .try_into()
            .map(AuthenticationMethodConfig::Wpa2Personal)
    };
    let station = match (WIFI_SSID.try_into(), auth) {
        (Ok(ssid), Ok(auth)) => StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(auth),
        _ => fatal().await,
    };
    let Ok(controller) = WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(WifiConfig::Station(station)),
    ) else {
        fatal().await
    };
    static RESOURCES: StaticCell<StackResources<5>> = StaticCell::new();
    let net_seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        net_seed,
    );
    match (
        wifi_task(controller, rng.random()),
        net_task(runner),
        sntp_task(stack),
    ) {
        (Ok(wifi), Ok(net), Ok(sntp)) => {
            spawner.spawn(wifi);
            spawner.spawn(net);
            spawner.spawn(sntp);
        }
        _ => fatal().await,
    }

    // Sensors.
    let Ok(i2c) = I2c::new(peripherals.I2C0, I2cConfig::default()) else {
        fatal().await
    };
    let i2c = i2c.with_sda(peripherals.GPIO6).with_scl(peripherals.GPIO7);
    let Ok(uart) = Uart::new(
        peripherals.UART1,
        UartConfig::default().with_baudrate(9_600),
    ) else {
        fatal().await
    };
    let uart = uart.with_rx(peripherals.GPIO5).with_tx(peripherals.GPIO4);
    let sensors = (
        Bme280::new(i2c, Delay::new(), Bme280Config::default()),
        Pms5003::new(uart, Pms5003Config::default(), EmbassyClock.now_ms()),
    );

    // The core.
    let Ok(mut cfg) = NodeConfig::new(DEVICE_ID, DISTRICT, DeviceKind::AirQuality)
        .and_then(|c| c.with_period_s(PERIOD_S))
    else {
        fatal().await
    };
    cfg = cfg.with_sensors(SENSORS);
    if let (Ok(lat), Ok(lon)) = (LATITUDE.parse::<f64>(), LONGITUDE.parse::<f64>()) {
        cfg = cfg.with_position(lat, lon);
    }
    // The backlog lives in a static, not on the main task's stack.
    static NODE: StaticCell<AqNode> = StaticCell::new();
    let node = NODE.init(Node::new(cfg, sensors));

    // The link, until the end of time.
    static SOCKET_BUFFERS: StaticCell<([u8; 1536], [u8; 1536])> = StaticCell::new();
    let (rx, tx) = SOCKET_BUFFERS.init(([0; 1536], [0; 1536]));
    let mut connector = EmbassyConnector { stack, rx, tx };
    let mut link = Link::new(
        LinkConfig {
            client_id: DEVICE_ID,
            username: non_empty(MQTT_USER),
            password: non_empty(MQTT_PASSWORD).map(str::as_bytes),
            ..LinkConfig::default()
        },
        rng.random(),
    );
    let mut scratch = [0u8; SCRATCH_MIN];
    let mut device = TimedNode { node };
    link.run(
        &mut connector,
        &mut device,
        &EmbassyClock,
        &mut scratch,
        core::future::pending::<()>(),
    )
    .await;
    // `run` only returns when asked to stop, which this board never does.
    esp_hal::system::software_reset()
}

/// Keeps the station associated, re-associating with the link's backoff policy.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>, seed: u32) {
    let mut backoff = Backoff::new(
        BackoffConfig {
            initial_ms: 2_000,
            max_ms: 60_000,
            jitter_percent: 50,
            stable_after_ms: 60_000,
        },
        seed,
    );
    loop {
        let now = EmbassyClock.now_ms();
        backoff.on_attempt();
        if controller.connect_async().await.is_ok() {
            backoff.on_connected(now);
            let _ = controller.wait_for_disconnect_async().await;
        }
        let retry_at = backoff.on_failure(EmbassyClock.now_ms());
        EmbassyClock.sleep_until(retry_at).await;
    }
}

/// Runs the IP stack.
#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}

/// Wall-clock time learnt by the SNTP task: (monotonic ms, Unix ms at that instant).
static WALL_CLOCK: Signal<CriticalSectionRawMutex, (u64, u64)> = Signal::new();

/// Asks the SNTP server for the time, again every six hours (every minute until the
/// first answer). Until then packs carry relative times, which the gateway stamps.
#[embassy_executor::task]
async fn sntp_task(stack: Stack<'static>) {
    if NTP_SERVER.is_empty() {
        return;
    }
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 2], [PacketMetadata::EMPTY; 2]);
    let (mut rx_buf, mut tx_buf) = ([0u8; 128], [0u8; 128]);
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx_buf, &mut tx_meta, &mut tx_buf);
    if socket.bind(0).is_err() {
        return;
    }
    loop {
        stack.wait_config_up().await;
        let pause = match sntp_query(stack, &socket).await {
            Some((mono, unix)) => {
                WALL_CLOCK.signal((mono, unix));
                Duration::from_secs(6 * 3_600)
            }
            None => Duration::from_secs(60),
        };
        Timer::after(pause).await;
    }
}

/// One SNTP exchange, bounded to five seconds.
async fn sntp_query(stack: Stack<'static>, socket: &UdpSocket<'_>) -> Option<(u64, u64)> {
    let exchange = async {
        let server = resolve(stack, NTP_SERVER).await.ok()?;
        let (request, pending) = sntp::request(EmbassyClock.now_ms());
        socket.send_to(&request, (server, sntp::PORT)).await.ok()?;
        let mut reply = [0u8; sntp::PACKET_LEN];
        loop {
            let (n, _) = socket.recv_from(&mut reply).await.ok()?;
            let now = EmbassyClock.now_ms();
            // A stray datagram does not end the exchange; the timeout does.
            if let Ok(unix) = pending.complete(reply.get(..n)?, now) {
                return Some((now, unix));
            }
        }
    };
    embassy_time::with_timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// An IPv4 literal, or the first A record of a name.
async fn resolve(stack: Stack<'static>, host: &str) -> Result<IpAddress, NetError> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(IpAddress::Ipv4(ip));
    }
    stack
        .dns_query(host, DnsQueryType::A)
        .await
        .map_err(|_| NetError::Dns)?
        .first()
        .copied()
        .ok_or(NetError::Dns)
}

/// The node, plus the wall-clock time from the SNTP task applied between polls.
struct TimedNode {
    node: &'static mut AqNode,
}

impl Device for TimedNode {
    fn poll(&mut self, now_ms: u64) {
        if let Some((mono, unix)) = WALL_CLOCK.try_take() {
            self.node.set_unix_time(mono, unix);
        }
        Device::poll(self.node, now_ms);
    }

    fn next_deadline(&self) -> u64 {
        Device::next_deadline(self.node)
    }

    fn oldest(&mut self) -> Option<&[u8]> {
        Device::oldest(self.node)
    }

    fn ack_oldest(&mut self) {
        Device::ack_oldest(self.node);
    }

    fn discard_oldest(&mut self) {
        Device::discard_oldest(self.node);
    }

    fn topic(&self, channel: Channel) -> TopicString {
        Device::topic(self.node, channel)
    }

    fn meta_payload(&self, buf: &mut [u8]) -> Option<usize> {
        Device::meta_payload(self.node, buf)
    }
}

/// Opens TCP connections to the broker over embassy-net, reusing static socket buffers.
struct EmbassyConnector {
    stack: Stack<'static>,
    rx: &'static mut [u8; 1536],
    tx: &'static mut [u8; 1536],
}

/// Why no connection to the broker could be opened.
#[derive(Debug)]
enum NetError {
    /// The broker's name did not resolve.
    Dns,
    /// TCP connect failed.
    Tcp(#[allow(dead_code)] ConnectError),
}

impl Connector for EmbassyConnector {
    type Conn<'a> = TcpSocket<'a>;
    type Error = NetError;

    async fn connect(&mut self) -> Result<TcpSocket<'_>, NetError> {
        // No address before DHCP; the link bounds this wait and backs off.
        self.stack.wait_config_up().await;
        let ip = resolve(self.stack, BROKER_HOST).await?;
        let mut socket = TcpSocket::new(self.stack, &mut self.rx[..], &mut self.tx[..]);
        // Unacknowledged data for this long aborts the socket: a broker behind a dead
        // access point is noticed even between pings.
        socket.set_timeout(Some(Duration::from_secs(60)));
        socket
            .connect((ip, BROKER_PORT))
            .await
            .map_err(NetError::Tcp)?;
        Ok(socket)
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Compile-time decimal parse of a build.rs-checked number.
const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u32 = 0;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}
