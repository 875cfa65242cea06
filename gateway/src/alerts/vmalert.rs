//! The alert rules as a rule file for the store's own alerting engine (`vmalert`, shipped
//! in Debian's `victoria-metrics` package), over the series the gateway writes to the store:
//! the readings (`<metric>_value{device, district, kind, format}`) and the AQI
//! (`aqi_value{scope, index, district, device, kind}`, see [`crate::public::store_lines`]).
//! A scaled-out city evaluates them once, centrally, on the merged data of every gateway.
//!
//! `gateway alerts export-vmalert --config gateway.toml` prints the file. Rules that need
//! series the store does not hold yet (device state, the pipeline's own signals) are left
//! out and listed as comments at the top, with the reason.
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
        Spec::DeviceOffline { .. } | Spec::DeviceGaps { .. } | Spec::DistrictReporting { .. } => {
            Err("needs device state series in the store (last seen, gaps), not written yet")
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
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].rule, "offline");
        assert!(
            file.contains("# not exported: offline: needs device state"),
            "{file}"
        );
    }
}
