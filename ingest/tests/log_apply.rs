//! The message log and the applier together, against real files and a real SQLite
//! database: every logged message applied once, in order, with the position stored in the
//! same transaction; a restart re-applies nothing; retained readings and old readings.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ingest::applier::{self, ApplierOptions, Hooks, Progress};
use ingest::log::{Arrival, LogOptions, LogReader, LogWriter};
use ingest::message::now_ns;
use ingest::{IngestConfig, Pipeline};

fn hooks() -> Hooks {
    Hooks {
        on_outbox: Box::new(|| {}),
        on_result: Box::new(|_| {}),
    }
}

/// Logs `payloads` (ESPHome states: no time of their own) and runs the applier until
/// everything durable is applied. Returns the applied position.
fn log_and_apply(data: &std::path::Path, payloads: &[&str], retain: bool) -> u64 {
    let p = Pipeline::open(data, IngestConfig::default()).unwrap();
    let applied = p.applied_seq().unwrap();
    let dir = data.join("log");
    let (mut log, _) = LogWriter::open(&dir, LogOptions::default(), applied).unwrap();
    for (i, v) in payloads.iter().enumerate() {
        log.append(&Arrival {
            topic: b"la-esp/sensor/temperature/state",
            payload: v.as_bytes(),
            qos: 1,
            retain,
            dup: false,
            pkid: (applied as u16).wrapping_add(i as u16 + 1),
            received_ns: now_ns() + i as i64,
        });
    }
    let durable = log.commit().unwrap();
    let reader = LogReader::open(&dir, applied + 1).unwrap();
    let progress = Arc::new(Progress::new(applied, durable));
    // Stopping: applies what is durable, then returns.
    progress.request_stop();
    applier::run(
        p,
        reader,
        &progress,
        ApplierOptions {
            max_messages: 1000,
            max_bytes: 64,
            linger: Duration::ZERO,
            housekeeping: Duration::from_secs(3600),
            sync_interval: Duration::from_secs(1),
        },
        &hooks(),
    );
    assert_eq!(progress.applied(), durable);
    assert_eq!(progress.synced(), durable, "a sync ends the run");
    durable
}

/// Readings in the hot tier (head and chunks).
fn readings(data: &std::path::Path) -> i64 {
    let p = Pipeline::open(data, IngestConfig::default()).unwrap();
    ingest::query::reading_count(p.connection()).unwrap() as i64
}

fn count(data: &std::path::Path, sql: &str) -> i64 {
    let p = Pipeline::open(data, IngestConfig::default()).unwrap();
    p.connection().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn every_logged_message_is_applied_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<String> = (0..50).map(|i| format!("{}.5", i % 30)).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    // Small apply batches (64 bytes): many transactions, each with its position.
    let first = log_and_apply(dir.path(), &refs, false);
    assert_eq!(readings(dir.path()), 50);
    assert_eq!(
        count(dir.path(), "SELECT applied_seq FROM log_position"),
        first as i64
    );
    // A restart with nothing new applies nothing again.
    let again = log_and_apply(dir.path(), &[], false);
    assert_eq!(again, first);
    assert_eq!(readings(dir.path()), 50);
    // More messages continue from the position.
    log_and_apply(dir.path(), &["1.0", "1.0"], false);
    assert_eq!(readings(dir.path()), 52);
    assert_eq!(
        count(
            dir.path(),
            "SELECT messages FROM devices WHERE device = 'la-esp'"
        ),
        52,
        "device counters exact"
    );
}

#[test]
fn retained_readings_are_not_applied_as_new() {
    let dir = tempfile::tempdir().unwrap();
    log_and_apply(dir.path(), &["20.5"], true);
    assert_eq!(readings(dir.path()), 0);
    assert_eq!(count(dir.path(), "SELECT COUNT(*) FROM dead_letters"), 0);
}

#[test]
fn old_readings_go_to_the_store_only_and_absurd_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        forward_enabled: true,
        ..IngestConfig::default()
    };
    let mut p = Pipeline::open(dir.path(), cfg).unwrap();
    let day = 86_400_000_000_000i64;
    let now = now_ns();
    let out = p
        .process(&[
            msg(
                "telegraf/x",
                format!("air,device=old-1 temperature=20 {}", now - 30 * day),
            ),
            msg(
                "telegraf/x",
                format!("air,device=old-2 temperature=20 {}", now - 50 * 365 * day),
            ),
        ])
        .unwrap();
    assert_eq!(out.readings_committed, 1);
    assert_eq!(out.dead_letters, 1);
    let c = |sql: &str| -> i64 { p.connection().query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        ingest::query::reading_count(p.connection()).unwrap() as i64,
        0,
        "not in the hot tier"
    );
    assert_eq!(
        c("SELECT readings FROM outbox_stats"),
        1,
        "but to the store"
    );
    assert_eq!(
        c("SELECT COUNT(*) FROM dead_letters WHERE reason = 'too-old'"),
        1
    );
}

