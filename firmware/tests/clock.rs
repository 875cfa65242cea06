//! Clock offset and the SNTP packet codec.

use firmware::clock::Clock;
use firmware::clock::sntp::{self, PACKET_LEN, SntpError};

#[test]
fn clock_maps_monotonic_to_unix_once_set() {
    let mut c = Clock::new();
    assert!(!c.is_set());
    assert_eq!(c.unix_ms(5_000), None);
    c.set(5_000, 1_795_384_800_000);
    assert_eq!(c.unix_ms(5_000), Some(1_795_384_800_000));
    assert_eq!(c.unix_ms(65_500), Some(1_795_384_860_500));
    // Times before the offset's anchor still map (packs closed before the answer came).
    assert_eq!(c.unix_ms(0), Some(1_795_384_795_000));
    c.clear();
    assert_eq!(c.unix_ms(5_000), None);
}

#[test]
fn request_is_an_ntpv4_client_packet() {
    let (req, _) = sntp::request(1_234);
    assert_eq!(req.len(), PACKET_LEN);
    assert_eq!(req[0], 0x23, "LI 0, version 4, mode 3");
    assert!(req[1..40].iter().all(|&b| b == 0));
    assert_ne!(
        &req[40..48],
        &[0u8; 8],
        "transmit timestamp carries the nonce"
    );
    let (other, _) = sntp::request(1_235);
    assert_ne!(req[40..48], other[40..48]);
}

/// A reply built by hand from RFC 5905's layout, not by the crate's helper.
fn reply_by_hand(req: &[u8; PACKET_LEN], rx: (u32, u32), tx: (u32, u32)) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 0x24; // LI 0, version 4, mode 4 (server)
    p[1] = 1; // stratum 1
    p[12..16].copy_from_slice(b"GPS\0");
    p[24..32].copy_from_slice(&req[40..48]);
    p[32..36].copy_from_slice(&rx.0.to_be_bytes());
    p[36..40].copy_from_slice(&rx.1.to_be_bytes());
    p[40..44].copy_from_slice(&tx.0.to_be_bytes());
    p[44..48].copy_from_slice(&tx.1.to_be_bytes());
    p
}

/// 2026-11-22T22:00:00Z in NTP seconds (era 0): Unix 1 795 384 800 + 2 208 988 800.
const NTP_S: u32 = 4_004_373_600;

#[test]
fn reply_gives_server_time_plus_half_the_network_delay() {
    let (req, pending) = sntp::request(10_000);
    // Server received at .000 and answered at .010 (half a second in fraction: 2^31).
    let reply = reply_by_hand(&req, (NTP_S, 0), (NTP_S, 0x0290_0000));
    // Round trip 110 ms, 10 ms of it in the server: 50 ms each way.
    let unix_ms = pending.complete(&reply, 10_110).unwrap();
    assert_eq!(unix_ms, 1_795_384_800_010 + 50);
    let mut c = Clock::new();
    c.set(10_110, unix_ms);
    assert_eq!(c.unix_ms(10_110), Some(1_795_384_800_060));
}

#[test]
fn fractions_of_a_second_are_converted() {
    let (req, pending) = sntp::request(0);
    let reply = reply_by_hand(&req, (NTP_S, 1 << 31), (NTP_S, 1 << 31));
    assert_eq!(pending.complete(&reply, 0), Ok(1_795_384_800_500));
}

#[test]
fn era_one_timestamps_after_2036() {
    // 2040-01-01T00:00:00Z = Unix 2 208 988 800, NTP 4 417 977 600 = 2^32 + 123 010 304.
    let (req, pending) = sntp::request(0);
    let reply = reply_by_hand(&req, (123_010_304, 0), (123_010_304, 0));
    assert_eq!(pending.complete(&reply, 0), Ok(2_208_988_800_000));
}

#[test]
fn bad_replies_are_refused() {
    let (req, pending) = sntp::request(500);
    let good = reply_by_hand(&req, (NTP_S, 0), (NTP_S, 0));
    assert!(pending.complete(&good, 600).is_ok());

    assert_eq!(pending.complete(&good[..47], 600), Err(SntpError::Short));

    let mut client_mode = good;
    client_mode[0] = 0x23;
    assert_eq!(
        pending.complete(&client_mode, 600),
        Err(SntpError::NotServerReply)
    );

    let mut kiss = good;
    kiss[1] = 0; // stratum 0: kiss-o'-death ("RATE", "DENY")
    assert_eq!(pending.complete(&kiss, 600), Err(SntpError::Unsynchronised));

    let mut alarm = good;
    alarm[0] |= 0xC0; // leap indicator 3: clock not synchronised
    assert_eq!(
        pending.complete(&alarm, 600),
        Err(SntpError::Unsynchronised)
    );

    let (other_req, _) = sntp::request(501);
    let stray = reply_by_hand(&other_req, (NTP_S, 0), (NTP_S, 0));
    assert_eq!(pending.complete(&stray, 600), Err(SntpError::Mismatch));

    let no_time = reply_by_hand(&req, (NTP_S, 0), (0, 0));
    assert_eq!(pending.complete(&no_time, 600), Err(SntpError::NoTime));

    assert_eq!(pending.complete(&good, 499), Err(SntpError::OutOfOrder));
}

#[test]
fn fake_reply_round_trips() {
    let (req, pending) = sntp::request(42);
    let reply = sntp::fake_reply(&req, 1_795_384_800_000, 1_795_384_800_002);
    assert_eq!(pending.complete(&reply, 42), Ok(1_795_384_800_002));
}
