//! The alert history in the state database's `alerts` table (schema in
//! `ingest::store`): one row per episode of one (rule, labels), inserted when it goes
//! pending, updated when it fires, is notified and resolves; deleted when a pending alert
//! clears without firing. Only the evaluator thread writes it, on its own connection, a
//! few small statements per transition; the API and the CLI read it.
//!
//! Active rows (`pending`, `firing`) are reloaded at start, so an alert that fired
//! before a restart is neither notified again as new nor forgotten. Resolved rows leave
//! after `alerts.history_max_age_s`, and beyond `alerts.history_max_rows` the oldest
//! resolved rows go first.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

/// Labels of an alert, sorted (`alertname`, `district`, `device`, `kind`, `severity`...).
pub type Labels = BTreeMap<String, String>;

/// One row of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Row id.
    pub id: i64,
    /// Rule name.
    pub rule: String,
    /// Stable hash of the labels.
    pub fingerprint: String,
    /// Labels.
    pub labels: Labels,
    /// Annotations (`summary`, `description`).
    pub annotations: Labels,
    /// `pending`, `firing`, `resolved`.
    pub state: String,
    /// Latest value seen.
    pub value: Option<f64>,
    /// When the condition started to hold, unix ns.
    pub started_ns: i64,
    /// When it fired.
    pub fired_ns: Option<i64>,
    /// When it resolved.
    pub resolved_ns: Option<i64>,
    /// Last change of the row.
    pub updated_ns: i64,
    /// Last notification sent (or queued).
    pub last_notified_ns: Option<i64>,
    /// Notifications queued for it.
    pub notifications: i64,
    /// Deliveries that failed for good.
    pub notify_failures: i64,
    /// The last delivery error.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, rule, fingerprint, labels_json, annotations_json, state, value, \
    started_ns, fired_ns, resolved_ns, updated_ns, last_notified_ns, notifications, \
    notify_failures, last_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let labels: String = r.get(3)?;
    let annotations: String = r.get(4)?;
    Ok(Row {
        id: r.get(0)?,
        rule: r.get(1)?,
        fingerprint: r.get(2)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        annotations: serde_json::from_str(&annotations).unwrap_or_default(),
        state: r.get(5)?,
        value: r.get(6)?,
        started_ns: r.get(7)?,
        fired_ns: r.get(8)?,
        resolved_ns: r.get(9)?,
        updated_ns: r.get(10)?,
        last_notified_ns: r.get(11)?,
        notifications: r.get(12)?,
        notify_failures: r.get(13)?,
        last_error: r.get(14)?,
    })
}

fn json(m: &Labels) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

/// Inserts a new pending (or at once firing) alert; its id.
pub fn insert(conn: &Connection, r: &Row) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO alerts(rule, fingerprint, labels_json, annotations_json, state, value,
             started_ns, fired_ns, resolved_ns, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        r.rule,
        r.fingerprint,
        json(&r.labels),
        json(&r.annotations),
        r.state,
        r.value,
        r.started_ns,
        r.fired_ns,
        r.resolved_ns,
        r.updated_ns,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Writes a row's state, value, times and annotations.
pub fn update(conn: &Connection, r: &Row) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE alerts SET state = ?2, value = ?3, fired_ns = ?4, resolved_ns = ?5,
             updated_ns = ?6, annotations_json = ?7, last_notified_ns = ?8
         WHERE id = ?1",
    )?
    .execute(params![
        r.id,
        r.state,
        r.value,
        r.fired_ns,
        r.resolved_ns,
        r.updated_ns,
        json(&r.annotations),
        r.last_notified_ns,
    ])?;
    Ok(())
}

/// Records that a notification of row `id` was queued at `at_ns`.
pub fn notified(conn: &Connection, id: i64, at_ns: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE alerts SET last_notified_ns = ?2, notifications = notifications + 1
         WHERE id = ?1",
    )?
    .execute(params![id, at_ns])?;
    Ok(())
}

/// Records a delivery that failed for good.
pub fn failed(conn: &Connection, id: i64, error: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE alerts SET notify_failures = notify_failures + 1, last_error = ?2 WHERE id = ?1",
    )?
    .execute(params![id, error])?;
    Ok(())
}

/// Deletes a pending alert that cleared without firing.
pub fn delete(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM alerts WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// The pending and firing alerts, to resume after a restart.
pub fn active(conn: &Connection) -> rusqlite::Result<Vec<Row>> {
    let mut s = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE state IN ('pending', 'firing') ORDER BY id"
    ))?;
    s.query_map([], row)?.collect()
}

