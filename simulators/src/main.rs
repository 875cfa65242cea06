//! The `simulators` command line: `fleet`, `record`, `replay`, `verify` and `bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use schemas::topic::DeviceKind;
use simulators::bench;
use simulators::device::FleetPlan;
use simulators::faults::FaultRates;
use simulators::fleet::{self, FleetConfig, Speed};
use simulators::formats::{DEFAULT_UL_APIKEY, FormatMix};
use simulators::net::{self, ClientSettings};
use simulators::record::{self, RecordConfig};
use simulators::replay::{self, Pace, ReplayConfig};
use simulators::report::{bytes, rate, table};
use simulators::verify::{self, Landing};
use tokio::sync::watch;

/// City-scale sensor traffic for the smart-city pipeline: simulate a fleet of devices
/// over real MQTT connections, record and replay broker traffic, and verify what landed
/// in the stores.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate N devices of each kind over Hanoi's districts, each its own MQTT client.
    ///
    /// Example: a week of a small city in about ten minutes, with a mixed fleet and faults:
    ///   simulators fleet --air 50 --weather 12 --noise 30 --wifi 100 --speed 1000x
    ///     --start 2026-01-05T00:00:00Z --duration 7d --mix tasmota=0.1,esphome=0.05
    ///     --faults outage=0.001,dup=0.001 --manifest week.csv.zst
    #[command(verbatim_doc_comment)]
    Fleet(FleetArgs),
    /// Subscribe to a broker and write its traffic to a capture file.
    Record(RecordArgs),
    /// Publish a capture again: original timing, N times faster, or as fast as possible.
    Replay(ReplayArgs),
    /// Compare a manifest with what landed in the hot tier or VictoriaMetrics.
    ///
    /// Exit status: 0 all readings found with the right values, 1 readings lost or
    /// wrong, 2 the comparison could not be made.
    Verify(VerifyArgs),
    /// Measure generation rate, connect rate, publish rate and the simulator's CPU and memory.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct Conn {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Username for the broker.
    #[arg(long, requires = "password")]
    username: Option<String>,
    /// Password for the broker.
    #[arg(long, requires = "username")]
    password: Option<String>,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
}

impl Conn {
    async fn addr(&self) -> Result<SocketAddr> {
        let (host, port) = self
            .broker
            .rsplit_once(':')
            .context("--broker must be HOST:PORT")?;
        let port: u16 = port.parse().context("bad port in --broker")?;
        net::resolve(host, port).await
    }

    fn settings(&self, persistent: bool) -> ClientSettings {
        ClientSettings {
            persistent,
            credentials: self.username.clone().zip(self.password.clone()),
            ..ClientSettings::default()
        }
    }
}

#[derive(Debug, Args)]
struct FleetArgs {
    #[command(flatten)]
    conn: Conn,
    /// Air-quality stations.
    #[arg(long, default_value_t = 10)]
    air: usize,
    /// Weather stations.
    #[arg(long, default_value_t = 4)]
    weather: usize,
    /// Noise meters.
    #[arg(long, default_value_t = 6)]
    noise: usize,
    /// Wi-Fi access points.
    #[arg(long, default_value_t = 10)]
    wifi: usize,
    /// Seed: the same seed gives the same devices and the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shares of foreign formats, e.g. tasmota=0.1,esphome=0.05,ultralight=0.05,line=0.05;
    /// the rest speak native SenML-CBOR.
    #[arg(long, default_value = "")]
    mix: FormatMix,
    /// Faults, e.g. stuck=0.01,spike=0.001,dropout=0.005,reboot=0.0005,skew=0.02,
    /// outage=0.001,dup=0.001,malformed=0.0005 (see the README for units).
    #[arg(long, default_value = "")]
    faults: FaultRates,
    /// Clock speed: realtime, <N>x (simulated seconds per second) or max.
    #[arg(long, default_value = "realtime")]
    speed: Speed,
    /// Simulated start time: RFC 3339, or a span before now such as `-6h` (a gateway
    /// rejects readings older than its hot retention or ahead of its clock, so a run at
    /// `max` speed that should all land ends at about now). Default: now.
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    /// Simulated time to cover, e.g. 10m, 7d. Default: until Ctrl-C (required with --speed max).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Reporting period of every device.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    period: Duration,
    /// Write the manifest of every reading sent (CSV; zstd when the name ends in .zst).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Persistent MQTT sessions (clean start off, one hour expiry) instead of clean ones.
    #[arg(long)]
    persistent: bool,
    /// Spread client sockets over these source addresses, e.g. 127.0.0.1-127.0.0.20.
    #[arg(long)]
    source_ips: Option<String>,
    /// New connections per second at start-up (0: no limit).
    #[arg(long, default_value_t = 2000)]
    connect_rate: u32,
    /// Prefix of device ids, to run several fleets against one broker.
    #[arg(long, default_value = "")]
    id_prefix: String,
    /// API key in UltraLight topics.
    #[arg(long, default_value = DEFAULT_UL_APIKEY)]
    ul_apikey: String,
}

