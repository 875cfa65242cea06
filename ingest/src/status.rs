//! Device status for every format: each ecosystem's own availability topic (its last will),
//! mapped to the device's `online`/`offline` status as the native `status` channel is.
//!
//! | format | topic (default route) | payloads |
//! |---|---|---|
//! | `senml` | `city/{district}/{kind}/{device}/status` (built in) | `online` / `offline` |
//! | `tasmota` | `tele/{device}/LWT` | `Online` / `Offline` (Tasmota's retained last will) |
//! | `esphome` | `{node}/status` | `online` / `offline` (ESPHome's birth and will messages) |
//!
//! Devices of formats without one (UltraLight, line protocol) have no status: the API
//! counts them online while they report within their stale window. A status names its
//! device through the topic, like the readings routes, and is held to the same identity
//! rules (a device belongs to the format that reported it first, or to the registry's).
//! Payloads are compared exactly, case included; anything else is a `malformed-payload`
//! dead letter.

use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::route::{Captures, Format, Pattern};

/// One status route as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRouteConfig {
    /// Topic pattern with a `{device}` or `{node}` capture, e.g. `tele/{device}/LWT`.
    pub pattern: String,
    /// The format whose devices publish it (the owner check uses it).
    pub format: Format,
    /// The payload meaning online.
    pub online: String,
    /// The payload meaning offline.
    pub offline: String,
}

impl StatusRouteConfig {
    /// A status route.
    pub fn new(pattern: &str, format: Format, online: &str, offline: &str) -> Self {
        Self {
            pattern: pattern.to_owned(),
            format,
            online: online.to_owned(),
            offline: offline.to_owned(),
        }
    }
}

/// The default status routes: Tasmota's LWT and ESPHome's status topic.
pub fn default_status_routes() -> Vec<StatusRouteConfig> {
    vec![
        StatusRouteConfig::new("tele/{device}/LWT", Format::Tasmota, "Online", "Offline"),
        StatusRouteConfig::new("{node}/status", Format::Esphome, "online", "offline"),
    ]
}

/// The MQTT filters of the status routes (captures become `+`).
pub fn status_filters(routes: &[StatusRouteConfig]) -> Vec<String> {
    routes
        .iter()
        .map(|r| crate::route::RouteConfig::new(r.pattern.clone(), r.format).mqtt_filter())
        .collect()
}

/// What a status message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusMatch<'t> {
    /// The route's format.
    pub format: Format,
    /// The device as captured (not yet normalised).
    pub device: &'t str,
    /// `Some(online)`, or `None` for a payload that is neither of the route's.
    pub online: Option<bool>,
}

/// The compiled status routes.
#[derive(Debug, Clone, Default)]
pub struct StatusRouter {
    routes: Vec<(Pattern, StatusRouteConfig)>,
}

impl StatusRouter {
    /// Compiles the routes; each needs a `{device}` or `{node}` capture.
    pub fn new(routes: &[StatusRouteConfig]) -> Result<Self, IngestError> {
        let mut out = Vec::with_capacity(routes.len());
        for r in routes {
            let p = Pattern::parse(&r.pattern)?;
            if !r.pattern.contains("{device}") && !r.pattern.contains("{node}") {
                return Err(IngestError::Config(format!(
                    "status route `{}`: needs a {{device}} or {{node}} capture",
                    r.pattern
                )));
            }
            if r.online.is_empty() || r.offline.is_empty() || r.online == r.offline {
                return Err(IngestError::Config(format!(
                    "status route `{}`: `online` and `offline` must be two different payloads",
                    r.pattern
                )));
            }
            out.push((p, r.clone()));
        }
        Ok(Self { routes: out })
    }

    /// The first status route matching `topic`, and what `payload` says on it.
    pub fn matched<'t>(&self, topic: &'t str, payload: &[u8]) -> Option<StatusMatch<'t>> {
        self.routes.iter().find_map(|(p, r)| {
            let Captures { device, node, .. } = p.matches(topic)?;
            let device = device.or(node)?;
            let online = if payload == r.online.as_bytes() {
                Some(true)
            } else if payload == r.offline.as_bytes() {
                Some(false)
            } else {
                None
            };
            Some(StatusMatch {
                format: r.format,
                device,
                online,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_read_tasmota_and_esphome_wills() {
        let r = StatusRouter::new(&default_status_routes()).unwrap();
        let m = r.matched("tele/tasmota_A1B2C3/LWT", b"Offline").unwrap();
        assert_eq!(
            (m.format, m.device, m.online),
            (Format::Tasmota, "tasmota_A1B2C3", Some(false))
        );
        let m = r.matched("weather-7/status", b"online").unwrap();
        assert_eq!(
            (m.format, m.device, m.online),
            (Format::Esphome, "weather-7", Some(true))
        );
        assert_eq!(
            r.matched("tele/x/LWT", b"online").unwrap().online,
            None,
            "Tasmota writes `Online`; the case is part of the payload"
        );
        assert!(r.matched("city/a/airquality/b/status", b"online").is_none());
        assert!(r.matched("tele/x/SENSOR", b"{}").is_none());
        assert_eq!(
            status_filters(&default_status_routes()),
            ["tele/+/LWT", "+/status"]
        );
    }

    #[test]
    fn bad_status_routes_are_config_errors() {
        for r in [
            StatusRouteConfig::new("a/b", Format::Tasmota, "1", "0"),
            StatusRouteConfig::new("a/{device}", Format::Tasmota, "x", "x"),
            StatusRouteConfig::new("a/{nope}", Format::Tasmota, "1", "0"),
        ] {
            assert!(StatusRouter::new(&[r]).is_err());
        }
    }
}
