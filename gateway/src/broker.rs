//! The embedded MQTT broker (`--embedded-broker ADDR`) for one-box use.
//! See gateway/README.md for the choice of broker.

use std::net::SocketAddr;

/// A broker running inside the gateway process.
#[derive(Debug)]
pub struct Embedded {
    addr: SocketAddr,
}

impl Embedded {
    /// Starts the broker listening on `addr`.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        anyhow::bail!(
            "broker.embedded ({addr}): this build has no embedded broker; \
             run Mosquitto and point mqtt.url at it (see gateway/README.md)"
        )
    }

    /// Stops it.
    pub async fn stop(self) {
        tracing::info!(addr = %self.addr, "embedded broker stopped");
    }
}
