//! Wall-clock time on a board that only has a monotonic timer.
//!
//! [`Clock`] maps monotonic milliseconds since boot to Unix milliseconds once an offset is
//! known; until then [`Clock::unix_ms`] is `None` and packs carry relative times that the
//! gateway stamps at receipt. The offset comes from SNTP: [`sntp`] is a sans-IO encoder and
//! decoder of the 48-byte NTP packet (RFC 4330 / RFC 5905); the board sends the request
//! over UDP port 123 and hands the reply back.

/// Monotonic-to-Unix mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    /// `unix_ms - mono_ms`, once known.
    offset_ms: Option<i64>,
}

impl Clock {
    /// A clock that does not know the time.
    pub const fn new() -> Self {
        Self { offset_ms: None }
    }

    /// Learns that monotonic `now_ms` is Unix `unix_ms`.
    pub fn set(&mut self, now_ms: u64, unix_ms: u64) {
        self.offset_ms = Some(unix_ms as i64 - now_ms as i64);
    }

    /// Forgets the time (e.g. after a detected clock jump).
    pub fn clear(&mut self) {
        self.offset_ms = None;
    }

    /// True once the time is known.
    pub fn is_set(&self) -> bool {
        self.offset_ms.is_some()
    }

    /// Unix ms at monotonic `now_ms`, if known.
    pub fn unix_ms(&self, now_ms: u64) -> Option<u64> {
        let off = self.offset_ms?;
        u64::try_from(now_ms as i64 + off).ok()
    }
}

/// SNTP client packets, without I/O.
///
/// ```
/// use firmware::clock::sntp;
/// let (request, pending) = sntp::request(1_000);
/// assert_eq!(request.len(), sntp::PACKET_LEN);
/// // ... send `request` to udp/123, receive `reply` at monotonic 1_020 ms ...
/// # let reply = sntp::fake_reply(&request, 1_700_000_000_000, 1_700_000_000_001);
/// let unix_ms = pending.complete(&reply, 1_020).unwrap();
/// assert!(unix_ms > 1_700_000_000_000);
/// ```
pub mod sntp {
    /// Bytes in an NTP packet without extensions.
    pub const PACKET_LEN: usize = 48;
    /// UDP port of NTP servers.
    pub const PORT: u16 = 123;
    /// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
    const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;
    /// Era-0 NTP seconds below this are taken as era 1 (after 2036-02-07): the firmware
    /// cannot run before it was written (this is 2020-01-01).
    const ERA_PIVOT_S: u64 = 3_786_825_600;

    const MODE_CLIENT: u8 = 3;
    const MODE_SERVER: u8 = 4;
    const VERSION: u8 = 4;

