//! End-to-end benchmark of the gateway process: a burst of QoS 1 messages
//! queued in a real Mosquitto, drained by the real `gateway` binary into
//! SQLite (and VictoriaMetrics with `BENCH_STORE=1`). Not a timed test: it
//! prints what it measured.
//!
//! ```text
//! cargo bench -p gateway --bench e2e
//! BENCH_MESSAGES=200000 BENCH_FORMAT=tasmota BENCH_STORE=1 cargo bench -p gateway --bench e2e
//! # the same burst through an earlier build too, side by side (scripts/bench-peers.sh
//! # --before REV builds one at bench/.work/before-target/release/gateway):
//! BENCH_GATEWAY_BEFORE=bench/.work/before-target/release/gateway cargo bench -p gateway --bench e2e
//! ```
//!
//! Method: the gateway subscribes once (creating its persistent session) and
//! stops; the burst is published while it is away, so the broker queues it;
//! then the gateway starts and the clock runs until every reading is
//! committed (`/health` readings_committed). CPU time and peak RSS are the
//! gateway process's own (`/proc/<pid>/stat` utime+stime, `VmHWM`).

#![allow(clippy::unwrap_used)] // a benchmark harness: failing loudly is right

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway::bench::{Load, LoadFormat, READINGS_PER_MESSAGE};
use tests::{ChildGuard, Mosquitto, MosquittoOptions, VictoriaMetrics};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn readings_committed(port: u16) -> u64 {
    http_get(port, "/health")
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["readings_committed"].as_u64())
        .unwrap_or(0)
}

fn wait_ready(port: u16) {
    let started = Instant::now();
    while !http_get(port, "/health/ready").is_some_and(|b| b.starts_with("ready")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gateway not ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (CPU seconds, peak RSS bytes) of a live process.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // The kernel's USER_HZ is 100 on Linux.
    let cpu = ticks / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, hwm_kb * 1024)
}

/// What one drain measured.
struct Figures {
    published: Duration,
    drained: Duration,
    cpu_s: f64,
    rss: u64,
    forwarded: Option<(Duration, f64, u64)>,
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // special: run a small burst then, so the bench stays compiled and sane.
    let quick = !std::env::args().any(|a| a == "--bench");
    let messages: u64 = env_or("BENCH_MESSAGES", if quick { 2_000 } else { 200_000 });
    let devices: u32 = env_or("BENCH_DEVICES", 1_000);
    let format = match std::env::var("BENCH_FORMAT").as_deref() {
        Ok("senml") => LoadFormat::Senml,
        _ => LoadFormat::Tasmota,
    };
    let with_store = std::env::var("BENCH_STORE").is_ok_and(|v| v == "1");
    let mut builds: Vec<(String, String)> = Vec::new();
    if let Ok(before) = std::env::var("BENCH_GATEWAY_BEFORE") {
        // Relative to the workspace root, where the command is run from.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(&before);
        let path = if std::path::Path::new(&before).is_absolute() {
            before.clone().into()
        } else {
            path
        };
        builds.push(("before".into(), path.display().to_string()));
    }
    builds.push(("this build".into(), env!("CARGO_BIN_EXE_gateway").into()));
    let readings = messages * READINGS_PER_MESSAGE;
    println!(
        "gateway end-to-end benchmark ({format:?}, {messages} messages x {READINGS_PER_MESSAGE} readings, {devices} devices)"
    );
    for (label, bin) in &builds {
        let f = run_burst(bin, format, messages, devices, with_store);
        println!("  [{label}] {bin}");
        println!(
            "    publish into Mosquitto:  {:.2} s ({:.0} messages/s)",
            f.published.as_secs_f64(),
            messages as f64 / f.published.as_secs_f64()
        );
        println!(
            "    drain to SQLite:         {:.2} s = {:.0} readings/s ({:.0} messages/s)",
            f.drained.as_secs_f64(),
            readings as f64 / f.drained.as_secs_f64(),
            messages as f64 / f.drained.as_secs_f64()
        );
        println!(
            "    gateway CPU:             {:.2} s = {:.2} us per reading",
            f.cpu_s,
            f.cpu_s * 1e6 / readings as f64
        );
        println!(
            "    gateway peak RSS:        {:.1} MiB",
            f.rss as f64 / 1048576.0
        );
        if let Some((t, cpu_total, rss_total)) = f.forwarded {
            println!(
                "    all in VictoriaMetrics:  {:.2} s after start ({:.0} readings/s); CPU {:.2} s total, peak RSS {:.1} MiB",
                t.as_secs_f64(),
                readings as f64 / t.as_secs_f64(),
                cpu_total,
                rss_total as f64 / 1048576.0
            );
        }
    }
}

/// One burst through the gateway binary `bin`: fresh broker, store and data directory.
fn run_burst(
    bin: &str,
    format: LoadFormat,
    messages: u64,
    devices: u32,
    with_store: bool,
) -> Figures {
    let broker = Mosquitto::start_with(MosquittoOptions::default()).unwrap();
    let store = with_store.then(|| VictoriaMetrics::start().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = tests::free_port().unwrap();
    let mut args = vec![
        "run".to_owned(),
        "--mqtt".into(),
        broker.url(),
        "--client-id".into(),
        "bench-gateway".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--http".into(),
        format!("127.0.0.1:{http}"),
    ];
    if let Some(s) = &store {
        args.extend(["--store".into(), s.url()]);
    }
    let log = dir.path().join("gateway.log");
    let spawn = || {
        let mut cmd = Command::new(bin);
        cmd.args(&args).env("RUST_LOG", "warn");
        ChildGuard::spawn("gateway", &mut cmd, &log).unwrap()
    };

    // 1. Create the persistent session, then go away.
    let mut gw = spawn();
    wait_ready(http);
    gw.terminate(Duration::from_secs(30)).unwrap();

    // 2. The burst, queued by the broker.
    let load = Load::new(format, messages, devices, "bench-");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let published = rt
        .block_on(gateway::bench::publish_range(
            broker.host(),
            broker.port(),
            "bench-publisher",
            &load,
            0..messages,
        ))
        .unwrap();

    // 3. Drain.
    let readings = messages * READINGS_PER_MESSAGE;
    let started = Instant::now();
    let mut gw = spawn();
    let pid = gw.id().unwrap();
    while readings_committed(http) < readings {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "drain did not finish; log: {}",
            tests::process::log_tail(&log, 40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = started.elapsed();
    let (cpu_s, rss) = proc_usage(pid);
    let mut forwarded = None;
    if let Some(s) = &store {
        let t = Instant::now();
        s.wait_for_export(
            r#"pm25_value{device="bench-00000"}"#,
            Duration::from_secs(300),
            |x| !x.is_empty(),
        )
        .unwrap();
        // The outbox is empty when every entry reached the store.
        while http_get(http, "/health")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["outbox_entries"].as_u64())
            != Some(0)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        forwarded = Some(drained + t.elapsed());
    }
    let (cpu_total, rss_total) = proc_usage(pid);
    gw.terminate(Duration::from_secs(60)).unwrap();
    Figures {
        published,
        drained,
        cpu_s,
        rss,
        forwarded: forwarded.map(|t| (t, cpu_total, rss_total)),
    }
}
