//! Reconciliation, the run: per target, streams the vendor's pages (or reads every account
//! the ledger knows, where the vendor cannot list), compares them with the ledger a batch at
//! a time, records every finding and, with `apply`, carries out the target's policy. Memory
//! holds one page or one batch, never a whole target or ledger.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::sync::watch;

use super::compare::{compare, Finding, FindingKind};
use super::policy::{OnDrift, OnMissing, OnOrphan, Policy};
use super::{audit, ReconcileError};
use crate::clock::{unix_millis, SharedClock};
use crate::fanout::Fanout;
use crate::ledger::{
    AccountRead, Actor, AuditAction, Db, Delivery, DeliveryOp, FindingRow, LedgerError, RunRow,
    StateKey,
};
use crate::targets::{Payload, RemoteAccount, Target, TargetError};

/// A target as a reconcile drives it.
pub(crate) struct TargetEntry {
    pub target: Arc<dyn Target>,
    pub policy: Policy,
    /// The reads per second a reconcile may take: its share of the target's rate.
    pub reads_per_second: NonZeroU32,
    /// Reads in flight at once when accounts are read one by one.
    pub concurrency: usize,
}

/// What to reconcile.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunRequest {
    /// One target; `None`: every target.
    pub target: Option<String>,
    /// Carry the policies out, rather than only report.
    pub apply: bool,
    /// Who asked, for the audit trail.
    pub actor: Actor,
}

/// Told how a run advances: the command line draws it, the server logs it.
pub(crate) trait Progress: Send + Sync {
    /// `expected` is how many accounts the ledger holds for the target, a guide only.
    fn target_started(&self, target: &str, expected: u64);
    /// `accounts` more were compared; `findings` so far on this target.
    fn advanced(&self, target: &str, accounts: u64, findings: u64);
    fn target_finished(&self, target: &str, findings: u64);
}

/// Progress as log lines.
pub(crate) struct LogProgress;

impl Progress for LogProgress {
    fn target_started(&self, target: &str, expected: u64) {
        tracing::info!(
            target_name = target,
            expected,
            "reconcile: reading the target"
        );
    }
    fn advanced(&self, target: &str, accounts: u64, findings: u64) {
        tracing::debug!(
            target_name = target,
            accounts,
            findings,
            "reconcile: compared"
        );
    }
    fn target_finished(&self, target: &str, findings: u64) {
        tracing::info!(target_name = target, findings, "reconcile: target done");
    }
}

/// What an operator has asked of the run in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Run,
    Pause,
    Cancel,
}

/// Runs reconciles, one at a time per process.
pub(crate) struct Reconciler {
    db: Db,
    clock: SharedClock,
    targets: Vec<TargetEntry>,
    limiters: HashMap<String, DefaultDirectRateLimiter>,
    batch: usize,
    running: Mutex<Option<i64>>,
    signal: watch::Sender<Signal>,
    /// Workers of the running bridge, woken when a repair is left due.
    fanout: Option<Arc<Fanout>>,
}

/// A repair left in the ledger for the workers.
enum Repair {
    Heal { user: String, remote_id: String },
    Redeliver { user: String, hash: StateKey },
}

/// How often a read the target answers "retry" is tried before the run gives up.
const READ_TRIES: u32 = 5;

impl Reconciler {
    pub(crate) fn new(
        db: Db,
        clock: SharedClock,
        targets: Vec<TargetEntry>,
        batch: usize,
        fanout: Option<Arc<Fanout>>,
    ) -> Reconciler {
        let limiters = targets
            .iter()
            .map(|entry| {
                let quota = Quota::per_second(entry.reads_per_second);
                (entry.target.name().to_owned(), RateLimiter::direct(quota))
            })
            .collect();
        Reconciler {
            db,
            clock,
            targets,
            limiters,
            batch: batch.max(1),
            running: Mutex::new(None),
            signal: watch::channel(Signal::Run).0,
            fanout,
        }
    }

    pub(crate) fn target_names(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|e| e.target.name().to_owned())
            .collect()
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Wakes the running bridge's worker of `target`, if this process has one.
    pub(crate) fn wake(&self, target: &str) {
        if let Some(fanout) = &self.fanout {
            fanout.wake(&[target.to_owned()]);
        }
    }

    /// One call to the target as a reconcile makes it (within its share of the rate).
    pub(crate) async fn call_target<T, F, Fut>(
        &self,
        entry: &TargetEntry,
        call: F,
    ) -> Result<T, ReconcileError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, TargetError>>,
    {
        self.call(entry, call).await
    }

    pub(crate) fn entry(&self, name: &str) -> Result<&TargetEntry, ReconcileError> {
        self.targets
            .iter()
            .find(|e| e.target.name() == name)
            .ok_or_else(|| ReconcileError::UnknownTarget {
                name: name.to_owned(),
                known: self.target_names().join(", "),
            })
    }