#[derive(Debug, Args)]
struct RecordArgs {
    #[command(flatten)]
    conn: Conn,
    /// Topic filter to subscribe to (repeatable).
    #[arg(long = "filter", default_value = "#")]
    filters: Vec<String>,
    /// Capture file to write.
    #[arg(long, short)]
    output: PathBuf,
    /// Write the body uncompressed.
    #[arg(long)]
    no_compress: bool,
    /// Subscription QoS.
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// Stop after this long (e.g. 10m). Default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop when no message arrived for this long after the first one (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    idle: Option<Duration>,
    /// MQTT client id.
    #[arg(long)]
    client_id: Option<String>,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    conn: Conn,
    /// Capture file written by `record`.
    input: PathBuf,
    /// Speed factor over the recorded timing (1 = original timing).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// As fast as possible, ignoring the recorded timing.
    #[arg(long)]
    max: bool,
    /// Copies of every device: clone k of device D is published as D-k<k>, in topics and payloads.
    #[arg(long, default_value_t = 1)]
    clone: usize,
    /// One MQTT client per (cloned) device instead of one connection (order is then kept per device only).
    #[arg(long)]
    per_device: bool,
    /// Write the manifest of the readings sent.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Client id of the single connection.
    #[arg(long)]
    client_id: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Manifest written by `fleet` or `replay`.
    #[arg(long)]
    manifest: PathBuf,
    /// The gateway's hot tier (its SQLite file; opened read-only).
    #[arg(
        long,
        conflicts_with = "victoria",
        required_unless_present = "victoria"
    )]
    hot_tier: Option<PathBuf>,
    /// VictoriaMetrics base URL, e.g. http://127.0.0.1:8428.
    #[arg(long)]
    victoria: Option<String>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Use this broker instead of starting a Mosquitto.
    #[arg(long)]
    broker: Option<String>,
    /// Mosquitto binary to start when no --broker is given.
    #[arg(long, default_value = bench::MOSQUITTO_BIN)]
    mosquitto: String,
    /// Concurrent device connections (split evenly over the four kinds).
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Wall time of the publishing phase.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Wall time of the generation-only phase.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    generation: Duration,
    /// Spread client sockets over these source addresses.
    #[arg(long)]
    source_ips: Option<String>,
    /// New connections per second.
    #[arg(long, default_value_t = 2000)]
    connect_rate: u32,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
}

fn stop_on_ctrl_c() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
        // Keep the sender alive so receivers do not see a closed channel as a stop.
        std::future::pending::<()>().await;
    });
    rx
}

fn plan(a: &FleetArgs) -> Result<FleetPlan> {
    let period_s = u32::try_from(a.period.as_secs()).context("--period too long")?;
    if period_s == 0 {
        bail!("--period must be at least 1s");
    }
    Ok(FleetPlan {
        seed: a.seed,
        counts: [
            (DeviceKind::AirQuality, a.air),
            (DeviceKind::Weather, a.weather),
            (DeviceKind::Noise, a.noise),
            (DeviceKind::Wifi, a.wifi),
        ],
        period_s,
        mix: a.mix.clone(),
        id_prefix: a.id_prefix.clone(),
    })
}

