//! `gateway query devices|series|latest|aqi|stats|alerts`: the query API's questions from a
//! terminal or a script, answered from the hot tier directly (`--data-dir`, read-only),
//! from the store (`--store`: every gateway's readings and merged device state), or from
//! a running gateway (`--url`), printed as a table or as CSV.
//!
//! Both paths take the same parameters as the HTTP API (the same structs), so a CLI
//! answer and an API answer never disagree.

use crate::api::model::*;
use crate::api::params::{AqiParams, DevicesParams, LatestParams, SeriesParams, StatsParams};
use crate::api::{ReadPool, handlers::now_ns, queries};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::PathBuf;

/// Options of `gateway query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// What to ask.
    #[command(subcommand)]
    pub what: QueryWhat,
    /// Output: an aligned table for people, or CSV for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub format: OutputFormat,
    /// Read the hot tier in this data directory (read-only, works while the gateway runs).
    /// [default: ./data]
    #[arg(long, env = "GATEWAY_DATA_DIR", global = true, conflicts_with_all = ["url", "store"])]
    pub data_dir: Option<PathBuf>,
    /// Ask a running gateway instead, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true, conflicts_with = "store")]
    pub url: Option<String>,
    /// Ask the store instead (VictoriaMetrics' query API, e.g. http://127.0.0.1:8428):
    /// the whole city as a share group of gateways writes it. User info in the URL is
    /// taken as Basic credentials. Alerts are not in the store.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// User name of Basic credentials for --store. [default: none]
    #[arg(
        long,
        env = "GATEWAY_STORE_USERNAME",
        global = true,
        value_name = "NAME"
    )]
    pub store_username: Option<String>,
    /// Password of those credentials; never printed. [default: none]
    #[arg(
        long,
        env = "GATEWAY_STORE_PASSWORD",
        global = true,
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub store_password: Option<String>,
    /// API token sent to --url as `Authorization: Bearer TOKEN` (the gateway's
    /// --http-token; from the variable, its first comma-separated token); ignored without
    /// --url. [default: none]
    #[arg(
        long,
        env = "GATEWAY_HTTP_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub http_token: Option<String>,
    /// Device kinds accepted in `--kind` besides the built-in four, as the gateway's
    /// `ingest.device_kinds` lists them (comma-separated); only for --data-dir.
    /// [default: none]
    #[arg(
        long = "device-kinds",
        env = "GATEWAY_DEVICE_KINDS",
        global = true,
        value_delimiter = ',',
        value_name = "KINDS"
    )]
    pub device_kinds: Vec<String>,
}

/// The questions.
#[derive(Debug, Subcommand)]
pub enum QueryWhat {
    /// Devices with status, last seen, firmware, gaps, duplicates, dropped readings, stale flag.
    Devices(DevicesParams),
    /// Downsampled series of device:metric pairs.
    Series(SeriesParams),
    /// Latest values per district and kind.
    Latest(LatestParams),
    /// VN_AQI (hourly, daily) and US AQI per station.
    Aqi(AqiParams),
    /// Dead letters by reason, ingest rate, outbox depth, store lag.
    Stats(StatsParams),
    /// Active alerts and the alert history (state, rule, labels, times).
    Alerts(crate::api::alerts::AlertsParams),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned table.
    Table,
    /// Comma-separated values with a header line.
    Csv,
}

/// Where answers come from.
enum Source {
    Local {
        pool: ReadPool,
    },
    Remote {
        base: String,
        token: Option<String>,
    },
    Store {
        store: crate::api::store::StoreSource,
    },
}

impl Source {
    fn get<P: Serialize, T: DeserializeOwned>(&self, path: &str, params: &P) -> Result<T> {
        let Self::Remote { base, token } = self else {
            bail!("not a remote source");
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut req = ureq::get(&url).config().http_status_as_error(false).build();
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        if let serde_json::Value::Object(map) = serde_json::to_value(params)? {
            for (k, v) in map {
                if let serde_json::Value::String(s) = v {
                    req = req.query(k, s);
                }
            }
        }
        let mut resp = req.call().with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let msg = serde_json::from_str::<crate::api::error::ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or(body);
            bail!("{url}: {status}: {msg}");
        }
        serde_json::from_str(&body).with_context(|| format!("decoding the answer of {url}"))
    }

