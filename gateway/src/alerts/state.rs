//! The state machine of one alert, i.e. one (rule, labels): inactive -> pending (the
//! condition holds) -> firing (it held for the rule's `for_s`) -> resolved (it stayed
//! clear for `resolve_for_s`), then inactive again.
//!
//! Hysteresis: each observation says whether the condition is *breached* (the value is
//! beyond the threshold) and whether it is *clear* (the value is beyond the threshold by
//! the rule's `resolve_margin` in the other direction). In between, an active alert
//! keeps its state: a value hovering at the threshold neither resolves a firing alert
//! nor drops a pending one. A pending alert that clears goes back to inactive without
//! ever firing; a firing alert must stay clear for `resolve_for_s` to resolve, and any
//! breach meanwhile restarts that wait.

/// What one evaluation saw for one alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The condition holds.
    pub breached: bool,
    /// The value is beyond the threshold and the margin: the alert may resolve.
    pub clear: bool,
    /// The value shown with the alert.
    pub value: f64,
}

impl Observation {
    /// A value against `threshold`: breached when `value > threshold` (or `>=` with
    /// `inclusive`), clear when below `threshold - margin * |threshold|`; `below`
    /// reverses the direction.
    pub fn against(value: f64, threshold: f64, below: bool, inclusive: bool, margin: f64) -> Self {
        let band = margin * threshold.abs();
        let (breached, clear) = if below {
            (
                value < threshold || (inclusive && value == threshold),
                value > threshold + band,
            )
        } else {
            (
                value > threshold || (inclusive && value == threshold),
                value < threshold - band,
            )
        };
        // With no margin, "not breached" is clear.
        Self {
            breached,
            clear: clear || (band == 0.0 && !breached),
            value,
        }
    }

    /// A yes/no condition (no margin).
    pub fn flag(breached: bool, value: f64) -> Self {
        Self {
            breached,
            clear: !breached,
            value,
        }
    }

    /// No data for an alert that exists: it clears.
    pub fn gone(value: f64) -> Self {
        Self::flag(false, value)
    }
}

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not active.
    Inactive,
    /// Condition holds since `since_ns`, not yet for `for_s`.
    Pending {
        /// When the condition started to hold.
        since_ns: i64,
    },
    /// Firing.
    Firing {
        /// When the condition started to hold.
        since_ns: i64,
        /// When it fired.
        fired_ns: i64,
        /// Since when it is clear, if it is.
        clear_since_ns: Option<i64>,
    },
}

/// A change of state worth recording and notifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Inactive -> pending.
    Pending,
    /// Pending (or inactive, with no hold) -> firing.
    Fired,
    /// Pending -> inactive: it never fired.
    Cleared,
    /// Firing -> resolved (inactive).
    Resolved,
}

/// The rule's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Hold before firing, ns.
    pub for_ns: i64,
    /// Clear time before resolving, ns.
    pub resolve_for_ns: i64,
}

impl Phase {
    /// Applies one observation at `now_ns`; the transitions it made (at most two:
    /// pending and fired at once when there is no hold).
    pub fn step(&mut self, obs: Observation, now_ns: i64, t: Timing) -> Vec<Transition> {
        let mut out = Vec::new();
        match *self {
            Self::Inactive => {
                if obs.breached {
                    *self = Self::Pending { since_ns: now_ns };
                    out.push(Transition::Pending);
                    if t.for_ns <= 0 {
                        *self = Self::Firing {
                            since_ns: now_ns,
                            fired_ns: now_ns,
                            clear_since_ns: None,
                        };
                        out.push(Transition::Fired);
                    }
                }
            }
            Self::Pending { since_ns } => {
                if obs.clear {
                    *self = Self::Inactive;
                    out.push(Transition::Cleared);
                } else if now_ns.saturating_sub(since_ns) >= t.for_ns {
                    *self = Self::Firing {
                        since_ns,
                        fired_ns: now_ns,
                        clear_since_ns: None,
                    };
                    out.push(Transition::Fired);
                }
            }
            Self::Firing {
                since_ns,
                fired_ns,
                clear_since_ns,
            } => {
                if obs.clear {
                    let from = clear_since_ns.unwrap_or(now_ns);
                    if now_ns.saturating_sub(from) >= t.resolve_for_ns {
                        *self = Self::Inactive;
                        out.push(Transition::Resolved);
                    } else {
                        *self = Self::Firing {
                            since_ns,
                            fired_ns,
                            clear_since_ns: Some(from),
                        };
                    }
                } else {
                    // Within the margin or breached again: the wait starts over.
                    *self = Self::Firing {
                        since_ns,
                        fired_ns,
                        clear_since_ns: None,
                    };
                }
            }
        }
        out
    }

