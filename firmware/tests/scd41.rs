//! SCD41 driver against embedded-hal-mock I2C transactions: start, warm-up until the first
//! measurement, CRC errors, invalid readings and a sensor that goes quiet.

use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
use firmware::drivers::scd41::{Scd41, Scd41Config};
use firmware::drivers::{Fault, Metric, Readings, Sensor, SensorStatus, metric};

const A: u8 = 0x62;

/// Sensirion CRC-8: polynomial 0x31, init 0xFF.
fn crc(data: &[u8]) -> u8 {
    let mut c = 0xFFu8;
    for &b in data {
        c ^= b;
        for _ in 0..8 {
            c = if c & 0x80 != 0 {
                (c << 1) ^ 0x31
            } else {
                c << 1
            };
        }
    }
    c
}

fn words(ws: &[u16]) -> Vec<u8> {
    ws.iter()
        .flat_map(|w| {
            let b = w.to_be_bytes();
            [b[0], b[1], crc(&b)]
        })
        .collect()
}

fn start() -> Vec<T> {
    vec![
        T::write(A, vec![0x3F, 0x86]), // stop (in case a previous boot left it running)
        T::write(A, vec![0x21, 0xB1]), // start periodic measurement
    ]
}

fn ready(yes: bool) -> Vec<T> {
    vec![
        T::write(A, vec![0xE4, 0xB8]),
        T::read(A, words(&[if yes { 0x8006 } else { 0x8000 }])),
    ]
}

fn measurement(co2: u16) -> Vec<T> {
    // 0x6667 -> 25.0 Cel, 0x5EB9 -> 37.0 %RH (Sensirion's conversion formulas).
    vec![
        T::write(A, vec![0xEC, 0x05]),
        T::read(A, words(&[co2, 0x6667, 0x5EB9])),
    ]
}

fn sample(s: &mut Scd41<Mock, NoopDelay>, now: u64) -> (SensorStatus, Vec<(&'static Metric, f64)>) {
    let mut r = Readings::new();
    let st = s.sample(now, &mut r);
    (
        st,
        r.as_slice().iter().map(|r| (r.metric, r.value)).collect(),
    )
}

#[test]
fn warms_up_then_reports_co2() {
    let mut expect = start();
    expect.extend(ready(false)); // at 0 ms
    expect.extend(ready(false)); // at 5 000 ms
    expect.extend(ready(true)); // at 10 000 ms
    expect.extend(measurement(612));
    expect.extend(ready(false)); // at 12 000 ms: nothing new
    let mut i2c = Mock::new(&expect);
    let mut s = Scd41::new(i2c.clone(), NoopDelay, Scd41Config::default());

    assert_eq!(
        sample(&mut s, 0),
        (
            SensorStatus::WarmingUp {
                remaining_ms: 5_500
            },
            vec![]
        )
    );
    assert_eq!(
        sample(&mut s, 5_000),
        (SensorStatus::WarmingUp { remaining_ms: 500 }, vec![])
    );
    assert_eq!(
        sample(&mut s, 10_000),
        (SensorStatus::Ok, vec![(metric!("co2"), 612.0)])
    );
    assert_eq!(sample(&mut s, 12_000), (SensorStatus::NoNewData, vec![]));
    i2c.done();
}

#[test]
fn temperature_and_humidity_on_request() {
    let mut expect = start();
    expect.extend(ready(true));
    expect.extend(measurement(800));
    let mut i2c = Mock::new(&expect);
    let cfg = Scd41Config {
        temperature_humidity: true,
        ..Scd41Config::default()
    };
    let mut s = Scd41::new(i2c.clone(), NoopDelay, cfg);
    let (st, r) = sample(&mut s, 6_000);
    assert_eq!(st, SensorStatus::Ok);
    assert_eq!(r[0], (metric!("co2"), 800.0));
    assert_eq!(r[1].0, metric!("temperature"));
    assert!((r[1].1 - 25.0).abs() < 0.01, "{:?}", r[1]);
    assert_eq!(r[2].0, metric!("relativeHumidity"));
    assert!((r[2].1 - 37.0).abs() < 0.01, "{:?}", r[2]);
    i2c.done();
}

#[test]
fn crc_error_and_zero_ppm_are_faults() {
    let mut expect = start();
    expect.extend(ready(true));
    let mut corrupt = words(&[700, 0x6667, 0x5EB9]);
    corrupt[2] ^= 0xFF;
    expect.push(T::write(A, vec![0xEC, 0x05]));
    expect.push(T::read(A, corrupt));
    expect.extend(ready(true));
    expect.extend(measurement(0));
    let mut i2c = Mock::new(&expect);
    let mut s = Scd41::new(i2c.clone(), NoopDelay, Scd41Config::default());
    assert_eq!(
        sample(&mut s, 6_000),
        (SensorStatus::Fault(Fault::Checksum), vec![])
    );
    assert_eq!(
        sample(&mut s, 11_000),
        (SensorStatus::Fault(Fault::InvalidData), vec![])
    );
    i2c.done();
}

#[test]
fn a_silent_sensor_becomes_a_fault_and_is_restarted() {
    let mut expect = start();
    expect.extend(ready(true));
    expect.extend(measurement(500));
    expect.extend(ready(false)); // 10 s: within tolerance
    expect.extend(ready(false)); // 25 s: silent for 19 s > 15 s
    expect.extend(start()); // next sample restarts periodic measurement
    expect.extend(ready(false));
    let mut i2c = Mock::new(&expect);
    let mut s = Scd41::new(i2c.clone(), NoopDelay, Scd41Config::default());
    assert_eq!(sample(&mut s, 6_000).0, SensorStatus::Ok);
    assert_eq!(sample(&mut s, 10_000).0, SensorStatus::NoNewData);
    assert_eq!(sample(&mut s, 25_000).0, SensorStatus::Fault(Fault::NoData));
    assert_eq!(
        sample(&mut s, 30_000).0,
        SensorStatus::WarmingUp {
            remaining_ms: 5_500
        }
    );
    i2c.done();
}