    /// Why a reply is not usable.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub enum SntpError {
        /// Shorter than 48 bytes.
        #[error("SNTP reply shorter than 48 bytes")]
        Short,
        /// Not a server-mode reply of version 3 or 4.
        #[error("not an NTPv3/v4 server reply")]
        NotServerReply,
        /// The server is not synchronised (leap indicator 3 or stratum 0, a kiss-o'-death)
        /// or is beyond stratum 15.
        #[error("server not synchronised (kiss-o'-death or alarm)")]
        Unsynchronised,
        /// The reply does not answer our request (originate timestamp mismatch): a stray
        /// or spoofed packet.
        #[error("reply does not match the request")]
        Mismatch,
        /// The server's transmit timestamp is zero.
        #[error("server transmit timestamp is zero")]
        NoTime,
        /// The reply came back before the request left (caller passed times out of order).
        #[error("reply timestamp before request")]
        OutOfOrder,
    }

    /// A request sent, waiting for its reply.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Pending {
        sent_ms: u64,
        /// The transmit timestamp we put in the request; the server echoes it as originate.
        nonce: [u8; 8],
    }

    /// Builds a client request sent at monotonic `now_ms`.
    ///
    /// The client does not know the time, so its transmit timestamp is not a time but a
    /// nonce derived from `now_ms`; the server echoes it, which ties the reply to this
    /// request (RFC 4330 recommends exactly this check).
    pub fn request(now_ms: u64) -> ([u8; PACKET_LEN], Pending) {
        let mut p = [0u8; PACKET_LEN];
        p[0] = (VERSION << 3) | MODE_CLIENT;
        // Mixed so that two boots with the same uptime do not send equal nonces to a
        // NAT'd server in a row; this is a match check, not security.
        let nonce = (now_ms ^ 0x5DEE_CE66_D1CE_4E5B).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let nonce = nonce.to_be_bytes();
        p[40..48].copy_from_slice(&nonce);
        (
            p,
            Pending {
                sent_ms: now_ms,
                nonce,
            },
        )
    }

    impl Pending {
        /// Decodes the `reply` received at monotonic `now_ms`; returns the Unix time in ms
        /// at `now_ms`: the server's transmit time plus half the round trip not spent in
        /// the server.
        pub fn complete(&self, reply: &[u8], now_ms: u64) -> Result<u64, SntpError> {
            if reply.len() < PACKET_LEN {
                return Err(SntpError::Short);
            }
            let version = (reply[0] >> 3) & 0x7;
            let mode = reply[0] & 0x7;
            if mode != MODE_SERVER || !(3..=4).contains(&version) {
                return Err(SntpError::NotServerReply);
            }
            let leap = reply[0] >> 6;
            let stratum = reply[1];
            if leap == 3 || stratum == 0 || stratum > 15 {
                return Err(SntpError::Unsynchronised);
            }
            if reply[24..32] != self.nonce {
                return Err(SntpError::Mismatch);
            }
            let received = timestamp_ms(&reply[32..40]);
            let transmitted = timestamp_ms(&reply[40..48]).ok_or(SntpError::NoTime)?;
            let round_trip = now_ms
                .checked_sub(self.sent_ms)
                .ok_or(SntpError::OutOfOrder)?;
            let in_server = received.map_or(0, |r| transmitted.saturating_sub(r));
            let one_way = round_trip.saturating_sub(in_server) / 2;
            Ok(transmitted + one_way)
        }
    }

    /// An NTP timestamp (32.32 fixed point seconds since 1900) as Unix ms; `None` for 0.
    fn timestamp_ms(b: &[u8]) -> Option<u64> {
        let secs = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let frac = u64::from(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
        if secs == 0 && frac == 0 {
            return None;
        }
        let secs = if secs < ERA_PIVOT_S {
            secs + (1 << 32)
        } else {
            secs
        };
        let unix_s = secs.checked_sub(NTP_UNIX_OFFSET_S)?;
        // Rounded, so that a time written from whole ms reads back the same.
        Some(unix_s * 1000 + ((frac * 1000 + (1 << 31)) >> 32))
    }

    fn ntp_timestamp(unix_ms: u64) -> [u8; 8] {
        let secs = ((unix_ms / 1000 + NTP_UNIX_OFFSET_S) & 0xFFFF_FFFF) as u32;
        let frac = (((unix_ms % 1000) << 32) / 1000) as u32;
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&secs.to_be_bytes());
        b[4..].copy_from_slice(&frac.to_be_bytes());
        b
    }

    /// A server reply to `request` (for tests and simulated networks): received at
    /// `rx_unix_ms`, sent at `tx_unix_ms`, stratum 2.
    pub fn fake_reply(
        request: &[u8; PACKET_LEN],
        rx_unix_ms: u64,
        tx_unix_ms: u64,
    ) -> [u8; PACKET_LEN] {
        let mut p = [0u8; PACKET_LEN];
        p[0] = (VERSION << 3) | MODE_SERVER;
        p[1] = 2;
        p[24..32].copy_from_slice(&request[40..48]);
        p[32..40].copy_from_slice(&ntp_timestamp(rx_unix_ms));
        p[40..48].copy_from_slice(&ntp_timestamp(tx_unix_ms));
        p
    }
}
