//! The alert rules as a rule file for the store's own alerting engine (`vmalert`, shipped
//! in Debian's `victoria-metrics` package), over the series the gateway writes to the store:
//! the readings (`<metric>_value{device, district, kind, format}`) and the AQI
//! (`aqi_value{scope, index, district, device, kind}`, see [`crate::public::store_lines`]).
//! A scaled-out city evaluates them once, centrally, on the merged data of every gateway.
//!
//! Device rules read the device-state series every gateway writes
//! (`gateway_device_readings`, `gateway_device_seq`, `gateway_device_status_online`:
//! ingest's README, "Device state in the store"): offline = seen within a day but not
//! within the silence (or last status offline); gaps = `max - min + 1 - distinct` of the
//! sequence numbers in the window, whichever gateway received them, plus the readings the
//! device dropped; district reporting = stations with a message within the default
//! staleness (300 s; the gateway's own evaluation uses each device's period).
//!
//! `gateway alerts export-vmalert --config gateway.toml` prints the file. Rules the store
//! cannot evaluate (a gateway's own pipeline signals, daily AQI) are left out and listed
//! as comments at the top, with the reason.
//!
//! The file is YAML; every string is written as a JSON string, which is valid YAML.

use std::fmt::Write as _;

use super::config::{AqiIndex, Compiled, Direction, Rule, Spec, threshold_number};

/// A rule left out of the export, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The rule's name.
    pub rule: String,
    /// Why it cannot be evaluated by the store yet.
    pub why: &'static str,
}

/// The labels device rules keep (the readings' and device series' tags but `format`).
const DEVICE_LABELS: &str = "device, district, kind";
/// How long a silent device is still looked for (and alerted on) by the exported
/// offline and reporting rules: scanning further back costs the store every evaluation.
const OFFLINE_WINDOW: &str = "1d";

/// `{device="..", district="..", kind=".."}` matchers of a rule's filters, plus `extra`.
fn matchers(rule: &Rule, extra: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = extra
        .iter()
        .map(|(k, v)| format!("{k}={}", json(v)))
        .collect();
    for (key, value) in [
        ("device", &rule.device),
        ("district", &rule.district),
        ("kind", &rule.kind),
    ] {
        if let Some(v) = value {
            parts.push(format!("{key}={}", json(v)));
        }
    }
    format!("{{{}}}", parts.join(","))
}

fn json(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The MetricsQL expression of a rule, or why it has none yet.
pub fn expr(rule: &Rule, utc_offset_s: i32) -> Result<String, &'static str> {
    match &rule.spec {
        Spec::Metric {
            metric,
            direction,
            threshold,
            hours,
            max_age_s,
        } => {
            let op = match direction {
                Direction::Above => ">",
                Direction::Below => "<",
            };
            let mut e = format!(
                "last_over_time({metric}_value{}[{max_age_s}s]) {op} {}",
                matchers(rule, &[]),
                threshold_number(*threshold)
            );
            if let Some((from, to)) = hours {
                // Local hour from UTC: (hour() + offset) mod 24, in [from, to), wrapping.
                let local = format!("((hour() + {}) % 24)", utc_offset_s.div_euclid(3600));
                let window = if from < to {
                    format!("{local} >= {from} and {local} < {to}")
                } else {
                    format!("({local} >= {from} or {local} < {to})")
                };
                e = format!("({e}) and on() ({window})");
            }
            Ok(e)
        }
        Spec::Aqi {
            index,
            daily,
            per_district,
            at_least,
        } => {
            if *daily {
                return Err("the store holds hourly AQI series only (aqi_value), not daily ones");
            }
            let index = match index {
                AqiIndex::Vn => "VN_AQI",
                AqiIndex::Epa => "US_EPA_AQI",
            };
            let scope = if *per_district { "district" } else { "station" };
            // The feed writes a value per evaluation: the latest within two hours.
            Ok(format!(
                "last_over_time(aqi_value{}[2h]) >= {}",
                matchers(rule, &[("scope", scope), ("index", index)]),
                threshold_number(*at_least)
            ))
        }
        Spec::DeviceOffline { silence_s } => {
            // Seen within the device window but not within the silence, or whose last
            // status is offline.
            let m = matchers(rule, &[]);
            let seen = |window: &str| {
                format!(
                    "max by ({DEVICE_LABELS}) (present_over_time(gateway_device_readings{m}[{window}]))"
                )
            };
            Ok(format!(
                "({} unless {}) or (max by ({DEVICE_LABELS}) (last_over_time(gateway_device_status_online{m}[{OFFLINE_WINDOW}])) == 0)",
                seen(OFFLINE_WINDOW),
                seen(&format!("{silence_s}s")),
            ))
        }
        Spec::DeviceGaps { window_s, above } => {
            // Gaps over every gateway's sequence numbers, plus the readings the device
            // says it dropped, within the window.
            let m = matchers(rule, &[]);
            let w = format!("{window_s}s");
            let by = |f: &str, series: &str, agg: &str| {
                format!("{agg} by ({DEVICE_LABELS}) ({f}({series}{m}[{w}]))")
            };
            let gaps = format!(
                "({} - {} + 1 - {})",
                by("max_over_time", "gateway_device_seq", "max"),
                by("min_over_time", "gateway_device_seq", "min"),
                by("distinct_over_time", "gateway_device_seq", "sum"),
            );
            let dropped = by("sum_over_time", "droppedReadings_value", "sum");
            Ok(format!(
                "({gaps} + ({dropped} or {gaps} * 0)) > {}",
                threshold_number(*above)
            ))
        }
        Spec::DistrictReporting { at_least } => {
            // Stations that sent a message within the default staleness, per district;
            // districts with none count 0 while any of their stations is in the window.
            let m = matchers(rule, &[]);
            let count = |window: &str| {
                format!(
                    "count by (district) (max by (device, district) (present_over_time(gateway_device_readings{m}[{window}])))"
                )
            };
            Ok(format!(
                "({} or ({} * 0)) < {}",
                count(&format!(
                    "{}s",
                    crate::api::queries::DEFAULT_STALE_AFTER.as_secs()
                )),
                count(OFFLINE_WINDOW),
                threshold_number(*at_least)
            ))
        }
        Spec::Pipeline { .. } => {
            Err("a gateway's own signal: evaluated by each gateway, or scraped from its /metrics")
        }
    }
}

