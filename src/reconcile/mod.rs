//! Reconciliation: reads back what each target holds and compares it, per (user, target),
//! with what the ledger wants (desired) and last delivered; carries out each target's
//! policy by leaving repairs as due deliveries for the fan-out workers.

pub(crate) mod compare;
pub mod policy;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod service;
pub(crate) mod sync;

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::clock::{unix_millis, SharedClock};
use crate::config::Settings;
use crate::fanout::Fanout;
use crate::ledger::{Actor, AuditAction, AuditEntry, AuditOutcome, Db, LedgerError};
use crate::targets::{Target, TargetError};

use self::run::{Reconciler, TargetEntry};

/// Errors of a reconcile or a sync, said so an operator can act on them.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no target named {name}; configured: {known}")]
    UnknownTarget { name: String, known: String },
    #[error("no user with id {0}")]
    UnknownUser(String),
    #[error("no reconcile run {0}")]
    UnknownRun(i64),
    #[error(
        "unknown finding kind {0}: use missing, drifted, unlinked, orphan_marked, \
         orphan_unmarked or pending"
    )]
    UnknownKind(String),
    #[error("reconcile run {0} is still in progress; wait for it or cancel it")]
    Busy(i64),
    #[error("the run was cancelled")]
    Cancelled,
    #[error("target {target}: {source}")]
    Target {
        target: String,
        #[source]
        source: TargetError,
    },
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
}

/// Records an operator action of this flow (a reconcile that carried out its policies, a
/// sync of one user) in the audit trail, and logs it. A failure to record is logged, not
/// returned: the action itself has already happened.
pub(crate) async fn audit(
    db: &Db,
    clock: &SharedClock,
    actor: &Actor,
    action: AuditAction,
    target: Option<String>,
    user_id: Option<String>,
    detail: serde_json::Value,
) {
    tracing::info!(actor = %actor.name(), action = action.as_str(), detail = %detail, "operator action");
    let entry = AuditEntry {
        at: unix_millis(clock.as_ref()),
        actor: actor.name(),
        action,
        target,
        user_id,
        detail,
        outcome: AuditOutcome::Ok,
    };
    if let Err(err) = db.write(move |s| s.append_audit(&entry).map(drop)).await {
        tracing::warn!(error = %err, "cannot record the action in the audit trail");
    }
}

/// A reconciler over the built `targets`, each with its policy and its share of the rate
/// from `settings`. `fanout`: the running bridge's workers, woken when repairs are due.
pub(crate) fn reconciler(
    settings: &Settings,
    db: Db,
    clock: SharedClock,
    targets: &[Arc<dyn Target>],
    fanout: Option<Arc<Fanout>>,
) -> Reconciler {
    let entries = targets
        .iter()
        .map(|target| {
            let config = settings.targets.get(target.name());
            let rate = config.map_or(1, |c| c.rate_limit_per_second);
            let share = (f64::from(rate) * settings.reconcile.rate_share).floor() as u32;
            TargetEntry {
                target: Arc::clone(target),
                policy: config.map(|c| c.reconcile).unwrap_or_default(),
                reads_per_second: NonZeroU32::new(share).unwrap_or(NonZeroU32::MIN),
                concurrency: config.map_or(1, |c| c.concurrency),
            }
        })
        .collect();
    Reconciler::new(db, clock, entries, settings.reconcile.batch, fanout)
}
