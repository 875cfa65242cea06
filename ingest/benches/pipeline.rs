//! In-process benchmark of the applier's work: decode -> validate -> commit (one SQLite
//! transaction per batch with its log position, the default `synchronous = normal` the
//! gateway runs behind its message log, outbox on, the hot tier's head flushed into chunks
//! as the gateway does, the last flush included), for SenML-CBOR and Tasmota batches.
//!
//! ```text
//! cargo bench -p ingest --bench pipeline
//! BENCH_MESSAGES=400000 BENCH_BATCH=2000 BENCH_DEVICES=1000 BENCH_FORMATS=tasmota \
//!     cargo bench -p ingest --bench pipeline
//! ```
//!
//! With `BENCH_BEFORE=<path of another build's bench executable>` (`scripts/bench-before.sh`
//! builds one from a commit), that build runs first with the same settings and both are
//! printed, labelled, in one table.
//!
//! Prints readings/s (wall clock) and CPU time per reading (user + system, from
//! `getrusage`), plus the process's peak resident memory. Wall and CPU time swing by a
//! third between runs on a shared machine; compare changes by instruction counts instead:
//! `BENCH_MESSAGES=10000 valgrind --tool=callgrind <bench executable>`, then
//! `callgrind_annotate --inclusive=yes` for `Pipeline::process_inner` (see the README).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest::message::now_ns;
use ingest::{Inbound, IngestConfig, Pipeline};
use schemas::senml::{Record, cbor};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Devices the messages come from (`BENCH_DEVICES`, default 1000).
fn devices() -> usize {
    env("BENCH_DEVICES", 1000)
}

/// (user + system CPU time, peak RSS in KiB) of this process.
fn usage() -> (Duration, i64) {
    // SAFETY: getrusage only writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss)
}

fn senml_messages(n: usize, t0: i64) -> Vec<Inbound> {
    let received = now_ns();
    (0..n)
        .map(|i| {
            let (dev, seq) = (i % devices(), (i / devices()) as u32);
            let device = format!("aq-{dev:04}");
            let bn = format!("{device}:");
            let v = (i % 97) as f64;
            let mut recs = [
                Record::measurement("pm1", "ug/m3", v),
                Record::measurement("pm25", "ug/m3", v + 1.5),
                Record::measurement("pm10", "ug/m3", v + 7.0),
                Record::measurement("temperature", "Cel", 28.25),
                Record::measurement("relativeHumidity", "%RH", 71.5),
            ];
            recs[0].base_name = Some(&bn);
            recs[0].base_time = Some((t0 + i64::from(seq)) as f64);
            recs[0].seq = Some(seq);
            let mut buf = [0u8; 256];
            let len = cbor::encode(&recs, &mut buf).unwrap();
            Inbound {
                topic: format!("city/hoan-kiem/airquality/{device}/up"),
                payload: Bytes::copy_from_slice(&buf[..len]),
                received_at_ns: received,
                retained: false,
            }
        })
        .collect()
}

fn tasmota_messages(n: usize, t0: i64) -> Vec<Inbound> {
    let received = now_ns();
    (0..n)
        .map(|i| {
            let (dev, seq) = (i % devices(), (i / devices()) as i64);
            // Hanoi local time (+07:00), one second per message of a device.
            let local = chrono::DateTime::from_timestamp(t0 + seq + 7 * 3600, 0).unwrap().naive_utc();
            let v = (i % 97) as f64;
            let payload = format!(
                r#"{{"Time":"{}","BME280":{{"Temperature":{:.1},"Humidity":{:.1},"Pressure":1008.4}},"PMS5003":{{"PM2.5":{},"PM10":{}}},"TempUnit":"C"}}"#,
                local.format("%Y-%m-%dT%H:%M:%S"),
                20.0 + v / 10.0,
                60.0 + v / 5.0,
                v,
                v + 9.0
            );
            Inbound {
                topic: format!("tele/tasmota_{dev:06X}/SENSOR"),
                payload: payload.into(),
                received_at_ns: received,
                retained: false,
            }
        })
        .collect()
}

fn run(label: &str, name: &str, msgs: &[Inbound], batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        forward_enabled: true,
        ..IngestConfig::default()
    };
    let mut p = Pipeline::open(dir.path(), cfg).unwrap();
    let (cpu0, _) = usage();
    let started = Instant::now();
    let mut readings = 0usize;
    let mut seq = 0u64;
    for chunk in msgs.chunks(batch) {
        seq += chunk.len() as u64;
        let out = p.apply(chunk, seq).unwrap();
        assert_eq!(out.dead_letters, 0, "bench data must be valid");
        readings += out.readings_committed;
        p.maintain().unwrap();
    }
    p.flush_hot().unwrap();
    let wall = started.elapsed();
    let (cpu1, rss_kib) = usage();
    let cpu = cpu1 - cpu0;
    println!(
        "{label:<7} {name:<11} {msgs:>8} msgs {readings:>9} readings  batch {batch:>5}  {rps:>10.0} readings/s  {cpu_ns:>6.0} ns CPU/reading  peak RSS {rss} MiB",
        msgs = msgs.len(),
        rps = readings as f64 / wall.as_secs_f64(),
        cpu_ns = cpu.as_nanos() as f64 / readings as f64,
        rss = rss_kib / 1024,
    );
}

fn main() {
    if let Ok(before) = std::env::var("BENCH_BEFORE") {
        // The other build first, with the same settings; its lines are labelled here.
        let out = std::process::Command::new(&before)
            .arg("--bench")
            .env_remove("BENCH_BEFORE")
            .env("BENCH_LABEL", "before")
            .output()
            .unwrap_or_else(|e| panic!("cannot run BENCH_BEFORE={before}: {e}"));
        assert!(out.status.success(), "{before} failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("readings/s") {
                let line = line.trim_start_matches("before").trim_start();
                println!("{:<7} {line}", "before");
            }
        }
    }
    let label = std::env::var("BENCH_LABEL").unwrap_or_else(|_| "this".into());
    let n = env("BENCH_MESSAGES", 200_000);
    let batch = env("BENCH_BATCH", 1000);
    // One second apart per device, ending a minute ago: inside the hot retention and never
    // in the future, whatever the device count.
    let per_device = n.div_ceil(devices()) as i64;
    let t0 = now_ns() / 1_000_000_000 - per_device - 60;
    // Aligned to 10 s so that every run's times compress alike in the hot tier's chunks:
    // instruction counts of two runs then differ by the code, not by the clock.
    let t0 = t0 - t0.rem_euclid(10);
    // BENCH_FORMATS: comma-separated subset of `senml-cbor,tasmota` (default both).
    let formats = std::env::var("BENCH_FORMATS").unwrap_or_else(|_| "senml-cbor,tasmota".into());
    if formats.contains("senml-cbor") {
        let senml = senml_messages(n, t0);
        run(&label, "senml-cbor", &senml, batch);
    }
    if formats.contains("tasmota") {
        let tasmota = tasmota_messages(n, t0);
        run(&label, "tasmota", &tasmota, batch);
    }
}
