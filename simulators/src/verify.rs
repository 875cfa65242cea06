//! `simulators verify`: compare a manifest (what was sent) with what landed in the
//! gateway's hot tier (its SQLite file, opened read-only) or in VictoriaMetrics (export
//! API), and report lost readings, duplicates, wrong values and the latency from send
//! to store.
//!
//! Matching, per series (device, metric):
//! 1. Readings that carried their own time are looked up by (device, metric, ts) at
//!    millisecond resolution; a hit with another value is a *wrong value*. Extra points
//!    at the same time (VictoriaMetrics keeps them) are *duplicates stored*.
//! 2. Readings the gateway stamped on receipt (flag `r`), and readings whose time did not
//!    match (a gateway configured with another time zone for Tasmota, say), are matched
//!    by value, in send order, against the points step 1 left unclaimed.
//!
//! Readings sent out of range on purpose (flag `x`) are expected to be rejected, and
//! readings of devices with a skewed clock (flag `s`) may be (too far in the future);
//! neither is counted as lost. Deliberate duplicate publishes (flag `d`) are not expected as
//! separate readings: the store should keep one.
//!
//! Latency: the hot tier records no commit time (it has no such column), so send ->
//! store latency is measured only where the store's time is the gateway's clock: on
//! readings stamped on receipt, which gives send -> gateway receipt. If the hot tier
//! gains a commit-time column (`commit_ns`, `committed_ns`, `stored_ns` or
//! `inserted_ns`), it is used for every matched reading.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::device::flags;
use crate::manifest::{self, ManifestRow};

/// Relative tolerance when comparing values: stores may round in the last digits.
pub const VALUE_TOLERANCE: f64 = 1e-12;

/// Where the readings landed.
#[derive(Debug, Clone, PartialEq)]
pub enum Landing {
    /// The gateway's SQLite hot tier.
    HotTier(PathBuf),
    /// A VictoriaMetrics base URL (`http://127.0.0.1:8428`).
    Victoria(String),
}

/// One stored point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    ts_ms: i64,
    value: f64,
    /// Commit time, Unix ns, where the store records it.
    commit_ns: Option<i64>,
}

type Series = HashMap<(String, String), Vec<Point>>;

/// Percentiles of a latency sample, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// What was measured.
    pub what: &'static str,
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyReport {
    /// Manifest rows.
    pub manifest_rows: u64,
    /// Distinct readings expected in the store.
    pub expected: u64,
    /// Found with the right value.
    pub found: u64,
    /// Of those, matched by value because the stored time differed or was the gateway's.
    pub found_by_value: u64,
    /// Not found.
    pub lost: u64,
    /// Found at the right time with another value.
    pub wrong_value: u64,
    /// Readings published twice on purpose.
    pub duplicates_sent: u64,
    /// Extra stored points for one reading.
    pub duplicates_stored: u64,
    /// Out-of-range readings correctly absent.
    pub rejected_as_expected: u64,
    /// Out-of-range readings that were stored anyway.
    pub accepted_out_of_range: u64,
    /// Readings from devices with a skewed clock (fault) that were not stored: a
    /// gateway refuses times too far ahead of its clock or older than its retention.
    pub skewed_not_stored: u64,
    /// Points of the manifest's devices that match no manifest row.
    pub unexpected: u64,
    /// The gateway's own duplicate counters (hot tier `devices` table), if present.
    pub gateway_duplicate_messages: Option<u64>,
    /// Latency, if measurable.
    pub latency: Option<Latency>,
    /// Why latency is what it is.
    pub latency_note: String,
    /// A few lost readings, for the report.
    pub lost_examples: Vec<String>,
    /// A few wrong values, for the report.
    pub wrong_examples: Vec<String>,
}

impl VerifyReport {
    /// Whether the run lost or corrupted readings.
    pub fn failed(&self) -> bool {
        self.lost > 0 || self.wrong_value > 0
    }

