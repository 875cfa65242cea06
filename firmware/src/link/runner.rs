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
            let deadline = now + u64::from(self.cfg.op_timeout_ms);
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
