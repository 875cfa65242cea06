//! Faults on demand: the `--faults` specification and what each rate means.
//!
//! ```text
//! --faults stuck=0.01,spike=0.001,dropout=0.005,reboot=0.0005,skew=0.02,outage=0.001,dup=0.001,malformed=0.0005
//! ```
//!
//! | name        | unit of the rate          | effect |
//! |-------------|---------------------------|--------|
//! | `stuck`     | per reading               | the sensor channel freezes at its last value for 10-100 periods |
//! | `spike`     | per reading               | the value is multiplied by 3-20 (may leave the catalog range) |
//! | `dropout`   | per reading               | the reading is missing from its pack |
//! | `reboot`    | per pack                  | the device restarts: connection dropped, `seq` restarts at 0, counters reset, backlog lost |
//! | `skew`      | share of devices          | the device clock is off by 10-900 s either way, for the whole run |
//! | `outage`    | per pack                  | the Wi-Fi link drops for 3-30 periods; packs queue in a bounded backlog and flush in a burst on reconnect |
//! | `dup`       | per pack                  | the pack is published twice |
//! | `malformed` | per pack                  | the payload is garbled (truncated or corrupted bytes) |

use std::fmt;
use std::str::FromStr;

/// Rates of every fault; all zero by default (a healthy fleet).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// Per reading: sensor freezes.
    pub stuck: f64,
    /// Per reading: value spikes.
    pub spike: f64,
    /// Per reading: reading missing.
    pub dropout: f64,
    /// Per pack: device reboots.
    pub reboot: f64,
    /// Share of devices with a skewed clock.
    pub skew: f64,
    /// Per pack: Wi-Fi outage starts.
    pub outage: f64,
    /// Per pack: published twice.
    pub dup: f64,
    /// Per pack: payload garbled.
    pub malformed: f64,
}

impl FaultRates {
    /// True when no fault is enabled.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// A bad `--faults` specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// An entry is not `name=rate`.
    #[error("fault entry {0:?} is not name=rate")]
    Syntax(String),
    /// An unknown fault name.
    #[error(
        "unknown fault {0:?} (known: stuck, spike, dropout, reboot, skew, outage, dup, malformed)"
    )]
    Unknown(String),
    /// A rate that is not a number in [0, 1].
    #[error("rate of {0:?} must be a number between 0 and 1")]
    Rate(String),
}

impl FromStr for FaultRates {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = FaultRates::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, rate) = entry
                .split_once('=')
                .ok_or_else(|| FaultSpecError::Syntax(entry.into()))?;
            let rate: f64 = rate
                .trim()
                .parse()
                .map_err(|_| FaultSpecError::Rate(name.into()))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(FaultSpecError::Rate(name.into()));
            }
            let slot = match name.trim() {
                "stuck" => &mut f.stuck,
                "spike" => &mut f.spike,
                "dropout" => &mut f.dropout,
                "reboot" => &mut f.reboot,
                "skew" => &mut f.skew,
                "outage" => &mut f.outage,
                "dup" => &mut f.dup,
                "malformed" => &mut f.malformed,
                other => return Err(FaultSpecError::Unknown(other.into())),
            };
            *slot = rate;
        }
        Ok(f)
    }
}

impl fmt::Display for FaultRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stuck={},spike={},dropout={},reboot={},skew={},outage={},dup={},malformed={}",
            self.stuck,
            self.spike,
            self.dropout,
            self.reboot,
            self.skew,
            self.outage,
            self.dup,
            self.malformed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let f: FaultRates = "stuck=0.01, dup=0.5,malformed=1".parse().unwrap();
        assert_eq!(f.stuck, 0.01);
        assert_eq!(f.dup, 0.5);
        assert_eq!(f.malformed, 1.0);
        assert_eq!(f.reboot, 0.0);
        assert!(matches!(
            "bogus=0.1".parse::<FaultRates>(),
            Err(FaultSpecError::Unknown(_))
        ));
        assert!(matches!(
            "stuck=2".parse::<FaultRates>(),
            Err(FaultSpecError::Rate(_))
        ));
        assert!(matches!(
            "stuck".parse::<FaultRates>(),
            Err(FaultSpecError::Syntax(_))
        ));
        assert!("".parse::<FaultRates>().unwrap().is_none());
        let round: FaultRates = f.to_string().parse().unwrap();
        assert_eq!(round, f);
    }
}
