//! The node with simulated time: sampling schedules, windows, pack contents decoded back
//! with the schemas crate, sequence numbers, time stamps, and overflow reports.

mod common;

use common::{Script, decode};
use firmware::drivers::{Reading, metric};
use firmware::node::{Node, NodeConfig};
use schemas::senml::Time;
use schemas::topic::DeviceKind;

type AqNode<S> = Node<S, 8, 256>;

fn cfg(period_s: u32) -> NodeConfig {
    NodeConfig::new("aq-0001", "hoan-kiem", DeviceKind::AirQuality)
        .and_then(|c| c.with_period_s(period_s))
        .expect("valid config")
}

/// Runs the node like a board that sleeps until each deadline.
fn run_until<S: firmware::Sensors, const N: usize, const B: usize>(
    node: &mut Node<S, N, B>,
    end_ms: u64,
) {
    loop {
        let t = node.next_deadline();
        if t > end_ms {
            break;
        }
        node.poll(t);
    }
}

fn drain<S: firmware::Sensors, const N: usize, const B: usize>(
    node: &mut Node<S, N, B>,
) -> Vec<common::Decoded> {
    let mut packs = Vec::new();
    while let Some(p) = node.backlog().oldest() {
        packs.push(decode(p));
        node.backlog().ack_oldest();
    }
    packs
}

#[test]
fn one_pack_per_period_with_window_means() {
    let temp = Script::new(
        metric!("temperature"),
        10_000,
        &[20.0, 22.0, 24.0, 26.0, 28.0, 30.0],
    );
    let pm = Script::new(metric!("pm25"), 5_000, &[10.0, 14.0]);
    let mut node: AqNode<_> = Node::new(cfg(60), (temp, pm));
    run_until(&mut node, 59_999);
    assert!(node.backlog().is_empty(), "no pack before the period ends");
    // Per-sensor intervals: 6 temperature samples, 12 PM samples in the first window.
    let counts: Vec<_> = node
        .sampler()
        .aggregates()
        .map(|a| (a.metric, a.count))
        .collect();
    assert_eq!(
        counts,
        vec![(metric!("pm25"), 12), (metric!("temperature"), 6)]
    );
    let t = node
        .sampler()
        .aggregates()
        .find(|a| a.metric == metric!("temperature"))
        .unwrap();
    assert_eq!((t.min, t.max), (20.0, 30.0));

    run_until(&mut node, 60_000);
    let packs = drain(&mut node);
    assert_eq!(packs.len(), 1);
    let p = &packs[0];
    assert_eq!(p.base_name, "aq-0001:");
    assert_eq!(p.seq, Some(0));
    // No SNTP yet: relative time 0, the gateway stamps it on receipt.
    assert_eq!(p.time, Time::Relative(0.0));
    assert_eq!(p.value("temperature"), Some(25.0));
    assert_eq!(p.value("pm25"), Some(12.0));
    let units: Vec<_> = p
        .records
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_deref()))
        .collect();
    assert_eq!(
        units,
        vec![("pm25", Some("ug/m3")), ("temperature", Some("Cel"))]
    );
    // The sample at exactly 60 s belongs to the second window.
    assert_eq!(node.sampler().aggregates().count(), 2);
}

#[test]
fn sequence_numbers_count_packs_and_times_follow_sntp() {
    let temp = Script::new(metric!("temperature"), 10_000, &[21.5]);
    let mut node: AqNode<_> = Node::new(cfg(60), (temp,));
    run_until(&mut node, 60_000);
    // SNTP answers at 75 s: 2026-11-22T22:00:00.250Z.
    node.set_unix_time(75_000, 1_795_384_800_250);
    run_until(&mut node, 180_000);
    let packs = drain(&mut node);
    assert_eq!(
        packs.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(2)]
    );
    // Encoded before SNTP answered, stamped while it waited in the backlog: 60 s.
    assert_eq!(packs[0].time, Time::Absolute(1_795_384_785.0));
    // Window ends at 120 s and 180 s monotonic, in whole Unix seconds.
    assert_eq!(packs[1].time, Time::Absolute(1_795_384_845.0));
    assert_eq!(packs[2].time, Time::Absolute(1_795_384_905.0));
    assert!(packs.iter().all(|p| p.value("temperature") == Some(21.5)));
}

#[test]
fn counters_report_their_last_value_and_gauges_their_mean() {
    let rx = Script::new(
        metric!("rxBytes"),
        15_000,
        &[1e9, 1.5e9, 2e9 + 1.0, 3e9 + 7.0],
    );
    let clients = Script::new(metric!("clientsConnected"), 15_000, &[3.0, 5.0, 4.0, 8.0]);
    let cfg = NodeConfig::new("wifi-0007", "ba-dinh", DeviceKind::Wifi).unwrap();
    let mut node: AqNode<_> = Node::new(cfg, (rx, clients));
    run_until(&mut node, 60_000);
    let p = &drain(&mut node)[0];
    assert_eq!(p.value("rxBytes"), Some(3e9 + 7.0), "exact past 2^32");
    assert_eq!(p.value("clientsConnected"), Some(5.0));
}

