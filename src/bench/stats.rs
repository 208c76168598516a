//! Latency and rate summaries for the load generator.

use std::time::Duration;

use serde::Serialize;

/// What one load phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub requests: usize,
    pub errors: usize,
    /// Requests never started because the phase reached its time limit.
    pub not_sent: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl PhaseReport {
    pub(crate) fn new(
        name: &str,
        mut latencies: Vec<Duration>,
        errors: usize,
        not_sent: usize,
        elapsed: Duration,
    ) -> PhaseReport {
        latencies.sort_unstable();
        let quantile = |q: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[index].as_secs_f64() * 1000.0
        };
        let requests = latencies.len();
        let seconds = elapsed.as_secs_f64();
        PhaseReport {
            name: name.to_owned(),
            requests,
            errors,
            not_sent,
            seconds,
            per_second: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: quantile(0.50),
            p99_ms: quantile(0.99),
            max_ms: quantile(1.0),
        }
    }

    pub(crate) fn line(&self) -> String {
        let mut line = format!(
            "{:<26} {:>8} req {:>6} err {:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
            self.name,
            self.requests,
            self.errors,
            self.per_second,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        );
        if self.not_sent > 0 {
            line.push_str(&format!("  ({} not sent: time limit)", self.not_sent));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let report = PhaseReport::new("x", latencies, 2, 0, Duration::from_secs(2));
        assert_eq!(report.requests, 100);
        assert_eq!(report.per_second, 50.0);
        assert_eq!(report.p50_ms, 51.0);
        assert_eq!(report.p99_ms, 99.0);
        assert_eq!(report.max_ms, 100.0);
    }
}
