//! MQTT keep-alive bookkeeping: when to send PINGREQ and when to give the broker up.
//!
//! MQTT requires the client to send some packet within every keep-alive interval;
//! the broker closes the connection after 1.5 intervals of silence (and then
//! publishes the last will). We ping after half an interval without sending, which
//! leaves room for a slow link, and declare the connection dead when nothing at all
//! came back for a whole interval after a ping: on Wi-Fi a half-open TCP connection
//! otherwise looks healthy until the next write times out, minutes later.

/// What the session should do now about keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Nothing due.
    Idle,
    /// Send a PINGREQ now.
    SendPing,
    /// The broker has been silent for too long: drop the connection.
    Dead,
}

/// Keep-alive state of one connection. Times are milliseconds since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    interval_ms: u64,
    last_tx_ms: u64,
    /// When the unanswered PINGREQ went out.
    ping_sent_ms: Option<u64>,
}

impl KeepAlive {
    /// Starts the bookkeeping for a connection that came up at `now_ms`, with the
    /// keep-alive interval agreed in CONNECT/CONNACK (in ms of the caller's clock).
    /// An interval of 0 disables it.
    pub fn new(interval_ms: u64, now_ms: u64) -> Self {
        Self {
            interval_ms,
            last_tx_ms: now_ms,
            ping_sent_ms: None,
        }
    }

    /// A packet went to the broker.
    pub fn on_sent(&mut self, now_ms: u64) {
        self.last_tx_ms = self.last_tx_ms.max(now_ms);
    }

    /// A PINGREQ went to the broker.
    pub fn on_ping_sent(&mut self, now_ms: u64) {
        self.on_sent(now_ms);
        self.ping_sent_ms = Some(now_ms);
    }

    /// A packet came from the broker: it is alive.
    pub fn on_received(&mut self) {
        self.ping_sent_ms = None;
    }

    /// What to do at `now_ms`.
    pub fn poll(&self, now_ms: u64) -> KeepAliveAction {
        if self.interval_ms == 0 {
            return KeepAliveAction::Idle;
        }
        match self.ping_sent_ms {
            Some(sent) if now_ms >= sent + self.interval_ms => KeepAliveAction::Dead,
            Some(_) => KeepAliveAction::Idle,
            None if now_ms >= self.last_tx_ms + self.interval_ms / 2 => KeepAliveAction::SendPing,
            None => KeepAliveAction::Idle,
        }
    }

    /// Next instant at which [`poll`](Self::poll) may answer something new.
    pub fn next_deadline(&self) -> u64 {
        if self.interval_ms == 0 {
            return u64::MAX;
        }
        match self.ping_sent_ms {
            Some(sent) => sent + self.interval_ms,
            None => self.last_tx_ms + self.interval_ms / 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_after_half_an_idle_interval() {
        let mut k = KeepAlive::new(30_000, 1_000);
        assert_eq!(k.poll(15_999), KeepAliveAction::Idle);
        assert_eq!(k.next_deadline(), 16_000);
        assert_eq!(k.poll(16_000), KeepAliveAction::SendPing);
        k.on_ping_sent(16_000);
        assert_eq!(k.poll(16_001), KeepAliveAction::Idle);
        k.on_received();
        assert_eq!(k.next_deadline(), 31_000);
    }

    #[test]
    fn traffic_postpones_the_ping() {
        let mut k = KeepAlive::new(10_000, 0);
        k.on_sent(4_000);
        assert_eq!(k.poll(5_000), KeepAliveAction::Idle);
        assert_eq!(k.poll(9_000), KeepAliveAction::SendPing);
        // An out-of-order earlier timestamp never moves the schedule back.
        k.on_sent(1_000);
        assert_eq!(k.next_deadline(), 9_000);
    }

    #[test]
    fn an_unanswered_ping_kills_the_connection() {
        let mut k = KeepAlive::new(10_000, 0);
        k.on_ping_sent(5_000);
        assert_eq!(k.next_deadline(), 15_000);
        assert_eq!(k.poll(14_999), KeepAliveAction::Idle);
        assert_eq!(k.poll(15_000), KeepAliveAction::Dead);
    }

    #[test]
    fn zero_interval_disables_keepalive() {
        let k = KeepAlive::new(0, 0);
        assert_eq!(k.poll(u64::MAX / 2), KeepAliveAction::Idle);
        assert_eq!(k.next_deadline(), u64::MAX);
    }
}
