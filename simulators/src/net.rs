//! Connection plumbing shared by the commands: MQTT client options, spreading client
//! sockets over several loopback source addresses, and the open-file limit.
//!
//! **Source addresses.** One loopback address reaches about 28,000 connections to one
//! broker port before the kernel runs out of ephemeral ports. rumqttc offers no way to
//! bind a client socket to a source address, so `--source-ips` starts one small relay
//! per address in this process: the MQTT client connects to the relay on 127.0.0.1, and
//! the relay opens the broker connection from its own source address and copies bytes
//! both ways. The broker then sees connections from every address in the list. The
//! cost is a second socket pair per client and a copy through the relay.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::v5::MqttOptions;
use tokio::net::{TcpListener, TcpSocket};

/// Parses `127.0.0.1-127.0.0.20` (an inclusive range) or a comma-separated list.
pub fn parse_source_ips(s: &str) -> Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .with_context(|| format!("bad address {a:?}"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .with_context(|| format!("bad address {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65_535 {
                bail!("bad address range {part:?}");
            }
            out.extend((a..=b).map(Ipv4Addr::from));
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("bad address {part:?}"))?,
            );
        }
    }
    if out.is_empty() {
        bail!("no source addresses in {s:?}");
    }
    Ok(out)
}

/// Starts one relay per source address towards `broker`; returns the local addresses
/// clients should connect to instead of the broker, one per source address.
pub async fn start_relays(broker: SocketAddr, sources: &[Ipv4Addr]) -> Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(sources.len());
    for &src in sources {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind a relay listener")?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    // Out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(sock) = TcpSocket::new_v4() else {
                        return;
                    };
                    if sock.bind(SocketAddr::new(IpAddr::V4(src), 0)).is_err() {
                        return;
                    }
                    let _ = inbound.set_nodelay(true);
                    let Ok(mut outbound) = sock.connect(broker).await else {
                        return;
                    };
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
    }
    Ok(addrs)
}

/// Raises the soft open-file limit to the hard limit: each device is a socket (three
/// with a relay). Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum
        && lim.current != Some(max)
    {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Resolves `host:port` to one socket address.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to no address"))
}

/// How simulated clients connect.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Persistent session (clean start off, session kept for an hour) instead of a clean one.
    pub persistent: bool,
    /// Keep-alive interval. Default 60 s.
    pub keep_alive: Duration,
    /// QoS 1 messages in flight per client before publishing waits. Default 32, the firmware backlog: a device never has more packs unacknowledged.
    pub inflight: u16,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            persistent: false,
            keep_alive: Duration::from_secs(60),
            inflight: 32,
            credentials: None,
        }
    }
}

/// MQTT 5 options of one client.
pub fn mqtt_options(id: &str, addr: SocketAddr, s: &ClientSettings) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(s.keep_alive);
    o.set_clean_start(!s.persistent);
    if s.persistent {
        o.set_session_expiry_interval(Some(3600));
    }
    o.set_outgoing_inflight_upper_limit(s.inflight);
    o.set_max_packet_size(Some(1 << 20));
    // Generous: thousands of clients connect at once on a shared 2-core machine.
    o.set_connection_timeout(30);
    if let Some((u, p)) = &s.credentials {
        o.set_credentials(u, p);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_ranges() {
        let v = parse_source_ips("127.0.0.1-127.0.0.3,127.0.1.9").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[2], Ipv4Addr::new(127, 0, 0, 3));
        assert!(parse_source_ips("127.0.0.5-127.0.0.1").is_err());
        assert!(parse_source_ips("nope").is_err());
    }
}
