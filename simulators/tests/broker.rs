//! End-to-end tests of the simulators against a real Mosquitto (and, for `verify`, a
//! real VictoriaMetrics): record then replay reproduces the traffic in order, the same
//! seed gives the same traffic, and verify finds injected loss, duplicates and wrong
//! values.

// Helpers outside `#[test]` functions are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemas::topic::DeviceKind;
use simulators::capture::{CaptureReader, CapturedMessage};
use simulators::device::{FleetPlan, flags};
use simulators::fleet::{self, FleetConfig, FleetReport, Speed};
use simulators::manifest::{self, ManifestRow};
use simulators::net::ClientSettings;
use simulators::record::{self, RecordConfig};
use simulators::replay::{self, Pace, ReplayConfig};
use simulators::verify::{self, Landing};
use tests::{Mosquitto, VictoriaMetrics};
use tokio::sync::{oneshot, watch};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn addr(b: &Mosquitto) -> SocketAddr {
    format!("127.0.0.1:{}", b.port()).parse().unwrap()
}

fn plan(seed: u64) -> FleetPlan {
    FleetPlan {
        seed,
        counts: [
            (DeviceKind::AirQuality, 3),
            (DeviceKind::Weather, 2),
            (DeviceKind::Noise, 2),
            (DeviceKind::Wifi, 3),
        ],
        period_s: 60,
        mix: "tasmota=0.2,esphome=0.15,ultralight=0.15,line=0.15"
            .parse()
            .unwrap(),
        id_prefix: String::new(),
    }
}

/// The first seed from `from` whose fleet speaks every format, so that every test
/// exercises them all (formats are drawn per device from the seed).
fn seed_with_all_formats(from: u64) -> u64 {
    (from..)
        .find(|&s| {
            let formats: std::collections::BTreeSet<_> =
                plan(s).specs().iter().map(|d| d.format).collect();
            formats.len() == simulators::formats::Format::ALL.len()
        })
        .unwrap()
}

fn fleet_config(
    broker: SocketAddr,
    seed: u64,
    faults: &str,
    manifest: Option<PathBuf>,
) -> FleetConfig {
    FleetConfig {
        broker,
        plan: plan(seed),
        faults: faults.parse().unwrap(),
        start_s: 1_767_571_200, // 2026-01-05T00:00:00Z
        duration_s: Some(3 * 3600),
        speed: Speed::Max,
        manifest,
        client: ClientSettings::default(),
        source_ips: Vec::new(),
        connect_rate: 0,
        apikey: "city".into(),
        quiet: true,
        stop_when_connected: false,
        start_together: false,
    }
}

/// Records everything on `broker` while `work` runs; the recording ends once the broker
/// has been quiet for a few seconds after the work is done.
async fn record_during<T>(
    broker: SocketAddr,
    out: &Path,
    work: impl std::future::Future<Output = T>,
) -> (Vec<CapturedMessage>, T) {
    let cfg = RecordConfig {
        broker,
        filters: vec!["#".into()],
        output: out.to_path_buf(),
        compress: true,
        qos: 1,
        duration: None,
        max_messages: None,
        idle: Some(Duration::from_secs(3)),
        client_id: format!("rec-{}", out.display().to_string().len()),
        client: ClientSettings::default(),
        quiet: true,
    };
    let (_stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = oneshot::channel();
    let rec = tokio::spawn(record::run(cfg, stop_rx, Some(ready_tx)));
    ready_rx.await.expect("recorder never subscribed");
    let result = work.await;
    rec.await.unwrap().unwrap();
    let msgs = CaptureReader::open(out)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (msgs, result)
}

async fn run_fleet(cfg: FleetConfig) -> FleetReport {
    let (_tx, rx) = watch::channel(false);
    fleet::run(cfg, rx).await.unwrap()
}

#[test]
fn record_then_replay_reproduces_messages_and_order() {
    let a = Mosquitto::start().unwrap();
    let b = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let faults = "dup=0.02,malformed=0.02,outage=0.01,spike=0.01";
        let seed = seed_with_all_formats(7);
        let (original, rep) = record_during(
            addr(&a),
            &dir.path().join("a.cap"),
            run_fleet(fleet_config(addr(&a), seed, faults, None)),
        )
        .await;
        assert_eq!(rep.errors, 0);
        assert!(
            original.len() as u64 >= rep.messages,
            "recorded {} of {} published",
            original.len(),
            rep.messages
        );
        for prefix in ["city/", "tele/", "telegraf/", "/city/"] {
            assert!(
                original.iter().any(|m| m.topic.starts_with(prefix)),
                "no {prefix} traffic"
            );
        }
        assert!(
            original.iter().any(|m| m.topic.contains("/sensor/")),
            "no ESPHome traffic"
        );
        assert!(
            original.iter().any(|m| m.retain),
            "no retained birth messages"
        );

        let cfg = ReplayConfig {
            broker: addr(&b),
            input: dir.path().join("a.cap"),
            pace: Pace::Max,
            clones: 1,
            per_device: false,
            manifest: Some(dir.path().join("replay.csv")),
            client: ClientSettings::default(),
            client_id: "replayer".into(),
            quiet: true,
        };
        let (_tx, rx) = watch::channel(false);
        let (replayed, rep) =
            record_during(addr(&b), &dir.path().join("b.cap"), replay::run(cfg, rx)).await;
        let rep = rep.unwrap();
        assert_eq!(rep.published, original.len() as u64);
        let key = |m: &CapturedMessage| (m.topic.clone(), m.payload.clone(), m.qos, m.retain);
        let want: Vec<_> = original.iter().map(key).collect();
        let got: Vec<_> = replayed.iter().map(key).collect();
        assert_eq!(got.len(), want.len());
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "message {i} differs: got topic {} want {}",
                got[i].0, want[i].0
            );
        }
        // The replay's manifest lists the readings the capture carried.
        let rows = manifest::read(&dir.path().join("replay.csv")).unwrap();
        assert!(rows.len() as u64 == rep.readings && !rows.is_empty());
    });
}

