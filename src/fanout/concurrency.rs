//! Between the worker's due list and its sends: how many deliveries one target may have in
//! flight. The limit grows while answers succeed and latency holds, and shrinks on 429, 503
//! and timeouts or when latency rises, between 1 and a cap, so a target's rate budget rather
//! than a fixed in-flight number sets the pace (additive increase, multiplicative decrease,
//! judged once per window of about one round trip).

use std::time::Duration;

/// How one target's limit may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConcurrencyPolicy {
    /// Where the limit starts; the limit for good when not adaptive.
    pub initial: usize,
    /// The most it may reach.
    pub max: usize,
    pub adaptive: bool,
}

/// What one finished delivery says about its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Response {
    /// The target answered (delivered, refused the data, or failed this one user): its time
    /// is a latency sample.
    Answered(Duration),
    /// The target pushed back: throttled, unavailable or too slow to answer.
    PushedBack,
    /// Nothing reached the target.
    NotSent,
}

/// The share of the limit kept after a push-back or a latency rise.
const DECREASE_RATIO: f64 = 0.9;
/// Weight of the newest window in the smoothed latency.
const EWMA_ALPHA: f64 = 0.4;
/// How many smoothed deviations above the smoothed mean a window's latency may lie before
/// it counts as rising.
const DEVIATION_SCALE: f64 = 2.5;
/// Latency within this share of the smoothed mean always holds: a steady target has almost
/// no deviation, and the noise of a loaded machine alone must not stop growth or cut.
const TOLERANCE: f64 = 0.05;

/// Smoothed latency of past windows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Smoothed {
    mean: f64,
    deviation: f64,
}

impl Smoothed {
    fn update(&mut self, sample: f64) {
        self.deviation += EWMA_ALPHA * ((sample - self.mean).abs() - self.deviation);
        self.mean += EWMA_ALPHA * (sample - self.mean);
    }

    fn rising(&self, sample: f64) -> bool {
        let threshold = (self.deviation * DEVIATION_SCALE).max(self.mean * TOLERANCE);
        sample > self.mean + threshold
    }

    /// Latency holds: no worse than the past by more than its usual spread. Between holding
    /// and rising the limit stays as it is until the smoothed mean settles.
    fn holds(&self, sample: f64) -> bool {
        sample <= self.mean + self.deviation.max(self.mean * TOLERANCE)
    }
}

/// What happened since the window opened.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Window {
    opened_at: i64,
    latency_ms: f64,
    answers: u32,
    /// The limit was cut in this window already: one push-back cuts once, not once per
    /// delivery that was in flight when the target started refusing.
    cut: bool,
    /// Deliveries in flight reached the limit: only then does a good window say that more
    /// would help.
    at_limit: bool,
}

/// One target's adaptive limit. Pure: the worker hands it the time and every answer.
#[derive(Debug)]
pub(crate) struct Controller {
    policy: ConcurrencyPolicy,
    limit: usize,
    past: Option<Smoothed>,
    window: Window,
}

impl Controller {
    pub(crate) fn new(policy: ConcurrencyPolicy, now_ms: i64) -> Controller {
        let max = policy.max.max(1);
        Controller {
            limit: policy.initial.clamp(1, max),
            policy: ConcurrencyPolicy { max, ..policy },
            past: None,
            window: Window {
                opened_at: now_ms,
                ..Window::default()
            },
        }
    }

    /// Deliveries that may be in flight now.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Tells that `in_flight` deliveries are out now.
    pub(crate) fn note_in_flight(&mut self, in_flight: usize) {
        if in_flight >= self.limit {
            self.window.at_limit = true;
        }
    }

    /// Takes one finished delivery into account; returns the limit when it changed.
    pub(crate) fn record(&mut self, now_ms: i64, response: Response) -> Option<usize> {
        if !self.policy.adaptive {
            return None;
        }
        let before = self.limit;
        match response {
            Response::NotSent => {}
            Response::PushedBack => {
                // A window already over is judged on what it saw, before this cut.
                self.close_window_if_due(now_ms);
                if !self.window.cut {
                    self.decrease();
                    self.window.cut = true;
                }
            }
            Response::Answered(latency) => {
                self.window.latency_ms += latency.as_secs_f64() * 1000.0;
                self.window.answers += 1;
            }
        }
        self.close_window_if_due(now_ms);
        (self.limit != before).then_some(self.limit)
    }

    /// A window lasts about one smoothed round trip, so each judgement rests on answers to
    /// requests sent under the limit it judges.
    fn close_window_if_due(&mut self, now_ms: i64) {
        if self.window.answers == 0 && !self.window.cut {
            return;
        }
        let current = (self.window.answers > 0)
            .then(|| self.window.latency_ms / f64::from(self.window.answers));
        let length = self.past.map_or(current.unwrap_or(0.0), |past| past.mean);
        if ((now_ms - self.window.opened_at) as f64) < length {
            return;
        }
        if let Some(current) = current {
            match &mut self.past {
                None => {
                    if !self.window.cut && self.window.at_limit {
                        self.increase();
                    }
                    self.past = Some(Smoothed {
                        mean: current,
                        deviation: 0.0,
                    });
                }
                Some(past) => {
                    let (rising, holds) = (past.rising(current), past.holds(current));
                    past.update(current);
                    if !self.window.cut {
                        if rising {
                            self.decrease();
                        } else if holds && self.window.at_limit {
                            self.increase();
                        }
                    }
                }
            }
        }
        self.window = Window {
            opened_at: now_ms,
            ..Window::default()
        };
    }

