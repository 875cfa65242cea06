//! The link's outer loop: connect when the policy allows, run a session, back off on
//! failure, and keep the node sampling the whole time.

use core::{future::Future, pin::Pin, pin::pin};

use embassy_futures::select::{Either, Either3, select, select3};

use super::{Backoff, Clock, Connector, Device, LinkConfig, LinkError, SCRATCH_MIN, session};

/// Counters a board or a simulator can report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connection attempts started.
    pub attempts: u32,
    /// Sessions the broker accepted.
    pub connects: u32,
    /// Packs published (republications after a reconnect included).
    pub published: u32,
    /// Packs acknowledged and removed from the backlog.
    pub acked: u32,
    /// Packs dropped because the broker's maximum packet size is below their size
    /// (their readings are reported as dropped).
    pub discarded: u32,
    /// Why the last connection ended, if it failed.
    pub last_error: Option<LinkError>,
}

/// The MQTT link of one device: configuration, reconnect policy and counters.
#[derive(Debug)]
pub struct Link<'a> {
    cfg: LinkConfig<'a>,
    backoff: Backoff,
    stats: LinkStats,
}

impl<'a> Link<'a> {
    /// A link that will connect at once. `seed` drives the backoff jitter: give each
    /// board its own (hardware RNG, MAC address, device id hash).
    pub fn new(cfg: LinkConfig<'a>, seed: u32) -> Self {
        Self {
            backoff: Backoff::new(cfg.backoff, seed),
            cfg,
            stats: LinkStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The reconnect policy's state.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Runs the device and its link until `stop` completes: samples on time, connects,
    /// publishes the backlog, reconnects with backoff. On `stop` an open session is closed
    /// gracefully (retained `offline`, DISCONNECT). `scratch` holds what the broker sends
    /// ([`SCRATCH_MIN`] bytes at least).
    pub async fn run<C, D, K, S>(
        &mut self,
        connector: &mut C,
        device: &mut D,
        clock: &K,
        scratch: &mut [u8],
        stop: S,
    ) where
        C: Connector,
        D: Device,
        K: Clock,
        S: Future<Output = ()>,
    {
        debug_assert!(scratch.len() >= SCRATCH_MIN, "scratch below SCRATCH_MIN");
        let mut stop = pin!(stop);
        loop {
            let now = clock.now_ms();
            device.poll(now);
            if !self.backoff.may_connect(now) {
                let wake = device
                    .next_deadline()
                    .min(self.backoff.next_attempt_ms().unwrap_or(u64::MAX));
                match select(stop.as_mut(), clock.sleep_until(wake)).await {
                    Either::First(()) => return,
                    Either::Second(()) => continue,
                }
            }

            self.backoff.on_attempt();
            self.stats.attempts += 1;
            let deadline = now + self.cfg.op_timeout();
            let result: Result<(), LinkError> =
                match sample_while(device, clock, stop.as_mut(), deadline, connector.connect())
                    .await
                {
                    Waited::Stopped => return,
                    Waited::TimedOut => Err(LinkError::Timeout),
                    Waited::Done(Err(_)) => Err(LinkError::Connect),
                    Waited::Done(Ok(conn)) => {
                        let outcome = session::run(
                            &self.cfg,
                            conn,
                            device,
                            clock,
                            scratch,
                            stop.as_mut(),
                            &mut self.backoff,
                            &mut self.stats,
                        )
                        .await;
                        match outcome {
                            Ok(()) => return,
                            Err(e) => Err(e),
                        }
                    }
                };
            if let Err(e) = result {
                self.stats.last_error = Some(e);
                self.backoff.on_failure(clock.now_ms());
            }
        }
    }
}

/// How a bounded wait ended.
pub(crate) enum Waited<T> {
    /// The awaited future completed.
    Done(T),
    /// The caller asked to stop.
    Stopped,
    /// The deadline passed first.
    TimedOut,
}

/// Awaits `fut` while keeping the device sampling on its own schedule; gives up at
/// `deadline_ms` or when `stop` completes. A TCP connect or a CONNACK can take seconds
/// on bad Wi-Fi: readings are due meanwhile.
pub(crate) async fn sample_while<F, D, K, S>(
    device: &mut D,
    clock: &K,
    mut stop: Pin<&mut S>,
    deadline_ms: u64,
    fut: F,
) -> Waited<F::Output>
where
    F: Future,
    D: Device,
    K: Clock,
    S: Future<Output = ()>,
{
    let mut fut = pin!(fut);
    loop {
        let wake = device.next_deadline().min(deadline_ms);
        match select3(fut.as_mut(), stop.as_mut(), clock.sleep_until(wake)).await {
            Either3::First(v) => return Waited::Done(v),
            Either3::Second(()) => return Waited::Stopped,
            Either3::Third(()) => {
                let now = clock.now_ms();
                if now >= deadline_ms {
                    return Waited::TimedOut;
                }
                device.poll(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The outer loop on simulated time: a broker that cannot be reached, a clock that
    //! jumps to each deadline, a stand-in device that records when it was polled.
    extern crate std;

    use core::{
        cell::{Cell, RefCell},
        future::poll_fn,
        task::Poll,
    };
    use std::vec::Vec;

    use schemas::topic::Channel;

    use super::*;
    use crate::link::{BackoffConfig, TopicString};

    /// Time that passes only when someone sleeps: each sleep jumps to its deadline.
    struct SimClock {
        now: Cell<u64>,
    }

    impl Clock for SimClock {
        fn now_ms(&self) -> u64 {
            self.now.get()
        }

        async fn sleep_until(&self, at_ms: u64) {
            assert_ne!(at_ms, u64::MAX, "the loop would sleep forever");
            self.now.set(self.now.get().max(at_ms));
        }
    }

    /// A TCP connect that always fails, recording when it was tried.
    struct Unreachable<'c> {
        clock: &'c SimClock,
        attempts: RefCell<Vec<u64>>,
    }

    impl Connector for Unreachable<'_> {
        type Conn<'a>
            = NeverConn
        where
            Self: 'a;
        type Error = ();

        async fn connect(&mut self) -> Result<NeverConn, ()> {
            self.attempts.borrow_mut().push(self.clock.now_ms());
            Err(())
        }
    }

    /// Never built: `Unreachable` never connects.
    struct NeverConn;

    impl embedded_io_async::ErrorType for NeverConn {
        type Error = embedded_io_async::ErrorKind;
    }

    impl embedded_io_async::Read for NeverConn {
        async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
            Err(embedded_io_async::ErrorKind::NotConnected)
        }
    }

    impl embedded_io_async::Write for NeverConn {
        async fn write(&mut self, _: &[u8]) -> Result<usize, Self::Error> {
            Err(embedded_io_async::ErrorKind::NotConnected)
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            Err(embedded_io_async::ErrorKind::NotConnected)
        }
    }

    /// Samples every `period_ms`; records each poll that had work.
    struct Sampler {
        period_ms: u64,
        next: u64,
        sampled_at: Vec<u64>,
    }

    impl Device for Sampler {
        fn poll(&mut self, now_ms: u64) {
            if now_ms >= self.next {
                self.sampled_at.push(now_ms);
                self.next = now_ms - now_ms % self.period_ms + self.period_ms;
            }
        }
        fn next_deadline(&self) -> u64 {
            self.next
        }
        fn oldest(&mut self) -> Option<&[u8]> {
            None
        }
        fn ack_oldest(&mut self) {}
        fn topic(&self, _: Channel) -> TopicString {
            TopicString::new()
        }
        fn meta_payload(&self, _: &mut [u8]) -> Option<usize> {
            None
        }
    }

    #[test]
    fn unreachable_broker_backs_off_while_sampling_goes_on() {
        let clock = SimClock { now: Cell::new(0) };
        let mut connector = Unreachable {
            clock: &clock,
            attempts: RefCell::new(Vec::new()),
        };
        let mut device = Sampler {
            period_ms: 5_000,
            next: 0,
            sampled_at: Vec::new(),
        };
        let cfg = LinkConfig {
            backoff: BackoffConfig {
                initial_ms: 1_000,
                max_ms: 30_000,
                jitter_percent: 50,
                stable_after_ms: 30_000,
            },
            ..LinkConfig::default()
        };
        let mut link = Link::new(cfg, 42);
        let mut scratch = [0u8; SCRATCH_MIN];
        let end_ms = 10 * 60_000;
        let stop = poll_fn(|_| {
            if clock.now_ms() >= end_ms {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        embassy_futures::block_on(link.run(
            &mut connector,
            &mut device,
            &clock,
            &mut scratch,
            stop,
        ));

        let attempts = connector.attempts.into_inner();
        assert_eq!(attempts[0], 0, "the first attempt is immediate");
        for (i, pair) in attempts.windows(2).enumerate() {
            let base = (1_000u64 << i.min(5)).min(30_000);
            let gap = pair[1] - pair[0];
            assert!(
                (base / 2..=base).contains(&gap),
                "attempt {}: waited {gap} ms, expected {}..={base}",
                i + 1,
                base / 2
            );
        }
        // Ten minutes at a 30 s cap (15..30 s after jitter): between 20 and 45 attempts.
        assert!(
            (20..=45).contains(&attempts.len()),
            "{} attempts",
            attempts.len()
        );
        assert_eq!(link.stats().attempts as usize, attempts.len());
        assert_eq!(link.stats().connects, 0);
        assert_eq!(link.stats().last_error, Some(LinkError::Connect));

        // Sampling never waited for the network: every period, on time.
        let expected: Vec<u64> = (0..=end_ms).step_by(5_000).collect();
        assert_eq!(device.sampled_at, expected);
    }
}
