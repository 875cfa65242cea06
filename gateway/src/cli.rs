//! The command line: subcommands and the flags that override the config file.
//! Every flag also reads a `GATEWAY_*` environment variable; each help text
//! states the default that applies when neither the flag, the variable nor
//! the file sets the value.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, LogFormat, Secret};

/// The smart-city telemetry gateway: consumes device readings from an MQTT
/// broker, stores them durably in SQLite (hot tier) before acknowledging them,
/// and forwards them to a time-series store speaking the InfluxDB v2 write API.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: MQTT consumer, SQLite hot tier, forwarder, HTTP server.
    Run(RunArgs),
    /// Run a query-only node (an operations centre's screens): the dashboard,
    /// the query API and the public AQI page answered from the store, which
    /// holds every gateway's readings and device state. No MQTT, no hot tier;
    /// the same HTTP authentication as `run`.
    Serve(ServeArgs),
    /// Load and check the configuration (file, environment, flags), print the
    /// effective settings with secrets redacted, and exit: 0 if valid.
    CheckConfig(RunArgs),
    /// Inspect dead letters (messages that could not be stored, with the
    /// reason) and re-inject them after a fix.
    Deadletters(DeadlettersArgs),
    /// Measure end-to-end throughput: publish a burst of readings into a
    /// broker, then time how fast a gateway drains it (see gateway/README.md).
    Bench(BenchArgs),
    /// Ask the hot tier (or a running gateway with --url) what the query API
    /// answers: devices, series, latest, aqi, stats, alerts; as a table or CSV.
    Query(crate::query_cli::QueryArgs),
    /// Manage device accounts on the broker from the device registry
    /// (devices.example.toml): `provision` writes Mosquitto's password and
    /// ACL files.
    Devices(DevicesArgs),
    /// The alert rules of the configuration for other engines:
    /// `export-vmalert` prints them as a vmalert rule file over the series the
    /// gateway writes to the store, for a scaled-out city that evaluates alerts
    /// once, centrally.
    Alerts(AlertsArgs),
}

/// Flags of `alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// What to do with the rules.
    #[command(subcommand)]
    pub action: AlertsAction,
}

/// `alerts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Print the [[alerts.rules]] of the configuration as a vmalert rule file
    /// (YAML) over the store's series: readings (`<metric>_value`), the AQI
    /// (`aqi_value`) and the device-state series (`gateway_device_*`). Rules the
    /// store cannot evaluate (a gateway's own pipeline signals, daily AQI) are
    /// listed as comments. Use it with `vmalert -rule FILE -datasource.url
    /// STORE`.
    ExportVmalert(ExportArgs),
}

/// Flags of `alerts export-vmalert`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// TOML configuration file holding the rules (see gateway.toml).
    #[arg(long, short = 'c', env = "GATEWAY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Write the rule file here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The store flags of `run` and `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Base URL of the time-series store: `run` writes to its InfluxDB v2
    /// write API (InfluxDB, VictoriaMetrics, ...), and reads VictoriaMetrics'
    /// Prometheus query API when it is the query source; `serve` only reads.
    /// [default: none, hot tier only; `serve` needs it] (store.url)
    #[arg(long, env = "GATEWAY_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// User name of Basic credentials for a store behind VictoriaMetrics'
    /// `-httpAuth.*` or an authenticating proxy (the URL's user info works
    /// too). [default: none] (store.username)
    #[arg(long, env = "GATEWAY_STORE_USERNAME", value_name = "NAME")]
    pub store_username: Option<String>,

    /// Password of those Basic credentials; never logged. [default: none]
    /// (store.password)
    #[arg(
        long,
        env = "GATEWAY_STORE_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub store_password: Option<String>,
}

impl StoreArgs {
    fn apply(&self, c: &mut Config) {
        if self.store.is_some() {
            c.store.url.clone_from(&self.store);
        }
        if self.store_username.is_some() {
            c.store.username.clone_from(&self.store_username);
        }
        if let Some(p) = &self.store_password {
            c.store.password = Some(Secret::new(p.clone()));
        }
    }
}

