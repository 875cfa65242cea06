//! Reconnect policy: when to try the broker again after a failure.
//!
//! A pure state machine over caller-supplied time (milliseconds since boot), so the
//! schedule is testable with simulated time and identical on every board.
//!
//! The delay before attempt *n* (n = 1 after the first failure) is
//! `min(initial * 2^(n-1), max)`, minus a random share of up to `jitter_percent` of it.
//! Jitter spreads a fleet that lost the broker at the same instant (a broker restart)
//! so that thousands of boards do not reconnect in lock-step. The attempt counter goes
//! back to zero only after a session stayed up for `stable_after_ms`: a broker that
//! accepts and then drops every connection must not be hammered at the initial rate.

/// Tuning of the reconnect schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay after the first failure. Default: 1 000 ms.
    pub initial_ms: u32,
    /// Cap on the delay, before jitter. Default: 60 000 ms.
    pub max_ms: u32,
    /// Up to this share (0..=100 %) of each delay is removed at random. Default: 50 %.
    pub jitter_percent: u8,
    /// A session that lasted this long resets the schedule. Default: 30 000 ms.
    pub stable_after_ms: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 60_000,
            jitter_percent: 50,
            stable_after_ms: 30_000,
        }
    }
}

/// Where the link stands, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; the next attempt may start at `at_ms`.
    Waiting {
        /// Earliest instant of the next connection attempt.
        at_ms: u64,
    },
    /// A connection attempt is under way.
    Connecting,
    /// Connected since `since_ms`.
    Connected {
        /// When the session came up.
        since_ms: u64,
    },
}

/// The reconnect state machine.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    state: LinkState,
    /// Consecutive failures since the last stable session.
    failures: u32,
    rng: u32,
}

