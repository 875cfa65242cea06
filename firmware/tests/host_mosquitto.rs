//! The host runner against a real Mosquitto: birth and last will, retained status and
//! meta, QoS 1 packs with increasing `seq`, and the backlog surviving a broker outage.
//!
//! Needs `/usr/sbin/mosquitto` (Debian package `mosquitto`); the harness fails with a
//! message naming the package when it is missing.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, bail};
use firmware::{
    NodeConfig,
    drivers::metric,
    host::{DeviceReport, HostConfig, Synthetic, Waveform, run_device},
    link::{BackoffConfig, LinkError},
};
use rumqttc::v5::{
    AsyncClient, Event, MqttOptions,
    mqttbytes::{QoS, v5::Packet},
};
use schemas::{meta::OwnedMeta, senml::cbor, topic::DeviceKind};
use tests::{Mosquitto, MosquittoOptions};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::{Instant, timeout_at},
};

/// Bound on every wait: generous, the machines running the tests are small and shared.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// A subscriber to `city/#` whose messages arrive on a channel. `persistent` keeps its
/// session (and what the broker queues for it) across a broker restart.
struct Watcher {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
    task: JoinHandle<()>,
}

impl Watcher {
    async fn start(port: u16, id: &str, persistent: bool) -> Result<Self> {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_start(!persistent);
        if persistent {
            options.set_session_expiry_interval(Some(3_600));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (up_tx, up_rx) = oneshot::channel();
        let mut up_tx = Some(up_tx);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(up) = up_tx.take() {
                            let _ = up.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = Msg {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The broker is down (on purpose): poll again, which reconnects.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client.subscribe("city/#", QoS::AtLeastOnce).await?;
        tokio::time::timeout(WAIT, up_rx)
            .await
            .context("no SUBACK from the broker")??;
        Ok(Self { client, rx, task })
    }

    /// Next message matching `pred`, skipping others.
    async fn next_where(&mut self, what: &str, pred: impl Fn(&Msg) -> bool) -> Result<Msg> {
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if pred(&m) => return Ok(m),
                Ok(Some(_)) => {}
                Ok(None) => bail!("watcher stopped while waiting for {what}"),
                Err(_) => bail!("timed out waiting for {what}"),
            }
        }
    }

    async fn stop(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}

fn seq_of(payload: &[u8]) -> Result<u32> {
    let records = cbor::decode_vec(payload).context("pack is not SenML-CBOR")?;
    let first = records.first().context("empty pack")?;
    first.seq.context("first record carries no seq")
}

/// The pack's time (its base time), Unix seconds.
fn time_of(payload: &[u8]) -> Result<f64> {
    let records = cbor::decode_vec(payload).context("pack is not SenML-CBOR")?;
    let first = records.first().context("empty pack")?;
    let bt = first.base_time.context("pack without base time")?;
    Ok(bt + first.time.unwrap_or(0.0))
}

fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn config(device: &str) -> Result<HostConfig> {
    let node = NodeConfig::new(device, "hoan-kiem", DeviceKind::AirQuality)?.with_period_s(1)?;
    let mut cfg = HostConfig::new(node);
    cfg.keep_alive_s = 5;
    cfg.op_timeout_ms = 3_000;
    cfg.backoff = BackoffConfig {
        initial_ms: 100,
        max_ms: 800,
        jitter_percent: 50,
        stable_after_ms: 5_000,
    };
    Ok(cfg)
}

fn sensors(seed: u64) -> (Synthetic,) {
    let wave = |metric, base, min, max| Waveform {
        metric,
        base,
        amplitude: 2.0,
        period_ms: 60_000,
        noise: 0.5,
        min,
        max,
    };
    (Synthetic::new(
        200,
        0,
        &[
            wave(metric!("temperature"), 29.0, -40.0, 85.0),
            wave(metric!("pm25"), 40.0, 0.0, 1000.0),
        ],
        seed,
    ),)
}

/// Starts a device; `stop` ends it gracefully, aborting the task ends it uncleanly.
fn spawn_device(
    cfg: HostConfig,
    seed: u64,
    broker: SocketAddr,
) -> (oneshot::Sender<()>, JoinHandle<DeviceReport>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // The link's MQTT client is not `Send` (rust-mqtt borrows a caller buffer through a
    // raw pointer): devices run on a `LocalSet`.
    let task = tokio::task::spawn_local(run_device(cfg, sensors(seed), broker, async move {
        let _ = stop_rx.await;
    }));
    (stop_tx, task)
}

fn addr(broker: &Mosquitto) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], broker.port()))
}

