//! The SQLite state database: opening a connection with the right pragmas, and the schema
//! with its migrations (`PRAGMA user_version`).
//!
//! One file, `<data_dir>/ingest.sqlite3`, in WAL mode so the pipeline (writer), the
//! forwarder (deletes outbox entries) and readers (HTTP, CLI) work side by side.
//!
//! Tables:
//! - `series`, `chunks`, `hot_head`, `hot_state`: the hot tier, described in [`crate::hot`].
//! - `outbox(id, created_ns, readings, bytes, body)`: line protocol waiting for the store;
//!   `outbox_stats` is kept by triggers so the size check is O(1).
//! - `dead_letters(id, received_ns, topic, payload, reason, detail, payload_bytes)`;
//!   `dead_letter_stats` (their count and bytes) is kept by triggers, for the byte bound.
//! - `devices(device, district, kind, format, first_seen, last_seen, last_seq, ...)`;
//!   `first_seen`/`last_seen` are 0 for a device known only from retained messages.
//! - `log_position(applied_seq)`: the last message-log record whose results are in this
//!   database, written in the same transaction as those results ([`crate::log`]).
//! - `alerts(id, rule, fingerprint, labels_json, annotations_json, state, value, started_ns,
//!   fired_ns, resolved_ns, updated_ns, last_notified_ns, notifications, notify_failures,
//!   last_error)`: the gateway's alert history, one row per episode of one (rule, labels)
//!   (`state` is `pending`, `firing` or `resolved`; a pending alert that clears loses its
//!   row). Written only by the gateway's alert evaluator (`gateway/src/alerts`), which
//!   bounds it by age and rows; it is here so that the one schema version covers it.
//!
//! A data directory written by an earlier version is migrated on open (schema 1 had no
//! message log: the log starts empty above position 0; schema 2 kept one row per reading,
//! whose rows move into chunks).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::config::Synchronous;
use crate::error::{IngestError, Result};

/// The database file inside the data directory.
pub const DB_FILE: &str = "ingest.sqlite3";

/// Migrations in order; migration `i` takes `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE readings(
    bucket INTEGER NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY(bucket, device, metric, ts_ns)
) WITHOUT ROWID;

CREATE TABLE series(
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    PRIMARY KEY(device, metric)
) WITHOUT ROWID;

CREATE TABLE outbox(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);

CREATE TABLE outbox_stats(
    one INTEGER PRIMARY KEY CHECK (one = 1),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    readings INTEGER NOT NULL
);
INSERT INTO outbox_stats VALUES (1, 0, 0, 0);

CREATE TRIGGER outbox_stats_insert AFTER INSERT ON outbox BEGIN
    UPDATE outbox_stats SET entries = entries + 1, bytes = bytes + NEW.bytes,
        readings = readings + NEW.readings;
END;
CREATE TRIGGER outbox_stats_delete AFTER DELETE ON outbox BEGIN
    UPDATE outbox_stats SET entries = entries - 1, bytes = bytes - OLD.bytes,
        readings = readings - OLD.readings;
END;

