//! Build-time configuration of the ESP32-C3 air-quality node.
//!
//! Everything a board needs to find its network and name itself comes from environment
//! variables at build time (one image per device, as ESPHome does), checked here so that
//! a typo fails the build instead of a board in the street:
//!
//! | variable          | meaning                               | default           |
//! |-------------------|---------------------------------------|-------------------|
//! | `AQ_WIFI_SSID`     | Wi-Fi network (WPA2 personal or open) | `city-iot`        |
//! | `AQ_WIFI_PASSWORD` | its password, empty for an open one   | (empty)           |
//! | `AQ_BROKER_HOST`   | broker IPv4 address or DNS name       | `192.168.1.10`    |
//! | `AQ_BROKER_PORT`   | broker TCP port                       | `1883`            |
//! | `AQ_MQTT_USER`     | broker user name, empty for none      | (empty)           |
//! | `AQ_MQTT_PASSWORD` | broker password, empty for none       | (empty)           |
//! | `AQ_DEVICE_ID`     | device slug (`[a-z0-9_-]`, 1..=64)    | `aq-c3-0001`      |
//! | `AQ_DISTRICT`      | district slug                         | `hoan-kiem`       |
//! | `AQ_PERIOD_S`      | seconds per pack                      | `60`              |
//! | `AQ_LAT`, `AQ_LON` | position in degrees, for `meta`       | (empty: unknown)  |
//! | `AQ_NTP_SERVER`    | SNTP server (IPv4 or name), empty: none | `pool.ntp.org`  |
//!
//! The checked values reach the code as `AQ_*` compile-time environment variables.

use std::env;

fn main() {
    let vars = [
        ("AQ_WIFI_SSID", "city-iot"),
        ("AQ_WIFI_PASSWORD", ""),
        ("AQ_BROKER_HOST", "192.168.1.10"),
        ("AQ_BROKER_PORT", "1883"),
        ("AQ_MQTT_USER", ""),
        ("AQ_MQTT_PASSWORD", ""),
        ("AQ_DEVICE_ID", "aq-c3-0001"),
        ("AQ_DISTRICT", "hoan-kiem"),
        ("AQ_PERIOD_S", "60"),
        ("AQ_LAT", ""),
        ("AQ_LON", ""),
        ("AQ_NTP_SERVER", "pool.ntp.org"),
    ];
    for (name, default) in vars {
        println!("cargo:rerun-if-env-changed={name}");
        let value = env::var(name).unwrap_or_else(|_| default.to_owned());
        if let Err(why) = check(name, &value) {
            panic!("{name}={value:?}: {why}");
        }
        println!("cargo:rustc-env={name}={value}");
    }
}

fn check(name: &str, value: &str) -> Result<(), String> {
    match name {
        "AQ_WIFI_SSID" if value.is_empty() || value.len() > 32 => {
            Err("an SSID has 1 to 32 bytes".into())
        }
        "AQ_WIFI_PASSWORD" if !value.is_empty() && !(8..=64).contains(&value.len()) => {
            Err("a WPA2 passphrase has 8 to 63 characters (or 64 hex digits)".into())
        }
        "AQ_BROKER_HOST" if value.is_empty() || value.len() > 253 => {
            Err("give an IPv4 address or a DNS name".into())
        }
        "AQ_BROKER_PORT" => match value.parse::<u16>() {
            Ok(p) if p > 0 => Ok(()),
            _ => Err("a TCP port is 1..=65535".into()),
        },
        "AQ_PERIOD_S" => match value.parse::<u32>() {
            Ok(p) if (1..=86_400).contains(&p) => Ok(()),
            _ => Err("seconds per pack: 1..=86400".into()),
        },
        "AQ_LAT" | "AQ_LON" if !value.is_empty() => {
            let limit = if name == "AQ_LAT" { 90.0 } else { 180.0 };
            match value.parse::<f64>() {
                Ok(v) if v.abs() <= limit => Ok(()),
                _ => Err(format!("degrees within +-{limit}, or empty")),
            }
        }
        "AQ_DEVICE_ID" | "AQ_DISTRICT" => {
            let ok = (1..=64).contains(&value.len())
                && value.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if ok {
                Ok(())
            } else {
                Err("a topic slug is 1 to 64 bytes of a-z, 0-9, '-' and '_'".into())
            }
        }
        _ => Ok(()),
    }
}
