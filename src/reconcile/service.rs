//! Reconciliation as the running bridge offers it: runs started from the admin API or on
//! the schedule, in the background, and the stored runs and findings for the admin API.

use std::sync::Arc;
use std::time::Duration;

use super::compare::FindingKind;
use super::run::{LogProgress, Reconciler, RunRequest, Signal};
use super::sync::SyncReport;
use super::ReconcileError;
use crate::ledger::Actor;
use crate::ledger::{FindingRow, LedgerError, RunRow};
use crate::targets::Payload;

/// The bridge's reconciler, shared by the admin API and the schedule.
#[derive(Clone)]
pub(crate) struct Reconciles {
    reconciler: Arc<Reconciler>,
}

impl Reconciles {
    pub(crate) fn new(reconciler: Arc<Reconciler>) -> Reconciles {
        Reconciles { reconciler }
    }

    /// Starts a run in the background; returns its id at once.
    pub(crate) async fn start(&self, request: RunRequest) -> Result<i64, ReconcileError> {
        let run_id = self.reconciler.begin(&request).await?;
        let reconciler = Arc::clone(&self.reconciler);
        tokio::spawn(async move {
            match reconciler.execute(run_id, &request, &LogProgress).await {
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

    pub(crate) fn signal(&self, signal: Signal) {
        self.reconciler.signal(signal);
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