#[tokio::test]
async fn birth_packs_outage_backlog_and_last_will() -> Result<()> {
    tokio::task::LocalSet::new().run_until(outage()).await
}

async fn outage() -> Result<()> {
    // Saved every second, so that the watcher's session survives the broker's crash.
    let mut broker = Mosquitto::start_with(MosquittoOptions {
        autosave_interval: Some(1),
        ..MosquittoOptions::default()
    })?;
    let mut watcher = Watcher::start(broker.port(), "watcher-outage", true).await?;
    let base = "city/hoan-kiem/airquality/aq-host-1";
    let (status, meta, up) = (
        format!("{base}/status"),
        format!("{base}/meta"),
        format!("{base}/up"),
    );

    let (_stop, device) = spawn_device(config("aq-host-1")?, 1, addr(&broker));

    // Birth, then packs with seq 0, 1, 2 in order.
    let m = watcher.next_where("status", |m| m.topic == status).await?;
    assert_eq!(m.payload, b"online");
    let m = watcher.next_where("meta", |m| m.topic == meta).await?;
    let described = OwnedMeta::decode(&m.payload)?;
    assert_eq!(described.district.as_deref(), Some("hoan-kiem"));
    assert_eq!(described.period_s, Some(1));
    let mut last = None;
    for expected in 0..3u32 {
        let m = watcher.next_where("pack", |m| m.topic == up).await?;
        let seq = seq_of(&m.payload)?;
        assert_eq!(seq, expected, "packs out of order");
        last = Some(seq);
    }

    // A dashboard that subscribes later learns status and meta from retained messages.
    let mut late = Watcher::start(broker.port(), "watcher-late", false).await?;
    let m = late
        .next_where("retained status", |m| m.topic == status)
        .await?;
    assert!(m.retain, "status must be retained");
    assert_eq!(m.payload, b"online");
    let m = late
        .next_where("retained meta", |m| m.topic == meta)
        .await?;
    assert!(m.retain, "meta must be retained");
    late.stop().await;

    // Broker crash: the device keeps sampling into its backlog ...
    let last_before = last.context("no pack before the outage")?;
    // A crash (SIGKILL): the device sees its connection reset, not a goodbye.
    broker.kill()?;
    let down_s = unix_now_s();
    // Drain what was delivered before the stop.
    while let Ok(m) = watcher.rx.try_recv() {
        if m.topic == up {
            last = Some(last.unwrap_or(0).max(seq_of(&m.payload)?));
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let up_s = unix_now_s();
    broker.start_again()?;

    // ... and publishes it oldest first when the broker is back: no seq is missing,
    // and each new seq comes after the previous one (duplicates allowed: QoS 1).
    let mut seen_max = last.unwrap_or(last_before);
    let target = seen_max + 5;
    let mut seen_online_again = false;
    let mut sampled_while_down = 0;
    while seen_max < target {
        let m = watcher
            .next_where("packs after the outage", |m| {
                m.topic == up || m.topic == status
            })
            .await?;
        if m.topic == status {
            seen_online_again |= m.payload == b"online";
            continue;
        }
        let seq = seq_of(&m.payload)?;
        if (down_s..up_s).contains(&time_of(&m.payload)?) {
            sampled_while_down += 1;
        }
        assert!(
            seq <= seen_max + 1,
            "seq {seq} arrived before {} (backlog not oldest first or lost)",
            seen_max + 1
        );
        seen_max = seen_max.max(seq);
    }
    assert!(seen_online_again, "no new `online` after reconnecting");
    assert!(
        sampled_while_down >= 2,
        "only {sampled_while_down} packs were taken while the broker was down"
    );

    // Unclean end (power cut, crash): the broker publishes the last will.
    device.abort();
    let _ = device.await;
    let m = watcher
        .next_where("last will", |m| {
            m.topic == status && m.payload == b"offline"
        })
        .await?;
    assert_eq!(m.payload, b"offline");
    watcher.stop().await;
    Ok(())
}

#[tokio::test]
async fn graceful_shutdown_says_offline_and_leaves_nothing_behind() -> Result<()> {
    tokio::task::LocalSet::new().run_until(graceful()).await
}

async fn graceful() -> Result<()> {
    let broker = Mosquitto::start()?;
    let mut watcher = Watcher::start(broker.port(), "watcher-graceful", false).await?;
    let up = "city/hoan-kiem/airquality/aq-host-2/up";
    let status = "city/hoan-kiem/airquality/aq-host-2/status";

    let (stop, device) = spawn_device(config("aq-host-2")?, 2, addr(&broker));
    for _ in 0..2 {
        watcher.next_where("pack", |m| m.topic == up).await?;
    }
    let _ = stop.send(());
    let report = tokio::time::timeout(WAIT, device).await??;
    assert!(report.link.acked >= 2, "{report:?}");
    assert_eq!(report.link.connects, 1, "{report:?}");
    assert_eq!(report.link.last_error, None, "{report:?}");
    assert!(report.node.packs >= 2, "{report:?}");

    let m = watcher
        .next_where("offline", |m| m.topic == status && m.payload == b"offline")
        .await?;
    assert_eq!(m.payload, b"offline");
    let mut late = Watcher::start(broker.port(), "watcher-graceful-late", false).await?;
    let m = late
        .next_where("retained status", |m| m.topic == status)
        .await?;
    assert!(m.retain);
    assert_eq!(m.payload, b"offline");
    late.stop().await;
    watcher.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_device_started_before_the_broker_connects_when_it_comes_up() -> Result<()> {
    tokio::task::LocalSet::new().run_until(late_broker()).await
}

async fn late_broker() -> Result<()> {
    let mut broker = Mosquitto::start()?;
    // A persistent session: the broker keeps what arrives for it while it reconnects.
    let mut watcher = Watcher::start(broker.port(), "watcher-late-broker", true).await?;
    let up = "city/hoan-kiem/airquality/aq-host-3/up";
    broker.stop()?;

    let (_stop, device) = spawn_device(config("aq-host-3")?, 3, addr(&broker));
    // The device samples and retries (with backoff) while there is no broker.
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.start_again()?;

    // Everything it sampled meanwhile arrives, oldest first, from seq 0.
    for expected in 0..4u32 {
        let m = watcher.next_where("pack", |m| m.topic == up).await?;
        assert_eq!(seq_of(&m.payload)?, expected, "backlog out of order");
    }
    device.abort();
    watcher.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_runs_from_any_runtime_and_a_power_cut_fires_every_will() -> Result<()> {
    let broker = Mosquitto::start()?;
    let mut watcher = Watcher::start(broker.port(), "watcher-fleet", false).await?;
    let ids = ["aq-fleet-1", "aq-fleet-2", "aq-fleet-3"];
    let devices = ids
        .iter()
        .zip(10u64..)
        .map(|(id, seed)| Ok((config(id)?, sensors(seed))))
        .collect::<Result<Vec<_>>>()?;
    let fleet = firmware::host::Fleet::spawn(devices, addr(&broker))?;

    let mut packs_from = std::collections::BTreeSet::new();
    while packs_from.len() < ids.len() {
        let m = watcher
            .next_where("a pack from each device", |m| m.topic.ends_with("/up"))
            .await?;
        seq_of(&m.payload)?;
        packs_from.insert(m.topic);
    }

    fleet.power_cut().await;
    let mut wills = std::collections::BTreeSet::new();
    while wills.len() < ids.len() {
        let m = watcher
            .next_where("last wills", |m| {
                m.topic.ends_with("/status") && m.payload == b"offline"
            })
            .await?;
        wills.insert(m.topic);
    }
    watcher.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_stops_gracefully_with_reports() -> Result<()> {
    let broker = Mosquitto::start()?;
    let mut watcher = Watcher::start(broker.port(), "watcher-fleet-stop", false).await?;
    let devices = vec![
        (config("aq-fleet-4")?, sensors(4)),
        (config("aq-fleet-5")?, sensors(5)),
    ];
    let fleet = firmware::host::Fleet::spawn(devices, addr(&broker))?;
    let mut packs = 0;
    while packs < 4 {
        watcher
            .next_where("packs", |m| m.topic.ends_with("/up"))
            .await?;
        packs += 1;
    }
    let reports = fleet.stop().await;
    assert_eq!(reports.len(), 2, "{reports:?}");
    for r in &reports {
        assert_eq!(r.link.connects, 1, "{r:?}");
        assert!(r.link.acked >= 1, "{r:?}");
        assert_eq!(r.link.last_error, None, "{r:?}");
    }
    watcher.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_nobody_subscribes_to_are_still_acknowledged() -> Result<()> {
    // Mosquitto answers such a PUBACK with "no matching subscribers" (0x10), a success
    // code: the backlog must drain all the same.
    let broker = Mosquitto::start()?;
    let fleet =
        firmware::host::Fleet::spawn(vec![(config("aq-alone")?, sensors(6))], addr(&broker))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reports = fleet.stop().await;
    let r = reports.first().context("no report")?;
    assert!(r.link.acked >= 1, "{r:?}");
    assert_eq!(r.link.last_error, None, "{r:?}");
    assert!(r.backlog_len <= 1, "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_hold_an_idle_session() -> Result<()> {
    // Keep-alive 2 s and nothing to publish for a minute: without pings Mosquitto drops
    // the session after 3 s and the device has to connect again.
    let broker = Mosquitto::start()?;
    let node =
        NodeConfig::new("aq-idle", "hoan-kiem", DeviceKind::AirQuality)?.with_period_s(60)?;
    let mut cfg = HostConfig::new(node);
    cfg.keep_alive_s = 2;
    let fleet = firmware::host::Fleet::spawn(vec![(cfg, sensors(7))], addr(&broker))?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let reports = fleet.stop().await;
    let r = reports.first().context("no report")?;
    assert_eq!(r.link.connects, 1, "the idle session was dropped: {r:?}");
    assert_eq!(r.link.last_error, None, "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_packs_at_fifty_times_real_time_stay_in_order_on_one_session() -> Result<()> {
    // A long session in a few seconds: nothing in the link may wear out per packet (the
    // MQTT client's scratch buffer, packet identifiers, the one-in-flight rule).
    let broker = Mosquitto::start()?;
    let mut watcher = Watcher::start(broker.port(), "watcher-fast", false).await?;
    let mut cfg = config("aq-fast")?;
    cfg.speedup = 50;
    let fleet = firmware::host::Fleet::spawn(vec![(cfg, sensors(8))], addr(&broker))?;
    let up = "city/hoan-kiem/airquality/aq-fast/up";
    let mut next = 0u32;
    while next < 300 {
        let m = watcher.next_where("pack", |m| m.topic == up).await?;
        let seq = seq_of(&m.payload)?;
        assert!(seq <= next, "seq {seq} skipped ahead of {next}");
        if seq == next {
            next += 1;
        }
    }
    let reports = fleet.stop().await;
    let r = reports.first().context("no report")?;
    assert_eq!(r.link.connects, 1, "{r:?}");
    assert_eq!(r.link.last_error, None, "{r:?}");
    assert!(r.link.acked >= 300, "{r:?}");
    watcher.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousandfold_clock_keeps_protocol_timing_in_real_time() -> Result<()> {
    // At 1000x, 2 s of keep-alive on the device clock would be 2 ms of real time: a ping
    // storm, and a broker "dead" after any slow answer. The link measures keep-alive
    // and timeouts in real time, so the one session holds.
    let broker = Mosquitto::start()?;
    let node =
        NodeConfig::new("aq-1000x", "hoan-kiem", DeviceKind::AirQuality)?.with_period_s(60)?;
    let mut cfg = HostConfig::new(node);
    cfg.keep_alive_s = 2;
    cfg.speedup = 1_000;
    let fleet = firmware::host::Fleet::spawn(vec![(cfg, sensors(9))], addr(&broker))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reports = fleet.stop().await;
    let r = reports.first().context("no report")?;
    assert_eq!(r.link.connects, 1, "{r:?}");
    assert_eq!(r.link.last_error, None, "{r:?}");
    // About 80 simulated minutes went by: a pack a minute, acknowledged.
    assert!(r.node.packs >= 40, "{r:?}");
    assert!(r.link.acked + 1 >= r.node.packs, "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_above_the_brokers_packet_limit_are_dropped_and_counted_not_retried_forever()
-> Result<()> {
    // Packs larger than the broker's 100-byte packet limit would block the backlog for
    // good if the link retried them. It drops them, counted as dropped readings, on one
    // healthy session (the status still goes out: it is small).
    let broker = Mosquitto::start_with(MosquittoOptions {
        extra_config: vec!["max_packet_size 100".into()],
        ..MosquittoOptions::default()
    })?;
    let mut watcher = Watcher::start(broker.port(), "watcher-small", false).await?;
    let fleet =
        firmware::host::Fleet::spawn(vec![(config("aq-big")?, sensors(11))], addr(&broker))?;
    let m = watcher
        .next_where("status", |m| m.topic.ends_with("aq-big/status"))
        .await?;
    assert_eq!(m.payload, b"online");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reports = fleet.stop().await;
    let r = reports.first().context("no report")?;
    assert_eq!(r.link.connects, 1, "{r:?}");
    assert!(r.link.discarded >= 2, "{r:?}");
    assert!(r.dropped_total >= u64::from(r.link.discarded), "{r:?}");
    assert!(r.backlog_len <= 1, "{r:?}");
    watcher.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_presented_and_a_refusal_is_reported() -> Result<()> {
    let broker = Mosquitto::start_with(
        MosquittoOptions::default()
            .with_user("aq-auth", "s3cret-pass")
            .deny_anonymous(),
    )?;
    let mut good = config("aq-auth")?;
    good.username = Some("aq-auth".into());
    good.password = Some("s3cret-pass".into());
    let mut bad = config("aq-auth-bad")?;
    bad.username = Some("aq-auth".into());
    bad.password = Some("wrong".into());
    let fleet =
        firmware::host::Fleet::spawn(vec![(good, sensors(12)), (bad, sensors(13))], addr(&broker))?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reports = fleet.stop().await;
    let (good, bad) = (&reports[0], &reports[1]);
    assert_eq!(good.link.connects, 1, "{good:?}");
    assert!(good.link.acked >= 1, "{good:?}");
    assert_eq!(bad.link.connects, 0, "{bad:?}");
    assert!(bad.link.attempts >= 2, "a refused device retries: {bad:?}");
    // MQTT 5: 0x86 bad user name or password, 0x87 not authorized.
    assert!(
        matches!(bad.link.last_error, Some(LinkError::Refused(0x86 | 0x87))),
        "{bad:?}"
    );
    Ok(())
}