    /// Summary table rows.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut r = vec![
            ("manifest rows", self.manifest_rows.to_string()),
            ("readings expected", self.expected.to_string()),
            (
                "found",
                format!("{} ({} matched by value)", self.found, self.found_by_value),
            ),
            ("LOST", self.lost.to_string()),
            ("WRONG VALUE", self.wrong_value.to_string()),
            ("duplicates sent (fault)", self.duplicates_sent.to_string()),
            ("duplicates stored", self.duplicates_stored.to_string()),
            (
                "out-of-range rejected / accepted",
                format!(
                    "{} / {}",
                    self.rejected_as_expected, self.accepted_out_of_range
                ),
            ),
            (
                "skewed clock, not stored (fault)",
                self.skewed_not_stored.to_string(),
            ),
            ("points not in manifest", self.unexpected.to_string()),
        ];
        if let Some(d) = self.gateway_duplicate_messages {
            r.push(("gateway duplicate counter (messages)", d.to_string()));
        }
        match &self.latency {
            Some(l) => r.push((
                "latency",
                format!(
                    "{}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
                    l.what, l.n, l.p50, l.p90, l.p99, l.max
                ),
            )),
            None => r.push(("latency", "not measurable".into())),
        }
        r.push(("latency note", self.latency_note.clone()));
        r
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= VALUE_TOLERANCE * a.abs().max(b.abs()).max(1e-9)
}

/// Reads the hot tier's readings for `devices` (read-only, so a running gateway is not
/// disturbed; its head is read from the rows it keeps durable), plus the gateway's
/// duplicate counters. `path` is the SQLite file or the data directory holding it. The
/// hot tier records no commit time (the third value is `false`).
fn load_hot_tier(path: &Path, devices: &HashSet<String>) -> Result<(Series, Option<u64>, bool)> {
    let reader = if path.is_dir() {
        ingest::query::Reader::open_read_only(path)
    } else {
        ingest::query::Reader::open_file_read_only(path)
    }
    .with_context(|| format!("open hot tier {}", path.display()))?;
    let hot = reader.hot()?;
    let mut series: Series = HashMap::new();
    for row in hot.series_rows()? {
        if !devices.contains(&row.device) {
            continue;
        }
        let points = hot.points(row.id, i64::MIN, i64::MAX)?;
        let e = series.entry((row.device, row.metric)).or_default();
        e.extend(points.into_iter().map(|(ts_ns, value)| Point {
            ts_ms: (ts_ns as f64 / 1e6).round() as i64,
            value,
            commit_ns: None,
        }));
    }
    let dup = ingest::query::device_states(reader.connection())
        .ok()
        .map(|states| {
            states
                .iter()
                .filter(|d| devices.contains(&d.device))
                .map(|d| d.duplicates.max(0) as u64)
                .sum()
        });
    Ok((series, dup, false))
}

/// Reads every `<metric>_value` series of the manifest's devices from VictoriaMetrics.
fn load_victoria(url: &str, devices: &HashSet<String>) -> Result<Series> {
    let base = url.trim_end_matches('/');
    // Make recently written samples visible; older versions lack it, which is harmless.
    let _ = ureq::get(&format!("{base}/internal/force_flush")).call();
    let body = ureq::get(&format!("{base}/api/v1/export"))
        .query("match[]", r#"{__name__=~".+_value"}"#)
        .call()
        .with_context(|| format!("export from {base}"))?
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .context("read export body")?;
    let mut series: Series = HashMap::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).context("parse export line")?;
        let name = v["metric"]["__name__"].as_str().unwrap_or_default();
        let Some(metric) = name.strip_suffix("_value") else {
            continue;
        };
        let Some(device) = v["metric"]["device"].as_str() else {
            continue;
        };
        if !devices.contains(device) {
            continue;
        }
        let (Some(vals), Some(ts)) = (v["values"].as_array(), v["timestamps"].as_array()) else {
            continue;
        };
        let e = series
            .entry((device.to_owned(), metric.to_owned()))
            .or_default();
        for (val, t) in vals.iter().zip(ts) {
            if let (Some(val), Some(t)) = (val.as_f64(), t.as_i64()) {
                e.push(Point {
                    ts_ms: t,
                    value: val,
                    commit_ns: None,
                });
            }
        }
    }
    Ok(series)
}