async fn cmd_fleet(a: FleetArgs) -> Result<ExitCode> {
    if a.speed == Speed::Max && a.duration.is_none() {
        bail!("--speed max needs --duration (simulated time to cover)");
    }
    let now = chrono::Utc::now().timestamp();
    let start_s = match a.start.as_deref() {
        None | Some("now") => now,
        Some(s) => match s.strip_prefix('-') {
            Some(ago) => {
                let ago =
                    humantime::parse_duration(ago).with_context(|| format!("bad --start {s:?}"))?;
                now - ago.as_secs() as i64
            }
            None => chrono::DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("bad --start {s:?} (RFC 3339 or -<span>)"))?
                .timestamp(),
        },
    };
    let cfg = FleetConfig {
        broker: a.conn.addr().await?,
        plan: plan(&a)?,
        faults: a.faults,
        start_s,
        duration_s: a.duration.map(|d| d.as_secs() as i64),
        speed: a.speed,
        manifest: a.manifest.clone(),
        client: a.conn.settings(a.persistent),
        source_ips: a
            .source_ips
            .as_deref()
            .map(net::parse_source_ips)
            .transpose()?
            .unwrap_or_default(),
        connect_rate: a.connect_rate,
        apikey: a.ul_apikey.clone(),
        quiet: a.conn.quiet,
        stop_when_connected: false,
        start_together: false,
    };
    let rep = fleet::run(cfg, stop_on_ctrl_c()).await?;
    println!("{}", table(&rep.rows()));
    Ok(ExitCode::SUCCESS)
}

async fn cmd_record(a: RecordArgs) -> Result<ExitCode> {
    let cfg = RecordConfig {
        broker: a.conn.addr().await?,
        filters: a.filters,
        output: a.output,
        compress: !a.no_compress,
        qos: a.qos,
        duration: a.duration,
        max_messages: a.count,
        idle: a.idle,
        client_id: a
            .client_id
            .unwrap_or_else(|| format!("simulators-record-{}", std::process::id())),
        client: a.conn.settings(false),
        quiet: a.conn.quiet,
    };
    let rep = record::run(cfg, stop_on_ctrl_c(), None).await?;
    println!(
        "{}",
        table(&[
            (
                "messages",
                format!("{} ({})", rep.messages, rate(rep.messages, rep.elapsed))
            ),
            ("payload", bytes(rep.payload_bytes)),
            ("capture file", bytes(rep.file_bytes)),
            ("wall time", format!("{:.2} s", rep.elapsed.as_secs_f64())),
        ])
    );
    Ok(ExitCode::SUCCESS)
}