/// The HTTP server flags of `run` and `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct HttpArgs {
    /// Listen address of the HTTP server (/metrics, /health). [default:
    /// 127.0.0.1:8080] (http.listen)
    #[arg(long, env = "GATEWAY_HTTP", value_name = "ADDR")]
    pub http: Option<String>,

    /// Token that the query API and the dashboard require (Authorization:
    /// Bearer TOKEN, or the login page's cookie); at least 16 visible ASCII
    /// characters, never logged. Repeat the flag, or separate tokens with
    /// commas in the variable, to accept several while rotating. Replaces
    /// http.tokens of the file. Needed when --http is not a loopback address.
    /// [default: none, the API is open] (http.tokens)
    #[arg(
        long,
        env = "GATEWAY_HTTP_TOKEN",
        value_name = "TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub http_token: Vec<String>,

    /// File of API tokens, one per line (blank lines and lines starting with
    /// # are ignored), accepted as well as --http-token. Read at start.
    /// [default: none] (http.token_file)
    #[arg(long, env = "GATEWAY_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,

    /// Require the API token on /metrics too (Prometheus then scrapes with
    /// its bearer token). [default: off, /metrics is open]
    /// (http.metrics_require_token)
    #[arg(long, env = "GATEWAY_METRICS_REQUIRE_TOKEN")]
    pub metrics_require_token: bool,

    /// Allow --http on a non-loopback address with no token (the API and
    /// dashboard then open to anyone who reaches it), e.g. behind a proxy
    /// that authenticates. [default: off, such a start is refused]
    /// (http.insecure)
    #[arg(long, env = "GATEWAY_HTTP_INSECURE")]
    pub http_insecure: bool,
}

impl HttpArgs {
    fn apply(&self, c: &mut Config) {
        if let Some(h) = &self.http {
            c.http.listen.clone_from(h);
        }
        if !self.http_token.is_empty() {
            c.http.tokens = self
                .http_token
                .iter()
                .map(|t| Secret::new(t.trim()))
                .filter(|t| !t.expose().is_empty())
                .collect();
        }
        if self.http_token_file.is_some() {
            c.http.token_file.clone_from(&self.http_token_file);
        }
        c.http.metrics_require_token |= self.metrics_require_token;
        c.http.insecure |= self.http_insecure;
    }
}

/// Flags of `run` and `check-config`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// TOML configuration file (see gateway.toml). [default: none, built-in
    /// defaults]
    #[arg(long, short = 'c', env = "GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Broker URL, mqtt://host:port or mqtts://host:port (TLS). [default:
    /// mqtt://127.0.0.1:1883, or the embedded broker] (mqtt.url)
    #[arg(long, env = "GATEWAY_MQTT", value_name = "URL")]
    pub mqtt: Option<String>,

    /// Broker username. [default: none, anonymous] (mqtt.username)
    #[arg(long, env = "GATEWAY_MQTT_USERNAME", value_name = "NAME")]
    pub mqtt_username: Option<String>,

    /// Broker password; never logged (prefer the environment variable over the
    /// flag, which other users can see in the process list). [default: none]
    /// (mqtt.password)
    #[arg(
        long,
        env = "GATEWAY_MQTT_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub mqtt_password: Option<String>,

    /// MQTT client id; keep it fixed: the broker holds this gateway's
    /// persistent session under it. [default: gateway-<hostname>]
    /// (mqtt.client_id)
    #[arg(long, env = "GATEWAY_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// Subscribe through the shared subscription $share/NAME/... so that the
    /// gateways of one group split the traffic. [default: none]
    /// (mqtt.share_group)
    #[arg(long, env = "GATEWAY_SHARE_GROUP", value_name = "NAME")]
    pub share_group: Option<String>,

    /// The store and its credentials.
    #[command(flatten)]
    pub store_args: StoreArgs,

    /// Store organisation. [default: city] (store.org)
    #[arg(long, env = "GATEWAY_ORG", value_name = "ORG")]
    pub org: Option<String>,

    /// Store bucket. [default: telemetry] (store.bucket)
    #[arg(long, env = "GATEWAY_BUCKET", value_name = "BUCKET")]
    pub bucket: Option<String>,

    /// Store API token; never logged. [default: none] (store.token)
    #[arg(
        long,
        env = "GATEWAY_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Directory of the SQLite state (hot tier, outbox, dead letters, device
    /// state). [default: ./data] (data_dir)
    #[arg(long, env = "GATEWAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The HTTP server and its authentication.
    #[command(flatten)]
    pub http_args: HttpArgs,

    /// Run an MQTT broker inside the gateway on ADDR (one-box use) and
    /// connect to it. [default: none] (broker.embedded)
    #[arg(long, env = "GATEWAY_EMBEDDED_BROKER", value_name = "ADDR")]
    pub embedded_broker: Option<String>,

    /// Mosquitto password file for the embedded broker (from `gateway devices
    /// provision`); clients must then log in, and the gateway logs in with
    /// --mqtt-username/--mqtt-password. [default: none] (broker.password_file)
    #[arg(long, env = "GATEWAY_BROKER_PASSWORD_FILE", value_name = "FILE")]
    pub broker_password_file: Option<PathBuf>,

    /// Mosquitto ACL file for the embedded broker (from `gateway devices
    /// provision`); needs --broker-password-file. [default: none]
    /// (broker.acl_file)
    #[arg(long, env = "GATEWAY_BROKER_ACL_FILE", value_name = "FILE")]
    pub broker_acl_file: Option<PathBuf>,

    /// Let the embedded broker accept clients without credentials on a
    /// non-loopback address (logged as a warning); without it such a broker
    /// needs --broker-password-file. [default: false] (broker.allow_anonymous)
    #[arg(long, env = "GATEWAY_BROKER_ALLOW_ANONYMOUS", value_name = "BOOL")]
    pub broker_allow_anonymous: Option<bool>,

    /// Log format. [default: text] (log.format)
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Where the API and dashboard read: hot-tier (this
    /// gateway's own state) or store (the store's query API: every gateway's
    /// readings and merged device state). [default: auto = store with
    /// --share-group and --store, else hot-tier] (query.source)
    #[arg(long, env = "GATEWAY_QUERY_SOURCE", value_name = "SOURCE")]
    pub query_source: Option<crate::config::QuerySource>,

    /// PEM CA certificate(s) that sign the broker's TLS certificate; needed
    /// with mqtts://. [default: none] (mqtt.ca_file)
    #[arg(long, env = "GATEWAY_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate for mutual TLS. [default: none]
    /// (mqtt.client_cert)
    #[arg(long, env = "GATEWAY_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert. [default: none] (mqtt.client_key)
    #[arg(long, env = "GATEWAY_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
}

