//! A real Mosquitto broker for one test: its own temp dir (config, password
//! file, persistence, log), its own free loopback port, killed on drop.
//!
//! ```no_run
//! let broker = tests::Mosquitto::start()?;
//! // connect an MQTT client to 127.0.0.1:broker.port()
//! # Ok::<(), tests::HarnessError>(())
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{HarnessError, Result};
use crate::net::{free_port, tcp_accepts};
use crate::process::{
    ChildGuard, LOG_TAIL_LINES, Restartable, log_len, log_since, log_tail, lost_port_race,
    require_binary, wait_ready,
};

/// Where Debian's `mosquitto` package installs the broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";
/// Where Debian's `mosquitto` package installs the password tool.
pub const MOSQUITTO_PASSWD_BIN: &str = "/usr/bin/mosquitto_passwd";
/// Environment variable that overrides [`MOSQUITTO_BIN`].
pub const MOSQUITTO_BIN_ENV: &str = "MOSQUITTO_BIN";
/// Environment variable that overrides [`MOSQUITTO_PASSWD_BIN`].
pub const MOSQUITTO_PASSWD_BIN_ENV: &str = "MOSQUITTO_PASSWD_BIN";

const NAME: &str = "mosquitto";
const PACKAGE: &str = "mosquitto";
/// Fresh ports tried when another process takes the chosen one first.
const START_ATTEMPTS: usize = 5;
/// How long a graceful stop may take before SIGKILL; Mosquitto writes its
/// persistence file on SIGTERM, which is quick for test-sized state.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A TLS listener next to the plain one. The harness does not make
/// certificates; the test supplies PEM files.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// CA certificate(s) used to verify client certificates (`cafile`).
    pub cafile: PathBuf,
    /// Server certificate chain (`certfile`).
    pub certfile: PathBuf,
    /// Server private key (`keyfile`).
    pub keyfile: PathBuf,
    /// Demand a client certificate (`require_certificate`). Default in
    /// [`TlsListener::new`]: false.
    pub require_certificate: bool,
}

impl TlsListener {
    /// A server-auth-only TLS listener from three PEM files.
    pub fn new(
        cafile: impl Into<PathBuf>,
        certfile: impl Into<PathBuf>,
        keyfile: impl Into<PathBuf>,
    ) -> Self {
        Self {
            cafile: cafile.into(),
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            require_certificate: false,
        }
    }
}

/// How to configure the broker. `Default` gives an anonymous, plain-TCP broker
/// sized for load tests.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// Accept clients without credentials. Default: `true`.
    pub allow_anonymous: bool,
    /// Username/password pairs written into a password file with
    /// `mosquitto_passwd`. Default: none (no password file).
    pub users: Vec<(String, String)>,
    /// An extra TLS listener on its own free port. Default: none.
    pub tls: Option<TlsListener>,
    /// QoS 1/2 messages in flight per client (`max_inflight_messages`; also
    /// the Receive Maximum offered to MQTT 5 clients). Mosquitto's own default
    /// of 20 throttles load tests. Default: `1000`. `0` means no limit.
    pub max_inflight_messages: u32,
    /// Messages queued per client beyond the in-flight ones, e.g. for a
    /// persistent session whose client is offline (`max_queued_messages`).
    /// Mosquitto's own default of 1000 drops readings in outage tests.
    /// Default: `0`, no limit.
    pub max_queued_messages: u32,
    /// Seconds between persistence saves while running (`autosave_interval`).
    /// State is always saved on a graceful [`Mosquitto::stop`]; set this only
    /// when a test needs sessions to survive [`Mosquitto::kill`].
    /// Default: `None` (Mosquitto's 1800 s).
    pub autosave_interval: Option<u32>,
    /// A password file written by someone else (e.g. `gateway devices
    /// provision`), used as is (`password_file`); it takes the place of
    /// [`MosquittoOptions::users`]. Default: none.
    pub password_file: Option<PathBuf>,
    /// An ACL file (`acl_file`). Default: none: every client may read and
    /// write every topic.
    pub acl_file: Option<PathBuf>,
    /// Raw lines appended to the generated config, for anything else.
    /// Default: none.
    pub extra_config: Vec<String>,
    /// Bound on the wait for the broker to accept TCP connections.
    /// Default: 30 s (generous: the test machines have 2 shared cores).
    pub startup_timeout: Duration,
}

impl Default for MosquittoOptions {
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            users: Vec::new(),
            tls: None,
            max_inflight_messages: 1000,
            max_queued_messages: 0,
            autosave_interval: None,
            password_file: None,
            acl_file: None,
            extra_config: Vec::new(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl MosquittoOptions {
    /// Adds a user to the password file.
    pub fn with_user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((username.into(), password.into()));
        self
    }

    /// Rejects clients without credentials.
    pub fn deny_anonymous(mut self) -> Self {
        self.allow_anonymous = false;
        self
    }

    /// Uses an existing password file instead of [`MosquittoOptions::users`].
    pub fn with_password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.password_file = Some(path.into());
        self
    }