    fn increase(&mut self) {
        self.limit = (self.limit + 1).min(self.policy.max);
    }

    fn decrease(&mut self) {
        self.limit = ((self.limit as f64 * DECREASE_RATIO).floor() as usize).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive(initial: usize, max: usize) -> Controller {
        Controller::new(
            ConcurrencyPolicy {
                initial,
                max,
                adaptive: true,
            },
            0,
        )
    }

    fn answered(ms: u64) -> Response {
        Response::Answered(Duration::from_millis(ms))
    }

    /// Runs one round trip per entry of `latencies` with the limit in full use (a finished
    /// delivery is replaced at once) and every answer taking that long, the answers spread
    /// over the round trip; returns the limit after each.
    fn windows(c: &mut Controller, now: &mut i64, latencies: &[u64]) -> Vec<usize> {
        latencies
            .iter()
            .map(|&latency| {
                let start = *now;
                let limit = c.limit() as i64;
                for n in 1..=limit {
                    c.note_in_flight(c.limit());
                    c.record(start + latency as i64 * n / limit, answered(latency));
                }
                *now = start + latency as i64;
                c.limit()
            })
            .collect()
    }

    #[test]
    fn grows_by_one_per_round_trip_while_latency_holds_up_to_the_cap() {
        let mut c = adaptive(4, 8);
        let mut now = 0;
        assert_eq!(
            windows(&mut c, &mut now, &[300; 6]),
            [5, 6, 7, 8, 8, 8],
            "one step per window, never past the cap"
        );
    }

    #[test]
    fn does_not_grow_while_the_limit_is_not_used() {
        let mut c = adaptive(4, 32);
        let mut now = 0;
        for _ in 0..10 {
            now += 300;
            c.note_in_flight(2);
            c.record(now, answered(300));
            c.record(now, answered(300));
        }
        assert_eq!(c.limit(), 4);
    }

    #[test]
    fn a_push_back_cuts_once_per_window() {
        let mut c = adaptive(20, 32);
        let mut now = 0;
        windows(&mut c, &mut now, &[100]);
        assert_eq!(c.limit(), 21);
        // Every delivery in flight meets the 429 at once: one cut, not 21.
        for _ in 0..21 {
            c.record(now + 1, Response::PushedBack);
        }
        assert_eq!(c.limit(), 18);
        // The next window cuts again if the target still refuses.
        c.record(now + 200, Response::PushedBack);
        assert_eq!(c.limit(), 16);
    }

    #[test]
    fn rising_latency_shrinks_and_a_steady_level_is_grown_from_again() {
        let mut c = adaptive(10, 32);
        let mut now = 0;
        assert_eq!(windows(&mut c, &mut now, &[300, 300, 300]), [11, 12, 13]);
        // The target slows down: cut, then held while latency keeps climbing.
        let limits = windows(&mut c, &mut now, &[600, 900]);
        assert_eq!(limits, [11, 11]);
        // Once the slower answers are the norm, growth resumes.
        let limits = windows(&mut c, &mut now, &[900; 8]);
        assert!(limits[7] > limits[0], "{limits:?}");
    }

    #[test]
    fn noise_within_the_tolerance_does_not_cut() {
        let mut c = adaptive(4, 32);
        let mut now = 0;
        let limits = windows(&mut c, &mut now, &[300, 310, 295, 312, 305, 299, 300, 302]);
        assert!(limits.windows(2).all(|w| w[0] <= w[1]), "{limits:?}");
        assert!(limits[7] >= 9, "{limits:?}");
    }

    #[test]
    fn never_below_one_nor_above_the_cap() {
        let mut c = adaptive(2, 3);
        for at in 0..50 {
            c.record(at * 1000, Response::PushedBack);
        }
        assert_eq!(c.limit(), 1);
        let mut now = 50_000;
        windows(&mut c, &mut now, &[10; 10]);
        assert_eq!(c.limit(), 3);
        // A start above the cap is brought down to it.
        assert_eq!(adaptive(64, 8).limit(), 8);
    }

    #[test]
    fn a_fixed_limit_never_moves_and_nothing_sent_says_nothing() {
        let mut fixed = Controller::new(
            ConcurrencyPolicy {
                initial: 4,
                max: 32,
                adaptive: false,
            },
            0,
        );
        fixed.note_in_flight(4);
        for at in 0..20 {
            fixed.record(at * 500, answered(10));
            fixed.record(at * 500, Response::PushedBack);
        }
        assert_eq!(fixed.limit(), 4);
        let mut c = adaptive(4, 32);
        c.note_in_flight(4);
        for at in 0..20 {
            assert_eq!(c.record(at * 500, Response::NotSent), None);
        }
        assert_eq!(c.limit(), 4);
    }

    #[test]
    fn the_window_waits_for_a_round_trip() {
        let mut c = adaptive(4, 32);
        let mut now = 0;
        windows(&mut c, &mut now, &[300]);
        assert_eq!(c.limit(), 5);
        c.note_in_flight(5);
        // Answers 100 ms into a window that lasts about 300 ms change nothing yet.
        for _ in 0..5 {
            assert_eq!(c.record(now + 100, answered(300)), None);
        }
        assert_eq!(c.record(now + 300, answered(300)), Some(6));
    }
}
