//! Routes: which decoder handles which topic. A route is a topic pattern plus a payload
//! [`Format`]; patterns are MQTT topic filters whose levels may also be named captures.
//!
//! ```text
//! city/{district}/{kind}/{device}/up   captures district, kind and device
//! tele/{device}/SENSOR                 a literal level must match exactly
//! telegraf/#                           `#` matches the rest (last level only), `+` one level
//! ```
//!
//! Captures are whole levels named `{device}`, `{district}`, `{kind}`, `{apikey}`, `{node}`
//! or `{name}`. The first route that matches a topic wins, so specific routes go first.

use serde::{Deserialize, Serialize};

use crate::error::IngestError;

/// A payload format, i.e. a decoder: defined with the other wire facts in
/// [`schemas::formats`].
pub use schemas::formats::Format;

/// One route as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Topic pattern, e.g. `tele/{device}/SENSOR`.
    pub pattern: String,
    /// Decoder for the payloads of matching topics.
    pub format: Format,
    /// UltraLight API keys this route accepts in its `{apikey}` capture. Empty (the
    /// default): any key, as the IoT Agent does without provisioned services. Otherwise a
    /// message with another key is an `unknown-apikey` dead letter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apikeys: Vec<String>,
    /// The devices this route may write: ids, or prefixes ending in `*` (`edge-*`). Empty
    /// (the default): any device no other format owns. A device outside the list is a
    /// `device-not-allowed` dead letter (per device group of a message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

impl RouteConfig {
    /// A route.
    pub fn new(pattern: impl Into<String>, format: Format) -> Self {
        Self {
            pattern: pattern.into(),
            format,
            apikeys: Vec::new(),
            devices: Vec::new(),
        }
    }

    /// The MQTT subscription filter for this route: captures become `+`.
    pub fn mqtt_filter(&self) -> String {
        self.pattern
            .split('/')
            .map(|level| if is_capture(level) { "+" } else { level })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The default routes (issue 3): the native scheme and the four foreign formats.
pub fn default_routes() -> Vec<RouteConfig> {
    vec![
        RouteConfig::new("city/{district}/{kind}/{device}/up", Format::Senml),
        RouteConfig::new("tele/{device}/SENSOR", Format::Tasmota),
        RouteConfig::new("{node}/sensor/{name}/state", Format::Esphome),
        RouteConfig::new("/{apikey}/{device}/attrs", Format::Ultralight),
        RouteConfig::new("/ul/{apikey}/{device}/attrs", Format::Ultralight),
        RouteConfig::new("telegraf/#", Format::LineProtocol),
    ]
}

/// The native `status` and `meta` channels: device state, not readings.
pub const NATIVE_STATE_FILTERS: [&str; 2] = ["city/+/+/+/status", "city/+/+/+/meta"];

/// Every MQTT filter the gateway must subscribe to for `routes`: one per route plus the
/// native `status` and `meta` channels, which update device state rather than readings.
pub fn subscription_filters(routes: &[RouteConfig]) -> Vec<String> {
    let mut filters: Vec<String> = routes.iter().map(RouteConfig::mqtt_filter).collect();
    for extra in NATIVE_STATE_FILTERS {
        if !filters.iter().any(|f| f == extra) {
            filters.push(extra.to_owned());
        }
    }
    filters
}

/// What a pattern level captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Device,
    District,
    Kind,
    ApiKey,
    Node,
    Name,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(Capture),
    /// `+`
    Any,
    /// `#`, last level only.
    Rest,
}

fn is_capture(level: &str) -> bool {
    level.starts_with('{') && level.ends_with('}')
}

/// Values captured from a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Captures<'t> {
    /// `{device}`.
    pub device: Option<&'t str>,
    /// `{district}`.
    pub district: Option<&'t str>,
    /// `{kind}`.
    pub kind: Option<&'t str>,
    /// `{apikey}`.
    pub apikey: Option<&'t str>,
    /// `{node}` (ESPHome node name).
    pub node: Option<&'t str>,
    /// `{name}` (ESPHome sensor object id).
    pub name: Option<&'t str>,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    levels: Vec<Level>,
}