    /// Uses an ACL file.
    pub fn with_acl_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.acl_file = Some(path.into());
        self
    }

    /// Appends a raw line to the generated config.
    pub fn with_config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Adds a TLS listener.
    pub fn with_tls(mut self, tls: TlsListener) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A running (or stopped, restartable) Mosquitto broker.
///
/// Dropping it kills the broker and removes its temp dir; if the thread is
/// panicking (a failed assertion), the broker's log tail is printed first.
#[derive(Debug)]
pub struct Mosquitto {
    // Declared first so it drops (kills the broker) before the dir is removed.
    server: Restartable,
    bin: PathBuf,
    port: u16,
    tls_port: Option<u16>,
    options: MosquittoOptions,
    config_path: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

impl Mosquitto {
    /// Starts a broker with [`MosquittoOptions::default`].
    pub fn start() -> Result<Self> {
        Self::start_with(MosquittoOptions::default())
    }

    /// Starts a broker configured by `options` and waits until it accepts TCP
    /// connections on every listener.
    pub fn start_with(options: MosquittoOptions) -> Result<Self> {
        let bin = require_binary(NAME, MOSQUITTO_BIN, PACKAGE, MOSQUITTO_BIN_ENV)?;
        let dir = tempfile::Builder::new()
            .prefix("mosquitto-")
            .tempdir()
            .map_err(|e| HarnessError::io("create a temp dir for mosquitto", e))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)
            .map_err(|e| HarnessError::io(format!("create {}", data.display()), e))?;
        if !options.users.is_empty() && options.password_file.is_none() {
            write_password_file(&dir.path().join("passwd"), &options.users)?;
        }
        let mut broker = Self {
            server: Restartable::new(NAME, STOP_GRACE),
            bin,
            port: 0,
            tls_port: None,
            config_path: dir.path().join("mosquitto.conf"),
            log_path: dir.path().join("mosquitto.log"),
            options,
            dir,
        };
        let mut attempt = 1;
        loop {
            broker.port = free_port()?;
            broker.tls_port = match broker.options.tls {
                Some(_) => Some(free_port()?),
                None => None,
            };
            broker.write_config()?;
            let offset = log_len(&broker.log_path);
            match broker.spawn_and_wait() {
                Ok(()) => return Ok(broker),
                Err(HarnessError::ExitedEarly { .. })
                    if attempt < START_ATTEMPTS
                        && lost_port_race(&log_since(&broker.log_path, offset)) =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The plain MQTT port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port on 127.0.0.1, if a TLS listener was configured.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Always `127.0.0.1`: the broker listens on loopback only.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's temp dir (config, `data/` persistence, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log file (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the broker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Whether the broker process is alive (it may have crashed on its own).
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Stops the broker gracefully (SIGTERM, so it saves sessions and queued
    /// messages to its persistence file). The port and data stay for
    /// [`Mosquitto::start_again`].
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop().map(drop)
    }

    /// Kills the broker (SIGKILL): a crash. Only what was autosaved survives.
    pub fn kill(&mut self) -> Result<()> {
        self.server.kill()
    }

    /// Starts the broker again on the same port with the same config and
    /// persistence, after [`Mosquitto::stop`] or [`Mosquitto::kill`].
    pub fn start_again(&mut self) -> Result<()> {
        self.server.check_stopped()?;
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.config_path);
        let mut child = ChildGuard::spawn(NAME, &mut cmd, &self.log_path)?;
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        wait_ready(
            NAME,
            &mut child,
            &self.log_path,
            self.options.startup_timeout,
            || {
                for &port in &ports {
                    tcp_accepts(port).map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
                }
                Ok(())
            },
        )?;
        self.server.running(child);
        Ok(())
    }

    fn write_config(&self) -> Result<()> {
        let text = render_config(
            &self.options,
            self.port,
            self.tls_port,
            self.dir.path(),
            rustix::process::geteuid().is_root(),
        );
        std::fs::write(&self.config_path, text)
            .map_err(|e| HarnessError::io(format!("write {}", self.config_path.display()), e))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- mosquitto on port {} (dir {}), last log lines ---\n{}\n---",
                self.port,
                self.dir.path().display(),
                log_tail(&self.log_path, LOG_TAIL_LINES)
            );
        }
    }
}