/// The head is durable with each applied batch and moves into chunks in one transaction
/// of its own: a crash after a flush and before the next batch's position, or with the
/// head half full, loses and doubles nothing, and a reading delivered again is a
/// duplicate whether it waits in the head or sits in a chunk.
#[test]
fn a_crash_around_a_head_flush_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        hot_head_max_readings: 7,
        ..IngestConfig::default()
    };
    let t0 = now_ns() - 3_600_000_000_000;
    let point = |i: i64| {
        msg(
            "telegraf/x",
            format!(
                "air,device=cr-1 temperature={}.25 {}",
                i,
                t0 + i * 1_000_000_000
            ),
        )
    };
    let open = || Pipeline::open(dir.path(), cfg.clone()).unwrap();

    // Ten readings applied (positions 1..=10), then flushed into chunks; five more wait
    // in the head (11..=15). Then the process dies: nothing is flushed at a stop.
    let mut p = open();
    let out = p
        .apply(&(0..10).map(point).collect::<Vec<_>>(), 10)
        .unwrap();
    assert_eq!(out.readings_committed, 10);
    let flushed = p.maintain().unwrap().expect("the head is over its bound");
    assert_eq!(flushed.readings, 10);
    let out = p
        .apply(&(10..15).map(point).collect::<Vec<_>>(), 15)
        .unwrap();
    assert_eq!(out.readings_committed, 5);
    drop(p);
    assert_eq!(readings(dir.path()), 15, "chunks and the stored head");

    // The restart takes the head over. Readings seen before, in a chunk (3) or in the
    // head (2), are duplicates; two are new.
    let mut p = open();
    assert_eq!(p.applied_seq().unwrap(), 15);
    let again: Vec<_> = [1, 5, 9, 11, 14, 15, 16].into_iter().map(point).collect();
    let out = p.apply(&again, 22).unwrap();
    assert_eq!((out.readings_committed, out.duplicates), (2, 5));
    assert_eq!(readings(dir.path()), 17);
    // A flush and a crash before any later position: still 17, each once, bit for bit.
    p.flush_hot().unwrap();
    drop(p);
    let p = open();
    let points = ingest::query::series(
        p.connection(),
        "cr-1",
        "temperature",
        i64::MIN,
        i64::MAX,
        100,
    )
    .unwrap();
    assert_eq!(points.len(), 17);
    for (i, pt) in points.iter().enumerate() {
        assert_eq!(pt.ts_ns, t0 + i as i64 * 1_000_000_000);
        assert_eq!(pt.value, i as f64 + 0.25);
    }
    let c = |sql: &str| -> i64 { p.connection().query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(c("SELECT COUNT(*) FROM hot_head"), 0, "flushed");
    assert_eq!(c("SELECT applied_seq FROM log_position"), 22);
}

/// A second writer (`gateway deadletters replay` while the gateway runs) writes through
/// into chunks and sees the owner's head: a reading the owner holds is a duplicate for
/// it, and the owner then sees the second writer's readings as present.
#[test]
fn a_second_writer_and_the_head_owner_agree_on_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ns() - 3_600_000_000_000;
    let point = |i: i64| {
        msg(
            "telegraf/x",
            format!("air,device=sw-1 humidity={i} {}", t0 + i * 1_000_000_000),
        )
    };
    let mut owner = Pipeline::open(dir.path(), IngestConfig::default()).unwrap();
    owner.apply(&[point(0), point(1)], 2).unwrap();
    let mut other = Pipeline::open(dir.path(), IngestConfig::default()).unwrap();
    let out = other.process(&[point(1), point(2)]).unwrap();
    assert_eq!((out.readings_committed, out.duplicates), (1, 1));
    let out = owner.apply(&[point(2), point(3)], 4).unwrap();
    assert_eq!((out.readings_committed, out.duplicates), (1, 1));
    assert_eq!(readings(dir.path()), 4);
    owner.flush_hot().unwrap();
    assert_eq!(readings(dir.path()), 4);
}