impl RunArgs {
    /// The file's configuration (or the defaults) with these flags applied
    /// on top.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.apply(&mut c);
        Ok(c)
    }

    fn apply(&self, c: &mut Config) {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        fn set_opt<T: Clone>(slot: &mut Option<T>, v: &Option<T>) {
            if v.is_some() {
                slot.clone_from(v);
            }
        }
        set_opt(&mut c.mqtt.url, &self.mqtt);
        set_opt(&mut c.mqtt.username, &self.mqtt_username);
        if let Some(p) = &self.mqtt_password {
            c.mqtt.password = Some(Secret::new(p.clone()));
        }
        set_opt(&mut c.mqtt.client_id, &self.client_id);
        set_opt(&mut c.mqtt.share_group, &self.share_group);
        set(&mut c.store.org, &self.org);
        set(&mut c.store.bucket, &self.bucket);
        if let Some(t) = &self.token {
            c.store.token = Some(Secret::new(t.clone()));
        }
        set(&mut c.data_dir, &self.data_dir);
        self.store_args.apply(c);
        self.http_args.apply(c);
        set_opt(&mut c.broker.embedded, &self.embedded_broker);
        set_opt(&mut c.broker.password_file, &self.broker_password_file);
        set_opt(&mut c.broker.acl_file, &self.broker_acl_file);
        set(&mut c.broker.allow_anonymous, &self.broker_allow_anonymous);
        set(&mut c.log.format, &self.log_format);
        set(&mut c.query.source, &self.query_source);
        set_opt(&mut c.mqtt.ca_file, &self.ca_file);
        set_opt(&mut c.mqtt.client_cert, &self.client_cert);
        set_opt(&mut c.mqtt.client_key, &self.client_key);
    }
}

/// Flags of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file (its [store], [http], [query], [public] and
    /// ingest.device_kinds apply). [default: none, built-in defaults]
    #[arg(long, short = 'c', env = "GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The store to answer from, and its credentials.
    #[command(flatten)]
    pub store_args: StoreArgs,

    /// The HTTP server and its authentication.
    #[command(flatten)]
    pub http_args: HttpArgs,

    /// Log format. [default: text] (log.format)
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// The configuration these flags select (the file's, flags on top).
    pub fn load(&self) -> Result<Config, ConfigError> {
        RunArgs {
            config: self.config.clone(),
            store_args: self.store_args.clone(),
            http_args: self.http_args.clone(),
            log_format: self.log_format,
            ..RunArgs::default()
        }
        .load()
    }
}