#[test]
fn warming_up_sensors_leave_their_metric_out() {
    let mut co2 = Script::new(metric!("co2"), 5_000, &[]);
    co2.values = vec![None]; // warming up for ever
    let temp = Script::new(metric!("temperature"), 10_000, &[19.0]);
    let mut node: AqNode<_> = Node::new(cfg(60), (co2, temp));
    run_until(&mut node, 60_000);
    let p = &drain(&mut node)[0];
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.value("co2"), None);
    assert_eq!(
        node.sensor_status(0),
        Some(firmware::SensorStatus::WarmingUp { remaining_ms: 0 })
    );
}

#[test]
fn a_period_with_nothing_to_say_sends_nothing_and_keeps_seq_contiguous() {
    let mut co2 = Script::new(metric!("co2"), 5_000, &[]);
    co2.values = vec![None; 24]; // warming up through two periods, then 400 ppm
    co2.values.push(Some(400.0));
    let mut node: AqNode<_> = Node::new(cfg(60), (co2,));
    run_until(&mut node, 180_000);
    let packs = drain(&mut node);
    assert_eq!(packs.len(), 1);
    assert_eq!(packs[0].seq, Some(0));
    assert_eq!(packs[0].value("co2"), Some(400.0));
}

#[test]
fn overflow_is_reported_in_the_next_pack_and_adds_up() {
    // 4 slots, 20 periods offline: 16 packs of 2 readings dropped.
    let temp = Script::new(metric!("temperature"), 30_000, &[20.0]);
    let hum = Script::new(metric!("relativeHumidity"), 30_000, &[60.0]);
    let mut node: Node<_, 4, 256> = Node::new(cfg(60), (temp, hum));
    run_until(&mut node, 20 * 60_000);
    assert_eq!(node.backlog().len(), 4);
    assert_eq!(node.backlog_ref().dropped_total(), 16 * 2);
    let survivors = drain(&mut node);
    // The newest four survive: seq 16..=19, so the gap 0..16 is explained below.
    assert_eq!(
        survivors.iter().map(|p| p.seq.unwrap()).collect::<Vec<_>>(),
        vec![16, 17, 18, 19]
    );
    // Each surviving pack that was encoded after drops reports them; the reports of
    // packs that were dropped in turn came back to the counter.
    let reported_so_far: f64 = survivors
        .iter()
        .filter_map(|p| p.value("droppedReadings"))
        .sum();
    // Back online: the next pack reports whatever is still pending.
    run_until(&mut node, 21 * 60_000);
    let next = drain(&mut node);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].seq, Some(20));
    let reported = reported_so_far + next[0].value("droppedReadings").unwrap_or(0.0);
    assert_eq!(
        reported, 32.0,
        "every dropped reading reported exactly once"
    );
    // droppedReadings is not counted as a reading itself.
    assert_eq!(next[0].value("temperature"), Some(20.0));
}

#[test]
fn a_pack_larger_than_a_slot_is_counted_as_dropped() {
    let temp = Script::new(metric!("temperature"), 10_000, &[20.1]);
    let hum = Script::new(metric!("relativeHumidity"), 10_000, &[55.3]);
    // 32-byte slots cannot hold a two-record pack with units.
    let mut node: Node<_, 4, 32> = Node::new(cfg(60), (temp, hum));
    run_until(&mut node, 60_000);
    assert!(node.backlog().is_empty());
    assert_eq!(node.stats().encode_failures, 1);
    assert_eq!(node.next_seq(), 1, "the lost pack used its sequence number");
    assert_eq!(node.backlog_ref().dropped_total(), 2);
}

#[test]
fn polling_often_or_only_at_deadlines_gives_the_same_packs() {
    let make = || {
        (
            Script::counting(metric!("pm10"), 7_000),
            Script::counting(metric!("pressure"), 11_000),
        )
    };
    let mut sleepy: AqNode<_> = Node::new(cfg(30), make());
    run_until(&mut sleepy, 300_000);
    let mut busy: AqNode<_> = Node::new(cfg(30), make());
    for t in (0..=300_000).step_by(250) {
        busy.poll(t);
    }
    let a = drain(&mut sleepy);
    let b = drain(&mut busy);
    assert_eq!(a.len(), 8); // 10 periods, 8 slots: the newest 8 are kept
    assert_eq!(a, b);
}

#[test]
fn a_long_stall_skips_empty_periods_without_a_burst() {
    let mut node: AqNode<_> = Node::new(cfg(60), (Script::counting(metric!("co2"), 5_000),));
    node.poll(0);
    node.poll(10 * 60_000 + 1_234); // the board was stuck for ten minutes
    assert_eq!(
        node.backlog().len(),
        1,
        "one pack for the window that had samples"
    );
    assert_eq!(node.sensors_mut().0.sampled_at, vec![0, 601_234]);
    // Windows stay on the original grid; the sensor resumes its interval from now.
    assert_eq!(node.sampler().window_end(), Some(660_000));
    assert_eq!(node.next_deadline(), 601_234 + 5_000);
    run_until(&mut node, 11 * 60_000);
    assert_eq!(node.backlog().len(), 2);
}

