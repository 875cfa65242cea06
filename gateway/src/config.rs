//! The service's configuration: the TOML file's shape with every key's
//! default documented where it is defined, the precedence of command-line
//! flags and `GATEWAY_*` environment variables over the file, and the checks
//! that turn a bad value into an error naming its key before anything starts.
//!
//! Precedence, highest first: flag, environment variable (clap reads both),
//! file (`--config`), built-in default. `gateway.toml` at the repository root
//! is the commented example of every key.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The `[ingest]` table: decoding routes, validation limits, retention and
/// outbox bounds, owned and documented by the `ingest` crate.
pub type IngestSection = ingest::IngestConfig;

/// A value that must never reach a log line or a `Debug` dump (passwords,
/// tokens).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The whole configuration file. Every table and key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the SQLite state (hot tier, outbox, dead letters, device
    /// state). Created if missing. Default: `./data`.
    pub data_dir: PathBuf,
    /// On SIGINT/SIGTERM: how long to wait for the in-flight batch to commit
    /// and the outbox to drain to the store before exiting. Default: 10 s.
    pub shutdown_timeout_s: u64,
    /// `[mqtt]`: the broker connection and subscription.
    pub mqtt: MqttConfig,
    /// `[batch]`: group-commit bounds.
    pub batch: BatchConfig,
    /// `[store]`: the external time-series store (InfluxDB v2 write API).
    pub store: StoreConfig,
    /// `[http]`: the HTTP server (`/metrics`, `/health`, the API and the dashboard).
    pub http: HttpConfig,
    /// `[broker]`: the optional in-process MQTT broker.
    pub broker: BrokerConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[metrics]`: the Prometheus exporter.
    pub metrics: MetricsConfig,
    /// `[ingest]`: routes, validation, retention, outbox (see the `ingest` crate).
    pub ingest: IngestSection,
    /// `[alerts]`: alert rules, history and notifications (see `crate::alerts`).
    pub alerts: AlertsConfig,
    /// `[public]`: the public AQI feed over MQTT and HTTP (see `crate::public`).
    pub public: PublicConfig,
    /// `[query]`: where the API, the dashboard and `gateway query` read from.
    pub query: QueryConfig,
}

/// `[query]`: where the API, the dashboard and `gateway query` read from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// `auto`: the store when `mqtt.share_group` and `store.url` are both set (each
    /// gateway of a group receives a part of the city; the store holds all of it), else
    /// the hot tier. `hot-tier`: this gateway's own state. `store`: the store's query
    /// API (needs `store.url`). Default: `auto`.
    pub source: QuerySource,
    /// Store source: how far back a device is still listed, and its first sight,
    /// status and meta looked for, seconds. Default: 2592000 (30 days).
    pub device_window_s: u64,
    /// Store source: the window of the merged health counts (gaps, duplicates,
    /// dropped readings), seconds. Default: 86400 (24 hours).
    pub health_window_s: u64,
    /// Store source: the window of the fast "last seen" query; devices silent for
    /// longer get a second query over the device window. Seconds. Default: 900.
    pub recent_window_s: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            source: QuerySource::Auto,
            device_window_s: 30 * 86_400,
            health_window_s: 86_400,
            recent_window_s: 900,
        }
    }
}

/// `query.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QuerySource {
    /// The store in a share group with a store, else the hot tier.
    Auto,
    /// This gateway's hot tier and device state.
    HotTier,
    /// The store's Prometheus-compatible query API.
    Store,
}

/// The `[public]` table, defined with the feed.
pub use crate::public::PublicConfig;

/// The `[alerts]` table, defined with the alerting code.
pub use crate::alerts::config::AlertsConfig;

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            shutdown_timeout_s: 10,
            mqtt: MqttConfig::default(),
            batch: BatchConfig::default(),
            store: StoreConfig::default(),
            http: HttpConfig::default(),
            broker: BrokerConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            ingest: IngestSection::default(),
            alerts: AlertsConfig::default(),
            public: PublicConfig::default(),
            query: QueryConfig::default(),
        }
    }
}

impl Config {
    /// Whether the API reads the store (else the hot tier): `query.source`, with `auto`
    /// resolved.
    pub fn query_from_store(&self) -> bool {
        match self.query.source {
            QuerySource::Store => true,
            QuerySource::HotTier => false,
            QuerySource::Auto => self.mqtt.share_group.is_some() && self.store.url.is_some(),
        }
    }

