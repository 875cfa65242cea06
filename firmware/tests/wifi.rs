//! The Wi-Fi access point trait as a sensor.

use firmware::drivers::wifi::{ApStats, WifiAp, WifiApSensor};
use firmware::drivers::{Fault, Readings, Sensor, SensorStatus, metric};

struct Ap(Result<ApStats, ()>);

impl WifiAp for Ap {
    type Error = ();
    fn stats(&mut self) -> Result<ApStats, ()> {
        self.0
    }
}

fn stats() -> ApStats {
    ApStats {
        clients_connected: 17,
        mean_rssi_dbm: Some(-63.5),
        channel_utilization_pct: 42.0,
        rx_bytes: 6_000_000_001,
        tx_bytes: 12_000_000_003,
        auth_failures: 4,
        uptime_s: 86_400,
    }
}

#[test]
fn reports_every_health_metric() {
    let mut s = WifiApSensor::new(Ap(Ok(stats())), 15_000);
    assert_eq!(s.interval_ms(), 15_000);
    let mut r = Readings::new();
    assert_eq!(s.sample(0, &mut r), SensorStatus::Ok);
    let got: Vec<_> = r.as_slice().iter().map(|x| (x.metric, x.value)).collect();
    assert_eq!(
        got,
        vec![
            (metric!("clientsConnected"), 17.0),
            (metric!("rssi"), -63.5),
            (metric!("channelUtilization"), 42.0),
            (metric!("rxBytes"), 6_000_000_001.0),
            (metric!("txBytes"), 12_000_000_003.0),
            (metric!("authFailures"), 4.0),
            (metric!("uptime"), 86_400.0),
        ]
    );
}

#[test]
fn no_clients_means_no_rssi_rather_than_a_made_up_one() {
    let mut st = stats();
    st.clients_connected = 0;
    st.mean_rssi_dbm = None;
    let mut s = WifiApSensor::new(Ap(Ok(st)), 15_000);
    let mut r = Readings::new();
    assert_eq!(s.sample(0, &mut r), SensorStatus::Ok);
    assert!(r.as_slice().iter().all(|x| x.metric != metric!("rssi")));
    assert_eq!(r.len(), 6);
}

#[test]
fn query_errors_and_impossible_values_are_faults() {
    let mut r = Readings::new();
    let mut s = WifiApSensor::new(Ap(Err(())), 15_000);
    assert_eq!(s.sample(0, &mut r), SensorStatus::Fault(Fault::Bus));
    let mut st = stats();
    st.channel_utilization_pct = 140.0;
    s.ap_mut().0 = Ok(st);
    assert_eq!(s.sample(0, &mut r), SensorStatus::Fault(Fault::InvalidData));
    let mut st = stats();
    st.mean_rssi_dbm = Some(12.0);
    s.ap_mut().0 = Ok(st);
    assert_eq!(s.sample(0, &mut r), SensorStatus::Fault(Fault::InvalidData));
    assert!(r.is_empty());
}
