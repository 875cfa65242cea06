//! The `ALERTS` series on `/metrics`, in Prometheus' own style:
//! `ALERTS{alertname="...", alertstate="pending"|"firing", district=..., device=...} 1`,
//! one per active alert, gone once it resolves.
//!
//! Why not a `metrics` gauge: the Prometheus exporter keeps a gauge's series for ever
//! (its idle timeout is set for counters only, and a gauge set to 0 stays a series), so
//! a resolved alert would linger as `ALERTS{...} 0`. These lines are kept here instead and
//! appended to the exporter's text by the `/metrics` handler: a resolved alert's series
//! disappears at the next scrape, as Prometheus' own `ALERTS` does.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::store::Labels;

/// Active alerts by fingerprint: labels and state.
static ACTIVE: Mutex<BTreeMap<String, (Labels, &'static str)>> = Mutex::new(BTreeMap::new());

/// Sets an alert's state (`pending` or `firing`).
pub fn set(fingerprint: &str, labels: &Labels, state: &'static str) {
    ACTIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(fingerprint.to_owned(), (labels.clone(), state));
}

/// Removes an alert's series.
pub fn remove(fingerprint: &str) {
    ACTIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(fingerprint);
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text of the active alerts (empty with none).
pub fn render() -> String {
    let active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
    if active.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "# HELP ALERTS Alerts pending or firing, one series per alert (gone once resolved)\n\
         # TYPE ALERTS gauge\n",
    );
    for (labels, state) in active.values() {
        let mut all: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.push(("alertstate", state));
        all.sort_unstable();
        let text: Vec<String> = all
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        out.push_str(&format!("ALERTS{{{}}} 1\n", text.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_come_and_go() {
        let mut l = Labels::new();
        l.insert("alertname".into(), "prom-test".into());
        l.insert("device".into(), "a\"b".into());
        set("prom-test-fp", &l, "firing");
        let text = render();
        assert!(
            text.contains(r#"ALERTS{alertname="prom-test",alertstate="firing",device="a\"b"} 1"#),
            "{text}"
        );
        remove("prom-test-fp");
        assert!(!render().contains("prom-test"));
    }
}