    /// The store query source's settings: the store's URL and credentials (the
    /// forwarder's: `store.username`/`password`, else the URL's user info), the `[query]`
    /// windows.
    pub fn store_query(&self) -> Option<crate::api::store::StoreQueryConfig> {
        let url = self.store.url.as_ref()?;
        let q = &self.query;
        Some(crate::api::store::StoreQueryConfig {
            username: self.store.username.clone(),
            password: self.store.password.as_ref().map(|p| p.expose().to_owned()),
            timeout: Duration::from_secs(self.store.timeout_s.max(1)),
            device_window: Duration::from_secs(q.device_window_s),
            health_window: Duration::from_secs(q.health_window_s),
            recent_window: Duration::from_secs(q.recent_window_s),
            ..crate::api::store::StoreQueryConfig::new(url.clone())
        })
    }
}

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker URL, `mqtt://host:port` (plain, default port 1883) or
    /// `mqtts://host:port` (TLS, default port 8883). Default:
    /// `mqtt://127.0.0.1:1883`, or the embedded broker's address when
    /// `broker.embedded` is set.
    pub url: Option<String>,
    /// Username for the broker. Default: none (anonymous).
    pub username: Option<String>,
    /// Password for the broker; never logged. Default: none.
    pub password: Option<Secret>,
    /// MQTT client id. It must be fixed across restarts: the broker keeps the
    /// persistent session (subscriptions and unacknowledged messages) under
    /// it. Default: `gateway-<hostname>`.
    pub client_id: Option<String>,
    /// Shared-subscription group: subscribe through `$share/<group>/<filter>`
    /// so that several gateways split the traffic. Default: none (every
    /// message to this gateway).
    pub share_group: Option<String>,
    /// Keep-alive interval in seconds. Default: 30.
    pub keep_alive_s: u64,
    /// Session expiry in seconds: how long the broker keeps the session and
    /// queues messages while the gateway is away. Default: 86400 (1 day).
    pub session_expiry_s: u32,
    /// Messages the gateway itself publishes (alert notifications, the public AQI
    /// feed) waiting for the connection, at most; beyond it they are dropped and
    /// counted (`mqtt_publish_dropped_total`), never waited for. Default: 1000.
    pub publish_queue: usize,
    /// Receive Maximum sent to the broker: the most unacknowledged QoS 1
    /// messages in flight to this gateway, and so the largest possible
    /// batch. Default: 1000.
    pub receive_maximum: u16,
    /// Largest MQTT packet accepted from the broker; the broker drops larger
    /// ones itself. Keep it above `ingest.max_payload_bytes` so that
    /// oversized payloads arrive and become dead letters. Default: 1048576.
    pub max_packet_bytes: u32,
    /// First reconnect delay in milliseconds; doubles up to
    /// `reconnect_max_ms`, with jitter. Default: 250.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay in milliseconds. Default: 30000.
    pub reconnect_max_ms: u64,
    /// PEM file of the CA certificate(s) that sign the broker's certificate
    /// (TLS only). Default: none (TLS then needs `ca_file`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS. Default: none.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`. Default: none.
    pub client_key: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: None,
            username: None,
            password: None,
            client_id: None,
            share_group: None,
            keep_alive_s: 30,
            session_expiry_s: 86_400,
            publish_queue: 1000,
            receive_maximum: 1000,
            max_packet_bytes: 1024 * 1024,
            reconnect_min_ms: 250,
            reconnect_max_ms: 30_000,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// `[batch]`: the message log's group commit. What arrived while the previous
/// commit ran (or during `linger_us`) is appended and made durable with one
/// fdatasync, then acknowledged; these bound one commit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most messages in one log commit, and in one state transaction of the
    /// applier. Default: 1000.
    pub max_messages: usize,
    /// Most payload bytes in one log commit. Default: 4194304 (4 MiB).
    pub max_bytes: usize,
    /// After the first message of a quiet spell, how long to wait for more
    /// before the commit, in microseconds: at a steady rate, one fdatasync
    /// per `linger_us` instead of one per message. Adds at most this much to
    /// the time to acknowledge. Default: 2000 (2 ms).
    pub linger_us: u64,
    /// Seconds between hot-tier and dead-letter retention passes.
    /// Default: 300.
    pub retention_interval_s: u64,
    /// Most messages received and not yet appended to the log, held in
    /// memory. When the log's disk is slower than the broker, the gateway
    /// stops reading from the broker's connection at this bound (TCP
    /// back-pressure) instead of buffering more. Default: 20000.
    pub max_buffered_messages: usize,
    /// Most bytes (topics and payloads) received and not yet appended to the
    /// log, held in memory: the same back-pressure, bounded in bytes.
    /// Default: 67108864 (64 MiB).
    pub max_buffered_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_bytes: 4 * 1024 * 1024,
            linger_us: 2000,
            retention_interval_s: 300,
            max_buffered_messages: 20_000,
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[store]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Base URL of an InfluxDB v2 write API (InfluxDB, VictoriaMetrics, ...),
    /// e.g. `http://127.0.0.1:8428`. User info in it
    /// (`http://user:pass@host:8428`) is taken as Basic credentials and never
    /// logged. Default: none: hot tier only, no forwarding.
    pub url: Option<String>,
    /// Organisation. Default: `city`.
    pub org: String,
    /// Bucket. Default: `telemetry`.
    pub bucket: String,
    /// API token; never logged. Default: none.
    pub token: Option<Secret>,
    /// Basic credentials' user name, for a store behind VictoriaMetrics'
    /// `-httpAuth.*` or a proxy (else the URL's user info). Default: none.
    pub username: Option<String>,
    /// Basic credentials' password; never logged. Default: none.
    pub password: Option<Secret>,
    /// Per-request timeout in seconds. Default: 10.
    pub timeout_s: u64,
    /// After new readings reach the outbox, wait this long for more before the
    /// write, in milliseconds: fewer, larger requests. Adds at most this to the
    /// time to the store. Default: 10.
    pub linger_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            org: "city".into(),
            bucket: "telemetry".into(),
            token: None,
            username: None,
            password: None,
            timeout_s: 10,
            linger_ms: 10,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_deref().map(url_for_logs))
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &self.token)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("timeout_s", &self.timeout_s)
            .field("linger_ms", &self.linger_ms)
            .finish()
    }
}