/// Drops resolved rows older than `max_age_ns` and the oldest resolved rows beyond
/// `max_rows`; the number deleted.
pub fn prune(
    conn: &Connection,
    now_ns: i64,
    max_age_ns: i64,
    max_rows: u64,
) -> rusqlite::Result<usize> {
    let mut n = conn.execute(
        "DELETE FROM alerts WHERE state = 'resolved' AND updated_ns < ?1",
        [now_ns.saturating_sub(max_age_ns)],
    )?;
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))?;
    let over = total - i64::try_from(max_rows).unwrap_or(i64::MAX);
    if over > 0 {
        n += conn.execute(
            "DELETE FROM alerts WHERE id IN (
                 SELECT id FROM alerts WHERE state = 'resolved' ORDER BY id LIMIT ?1)",
            [over],
        )?;
    }
    Ok(n)
}

/// A filter of [`list`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `pending`, `firing`, `resolved`, or `active` (pending and firing).
    pub state: Option<String>,
    /// Rule name.
    pub rule: Option<String>,
    /// `district` label.
    pub district: Option<String>,
    /// `device` label.
    pub device: Option<String>,
    /// Rows updated at or after this time.
    pub since_ns: Option<i64>,
    /// Most rows, newest first.
    pub limit: u32,
}

/// History rows matching `f`, newest first. A database without the table (written by
/// an older gateway) has no alerts.
pub fn list(conn: &Connection, f: &Filter) -> rusqlite::Result<Vec<Row>> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alerts'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let mut s = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM alerts
         WHERE (?1 IS NULL OR state = ?1 OR (?1 = 'active' AND state IN ('pending', 'firing')))
           AND (?2 IS NULL OR rule = ?2)
           AND (?3 IS NULL OR json_extract(labels_json, '$.district') = ?3)
           AND (?4 IS NULL OR json_extract(labels_json, '$.device') = ?4)
           AND (?5 IS NULL OR updated_ns >= ?5)
         ORDER BY id DESC LIMIT ?6"
    ))?;
    s.query_map(
        params![f.state, f.rule, f.district, f.device, f.since_ns, f.limit],
        row,
    )?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rule: &str, device: &str, state: &str, t: i64) -> Row {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), rule.into());
        labels.insert("device".into(), device.into());
        labels.insert("district".into(), "hoan-kiem".into());
        Row {
            id: 0,
            rule: rule.into(),
            fingerprint: "f".into(),
            labels,
            annotations: Labels::new(),
            state: state.into(),
            value: Some(1.0),
            started_ns: t,
            fired_ns: None,
            resolved_ns: None,
            updated_ns: t,
            last_notified_ns: None,
            notifications: 0,
            notify_failures: 0,
            last_error: None,
        }
    }

    #[test]
    fn insert_update_list_prune() {
        let dir = tempfile::tempdir().unwrap();
        let conn = ingest::store::open(
            dir.path(),
            ingest::Synchronous::Normal,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let mut a = sample("pm", "aq-1", "pending", 10);
        a.id = insert(&conn, &a).unwrap();
        let b = sample("pm", "aq-2", "pending", 11);
        let b_id = insert(&conn, &b).unwrap();
        a.state = "firing".into();
        a.fired_ns = Some(20);
        a.updated_ns = 20;
        update(&conn, &a).unwrap();
        notified(&conn, a.id, 21).unwrap();
        failed(&conn, a.id, "connection refused").unwrap();
        let active_rows = active(&conn).unwrap();
        assert_eq!(active_rows.len(), 2);
        assert_eq!(active_rows[0].state, "firing");
        assert_eq!(active_rows[0].notifications, 1);
        assert_eq!(active_rows[0].notify_failures, 1);
        assert_eq!(active_rows[0].labels["device"], "aq-1");
        delete(&conn, b_id).unwrap();
        let f = Filter {
            device: Some("aq-1".into()),
            limit: 10,
            ..Filter::default()
        };
        assert_eq!(list(&conn, &f).unwrap().len(), 1);
        let f = Filter {
            state: Some("active".into()),
            limit: 10,
            ..Filter::default()
        };
        assert_eq!(list(&conn, &f).unwrap().len(), 1);
        // Resolved and old: pruned; active rows are never pruned.
        a.state = "resolved".into();
        a.resolved_ns = Some(30);
        a.updated_ns = 30;
        update(&conn, &a).unwrap();
        let mut c = sample("pm", "aq-3", "firing", 40);
        c.id = insert(&conn, &c).unwrap();
        assert_eq!(prune(&conn, 1_000, 100, 10).unwrap(), 1);
        assert_eq!(prune(&conn, 1_000, 100, 0).unwrap(), 0);
        assert_eq!(active(&conn).unwrap().len(), 1);
    }
}
