//! Bounded resources under a flood of 100,000 distinct device ids: the
//! received-message buffer bounded in bytes loses nothing, dead letters stay
//! within their byte bound (the oldest dropped and counted), and per-device
//! metric series expire after their idle time.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use tests::Mosquitto;

const WAIT: Duration = Duration::from_secs(180);
const DEVICES: u32 = 100_000;
const DEAD_LETTER_BOUND: u64 = 256 * 1024;

fn per_device_series(gw: &Gateway) -> usize {
    let (_, text) = gw.get("/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with("device_gaps_total{"))
        .count()
}

#[test]
fn a_flood_of_device_ids_stays_within_every_bound() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[batch]\nmax_buffered_bytes = 65536\n\
             [metrics]\nidle_timeout_s = 5\n\
             [ingest]\ndeadletter_max_bytes = {DEAD_LETTER_BOUND}\nmax_cached_devices = 1000\n"
        ),
    )
    .unwrap();
    let broker = Mosquitto::start().unwrap();
    let mut opts = GatewayOptions::new(&broker, "bounds", &dir.path().join("data"));
    opts.extra = vec!["--config".into(), cfg.display().to_string()];
    let gw = Gateway::start(&opts);

    // Each device's sequence 0, then 2: one gap per device, so one labelled
    // series per device.
    let load = senml(3 * u64::from(DEVICES), DEVICES, "fl-");
    publish(&broker, &load, 0..u64::from(DEVICES), "pub-flood-1");
    publish(
        &broker,
        &load,
        2 * u64::from(DEVICES)..3 * u64::from(DEVICES),
        "pub-flood-2",
    );
    let want = 2 * u64::from(DEVICES) * 5;
    wait_until(
        "every reading of the flood stored",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == want,
    );
    assert_eq!(
        query_u64(&gw.data_dir, "SELECT SUM(gaps) FROM devices"),
        u64::from(DEVICES),
        "one gap per device, with the device cache far smaller than the fleet"
    );
    assert_eq!(
        query_u64(&gw.data_dir, "SELECT SUM(messages) FROM devices"),
        2 * u64::from(DEVICES)
    );
    let labelled = per_device_series(&gw);

    // Then 20,000 undecodable messages of as many devices: dead letters, within
    // their bound, the oldest dropped and counted.
    let junk: Vec<(String, Vec<u8>)> = (0..20_000)
        .map(|i| (format!("tele/junk-{i:05}/SENSOR"), b"{not json".to_vec()))
        .collect();
    publish_raw(&broker, &junk);
    wait_until(
        "20,000 dead letters written",
        WAIT,
        || {
            query_u64(
                &gw.data_dir,
                "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'dead_letters'",
            )
        },
        |n| *n == 20_000,
    );
    let dropped = gw.metric("deadletters_dropped_total").unwrap_or(0.0) as u64;
    let bytes = query_u64(&gw.data_dir, "SELECT bytes FROM dead_letter_stats");
    let kept = query_u64(&gw.data_dir, "SELECT COUNT(*) FROM dead_letters");
    assert!(
        bytes <= DEAD_LETTER_BOUND,
        "dead letters hold {bytes} bytes, bound {DEAD_LETTER_BOUND}"
    );
    assert!(kept > 0 && kept < 20_000, "{kept} dead letters kept");
    assert_eq!(
        dropped + kept,
        20_000,
        "every dead letter is kept or counted as dropped"
    );

    // Per-device series exist while devices report, and expire once idle.
    assert!(
        labelled > 0,
        "gaps are counted per device while devices report"
    );
    wait_until(
        "per-device series expired after the idle time",
        Duration::from_secs(30),
        || per_device_series(&gw),
        |n| *n == 0,
    );
    assert!(
        gw.get("/metrics").unwrap().1.contains("log_backlog_bytes"),
        "gauges stay"
    );
}
