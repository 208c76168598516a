//! Per-target circuit, between the worker's dispatch and the targets: reads every answer as
//! evidence about the target as a whole. A target that is down or throttling opens it; while
//! open no delivery is sent and no user is charged an attempt; one probe goes at the backoff
//! cadence (or when `Retry-After` says), and an answer showing the target working closes it.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use crate::fanout::backoff::Backoff;
use crate::ledger::{CircuitState, TargetCircuit};
use crate::targets::TargetError;

/// What one delivery's result says about its target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    /// The target answered as a working service: delivered, or refused this user's data.
    Up,
    /// The target answered, but failed this delivery in a way worth retrying (a 500, an
    /// unreadable answer): this user's problem until other users fail too.
    UserFailure,
    /// The target as a whole is throttling, down or unreachable.
    Down {
        retry_after: Option<Duration>,
        status: Option<u16>,
        error: String,
    },
    /// Nothing reached the target (the adapter refused the payload itself).
    Silent,
}

/// Reads a delivery's result as evidence about its target.
pub(crate) fn signal<T>(result: &Result<T, TargetError>) -> Signal {
    match result {
        Ok(_) => Signal::Up,
        Err(TargetError::Unusable { .. }) => Signal::Silent,
        Err(TargetError::Rejected { .. }) => Signal::Up,
        Err(TargetError::Retryable {
            status,
            reason,
            retry_after,
        }) => {
            let down = retry_after.is_some()
                || matches!(status, Some(408 | 429 | 502 | 503 | 504))
                || (status.is_none() && unreachable(reason));
            if down {
                Signal::Down {
                    retry_after: *retry_after,
                    status: *status,
                    error: reason.clone(),
                }
            } else {
                Signal::UserFailure
            }
        }
    }
}

/// A request that got no usable answer at all (`targets::http::transport_error`).
fn unreachable(reason: &str) -> bool {
    ["timed out:", "connection failed:", "broken response:"]
        .iter()
        .any(|prefix| reason.starts_with(prefix))
}

/// Whether the worker may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed: everything due.
    All,
    /// Open and its time has come: one delivery, the probe.
    Probe,
    /// Open, or a probe is out: nothing.
    Shut,
}

/// How the circuit judged one failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The failure counts toward the user's `max_attempts`: the target was otherwise
    /// healthy when it happened.
    pub charged: bool,
    /// While the circuit is open: when the delivery may be tried again (with the probe).
    pub retry_at: Option<i64>,
}

/// The circuit of one target. Shared by the worker's clones.
#[derive(Debug)]
pub(crate) struct Circuit {
    /// Target-level failures in a row that open it.
    threshold: u32,
    backoff: Backoff,
    /// `None` until read from the ledger, so a restart resumes an open circuit.
    state: Mutex<Option<TargetCircuit>>,
}