CREATE TABLE dead_letters(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ns INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload_bytes INTEGER NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters(received_ns);
CREATE INDEX dead_letters_reason ON dead_letters(reason, id);

CREATE TABLE devices(
    device TEXT PRIMARY KEY,
    district TEXT,
    kind TEXT,
    format TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    last_seq INTEGER,
    messages INTEGER NOT NULL DEFAULT 0,
    readings INTEGER NOT NULL DEFAULT 0,
    gaps INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    duplicate_readings INTEGER NOT NULL DEFAULT 0,
    reboots INTEGER NOT NULL DEFAULT 0,
    dropped_readings INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    status_at INTEGER,
    meta_json TEXT,
    meta_at INTEGER
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE log_position(
    one INTEGER PRIMARY KEY CHECK (one = 1),
    applied_seq INTEGER NOT NULL
);
INSERT INTO log_position VALUES (1, 0);
"#,
    // The chunked hot tier ([`crate::hot`]); the rows of `readings` move into chunks
    // ([`crate::hot::migrate_rows`], run right after this).
    r#"
ALTER TABLE series RENAME TO series_v2;

CREATE TABLE series(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    first_ns INTEGER,
    last_ns INTEGER,
    last_value REAL,
    UNIQUE(device, metric)
);

CREATE TABLE chunks(
    series INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY(series, start_ns)
) WITHOUT ROWID;
CREATE INDEX chunks_end ON chunks(end_ns);

CREATE TABLE hot_head(
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

CREATE TABLE hot_state(
    one INTEGER PRIMARY KEY CHECK (one = 1),
    version INTEGER NOT NULL
);
INSERT INTO hot_state VALUES (1, 0);
"#,
    // Dead letters bounded in bytes: their total kept by triggers, as the outbox's.
    r#"
CREATE TABLE dead_letter_stats(
    one INTEGER PRIMARY KEY CHECK (one = 1),
    letters INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT INTO dead_letter_stats
    SELECT 1, COUNT(*), COALESCE(SUM(length(payload) + length(detail) + length(topic)), 0)
    FROM dead_letters;

CREATE TRIGGER dead_letter_stats_insert AFTER INSERT ON dead_letters BEGIN
    UPDATE dead_letter_stats SET letters = letters + 1,
        bytes = bytes + length(NEW.payload) + length(NEW.detail) + length(NEW.topic);
END;
CREATE TRIGGER dead_letter_stats_delete AFTER DELETE ON dead_letters BEGIN
    UPDATE dead_letter_stats SET letters = letters - 1,
        bytes = bytes - length(OLD.payload) - length(OLD.detail) - length(OLD.topic);
END;
"#,
    // Alerts of the gateway's rules (`gateway/src/alerts`): one row per episode of one
    // (rule, labels), from pending to resolved; the evaluator writes it, the API reads it.
    r#"
CREATE TABLE alerts(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    annotations_json TEXT NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    started_ns INTEGER NOT NULL,
    fired_ns INTEGER,
    resolved_ns INTEGER,
    updated_ns INTEGER NOT NULL,
    last_notified_ns INTEGER,
    notifications INTEGER NOT NULL DEFAULT 0,
    notify_failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX alerts_state ON alerts(state, id);
CREATE INDEX alerts_updated ON alerts(updated_ns);
"#,
];

/// The migration after which [`crate::hot::migrate_rows`] runs.
const CHUNKED_HOT_TIER: usize = 2;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Path of the database in `data_dir`.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

/// Opens (creating if needed) the database in `data_dir`, sets the pragmas and brings the
/// schema up to date.
pub fn open(data_dir: &Path, sync: Synchronous, busy_timeout: Duration) -> Result<Connection> {
    std::fs::create_dir_all(data_dir).map_err(|source| IngestError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let mut conn =
        Connection::open(db_path(data_dir)).map_err(IngestError::sql("open database"))?;
    conn.busy_timeout(busy_timeout)
        .map_err(IngestError::sql("set busy timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(IngestError::sql("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(IngestError::Config(format!(
            "SQLite refused WAL mode (got {mode}); is the data dir on a network filesystem?"
        )));
    }
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync};
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;
         PRAGMA wal_autocheckpoint = 10000;"
    ))
    .map_err(IngestError::sql("set pragmas"))?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(IngestError::sql("begin migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(IngestError::sql("read schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(IngestError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(IngestError::sql("migrate schema"))?;
        if i == CHUNKED_HOT_TIER {
            crate::hot::migrate_rows(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(IngestError::sql("write schema version"))?;
    }
    tx.commit().map_err(IngestError::sql("commit migration"))
}

/// The message-log position the state has applied up to.
pub fn applied_seq(conn: &Connection) -> Result<u64> {
    conn.query_row("SELECT applied_seq FROM log_position", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v.max(0) as u64)
    .map_err(IngestError::sql("read the applied log position"))
}

/// Makes every transaction committed on `conn` durable with one fsync of the WAL: a
/// transaction committed with `synchronous = FULL` syncs the WAL, and with it every frame
/// before its own. `conn` runs with `NORMAL` again afterwards.
pub(crate) fn sync_committed(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         BEGIN IMMEDIATE; UPDATE log_position SET applied_seq = applied_seq; COMMIT;
         PRAGMA synchronous = NORMAL;",
    )
    .map_err(IngestError::sql("sync the state database"))
}

/// Records the applied message-log position, inside the transaction holding what was applied.
pub(crate) fn set_applied_seq(conn: &Connection, seq: u64) -> Result<()> {
    conn.prepare_cached("UPDATE log_position SET applied_seq = ?1")
        .and_then(|mut s| s.execute([seq as i64]))
        .map_err(IngestError::sql("record the applied log position"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path(), Synchronous::Full, Duration::from_secs(1)).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        conn.execute(
            "INSERT INTO outbox(created_ns, readings, bytes, body) VALUES (1, 3, 10, x'00')",
            [],
        )
        .unwrap();
        let d = crate::outbox::depth(&conn).unwrap();
        assert_eq!((d.entries, d.bytes, d.readings), (1, 10, 3));
        conn.execute("DELETE FROM outbox", []).unwrap();
        assert_eq!(crate::outbox::depth(&conn).unwrap().entries, 0);
        drop(conn);
        let conn = open(dir.path(), Synchronous::Normal, Duration::from_secs(1)).unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
    }

    #[test]
    fn reading_rows_of_schema_2_move_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(db_path(dir.path())).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            let t0 = 1_780_000_000_000_000_000i64;
            for i in 0..500i64 {
                // Two hours of one series (more than a chunk spans), and one other.
                let ts = t0 + i * 15_000_000_000;
                conn.execute(
                    "INSERT INTO readings VALUES (?1, 'aq-1', 'pm25', ?2, ?3)",
                    // Schema 2 led its key with a 10-second bucket of the time.
                    rusqlite::params![ts / 10_000_000_000, ts, i as f64 / 3.0],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO readings VALUES (0, 'wx-1', 'temperature', 5, 0.0)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO series VALUES ('aq-1', 'pm25', ?1, ?2)",
                [t0, t0 + 499 * 15_000_000_000],
            )
            .unwrap();
        }
        let conn = open(dir.path(), Synchronous::Normal, Duration::from_secs(1)).unwrap();
        let hot = crate::query::HotRead::new(&conn, None).unwrap();
        assert_eq!(hot.count(|_, _| true).unwrap(), 501);
        let rows = hot.series_rows().unwrap();
        assert_eq!(rows.len(), 2);
        let aq = hot.find("aq-1", "pm25").unwrap().unwrap();
        let points = hot.points(aq.id, i64::MIN, i64::MAX).unwrap();
        assert_eq!(points.len(), 500);
        assert!(
            points
                .iter()
                .enumerate()
                .all(|(i, (_, v))| *v == i as f64 / 3.0)
        );
        let chunks: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM chunks WHERE series = ?1",
                [aq.id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(chunks >= 3, "an hour at most per chunk: {chunks}");
        let wx = hot.find("wx-1", "temperature").unwrap().unwrap();
        let p = hot.points(wx.id, i64::MIN, i64::MAX).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0], (5, 0.0));
        let gone: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('readings', 'series_v2')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path(), Synchronous::Full, Duration::from_secs(1)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = open(dir.path(), Synchronous::Full, Duration::from_secs(1)).unwrap_err();
        assert!(
            matches!(e, IngestError::SchemaTooNew { found: 99, .. }),
            "{e}"
        );
    }
}
