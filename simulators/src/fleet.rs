//! `simulators fleet`: every simulated device is its own MQTT 5 client (rumqttc) with its
//! own connection, last will and birth messages, driven on a simulated clock that runs in
//! real time, N times faster, or as fast as the broker takes it.
//!
//! Each device is two tokio tasks: the device loop (wait for the next report in simulated
//! time, step the sans-IO [`SimDevice`], publish what it says) and the client's event
//! loop (connect, send, count PUBACKs). A link-down event aborts the event loop so the
//! socket closes without DISCONNECT and the broker publishes the will, as when a board
//! loses Wi-Fi. Readings that went out are written to the manifest by one writer thread.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::{AsyncClient, ConnectionError, Event as MqttEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::device::{DeviceStats, Event, FleetPlan, Outgoing, SentReading, SimDevice};
use crate::faults::FaultRates;
use crate::manifest::ManifestWriter;
use crate::net::{self, ClientSettings};
use crate::report::{Counters, ResourceUsage};

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// One simulated second per second.
    Realtime,
    /// N simulated seconds per second.
    Factor(f64),
    /// No waiting: as fast as the broker acknowledges.
    Max,
}

impl FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "realtime" | "1x" => Ok(Speed::Realtime),
            "max" => Ok(Speed::Max),
            _ => {
                let n = s.strip_suffix('x').unwrap_or(s);
                match n.parse::<f64>() {
                    Ok(f) if f > 0.0 && f.is_finite() => Ok(Speed::Factor(f)),
                    _ => Err(format!("speed must be realtime, <N>x or max, not {s:?}")),
                }
            }
        }
    }
}

impl Speed {
    /// Simulated seconds per wall second; `None` for [`Speed::Max`].
    pub fn factor(self) -> Option<f64> {
        match self {
            Speed::Realtime => Some(1.0),
            Speed::Factor(f) => Some(f),
            Speed::Max => None,
        }
    }
}

/// Everything a fleet run needs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Broker address.
    pub broker: SocketAddr,
    /// Which devices.
    pub plan: FleetPlan,
    /// Faults to inject.
    pub faults: FaultRates,
    /// Simulated start, Unix seconds.
    pub start_s: i64,
    /// Simulated duration in seconds; `None` runs until stopped.
    pub duration_s: Option<i64>,
    /// Clock speed.
    pub speed: Speed,
    /// Where to write the manifest, if anywhere.
    pub manifest: Option<PathBuf>,
    /// Client settings.
    pub client: ClientSettings,
    /// Source addresses to spread connections over (empty: the kernel's choice).
    pub source_ips: Vec<Ipv4Addr>,
    /// New connections per second at start-up; 0 for no limit. Default 2000: a storm of
    /// SYNs overflows a broker's listen backlog and costs seconds of retransmits.
    pub connect_rate: u32,
    /// UltraLight API key.
    pub apikey: String,
    /// No progress line.
    pub quiet: bool,
    /// End the run as soon as every device has connected once (to measure the connect
    /// rate alone). Default false.
    pub stop_when_connected: bool,
    /// Devices connect, then wait until every device is connected before their first
    /// report, so that publishing does not slow the connect storm and the publish rate
    /// is measured with the whole fleet online. Default false.
    pub start_together: bool,
}

/// What a fleet run did.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// Devices.
    pub devices: u64,
    /// Peak concurrent connections.
    pub peak_connected: u64,
    /// Successful connects, reconnects included.
    pub connects: u64,
    /// Wall time until every device had connected once, if they all did.
    pub all_connected_after: Option<Duration>,
    /// Wall time, messages and readings between the moment every device was connected
    /// and the stop (or the end): the fleet's rate without its connect phase.
    pub steady: Option<(Duration, u64, u64)>,
    /// Messages published.
    pub messages: u64,
    /// Readings published.
    pub readings: u64,
    /// PUBACKs received.
    pub acked: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Connection errors.
    pub errors: u64,
    /// Summed device fault counters.
    pub faults: DeviceStats,
    /// Manifest rows written.
    pub manifest_rows: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Simulated seconds covered.
    pub simulated_s: i64,
    /// CPU seconds this process used during the run.
    pub cpu_s: f64,
    /// Peak resident memory of this process.
    pub peak_rss: u64,
}