#[test]
fn replay_clones_devices_in_topics_and_payloads() {
    let a = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut cfg = fleet_config(addr(&a), 3, "", None);
        cfg.duration_s = Some(1800);
        let (original, _) =
            record_during(addr(&a), &dir.path().join("a.cap"), run_fleet(cfg)).await;
        let rcfg = ReplayConfig {
            broker: addr(&a),
            input: dir.path().join("a.cap"),
            pace: Pace::Speed(1000.0),
            clones: 3,
            per_device: true,
            manifest: Some(dir.path().join("clones.csv")),
            client: ClientSettings::default(),
            client_id: "replayer".into(),
            quiet: true,
        };
        let (_tx, rx) = watch::channel(false);
        let (cloned, rep) =
            record_during(addr(&a), &dir.path().join("c.cap"), replay::run(rcfg, rx)).await;
        let rep = rep.unwrap();
        assert_eq!(rep.published, 3 * original.len() as u64);
        assert_eq!(rep.clients, 3 * 10);
        let rows = manifest::read(&dir.path().join("clones.csv")).unwrap();
        let devices: std::collections::BTreeSet<_> =
            rows.iter().map(|r| r.device.as_str()).collect();
        assert_eq!(devices.len(), 30);
        assert!(devices.contains("aq-0001-k2"));
        // A clone's SenML pack names the clone, not the original.
        let native = cloned
            .iter()
            .find(|m| m.topic.starts_with("city/") && m.topic.ends_with("-k1/up"))
            .unwrap();
        let pack = schemas::senml::decode_any(&native.payload).unwrap();
        let bn = pack.records[0].base_name.clone().unwrap();
        assert!(
            native.topic.contains(bn.trim_end_matches(':')),
            "{bn} vs {}",
            native.topic
        );
    });
}

/// Per topic, the payloads in arrival order: each device publishes on one connection,
/// so this order is fixed even though devices interleave freely.
fn per_topic(msgs: &[CapturedMessage]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut m: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for x in msgs {
        m.entry(x.topic.clone())
            .or_default()
            .push(x.payload.clone());
    }
    m
}

#[test]
fn same_seed_gives_identical_traffic() {
    let dir = tempfile::tempdir().unwrap();
    // No link faults: a will racing a reconnect would make the order timing-dependent.
    let faults = "stuck=0.02,spike=0.01,dropout=0.02,skew=0.3,dup=0.02,malformed=0.02";
    runtime().block_on(async {
        let mut runs = Vec::new();
        let seed = seed_with_all_formats(11);
        for (i, seed) in [seed, seed, seed + 1].into_iter().enumerate() {
            // A fresh broker each time: no retained messages from the previous run.
            let a = Mosquitto::start().unwrap();
            let out = dir.path().join(format!("{i}.cap"));
            let (msgs, rep) = record_during(
                addr(&a),
                &out,
                run_fleet(fleet_config(addr(&a), seed, faults, None)),
            )
            .await;
            assert_eq!(rep.errors, 0);
            runs.push(per_topic(&msgs));
        }
        assert!(runs[0].len() > 20);
        for (topic, payloads) in &runs[0] {
            assert!(
                runs[1].get(topic) == Some(payloads),
                "same seed, different traffic on {topic}"
            );
        }
        assert_eq!(runs[0].len(), runs[1].len());
        assert!(runs[0] != runs[2], "different seeds, same traffic");
    });
}

