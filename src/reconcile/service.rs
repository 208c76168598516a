//! Reconciliation as the running bridge offers it: runs started from the admin API or on
//! the schedule, in the background, and the stored runs and findings for the admin API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::compare::FindingKind;
use super::run::{LogProgress, Progress, Reconciler, RunRequest, Signal};
use super::sync::SyncReport;
use super::ReconcileError;
use crate::ledger::Actor;
use crate::ledger::{FindingRow, LedgerError, RunRow};
use crate::targets::Payload;

/// How far a run started here has got: accounts compared and findings so far, for the
/// console's run page. Logged as well, like `LogProgress`.
#[derive(Debug, Default)]
pub(crate) struct Advance {
    run_id: i64,
    accounts: AtomicU64,
    /// Findings of the targets done, and of the one being read.
    done: AtomicU64,
    current: AtomicU64,
}

/// A snapshot of `Advance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunProgress {
    pub accounts: u64,
    pub findings: u64,
}

impl Advance {
    fn snapshot(&self) -> RunProgress {
        RunProgress {
            accounts: self.accounts.load(Ordering::Relaxed),
            findings: self.done.load(Ordering::Relaxed) + self.current.load(Ordering::Relaxed),
        }
    }
}

impl Progress for Advance {
    fn target_started(&self, target: &str, expected: u64) {
        self.current.store(0, Ordering::Relaxed);
        LogProgress.target_started(target, expected);
    }
    fn advanced(&self, target: &str, accounts: u64, findings: u64) {
        self.accounts.fetch_add(accounts, Ordering::Relaxed);
        self.current.store(findings, Ordering::Relaxed);
        LogProgress.advanced(target, accounts, findings);
    }
    fn target_finished(&self, target: &str, findings: u64) {
        self.current.store(0, Ordering::Relaxed);
        self.done.fetch_add(findings, Ordering::Relaxed);
        LogProgress.target_finished(target, findings);
    }
}

/// The bridge's reconciler, shared by the admin API and the schedule.
#[derive(Clone)]
pub(crate) struct Reconciles {
    reconciler: Arc<Reconciler>,
    /// The progress of the last run started here.
    advance: Arc<Mutex<Option<Arc<Advance>>>>,
}

impl Reconciles {
    pub(crate) fn new(reconciler: Arc<Reconciler>) -> Reconciles {
        Reconciles {
            reconciler,
            advance: Arc::default(),
        }
    }

    /// Starts a run in the background; returns its id at once.
    pub(crate) async fn start(&self, request: RunRequest) -> Result<i64, ReconcileError> {
        let run_id = self.reconciler.begin(&request).await?;
        let reconciler = Arc::clone(&self.reconciler);
        let advance = Arc::new(Advance {
            run_id,
            ..Advance::default()
        });
        *self.advance.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&advance));
        tokio::spawn(async move {
            match reconciler.execute(run_id, &request, advance.as_ref()).await {
                Ok(run) => tracing::info!(
                    run_id, status = %run.status, counts = %run.counts, "reconcile run ended"
                ),
                Err(err) => {
                    tracing::error!(run_id, error = %err, "reconcile run could not be closed")
                }
            }
        });
        Ok(run_id)
    }

    pub(crate) async fn sync(
        &self,
        user: &str,
        target: Option<&str>,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<SyncReport, ReconcileError> {
        self.reconciler.sync(user, target, dry_run, actor).await
    }

    /// `payload` as `target` would store it, to set beside an account read from it;
    /// `None` for a target the bridge does not have.
    pub(crate) fn as_stored(&self, target: &str, payload: &Payload) -> Option<Payload> {
        let entry = self.reconciler.entry(target).ok()?;
        Some(entry.target.as_stored(payload))
    }

    /// Pauses, resumes or cancels the run in progress, recording `actor` in the audit trail.
    pub(crate) async fn signal(&self, signal: Signal, actor: &Actor) {
        self.reconciler.signal(signal, actor).await;
    }

    /// How far `run_id` has got, if it was started by this process.
    pub(crate) fn progress(&self, run_id: i64) -> Option<RunProgress> {
        let advance = self.advance.lock().unwrap_or_else(|p| p.into_inner());
        let advance = advance.as_ref().filter(|a| a.run_id == run_id)?;
        Some(advance.snapshot())
    }

    pub(crate) async fn runs(&self, limit: usize) -> Result<Vec<RunRow>, ReconcileError> {
        Ok(self
            .reconciler
            .db()
            .read(move |s| s.reconcile_runs(limit))
            .await?)
    }

    pub(crate) async fn run(&self, run_id: i64) -> Result<RunRow, ReconcileError> {
        self.reconciler
            .db()
            .read(move |s| s.reconcile_run(run_id))
            .await?
            .ok_or(ReconcileError::UnknownRun(run_id))
    }

    /// A run's findings, of one kind if `kind` names one, `limit` from after `after`.
    pub(crate) async fn findings(
        &self,
        run_id: i64,
        kind: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FindingRow>, ReconcileError> {
        let kind = kind
            .map(|k| FindingKind::parse(k).ok_or_else(|| ReconcileError::UnknownKind(k.into())))
            .transpose()?;
        self.run(run_id).await?;
        Ok(self
            .reconciler
            .db()
            .read(move |s| {
                s.reconcile_findings(run_id, kind.map(FindingKind::as_str), after, limit)
            })
            .await?)
    }

    /// The most recent run that finished, for the metrics.
    pub(crate) async fn last_finished(&self) -> Result<Option<RunRow>, LedgerError> {
        self.reconciler
            .db()
            .read(|s| s.last_finished_reconcile_run())
            .await
    }

    /// Runs every target every `period`, the first one a period after the start, carrying
    /// the policies out when `apply`; a run still in progress (started by an operator) makes
    /// the schedule skip its turn.
    pub(crate) fn schedule(&self, period: Duration, apply: bool) {
        let reconciles = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                ticks.tick().await;
                let request = RunRequest {
                    apply,
                    ..RunRequest::default()
                };
                match reconciles.start(request).await {
                    Ok(run_id) => tracing::info!(run_id, "scheduled reconcile started"),
                    Err(err) => tracing::warn!(error = %err, "scheduled reconcile skipped"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_progress_sums_the_accounts_read_and_the_findings_of_every_target() {
        let advance = Advance::default();
        advance.target_started("kibo", 10);
        advance.advanced("kibo", 4, 1);
        advance.advanced("kibo", 6, 3);
        assert_eq!(
            advance.snapshot(),
            RunProgress {
                accounts: 10,
                findings: 3
            }
        );
        advance.target_finished("kibo", 3);
        advance.target_started("appgate", 5);
        advance.advanced("appgate", 5, 2);
        assert_eq!(
            advance.snapshot(),
            RunProgress {
                accounts: 15,
                findings: 5
            }
        );
    }
}