#[test]
fn readings_from_the_board_join_the_window() {
    let mut node: AqNode<_> = Node::new(cfg(60), (Script::new(metric!("pm25"), 5_000, &[9.0]),));
    node.poll(0);
    node.record(Reading {
        metric: metric!("supplyVoltage"),
        value: 4.9,
    });
    node.record(Reading {
        metric: metric!("supplyVoltage"),
        value: 5.1,
    });
    run_until(&mut node, 60_000);
    let p = &drain(&mut node)[0];
    assert!((p.value("supplyVoltage").unwrap() - 5.0).abs() < 1e-6);
}

#[test]
fn topics_and_birth_payloads() {
    let node: AqNode<()> = Node::new(cfg(60), ());
    assert_eq!(
        node.up_topic().as_str(),
        "city/hoan-kiem/airquality/aq-0001/up"
    );
    assert_eq!(
        node.status_topic().as_str(),
        "city/hoan-kiem/airquality/aq-0001/status"
    );
    assert_eq!(
        node.meta_topic().as_str(),
        "city/hoan-kiem/airquality/aq-0001/meta"
    );
    assert_eq!(node.status_online(), b"online");
    assert_eq!(node.status_offline(), b"offline");
    let mut buf = [0u8; 256];
    let n = node.meta_payload(&mut buf).unwrap();
    let meta = schemas::meta::OwnedMeta::decode(&buf[..n]).unwrap();
    assert_eq!(meta.kind.as_deref(), Some("airquality"));
    assert_eq!(meta.district.as_deref(), Some("hoan-kiem"));
    assert_eq!(meta.period_s, Some(60));
    assert_eq!(meta.firmware, env!("CARGO_PKG_VERSION"));
    assert_eq!(meta.sensors, vec!["bme280", "pms5003", "scd41"]);
}

#[test]
fn config_refuses_bad_slugs_and_zero_periods() {
    use firmware::node::ConfigError;
    assert!(matches!(
        NodeConfig::new("AQ 1", "hoan-kiem", DeviceKind::AirQuality),
        Err(ConfigError::BadDevice(_))
    ));
    assert!(matches!(
        NodeConfig::new("aq-1", "", DeviceKind::AirQuality),
        Err(ConfigError::BadDistrict(_))
    ));
    assert_eq!(cfg(60).with_period_s(0), Err(ConfigError::ZeroPeriod));
}

#[test]
fn a_backlog_sent_after_an_outage_keeps_its_times_without_sntp() {
    // No SNTP at all: packs wait in the backlog, then go out in one burst. Each is
    // stamped with its age when first published, so the gateway does not file ten
    // minutes of readings under the second they arrived.
    let mut node: AqNode<_> = Node::new(cfg(60), (Script::counting(metric!("co2"), 20_000),));
    run_until(&mut node, 5 * 60_000 + 30_000);
    node.poll(330_000); // the link's poll when the broker is back
    assert_eq!(node.backlog().len(), 5);
    let mut times = Vec::new();
    while let Some(p) = node.begin_publish() {
        let first = p.to_vec();
        // Publishing again (a reconnect before the PUBACK) sends the same bytes.
        assert_eq!(
            node.begin_publish().map(<[u8]>::to_vec),
            Some(first.clone())
        );
        times.push(decode(&first).time);
        node.backlog().ack_oldest();
    }
    // Windows closed at 60, 120, ..., 300 s; published at 330 s.
    assert_eq!(
        times,
        vec![
            Time::Relative(-270.0),
            Time::Relative(-210.0),
            Time::Relative(-150.0),
            Time::Relative(-90.0),
            Time::Relative(-30.0),
        ]
    );
}

#[test]
fn sntp_arriving_mid_outage_stamps_waiting_packs_except_the_one_in_flight() {
    let mut node: AqNode<_> = Node::new(cfg(60), (Script::counting(metric!("co2"), 20_000),));
    run_until(&mut node, 3 * 60_000);
    let in_flight = node.begin_publish().map(<[u8]>::to_vec).expect("a pack");
    node.set_unix_time(200_000, 1_795_384_800_000);
    node.poll(200_000);
    // The pack the broker may hold is left alone; the others get absolute times.
    assert_eq!(node.backlog().oldest(), Some(&in_flight[..]));
    let packs = drain(&mut node);
    assert_eq!(packs[0].time, Time::Relative(-120.0));
    assert_eq!(packs[1].time, Time::Absolute(1_795_384_720.0));
    assert_eq!(packs[2].time, Time::Absolute(1_795_384_780.0));
    assert_eq!(
        packs.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(2)]
    );
}

#[test]
fn a_pack_published_at_once_needs_no_age() {
    let mut node: AqNode<_> = Node::new(cfg(60), (Script::counting(metric!("co2"), 20_000),));
    run_until(&mut node, 60_000);
    let p = node.begin_publish().map(decode).expect("a pack");
    assert_eq!(p.time, Time::Relative(0.0));
}