impl FleetReport {
    /// The summary table rows.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        use crate::report::{bytes, rate};
        let mut rows = vec![
            ("devices", self.devices.to_string()),
            ("peak connections", self.peak_connected.to_string()),
            ("connects (incl. reconnects)", self.connects.to_string()),
        ];
        if let Some(t) = self.all_connected_after {
            rows.push((
                "all connected after",
                format!("{:.2} s ({})", t.as_secs_f64(), rate(self.devices, t)),
            ));
        }
        if let Some((t, m, r)) = self.steady {
            rows.push((
                "rate with all connected",
                format!(
                    "{} msgs, {} readings over {:.1} s",
                    rate(m, t),
                    rate(r, t),
                    t.as_secs_f64()
                ),
            ));
        }
        rows.extend([
            (
                "messages published",
                format!("{} ({})", self.messages, rate(self.messages, self.elapsed)),
            ),
            (
                "readings published",
                format!("{} ({})", self.readings, rate(self.readings, self.elapsed)),
            ),
            ("PUBACKs", self.acked.to_string()),
            ("payload bytes", bytes(self.bytes)),
            ("errors", self.errors.to_string()),
            ("duplicates (fault)", self.faults.duplicates.to_string()),
            ("malformed (fault)", self.faults.malformed.to_string()),
            (
                "outages / reboots (fault)",
                format!("{} / {}", self.faults.outages, self.faults.reboots),
            ),
            (
                "readings dropped from backlogs",
                self.faults.dropped.to_string(),
            ),
            ("manifest rows", self.manifest_rows.to_string()),
            (
                "simulated time",
                humantime::format_duration(Duration::from_secs(self.simulated_s.max(0) as u64))
                    .to_string(),
            ),
            ("wall time", format!("{:.2} s", self.elapsed.as_secs_f64())),
            (
                "simulator CPU",
                format!(
                    "{:.2} s ({:.0}% of one core)",
                    self.cpu_s,
                    100.0 * self.cpu_s / self.elapsed.as_secs_f64().max(1e-9)
                ),
            ),
            ("simulator peak memory", bytes(self.peak_rss)),
        ]);
        rows
    }
}

/// A manifest batch: one message's readings.
type ManifestBatch = (Arc<str>, Vec<SentReading>, i64);

struct Ctx {
    counters: Arc<Counters>,
    faults_total: std::sync::Mutex<DeviceStats>,
    client: ClientSettings,
    addrs: Vec<SocketAddr>,
    start_s: i64,
    end_s: Option<i64>,
    speed: Speed,
    wall0: tokio::time::Instant,
    manifest: Option<mpsc::Sender<ManifestBatch>>,
    stop: watch::Receiver<bool>,
    /// Turns true when every device has connected (used with `start_together`).
    go: Option<watch::Receiver<bool>>,
    max_sim_s: AtomicU64,
}

impl Ctx {
    /// Sleeps until simulated time `t`; false when the run is stopping.
    async fn wait_until(&self, t: i64, stop: &mut watch::Receiver<bool>) -> bool {
        if *stop.borrow() {
            return false;
        }
        match self.speed.factor() {
            None => {
                tokio::task::yield_now().await;
                true
            }
            Some(f) => {
                let at =
                    self.wall0 + Duration::from_secs_f64(((t - self.start_s) as f64 / f).max(0.0));
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => true,
                    _ = stop.changed() => false,
                }
            }
        }
    }
}