    /// Pauses, resumes or cancels the run in progress, and records who asked (with the run
    /// it reached, none when no run was in progress).
    pub(crate) async fn signal(&self, signal: Signal, actor: &Actor) {
        self.signal.send_replace(signal);
        let run = *self.lock_running();
        let action = match signal {
            Signal::Run => AuditAction::ReconcileResume,
            Signal::Pause => AuditAction::ReconcilePause,
            Signal::Cancel => AuditAction::ReconcileCancel,
        };
        audit(
            &self.db,
            &self.clock,
            actor,
            action,
            None,
            None,
            serde_json::json!({ "run": run }),
        )
        .await;
    }

    /// Records a new run and reserves the process for it.
    pub(crate) async fn begin(&self, request: &RunRequest) -> Result<i64, ReconcileError> {
        if let Some(name) = &request.target {
            self.entry(name)?;
        }
        if let Some(run_id) = *self.lock_running() {
            return Err(ReconcileError::Busy(run_id));
        }
        let now = unix_millis(self.clock.as_ref());
        let (target, apply) = (request.target.clone(), request.apply);
        let run_id = self
            .db
            .write(move |s| s.begin_reconcile_run(now, target.as_deref(), apply))
            .await?;
        let mut running = self.lock_running();
        if let Some(other) = *running {
            return Err(ReconcileError::Busy(other));
        }
        *running = Some(run_id);
        self.signal.send_replace(Signal::Run);
        Ok(run_id)
    }

    /// Carries out the run `begin` recorded, and closes it: finished, failed (with why) or
    /// cancelled.
    pub(crate) async fn execute(
        &self,
        run_id: i64,
        request: &RunRequest,
        progress: &dyn Progress,
    ) -> Result<RunRow, ReconcileError> {
        let started = unix_millis(self.clock.as_ref());
        let mut outcome = Ok(());
        for entry in &self.targets {
            if request
                .target
                .as_deref()
                .is_some_and(|t| t != entry.target.name())
            {
                continue;
            }
            outcome = self
                .reconcile_target(run_id, entry, request.apply, started, progress)
                .await;
            if outcome.is_err() {
                break;
            }
        }
        let (status, error) = match &outcome {
            Ok(()) => ("finished", None),
            Err(ReconcileError::Cancelled) => ("cancelled", None),
            Err(err) => ("failed", Some(err.to_string())),
        };
        if let Err(err) = &outcome {
            tracing::warn!(run_id, error = %err, "reconcile stopped");
        }
        let now = unix_millis(self.clock.as_ref());
        let closed = self
            .db
            .write(move |s| s.finish_reconcile_run(run_id, now, status, error.as_deref()))
            .await;
        *self.lock_running() = None;
        let run = closed?;
        if request.apply {
            audit(
                &self.db,
                &self.clock,
                &request.actor,
                AuditAction::ReconcileApply,
                run.target.clone(),
                None,
                serde_json::json!({"run": run.id, "counts": run.counts}),
            )
            .await;
        }
        Ok(run)
    }