/// A gateway data directory holding `rows` in its hot tier (as the gateway stores them:
/// receipt-stamped readings at receipt time, device repeats once) and `duplicates`
/// counted for one device; returns the database file.
fn write_hot_tier(dir: &Path, rows: &[ManifestRow], duplicates: i64) -> std::path::PathBuf {
    let mut conn = ingest::store::open(
        dir,
        ingest::Synchronous::Normal,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    let readings: Vec<(&str, &str, i64, f64)> = rows
        .iter()
        .filter(|r| r.flags & flags::DUPLICATE == 0 || r.flags & flags::RECEIPT_TIME != 0)
        .map(|r| {
            // The gateway stamps time-less readings on receipt.
            let ts_ns = if r.flags & flags::RECEIPT_TIME != 0 {
                r.sent_ns + 3_000_000
            } else {
                r.ts_ms * 1_000_000
            };
            (r.device.as_str(), r.metric.as_str(), ts_ns, r.value)
        })
        .collect();
    ingest::hot::import(&tx, readings).unwrap();
    tx.execute(
        "INSERT INTO devices(device, format, first_seen, last_seen, duplicates) \
         VALUES ('aq-0001', 'senml', 0, 0, ?1)",
        [duplicates],
    )
    .unwrap();
    tx.commit().unwrap();
    ingest::store::db_path(dir)
}

fn line_protocol(rows: &[ManifestRow]) -> String {
    rows.iter()
        .filter(|r| r.flags & flags::RECEIPT_TIME == 0 && r.flags & flags::DUPLICATE == 0)
        .map(|r| {
            format!(
                "{},device={} value={} {}\n",
                r.metric,
                r.device,
                r.value,
                r.ts_ms * 1_000_000
            )
        })
        .collect()
}

fn verify_cli(manifest: &Path, store_flag: &str, store: &str) -> i32 {
    std::process::Command::new(env!("CARGO_BIN_EXE_simulators"))
        .args(["verify", "--manifest"])
        .arg(manifest)
        .args([store_flag, store])
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

#[test]
fn verify_finds_loss_duplicates_and_wrong_values() {
    let a = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mpath = dir.path().join("sent.csv.zst");
    let rep = runtime().block_on(run_fleet(fleet_config(
        addr(&a),
        5,
        "dup=0.01",
        Some(mpath.clone()),
    )));
    let rows = manifest::read(&mpath).unwrap();
    assert_eq!(rows.len() as u64, rep.manifest_rows);
    assert!(
        rows.iter().any(|r| r.flags & flags::RECEIPT_TIME != 0),
        "no receipt-stamped readings"
    );

    // Everything landed: clean verdict, exit status 0.
    let clean = write_hot_tier(&dir.path().join("clean"), &rows, 0);
    let r = verify::run(&mpath, &Landing::HotTier(clean.clone())).unwrap();
    assert!(!r.failed(), "{r:?}");
    assert_eq!(r.found, r.expected);
    assert!(
        r.latency.is_some(),
        "receipt-stamped readings give a latency"
    );
    assert_eq!(verify_cli(&mpath, "--hot-tier", clean.to_str().unwrap()), 0);

    // One reading lost, one corrupted, one duplicate counted by the gateway.
    let native: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].flags == 0).collect();
    let (lose, corrupt) = (native[10], native[20]);
    let mut damaged: Vec<ManifestRow> = rows.clone();
    damaged[corrupt].value = damaged[corrupt].value * 1.1 + 1.5;
    damaged.remove(lose);
    let bad = write_hot_tier(&dir.path().join("bad"), &damaged, 1);
    let r = verify::run(&mpath, &Landing::HotTier(bad.clone())).unwrap();
    assert_eq!(r.lost, 1, "{r:?}");
    assert_eq!(r.wrong_value, 1, "{r:?}");
    assert_eq!(r.gateway_duplicate_messages, Some(1));
    assert!(r.failed());
    assert_eq!(verify_cli(&mpath, "--hot-tier", bad.to_str().unwrap()), 1);

    // VictoriaMetrics keeps a sample written twice: verify sees the duplicate there.
    let vm = VictoriaMetrics::start().unwrap();
    let timed: Vec<ManifestRow> = rows
        .iter()
        .filter(|r| r.flags & flags::RECEIPT_TIME == 0)
        .cloned()
        .collect();
    let only_timed = dir.path().join("timed.csv");
    let mut w = manifest::ManifestWriter::create(&only_timed).unwrap();
    for r in &timed {
        w.write_row(r).unwrap();
    }
    w.finish().unwrap();
    let mut body = line_protocol(&timed);
    let dup_line = body.lines().next().unwrap().to_owned();
    body.push_str(&dup_line);
    body.push('\n');
    let lost_line = body.lines().nth(5).unwrap().to_owned();
    let body = body.replacen(&format!("{lost_line}\n"), "", 1);
    vm.write_line_protocol(&body).unwrap();
    vm.force_flush().unwrap();
    let r = verify::run(&only_timed, &Landing::Victoria(vm.url())).unwrap();
    assert_eq!(r.lost, 1, "{r:?}");
    assert_eq!(r.wrong_value, 0, "{r:?}");
    assert!(r.duplicates_stored >= 1, "{r:?}");
    assert_eq!(verify_cli(&only_timed, "--victoria", &vm.url()), 1);
}
