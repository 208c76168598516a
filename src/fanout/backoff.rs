//! Retry timing: capped exponential backoff with full jitter, and Retry-After honoured.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (1 for the first retry). Full jitter spreads
    /// the retries of many users over the whole window instead of in synchronized waves.
    pub(crate) fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jittered = Duration::from_millis(rng.gen_range(0..=ceiling.as_millis() as u64));
        // When the target says when to come back, that is the answer.
        retry_after.unwrap_or(jittered)
    }

    /// The wait before a circuit's probe number `attempt` (1 for the first). Half the
    /// window is fixed and half jittered: one probe per target needs no spreading over the
    /// whole window, and full jitter would send some probes almost at once.
    pub(crate) fn probe_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let half = ceiling / 2;
        let jittered = Duration::from_millis(half + rng.gen_range(0..=ceiling - half));
        retry_after.unwrap_or(jittered)
    }

    fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
            .min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn delays_stay_within_the_capped_window() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        let mut rng = StdRng::seed_from_u64(1);
        for attempt in 1..40 {
            let ceiling = (100u64 << (attempt - 1).min(30)).min(5000);
            for _ in 0..50 {
                let d = backoff.delay(attempt, None, &mut rng);
                assert!(d.as_millis() as u64 <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn probes_wait_between_half_and_all_of_the_window() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        let mut rng = StdRng::seed_from_u64(3);
        for attempt in 1..20 {
            let ceiling = (100u64 << (attempt - 1)).min(5000);
            for _ in 0..50 {
                let d = backoff.probe_delay(attempt, None, &mut rng).as_millis() as u64;
                assert!(
                    (ceiling / 2..=ceiling).contains(&d),
                    "attempt {attempt}: {d}"
                );
            }
        }
        let named = backoff.probe_delay(2, Some(Duration::from_secs(9)), &mut rng);
        assert_eq!(named, Duration::from_secs(9));
    }

    #[test]
    fn retry_after_wins_over_the_backoff() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..50 {
            let d = backoff.delay(3, Some(Duration::from_secs(7)), &mut rng);
            assert_eq!(d, Duration::from_secs(7));
        }
    }
}
