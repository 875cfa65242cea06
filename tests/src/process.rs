//! Child processes owned by a test: finding the binary, spawning it with its
//! output captured to a log file, and making sure it dies and is reaped when
//! the test ends, whether it passes, fails or panics.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// How many log lines a failure message quotes.
pub const LOG_TAIL_LINES: usize = 40;

/// Returns `path` if it is an existing file, else the "install the package"
/// error the harness promises. `env_override` names an environment variable
/// that, when set, replaces `path` (for machines with the servers elsewhere).
pub fn require_binary(
    name: &'static str,
    default_path: &str,
    package: &'static str,
    env_override: &str,
) -> Result<PathBuf> {
    let path = std::env::var_os(env_override)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default_path));
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary {
            name,
            path,
            package,
        })
    }
}

/// A binary of this workspace that cargo built beside the running test:
/// `target/<profile>/<name>` (the test executable lives in
/// `target/<profile>/deps`). `cargo test --workspace` builds them; with
/// `cargo test -p tests` alone, build them first. Panics naming that
/// instruction when the file is missing.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: this test runs the real `{name}` binary; build it with \
         `cargo build -p gateway -p simulators` (`cargo test --workspace` builds it too)",
        path.display()
    );
    path
}

/// Opens `path` for appending, so a restarted server adds to the same log and
/// a failure shows what happened across restarts.
pub fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| HarnessError::io(format!("open log {}", path.display()), e))
}

/// The last `lines` lines of a log file, or a note saying why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    // Read at most the last 64 KiB: a load test's log can be large.
    const WINDOW: u64 = 64 * 1024;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(no log at {}: {e})", path.display()),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > WINDOW {
        let _ = file.seek(SeekFrom::Start(len - WINDOW));
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.read_to_end(&mut bytes) {
        return format!("(cannot read log {}: {e})", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    if all.is_empty() {
        format!("(log {} is empty)", path.display())
    } else {
        all[start..].join("\n")
    }
}

/// CPU time and peak memory of a live process, from `/proc` (Linux), for
/// benchmarks that charge each process its own cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcUsage {
    /// User plus system CPU seconds since the process started (`utime + stime`).
    pub cpu_s: f64,
    /// Peak resident set size in bytes (`VmHWM`).
    pub peak_rss_bytes: u64,
}

impl ProcUsage {
    /// The usage of process `pid`, or `None` when it is gone or `/proc` cannot be read.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain spaces; utime and
        // stime are fields 14 and 15, the 12th and 13th after it.
        let after = stat.get(stat.rfind(')')? + 2..)?;
        let mut fields = after.split_whitespace().skip(11);
        let utime: f64 = fields.next()?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let hwm_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some(Self {
            // Clock ticks: the kernel's USER_HZ is 100 on Linux.
            cpu_s: (utime + stime) / 100.0,
            peak_rss_bytes: hwm_kib * 1024,
        })
    }
}

/// A spawned child process that is killed (SIGKILL) and reaped on drop.
///
/// Dropping during a panic still runs, so a failing test never leaves a broker
/// or database behind holding ports and temp files.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: impl Into<String>, cmd: &mut Command, log: &Path) -> Result<Self> {
        let name = name.into();
        let out = open_log(log)?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io(format!("clone log handle {}", log.display()), e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawn {name} ({cmd:?})"), e))?;
        Ok(Self::new(name, child))
    }

    /// Takes ownership of an already spawned child (e.g. a service binary
    /// under test that a test spawned itself).
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self {
            name: name.into(),
            child: Some(child),
        }
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// OS process id, or `None` once the process has been reaped.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited (it is then reaped).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            None => Ok(None),
            Some(child) => child
                .try_wait()
                .map_err(|e| HarnessError::io(format!("wait for {}", self.name), e)),
        }
    }

    /// Sends SIGTERM and waits up to `grace` for a clean exit (servers flush
    /// their state to disk on SIGTERM), then falls back to SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if let Some(status) = child
            .try_wait()
            .map_err(|e| HarnessError::io(format!("wait for {}", self.name), e))?
        {
            self.child = None;
            return Ok(Some(status));
        }
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // ESRCH means it exited in between; the wait below reaps it.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Ok(Some(status));
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => return self.kill().map(|()| None),
                Err(e) => return Err(HarnessError::io(format!("wait for {}", self.name), e)),
            }
        }
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // Fails only if it already exited; the wait reaps it either way.
            let _ = child.kill();
            child
                .wait()
                .map_err(|e| HarnessError::io(format!("reap {}", self.name), e))?;
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Poll interval for readiness probes and exit waits.
pub(crate) const POLL: Duration = Duration::from_millis(25);

