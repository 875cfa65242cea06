//! `simulators bench`: scale figures on this machine. Two phases:
//!
//! 1. **generation**: devices stepped as fast as possible with no network (models,
//!    faults, SenML encoding): readings generated per second per core;
//! 2. **broker**: a fleet of N concurrent MQTT connections publishing at maximum rate
//!    to a real Mosquitto (started by the bench from `/usr/sbin/mosquitto` unless
//!    `--broker` names one): connect rate, publish rate, the simulator's CPU and memory,
//!    and the broker's CPU.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::device::{Event, FleetPlan, SimDevice};
use crate::faults::FaultRates;

/// Where Debian's `mosquitto` package installs the broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";

/// Result of the generation phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationReport {
    /// Devices stepped.
    pub devices: usize,
    /// Readings generated.
    pub readings: u64,
    /// Messages encoded.
    pub messages: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Steps every device of `plan` round-robin for `wall` (at least one round); no I/O.
pub fn generation(plan: &FleetPlan, faults: FaultRates, wall: Duration) -> GenerationReport {
    let start_s = 1_767_225_600;
    let mut devices: Vec<SimDevice> = plan
        .specs()
        .into_iter()
        .map(|s| SimDevice::new(s, plan.seed, start_s, faults, "city"))
        .collect();
    let mut events = Vec::new();
    let (mut readings, mut messages) = (0u64, 0u64);
    let t0 = Instant::now();
    loop {
        for d in &mut devices {
            d.step(&mut events);
            for e in events.drain(..) {
                if let Event::Publish(m) = e {
                    messages += 1;
                    readings += m.readings.len() as u64;
                }
            }
        }
        if t0.elapsed() >= wall {
            break;
        }
    }
    GenerationReport {
        devices: devices.len(),
        readings,
        messages,
        elapsed: t0.elapsed(),
    }
}

/// A Mosquitto started for the benchmark; killed on drop.
#[derive(Debug)]
pub struct BenchBroker {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
    _dir: PathBuf,
}

impl BenchBroker {
    /// Starts Mosquitto on a free loopback port, configured for many clients and many
    /// messages in flight, listening on every address in `listen` (127.0.0.1 if empty).
    pub fn start(bin: &str) -> Result<Self> {
        if !std::path::Path::new(bin).exists() {
            bail!(
                "{bin} not found: install the Debian package `mosquitto` or pass --broker HOST:PORT"
            );
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("simulators-bench-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("mosquitto.conf");
        let mut text = String::new();
        if rustix::process::geteuid().is_root() {
            text.push_str("user root\n");
        }
        text.push_str("allow_anonymous true\npersistence false\nmax_inflight_messages 1000\nmax_queued_messages 0\n");
        text.push_str("log_dest none\nmax_connections -1\n");
        text.push_str(&format!(
            "listener {port} 127.0.0.1\nset_tcp_nodelay true\n"
        ));
        std::fs::write(&conf, text)?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {bin}"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let t0 = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("mosquitto did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child,
            addr,
            _dir: dir,
        })
    }

    /// CPU seconds the broker has used.
    pub fn cpu_s(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return 0.0;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return 0.0;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tck = rustix::param::clock_ticks_per_second() as f64;
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / tck
    }
}

impl Drop for BenchBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}
