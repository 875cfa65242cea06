//! PMS5003 frame parser and driver: good frames, bad checksums, bad lengths, truncation,
//! garbage between frames, and the fan's warm-up.

use std::collections::VecDeque;
use std::convert::Infallible;

use firmware::drivers::pms5003::{
    FRAME_LEN, Frame, FrameError, FrameParser, Pms5003, Pms5003Config,
};
use firmware::drivers::{Fault, Metric, Readings, Sensor, SensorStatus, metric};

fn frame(pm25: u16) -> Frame {
    Frame {
        pm_cf1: [pm25 - 2, pm25 + 1, pm25 + 5],
        pm_atm: [pm25 - 3, pm25, pm25 + 4],
        counts: [1200, 380, 60, 9, 2, 1],
        reserved: 0x9700,
    }
}

/// A frame assembled by hand from the data sheet's layout (PM2.5 atm = 8 ug/m3), with
/// its checksum summed independently (0x021E), so the parser is not only checked against
/// its own encoder.
const HAND_MADE: [u8; 32] = [
    0x42, 0x4D, 0x00, 0x1C, 0x00, 0x05, 0x00, 0x08, 0x00, 0x09, 0x00, 0x05, 0x00, 0x08, 0x00, 0x09,
    0x03, 0x6F, 0x01, 0x0B, 0x00, 0x2E, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x97, 0x00, 0x02, 0x1E,
];

fn feed_all(p: &mut FrameParser, bytes: &[u8]) -> Vec<Result<Frame, FrameError>> {
    bytes.iter().filter_map(|&b| p.feed(b)).collect()
}

#[test]
fn decodes_a_hand_made_frame() {
    let mut p = FrameParser::new();
    let out = feed_all(&mut p, &HAND_MADE);
    assert_eq!(out.len(), 1);
    let f = out[0].unwrap();
    assert_eq!(f.pm_atm, [5, 8, 9]);
    assert_eq!(f.pm_cf1, [5, 8, 9]);
    assert_eq!(f.counts, [879, 267, 46, 4, 0, 0]);
    // Our encoder writes the same bytes back.
    assert_eq!(f.to_bytes(), HAND_MADE);
}

#[test]
fn feeds_byte_at_a_time_and_in_chunks_alike() {
    let mut stream = Vec::new();
    for pm in [10, 20, 30] {
        stream.extend_from_slice(&frame(pm).to_bytes());
    }
    let mut p = FrameParser::new();
    let one_by_one: Vec<_> = feed_all(&mut p, &stream);
    assert_eq!(one_by_one.len(), 3);
    assert!(one_by_one.iter().all(Result::is_ok));
    let mut p = FrameParser::new();
    let last = stream.chunks(7).filter_map(|c| p.feed_all(c)).last();
    assert_eq!(last, Some(frame(30)));
    assert_eq!(p.stats().frames, 3);
}

#[test]
fn rejects_a_bad_checksum_and_keeps_going() {
    let mut bad = frame(40).to_bytes();
    bad[13] ^= 0x01; // one bit flipped in PM2.5 atm
    let mut stream = bad.to_vec();
    stream.extend_from_slice(&frame(41).to_bytes());
    let mut p = FrameParser::new();
    let out = feed_all(&mut p, &stream);
    assert_eq!(out, vec![Err(FrameError::Checksum), Ok(frame(41))]);
    assert_eq!(p.stats().checksum_errors, 1);
    assert_eq!(p.stats().frames, 1);
}

#[test]
fn a_corrupted_checksum_byte_is_rejected_too() {
    let mut bad = frame(40).to_bytes();
    bad[31] = bad[31].wrapping_add(1);
    let mut p = FrameParser::new();
    assert_eq!(feed_all(&mut p, &bad), vec![Err(FrameError::Checksum)]);
}

#[test]
fn rejects_a_bad_length_field() {
    let mut bad = frame(40).to_bytes();
    bad[3] = 0x14; // PMS7003-style length 20
    let mut stream = bad.to_vec();
    stream.extend_from_slice(&frame(42).to_bytes());
    let mut p = FrameParser::new();
    let out = feed_all(&mut p, &stream);
    assert_eq!(out.first(), Some(&Err(FrameError::Length)));
    assert_eq!(out.last(), Some(&Ok(frame(42))));
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 1);
}