/// One live MQTT connection of a device.
struct Conn {
    client: AsyncClient,
    task: JoinHandle<()>,
    pending: Arc<AtomicU64>,
    /// Between CONNACK and the end of the connection; shared with the event loop task.
    up: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Conn {
    fn open(dev: &SimDevice, addr: SocketAddr, ctx: &Ctx) -> Self {
        let mut opts = net::mqtt_options(&dev.spec().id, addr, &ctx.client);
        if let Some((topic, payload)) = dev.will() {
            opts.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true, None));
        }
        let (client, mut el) = AsyncClient::new(opts, 16);
        let pending = Arc::new(AtomicU64::new(0));
        let up = Arc::new(AtomicBool::new(false));
        let (counters, p, u) = (ctx.counters.clone(), pending.clone(), up.clone());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        if !u.swap(true, Ordering::Relaxed) {
                            counters.connected();
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::PubAck(_))) => {
                        Counters::add(&counters.acked, 1);
                        p.fetch_sub(1, Ordering::Relaxed);
                    }
                    Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(ConnectionError::RequestsDone) => break,
                    Err(_) => {
                        Counters::add(&counters.errors, 1);
                        if u.swap(false, Ordering::Relaxed) {
                            counters.disconnected();
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            if u.swap(false, Ordering::Relaxed) {
                counters.disconnected();
            }
        });
        Self {
            client,
            task,
            pending,
            up,
            counters: ctx.counters.clone(),
        }
    }

    /// Waits (bounded) for outstanding PUBACKs, as a board keeps a pack until acked.
    async fn drain(&self, limit: Duration) {
        let t0 = Instant::now();
        while self.pending.load(Ordering::Relaxed) > 0 && t0.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The link drops: no DISCONNECT, the broker sends the will.
    async fn drop_link(self) {
        self.drain(Duration::from_secs(5)).await;
        self.task.abort();
        let _ = self.task.await;
        if self.up.swap(false, Ordering::Relaxed) {
            self.counters.disconnected();
        }
    }

    /// A clean goodbye.
    async fn close(self) {
        self.drain(Duration::from_secs(30)).await;
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

use ingest::message::now_ns as unix_ns_now;

async fn publish(conn: &Conn, m: Outgoing, device: &Arc<str>, ctx: &Ctx) {
    let n = m.readings.len() as u64;
    let len = m.payload.len() as u64;
    conn.pending.fetch_add(1, Ordering::Relaxed);
    let sent_ns = unix_ns_now();
    if conn
        .client
        .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
        .await
        .is_err()
    {
        conn.pending.fetch_sub(1, Ordering::Relaxed);
        Counters::add(&ctx.counters.errors, 1);
        return;
    }
    let c = &ctx.counters;
    Counters::add(&c.messages, 1);
    Counters::add(&c.readings, n);
    Counters::add(&c.bytes, len);
    if n > 0
        && let Some(tx) = &ctx.manifest
    {
        let _ = tx.send((device.clone(), m.readings, sent_ns)).await;
    }
}

async fn device_task(mut dev: SimDevice, addr: SocketAddr, delay: Duration, ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
    let id: Arc<str> = Arc::from(dev.spec().id.as_str());
    let mut conn: Option<Conn> = None;
    let mut events = Vec::new();
    let mut last = ctx.start_s;
    dev.boot(&mut events);
    let mut first = true;
    loop {
        for e in events.drain(..) {
            match e {
                Event::LinkUp => {
                    if conn.is_none() {
                        let c = Conn::open(&dev, addr, &ctx);
                        for b in dev.birth() {
                            publish(&c, b, &id, &ctx).await;
                        }
                        conn = Some(c);
                    }
                }
                Event::LinkDown => {
                    if let Some(c) = conn.take() {
                        c.drop_link().await;
                    }
                }
                Event::Publish(m) => {
                    if let Some(c) = &conn {
                        publish(c, m, &id, &ctx).await;
                    }
                }
            }
        }
        if std::mem::take(&mut first)
            && let Some(mut go) = ctx.go.clone()
        {
            tokio::select! {
                _ = go.wait_for(|g| *g) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        let due = dev.next_due_s();
        if ctx.end_s.is_some_and(|end| due >= end) || !ctx.wait_until(due, &mut stop).await {
            break;
        }
        last = due;
        dev.step(&mut events);
    }
    if let Some(c) = conn {
        c.close().await;
    }
    ctx.max_sim_s
        .fetch_max((last - ctx.start_s).max(0) as u64, Ordering::Relaxed);
    let s = dev.stats();
    if let Ok(mut t) = ctx.faults_total.lock() {
        t.packs += s.packs;
        t.dropped += s.dropped;
        t.reboots += s.reboots;
        t.outages += s.outages;
        t.malformed += s.malformed;
        t.duplicates += s.duplicates;
    }
}

/// Runs a fleet until its simulated duration is covered or `stop` turns true.
pub async fn run(
    cfg: FleetConfig,
    mut external_stop: watch::Receiver<bool>,
) -> Result<FleetReport> {
    // The run's own stop signal: the caller's, or every device connected when asked.
    let (stop_tx, stop) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let forward = {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            while external_stop.changed().await.is_ok() {
                if *external_stop.borrow() {
                    let _ = tx.send(true);
                    return;
                }
            }
        })
    };
    let fd_limit = net::raise_fd_limit();
    let specs = cfg.plan.specs();
    let per_client = if cfg.source_ips.is_empty() { 1 } else { 3 };
    if (specs.len() * per_client) as u64 + 64 > fd_limit {
        warn(&format!(
            "{} devices need about {} file descriptors but the limit is {fd_limit}; raise it with `ulimit -n`",
            specs.len(),
            specs.len() * per_client
        ));
    }
    let addrs = if cfg.source_ips.is_empty() {
        vec![cfg.broker]
    } else {
        net::start_relays(cfg.broker, &cfg.source_ips).await?
    };
    let counters = Arc::new(Counters::default());
    Counters::add(&counters.devices, specs.len() as u64);
    let (manifest_tx, writer) = match &cfg.manifest {
        Some(path) => {
            let mut w = ManifestWriter::create(path)
                .with_context(|| format!("create manifest {}", path.display()))?;
            let (tx, mut rx) = mpsc::channel::<ManifestBatch>(4096);
            let h = tokio::task::spawn_blocking(move || -> Result<u64> {
                while let Some((dev, rows, sent)) = rx.blocking_recv() {
                    for r in &rows {
                        w.write(&dev, r, sent)?;
                    }
                }
                Ok(w.finish()?)
            });
            (Some(tx), Some(h))
        }
        None => (None, None),
    };
    let (go_tx, go_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        counters: counters.clone(),
        faults_total: std::sync::Mutex::new(DeviceStats::default()),
        client: cfg.client.clone(),
        addrs: addrs.clone(),
        start_s: cfg.start_s,
        end_s: cfg.duration_s.map(|d| cfg.start_s + d),
        speed: cfg.speed,
        wall0: tokio::time::Instant::now(),
        manifest: manifest_tx,
        stop,
        go: cfg.start_together.then_some(go_rx),
        max_sim_s: AtomicU64::new(0),
    });
    let progress = crate::report::Progress::start(counters.clone(), "fleet", cfg.quiet);
    let usage0 = ResourceUsage::now();
    let t0 = Instant::now();
    let n = specs.len() as u64;
    // Marks when every device has connected, and the counters then and at the stop
    // signal: the publish rate of the whole fleet, without the connect phase.
    type Mark = Option<(Duration, u64, u64)>;
    let marks: Arc<std::sync::Mutex<(Mark, Mark)>> = Arc::default();
    let watcher = {
        let (c, m) = (counters.clone(), marks.clone());
        let mut stop = ctx.stop.clone();
        let (stop_tx, stop_when_connected) = (stop_tx.clone(), cfg.stop_when_connected);
        tokio::spawn(async move {
            let snap = || {
                (
                    t0.elapsed(),
                    Counters::get(&c.messages),
                    Counters::get(&c.readings),
                )
            };
            while Counters::get(&c.peak_connected) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Ok(mut g) = m.lock() {
                g.0 = Some(snap());
            }
            let _ = go_tx.send(true);
            if stop_when_connected {
                let _ = stop_tx.send(true);
            }
            if stop.changed().await.is_ok()
                && let Ok(mut g) = m.lock()
            {
                g.1 = Some(snap());
            }
        })
    };
    let mut tasks = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let dev = SimDevice::new(spec, cfg.plan.seed, cfg.start_s, cfg.faults, &cfg.apikey);
        let delay = if cfg.connect_rate > 0 {
            Duration::from_secs_f64(i as f64 / f64::from(cfg.connect_rate))
        } else {
            Duration::ZERO
        };
        let addr = ctx.addrs[i % ctx.addrs.len()];
        tasks.push(tokio::spawn(device_task(dev, addr, delay, ctx.clone())));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed();
    watcher.abort();
    forward.abort();
    let (connected, stopped) = marks.lock().map(|g| *g).unwrap_or_default();
    let end = (
        elapsed,
        Counters::get(&counters.messages),
        Counters::get(&counters.readings),
    );
    let all_connected_after = connected.map(|c| c.0);
    let steady = connected.map(|(t, m, r)| {
        let (t1, m1, r1) = stopped.unwrap_or(end);
        (
            t1.saturating_sub(t),
            m1.saturating_sub(m),
            r1.saturating_sub(r),
        )
    });
    let faults = ctx.faults_total.lock().map(|g| *g).unwrap_or_default();
    let simulated_s = ctx.max_sim_s.load(Ordering::Relaxed) as i64;
    drop(ctx);
    let manifest_rows = match writer {
        Some(h) => h.await.context("manifest writer panicked")??,
        None => 0,
    };
    progress.finish();
    let usage = ResourceUsage::now();
    let g = |c: &AtomicU64| Counters::get(c);
    Ok(FleetReport {
        devices: n,
        peak_connected: g(&counters.peak_connected),
        connects: g(&counters.connects),
        all_connected_after,
        steady,
        messages: g(&counters.messages),
        readings: g(&counters.readings),
        acked: g(&counters.acked),
        bytes: g(&counters.bytes),
        errors: g(&counters.errors),
        faults,
        manifest_rows,
        elapsed,
        simulated_s,
        cpu_s: usage.cpu_since(&usage0),
        peak_rss: usage.peak_rss,
    })
}

fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds() {
        assert_eq!("realtime".parse::<Speed>().unwrap(), Speed::Realtime);
        assert_eq!("60x".parse::<Speed>().unwrap(), Speed::Factor(60.0));
        assert_eq!("max".parse::<Speed>().unwrap(), Speed::Max);
        assert!("fast".parse::<Speed>().is_err());
        assert!("0x".parse::<Speed>().is_err());
    }
}
