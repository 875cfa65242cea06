//! One simulated sensor node on this machine: the real firmware core and MQTT link over
//! TCP, with simulated sensors.
//!
//! ```text
//! cargo run -p firmware --features std --example host-node -- \
//!     --broker 127.0.0.1:1883 --device aq-0001 --district hoan-kiem --kind airquality
//! ```
//!
//! Ctrl-C (or `--duration-s`) ends it gracefully: the retained status becomes `offline`.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use firmware::{
    NodeConfig,
    host::{HostConfig, SyntheticSet, WallClock, run_device},
};
use schemas::topic::DeviceKind;

#[derive(Debug, Parser)]
#[command(about = "Run the firmware core and its MQTT 5 link on the host with simulated sensors")]
struct Args {
    /// Broker address (IP:port).
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    /// Device id (topic slug).
    #[arg(long, default_value = "aq-host-0001")]
    device: String,
    /// District slug.
    #[arg(long, default_value = "hoan-kiem")]
    district: String,
    /// Device kind: airquality, weather, noise or wifi.
    #[arg(long, default_value = "airquality")]
    kind: String,
    /// Seconds per pack.
    #[arg(long, default_value_t = 60)]
    period_s: u32,
    /// Device time runs this many times faster than real time.
    #[arg(long, default_value_t = 1)]
    speedup: u32,
    /// Wall clock: `system`, `unknown` (the gateway stamps packs) or a start in Unix ms.
    #[arg(long, default_value = "system")]
    wall_clock: String,
    /// Seed of the simulated sensors.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many real seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    duration_s: u64,
    /// Broker user name.
    #[arg(long)]
    username: Option<String>,
    /// Broker password.
    #[arg(long)]
    password: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let kind = DeviceKind::parse(&args.kind).ok_or_else(|| {
        anyhow!(
            "unknown kind {:?} (airquality, weather, noise, wifi)",
            args.kind
        )
    })?;
    let node = NodeConfig::new(&args.device, &args.district, kind)
        .context("device id and district must be slugs")?
        .with_period_s(args.period_s)
        .context("invalid period")?;
    let mut config = HostConfig::new(node);
    config.speedup = args.speedup;
    config.username = args.username;
    config.password = args.password;
    config.wall_clock = match args.wall_clock.as_str() {
        "system" => WallClock::System,
        "unknown" => WallClock::Unknown,
        ms => WallClock::Fixed(
            ms.parse()
                .context("--wall-clock: system, unknown or Unix ms")?,
        ),
    };
    let sensors = SyntheticSet::for_kind(kind, args.seed);
    let duration = args.duration_s;
    let shutdown = async move {
        if duration == 0 {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = tokio::time::sleep(Duration::from_secs(duration)) => {}
            }
        }
    };
    eprintln!(
        "host-node: {} ({}) in {} -> {}",
        args.device, args.kind, args.district, args.broker
    );
    let report = run_device(config, sensors, args.broker, shutdown).await;
    eprintln!("host-node: stopped: {report:?}");
    Ok(())
}