#[test]
fn resynchronises_after_a_truncated_frame() {
    // The UART lost the end of a frame: the next frame starts inside what the parser
    // believes is the first one. The good frame must still come out.
    let mut stream = frame(50).to_bytes()[..17].to_vec();
    stream.extend_from_slice(&frame(51).to_bytes());
    stream.extend_from_slice(&frame(52).to_bytes());
    let mut p = FrameParser::new();
    let out = feed_all(&mut p, &stream);
    let good: Vec<_> = out.iter().filter_map(|r| r.ok()).collect();
    assert_eq!(good, vec![frame(51), frame(52)]);
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1);
}

#[test]
fn truncated_right_after_the_header() {
    let mut stream = vec![0x42, 0x4D, 0x00];
    stream.extend_from_slice(&frame(60).to_bytes());
    let mut p = FrameParser::new();
    let good: Vec<_> = feed_all(&mut p, &stream)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    assert_eq!(good, vec![frame(60)]);
}

#[test]
fn skips_garbage_including_false_headers() {
    let mut stream = vec![0x00, 0xFF, 0x42, 0x42, 0x4D, 0x42, 0x13, 0x37, 0x4D, 0x42];
    stream.extend_from_slice(&frame(70).to_bytes());
    stream.extend_from_slice(&[0x42, 0x4D, 0x00, 0x1C, 0x01]); // a frame cut off at the end
    let mut p = FrameParser::new();
    let good: Vec<_> = feed_all(&mut p, &stream)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    assert_eq!(good, vec![frame(70)]);
    assert!(p.stats().skipped_bytes >= 10, "{:?}", p.stats());
}

#[test]
fn random_noise_never_yields_a_frame_and_never_panics() {
    // xorshift noise: 64 KiB of it. A 16-bit checksum could in principle match by chance,
    // but only after a header and a length field match too (about 1 in 2^48 per offset).
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut p = FrameParser::new();
    let mut frames = 0;
    for _ in 0..65_536 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if let Some(Ok(_)) = p.feed(x as u8) {
            frames += 1;
        }
    }
    assert_eq!(frames, 0);
    // And it still parses a good frame afterwards.
    assert_eq!(p.feed_all(&[0u8; 40]), None);
    assert_eq!(p.feed_all(&frame(80).to_bytes()), Some(frame(80)));
}

#[test]
fn every_single_byte_corruption_is_caught_or_harmless() {
    let good = frame(90).to_bytes();
    for i in 0..FRAME_LEN {
        for flip in [0x01u8, 0x80] {
            let mut bad = good;
            bad[i] ^= flip;
            let mut stream = bad.to_vec();
            stream.extend_from_slice(&frame(91).to_bytes());
            let mut p = FrameParser::new();
            let good_frames: Vec<_> = feed_all(&mut p, &stream)
                .into_iter()
                .filter_map(Result::ok)
                .collect();
            // The corrupted frame never passes; the next one always does.
            assert_eq!(good_frames, vec![frame(91)], "byte {i} flip {flip:#x}");
        }
    }
}

/// A UART receive FIFO holding what the test puts in.
#[derive(Default)]
struct FakeUart {
    rx: VecDeque<u8>,
}

impl embedded_io::ErrorType for FakeUart {
    type Error = Infallible;
}
impl embedded_io::Read for FakeUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.rx.len());
        for b in buf.iter_mut().take(n) {
            *b = self.rx.pop_front().unwrap_or(0);
        }
        Ok(n)
    }
}
impl embedded_io::ReadReady for FakeUart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.rx.is_empty())
    }
}

