//! The board's run-time configuration, from the semihosting command line: one
//! `key=value` per `arg=` (the first word, QEMU's program name, is skipped).
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `host` | broker IPv4 address as the guest sees it | `10.0.2.2` (QEMU user networking's host loopback) |
//! | `port` | broker TCP port | `1883` |
//! | `device` | device id, MQTT client id | `qemu-aq-0001` |
//! | `district` | district slug of the topics | `ba-dinh` |
//! | `period` | reporting period, s | `60` |
//! | `run` | stop gracefully (status `offline`, DISCONNECT) and exit 0 after this many s; `0`: never | `0` |
//! | `keepalive` | MQTT keep-alive, s | `30` |

use core::net::Ipv4Addr;

use firmware::node::Slug;

/// Longest command line read.
pub const CMDLINE_MAX: usize = 512;

/// What the image runs with.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    /// Broker address.
    pub host: Ipv4Addr,
    /// Broker port.
    pub port: u16,
    /// Device id.
    pub device: Slug,
    /// District.
    pub district: Slug,
    /// Reporting period, s.
    pub period_s: u32,
    /// Seconds before a graceful stop; 0: run forever.
    pub run_s: u32,
    /// MQTT keep-alive, s.
    pub keep_alive_s: u16,
}

impl Default for BoardConfig {
    fn default() -> Self {
        let mut device = Slug::new();
        let _ = device.push_str("qemu-aq-0001");
        let mut district = Slug::new();
        let _ = district.push_str("ba-dinh");
        Self {
            host: Ipv4Addr::new(10, 0, 2, 2),
            port: 1883,
            device,
            district,
            period_s: 60,
            run_s: 0,
            keep_alive_s: 30,
        }
    }
}

/// Why the command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError<'a> {
    /// A word is not `key=value` (beyond the first).
    NotKeyValue(&'a str),
    /// A key the board does not know.
    UnknownKey(&'a str),
    /// A value that does not parse for its key.
    BadValue(&'a str),
}

impl BoardConfig {
    /// Parses the command line; defaults fill what it does not set.
    pub fn parse(cmdline: &str) -> Result<Self, ConfigError<'_>> {
        let mut cfg = Self::default();
        for (i, word) in cmdline.split_ascii_whitespace().enumerate() {
            let Some((key, value)) = word.split_once('=') else {
                if i == 0 {
                    continue; // the program name
                }
                return Err(ConfigError::NotKeyValue(word));
            };
            let bad = || ConfigError::BadValue(word);
            match key {
                "host" => cfg.host = value.parse().map_err(|_| bad())?,
                "port" => cfg.port = value.parse().map_err(|_| bad())?,
                "device" => cfg.device = slug(value).ok_or_else(bad)?,
                "district" => cfg.district = slug(value).ok_or_else(bad)?,
                "period" => cfg.period_s = value.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?,
                "run" => cfg.run_s = value.parse().map_err(|_| bad())?,
                "keepalive" => cfg.keep_alive_s = value.parse().map_err(|_| bad())?,
                _ => return Err(ConfigError::UnknownKey(key)),
            }
        }
        Ok(cfg)
    }
}

fn slug(value: &str) -> Option<Slug> {
    let mut s = Slug::new();
    s.push_str(value).ok()?;
    Some(s)
}
