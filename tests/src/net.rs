//! Loopback ports: picking a free one and probing whether a server listens.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::error::{HarnessError, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The OS picks it (bind to port 0) and the socket is closed before returning,
/// so another process can in principle take it before the server binds; the
/// server starters detect that ("address already in use") and retry on a new
/// port.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| HarnessError::io("bind 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| HarnessError::io("read the address of a bound socket", e))?
        .port();
    Ok(port)
}

/// Whether a TCP connect to 127.0.0.1:`port` succeeds right now.
pub fn tcp_accepts(port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map(drop)
}