fn sample(s: &mut Pms5003<FakeUart>, now: u64) -> (SensorStatus, Vec<(&'static Metric, f64)>) {
    let mut r = Readings::new();
    let st = s.sample(now, &mut r);
    (
        st,
        r.as_slice().iter().map(|r| (r.metric, r.value)).collect(),
    )
}

#[test]
fn driver_reports_warm_up_then_readings_then_staleness() {
    let cfg = Pms5003Config::default();
    let mut uart = FakeUart::default();
    uart.rx.extend(frame(12).to_bytes());
    let mut s = Pms5003::new(uart, cfg, 0);

    // During the 30 s fan warm-up frames are read but not reported.
    let (st, r) = sample(&mut s, 5_000);
    assert_eq!(
        st,
        SensorStatus::WarmingUp {
            remaining_ms: 25_000
        }
    );
    assert!(r.is_empty());

    // After warm-up: the latest frame's atmospheric values.
    let mut uart = s.release();
    uart.rx.extend(frame(20).to_bytes());
    uart.rx.extend(frame(33).to_bytes());
    let mut s = Pms5003::new(uart, cfg, 0);
    let (st, r) = sample(&mut s, 31_000);
    assert_eq!(st, SensorStatus::Ok);
    assert_eq!(
        r,
        vec![
            (metric!("pm1"), 30.0),
            (metric!("pm25"), 33.0),
            (metric!("pm10"), 37.0)
        ]
    );

    // Nothing new: no repeat of the old value.
    let (st, r) = sample(&mut s, 33_000);
    assert_eq!(st, SensorStatus::NoNewData);
    assert!(r.is_empty());

    // Silent for longer than stale_after_ms: a fault.
    let (st, _) = sample(&mut s, 31_000 + u64::from(cfg.stale_after_ms));
    assert_eq!(st, SensorStatus::Fault(Fault::NoData));
}

#[test]
fn driver_reports_checksum_faults_when_only_bad_frames_arrive() {
    let cfg = Pms5003Config::default();
    let mut s = Pms5003::new(FakeUart::default(), cfg, 0);
    let mut now = 30_000;
    for _ in 0..4 {
        let mut bad = frame(15).to_bytes();
        bad[20] ^= 0xFF;
        let mut uart = s.release();
        uart.rx.extend(bad);
        s = Pms5003::new(uart, cfg, 0);
        now += 5_000;
        let (st, r) = sample(&mut s, now);
        assert!(r.is_empty());
        assert_ne!(st, SensorStatus::Ok);
    }
    assert_eq!(sample(&mut s, now).0, SensorStatus::Fault(Fault::Checksum));
}

#[test]
fn driver_refuses_implausible_values_that_pass_the_checksum() {
    let mut f = frame(10);
    f.pm_atm = [3000, 4000, 5000];
    let mut uart = FakeUart::default();
    uart.rx.extend(f.to_bytes());
    let mut s = Pms5003::new(uart, Pms5003Config::default(), 0);
    let (st, r) = sample(&mut s, 40_000);
    assert_eq!(st, SensorStatus::Fault(Fault::InvalidData));
    assert!(r.is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Garbage biased towards the bytes that look like a frame start, so that false
    /// headers and plausible length fields are common.
    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                3 => any::<u8>(),
                2 => Just(0x42u8),
                1 => Just(0x4Du8),
                1 => Just(0x00u8),
                1 => Just(0x1Cu8),
            ],
            0..80,
        )
    }

    proptest! {
        /// Valid frames separated by arbitrary garbage all come out, in order, whatever
        /// the chunking of the stream.
        #[test]
        fn every_valid_frame_survives_garbage(
            parts in prop::collection::vec((garbage(), 1u16..900), 1..8),
            chunk in 1usize..64,
        ) {
            let mut stream = Vec::new();
            let mut sent = Vec::new();
            for (junk, pm) in &parts {
                stream.extend_from_slice(junk);
                let f = frame(*pm + 5);
                stream.extend_from_slice(&f.to_bytes());
                sent.push(f);
            }
            let mut p = FrameParser::new();
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                for &b in c {
                    if let Some(Ok(f)) = p.feed(b) {
                        got.push(f);
                    }
                }
            }
            // Garbage may, in principle, hide a frame with a valid checksum; it never
            // hides one of ours, and ours come out in order.
            let ours: Vec<_> = got.into_iter().filter(|f| sent.contains(f)).collect();
            prop_assert_eq!(ours, sent);
        }
    }
}