pub use ingest::forward::url_for_logs;

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of the HTTP server. Default: `127.0.0.1:8080`.
    pub listen: String,
    /// Bearer tokens accepted by the query API, the dashboard (and `/metrics` with
    /// `metrics_require_token`); several allow rotation. Never logged. With none (here
    /// and in `token_file`) the API is open, which is refused on a non-loopback
    /// `listen` unless `insecure`. Default: none.
    pub tokens: Vec<Secret>,
    /// File of more tokens, one per line; blank lines and lines starting with `#` are
    /// ignored. Read at start. Default: none.
    pub token_file: Option<PathBuf>,
    /// Whether `/metrics` needs a token too (when tokens are configured).
    /// Default: false (Prometheus scrapes it without credentials).
    pub metrics_require_token: bool,
    /// Allow a non-loopback `listen` with no token: for a gateway behind a proxy that
    /// authenticates. Default: false.
    pub insecure: bool,
    /// Threads (each with its read-only SQLite connection) that answer API queries,
    /// apart from every other blocking work. Default: 4.
    pub api_read_threads: usize,
    /// API queries waiting for a free read thread beyond which a request is answered
    /// 503 at once instead of queueing. Default: 64.
    pub api_read_queue: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tokens: Vec::new(),
            token_file: None,
            metrics_require_token: false,
            insecure: false,
            api_read_threads: 4,
            api_read_queue: 64,
        }
    }
}

/// Shortest token accepted: a short one is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// Checks one token: long enough, and only visible ASCII (it travels in a header).
fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a token is shorter than {MIN_TOKEN_LEN} characters (use e.g. `openssl rand -hex 32`)"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token has a character other than visible ASCII \
                    (no spaces, commas in GATEWAY_HTTP_TOKEN separate tokens)"
            .into());
    }
    Ok(())
}

/// The tokens of a token file: one per line, `#` comments and blank lines ignored.
pub fn parse_token_file(text: &str) -> Vec<Secret> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .collect()
}

/// `[broker]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Run an MQTT broker inside the gateway on this address (one-box use)
    /// and connect to it. Default: none.
    pub embedded: Option<String>,
    /// Mosquitto password file of the embedded broker, as `gateway devices
    /// provision` writes it. When set, clients must log in (`allow_anonymous
    /// false`) and the gateway logs in with `mqtt.username` and
    /// `mqtt.password` (the registry's `[gateway]` account). Default: none.
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file of the embedded broker (`gateway devices
    /// provision`); needs `password_file`. Default: none.
    pub acl_file: Option<PathBuf>,
    /// Accept clients without credentials although the embedded broker
    /// listens on a non-loopback address (or next to a password file).
    /// Without a password file, a non-loopback embedded broker refuses to
    /// start unless this is true; a loopback one always accepts anonymous
    /// clients. Default: false.
    pub allow_anonymous: bool,
}

/// How the embedded broker authenticates clients, as checked by
/// [`Config::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAuth {
    /// `password_file` of the generated mosquitto.conf.
    pub password_file: Option<PathBuf>,
    /// `acl_file` of the generated mosquitto.conf.
    pub acl_file: Option<PathBuf>,
    /// `allow_anonymous` of the generated mosquitto.conf.
    pub allow_anonymous: bool,
}

impl BrokerAuth {
    /// Anonymous access, no files: the loopback one-box default.
    pub fn anonymous() -> Self {
        Self {
            password_file: None,
            acl_file: None,
            allow_anonymous: true,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. Default: `text`.
    pub format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` overrides it. Default: `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A counter not updated for this long leaves `/metrics` (and starts again from 0
    /// when it is next updated, which Prometheus reads as a counter reset). This bounds
    /// the per-device series (`device_gaps_total{device}`, ...) under a flood of device
    /// ids. 0 keeps every counter forever. Default: 3600.
    pub idle_timeout_s: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            idle_timeout_s: 3600,
        }
    }
}

/// A configuration value that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type; the
    /// parser's message quotes the offending line and key.
    #[error("invalid config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// A value is out of its domain.
    #[error("invalid configuration: `{key}`{}: {message}", flag_note(.flag))]
    Invalid {
        /// The key in the file, e.g. `mqtt.url`.
        key: &'static str,
        /// The flag and environment variable that set it too, if any.
        flag: Option<&'static str>,
        /// What is wrong.
        message: String,
    },
    /// A value of a list entry is out of its domain, e.g. `alerts.rules[2].for_s`.
    #[error("invalid configuration: `{key}`: {message}")]
    InvalidEntry {
        /// The full key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn flag_note(flag: &Option<&'static str>) -> String {
    flag.map(|f| format!(" ({f})")).unwrap_or_default()
}

fn invalid(
    key: &'static str,
    flag: Option<&'static str>,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        flag,
        message: message.into(),
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is the parser's message.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        // The parser's own errors quote the line; the `[ingest]` table is
        // the ingest crate's and tolerates unknown keys, so a second pass
        // names any key that would otherwise be ignored silently.
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        let value: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut unknown = Vec::new();
        let _: Self = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
            .map_err(|e| e.to_string())?;
        if let Some(key) = unknown.first() {
            return Err(format!(
                "unknown key `{key}`: no such setting (see gateway.toml)"
            ));
        }
        Ok(config)
    }

