//! The sampler on its own, with simulated time: schedules, windows and aggregates.

mod common;

use common::Script;
use firmware::SensorStatus;
use firmware::drivers::{Reading, metric};
use firmware::sampler::Sampler;

#[test]
fn each_sensor_keeps_its_own_interval() {
    let mut sensors = (
        Script::counting(metric!("pm25"), 3_000),
        Script::counting(metric!("temperature"), 7_000),
        Script::counting(metric!("co2"), 0), // 0 is treated as 1 ms, never as "spin"
    );
    let mut s = Sampler::new(60_000);
    s.start(&sensors, 1_000);
    for t in (1_000..=22_000).step_by(500) {
        s.sample_due(&mut sensors, t);
    }
    assert_eq!(
        sensors.0.sampled_at,
        vec![1_000, 4_000, 7_000, 10_000, 13_000, 16_000, 19_000, 22_000]
    );
    assert_eq!(sensors.1.sampled_at, vec![1_000, 8_000, 15_000, 22_000]);
    // The 1 ms sensor is sampled at every poll, once.
    assert_eq!(sensors.2.sampled_at.len(), 43);
}

#[test]
fn windows_fold_mean_min_max_and_last() {
    let mut sensors = (
        Script::new(metric!("pm10"), 10_000, &[30.0, 10.0, 20.0]),
        Script::new(metric!("txBytes"), 10_000, &[100.0, 250.0, 400.0]),
    );
    let mut s = Sampler::new(30_000);
    s.start(&sensors, 0);
    for t in [0, 10_000, 20_000] {
        assert_eq!(s.window_due(t), None);
        s.sample_due(&mut sensors, t);
    }
    assert_eq!(s.window_due(30_000), Some(30_000));
    let a: Vec<_> = s.aggregates().collect();
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].metric, a[0].value, a[0].min, a[0].max, a[0].count),
        (metric!("pm10"), 20.0, 10.0, 30.0, 3)
    );
    assert_eq!((a[1].metric, a[1].value), (metric!("txBytes"), 400.0));
    s.finish_window(30_000);
    assert!(s.is_empty());
    assert_eq!(s.window_end(), Some(60_000));
    assert_eq!(s.status(0), Some(SensorStatus::Ok));
    assert_eq!(s.status(5), None);
}

#[test]
fn next_deadline_is_the_earliest_of_sensors_and_window() {
    let sensors = (Script::counting(metric!("pm25"), 45_000),);
    let mut s = Sampler::new(30_000);
    assert_eq!(s.next_deadline(), u64::MAX);
    let mut sensors = sensors;
    s.start(&sensors, 100);
    assert_eq!(s.next_deadline(), 100);
    s.sample_due(&mut sensors, 100);
    assert_eq!(s.next_deadline(), 30_100);
    s.finish_window(30_100);
    assert_eq!(s.next_deadline(), 45_100);
}

#[test]
fn non_finite_readings_never_enter_a_window() {
    let mut s = Sampler::new(1_000);
    s.record(Reading {
        metric: metric!("pressure"),
        value: f64::NAN,
    });
    s.record(Reading {
        metric: metric!("pressure"),
        value: f64::INFINITY,
    });
    assert!(s.is_empty());
    s.record(Reading {
        metric: metric!("pressure"),
        value: 1013.25,
    });
    assert_eq!(s.aggregates().next().map(|a| a.value), Some(1013.25));
}

#[test]
fn arrays_and_trait_object_slices_are_sensor_sets() {
    use firmware::drivers::{Readings, Sensor, Sensors};
    let mut array = [
        Script::counting(metric!("pm1"), 1_000),
        Script::counting(metric!("pm10"), 2_000),
    ];
    assert_eq!(Sensors::len(&array), 2);
    assert_eq!(array.interval_ms(1), 2_000);
    assert_eq!(array.interval_ms(2), u32::MAX);
    let mut r = Readings::new();
    assert_eq!(array.sample(1, 0, &mut r), SensorStatus::Ok);
    assert_eq!(r.as_slice()[0].metric, metric!("pm10"));

    let mut a = Script::counting(metric!("co2"), 5_000);
    let mut b = Script::counting(metric!("pressure"), 10_000);
    let mut list: [&mut dyn Sensor; 2] = [&mut a, &mut b];
    let set: &mut [&mut dyn Sensor] = &mut list;
    let mut s = Sampler::new(60_000);
    s.start(&set, 0);
    assert_eq!(s.sensor_count(), 2);
    assert_eq!(s.sample_due(&mut &mut *set, 0), 2);
    assert_eq!(s.sample_due(&mut &mut *set, 5_000), 1);
    assert_eq!(s.aggregates().count(), 2);
}