impl Backoff {
    /// A policy that allows a first attempt at once. `seed` feeds the jitter; give each
    /// board a different one (hardware RNG, MAC address) so a fleet does not share it.
    pub fn new(cfg: BackoffConfig, seed: u32) -> Self {
        Self {
            cfg,
            state: LinkState::Waiting { at_ms: 0 },
            failures: 0,
            // xorshift32 must not start at zero.
            rng: if seed == 0 { 0x9E37_79B9 } else { seed },
        }
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Consecutive failures since the last stable session.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether an attempt may start at `now_ms`.
    pub fn may_connect(&self, now_ms: u64) -> bool {
        matches!(self.state, LinkState::Waiting { at_ms } if now_ms >= at_ms)
    }

    /// Instant of the next allowed attempt, if waiting.
    pub fn next_attempt_ms(&self) -> Option<u64> {
        match self.state {
            LinkState::Waiting { at_ms } => Some(at_ms),
            _ => None,
        }
    }

    /// An attempt starts (TCP connect, then MQTT CONNECT).
    pub fn on_attempt(&mut self) {
        self.state = LinkState::Connecting;
    }

    /// The broker accepted the session (CONNACK success).
    pub fn on_connected(&mut self, now_ms: u64) {
        self.state = LinkState::Connected { since_ms: now_ms };
    }

    /// The attempt failed or the session ended. Returns the instant of the next attempt.
    pub fn on_failure(&mut self, now_ms: u64) -> u64 {
        if let LinkState::Connected { since_ms } = self.state
            && now_ms.saturating_sub(since_ms) >= u64::from(self.cfg.stable_after_ms)
        {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let at_ms = now_ms + u64::from(self.delay_ms(self.failures));
        self.state = LinkState::Waiting { at_ms };
        at_ms
    }

    /// Delay before attempt number `failures` (1-based), jitter drawn from the state.
    fn delay_ms(&mut self, failures: u32) -> u32 {
        let doublings = failures.saturating_sub(1).min(31);
        let base = u64::from(self.cfg.initial_ms)
            .saturating_mul(1u64 << doublings)
            .min(u64::from(self.cfg.max_ms));
        let spread = base * u64::from(self.cfg.jitter_percent.min(100)) / 100;
        let cut = if spread == 0 {
            0
        } else {
            u64::from(self.next_random()) % (spread + 1)
        };
        // base <= max_ms, which is a u32.
        u32::try_from(base - cut).unwrap_or(u32::MAX)
    }

    fn next_random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{collections::BTreeSet, vec::Vec};

    use super::*;

    fn cfg(jitter_percent: u8) -> BackoffConfig {
        BackoffConfig {
            initial_ms: 1_000,
            max_ms: 16_000,
            jitter_percent,
            stable_after_ms: 30_000,
        }
    }

    /// Drives `n` failed attempts and returns each delay.
    fn delays(b: &mut Backoff, start_ms: u64, n: usize) -> Vec<u64> {
        let mut now = start_ms;
        let mut out = Vec::new();
        for _ in 0..n {
            assert!(b.may_connect(now));
            b.on_attempt();
            assert!(!b.may_connect(now));
            let at = b.on_failure(now);
            out.push(at - now);
            assert!(!b.may_connect(at - 1));
            now = at;
        }
        out
    }

    #[test]
    fn first_attempt_is_immediate() {
        let b = Backoff::new(cfg(50), 1);
        assert!(b.may_connect(0));
        assert_eq!(b.next_attempt_ms(), Some(0));
    }

    #[test]
    fn without_jitter_delays_double_up_to_the_cap() {
        let mut b = Backoff::new(cfg(0), 7);
        assert_eq!(
            delays(&mut b, 0, 8),
            [1_000, 2_000, 4_000, 8_000, 16_000, 16_000, 16_000, 16_000]
        );
        assert_eq!(b.failures(), 8);
    }

    #[test]
    fn jitter_stays_within_its_share_and_varies() {
        let mut b = Backoff::new(cfg(50), 12345);
        let got = delays(&mut b, 0, 200);
        for (i, d) in got.iter().enumerate() {
            let base = (1_000u64 << i.min(4)).min(16_000);
            assert!(
                *d <= base && *d >= base / 2,
                "attempt {i}: {d} not in [{}, {base}]",
                base / 2
            );
        }
        let capped: BTreeSet<_> = got[10..].iter().collect();
        assert!(
            capped.len() > 10,
            "jitter should spread capped delays, got {capped:?}"
        );
    }

    #[test]
    fn different_seeds_spread_a_fleet() {
        let first: BTreeSet<u64> = (1..=50u32)
            .map(|seed| {
                let mut b = Backoff::new(cfg(100), seed);
                delays(&mut b, 0, 6)[5]
            })
            .collect();
        assert!(
            first.len() > 25,
            "fleet reconnects too much in step: {first:?}"
        );
    }

    #[test]
    fn a_stable_session_resets_the_schedule() {
        let mut b = Backoff::new(cfg(0), 3);
        let now = delays(&mut b, 0, 5).iter().sum::<u64>();
        b.on_attempt();
        b.on_connected(now);
        assert_eq!(b.state(), LinkState::Connected { since_ms: now });
        let at = b.on_failure(now + 30_000);
        assert_eq!(at - (now + 30_000), 1_000);
        assert_eq!(b.failures(), 1);
    }

    #[test]
    fn a_short_session_keeps_backing_off() {
        let mut b = Backoff::new(cfg(0), 3);
        let now = delays(&mut b, 0, 3).iter().sum::<u64>(); // 1 s, 2 s, 4 s
        b.on_attempt();
        b.on_connected(now);
        let at = b.on_failure(now + 29_999);
        assert_eq!(at - (now + 29_999), 8_000);
        assert_eq!(b.failures(), 4);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let mut b = Backoff::new(
            BackoffConfig {
                initial_ms: u32::MAX,
                max_ms: u32::MAX,
                jitter_percent: 0,
                stable_after_ms: 1,
            },
            9,
        );
        let mut now = 0;
        for _ in 0..100 {
            b.on_attempt();
            let at = b.on_failure(now);
            assert_eq!(at - now, u64::from(u32::MAX));
            now = at;
        }
    }
}