/// Runs the comparison.
pub fn run(manifest_path: &Path, landing: &Landing) -> Result<VerifyReport> {
    let rows = manifest::read(manifest_path)
        .with_context(|| format!("read manifest {}", manifest_path.display()))?;
    let devices: HashSet<String> = rows.iter().map(|r| r.device.clone()).collect();
    let (series, gw_dups, has_commit) = match landing {
        Landing::HotTier(p) => load_hot_tier(p, &devices)?,
        Landing::Victoria(u) => (load_victoria(u, &devices)?, None, false),
    };
    let mut report = compare(&rows, series, has_commit);
    report.gateway_duplicate_messages = gw_dups;
    if report.latency_note.is_empty() {
        report.latency_note = match (landing, has_commit) {
            (_, true) => "send -> hot-tier commit, from the commit-time column".into(),
            (Landing::HotTier(_), false) => "the hot tier records no commit time: only send -> gateway receipt on readings the gateway stamped (ESPHome)".into(),
            (Landing::Victoria(_), _) => "VictoriaMetrics records no ingestion time: only send -> gateway receipt on readings the gateway stamped (ESPHome)".into(),
        };
    }
    Ok(report)
}

/// Compares manifest rows with stored series (the testable core of [`run`]).
fn compare(rows: &[ManifestRow], mut series: Series, has_commit: bool) -> VerifyReport {
    let mut rep = VerifyReport {
        manifest_rows: rows.len() as u64,
        ..Default::default()
    };
    let mut by_series: BTreeMap<(&str, &str), Vec<&ManifestRow>> = BTreeMap::new();
    for r in rows {
        by_series.entry((&r.device, &r.metric)).or_default().push(r);
    }
    let mut latencies: Vec<f64> = Vec::new();
    let mut receipt_latencies: Vec<f64> = Vec::new();
    for ((device, metric), mut expected) in by_series {
        expected.sort_by_key(|r| r.sent_ns);
        let mut points = series
            .remove(&(device.to_owned(), metric.to_owned()))
            .unwrap_or_default();
        points.sort_by_key(|p| p.ts_ms);
        let mut claimed = vec![false; points.len()];
        let mut by_ts: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, p) in points.iter().enumerate() {
            by_ts.entry(p.ts_ms).or_default().push(i);
        }
        let mut seen_keys: HashSet<i64> = HashSet::new();
        let mut pending: Vec<&ManifestRow> = Vec::new();
        // Pass 1: readings with their own time.
        for r in &expected {
            if r.flags & flags::DUPLICATE != 0 {
                rep.duplicates_sent += 1;
            }
            if r.flags & flags::RECEIPT_TIME != 0 {
                if r.flags & flags::DUPLICATE == 0 {
                    rep.expected += 1;
                }
                pending.push(r);
                continue;
            }
            if !seen_keys.insert(r.ts_ms) {
                continue; // the same reading again (a duplicate publish)
            }
            rep.expected += 1;
            match by_ts.get(&r.ts_ms) {
                Some(idx) => {
                    for &i in idx {
                        claimed[i] = true;
                    }
                    rep.duplicates_stored += idx.len() as u64 - 1;
                    let p = points[idx[0]];
                    if r.flags & flags::OUT_OF_RANGE != 0 {
                        rep.expected -= 1;
                        rep.accepted_out_of_range += 1;
                    } else if same(p.value, r.value) {
                        rep.found += 1;
                        if has_commit && let Some(c) = p.commit_ns {
                            latencies.push((c - r.sent_ns) as f64 / 1e6);
                        }
                    } else {
                        rep.wrong_value += 1;
                        if rep.wrong_examples.len() < 5 {
                            rep.wrong_examples.push(format!(
                                "{device} {metric} ts={} sent {} stored {}",
                                r.ts_ms, r.value, p.value
                            ));
                        }
                    }
                }
                None => pending.push(r),
            }
        }
        // Pass 2: by value, in send order.
        let mut cursor = 0;
        for r in pending {
            let is_dup = r.flags & flags::DUPLICATE != 0;
            let find = |from: usize, to: usize, claimed: &[bool]| {
                (from..to).find(|&i| !claimed[i] && same(points[i].value, r.value))
            };
            let hit = find(cursor, points.len(), &claimed)
                .or_else(|| find(0, cursor.min(points.len()), &claimed));
            match hit {
                Some(i) => {
                    claimed[i] = true;
                    cursor = i + 1;
                    if r.flags & flags::OUT_OF_RANGE != 0 {
                        rep.accepted_out_of_range += 1;
                        rep.expected -= u64::from(!is_dup);
                    } else if is_dup {
                        // A receipt-stamped copy lands as its own point: the store cannot tell.
                        rep.duplicates_stored += 1;
                    } else {
                        rep.found += 1;
                        rep.found_by_value += 1;
                        let p = points[i];
                        if r.flags & flags::RECEIPT_TIME != 0 {
                            receipt_latencies.push(p.ts_ms as f64 - r.sent_ns as f64 / 1e6);
                        }
                        if has_commit && let Some(c) = p.commit_ns {
                            latencies.push((c - r.sent_ns) as f64 / 1e6);
                        }
                    }
                }
                None if r.flags & flags::OUT_OF_RANGE != 0 => {
                    rep.rejected_as_expected += 1;
                    rep.expected -= u64::from(!is_dup);
                }
                None if r.flags & flags::SKEWED != 0 => {
                    rep.skewed_not_stored += u64::from(!is_dup);
                    rep.expected -= u64::from(!is_dup);
                }
                None if is_dup => {}
                None => {
                    rep.lost += 1;
                    if rep.lost_examples.len() < 5 {
                        rep.lost_examples.push(format!(
                            "{device} {metric} ts={} value={}",
                            r.ts_ms, r.value
                        ));
                    }
                }
            }
        }
        rep.unexpected += claimed.iter().filter(|c| !**c).count() as u64;
    }
    let (sample, what) = if !latencies.is_empty() {
        (latencies, "send -> commit")
    } else {
        (receipt_latencies, "send -> gateway receipt")
    };
    rep.latency = percentiles(sample, what);
    rep
}