/// Current size of a log file (0 if absent): remember it before a spawn to
/// read back only what that run wrote.
pub(crate) fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What a log file gained after byte `offset`.
pub(crate) fn log_since(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether a failed start was a lost race for the port, worth a retry on another.
pub(crate) fn lost_port_race(log_text: &str) -> bool {
    let lower = log_text.to_ascii_lowercase();
    lower.contains("address already in use") || lower.contains("address in use")
}

/// Polls `probe` until it succeeds, the child exits, or `timeout` passes.
///
/// `probe` returns a description of why the service is not ready yet; the last
/// one goes into the error.
pub(crate) fn wait_ready(
    name: &'static str,
    child: &mut ChildGuard,
    log: &Path,
    timeout: Duration,
    mut probe: impl FnMut() -> std::result::Result<(), String>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(HarnessError::ExitedEarly {
                name,
                status: status.to_string(),
                log_tail: log_tail(log, LOG_TAIL_LINES),
            });
        }
        let detail = match probe() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if started.elapsed() >= timeout {
            return Err(HarnessError::NotReady {
                name,
                waited: started.elapsed(),
                detail,
                log_tail: log_tail(log, LOG_TAIL_LINES),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The stop / kill / start-again life of a server the harness runs (Mosquitto,
/// VictoriaMetrics, the gateway under test): the child while it runs, and how long
/// a graceful stop may take before SIGKILL. The server keeps its port, files and
/// command between runs; it spawns and hands the child over with
/// [`Restartable::running`].
#[derive(Debug)]
pub struct Restartable {
    name: &'static str,
    stop_grace: Duration,
    child: Option<ChildGuard>,
}

impl Restartable {
    /// A server named `name` (for errors), not running yet.
    pub fn new(name: &'static str, stop_grace: Duration) -> Self {
        Self {
            name,
            stop_grace,
            child: None,
        }
    }

    /// The child of a run that just started (and is ready).
    pub fn running(&mut self, child: ChildGuard) {
        self.child = Some(child);
    }

    /// Whether the process is alive (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// The running child, if any.
    pub fn child_mut(&mut self) -> Option<&mut ChildGuard> {
        self.child.as_mut()
    }

    /// The running child's process id, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ChildGuard::id)
    }

    /// SIGTERM, then SIGKILL after the stop grace: a graceful stop (servers save
    /// their state). The exit status, or `None` if it had to be killed or was not
    /// running.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.take() {
            Some(mut child) => child.terminate(self.stop_grace),
            None => Ok(None),
        }
    }

    /// SIGKILL and reap: a crash.
    pub fn kill(&mut self) -> Result<()> {
        match self.child.take() {
            Some(mut child) => child.kill(),
            None => Ok(()),
        }
    }

    /// The error for starting a server again while it runs; `Ok` when it is stopped
    /// (or exited on its own: that run is reaped).
    pub fn check_stopped(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && child.try_wait()?.is_some()
        {
            self.child = None;
        }
        if self.child.is_some() {
            return Err(HarnessError::State {
                name: self.name,
                detail: "start_again called while it is running".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_usage() {
        let usage = ProcUsage::of(std::process::id()).expect("/proc of this process");
        assert!(usage.cpu_s >= 0.0);
        assert!(usage.peak_rss_bytes > 0);
        assert_eq!(ProcUsage::of(u32::MAX), None);
    }
}
