//! Health of a public Wi-Fi access point, read through a trait the board implements.
//!
//! The board inside the access point knows how to ask its radio (vendor SDK, `hostapd`
//! control socket, SNMP, a UART protocol): it implements [`WifiAp`] and the node samples
//! it through [`WifiApSensor`] like any other sensor.

use super::{Fault, Readings, Sensor, SensorStatus, metric};

/// One snapshot of an access point's state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ApStats {
    /// Clients currently associated.
    pub clients_connected: u16,
    /// Mean RSSI of the associated clients in dBm; `None` with no clients.
    pub mean_rssi_dbm: Option<f32>,
    /// Share of airtime the channel was busy, 0..=100 %.
    pub channel_utilization_pct: f32,
    /// Bytes received since the counter started.
    pub rx_bytes: u64,
    /// Bytes sent since the counter started.
    pub tx_bytes: u64,
    /// Failed client authentications since the access point booted.
    pub auth_failures: u32,
    /// Seconds since the access point booted.
    pub uptime_s: u32,
}

/// An access point the board can query.
pub trait WifiAp {
    /// Error of the query.
    type Error;
    /// Reads a snapshot. Must not block for long (it runs inside the node's poll).
    fn stats(&mut self) -> Result<ApStats, Self::Error>;
}

/// Default sampling interval of an access point: 15 000 ms, several samples of client
/// count and utilisation per minute-long period.
pub const DEFAULT_INTERVAL_MS: u32 = 15_000;

/// [`WifiAp`] as a [`Sensor`].
#[derive(Debug)]
pub struct WifiApSensor<A> {
    ap: A,
    interval_ms: u32,
}

impl<A: WifiAp> WifiApSensor<A> {
    /// Samples `ap` every `interval_ms` (see [`DEFAULT_INTERVAL_MS`]).
    pub fn new(ap: A, interval_ms: u32) -> Self {
        Self { ap, interval_ms }
    }

    /// The access point, e.g. to update a simulated one.
    pub fn ap_mut(&mut self) -> &mut A {
        &mut self.ap
    }
}

impl<A: WifiAp> Sensor for WifiApSensor<A> {
    fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    fn sample(&mut self, _now_ms: u64, out: &mut Readings) -> SensorStatus {
        let s = match self.ap.stats() {
            Ok(s) => s,
            Err(_) => return SensorStatus::Fault(Fault::Bus),
        };
        let util = s.channel_utilization_pct;
        let rssi_ok = s.mean_rssi_dbm.is_none_or(|r| (-120.0..=0.0).contains(&r));
        if !(0.0..=100.0).contains(&util) || !rssi_ok {
            return SensorStatus::Fault(Fault::InvalidData);
        }
        out.push(metric!("clientsConnected"), f64::from(s.clients_connected));
        if let Some(rssi) = s.mean_rssi_dbm {
            out.push(metric!("rssi"), f64::from(rssi));
        }
        out.push(metric!("channelUtilization"), f64::from(util));
        // u64 -> f64 is exact below 2^53 bytes (8 PiB), far beyond a counter's wrap.
        out.push(metric!("rxBytes"), s.rx_bytes as f64);
        out.push(metric!("txBytes"), s.tx_bytes as f64);
        out.push(metric!("authFailures"), f64::from(s.auth_failures));
        out.push(metric!("uptime"), f64::from(s.uptime_s));
        SensorStatus::Ok
    }
}
