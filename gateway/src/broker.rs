//! The bundled MQTT broker (`--embedded-broker ADDR`) for one-box use: a
//! Mosquitto the gateway starts, configures and stops itself, with its
//! persistence under `<data_dir>/broker` so that sessions and queued messages
//! survive restarts. It is a supervised child process, not an in-process
//! library: gateway/README.md explains why (no Rust broker available here
//! offers MQTT 5 with retained messages, shared subscriptions and a clean
//! stop). The child gets SIGTERM if the gateway dies, so it never outlives it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::config::BrokerAuth;

/// Where Debian's `mosquitto` package installs the broker.
pub const DEFAULT_BIN: &str = "/usr/sbin/mosquitto";
/// Environment variable naming another broker binary.
pub const BIN_ENV: &str = "GATEWAY_MOSQUITTO_BIN";

/// How long the broker may take to listen, and to save its state on stop.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A broker started by the gateway.
#[derive(Debug)]
pub struct Embedded {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Embedded {
    /// Starts Mosquitto listening on `addr` with its state in
    /// `<data_dir>/broker` and the client authentication `auth`, and waits
    /// until it accepts connections.
    pub async fn start(
        addr: SocketAddr,
        data_dir: &Path,
        auth: &BrokerAuth,
    ) -> anyhow::Result<Self> {
        let bin = std::env::var_os(BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
        if !bin.is_file() {
            anyhow::bail!(
                "broker.embedded: the bundled broker is Mosquitto, not found at {} \
                 (install it with `apt-get install mosquitto`, or set {BIN_ENV})",
                bin.display()
            );
        }
        let dir = data_dir.join("broker");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        let as_root = rustix::process::geteuid().is_root();
        // Mosquitto resolves relative paths against its own working directory.
        let auth = BrokerAuth {
            password_file: auth.password_file.as_deref().map(absolute).transpose()?,
            acl_file: auth.acl_file.as_deref().map(absolute).transpose()?,
            allow_anonymous: auth.allow_anonymous,
        };
        if auth.password_file.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the bundled broker accepts clients without credentials beyond loopback (broker.allow_anonymous = true)");
        } else if auth.password_file.is_some() && auth.allow_anonymous {
            tracing::warn!(%addr, "the bundled broker also accepts clients without credentials (broker.allow_anonymous = true)");
        }
        std::fs::write(&conf, config_with_auth(addr, &dir, as_root, &auth))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one async-signal-safe system call (prctl).
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "broker.embedded: Mosquitto exited at start ({status}); its log {}:\n{}",
                    log.display(),
                    tail(&log)
                );
            }
            if tokio::net::TcpStream::connect(connect_addr(addr))
                .await
                .is_ok()
            {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                anyhow::bail!(
                    "broker.embedded: Mosquitto not listening on {addr} after {START_TIMEOUT:?}; log:\n{}",
                    tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(
            %addr,
            state = %dir.display(),
            password_file = %auth.password_file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
            acl_file = %auth.acl_file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
            "bundled MQTT broker (Mosquitto) started"
        );
        Ok(Self { child, addr, log })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the broker gracefully (SIGTERM: it saves sessions and queued
    /// messages), killing it if it takes longer than 15 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(_)) => tracing::info!(addr = %self.addr, "bundled MQTT broker stopped"),
            _ => {
                tracing::warn!(log = %self.log.display(), "bundled MQTT broker did not stop in time; killing it");
                let _ = self.child.kill().await;
            }
        }
    }
}

/// Where to connect to reach a listener on `addr` (an unspecified address
/// listens on loopback too).
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

#[cfg(test)]
fn config_text(addr: SocketAddr, dir: &Path, as_root: bool) -> String {
    config_with_auth(addr, dir, as_root, &BrokerAuth::anonymous())
}

fn config_with_auth(addr: SocketAddr, dir: &Path, as_root: bool, auth: &BrokerAuth) -> String {
    let host = if addr.ip().is_unspecified() {
        String::new()
    } else {
        format!(" {}", addr.ip())
    };
    // Started as root, Mosquitto would switch to the `mosquitto` user and
    // lose access to the gateway's data dir; it stays who the gateway is.
    let user = if as_root { "user root\n" } else { "" };
    let access = match &auth.password_file {
        None => format!(
            "# One-box use: devices on the local network publish without credentials.\n\
             # Provision a device registry (`gateway devices provision`) for anything else.\n\
             allow_anonymous {}\n",
            auth.allow_anonymous
        ),
        Some(passwd) => {
            let acl = auth
                .acl_file
                .as_ref()
                .map(|a| format!("acl_file {}\n", a.display()))
                .unwrap_or_default();
            format!(
                "# Clients log in with the accounts of `gateway devices provision`.\n\
                 allow_anonymous {}\n\
                 password_file {}\n\
                 {acl}",
                auth.allow_anonymous,
                passwd.display()
            )
        }
    };
    format!(
        "# Written by the gateway at each start (--embedded-broker); edits are lost.\n\
         {user}listener {port}{host}\n\
         {access}\
         persistence true\n\
         persistence_location {dir}/\n\
         autosave_interval 60\n\
         # In-flight window per client, and no cap on what a persistent session queues\n\
         # while the gateway is away (the gateway's ack-after-commit relies on it).\n\
         max_inflight_messages 1000\n\
         max_queued_messages 0\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n",
        port = addr.port(),
        dir = dir.display()
    )
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_listens_where_asked_and_persists_in_the_data_dir() {
        let text = config_text(
            "127.0.0.1:18830".parse().unwrap(),
            Path::new("/d/broker"),
            true,
        );
        assert!(text.contains("listener 18830 127.0.0.1\n"), "{text}");
        assert!(text.contains("user root\n"));
        assert!(text.contains("persistence_location /d/broker/\n"));
        let any = config_text("0.0.0.0:1883".parse().unwrap(), Path::new("/d"), false);
        assert!(any.contains("listener 1883\n"), "{any}");
        assert!(!any.contains("user root"));
        assert!(any.contains("allow_anonymous true\n"), "{any}");
        assert!(!any.contains("password_file"), "{any}");
    }

    #[test]
    fn config_with_a_password_file_refuses_anonymous_clients() {
        let auth = BrokerAuth {
            password_file: Some("/etc/gw/passwd".into()),
            acl_file: Some("/etc/gw/acl".into()),
            allow_anonymous: false,
        };
        let text = config_with_auth(
            "0.0.0.0:1883".parse().unwrap(),
            Path::new("/d"),
            false,
            &auth,
        );
        assert!(text.contains("allow_anonymous false\n"), "{text}");
        assert!(text.contains("password_file /etc/gw/passwd\n"), "{text}");
        assert!(text.contains("acl_file /etc/gw/acl\n"), "{text}");
        assert!(!text.contains("allow_anonymous true"), "{text}");
    }
}
