//! Polling a condition until it holds, for tests that wait on servers and processes
//! doing their work in the background (a drain, a restart, a flush).

use std::time::{Duration, Instant};

/// How often [`wait_until`] probes.
pub const POLL: Duration = Duration::from_millis(100);

/// Calls `probe` until `done` accepts its value and returns that value; panics naming
/// `what` and showing the last value once `timeout` has passed.
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> T {
    let started = Instant::now();
    loop {
        let v = probe();
        if done(&v) {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last: {v:?}"
        );
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_accepted_value() {
        let mut n = 0;
        let v = wait_until(
            "a count of 3",
            Duration::from_secs(5),
            || {
                n += 1;
                n
            },
            |v| *v == 3,
        );
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 200ms waiting for never; last: 0")]
    fn panics_with_what_and_the_last_value() {
        wait_until("never", Duration::from_millis(200), || 0, |_| false);
    }
}