/// The rule file for `compiled`, and the rules left out.
pub fn export(compiled: &Compiled) -> (String, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut body = String::new();
    for rule in &compiled.rules {
        let e = match expr(rule, compiled.utc_offset_s) {
            Ok(e) => e,
            Err(why) => {
                skipped.push(Skipped {
                    rule: rule.name.clone(),
                    why,
                });
                continue;
            }
        };
        let _ = writeln!(body, "      - alert: {}", json(&rule.name));
        let _ = writeln!(body, "        expr: {}", json(&e));
        if rule.for_s > 0 {
            let _ = writeln!(body, "        for: {}", json(&format!("{}s", rule.for_s)));
        }
        let _ = writeln!(body, "        labels:");
        let _ = writeln!(body, "          severity: {}", json(&rule.severity));
        let _ = writeln!(body, "          rule_type: {}", json(&rule.rule_type));
        let _ = writeln!(body, "        annotations:");
        let _ = writeln!(
            body,
            "          summary: {}",
            json(&format!(
                "{} {} {} (value {{{{ $value }}}})",
                rule.name,
                rule.rule_type,
                rule.threshold_text()
            ))
        );
        if let Some(d) = &rule.description {
            let _ = writeln!(body, "          description: {}", json(d));
        }
    }
    let mut out = String::from(
        "# The gateway's alert rules for vmalert, over the series the gateway writes to the\n\
         # store. Written by `gateway alerts export-vmalert`; edits are lost on the next export.\n",
    );
    for s in &skipped {
        let _ = writeln!(out, "# not exported: {}: {}", s.rule, s.why);
    }
    out.push_str("groups:\n  - name: \"gateway\"\n    rules:\n");
    if body.is_empty() {
        out.push_str("      []\n");
    }
    out.push_str(&body);
    (out, skipped)
}

/// `gateway alerts export-vmalert`: loads and checks the configuration, writes the file.
pub fn run(args: &crate::cli::ExportArgs) -> anyhow::Result<()> {
    let cfg = crate::config::Config::from_file(&args.config)?;
    let resolved = cfg.resolve()?;
    let (file, skipped) = export(&resolved.alerts);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &file)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!(
                "wrote {} rule(s) to {}",
                resolved.alerts.rules.len() - skipped.len(),
                path.display()
            );
        }
        None => print!("{file}"),
    }
    for s in &skipped {
        eprintln!("not exported: {}: {}", s.rule, s.why);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::config::AlertsConfig;

    fn compiled(rules: &str) -> Compiled {
        let cfg: AlertsConfig = toml::from_str(rules).unwrap();
        cfg.compile("+07:00").unwrap()
    }

    #[test]
    fn metric_and_aqi_rules_become_metricsql_and_the_rest_are_listed() {
        let c = compiled(
            r#"
[[rules]]
name = "night-noise"
type = "metric"
metric = "LAeq"
above = 70
hours = "22-06"
for_s = 900
district = "ba-dinh"

[[rules]]
name = "aqi-bad"
type = "aqi"
scope = "district"
at_least = "bad"
for_s = 600

[[rules]]
name = "offline"
type = "device-offline"
for_s = 600
kind = "noise"

[[rules]]
name = "lossy"
type = "device-gaps"
window_s = 3600
above = 2

[[rules]]
name = "thin"
type = "district-reporting"
at_least = 3

[[rules]]
name = "backlog"
type = "pipeline"
signal = "outbox_bytes"
above = 1000000
"#,
        );
        let (file, skipped) = export(&c);
        assert!(
            file.contains(
                r#"expr: "(last_over_time(LAeq_value{district=\"ba-dinh\"}[300s]) > 70) and on() ((((hour() + 7) % 24) >= 22 or ((hour() + 7) % 24) < 6))""#
            ),
            "{file}"
        );
        assert!(
            file.contains(
                r#"expr: "last_over_time(aqi_value{scope=\"district\",index=\"VN_AQI\"}[2h]) >= 151""#
            ),
            "{file}"
        );
        assert!(file.contains("for: \"600s\""), "{file}");
        assert!(
            file.contains(
                r#"expr: "(max by (device, district, kind) (present_over_time(gateway_device_readings{kind=\"noise\"}[1d])) unless max by (device, district, kind) (present_over_time(gateway_device_readings{kind=\"noise\"}[600s]))) or (max by (device, district, kind) (last_over_time(gateway_device_status_online{kind=\"noise\"}[1d])) == 0)""#
            ),
            "{file}"
        );
        assert!(
            file.contains(
                r#"sum by (device, district, kind) (distinct_over_time(gateway_device_seq{}[3600s]))"#
            ) && file.contains(") > 2\""),
            "{file}"
        );
        assert!(
            file.contains(
                r#"count by (district) (max by (device, district) (present_over_time(gateway_device_readings{}[300s])))"#
            ) && file.contains(") < 3\""),
            "{file}"
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].rule, "backlog");
        assert!(
            file.contains("# not exported: backlog: a gateway's own"),
            "{file}"
        );
    }
}
