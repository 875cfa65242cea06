//! What a run tells its user: shared counters, a live progress line (indicatif) and the
//! final summary table (comfy-table), with the simulator's own CPU time and memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};

/// Counters updated by every device task.
#[derive(Debug, Default)]
pub struct Counters {
    /// Devices in the run.
    pub devices: AtomicU64,
    /// Clients connected now.
    pub connected: AtomicU64,
    /// Most clients connected at once.
    pub peak_connected: AtomicU64,
    /// Successful CONNACKs, reconnects included.
    pub connects: AtomicU64,
    /// Messages handed to the MQTT client.
    pub messages: AtomicU64,
    /// Readings in those messages.
    pub readings: AtomicU64,
    /// PUBACKs received.
    pub acked: AtomicU64,
    /// Payload bytes published.
    pub bytes: AtomicU64,
    /// Connection and protocol errors.
    pub errors: AtomicU64,
    /// Deliberate duplicate publishes.
    pub duplicates: AtomicU64,
    /// Deliberately garbled payloads.
    pub malformed: AtomicU64,
    /// Outages (link down on purpose).
    pub outages: AtomicU64,
    /// Reboots.
    pub reboots: AtomicU64,
    /// Readings dropped from full device backlogs.
    pub dropped: AtomicU64,
    /// Messages received (record).
    pub received: AtomicU64,
}

impl Counters {
    /// Adds to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A client connected.
    pub fn connected(&self) {
        Self::add(&self.connects, 1);
        let now = self.connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_connected.fetch_max(now, Ordering::Relaxed);
    }

    /// A client disconnected.
    pub fn disconnected(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The live progress line; hidden when stderr is not a terminal or when quiet.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts refreshing the line from `counters` four times a second.
    pub fn start(counters: Arc<Counters>, what: &'static str, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, s) = (bar.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last = (Instant::now(), 0u64, 0u64);
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let now = Instant::now();
                let msgs = Counters::get(&counters.messages) + Counters::get(&counters.received);
                let readings = Counters::get(&counters.readings);
                let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let (mr, rr) = ((msgs - last.1) as f64 / dt, (readings - last.2) as f64 / dt);
                last = (now, msgs, readings);
                b.set_message(format!(
                    "{what}: connected {}/{}  msgs {} ({:.0}/s)  readings {} ({:.0}/s)  acked {}  errors {}",
                    Counters::get(&counters.connected),
                    Counters::get(&counters.devices),
                    msgs,
                    mr,
                    readings,
                    rr,
                    Counters::get(&counters.acked),
                    Counters::get(&counters.errors),
                ));
                b.tick();
            }
        });
        Self {
            bar,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and clears the line.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

/// CPU time and memory of this process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceUsage {
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// Peak resident memory, bytes.
    pub peak_rss: u64,
    /// Resident memory now, bytes.
    pub rss: u64,
}

impl ResourceUsage {
    /// Reads `/proc/self` (Linux); zeros elsewhere.
    pub fn now() -> Self {
        let mut u = Self::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
            if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let tck = rustix::param::clock_ticks_per_second() as f64;
                let tick =
                    |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tck;
                u.user_s = tick(11);
                u.system_s = tick(12);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                let kb = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        * 1024
                };
                if line.starts_with("VmHWM:") {
                    u.peak_rss = kb(line);
                } else if line.starts_with("VmRSS:") {
                    u.rss = kb(line);
                }
            }
        }
        u
    }

    /// CPU seconds since `earlier`.
    pub fn cpu_since(&self, earlier: &Self) -> f64 {
        (self.user_s + self.system_s) - (earlier.user_s + earlier.system_s)
    }
}

/// A two-column summary table.
pub fn table(rows: &[(&str, String)]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["", "value"]);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v.clone()]);
    }
    t
}

/// Human-readable bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// A rate per second over `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> String {
    format!("{:.0}/s", n as f64 / elapsed.as_secs_f64().max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_usage_reads_proc() {
        let u = ResourceUsage::now();
        assert!(u.peak_rss > 0 && u.rss > 0);
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