    /// Checks every value and derives what the service needs. Call after
    /// applying command-line overrides.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let embedded = match &self.broker.embedded {
            None => None,
            Some(addr) => Some(parse_addr(addr).map_err(|m| {
                invalid(
                    "broker.embedded",
                    Some("--embedded-broker, GATEWAY_EMBEDDED_BROKER"),
                    m,
                )
            })?),
        };
        let broker_auth = match embedded {
            Some(addr) => Some(self.broker_auth(addr)?),
            None => None,
        };
        let url = match (&self.mqtt.url, embedded) {
            (Some(url), _) => url.clone(),
            (None, Some(addr)) => {
                let host = if addr.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    addr.ip().to_string()
                };
                format!("mqtt://{host}:{}", addr.port())
            }
            (None, None) => "mqtt://127.0.0.1:1883".to_owned(),
        };
        let broker = BrokerUrl::parse(&url)
            .map_err(|m| invalid("mqtt.url", Some("--mqtt, GATEWAY_MQTT"), m))?;

        let m = &self.mqtt;
        if broker.tls && m.ca_file.is_none() {
            return Err(invalid(
                "mqtt.ca_file",
                Some("--ca-file, GATEWAY_CA_FILE"),
                "an mqtts:// broker needs the CA certificate that signs it",
            ));
        }
        if !broker.tls && (m.ca_file.is_some() || m.client_cert.is_some()) {
            return Err(invalid(
                "mqtt.url",
                Some("--mqtt, GATEWAY_MQTT"),
                "TLS files are set but the URL is mqtt://; use mqtts:// for TLS",
            ));
        }
        for (key, flag, path) in [
            ("mqtt.ca_file", "--ca-file, GATEWAY_CA_FILE", &m.ca_file),
            (
                "mqtt.client_cert",
                "--client-cert, GATEWAY_CLIENT_CERT",
                &m.client_cert,
            ),
            (
                "mqtt.client_key",
                "--client-key, GATEWAY_CLIENT_KEY",
                &m.client_key,
            ),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(invalid(
                    key,
                    Some(flag),
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        if m.client_cert.is_some() != m.client_key.is_some() {
            return Err(invalid(
                "mqtt.client_key",
                Some("--client-key, GATEWAY_CLIENT_KEY"),
                "client_cert and client_key go together: set both or neither",
            ));
        }
        if m.password.is_some() && m.username.is_none() {
            return Err(invalid(
                "mqtt.username",
                Some("--mqtt-username, GATEWAY_MQTT_USERNAME"),
                "a password is set without a username",
            ));
        }
        let client_id = match &m.client_id {
            Some(id) => id.clone(),
            None => default_client_id(),
        };
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(invalid(
                "mqtt.client_id",
                Some("--client-id, GATEWAY_CLIENT_ID"),
                "must be 1 to 128 characters",
            ));
        }
        if let Some(group) = &m.share_group
            && (group.is_empty() || group.contains(['/', '+', '#']))
        {
            return Err(invalid(
                "mqtt.share_group",
                Some("--share-group, GATEWAY_SHARE_GROUP"),
                "must be non-empty and contain no '/', '+' or '#'",
            ));
        }
        if self.query.source == QuerySource::Store && self.store.url.is_none() {
            return Err(invalid(
                "query.source",
                Some("--query-source, GATEWAY_QUERY_SOURCE"),
                "`store` needs store.url (--store): the store to read",
            ));
        }
        for (key, v) in [
            ("query.device_window_s", self.query.device_window_s),
            ("query.health_window_s", self.query.health_window_s),
            ("query.recent_window_s", self.query.recent_window_s),
        ] {
            if v == 0 {
                return Err(invalid(key, None, "must be at least 1"));
            }
        }
        if m.keep_alive_s == 0 || m.keep_alive_s > u64::from(u16::MAX) {
            return Err(invalid("mqtt.keep_alive_s", None, "must be 1 to 65535"));
        }
        if m.session_expiry_s == 0 {
            return Err(invalid(
                "mqtt.session_expiry_s",
                None,
                "must be above 0: with 0 the broker forgets unacknowledged messages on disconnect",
            ));
        }
        if m.receive_maximum == 0 {
            return Err(invalid("mqtt.receive_maximum", None, "must be 1 to 65535"));
        }
        if m.max_packet_bytes < 1024 {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                None,
                "must be at least 1024",
            ));
        }
        if (m.max_packet_bytes as usize) < self.ingest.max_payload_bytes {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                None,
                format!(
                    "{} is below ingest.max_payload_bytes ({}): the broker would drop the larger \
                     payloads unseen instead of the gateway dead-lettering them; raise it to at \
                     least ingest.max_payload_bytes plus the topic",
                    m.max_packet_bytes, self.ingest.max_payload_bytes
                ),
            ));
        }
        if m.reconnect_min_ms == 0 || m.reconnect_min_ms > m.reconnect_max_ms {
            return Err(invalid(
                "mqtt.reconnect_min_ms",
                None,
                "must be above 0 and at most mqtt.reconnect_max_ms",
            ));
        }
        if self.batch.max_messages == 0 {
            return Err(invalid("batch.max_messages", None, "must be at least 1"));
        }
        if self.batch.max_buffered_messages < self.batch.max_messages
            || self.batch.max_buffered_messages < usize::from(m.receive_maximum)
        {
            return Err(invalid(
                "batch.max_buffered_messages",
                None,
                "must be at least batch.max_messages and mqtt.receive_maximum",
            ));
        }
        if self.batch.max_buffered_bytes < self.ingest.max_payload_bytes {
            return Err(invalid(
                "batch.max_buffered_bytes",
                None,
                "must be at least ingest.max_payload_bytes",
            ));
        }
        if self.batch.linger_us > 1_000_000 {
            return Err(invalid(
                "batch.linger_us",
                None,
                "must be at most 1000000 (1 s): it delays every acknowledgement",
            ));
        }
        if self.store.linger_ms > 10_000 {
            return Err(invalid(
                "store.linger_ms",
                None,
                "must be at most 10000 (10 s): it delays every write to the store",
            ));
        }
        if self.batch.max_bytes == 0 {
            return Err(invalid("batch.max_bytes", None, "must be at least 1"));
        }
        if self.batch.retention_interval_s == 0 {
            return Err(invalid(
                "batch.retention_interval_s",
                None,
                "must be at least 1",
            ));
        }
        if let Some(url) = &self.store.url {
            let basic = self.store.username.is_some() || url_for_logs(url) != *url;
            if basic && self.store.token.is_some() {
                return Err(invalid(
                    "store.token",
                    Some("--token, GATEWAY_TOKEN"),
                    "a store takes a token or Basic credentials (store.username/password or \
                     the URL's user info), not both",
                ));
            }
            if self.store.password.is_some() && self.store.username.is_none() {
                return Err(invalid(
                    "store.password",
                    Some("--store-password, GATEWAY_STORE_PASSWORD"),
                    "needs store.username (--store-username)",
                ));
            }
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > "https://".len();
            if !ok {
                return Err(invalid(
                    "store.url",
                    Some("--store, GATEWAY_STORE"),
                    format!("`{}` is not an http:// or https:// URL", url_for_logs(url)),
                ));
            }
            if url.starts_with("https://") && !cfg!(feature = "https-store") {
                return Err(invalid(
                    "store.url",
                    Some("--store, GATEWAY_STORE"),
                    "https:// needs a gateway built with `--features https-store`",
                ));
            }
            if self.store.bucket.is_empty() {
                return Err(invalid(
                    "store.bucket",
                    Some("--bucket, GATEWAY_BUCKET"),
                    "empty",
                ));
            }
            if self.store.org.is_empty() {
                return Err(invalid("store.org", Some("--org, GATEWAY_ORG"), "empty"));
            }
        }
        if self.store.timeout_s == 0 {
            return Err(invalid("store.timeout_s", None, "must be at least 1"));
        }
        let http = parse_addr(&self.http.listen)
            .map_err(|msg| invalid("http.listen", Some("--http, GATEWAY_HTTP"), msg))?;
        let http_tokens = self.http_tokens()?;
        if http_tokens.is_empty() && !http.ip().is_loopback() && !self.http.insecure {
            return Err(invalid(
                "http.listen",
                Some("--http, GATEWAY_HTTP"),
                format!(
                    "{http} is not a loopback address and no API token is configured: \
                     anyone who can reach it could read the API and the dashboard. \
                     Set a token (--http-token / GATEWAY_HTTP_TOKEN, --http-token-file, \
                     or http.tokens / http.token_file), listen on 127.0.0.1, or pass \
                     --http-insecure (http.insecure = true) if a proxy in front authenticates"
                ),
            ));
        }
        if self.http.metrics_require_token && http_tokens.is_empty() {
            return Err(invalid(
                "http.metrics_require_token",
                Some("--metrics-require-token, GATEWAY_METRICS_REQUIRE_TOKEN"),
                "no token is configured (--http-token, --http-token-file, http.tokens, \
                 http.token_file)",
            ));
        }
        if self.http.api_read_threads == 0 || self.http.api_read_threads > 64 {
            return Err(invalid("http.api_read_threads", None, "must be 1 to 64"));
        }
        if self.http.api_read_queue == 0 {
            return Err(invalid("http.api_read_queue", None, "must be at least 1"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "data_dir",
                Some("--data-dir, GATEWAY_DATA_DIR"),
                "empty",
            ));
        }
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            return Err(invalid(
                "data_dir",
                Some("--data-dir, GATEWAY_DATA_DIR"),
                format!("{} exists and is not a directory", self.data_dir.display()),
            ));
        }
        if let Err(e) = self.ingest.validate() {
            let message = match e {
                ingest::IngestError::Config(m) => m,
                other => other.to_string(),
            };
            return Err(invalid("ingest", None, message));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|e| invalid("log.filter", None, e.to_string()))?;
        self.check_publications()?;
        let alerts = self
            .alerts
            .compile(&self.ingest.tasmota_utc_offset)
            .map_err(|e| ConfigError::InvalidEntry {
                key: e.key,
                message: e.message,
            })?;
        Ok(Resolved {
            alerts,
            broker,
            client_id,
            http,
            http_tokens,
            embedded,
            broker_auth,
        })
    }

    /// The MQTT filters of what the gateway publishes (its broker account needs `topic
    /// write` on them): the public AQI feed's district and station topics and the alert
    /// topic, those enabled. Defaults: `city/+/aqi`, `city/+/+/+/aqi`, `city/+/alerts`.
    pub fn publish_filters(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.public.mqtt_enabled {
            out.push(crate::public::template_filter(&self.public.district_topic));
            out.push(crate::public::template_filter(&self.public.station_topic));
        }
        if self.alerts.mqtt_enabled {
            out.push(crate::public::template_filter(&self.alerts.mqtt_topic));
        }
        out.dedup();
        out
    }

    /// The topics the gateway publishes to (`[public]`, `alerts.mqtt_topic`), checked to be
    /// topics and never taken back by its own subscriptions.
    fn check_publications(&self) -> Result<(), ConfigError> {
        let p = &self.public;
        if p.interval_s == 0 || p.interval_s > 86_400 {
            return Err(invalid("public.interval_s", None, "must be 1 to 86400"));
        }
        if p.cache_s > 86_400 {
            return Err(invalid("public.cache_s", None, "must be 0 to 86400"));
        }
        if self.mqtt.publish_queue == 0 {
            return Err(invalid("mqtt.publish_queue", None, "must be at least 1"));
        }
        crate::public::check_template(&p.district_topic, &["district"])
            .map_err(|m| invalid("public.district_topic", None, m))?;
        crate::public::check_template(&p.station_topic, &["district", "kind", "device"])
            .map_err(|m| invalid("public.station_topic", None, m))?;
        let filters = crate::mqtt::filters(
            &self.ingest.routes,
            &self.ingest.status_routes,
            self.mqtt.share_group.as_deref(),
        );
        let mut published: Vec<(&'static str, &str)> = Vec::new();
        if p.mqtt_enabled {
            published.push(("public.district_topic", &p.district_topic));
            published.push(("public.station_topic", &p.station_topic));
        }
        if self.alerts.mqtt_enabled {
            published.push(("alerts.mqtt_topic", &self.alerts.mqtt_topic));
        }
        for (key, template) in published {
            if let Some((filter, _)) = crate::public::overlaps(&filters, &[template]).first() {
                return Err(invalid(
                    key,
                    None,
                    format!(
                        "`{template}` would be consumed by the gateway's own subscription                          `{filter}`: choose a topic no ingest route matches"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The API tokens: `http.tokens` and those of `http.token_file`, checked.
    fn http_tokens(&self) -> Result<Vec<Secret>, ConfigError> {
        let mut tokens = Vec::new();
        for t in &self.http.tokens {
            check_token(t.expose())
                .map_err(|m| invalid("http.tokens", Some("--http-token, GATEWAY_HTTP_TOKEN"), m))?;
            tokens.push(t.clone());
        }
        if let Some(path) = &self.http.token_file {
            let flag = Some("--http-token-file, GATEWAY_HTTP_TOKEN_FILE");
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "http.token_file",
                    flag,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let from_file = parse_token_file(&text);
            if from_file.is_empty() {
                return Err(invalid(
                    "http.token_file",
                    flag,
                    format!("{} holds no token", path.display()),
                ));
            }
            for t in from_file {
                check_token(t.expose()).map_err(|m| {
                    invalid("http.token_file", flag, format!("{}: {m}", path.display()))
                })?;
                tokens.push(t);
            }
        }
        Ok(tokens)
    }

    /// The embedded broker's authentication: a password file (and ACL
    /// file) when configured; anonymous on loopback; on any other address
    /// only with an explicit `broker.allow_anonymous = true`.
    fn broker_auth(&self, addr: SocketAddr) -> Result<BrokerAuth, ConfigError> {
        let b = &self.broker;
        for (key, flag, path) in [
            (
                "broker.password_file",
                "--broker-password-file, GATEWAY_BROKER_PASSWORD_FILE",
                &b.password_file,
            ),
            (
                "broker.acl_file",
                "--broker-acl-file, GATEWAY_BROKER_ACL_FILE",
                &b.acl_file,
            ),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(invalid(
                    key,
                    Some(flag),
                    format!(
                        "{} is not a readable file (write it with `gateway devices provision`)",
                        p.display()
                    ),
                ));
            }
        }
        match &b.password_file {
            Some(password_file) => {
                if self.mqtt.username.is_none() || self.mqtt.password.is_none() {
                    return Err(invalid(
                        "mqtt.username",
                        Some("--mqtt-username, GATEWAY_MQTT_USERNAME"),
                        "broker.password_file is set, so the gateway must log in to its own \
                         broker: set mqtt.username and mqtt.password (--mqtt-password, \
                         GATEWAY_MQTT_PASSWORD) to the registry's [gateway] account",
                    ));
                }
                Ok(BrokerAuth {
                    password_file: Some(password_file.clone()),
                    acl_file: b.acl_file.clone(),
                    allow_anonymous: b.allow_anonymous,
                })
            }
            None if b.acl_file.is_some() => Err(invalid(
                "broker.acl_file",
                Some("--broker-acl-file, GATEWAY_BROKER_ACL_FILE"),
                "an ACL file needs broker.password_file (--broker-password-file): \
                 its rules are per user",
            )),
            None if addr.ip().is_loopback() || b.allow_anonymous => Ok(BrokerAuth::anonymous()),
            None => Err(invalid(
                "broker.embedded",
                Some("--embedded-broker, GATEWAY_EMBEDDED_BROKER"),
                format!(
                    "the embedded broker would listen on {addr}, beyond this machine, and accept \
                     anyone: provision the devices (`gateway devices provision --registry \
                     devices.toml --mosquitto-dir DIR`) and set broker.password_file \
                     (--broker-password-file DIR/passwd) and broker.acl_file, or listen on \
                     127.0.0.1, or accept anonymous clients explicitly with \
                     broker.allow_anonymous = true (--broker-allow-anonymous true)"
                ),
            )),
        }
    }

    /// The shutdown bound as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_s)
    }
}

/// Values derived and checked by [`Config::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Where the broker is.
    pub broker: BrokerUrl,
    /// The client id actually used.
    pub client_id: String,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Tokens of the HTTP API (`http.tokens` and `http.token_file`); none: open.
    pub http_tokens: Vec<Secret>,
    /// Embedded broker listen address, if any.
    pub embedded: Option<SocketAddr>,
    /// How the embedded broker authenticates clients, when there is one.
    pub broker_auth: Option<BrokerAuth>,
    /// The checked alert rules.
    pub alerts: crate::alerts::config::Compiled,
}

/// A parsed `mqtt://` or `mqtts://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (no path), with the
    /// `url` crate (IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "`{url}` is not a URL ({e}); expected mqtt://host[:port] or mqtts://host[:port]"
            )
        })?;
        let tls = match parsed.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            _ => {
                return Err(format!(
                    "`{url}` must start with mqtt:// or mqtts:// (e.g. mqtt://127.0.0.1:1883)"
                ));
            }
        };
        if !parsed.username().is_empty()
            || parsed.password().is_some()
            || !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(format!(
                "`{url}` must be scheme://host[:port] with no path, query or credentials \
                 (use mqtt.username and mqtt.password)"
            ));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(format!("`{url}` has no host")),
        };
        let port = match parsed.port() {
            Some(0) => return Err(format!("`{url}`: 0 is not a port (1-65535)")),
            Some(p) => p,
            None if tls => 8883,
            None => 1883,
        };
        Ok(Self { host, port, tls })
    }
}