fn percentiles(mut v: Vec<f64>, what: &'static str) -> Option<Latency> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Some(Latency {
        what,
        n: v.len(),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts_ms: i64, value: f64, flags: u8) -> ManifestRow {
        ManifestRow {
            device: "aq-1".into(),
            metric: "pm25".into(),
            ts_ms,
            value,
            sent_ns: ts_ms * 1_000_000,
            flags,
        }
    }

    fn pts(v: &[(i64, f64)]) -> Series {
        let mut s = Series::new();
        s.insert(
            ("aq-1".into(), "pm25".into()),
            v.iter()
                .map(|&(ts_ms, value)| Point {
                    ts_ms,
                    value,
                    commit_ns: None,
                })
                .collect(),
        );
        s
    }

    #[test]
    fn clean_match() {
        let rows = [
            row(1000, 1.0, 0),
            row(2000, 2.0, 0),
            row(2000, 2.0, flags::DUPLICATE),
        ];
        let r = compare(&rows, pts(&[(1000, 1.0), (2000, 2.0)]), false);
        assert_eq!(
            (
                r.expected,
                r.found,
                r.lost,
                r.wrong_value,
                r.duplicates_stored
            ),
            (2, 2, 0, 0, 0)
        );
        assert_eq!(r.duplicates_sent, 1);
        assert!(!r.failed());
    }

    #[test]
    fn loss_duplicate_wrong_value_and_expected_rejections() {
        let rows = [
            row(1000, 1.0, 0),
            row(2000, 2.0, 0),
            row(3000, 3.0, 0),
            row(4000, 999.0, flags::OUT_OF_RANGE),
        ];
        let r = compare(&rows, pts(&[(1000, 1.0), (1000, 1.0), (2000, 2.5)]), false);
        assert_eq!(r.lost, 1);
        assert_eq!(r.wrong_value, 1);
        assert_eq!(r.duplicates_stored, 1);
        assert_eq!(r.rejected_as_expected, 1);
        assert!(r.failed());
    }

    #[test]
    fn skewed_readings_may_be_refused() {
        let rows = [row(1000, 1.0, flags::SKEWED), row(2000, 2.0, flags::SKEWED)];
        let r = compare(&rows, pts(&[(1000, 1.0)]), false);
        assert_eq!(
            (r.found, r.lost, r.skewed_not_stored, r.expected),
            (1, 0, 1, 1)
        );
        assert!(!r.failed());
    }

    #[test]
    fn receipt_stamped_match_by_value_and_give_latency() {
        let mut a = row(0, 5.0, flags::RECEIPT_TIME);
        a.sent_ns = 10_000_000_000;
        let mut b = row(0, 6.0, flags::RECEIPT_TIME);
        b.sent_ns = 11_000_000_000;
        let r = compare(
            &[a, b],
            pts(&[(10_004, 5.0), (11_002, 6.0), (12_000, 7.0)]),
            false,
        );
        assert_eq!(
            (r.found, r.found_by_value, r.lost, r.unexpected),
            (2, 2, 0, 1)
        );
        let l = r.latency.unwrap();
        assert_eq!(l.n, 2);
        assert_eq!(l.max, 4.0);
    }
}