/// The broker config. Global options come before the listeners because
/// Mosquitto applies them to all listeners (`per_listener_settings false`).
fn render_config(
    options: &MosquittoOptions,
    port: u16,
    tls_port: Option<u16>,
    dir: &Path,
    as_root: bool,
) -> String {
    let mut c = String::from("# Written by the test harness for one test run.\n");
    // As root, Mosquitto drops to the `mosquitto` user, which cannot write into
    // a root-owned temp dir; `user root` keeps it as it was started.
    if as_root {
        c.push_str("user root\n");
    }
    let _ = writeln!(c, "allow_anonymous {}", options.allow_anonymous);
    if let Some(path) = &options.password_file {
        let _ = writeln!(c, "password_file {}", path.display());
    } else if !options.users.is_empty() {
        let _ = writeln!(c, "password_file {}", dir.join("passwd").display());
    }
    if let Some(path) = &options.acl_file {
        let _ = writeln!(c, "acl_file {}", path.display());
    }
    c.push_str("persistence true\n");
    let _ = writeln!(c, "persistence_location {}/", dir.join("data").display());
    c.push_str("persistence_file mosquitto.db\n");
    if let Some(secs) = options.autosave_interval {
        let _ = writeln!(c, "autosave_interval {secs}");
    }
    let _ = writeln!(c, "max_inflight_messages {}", options.max_inflight_messages);
    let _ = writeln!(c, "max_queued_messages {}", options.max_queued_messages);
    c.push_str("log_dest stderr\n");
    c.push_str("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
    c.push_str("connection_messages true\n");
    c.push_str("log_timestamp_format %Y-%m-%dT%H:%M:%S\n");
    for line in &options.extra_config {
        let _ = writeln!(c, "{line}");
    }
    let _ = writeln!(c, "\nlistener {port} 127.0.0.1");
    c.push_str("set_tcp_nodelay true\n");
    if let (Some(tls), Some(tls_port)) = (&options.tls, tls_port) {
        let _ = writeln!(c, "\nlistener {tls_port} 127.0.0.1");
        let _ = writeln!(c, "cafile {}", tls.cafile.display());
        let _ = writeln!(c, "certfile {}", tls.certfile.display());
        let _ = writeln!(c, "keyfile {}", tls.keyfile.display());
        let _ = writeln!(c, "require_certificate {}", tls.require_certificate);
    }
    c
}

fn write_password_file(path: &Path, users: &[(String, String)]) -> Result<()> {
    let tool = require_binary(
        "mosquitto_passwd",
        MOSQUITTO_PASSWD_BIN,
        PACKAGE,
        MOSQUITTO_PASSWD_BIN_ENV,
    )?;
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(&tool);
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg(path)
            .arg(user)
            .arg(password)
            .output()
            .map_err(|e| HarnessError::io(format!("run {}", tool.display()), e))?;
        if !out.status.success() {
            return Err(HarnessError::io(
                format!(
                    "mosquitto_passwd for user {user:?} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                std::io::Error::other("mosquitto_passwd failed"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_listener_persistence_and_limits() {
        let options = MosquittoOptions::default()
            .with_user("u", "p")
            .deny_anonymous();
        let c = render_config(&options, 1234, None, Path::new("/tmp/x"), true);
        assert!(c.contains("user root\n"));
        assert!(c.contains("listener 1234 127.0.0.1\n"));
        assert!(c.contains("allow_anonymous false\n"));
        assert!(c.contains("password_file /tmp/x/passwd\n"));
        assert!(c.contains("persistence_location /tmp/x/data/\n"));
        assert!(c.contains("max_inflight_messages 1000\n"));
        assert!(c.contains("max_queued_messages 0\n"));
        assert!(!c.contains("certfile"));
        assert!(!c.contains("acl_file"));
    }

    #[test]
    fn config_takes_given_password_and_acl_files() {
        let options = MosquittoOptions::default()
            .with_password_file("/p/passwd")
            .with_acl_file("/p/acl")
            .with_config_line("log_type debug")
            .deny_anonymous();
        let c = render_config(&options, 1, None, Path::new("/d"), false);
        assert!(c.contains("password_file /p/passwd\n"), "{c}");
        assert!(c.contains("acl_file /p/acl\n"), "{c}");
        assert!(c.contains("allow_anonymous false\n"), "{c}");
        assert!(c.contains("log_type debug\n"), "{c}");
    }

    #[test]
    fn config_adds_tls_listener_after_global_options() {
        let options =
            MosquittoOptions::default().with_tls(TlsListener::new("/c/ca", "/c/crt", "/c/key"));
        let c = render_config(&options, 1, Some(2), Path::new("/d"), false);
        assert!(!c.contains("user root"));
        let plain = c.find("listener 1 127.0.0.1").unwrap();
        let tls = c.find("listener 2 127.0.0.1").unwrap();
        assert!(c.find("persistence true").unwrap() < plain);
        assert!(plain < tls);
        assert!(c[tls..].contains("certfile /c/crt\n"));
        assert!(c[tls..].contains("require_certificate false\n"));
    }
}