    /// The state's name: `inactive`, `pending`, `firing`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Pending { .. } => "pending",
            Self::Firing { .. } => "firing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const T: Timing = Timing {
        for_ns: 10 * S,
        resolve_for_ns: 5 * S,
    };

    fn obs(v: f64) -> Observation {
        Observation::against(v, 100.0, false, false, 0.05)
    }

    /// Feeds one value per second from t = 0; the transitions with their second.
    fn run(values: &[f64], t: Timing) -> (Phase, Vec<(i64, Transition)>) {
        let mut p = Phase::Inactive;
        let mut seen = Vec::new();
        for (i, v) in values.iter().enumerate() {
            for tr in p.step(obs(*v), i as i64 * S, t) {
                seen.push((i as i64, tr));
            }
        }
        (p, seen)
    }

    #[test]
    fn hysteresis_of_an_observation() {
        let o = obs(101.0);
        assert!(o.breached && !o.clear);
        let o = obs(99.0);
        assert!(!o.breached && !o.clear, "within the margin");
        let o = obs(94.9);
        assert!(!o.breached && o.clear);
        let o = Observation::against(151.0, 151.0, false, true, 0.0);
        assert!(o.breached);
        let o = Observation::against(150.0, 151.0, false, true, 0.0);
        assert!(!o.breached && o.clear, "no margin: not breached is clear");
        let o = Observation::against(1.0, 2.0, true, false, 0.5);
        assert!(o.breached && !o.clear);
        let o = Observation::against(3.5, 2.0, true, false, 0.5);
        assert!(!o.breached && o.clear);
    }

    #[test]
    fn pending_then_firing_after_the_hold() {
        let (p, seen) = run(&[120.0; 12], T);
        assert_eq!(
            seen,
            vec![(0, Transition::Pending), (10, Transition::Fired)]
        );
        assert!(matches!(
            p,
            Phase::Firing {
                since_ns: 0,
                fired_ns,
                ..
            } if fired_ns == 10 * S
        ));
    }

    #[test]
    fn no_hold_fires_at_once() {
        let t = Timing {
            for_ns: 0,
            resolve_for_ns: 0,
        };
        let (p, seen) = run(&[120.0], t);
        assert_eq!(seen, vec![(0, Transition::Pending), (0, Transition::Fired)]);
        assert_eq!(p.name(), "firing");
        let (p, seen) = run(&[120.0, 90.0], t);
        assert_eq!(seen.last(), Some(&(1, Transition::Resolved)));
        assert_eq!(p, Phase::Inactive);
    }

    #[test]
    fn pending_that_clears_never_fires() {
        let mut v = vec![120.0; 5];
        v.extend([90.0; 20]);
        let (p, seen) = run(&v, T);
        assert_eq!(
            seen,
            vec![(0, Transition::Pending), (5, Transition::Cleared)]
        );
        assert_eq!(p, Phase::Inactive);
    }

    #[test]
    fn flapping_at_the_threshold_does_not_flap() {
        // Fire first, then alternate just above and just below (within the 5% margin).
        let mut v = vec![120.0; 11];
        for i in 0..100 {
            v.push(if i % 2 == 0 { 99.0 } else { 101.0 });
        }
        let (p, seen) = run(&v, T);
        assert_eq!(
            seen,
            vec![(0, Transition::Pending), (10, Transition::Fired)],
            "no resolve, no re-fire"
        );
        assert_eq!(p.name(), "firing");
        // From inactive, hovering keeps it pending until the hold, then it fires once.
        let v: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 101.0 } else { 99.0 })
            .collect();
        let (_, seen) = run(&v, T);
        assert_eq!(
            seen,
            vec![(0, Transition::Pending), (10, Transition::Fired)]
        );
    }

    #[test]
    fn resolving_needs_the_margin_and_the_time() {
        let mut v = vec![120.0; 11];
        // Below the threshold but within the margin: never resolves.
        v.extend([96.0; 30]);
        let (p, seen) = run(&v, T);
        assert_eq!(seen.len(), 2);
        assert_eq!(p.name(), "firing");
        // Clear, but breached again before resolve_for: the wait starts over.
        let mut v = vec![120.0; 11];
        v.extend([80.0; 4]);
        v.push(130.0);
        v.extend([80.0; 4]);
        let (p, seen) = run(&v, T);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(p.name(), "firing");
        // Clear for resolve_for: resolved, once.
        let mut v = vec![120.0; 11];
        v.extend([80.0; 20]);
        let (p, seen) = run(&v, T);
        assert_eq!(
            seen,
            vec![
                (0, Transition::Pending),
                (10, Transition::Fired),
                (16, Transition::Resolved)
            ]
        );
        assert_eq!(p, Phase::Inactive);
    }

    #[test]
    fn it_can_fire_again_after_resolving() {
        let mut v = vec![120.0; 11];
        v.extend([80.0; 6]);
        v.extend([120.0; 11]);
        let (_, seen) = run(&v, T);
        let fired = seen.iter().filter(|(_, t)| *t == Transition::Fired).count();
        assert_eq!(fired, 2, "{seen:?}");
    }
}