    fn local<T>(
        &self,
        f: impl FnOnce(&ingest::query::HotRead<'_>) -> Result<T, crate::api::ApiError>,
    ) -> Result<T> {
        let Self::Local { pool } = self else {
            bail!("not a local source");
        };
        pool.with(f)
            .with_context(|| format!("querying {}", pool.path().display()))
    }
}

/// Runs `gateway query ...`, printing to stdout.
pub fn run(args: &QueryArgs) -> Result<()> {
    if let Some(url) = &args.store {
        let store = crate::api::store::StoreSource::new(crate::api::store::StoreQueryConfig {
            username: args.store_username.clone(),
            password: args.store_password.clone(),
            ..crate::api::store::StoreQueryConfig::new(url.clone())
        })?;
        return print(&ask(&Source::Store { store }, args)?, args.format);
    }
    let source = match &args.url {
        Some(url) => Source::Remote {
            base: url.clone(),
            token: args
                .http_token
                .as_deref()
                .and_then(|t| t.split(',').map(str::trim).find(|t| !t.is_empty()))
                .map(str::to_owned),
        },
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("data"));
            let path = ingest::store::db_path(&dir);
            if !path.exists() {
                bail!(
                    "no hot tier at {} (is --data-dir right? has the gateway run there?)",
                    path.display()
                );
            }
            Source::Local {
                pool: ReadPool::new(path),
            }
        }
    };
    print(&ask(&source, args)?, args.format)
}

fn print(table: &Rows, format: OutputFormat) -> Result<()> {
    let out = render(table, format)?;
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing to stdout")
}

/// The answer of `source` to the question of `args`, as rows.
fn ask(source: &Source, args: &QueryArgs) -> Result<Rows> {
    let now = now_ns();
    let stale = queries::DEFAULT_STALE_AFTER;
    let kinds = &args.device_kinds;
    if let Source::Store { store } = source {
        let from = |e: crate::api::ApiError| anyhow::anyhow!(e);
        return Ok(match &args.what {
            QueryWhat::Devices(p) => {
                devices_table(&store.devices(p, now, stale, kinds).map_err(from)?)
            }
            QueryWhat::Series(p) => series_table(&store.series(&p.parse(now)?).map_err(from)?),
            QueryWhat::Latest(p) => latest_table(&store.latest(p, now, kinds).map_err(from)?),
            QueryWhat::Aqi(p) => aqi_table(&store.aqi(p, now).map_err(from)?),
            QueryWhat::Stats(p) => stats_table(&store.stats(p, now, stale).map_err(from)?),
            QueryWhat::Alerts(_) => bail!(
                "alerts are not in the store: ask a gateway (--url) or its data directory, or vmalert"
            ),
        });
    }
    let remote = matches!(source, Source::Remote { .. });
    Ok(match &args.what {
        QueryWhat::Devices(p) => devices_table(&if remote {
            source.get("/api/devices", p)?
        } else {
            source.local(|c| queries::devices(c, p, now, stale, &args.device_kinds))?
        }),
        QueryWhat::Series(p) => series_table(&if remote {
            source.get("/api/series", p)?
        } else {
            let req = p.parse(now)?;
            source.local(|c| queries::series(c, &req))?
        }),
        QueryWhat::Latest(p) => latest_table(&if remote {
            source.get("/api/latest", p)?
        } else {
            source.local(|c| queries::latest(c, p, now, &args.device_kinds))?
        }),
        QueryWhat::Aqi(p) => aqi_table(&if remote {
            source.get("/api/aqi", p)?
        } else {
            source.local(|c| queries::aqi(c, p, now, &queries::HourCache::default()))?
        }),
        QueryWhat::Stats(p) => stats_table(&if remote {
            source.get("/api/stats", p)?
        } else {
            source.local(|c| queries::stats(c, p, now, stale))?
        }),
        QueryWhat::Alerts(p) => alerts_table(&if remote {
            source.get("/api/alerts", p)?
        } else {
            source.local(|c| crate::api::alerts::query(c.connection(), p, now))?
        }),
    })
}

/// A header and rows of cells: what both output formats print.
#[derive(Debug, Default, PartialEq)]
pub struct Rows {
    /// Column names.
    pub header: Vec<&'static str>,
    /// Cells.
    pub rows: Vec<Vec<String>>,
}

/// Prints rows as a table or CSV.
pub fn render(rows: &Rows, format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Table => {
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED).set_header(&rows.header);
            for r in &rows.rows {
                t.add_row(r);
            }
            Ok(format!("{t}\n"))
        }
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&rows.header)?;
            for r in &rows.rows {
                w.write_record(r)?;
            }
            let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("CSV: {e}"))?;
            Ok(String::from_utf8(bytes)?)
        }
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        })
        .unwrap_or_default()
}

fn num(v: f64) -> String {
    format!("{v:.2}")
}

fn devices_table(r: &DevicesResponse) -> Rows {
    Rows {
        header: vec![
            "device",
            "kind",
            "district",
            "status",
            "last_seen",
            "firmware",
            "gaps",
            "duplicates",
            "dropped",
            "stale",
        ],
        rows: r
            .devices
            .iter()
            .map(|d| {
                vec![
                    d.device.clone(),
                    opt(d.kind.clone()),
                    opt(d.district.clone()),
                    d.status.clone(),
                    time(d.last_seen_ms),
                    opt(d.firmware.clone()),
                    d.gaps.to_string(),
                    d.duplicates.to_string(),
                    d.dropped_readings.to_string(),
                    d.stale.to_string(),
                ]
            })
            .collect(),
    }
}