    /// `begin` then `execute`.
    #[cfg(test)]
    pub(crate) async fn run(
        &self,
        request: &RunRequest,
        progress: &dyn Progress,
    ) -> Result<RunRow, ReconcileError> {
        let run_id = self.begin(request).await?;
        self.execute(run_id, request, progress).await
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn reconcile_target(
        &self,
        run_id: i64,
        entry: &TargetEntry,
        apply: bool,
        started: i64,
        progress: &dyn Progress,
    ) -> Result<(), ReconcileError> {
        let target = entry.target.as_ref();
        let name = target.name().to_owned();
        let expected = {
            let name = name.clone();
            self.db.read(move |s| s.ledger_size(&name)).await?
        };
        progress.target_started(&name, expected);
        let mut findings = 0;
        if target.can_list() {
            let mut cursor: Option<String> = None;
            loop {
                self.checkpoint().await?;
                let page = self.call(entry, || target.list(cursor.as_deref())).await?;
                let count = page.accounts.len() as u64;
                findings += self
                    .compare_page(run_id, entry, apply, page.accounts)
                    .await?;
                progress.advanced(&name, count, findings);
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        // Accounts the ledger links: for a target that lists, those its listing did not
        // show (confirmed one by one, as a page can shift while it is read); otherwise all.
        let unseen_by = target.can_list().then_some((run_id, started));
        let mut after = String::new();
        loop {
            self.checkpoint().await?;
            let rows = {
                let (name, after, batch) = (name.clone(), after.clone(), self.batch);
                self.db
                    .read(move |s| s.linked_after(&name, &after, unseen_by, batch))
                    .await?
            };
            let Some(last) = rows.last() else { break };
            after = last.desired.user_id.clone();
            let count = rows.len() as u64;
            let now = unix_millis(self.clock.as_ref());
            let read = stream::iter(rows)
                .map(|row| async move {
                    let id = row.remote_id.clone().unwrap_or_default();
                    let actual = self.call(entry, || target.read(&id)).await?;
                    Ok::<_, ReconcileError>((row, actual))
                })
                .buffered(entry.concurrency.max(1))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            self.remember(
                read.iter()
                    .map(|(row, actual)| account_read(target, row, actual.as_ref(), now))
                    .collect(),
            )
            .await?;
            let found: Vec<_> = read
                .iter()
                .filter_map(|(row, actual)| {
                    compare(target, Some(row), actual.as_ref()).map(|f| (f, Some(row), None))
                })
                .collect();
            findings += self.record(run_id, entry, apply, found).await?;
            progress.advanced(&name, count, findings);
        }
        // Rows without a target id: queued, or (where the vendor cannot list) an account
        // made meanwhile that only a look-up by natural key finds.
        let mut after = String::new();
        loop {
            self.checkpoint().await?;
            let rows = {
                let (name, after, batch) = (name.clone(), after.clone(), self.batch);
                self.db
                    .read(move |s| s.unlinked_after(run_id, &name, &after, batch))
                    .await?
            };
            let Some(last) = rows.last() else { break };
            after = last.desired.user_id.clone();
            let mut found = Vec::new();
            let mut reads = Vec::new();
            for row in &rows {
                let actual = if target.can_list() || row.desired.operation == DeliveryOp::Delete {
                    None
                } else {
                    let actual = self
                        .call(entry, || target.find(&row.desired.payload))
                        .await?;
                    let now = unix_millis(self.clock.as_ref());
                    reads.push(account_read(target, row, actual.as_ref(), now));
                    actual
                };
                if let Some(finding) = compare(target, Some(row), actual.as_ref()) {
                    found.push((finding, Some(row), actual));
                }
            }
            self.remember(reads).await?;
            findings += self.record(run_id, entry, apply, found).await?;
        }
        progress.target_finished(&name, findings);
        Ok(())
    }

    /// Compares one page of the listing with the ledger: its accounts by target id, the
    /// rest by natural key among the rows without one, and what is left is an orphan.
    async fn compare_page(
        &self,
        run_id: i64,
        entry: &TargetEntry,
        apply: bool,
        accounts: Vec<RemoteAccount>,
    ) -> Result<u64, ReconcileError> {
        let target = entry.target.as_ref();
        let name = target.name().to_owned();
        let key = target.schema().natural_key.first().copied().unwrap_or("");
        let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
        let keys: Vec<String> = accounts
            .iter()
            .filter_map(|a| key_of(&a.fields, key))
            .collect();
        let (linked, unlinked) = {
            let (name, key, ids) = (name.clone(), key.to_owned(), ids.clone());
            self.db
                .write(move |s| {
                    s.mark_seen(run_id, &name, &ids)?;
                    Ok::<_, LedgerError>((
                        s.linked_to(&name, &ids)?,
                        s.unlinked_with_key(&name, &key, &keys)?,
                    ))
                })
                .await?
        };
        let by_id: HashMap<&str, &Delivery> = linked
            .iter()
            .filter_map(|row| row.remote_id.as_deref().map(|id| (id, row)))
            .collect();
        let by_key: HashMap<String, &Delivery> = unlinked
            .iter()
            .filter_map(|row| {
                key_of(&target.as_stored(&row.desired.payload), key).map(|k| (k, row))
            })
            .collect();
        let mut found = Vec::new();
        let now = unix_millis(self.clock.as_ref());
        let mut reads = Vec::new();
        for account in accounts {
            let row = by_id
                .get(account.id.as_str())
                .copied()
                .or_else(|| key_of(&account.fields, key).and_then(|k| by_key.get(&k).copied()));
            if let Some(row) = row {
                reads.push(account_read(target, row, Some(&account), now));
            }
            if let Some(finding) = compare(target, row, Some(&account)) {
                found.push((finding, row, Some(account)));
            }
        }
        self.remember(reads).await?;
        self.record(run_id, entry, apply, found).await
    }

    /// Keeps the accounts just read for the console's user page, each in place of the
    /// previous read of its (user, target).
    pub(crate) async fn remember(&self, reads: Vec<AccountRead>) -> Result<(), ReconcileError> {
        if reads.is_empty() {
            return Ok(());
        }
        Ok(self.db.write(move |s| s.record_reads(&reads)).await?)
    }

    /// Decides each finding by the target's policy, carries it out when `apply` (repairs
    /// left due for the workers; orphans disabled or deleted here, as no user's delivery
    /// exists to carry it), and stores the findings. Returns how many.
    async fn record(
        &self,
        run_id: i64,
        entry: &TargetEntry,
        apply: bool,
        found: Vec<(Finding, Option<&Delivery>, Option<RemoteAccount>)>,
    ) -> Result<u64, ReconcileError> {
        if found.is_empty() {
            return Ok(0);
        }
        let count = found.len() as u64;
        let mut rows = Vec::with_capacity(found.len());
        let mut repairs = Vec::new();
        for (finding, row, account) in found {
            let decision = decide(&finding, row, &entry.policy);
            let mut error = None;
            if apply {
                match (decision, row, account) {
                    ("recreate", Some(row), _) => repairs.push(Repair::Heal {
                        user: row.desired.user_id.clone(),
                        remote_id: finding.remote_id.clone().unwrap_or_default(),
                    }),
                    ("repair" | "link", Some(row), _) => repairs.push(Repair::Redeliver {
                        user: row.desired.user_id.clone(),
                        hash: row.desired.hash.clone(),
                    }),
                    ("disable" | "delete", _, Some(account)) => {
                        error = self
                            .settle_orphan(entry, decision, &account)
                            .await
                            .err()
                            .map(|e| e.to_string());
                    }
                    _ => {}
                }
            }
            rows.push(FindingRow {
                seq: 0,
                run_id,
                kind: finding.kind.as_str().to_owned(),
                target: finding.target,
                user_id: finding.user_id,
                remote_id: finding.remote_id,
                fields: serde_json::to_value(&finding.fields).unwrap_or(Value::Null),
                decision: decision.to_owned(),
                error,
            });
        }
        let name = entry.target.name().to_owned();
        let now = unix_millis(self.clock.as_ref());
        let due = !repairs.is_empty();
        self.db
            .write(move |s| {
                for repair in &repairs {
                    match repair {
                        Repair::Heal { user, remote_id } => {
                            s.heal_missing(user, &name, remote_id, now)?;
                        }
                        Repair::Redeliver { user, hash } => {
                            s.redeliver(user, &name, hash, now)?;
                        }
                    }
                }
                s.record_findings(&rows)
            })
            .await?;
        if due {
            if let Some(fanout) = &self.fanout {
                fanout.wake(&[entry.target.name().to_owned()]);
            }
        }
        Ok(count)
    }

    /// Disables or deletes a marked orphan through the adapter, within the reconcile's rate.
    /// It has no SCIM user, so its own fields stand for the full state a disable needs.
    async fn settle_orphan(
        &self,
        entry: &TargetEntry,
        decision: &str,
        account: &RemoteAccount,
    ) -> Result<(), ReconcileError> {
        let target = entry.target.as_ref();
        if decision == "delete" {
            self.call(entry, || target.delete(&account.id)).await
        } else {
            // Without the fields the target assigns itself, which a write must not carry.
            let fields = target.schema().writable(&account.fields);
            self.call(entry, || target.disable(&account.id, &fields))
                .await
                .map(drop)
        }
    }

    /// One call to the target within the reconcile's share of its rate. An answer worth
    /// retrying is retried after what the target asked for (or a second), a few times.
    async fn call<T, F, Fut>(&self, entry: &TargetEntry, call: F) -> Result<T, ReconcileError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, TargetError>>,
    {
        let name = entry.target.name();
        let mut tries = 0;
        loop {
            if let Some(limiter) = self.limiters.get(name) {
                limiter.until_ready().await;
            }
            match call().await {
                Err(TargetError::Retryable { retry_after, .. }) if tries + 1 < READ_TRIES => {
                    tries += 1;
                    tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(1))).await;
                }
                result => {
                    return result.map_err(|source| ReconcileError::Target {
                        target: name.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// Waits while the run is paused; stops it when cancelled.
    async fn checkpoint(&self) -> Result<(), ReconcileError> {
        let mut signal = self.signal.subscribe();
        loop {
            let now = *signal.borrow_and_update();
            match now {
                Signal::Run => return Ok(()),
                Signal::Cancel => return Err(ReconcileError::Cancelled),
                Signal::Pause => {
                    if signal.changed().await.is_err() {
                        return Err(ReconcileError::Cancelled);
                    }
                }
            }
        }
    }
}

/// What was read of `row`'s account (`None`: the target holds none), as the ledger keeps it.
pub(crate) fn account_read(
    target: &dyn Target,
    row: &Delivery,
    actual: Option<&RemoteAccount>,
    at: i64,
) -> AccountRead {
    AccountRead {
        user_id: row.desired.user_id.clone(),
        target: target.name().to_owned(),
        read_at: at,
        remote_id: actual.map(|a| a.id.clone()),
        account: actual.map(|a| without_secrets(target, row, &a.fields)),
    }
}

/// Words that mark a field as a secret whatever the vendor calls it.
const SECRET_WORDS: [&str; 4] = ["password", "secret", "token", "credential"];

/// An account without anything secret: the schema's write-only fields and the mapping's
/// password field (no vendor here returns them, but a vendor's answer may change), and any
/// field, at any depth, whose name says it holds a secret.
fn without_secrets(target: &dyn Target, row: &Delivery, fields: &Payload) -> Payload {
    let schema = target.schema();
    fields
        .iter()
        .filter(|(name, _)| {
            !schema.field(name).is_some_and(|spec| spec.write_only)
                && row.desired.password_field.as_deref() != Some(name.as_str())
        })
        .filter_map(|(name, value)| Some((name.clone(), scrub(name, value)?)))
        .collect()
}

fn scrub(name: &str, value: &Value) -> Option<Value> {
    let lower = name.to_lowercase();
    if SECRET_WORDS.iter().any(|word| lower.contains(word)) {
        return None;
    }
    Some(match value {
        Value::Object(inner) => Value::Object(
            inner
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), scrub(name, value)?)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().filter_map(|v| scrub("", v)).collect()),
        other => other.clone(),
    })
}

/// A natural key's value, folded as the ledger compares it.
fn key_of(fields: &Payload, key: &str) -> Option<String> {
    match fields.get(key)? {
        Value::String(text) if !text.is_empty() => Some(text.to_lowercase()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// What the policy says to do about a finding.
fn decide(finding: &Finding, row: Option<&Delivery>, policy: &Policy) -> &'static str {
    match finding.kind {
        // Only an active user's account is made again; a disabled one that vanished is
        // reported.
        FindingKind::Missing
            if policy.on_missing == OnMissing::Recreate
                && row.is_some_and(|r| r.desired.operation == DeliveryOp::Upsert) =>
        {
            "recreate"
        }
        FindingKind::Missing => "report",
        FindingKind::Drifted if policy.on_drift == OnDrift::Repair => "repair",
        FindingKind::Drifted => "report",
        FindingKind::Unlinked => "link",
        FindingKind::OrphanMarked => match policy.on_orphan {
            OnOrphan::Report => "report",
            OnOrphan::Disable => "disable",
            OnOrphan::Delete => "delete",
        },
        FindingKind::OrphanUnmarked => "untouched",
        FindingKind::Pending => "queued",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::ledger::{Attempt, AttemptOutcome, DbOptions, DeliveryState, Desired};
    use crate::reconcile::compare::tests::Shape;
    use crate::targets::{object, AccountPage, TargetResult, TargetSchema};

    /// A target held in memory, two accounts a page, marked by `"note": "scim-bridge"`.
    struct Fake {
        shape: Shape,
        listing: bool,
        accounts: Mutex<BTreeMap<String, Payload>>,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(listing: bool, accounts: &[(&str, Value)]) -> Arc<Fake> {
            Arc::new(Fake {
                shape: Shape::new(),
                listing,
                accounts: Mutex::new(
                    accounts
                        .iter()
                        .map(|(id, fields)| (id.to_string(), object(fields.clone())))
                        .collect(),
                ),
                calls: Mutex::new(Vec::new()),
            })
        }

        fn account(&self, id: &str, fields: &Payload) -> RemoteAccount {
            let mut fields = fields.clone();
            fields.insert("id".into(), json!(id));
            RemoteAccount {
                id: id.into(),
                fields,
            }
        }

        fn log(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }

        fn ids(&self) -> Vec<String> {
            self.accounts.lock().unwrap().keys().cloned().collect()
        }
    }

    #[async_trait::async_trait]
    impl Target for Fake {
        fn name(&self) -> &str {
            "shape"
        }
        fn schema(&self) -> &TargetSchema {
            self.shape.schema()
        }
        async fn find(&self, payload: &Payload) -> TargetResult<Option<RemoteAccount>> {
            self.log("find".into());
            let want = key_of(payload, "email");
            let accounts = self.accounts.lock().unwrap();
            Ok(accounts
                .iter()
                .find(|(_, fields)| key_of(fields, "email") == want)
                .map(|(id, fields)| self.account(id, fields)))
        }
        async fn create(&self, _: &Payload) -> TargetResult<RemoteAccount> {
            unreachable!("a reconcile never creates: it leaves that to the workers")
        }
        async fn update(&self, _: &str, _: &Payload) -> TargetResult<RemoteAccount> {
            unreachable!("a reconcile never updates: it leaves that to the workers")
        }
        async fn disable(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
            self.log(format!("disable {id}"));
            Ok(self.account(id, payload))
        }
        async fn delete(&self, id: &str) -> TargetResult<()> {
            self.log(format!("delete {id}"));
            self.accounts.lock().unwrap().remove(id);
            Ok(())
        }
        async fn read(&self, id: &str) -> TargetResult<Option<RemoteAccount>> {
            self.log(format!("read {id}"));
            let accounts = self.accounts.lock().unwrap();
            Ok(accounts.get(id).map(|fields| self.account(id, fields)))
        }
        fn can_list(&self) -> bool {
            self.listing
        }
        async fn list(&self, cursor: Option<&str>) -> TargetResult<AccountPage> {
            self.log(format!("list {}", cursor.unwrap_or("-")));
            let start: usize = cursor.map_or(0, |c| c.parse().unwrap());
            let accounts = self.accounts.lock().unwrap();
            let page: Vec<RemoteAccount> = accounts
                .iter()
                .skip(start)
                .take(2)
                .map(|(id, fields)| self.account(id, fields))
                .collect();
            let next = (start + 2 < accounts.len()).then(|| (start + 2).to_string());
            Ok(AccountPage {
                accounts: page,
                next,
            })
        }
        fn marked(&self, account: &RemoteAccount) -> bool {
            self.shape.marked(account)
        }
        fn as_stored(&self, payload: &Payload) -> Payload {
            self.shape.as_stored(payload)
        }
    }

    fn user(email: &str, name: &str) -> Value {
        json!({"email": email, "name": name, "note": "scim-bridge"})
    }

    /// The ledger of the scenario: u1 in step, u2 deleted by hand, u3 edited by hand, u4
    /// never linked though an account with its key exists, u5 still queued; and on the
    /// target an account with the bridge's mark and one made by hand.
    async fn scenario(listing: bool) -> (Arc<Fake>, Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("r.db"),
            readers: 2,
        })
        .unwrap();
        let delivered = [("u1", "r1"), ("u2", "r2"), ("u3", "r3")];
        db.write(move |s| {
            for n in 1..=5 {
                let user_id = format!("u{n}");
                let desired = Desired {
                    user_id: user_id.clone(),
                    target: "shape".into(),
                    operation: DeliveryOp::Upsert,
                    payload: object(user(&format!("U{n}@x.test"), &format!("User {n}"))),
                    create_only: vec![],
                    unmanaged: vec![],
                    password_field: None,
                    secret_id: None,
                    retain_secret: false,
                    hash: StateKey::sample(&format!("h{n}")),
                    mapping_version: "m".into(),
                };
                s.set_first_desired(&desired, 1)?;
            }
            for (user, remote) in delivered {
                let attempt = Attempt {
                    at: 2,
                    user_id: user.into(),
                    target: "shape".into(),
                    operation: "upsert".into(),
                    status: Some(200),
                    duration_ms: 1,
                    outcome: "delivered".into(),
                    error: None,
                    payload_hash: StateKey::sample(&format!("h{}", &user[1..])),
                    mapping_version: "m".into(),
                    sent: None,
                };
                let outcome = AttemptOutcome::Delivered {
                    remote_id: Some(remote.into()),
                    status: Some(200),
                };
                s.record_attempt(&attempt, &outcome)?;
            }
            Ok::<_, LedgerError>(())
        })
        .await
        .unwrap();
        let target = Fake::new(
            listing,
            &[
                ("r1", user("u1@x.test", "User 1")),
                ("r3", user("u3@x.test", "Edited")),
                ("r4", user("u4@x.test", "User 4")),
                ("r8", user("gone@x.test", "Left over")),
                ("r9", json!({"email": "admin@x.test", "name": "By hand"})),
            ],
        );
        (target, db, dir)
    }

    fn reconciler(target: Arc<Fake>, db: &Db, policy: Policy) -> Arc<Reconciler> {
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        ));
        Arc::new(Reconciler::new(
            db.clone(),
            clock,
            vec![TargetEntry {
                target,
                policy,
                reads_per_second: NonZeroU32::new(10_000).unwrap(),
                concurrency: 2,
            }],
            2,
            None,
        ))
    }

    async fn findings(db: &Db, run_id: i64) -> Vec<(String, Option<String>, String, String)> {
        let rows = db
            .read(move |s| s.reconcile_findings(run_id, None, 0, 100))
            .await
            .unwrap();
        let mut rows: Vec<_> = rows
            .into_iter()
            .map(|f| {
                (
                    f.kind,
                    f.user_id,
                    f.remote_id.unwrap_or_default(),
                    f.decision,
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn row(
        kind: &str,
        user: Option<&str>,
        remote: &str,
        decision: &str,
    ) -> (String, Option<String>, String, String) {
        (
            kind.into(),
            user.map(String::from),
            remote.into(),
            decision.into(),
        )
    }

    #[tokio::test]
    async fn a_listing_run_reports_exactly_what_differs_and_changes_nothing() {
        let (target, db, _dir) = scenario(true).await;
        let reconciler = reconciler(target.clone(), &db, Policy::default());
        let run = reconciler
            .run(&RunRequest::default(), &LogProgress)
            .await
            .unwrap();
        assert_eq!(run.status, "finished");
        assert_eq!(
            findings(&db, run.id).await,
            [
                row("drifted", Some("u3"), "r3", "report"),
                row("missing", Some("u2"), "r2", "recreate"),
                row("orphan_marked", None, "r8", "report"),
                row("orphan_unmarked", None, "r9", "untouched"),
                row("pending", Some("u5"), "", "queued"),
                row("unlinked", Some("u4"), "r4", "link"),
            ]
        );
        assert_eq!(
            run.counts,
            json!({"shape": {"drifted": 1, "missing": 1, "orphan_marked": 1,
                "orphan_unmarked": 1, "pending": 1, "unlinked": 1}})
        );
        let drift = db
            .read(move |s| s.reconcile_findings(run.id, Some("drifted"), 0, 10))
            .await
            .unwrap();
        assert_eq!(
            drift[0].fields,
            json!([{"field": "name", "desired": "User 3",
                "delivered": "User 3", "actual": "Edited"}])
        );
        let u2 = db
            .read(|s| s.delivery("u2", "shape"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u2.remote_id.as_deref(), Some("r2"), "reported only");
        assert_eq!(u2.state, DeliveryState::Delivered);
        let calls = target.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            ["list -", "list 2", "list 4", "read r2"],
            "only r2 needed a read"
        );
    }

    #[tokio::test]
    async fn apply_leaves_repairs_due_and_settles_marked_orphans_only() {
        let (target, db, _dir) = scenario(true).await;
        let policy = Policy {
            on_drift: OnDrift::Repair,
            on_orphan: OnOrphan::Delete,
            ..Policy::default()
        };
        let reconciler = reconciler(target.clone(), &db, policy);
        let request = RunRequest {
            target: Some("shape".into()),
            apply: true,
            ..RunRequest::default()
        };
        let run = reconciler.run(&request, &LogProgress).await.unwrap();
        assert_eq!(run.status, "finished");
        let rows = db
            .read(|s| s.deliveries_in(&DeliveryState::ALL, Some("shape"), 100))
            .await
            .unwrap();
        let state = |user: &str| {
            let row = rows.iter().find(|r| r.desired.user_id == user).unwrap();
            (row.remote_id.clone(), row.is_due(1_000_000))
        };
        assert_eq!(
            state("u1"),
            (Some("r1".into()), false),
            "in step: left alone"
        );
        assert_eq!(
            state("u2"),
            (None, true),
            "missing: due to be created again"
        );
        assert_eq!(
            state("u3"),
            (Some("r3".into()), true),
            "drifted: due to be re-sent"
        );
        assert_eq!(
            state("u4"),
            (None, true),
            "unlinked: due, the worker adopts r4"
        );
        assert_eq!(
            target.ids(),
            ["r1", "r3", "r4", "r9"],
            "r8 deleted, r9 untouched"
        );
        assert!(!target
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.contains("r9")));
    }

    #[tokio::test]
    async fn a_marked_orphan_is_disabled_with_its_own_writable_fields() {
        let (target, db, _dir) = scenario(true).await;
        let policy = Policy {
            on_orphan: OnOrphan::Disable,
            ..Policy::default()
        };
        let request = RunRequest {
            target: None,
            apply: true,
            ..RunRequest::default()
        };
        let run = reconciler(target.clone(), &db, policy)
            .run(&request, &LogProgress)
            .await
            .unwrap();
        assert_eq!(run.status, "finished");
        let calls = target.calls.lock().unwrap().clone();
        assert!(calls.contains(&"disable r8".to_owned()), "{calls:?}");
        assert!(!calls.iter().any(|c| c.contains("r9")), "{calls:?}");
        assert_eq!(target.ids().len(), 5, "disabled, not deleted");
    }

    #[tokio::test]
    async fn a_target_that_cannot_list_is_read_account_by_account() {
        let (target, db, _dir) = scenario(false).await;
        let reconciler = reconciler(target.clone(), &db, Policy::default());
        let run = reconciler
            .run(&RunRequest::default(), &LogProgress)
            .await
            .unwrap();
        assert_eq!(
            findings(&db, run.id).await,
            [
                row("drifted", Some("u3"), "r3", "report"),
                row("missing", Some("u2"), "r2", "recreate"),
                row("pending", Some("u5"), "", "queued"),
                row("unlinked", Some("u4"), "r4", "link"),
            ],
            "no orphans: only a listing shows them"
        );
    }

    /// What the ledger keeps as read, per user: (user, target id, name held).
    async fn reads(db: &Db) -> Vec<(String, Option<String>, Option<String>)> {
        let mut reads = Vec::new();
        for n in 1..=5 {
            let user = format!("u{n}");
            let found = db.read(move |s| s.accounts_read_of(&user)).await.unwrap();
            reads.extend(found.into_iter().map(|read| {
                let name = read
                    .account
                    .and_then(|a| a.get("name").and_then(Value::as_str).map(str::to_owned));
                (read.user_id, read.remote_id, name)
            }));
        }
        reads
    }

    #[tokio::test]
    async fn every_account_read_for_a_user_is_kept_in_place_of_the_last_read() {
        let some = |text: &str| Some(text.to_owned());
        for listing in [true, false] {
            let (target, db, _dir) = scenario(listing).await;
            let reconciler = reconciler(target.clone(), &db, Policy::default());
            reconciler
                .run(&RunRequest::default(), &LogProgress)
                .await
                .unwrap();
            let mut expected = vec![
                ("u1".to_owned(), some("r1"), some("User 1")),
                // Read by its id, and gone.
                ("u2".to_owned(), None, None),
                ("u3".to_owned(), some("r3"), some("Edited")),
                ("u4".to_owned(), some("r4"), some("User 4")),
            ];
            if !listing {
                // Looked up by its key, and not found.
                expected.push(("u5".to_owned(), None, None));
            }
            assert_eq!(reads(&db).await, expected, "listing: {listing}");

            target
                .accounts
                .lock()
                .unwrap()
                .insert("r3".into(), object(user("U3@x.test", "Edited again")));
            reconciler
                .run(&RunRequest::default(), &LogProgress)
                .await
                .unwrap();
            let again = reads(&db).await;
            assert_eq!(again[2].2.as_deref(), Some("Edited again"), "{again:?}");
            assert_eq!(again.len(), expected.len(), "replaced, not added");
        }
    }

    #[test]
    fn a_kept_account_carries_no_secret() {
        let target = Fake::new(true, &[]);
        let row = row_of("u1");
        let account = RemoteAccount {
            id: "r1".into(),
            fields: object(json!({
                "name": "Ana", "secret": "write-only", "apiToken": "t",
                "profile": {"recoveryPassword": "p", "city": "Lisboa"},
                "keys": [{"clientSecret": "s"}, "plain"]
            })),
        };
        let read = account_read(target.as_ref(), &row, Some(&account), 7);
        assert_eq!(
            Value::Object(read.account.unwrap()),
            json!({"name": "Ana", "profile": {"city": "Lisboa"}, "keys": [{}, "plain"]})
        );
    }

    fn row_of(user: &str) -> Delivery {
        Delivery {
            desired: Desired {
                user_id: user.into(),
                target: "shape".into(),
                operation: DeliveryOp::Upsert,
                payload: Payload::new(),
                create_only: vec![],
                unmanaged: vec![],
                password_field: None,
                secret_id: None,
                retain_secret: false,
                hash: StateKey::sample("h"),
                mapping_version: "m".into(),
            },
            delivered_hash: None,
            remote_id: None,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: 0,
            last_status: None,
            last_error: None,
            changed_at: 0,
            updated_at: 0,
            warnings: Vec::new(),
            failing_since: None,
        }
    }

    #[tokio::test]
    async fn unknown_targets_are_refused_and_a_run_can_be_paused_and_cancelled() {
        let (target, db, _dir) = scenario(true).await;
        let reconciler = reconciler(target.clone(), &db, Policy::default());
        let unknown = RunRequest {
            target: Some("kiboo".into()),
            apply: false,
            ..RunRequest::default()
        };
        let err = reconciler.run(&unknown, &LogProgress).await.unwrap_err();
        assert_eq!(err.to_string(), "no target named kiboo; configured: shape");

        let request = RunRequest::default();
        let run_id = reconciler.begin(&request).await.unwrap();
        let busy = reconciler.begin(&request).await.unwrap_err();
        assert!(
            matches!(busy, ReconcileError::Busy(id) if id == run_id),
            "{busy}"
        );
        reconciler.signal(Signal::Pause, &Actor::cli()).await;
        let running = Arc::clone(&reconciler);
        let task = tokio::spawn(async move {
            running
                .execute(run_id, &RunRequest::default(), &LogProgress)
                .await
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(
            target.calls.lock().unwrap().is_empty(),
            "paused before the first page"
        );
        reconciler.signal(Signal::Cancel, &Actor::cli()).await;
        let run = task.await.unwrap().unwrap();
        assert_eq!(run.status, "cancelled");
        assert!(target.calls.lock().unwrap().is_empty());
        // The process is free again.
        let again = reconciler.run(&request, &LogProgress).await.unwrap();
        assert_eq!(again.status, "finished");
    }
}