impl Pattern {
    /// Compiles a pattern, rejecting unknown captures and misplaced `#`.
    pub fn parse(pattern: &str) -> Result<Self, IngestError> {
        let bad = |why: &str| IngestError::Config(format!("route pattern `{pattern}`: {why}"));
        if pattern.is_empty() {
            return Err(bad("empty pattern"));
        }
        let parts: Vec<&str> = pattern.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "+" => Level::Any,
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(bad("`#` is only allowed as the last level")),
                p if is_capture(p) => Level::Capture(match &p[1..p.len() - 1] {
                    "device" => Capture::Device,
                    "district" => Capture::District,
                    "kind" => Capture::Kind,
                    "apikey" => Capture::ApiKey,
                    "node" => Capture::Node,
                    "name" => Capture::Name,
                    other => {
                        return Err(bad(&format!(
                            "unknown capture {{{other}}} (known: device, district, kind, apikey, node, name)"
                        )));
                    }
                }),
                p if p.contains(['+', '#', '{', '}']) => {
                    return Err(bad(&format!(
                        "level `{p}`: wildcards and captures must fill a whole level"
                    )));
                }
                p => Level::Literal(p.to_owned()),
            };
            levels.push(level);
        }
        Ok(Self { levels })
    }

    /// Matches a topic, returning what it captured.
    pub fn matches<'t>(&self, topic: &'t str) -> Option<Captures<'t>> {
        let mut caps = Captures::default();
        let mut parts = topic.split('/');
        for level in &self.levels {
            if *level == Level::Rest {
                // MQTT: `a/#` also matches `a` itself; both are fine here.
                return Some(caps);
            }
            let part = parts.next()?;
            match level {
                Level::Literal(l) if l != part => return None,
                Level::Literal(_) | Level::Any | Level::Rest => {}
                Level::Capture(c) => {
                    let slot = match c {
                        Capture::Device => &mut caps.device,
                        Capture::District => &mut caps.district,
                        Capture::Kind => &mut caps.kind,
                        Capture::ApiKey => &mut caps.apikey,
                        Capture::Node => &mut caps.node,
                        Capture::Name => &mut caps.name,
                    };
                    *slot = Some(part);
                }
            }
        }
        parts.next().is_none().then_some(caps)
    }
}

/// What a route allows besides its pattern: API keys and devices.
#[derive(Debug, Clone, Default)]
pub struct RouteRules {
    apikeys: Vec<String>,
    /// Exact ids and prefixes (the `*` removed).
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl RouteRules {
    fn new(r: &RouteConfig) -> Result<Self, IngestError> {
        let bad = |why: String| IngestError::Config(format!("route `{}`: {why}", r.pattern));
        if !r.apikeys.is_empty() && !r.pattern.contains("{apikey}") {
            return Err(bad(
                "`apikeys` needs an {apikey} capture in the pattern".into()
            ));
        }
        if r.apikeys.iter().any(String::is_empty) {
            return Err(bad("`apikeys` holds an empty key".into()));
        }
        let mut rules = Self {
            apikeys: r.apikeys.clone(),
            ..Self::default()
        };
        for d in &r.devices {
            let (id, prefix) = match d.strip_suffix('*') {
                Some(p) => (p, true),
                None => (d.as_str(), false),
            };
            if id.contains('*') || (!prefix && id.is_empty()) {
                return Err(bad(format!(
                    "`devices` entry `{d}`: an id, or a prefix ending in `*`"
                )));
            }
            if prefix {
                rules.prefixes.push(id.to_owned());
            } else {
                rules.exact.push(id.to_owned());
            }
        }
        Ok(rules)
    }

    /// Whether `key` (the topic's `{apikey}`) is accepted.
    pub fn apikey_allowed(&self, key: Option<&str>) -> bool {
        self.apikeys.is_empty() || key.is_some_and(|k| self.apikeys.iter().any(|a| a == k))
    }

    /// Whether the route may write `device`.
    pub fn device_allowed(&self, device: &str) -> bool {
        (self.exact.is_empty() && self.prefixes.is_empty())
            || self.exact.iter().any(|d| d == device)
            || self.prefixes.iter().any(|p| device.starts_with(p.as_str()))
    }
}

/// A topic's route: its format, captures and rules.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'r, 't> {
    /// The route's format.
    pub format: Format,
    /// What the pattern captured.
    pub captures: Captures<'t>,
    /// The route's API keys and devices.
    pub rules: &'r RouteRules,
}

/// Routes compiled for matching, first match wins.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(Pattern, Format, RouteRules)>,
}

impl Router {
    /// Compiles the configured routes.
    pub fn new(routes: &[RouteConfig]) -> Result<Self, IngestError> {
        let routes = routes
            .iter()
            .map(|r| Ok((Pattern::parse(&r.pattern)?, r.format, RouteRules::new(r)?)))
            .collect::<Result<_, IngestError>>()?;
        Ok(Self { routes })
    }