fn series_table(r: &SeriesResponse) -> Rows {
    Rows {
        header: vec!["device", "metric", "time", r_agg(r), "unit"],
        rows: r
            .series
            .iter()
            .flat_map(|s| {
                s.t.iter().zip(&s.v).map(|(t, v)| {
                    vec![
                        s.device.clone(),
                        s.metric.clone(),
                        time(Some(*t)),
                        v.to_string(),
                        opt(s.unit.clone()),
                    ]
                })
            })
            .collect(),
    }
}

fn r_agg(r: &SeriesResponse) -> &'static str {
    match r.agg.as_str() {
        "min" => "min",
        "max" => "max",
        "last" => "last",
        "count" => "count",
        _ => "avg",
    }
}

fn latest_table(r: &LatestResponse) -> Rows {
    Rows {
        header: vec![
            "district",
            "kind",
            "devices",
            "reporting",
            "online",
            "metric",
            "count",
            "mean",
            "min",
            "max",
            "unit",
            "newest",
        ],
        rows: r
            .groups
            .iter()
            .flat_map(|g| {
                g.metrics.iter().map(|m| {
                    vec![
                        g.district.clone(),
                        g.kind.clone(),
                        g.devices.to_string(),
                        g.reporting.to_string(),
                        g.online.to_string(),
                        m.metric.clone(),
                        m.count.to_string(),
                        num(m.mean),
                        num(m.min),
                        num(m.max),
                        opt(m.unit.clone()),
                        time(Some(m.newest_ms)),
                    ]
                })
            })
            .collect(),
    }
}

fn aqi_table(r: &AqiResponse) -> Rows {
    let idx = |v: &Option<AqiValue>| opt(v.as_ref().map(|v| v.value));
    Rows {
        header: vec![
            "device",
            "district",
            "vn_aqi_hourly",
            "category",
            "colour",
            "vn_aqi_daily",
            "us_aqi_nowcast",
            "us_aqi_daily",
            "pm25_nowcast",
            "pm10_nowcast",
        ],
        rows: r
            .stations
            .iter()
            .map(|s| {
                vec![
                    s.device.clone(),
                    opt(s.district.clone()),
                    idx(&s.vn_aqi_hourly),
                    opt(s.vn_aqi_hourly.as_ref().map(|v| v.category.clone())),
                    opt(s.vn_aqi_hourly.as_ref().map(|v| v.colour.clone())),
                    idx(&s.vn_aqi_daily),
                    idx(&s.us_aqi_nowcast),
                    idx(&s.us_aqi_daily),
                    opt(s.pm25_nowcast.map(num)),
                    opt(s.pm10_nowcast.map(num)),
                ]
            })
            .collect(),
    }
}

fn stats_table(r: &StatsResponse) -> Rows {
    let mut rows = vec![
        vec!["ingest_rate_per_s".into(), num(r.ingest_rate_per_s)],
        vec!["outbox_entries".into(), r.outbox_entries.to_string()],
        vec!["outbox_readings".into(), r.outbox_readings.to_string()],
        vec!["outbox_bytes".into(), r.outbox_bytes.to_string()],
        vec!["store_lag_s".into(), num(r.store_lag_s)],
        vec![
            "newest_message_age_s".into(),
            opt(r.newest_message_age_s.map(num)),
        ],
        vec!["devices".into(), r.devices.to_string()],
        vec!["devices_online".into(), r.devices_online.to_string()],
        vec!["devices_stale".into(), r.devices_stale.to_string()],
        vec![
            "dead_letters_last_hour".into(),
            r.dead_letters_last_hour.to_string(),
        ],
    ];
    rows.extend(r.dead_letters.iter().map(|d| {
        vec![
            format!("dead_letters{{reason={}}}", d.reason),
            d.count.to_string(),
        ]
    }));
    Rows {
        header: vec!["stat", "value"],
        rows,
    }
}

fn alerts_table(r: &crate::api::alerts::AlertsResponse) -> Rows {
    Rows {
        header: vec![
            "id", "rule", "state", "district", "device", "value", "started", "fired", "resolved",
            "summary",
        ],
        rows: r
            .alerts
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    a.rule.clone(),
                    a.state.clone(),
                    opt(a.labels.get("district").cloned()),
                    opt(a.labels.get("device").cloned()),
                    opt(a.value.map(num)),
                    time(Some(a.started_ms)),
                    time(a.fired_ms),
                    time(a.resolved_ms),
                    opt(a.annotations.get("summary").cloned()),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let rows = Rows {
            header: vec!["a", "b"],
            rows: vec![
                vec!["x,y".into(), "say \"hi\"".into()],
                vec!["1".into(), "2".into()],
            ],
        };
        assert_eq!(
            render(&rows, OutputFormat::Csv).unwrap(),
            "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n1,2\n"
        );
        let table = render(&rows, OutputFormat::Table).unwrap();
        assert!(table.contains("x,y") && table.contains("│"), "{table}");
    }
}
