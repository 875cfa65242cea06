//! The README's metric table is the catalog's documentation: this keeps them in step.

use schemas::catalog::{METRICS, MetricKind};

fn fmt_num(v: f64) -> String {
    if v >= 1e15 {
        "2^64-1".to_string()
    } else {
        format!("{v}")
    }
}

/// The table as the README must show it (also printed, so it can be pasted after a change).
fn expected_table() -> String {
    let mut s = String::from(
        "| metric | unit | valid range | kind | description |\n|---|---|---|---|---|\n",
    );
    for m in METRICS {
        let kind = match m.kind {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        };
        s.push_str(&format!(
            "| `{}` | `{}` | {} .. {} | {} | {} |\n",
            m.name,
            m.unit,
            fmt_num(m.min),
            fmt_num(m.max),
            kind,
            m.description
        ));
    }
    s
}

#[test]
fn readme_metric_table_matches_catalog() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the repository root");
    let table = expected_table();
    assert!(
        readme.contains(&table),
        "README.md's metric table is out of date; replace it with:\n\n{table}"
    );
}
