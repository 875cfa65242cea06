//! The one QoS 1 publish in flight, and the rule for leaving the backlog.
//!
//! The link publishes `backlog.oldest()` and removes it only when the broker's PUBACK
//! for that packet identifier arrives. One pack at a time keeps the order on the wire
//! the order of the backlog (a device sends a pack every few seconds; one round trip
//! per pack is plenty) and keeps rust-mqtt's ordered-topic caveats out of play.
//!
//! While a pack is in flight the node keeps sampling; if the backlog overflows in the
//! meantime it drops its oldest pack, which may be the one in flight. A fingerprint of
//! the published bytes tells, when the PUBACK comes, whether the oldest pack is still
//! the one that was sent, so an acknowledgement never removes a pack the broker has
//! not seen.

/// A published pack awaiting its PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    packet_id: u16,
    fingerprint: u64,
    sent_ms: u64,
}

/// What a PUBACK means for the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The acknowledged pack is the backlog's oldest: remove it.
    AckOldest,
    /// The acknowledged pack was dropped by overflow meanwhile: nothing to remove.
    Stale,
    /// Not the packet identifier in flight (a birth message's PUBACK, a late duplicate).
    NotOurs,
}

/// In-flight tracking for the backlog's publishes on one connection.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    in_flight: Option<InFlight>,
}

impl Outbox {
    /// Nothing in flight.
    pub const fn new() -> Self {
        Self { in_flight: None }
    }

    /// Whether the next pack may be published.
    pub fn can_send(&self) -> bool {
        self.in_flight.is_none()
    }

    /// The oldest pack went out with `packet_id` at `now_ms`.
    pub fn on_published(&mut self, packet_id: u16, pack: &[u8], now_ms: u64) {
        self.in_flight = Some(InFlight {
            packet_id,
            fingerprint: fingerprint(pack),
            sent_ms: now_ms,
        });
    }

    /// A PUBACK for `packet_id` arrived; `oldest` is the backlog's oldest pack now.
    pub fn on_puback(&mut self, packet_id: u16, oldest: Option<&[u8]>) -> AckOutcome {
        match self.in_flight {
            Some(f) if f.packet_id == packet_id => {
                self.in_flight = None;
                if oldest.is_some_and(|p| fingerprint(p) == f.fingerprint) {
                    AckOutcome::AckOldest
                } else {
                    AckOutcome::Stale
                }
            }
            _ => AckOutcome::NotOurs,
        }
    }

    /// The broker refused the publish with `packet_id` (an error reason code): it stays
    /// in the backlog and goes out again on the next connection.
    pub fn on_rejected(&mut self, packet_id: u16) -> bool {
        if self.in_flight.is_some_and(|f| f.packet_id == packet_id) {
            self.in_flight = None;
            true
        } else {
            false
        }
    }

    /// When the PUBACK becomes overdue, given how long the broker may take.
    pub fn deadline(&self, ack_timeout_ms: u64) -> u64 {
        self.in_flight
            .map_or(u64::MAX, |f| f.sent_ms.saturating_add(ack_timeout_ms))
    }

    /// Forgets the in-flight publish: the connection is gone and the pack, still the
    /// backlog's oldest, will be published again on the next one.
    pub fn clear(&mut self) {
        self.in_flight = None;
    }
}

/// FNV-1a over the bytes, with the length folded in. Packs differ at least in their
/// sequence number, so a collision between the in-flight pack and its successor is
/// not a practical concern.
fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (bytes.len() as u64).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puback_for_the_oldest_removes_it() {
        let mut o = Outbox::new();
        assert!(o.can_send());
        o.on_published(7, b"pack-0", 100);
        assert!(!o.can_send());
        assert_eq!(o.deadline(5_000), 5_100);
        assert_eq!(o.on_puback(7, Some(b"pack-0")), AckOutcome::AckOldest);
        assert!(o.can_send());
        assert_eq!(o.deadline(5_000), u64::MAX);
    }

    #[test]
    fn other_packet_ids_are_not_ours() {
        let mut o = Outbox::new();
        o.on_published(7, b"pack-0", 0);
        assert_eq!(o.on_puback(1, Some(b"pack-0")), AckOutcome::NotOurs);
        assert!(!o.can_send());
    }

    #[test]
    fn a_pack_dropped_by_overflow_is_not_acknowledged_in_its_successors_place() {
        let mut o = Outbox::new();
        o.on_published(3, b"pack-0", 0);
        assert_eq!(o.on_puback(3, Some(b"pack-1")), AckOutcome::Stale);
        assert!(o.can_send());
        o.on_published(4, b"pack-1", 0);
        assert_eq!(o.on_puback(4, None), AckOutcome::Stale);
    }

    #[test]
    fn rejection_and_reconnect_free_the_slot() {
        let mut o = Outbox::new();
        o.on_published(3, b"x", 0);
        assert!(!o.on_rejected(4));
        assert!(o.on_rejected(3));
        assert!(o.can_send());
        o.on_published(5, b"x", 0);
        o.clear();
        assert!(o.can_send());
        assert_eq!(o.on_puback(5, Some(b"x")), AckOutcome::NotOurs);
    }

    #[test]
    fn fingerprint_tells_apart_close_packs() {
        assert_ne!(fingerprint(b"seq=1"), fingerprint(b"seq=2"));
        assert_ne!(fingerprint(b""), fingerprint(b"\0"));
    }
}