/// Flags of `deadletters`.
#[derive(Debug, Args)]
pub struct DeadlettersArgs {
    /// TOML configuration file (its data_dir, ingest routes and store
    /// settings apply). [default: none]
    #[arg(
        long,
        short = 'c',
        env = "GATEWAY_CONFIG",
        value_name = "FILE",
        global = true
    )]
    pub config: Option<PathBuf>,

    /// Directory of the SQLite state. [default: ./data] (data_dir)
    #[arg(long, env = "GATEWAY_DATA_DIR", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Store URL; when set (here or in the file), replayed readings are also
    /// queued for the store. [default: none] (store.url)
    #[arg(long, env = "GATEWAY_STORE", value_name = "URL", global = true)]
    pub store: Option<String>,

    /// What to do with the dead letters.
    #[command(subcommand)]
    pub action: DeadletterAction,
}

impl DeadlettersArgs {
    /// The configuration these flags select.
    pub fn load(&self) -> Result<Config, ConfigError> {
        RunArgs {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            store_args: StoreArgs {
                store: self.store.clone(),
                ..StoreArgs::default()
            },
            ..RunArgs::default()
        }
        .load()
    }
}

/// `deadletters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadletterAction {
    /// List dead letters, oldest first: id, time, reason, topic, size, and
    /// the counts by reason.
    List {
        /// Only those with this reason (e.g. malformed-payload). [default: all]
        #[arg(long, value_name = "REASON")]
        reason: Option<String>,
        /// At most this many. [default: 100]
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one dead letter in full: topic, reason, detail and the payload
    /// (as text when it is UTF-8, else hex).
    Show {
        /// The dead letter's id (from `list`).
        id: i64,
    },
    /// Re-run dead letters through the current pipeline (routes, decoders,
    /// validation): the ones that now succeed are stored and removed, the
    /// others stay (with their new reason).
    Replay {
        /// Ids to replay. [default: all, or all with --reason]
        ids: Vec<i64>,
        /// Replay those with this reason. [default: any]
        #[arg(long, value_name = "REASON", conflicts_with = "ids")]
        reason: Option<String>,
    },
}

/// Flags of `devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// What to do with the registry.
    #[command(subcommand)]
    pub action: DevicesAction,
}

/// `devices` subcommands.
#[derive(Debug, Subcommand)]
pub enum DevicesAction {
    /// Write Mosquitto's password file (DIR/passwd, `user:$7$...` lines,
    /// PBKDF2-SHA512 as mosquitto_passwd writes them, mode 0600) and ACL file
    /// (DIR/acl: each device may publish only its own topics, derived from
    /// its format's ingest routes, and read nothing; the gateway account may
    /// read every routed topic) from a device registry. Files are replaced
    /// atomically; passwords are never printed. Then run the bundled broker
    /// with --broker-password-file DIR/passwd --broker-acl-file DIR/acl, or
    /// point an external Mosquitto's password_file and acl_file at them.
    Provision(ProvisionArgs),
}

/// Flags of `devices provision`.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The device registry, TOML: a [gateway] table and [[device]] entries
    /// (see devices.example.toml).
    #[arg(long, value_name = "FILE")]
    pub registry: PathBuf,
    /// Directory to write `passwd` and `acl` into; created if missing.
    #[arg(long, value_name = "DIR")]
    pub mosquitto_dir: PathBuf,
    /// Gateway configuration whose [ingest] routes decide each format's
    /// topics. [default: none, the default routes]
    #[arg(long, short = 'c', env = "GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Flags of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Broker to publish into (the gateway under test must subscribe to it
    /// with a persistent session). [default: mqtt://127.0.0.1:1883]
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", value_name = "URL")]
    pub mqtt: String,
    /// Messages to publish. [default: 200000]
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Payload format: tasmota (5 readings per message) or senml (5 readings,
    /// CBOR). [default: tasmota]
    #[arg(long, default_value = "tasmota", value_parser = ["tasmota", "senml"])]
    pub format: String,
    /// Distinct devices the messages are spread over. [default: 1000]
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[mqtt]\nurl = \"mqtt://file:1\"\nclient_id = \"file-id\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "gateway",
            "run",
            "--config",
            file.to_str().unwrap(),
            "--mqtt",
            "mqtt://flag:2",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let c = args.load().unwrap();
        assert_eq!(c.mqtt.url.as_deref(), Some("mqtt://flag:2"));
        assert_eq!(c.mqtt.client_id.as_deref(), Some("file-id"));
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
    }
}