impl Circuit {
    pub(crate) fn new(threshold: u32, backoff: Backoff) -> Circuit {
        Circuit {
            threshold: threshold.max(1),
            backoff,
            state: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<TargetCircuit>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.lock().is_some()
    }

    /// Takes the state the ledger last recorded. A probe that was out when the process
    /// stopped never answered: the circuit is open and due for another.
    pub(crate) fn load(&self, stored: Option<TargetCircuit>) {
        let mut state = self.lock();
        if state.is_none() {
            let mut stored = stored.unwrap_or_default();
            if stored.state == CircuitState::HalfOpen {
                stored.state = CircuitState::Open;
            }
            *state = Some(stored);
        }
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> TargetCircuit {
        self.lock().clone().unwrap_or_default()
    }

    pub(crate) fn admit(&self, now: i64) -> Admission {
        let state = self.lock();
        let Some(circuit) = state.as_ref() else {
            return Admission::All;
        };
        match circuit.state {
            CircuitState::Closed => Admission::All,
            CircuitState::Open if circuit.retry_at.is_none_or(|at| at <= now) => Admission::Probe,
            CircuitState::Open | CircuitState::HalfOpen => Admission::Shut,
        }
    }

    /// The probe is leaving; returns the state to record.
    pub(crate) fn begin_probe(&self, now: i64) -> Option<TargetCircuit> {
        self.change(now, |circuit| {
            if circuit.state == CircuitState::Open {
                circuit.state = CircuitState::HalfOpen;
            }
        })
    }

    /// The probe is done. If it brought no answer (its delivery was no longer due), the
    /// circuit is open again and due for another probe.
    pub(crate) fn end_probe(&self, now: i64) -> Option<TargetCircuit> {
        self.change(now, |circuit| {
            if circuit.state == CircuitState::HalfOpen {
                circuit.state = CircuitState::Open;
            }
        })
    }

    /// Reads one delivery's result. Returns the verdict on it and, when the circuit
    /// changed, the state it was in and the state to record.
    pub(crate) fn record(
        &self,
        signal: &Signal,
        probe: bool,
        now: i64,
        rng: &mut impl Rng,
    ) -> (Verdict, Option<(CircuitState, TargetCircuit)>) {
        let mut verdict = Verdict {
            charged: false,
            retry_at: None,
        };
        let mut was = CircuitState::Closed;
        let changed = self.change(now, |circuit| {
            was = circuit.state;
            let closes = match signal {
                Signal::Up => true,
                // A straggler's 500 while the target is throttled proves little; the
                // probe's does prove the target answers.
                Signal::UserFailure => probe || circuit.state == CircuitState::Closed,
                Signal::Down { .. } | Signal::Silent => false,
            };
            if closes {
                *circuit = TargetCircuit {
                    updated_at: circuit.updated_at,
                    ..TargetCircuit::default()
                };
                verdict.charged = matches!(signal, Signal::UserFailure);
                return;
            }
            let Signal::Down {
                retry_after,
                status,
                error,
            } = signal
            else {
                return;
            };
            // Charged only when the answer just before was one of a working target: the
            // first failure of an outage costs one user one attempt, the rest none.
            let healthy_before = circuit.state == CircuitState::Closed && circuit.failures == 0;
            circuit.failures = circuit.failures.saturating_add(1);
            circuit.last_status = *status;
            circuit.last_error = Some(error.clone());
            let wait = |failed_probes: u32, rng: &mut _| {
                let delay = self
                    .backoff
                    .probe_delay(failed_probes + 1, *retry_after, rng);
                now.saturating_add(delay.as_millis() as i64)
            };
            match circuit.state {
                CircuitState::Closed
                    if retry_after.is_some() || circuit.failures >= self.threshold =>
                {
                    circuit.state = CircuitState::Open;
                    circuit.opened_at = Some(now);
                    circuit.failed_probes = 0;
                    circuit.retry_at = Some(wait(0, rng));
                }
                CircuitState::Closed => verdict.charged = healthy_before,
                CircuitState::HalfOpen if probe => {
                    circuit.state = CircuitState::Open;
                    circuit.failed_probes = circuit.failed_probes.saturating_add(1);
                    circuit.retry_at = Some(wait(circuit.failed_probes, rng));
                }
                // A straggler sent before the circuit opened: it only ever delays the
                // next probe, when the target names a later time.
                CircuitState::Open | CircuitState::HalfOpen => {
                    if let Some(after) = retry_after {
                        let named = now.saturating_add(after.as_millis() as i64);
                        circuit.retry_at = Some(circuit.retry_at.map_or(named, |at| at.max(named)));
                    }
                }
            }
            if circuit.state != CircuitState::Closed {
                verdict.retry_at = circuit.retry_at;
            }
        });
        (verdict, changed.map(|circuit| (was, circuit)))
    }

    /// Applies `edit`; returns the new state when it differs from the old one.
    fn change(&self, now: i64, edit: impl FnOnce(&mut TargetCircuit)) -> Option<TargetCircuit> {
        let mut state = self.lock();
        let circuit = state.get_or_insert_with(TargetCircuit::default);
        let before = circuit.clone();
        edit(circuit);
        if *circuit == before {
            return None;
        }
        circuit.updated_at = now;
        Some(circuit.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A retryable failure worded as `targets::http` words them ("503: ..."), with the
    /// status it carries.
    fn retryable(reason: &str, retry_after: Option<u64>) -> Result<(), TargetError> {
        let status = reason
            .split_once(": ")
            .and_then(|(head, _)| head.parse().ok());
        Err(TargetError::Retryable {
            status,
            reason: reason.into(),
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    #[test]
    fn answers_are_read_as_evidence_about_the_target() {
        let down = |status| Signal::Down {
            retry_after: None,
            status,
            error: String::new(),
        };
        let table: Vec<(Result<(), TargetError>, Signal)> = vec![
            (Ok(()), Signal::Up),
            (
                Err(TargetError::Rejected {
                    status: 422,
                    message: "bad".into(),
                }),
                Signal::Up,
            ),
            (Err(TargetError::unusable("no key")), Signal::Silent),
            (retryable("429: slow down", None), down(Some(429))),
            (retryable("503: down", None), down(Some(503))),
            (retryable("502: bad gateway", None), down(Some(502))),
            (retryable("504: gateway timeout", None), down(Some(504))),
            (retryable("408: request timeout", None), down(Some(408))),
            (
                retryable("timed out: operation timed out", None),
                down(None),
            ),
            (retryable("connection failed: refused", None), down(None)),
            (retryable("broken response: reset", None), down(None)),
            (
                retryable("500: NullPointerException", None),
                Signal::UserFailure,
            ),
            (
                retryable("unreadable 200 answer: EOF", None),
                Signal::UserFailure,
            ),
            (
                retryable("answer carries no `id`", None),
                Signal::UserFailure,
            ),
        ];
        for (result, expected) in table {
            let got = match signal(&result) {
                Signal::Down { status, .. } => down(status),
                other => other,
            };
            assert_eq!(got, expected, "{result:?}");
        }
        // A named wait makes any answer a target-level one.
        assert!(matches!(
            signal(&retryable("500: busy", Some(3))),
            Signal::Down {
                retry_after: Some(_),
                status: Some(500),
                ..
            }
        ));
    }

    fn circuit(threshold: u32) -> Circuit {
        let circuit = Circuit::new(
            threshold,
            Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
        );
        circuit.load(None);
        circuit
    }

    fn down(retry_after: Option<u64>) -> Signal {
        Signal::Down {
            retry_after: retry_after.map(Duration::from_secs),
            status: Some(503),
            error: "503: down".into(),
        }
    }

    #[test]
    fn opens_after_k_failures_probes_once_and_closes_on_success() {
        let c = circuit(3);
        let mut rng = StdRng::seed_from_u64(1);
        let (first, _) = c.record(&down(None), false, 0, &mut rng);
        assert!(
            first.charged,
            "the first failure after a working answer counts"
        );
        let (second, _) = c.record(&down(None), false, 1, &mut rng);
        assert_eq!(
            second,
            Verdict {
                charged: false,
                retry_at: None
            }
        );
        assert_eq!(c.admit(2), Admission::All);
        let (third, changed) = c.record(&down(None), false, 2, &mut rng);
        let (was, opened) = changed.unwrap();
        assert_eq!(was, CircuitState::Closed);
        assert_eq!(opened.state, CircuitState::Open);
        assert!(!third.charged);
        let retry_at = third.retry_at.unwrap();
        assert_eq!(opened.retry_at, Some(retry_at));
        assert!((2 + 500..=2 + 1000).contains(&retry_at), "{retry_at}");
        assert_eq!(c.admit(retry_at - 1), Admission::Shut);
        assert_eq!(c.admit(retry_at), Admission::Probe);
        assert_eq!(
            c.begin_probe(retry_at).unwrap().state,
            CircuitState::HalfOpen
        );
        assert_eq!(c.admit(retry_at), Admission::Shut, "one probe at a time");
        // The probe fails: open again, waiting longer.
        let (failed, _) = c.record(&down(None), true, retry_at, &mut rng);
        assert!(!failed.charged);
        assert_eq!(c.snapshot().failed_probes, 1);
        assert!(failed.retry_at.unwrap() >= retry_at + 1000);
        let next = failed.retry_at.unwrap();
        c.begin_probe(next);
        let (_, closed) = c.record(&Signal::Up, true, next, &mut rng);
        assert_eq!(
            closed.unwrap().1,
            TargetCircuit {
                updated_at: next,
                ..TargetCircuit::default()
            }
        );
        assert_eq!(c.admit(next), Admission::All);
        // Working answers to a closed circuit change nothing, so nothing is written.
        assert_eq!(c.record(&Signal::Up, false, next + 1, &mut rng).1, None);
    }

    #[test]
    fn retry_after_opens_at_once_for_exactly_that_long() {
        let c = circuit(5);
        let mut rng = StdRng::seed_from_u64(2);
        let (verdict, _) = c.record(&down(Some(30)), false, 1_000, &mut rng);
        assert_eq!(
            verdict,
            Verdict {
                charged: false,
                retry_at: Some(31_000)
            }
        );
        // A straggler naming a later time pushes the probe back; an earlier one does not.
        c.record(&down(Some(40)), false, 2_000, &mut rng);
        c.record(&down(Some(1)), false, 3_000, &mut rng);
        assert_eq!(c.snapshot().retry_at, Some(42_000));
    }

    #[test]
    fn a_users_own_failure_is_charged_while_the_target_works() {
        let c = circuit(2);
        let mut rng = StdRng::seed_from_u64(3);
        for at in 0..10 {
            let (verdict, _) = c.record(&Signal::UserFailure, false, at, &mut rng);
            assert!(verdict.charged);
            // Other users are delivered in between.
            c.record(&Signal::Up, false, at, &mut rng);
        }
        assert_eq!(c.admit(10), Admission::All);
        // A single 503 between successes is this user's, too.
        let (verdict, _) = c.record(&down(None), false, 10, &mut rng);
        assert!(verdict.charged);
    }

    #[test]
    fn a_probe_that_never_answered_leaves_the_circuit_due_for_another() {
        let c = circuit(1);
        let mut rng = StdRng::seed_from_u64(4);
        let (verdict, _) = c.record(&down(None), false, 0, &mut rng);
        let at = verdict.retry_at.unwrap();
        c.begin_probe(at);
        assert_eq!(c.end_probe(at).unwrap().state, CircuitState::Open);
        assert_eq!(c.admit(at), Admission::Probe);
        // A restart while a probe was out resumes open.
        let restarted = Circuit::new(1, c.backoff);
        restarted.load(Some(TargetCircuit {
            state: CircuitState::HalfOpen,
            retry_at: Some(at),
            ..TargetCircuit::default()
        }));
        assert_eq!(restarted.admit(at), Admission::Probe);
    }
}
