//! A full disk: the gateway's data directory on a small tmpfs, filled up
//! while readings arrive. The gateway stops acknowledging (the broker keeps
//! the messages), reports not ready with the reason, and resumes by itself
//! when space returns, losing and doubling nothing. The tests run as root:
//! this one mounts the tmpfs itself.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use tests::Mosquitto;

const WAIT: Duration = Duration::from_secs(120);

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs for the data directory and must run as root \
             (as the test command does): mount said {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    let _ = f.sync_all();
    written
}

const fn libc_enospc() -> i32 {
    28 // ENOSPC on Linux
}

#[test]
fn a_full_disk_holds_acks_reports_not_ready_and_recovers_without_loss() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tmpfs");
    let _tmpfs = Tmpfs::mount(&mnt, "24m");
    let data = mnt.join("data");
    let cfg = dir.path().join("gateway.toml");
    // Small log segments, so that a new one is needed soon after the disk fills.
    std::fs::write(&cfg, "[ingest]\nlog_segment_bytes = 262144\n").unwrap();
    let broker = Mosquitto::start().unwrap();
    let mut opts = GatewayOptions::new(&broker, "disk-full", &data);
    opts.extra = vec!["--config".into(), cfg.display().to_string()];
    let mut gw = Gateway::start(&opts);

    let load = senml(6_000, 20, "full-");
    publish(&broker, &load, 0..1_000, "pub-full-1");
    wait_until(
        "the first 5,000 readings stored",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 5_000,
    );

    // Fill the disk, then keep publishing.
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "the tmpfs had room to fill");
    publish(&broker, &load, 1_000..6_000, "pub-full-2");
    let (code, why) = wait_until(
        "the gateway reports the full disk",
        WAIT,
        || gw.get("/health/ready").unwrap_or((0, String::new())),
        |(code, _)| *code == 503,
    );
    assert_eq!(code, 503);
    assert!(
        why.contains("cannot commit"),
        "the reason says what cannot commit: {why}"
    );
    assert!(gw.is_running(), "a full disk never stops the service");
    let held = reading_count(&gw.data_dir);
    eprintln!("full disk after {filled} filler bytes: {why:?}, {held} readings stored");
    assert!(
        held < 30_000,
        "not everything got in on a full disk: {held}"
    );

    // Space returns: everything lands, once.
    std::fs::remove_file(&filler).unwrap();
    wait_until(
        "all 30,000 readings stored after space returned",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 30_000,
    );
    wait_until(
        "ready again",
        WAIT,
        || gw.get("/health/ready").map(|(c, _)| c),
        |c| *c == Some(200),
    );
    assert_eq!(
        query_u64(&gw.data_dir, "SELECT SUM(messages) FROM devices"),
        6_000,
        "every message applied exactly once"
    );
    assert!(gw.log_text().contains("cannot commit") || gw.log_text().contains("failed"));
    let status = gw.terminate().expect("exited");
    assert!(status.success(), "{status}");
}