/// Parses `host:port`, resolving a host name if needed.
fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    addr.to_socket_addrs()
        .map_err(|e| format!("`{addr}` is not an address like 127.0.0.1:8080 ({e})"))?
        .next()
        .ok_or_else(|| format!("`{addr}` resolves to no address"))
}

/// `gateway-<hostname>`: stable across restarts on one machine, distinct
/// between machines.
pub fn default_client_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    if host.is_empty() {
        "gateway".into()
    } else {
        format!("gateway-{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.mqtt.receive_maximum, 1000);
        assert_eq!(c.mqtt.session_expiry_s, 86_400);
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        let r = c.resolve().unwrap();
        assert_eq!(
            r.broker,
            BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
        assert!(r.client_id.starts_with("gateway"));
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let c = Config::from_toml(include_str!("../../gateway.toml")).unwrap();
        let d = Config::default();
        assert_eq!(c.ingest, d.ingest);
        assert_eq!(c.data_dir, d.data_dir);
        assert_eq!(c.shutdown_timeout_s, d.shutdown_timeout_s);
        assert_eq!(format!("{:?}", c.mqtt), format!("{:?}", d.mqtt));
        assert_eq!(format!("{:?}", c.batch), format!("{:?}", d.batch));
        assert_eq!(format!("{:?}", c.store), format!("{:?}", d.store));
        assert_eq!(format!("{:?}", c.http), format!("{:?}", d.http));
        assert_eq!(format!("{:?}", c.log), format!("{:?}", d.log));
        assert_eq!(format!("{:?}", c.alerts), format!("{:?}", d.alerts));
        assert_eq!(c.public, d.public);
        c.resolve().unwrap();
    }

    #[test]
    fn own_publications_a_route_would_consume_are_refused() {
        let c = Config::from_toml(
            "[[ingest.routes]]\npattern = \"city/{device}/aqi\"\nformat = \"tasmota\"\n",
        )
        .unwrap();
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("public.district_topic"), "{err}");
        assert!(err.contains("city/+/aqi"), "{err}");
        let c = Config::from_toml(
            "[[ingest.routes]]\npattern = \"city/{device}/aqi\"\nformat = \"tasmota\"\n\
             [public]\ndistrict_topic = \"public/{district}/aqi\"\n",
        )
        .unwrap();
        c.resolve().unwrap();
        assert_eq!(
            c.publish_filters(),
            ["public/+/aqi", "city/+/+/+/aqi", "city/+/alerts"]
        );
        let bad = Config::from_toml("[alerts]\nmqtt_topic = \"city/#\"\n").unwrap();
        assert!(
            bad.resolve()
                .unwrap_err()
                .to_string()
                .contains("alerts.mqtt_topic")
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[mqtt]\nurll = \"mqtt://x\"\n").unwrap_err();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn unknown_ingest_key_is_named() {
        let err = Config::from_toml("[ingest]\nmax_payload_byte = 10\n").unwrap_err();
        assert!(err.contains("ingest.max_payload_byte"), "{err}");
        let ok = Config::from_toml("[ingest]\nmax_payload_bytes = 10\n").unwrap();
        assert_eq!(ok.ingest.max_payload_bytes, 10);
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::from_toml("[mqtt]\nreceive_maximum = \"many\"\n").unwrap_err();
        assert!(err.contains("receive_maximum"), "{err}");
    }

    #[test]
    fn bad_url_names_the_key_and_flag() {
        let mut c = Config::default();
        c.mqtt.url = Some("http://broker:1883".into());
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("`mqtt.url`") && err.contains("--mqtt"),
            "{err}"
        );
    }

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtts://broker.example:8884").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 8884, true)
        );
        let u = BrokerUrl::parse("mqtt://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1883));
        assert!(BrokerUrl::parse("mqtt://host:0").is_err());
        assert!(BrokerUrl::parse("mqtt://u:p@host").is_err());
        assert!(BrokerUrl::parse("tcp://host").is_err());
    }

    #[test]
    fn https_store_needs_the_feature() {
        let mut c = Config::default();
        c.store.url = Some("https://store.example".into());
        let r = c.resolve();
        if cfg!(feature = "https-store") {
            r.unwrap();
        } else {
            let err = r.unwrap_err().to_string();
            assert!(
                err.contains("store.url") && err.contains("https-store"),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_needs_a_ca_file() {
        let mut c = Config::default();
        c.mqtt.url = Some("mqtts://127.0.0.1".into());
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("mqtt.ca_file"), "{err}");
    }

    #[test]
    fn embedded_broker_is_the_default_target() {
        let mut c = Config::default();
        c.broker.embedded = Some("0.0.0.0:18883".into());
        c.broker.allow_anonymous = true;
        let r = c.resolve().unwrap();
        assert_eq!(r.broker.host, "127.0.0.1");
        assert_eq!(r.broker.port, 18883);
    }

    #[test]
    fn an_open_embedded_broker_beyond_loopback_is_refused() {
        let mut c = Config::default();
        c.broker.embedded = Some("127.0.0.1:18883".into());
        assert_eq!(
            c.resolve().unwrap().broker_auth,
            Some(BrokerAuth::anonymous())
        );
        c.broker.embedded = Some("0.0.0.0:18883".into());
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("broker.embedded")
                && err.contains("gateway devices provision")
                && err.contains("broker.allow_anonymous = true"),
            "{err}"
        );
        c.broker.allow_anonymous = true;
        assert_eq!(
            c.resolve().unwrap().broker_auth,
            Some(BrokerAuth::anonymous())
        );
    }

    #[test]
    fn a_password_file_needs_the_gateways_own_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "gw:$7$101$c2FsdA==$aGFzaA==\n").unwrap();
        let mut c = Config::default();
        c.broker.embedded = Some("0.0.0.0:18883".into());
        c.broker.acl_file = Some(passwd.clone());
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("broker.acl_file") && err.contains("password_file"),
            "{err}"
        );
        c.broker.password_file = Some(passwd.clone());
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("mqtt.username") && err.contains("[gateway]"),
            "{err}"
        );
        c.mqtt.username = Some("gw".into());
        c.mqtt.password = Some(Secret::new("pw"));
        let auth = c.resolve().unwrap().broker_auth.unwrap();
        assert_eq!(auth.password_file.as_deref(), Some(passwd.as_path()));
        assert!(!auth.allow_anonymous);
        c.broker.password_file = Some(dir.path().join("missing"));
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("broker.password_file") && err.contains("provision"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut c = Config::default();
        c.mqtt.username = Some("gw".into());
        c.mqtt.password = Some(Secret::new("hunter2"));
        c.store.token = Some(Secret::new("tok-123"));
        c.http.tokens = vec![Secret::new("http-token-0123456789")];
        let dump = format!("{c:?}");
        assert!(
            !dump.contains("hunter2")
                && !dump.contains("tok-123")
                && !dump.contains("http-token-0123456789"),
            "{dump}"
        );
        let dump = format!("{:?}", c.resolve().unwrap());
        assert!(!dump.contains("http-token-0123456789"), "{dump}");
        let mut c = Config::default();
        c.store.url = Some("http://city:pa55@vm.example:8428/x".into());
        c.store.username = Some("ops".into());
        c.store.password = Some(Secret::new("s3cret"));
        let dump = format!("{c:?}");
        assert!(!dump.contains("pa55") && !dump.contains("s3cret"), "{dump}");
        assert!(
            dump.contains("http://<redacted>@vm.example:8428/x"),
            "{dump}"
        );
    }

    #[test]
    fn packets_smaller_than_payloads_and_byte_bounds_are_refused() {
        let mut c = Config::default();
        c.mqtt.max_packet_bytes = 32 * 1024;
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("mqtt.max_packet_bytes") && err.contains("max_payload_bytes"),
            "{err}"
        );
        let mut c = Config::default();
        c.batch.max_buffered_bytes = 1024;
        assert!(
            c.resolve()
                .unwrap_err()
                .to_string()
                .contains("batch.max_buffered_bytes")
        );
    }

    #[test]
    fn store_credentials_are_one_kind_and_urls_lose_their_user_info_in_logs() {
        assert_eq!(
            url_for_logs("https://u:p@host:1/a?b=c@d"),
            "https://<redacted>@host:1/a?b=c@d"
        );
        assert_eq!(url_for_logs("http://host:8428"), "http://host:8428");
        let mut c = Config::default();
        c.store.url = Some("http://u:p@host:8428".into());
        c.store.token = Some(Secret::new("t"));
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("store.token") && !err.contains(":p@"), "{err}");
        let mut c = Config::default();
        c.store.url = Some("http://host:8428".into());
        c.store.password = Some(Secret::new("p"));
        assert!(
            c.resolve()
                .unwrap_err()
                .to_string()
                .contains("store.username")
        );
    }

    #[test]
    fn open_api_on_a_public_address_is_refused() {
        let mut c = Config::default();
        c.http.listen = "0.0.0.0:8080".into();
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("http.listen")
                && err.contains("--http-token")
                && err.contains("--http-insecure"),
            "{err}"
        );
        c.http.insecure = true;
        c.resolve().unwrap();
        c.http.insecure = false;
        c.http.tokens = vec![Secret::new("0123456789abcdef0123")];
        assert_eq!(c.resolve().unwrap().http_tokens.len(), 1);
        c.http.tokens = vec![Secret::new("short")];
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("http.tokens"), "{err}");
    }

    #[test]
    fn token_file_skips_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(
            &file,
            "# rotated 2025-11\n\n  new-token-0123456789  \nold-token-0123456789\n",
        )
        .unwrap();
        let mut c = Config::default();
        c.http.token_file = Some(file.clone());
        c.http.tokens = vec![Secret::new("flag-token-0123456789")];
        let r = c.resolve().unwrap();
        let got: Vec<&str> = r.http_tokens.iter().map(Secret::expose).collect();
        assert_eq!(
            got,
            [
                "flag-token-0123456789",
                "new-token-0123456789",
                "old-token-0123456789"
            ]
        );
        std::fs::write(&file, "# nothing yet\n").unwrap();
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("http.token_file"), "{err}");
    }

    #[test]
    fn the_query_source_follows_the_share_group_unless_set() {
        let mut c = Config::default();
        assert!(!c.query_from_store(), "one box: the hot tier");
        c.store.url = Some("http://u:p%40ss@vm:8428/".into());
        assert!(!c.query_from_store(), "a store alone: still the hot tier");
        c.mqtt.share_group = Some("city".into());
        assert!(
            c.query_from_store(),
            "a share group with a store: the store"
        );
        let q = c.store_query().unwrap();
        assert_eq!(q.health_window, Duration::from_secs(86_400));
        // The forwarder's credentials (the URL's user info, decoded), sent as a header to
        // the URL without them.
        let url = url::Url::parse(&q.url).unwrap();
        assert_eq!(
            ingest::forward::basic_credentials(&url, q.username.as_deref(), q.password.as_deref()),
            Some(("u".into(), "p@ss".into()))
        );
        let source = crate::api::store::StoreSource::new(q).unwrap();
        assert_eq!(source.url(), "http://vm:8428");
        assert!(!format!("{source:?}").contains("p@ss"));
        c.query.source = QuerySource::HotTier;
        assert!(!c.query_from_store());
        let c = Config::from_toml("[query]\nsource = \"store\"\n").unwrap();
        let err = c.resolve().unwrap_err().to_string();
        assert!(
            err.contains("query.source") && err.contains("store.url"),
            "{err}"
        );
        let c = Config::from_toml("[query]\nhealth_window_s = 0\n").unwrap();
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("query.health_window_s"), "{err}");
    }
}