async fn cmd_replay(a: ReplayArgs) -> Result<ExitCode> {
    if !(a.speed > 0.0 && a.speed.is_finite()) {
        bail!("--speed must be a positive number");
    }
    let cfg = ReplayConfig {
        broker: a.conn.addr().await?,
        input: a.input,
        pace: if a.max {
            Pace::Max
        } else {
            Pace::Speed(a.speed)
        },
        clones: a.clone.max(1),
        per_device: a.per_device,
        manifest: a.manifest,
        client: a.conn.settings(false),
        client_id: a
            .client_id
            .unwrap_or_else(|| format!("simulators-replay-{}", std::process::id())),
        quiet: a.conn.quiet,
    };
    let r = replay::run(cfg, stop_on_ctrl_c()).await?;
    println!(
        "{}",
        table(&[
            ("messages in capture", r.captured.to_string()),
            (
                "messages published",
                format!("{} ({})", r.published, rate(r.published, r.elapsed))
            ),
            (
                "readings published",
                format!("{} ({})", r.readings, rate(r.readings, r.elapsed))
            ),
            ("PUBACKs", r.acked.to_string()),
            ("clients", r.clients.to_string()),
            ("errors", r.errors.to_string()),
            ("wall time", format!("{:.2} s", r.elapsed.as_secs_f64())),
            ("simulator CPU", format!("{:.2} s", r.cpu_s)),
            ("simulator peak memory", bytes(r.peak_rss)),
        ])
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_verify(a: VerifyArgs) -> Result<ExitCode> {
    let landing = match (a.hot_tier, a.victoria) {
        (Some(p), _) => Landing::HotTier(p),
        (None, Some(u)) => Landing::Victoria(u),
        (None, None) => bail!("give --hot-tier FILE or --victoria URL"),
    };
    let rep = verify::run(&a.manifest, &landing)?;
    println!("{}", table(&rep.rows()));
    for e in &rep.lost_examples {
        println!("lost: {e}");
    }
    for e in &rep.wrong_examples {
        println!("wrong value: {e}");
    }
    Ok(if rep.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn cmd_bench(a: BenchArgs) -> Result<ExitCode> {
    let per_kind = a.devices.div_ceil(4);
    let mk_plan = |period_s| FleetPlan {
        seed: 1,
        counts: DeviceKind::ALL.map(|k| (k, per_kind)),
        period_s,
        mix: FormatMix::default(),
        id_prefix: "bench-".into(),
    };
    let g = bench::generation(&mk_plan(1), FaultRates::default(), a.generation);
    let gen_rows = [
        ("generation: devices", g.devices.to_string()),
        (
            "generation: readings",
            format!("{} ({})", g.readings, rate(g.readings, g.elapsed)),
        ),
        (
            "generation: messages encoded",
            format!("{} ({})", g.messages, rate(g.messages, g.elapsed)),
        ),
    ];
    println!("{}", table(&gen_rows));
    // Before the broker starts, so that it inherits the raised limit too.
    net::raise_fd_limit();
    let broker = match &a.broker {
        Some(b) => {
            let (h, p) = b.rsplit_once(':').context("--broker must be HOST:PORT")?;
            (net::resolve(h, p.parse()?).await?, None)
        }
        None => {
            let b = bench::BenchBroker::start(&a.mosquitto)?;
            (b.addr, Some(b))
        }
    };
    let source_ips = a
        .source_ips
        .as_deref()
        .map(net::parse_source_ips)
        .transpose()?
        .unwrap_or_default();
    // Connect phase: hourly reporters, so hardly anything is published while the
    // clients connect; the run ends once all are connected.
    let connect_cfg = FleetConfig {
        broker: broker.0,
        plan: mk_plan(3600),
        faults: FaultRates::default(),
        start_s: 1_767_225_600,
        duration_s: None,
        speed: Speed::Realtime,
        manifest: None,
        client: ClientSettings::default(),
        source_ips: source_ips.clone(),
        connect_rate: a.connect_rate,
        apikey: DEFAULT_UL_APIKEY.into(),
        quiet: a.quiet,
        stop_when_connected: true,
        start_together: false,
    };
    let (_keep, idle) = watch::channel(false);
    let c = fleet::run(connect_cfg, idle).await?;
    let connect_rows = [
        (
            "connect phase: devices connected",
            c.peak_connected.to_string(),
        ),
        (
            "connect phase: all connected after",
            c.all_connected_after
                .map(|t| format!("{:.2} s ({})", t.as_secs_f64(), rate(c.devices, t)))
                .unwrap_or_else(|| "not all connected".into()),
        ),
        ("connect phase: errors", c.errors.to_string()),
        ("connect phase: simulator peak memory", bytes(c.peak_rss)),
    ];
    println!("{}", table(&connect_rows));
    let cpu0 = broker.1.as_ref().map(|b| b.cpu_s());
    let (tx, rx) = watch::channel(false);
    let cfg = FleetConfig {
        broker: broker.0,
        plan: mk_plan(1),
        faults: FaultRates::default(),
        start_s: 1_767_225_600,
        duration_s: None,
        speed: Speed::Max,
        manifest: None,
        client: ClientSettings::default(),
        source_ips,
        connect_rate: a.connect_rate,
        apikey: DEFAULT_UL_APIKEY.into(),
        quiet: a.quiet,
        stop_when_connected: false,
        start_together: true,
    };
    let wall = a.duration;
    tokio::spawn(async move {
        tokio::time::sleep(wall).await;
        let _ = tx.send(true);
    });
    let rep = fleet::run(cfg, rx).await?;
    let mut rows = rep.rows();
    if let (Some(b), Some(c0)) = (&broker.1, cpu0) {
        let c = b.cpu_s() - c0;
        rows.push((
            "broker CPU",
            format!(
                "{c:.2} s ({:.0}% of one core)",
                100.0 * c / rep.elapsed.as_secs_f64()
            ),
        ));
    }
    println!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Fleet(a) => cmd_fleet(a).await,
            Command::Record(a) => cmd_record(a).await,
            Command::Replay(a) => cmd_replay(a).await,
            Command::Verify(a) => cmd_verify(a),
            Command::Bench(a) => cmd_bench(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