    /// The format and captures of the first route matching `topic`.
    pub fn route<'t>(&self, topic: &'t str) -> Option<(Format, Captures<'t>)> {
        self.matched(topic).map(|m| (m.format, m.captures))
    }

    /// The first route matching `topic`, with its rules.
    pub fn matched<'r, 't>(&'r self, topic: &'t str) -> Option<Matched<'r, 't>> {
        self.routes.iter().find_map(|(p, format, rules)| {
            p.matches(topic).map(|captures| Matched {
                format: *format,
                captures,
                rules,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_match_each_format() {
        let r = Router::new(&default_routes()).unwrap();
        let (f, c) = r.route("city/hoan-kiem/airquality/aq-0001/up").unwrap();
        assert_eq!(f, Format::Senml);
        assert_eq!(c.district, Some("hoan-kiem"));
        assert_eq!(c.kind, Some("airquality"));
        assert_eq!(c.device, Some("aq-0001"));
        let (f, c) = r.route("tele/tasmota_A1B2C3/SENSOR").unwrap();
        assert_eq!((f, c.device), (Format::Tasmota, Some("tasmota_A1B2C3")));
        let (f, c) = r.route("weather-7/sensor/temperature/state").unwrap();
        assert_eq!(f, Format::Esphome);
        assert_eq!((c.node, c.name), (Some("weather-7"), Some("temperature")));
        let (f, c) = r.route("/key123/ul-9/attrs").unwrap();
        assert_eq!(
            (f, c.apikey, c.device),
            (Format::Ultralight, Some("key123"), Some("ul-9"))
        );
        let (f, c) = r.route("/ul/key123/ul-9/attrs").unwrap();
        assert_eq!((f, c.device), (Format::Ultralight, Some("ul-9")));
        let (f, _) = r.route("telegraf/host1/cpu").unwrap();
        assert_eq!(f, Format::LineProtocol);
        assert!(
            r.route("city/hoan-kiem/airquality/aq-0001/status")
                .is_none()
        );
        assert!(r.route("tele/x/STATE").is_none());
        assert!(r.route("something/else").is_none());
    }

    #[test]
    fn filters_replace_captures() {
        let f = subscription_filters(&default_routes());
        assert_eq!(
            f,
            [
                "city/+/+/+/up",
                "tele/+/SENSOR",
                "+/sensor/+/state",
                "/+/+/attrs",
                "/ul/+/+/attrs",
                "telegraf/#",
                "city/+/+/+/status",
                "city/+/+/+/meta",
            ]
        );
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        for p in ["a/#/b", "a/{nope}", "a/x+y", ""] {
            let e = Pattern::parse(p).unwrap_err();
            assert!(e.to_string().contains("route pattern"), "{p}: {e}");
        }
        let p = Pattern::parse("a/+/c").unwrap();
        assert!(p.matches("a/b/c").is_some());
        assert!(p.matches("a/b/c/d").is_none());
        assert!(p.matches("a/b").is_none());
    }

    #[test]
    fn rules_restrict_apikeys_and_devices() {
        let mut ul = RouteConfig::new("/{apikey}/{device}/attrs", Format::Ultralight);
        ul.apikeys = vec!["k1".into()];
        let mut lp = RouteConfig::new("telegraf/#", Format::LineProtocol);
        lp.devices = vec!["edge-*".into(), "host1".into()];
        let r = Router::new(&[ul, lp]).unwrap();
        let m = r.matched("/k1/ul-9/attrs").unwrap();
        assert!(m.rules.apikey_allowed(m.captures.apikey));
        let m = r.matched("/k2/ul-9/attrs").unwrap();
        assert!(!m.rules.apikey_allowed(m.captures.apikey));
        let m = r.matched("telegraf/x").unwrap();
        assert!(m.rules.device_allowed("edge-7"));
        assert!(m.rules.device_allowed("host1"));
        assert!(!m.rules.device_allowed("host10"));
        assert!(!m.rules.device_allowed("aq-0001"));
        assert!(m.rules.apikey_allowed(None), "no keys configured: any");
        let mut bad = RouteConfig::new("tele/{device}/SENSOR", Format::Tasmota);
        bad.apikeys = vec!["k".into()];
        assert!(
            Router::new(&[bad])
                .unwrap_err()
                .to_string()
                .contains("apikey")
        );
        let mut bad = RouteConfig::new("telegraf/#", Format::LineProtocol);
        bad.devices = vec!["a*b".into()];
        assert!(Router::new(&[bad]).is_err());
    }

    #[test]
    fn formats_parse_from_config_names() {
        #[derive(Deserialize)]
        struct W {
            f: Format,
        }
        let w: W = serde_json::from_str(r#"{"f":"line-protocol"}"#).unwrap();
        assert_eq!(w.f, Format::LineProtocol);
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
    }
}
