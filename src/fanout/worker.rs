//! One delivery worker per target: takes due (user, target) rows from the ledger, sends them
//! through the target adapter within its concurrency and rate limit, classifies the answer
//! and records it. A row is never in flight twice, so one user's deliveries stay in order.
//! The target's circuit decides whether anything is sent at all.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::{watch, Notify, Semaphore};

use crate::clock::{unix_millis, SharedClock};
use crate::fanout::backoff::Backoff;
use crate::fanout::circuit::{self, Admission, Circuit, Signal, Verdict};
use crate::fanout::concurrency::{ConcurrencyPolicy, Controller, Response};
use crate::fanout::guard;
use crate::fanout::listing::{self, Lookup, LookupStatus};
use crate::fanout::outcomes::{Outcome, Recorder};
use crate::fanout::secrets::{made_up_for, random_password, SecretBox};
use crate::ledger::{
    Adoption, Attempt, AttemptOutcome, CircuitState, Claimed, Db, Delivery, DeliveryOp,
    DeliveryState, DueRows, LedgerError, SealedSecret, TargetCircuit,
};
use crate::metrics::Metrics;
use crate::targets::config::{FirstDelivery, GuardConfig, ListFirstConfig};
use crate::targets::{Payload, RemoteAccount, Target, TargetError};

/// How a target is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetPolicy {
    /// Deliveries in flight at once, fixed or adapted to the target's answers. (Requests per
    /// second are paced by the adapter's own transport, which sees every request, logins and
    /// look-ups included.)
    pub concurrency: ConcurrencyPolicy,
    /// Whether a delivery with no account linked creates first or looks the account up first.
    pub first_delivery: FirstDelivery,
    /// When a listing of the target's accounts is the look-up (`FirstDelivery::ListFirst`).
    pub list_first: ListFirstConfig,
    /// Retryable failures, while the target otherwise works, before a delivery is
    /// dead-lettered.
    pub max_attempts: u32,
    /// A delivery still failing this long after its first failure is dead-lettered, however
    /// its failures were counted.
    pub dead_letter_after: Duration,
    /// Target-level failures in a row (throttling, down, unreachable) that open the circuit.
    pub circuit_failures: u32,
    pub backoff: Backoff,
    /// When disables and deletes are held for an operator instead of sent.
    pub guard: GuardConfig,
    /// Whether an account gone from the target (an update answered 404) is created again,
    /// as the target's `reconcile.on_missing = "recreate"` says, or left for an operator.
    pub recreate_vanished: bool,
}

/// Drives one target. Cheap to clone; clones share the in-flight set and limits.
#[derive(Clone)]
pub(crate) struct Worker {
    target: Arc<dyn Target>,
    db: Db,
    clock: SharedClock,
    secrets: Arc<SecretBox>,
    metrics: Arc<Metrics>,
    policy: TargetPolicy,
    slots: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    wake: Arc<Notify>,
    circuit: Arc<Circuit>,
    limit: Arc<Mutex<Controller>>,
    lookup: Arc<Mutex<Lookup>>,
    outcomes: Arc<Recorder>,
}

impl Worker {
    pub(crate) fn new(
        target: Arc<dyn Target>,
        db: Db,
        clock: SharedClock,
        secrets: Arc<SecretBox>,
        metrics: Arc<Metrics>,
        policy: TargetPolicy,
    ) -> Worker {
        let now = unix_millis(clock.as_ref());
        Worker {
            slots: Arc::new(Semaphore::new(cap(&policy))),
            limit: Arc::new(Mutex::new(Controller::new(policy.concurrency, now))),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            wake: Arc::new(Notify::new()),
            circuit: Arc::new(Circuit::new(policy.circuit_failures, policy.backoff)),
            lookup: Arc::new(Mutex::new(Lookup::Unread)),
            outcomes: Arc::default(),
            target,
            db,
            clock,
            secrets,
            metrics,
            policy,
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.target.name()
    }

    /// Tells the worker new work may be due, so it does not wait for its next poll.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `stop` turns true: deliver what is due, then wait for a wake-up or the poll.
    pub(crate) async fn run(self, poll: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let dispatched = tokio::select! {
                // A listing (`list_first`) can take many requests: a shutdown does not wait
                // for it. Nothing is started past the point where it is dropped.
                _ = stop.changed() => break,
                dispatched = self.dispatch_due() => dispatched,
            };
            let started = match dispatched {
                Ok(started) => started,
                Err(err) => {
                    tracing::error!(target_name = self.name(), error = %err, "cannot read due deliveries");
                    0
                }
            };
            if started > 0 {
                continue;
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        // Let in-flight deliveries finish: each holds a slot until its result is recorded.
        let _ = self.slots.acquire_many(cap(&self.policy) as u32).await;
    }

    /// Starts every delivery that is due now, up to the free concurrency (one probe while
    /// the circuit is open, none while it waits); returns how many.
    pub(crate) async fn dispatch_due(&self) -> Result<usize, LedgerError> {
        let limit = self.lock_limit().limit();
        // Slots held: deliveries still running, including those past a limit cut since.
        let busy = cap(&self.policy) - self.slots.available_permits();
        let free = limit.saturating_sub(busy);
        if free == 0 || (busy > 0 && free < refill_at(limit)) {
            // Wait for one to finish rather than spin or re-read rows still in flight: each
            // finished delivery wakes the worker.
            return Ok(0);
        }
        self.load_circuit().await?;
        let name = self.name().to_owned();
        let now = unix_millis(self.clock.as_ref());
        let admission = self.circuit.admit(now);
        let wanted = match admission {
            Admission::All => free,
            Admission::Probe => 1,
            Admission::Shut => return Ok(0),
        };
        // Only this task starts deliveries of this target, so a user not in flight now
        // has its last outcome recorded already, and the read below sees it; a user in
        // flight now may record its outcome after that read, so the read leaves its row for
        // the next list (its end wakes the worker). Read on the writer, whose cache holds the
        // rows the planner and the outcomes just wrote.
        let in_flight = self.lock_in_flight().clone();
        let due = self
            .db
            .read_on_writer(move |s| {
                if s.is_paused(&name)? {
                    return Ok(DueRows::default());
                }
                s.due(&name, now, wanted, &in_flight)
            })
            .await?
            .decode()?;
        let probe = admission == Admission::Probe;
        if !probe {
            if let Some(waiting) = self.listing_wanted(&due, now).await? {
                if busy > 0 {
                    // Read with nothing in flight, so that no create of this worker lands
                    // between two pages unseen; each delivery that ends wakes the worker.
                    return Ok(0);
                }
                self.read_listing(waiting, now).await;
            }
        }
        let mut started = 0;
        for claimed in due {
            if started == wanted {
                break;
            }
            let user = claimed.delivery.desired.user_id.clone();
            if !self.lock_in_flight().insert(user.clone()) {
                continue;
            }
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                self.lock_in_flight().remove(&user);
                break;
            };
            if probe {
                let changed = self.circuit.begin_probe(now);
                self.save_circuit(changed).await;
            }
            self.lock_limit().note_in_flight(busy + started + 1);
            let worker = self.clone();
            tokio::spawn(async move {
                worker.deliver(claimed, probe).await;
                if probe {
                    let now = unix_millis(worker.clock.as_ref());
                    let changed = worker.circuit.end_probe(now);
                    worker.save_circuit(changed).await;
                }
                // Only after the outcome is recorded: the next list must see it.
                worker.lock_in_flight().remove(&user);
                drop(slot);
                worker.wake();
            });
            started += 1;
        }
        Ok(started)
    }

    /// How many users wait for their first delivery (planned, or created and still to be
    /// planned), when enough do that one listing of the target's accounts should be their
    /// look-up (`list_first`): at least `min_users`, and twice the pages the listing takes
    /// (the accounts the bridge holds there, a page size each), so it costs fewer requests
    /// than it saves. Asked only when the rows just read hold a first delivery.
    async fn listing_wanted(
        &self,
        due: &[Claimed],
        now: i64,
    ) -> Result<Option<usize>, LedgerError> {
        if self.policy.first_delivery != FirstDelivery::ListFirst {
            return Ok(None);
        }
        let Some(page_size) = self.target.listing_page_size() else {
            return Ok(None);
        };
        if !due.iter().any(|claimed| is_first(&claimed.delivery))
            || !self.lock_lookup().wants_reading(now)
        {
            return Ok(None);
        }
        let name = self.name().to_owned();
        let min_users = self.policy.list_first.min_users as usize;
        let (waiting, worth) = self
            .db
            .read(move |s| {
                let held = s.count_in_state(&name, DeliveryState::Delivered)? as usize;
                let worth = min_users.max(2 * (held / page_size.max(1) + 1));
                Ok::<_, LedgerError>((s.waiting_first_deliveries(&name, worth)?, worth))
            })
            .await?;
        Ok((waiting >= worth).then_some(waiting))
    }

    /// Reads the target's accounts for `list_first`; when they cannot be read, each user is
    /// looked up alone until the listing is tried again (`Lookup::failed`).
    async fn read_listing(&self, waiting: usize, now: i64) {
        tracing::info!(
            target_name = self.name(),
            waiting,
            "users wait for their first delivery: reading the target's accounts once to look them all up"
        );
        let max_age = Duration::from_secs(self.policy.list_first.max_age_secs);
        let lookup = match listing::read(self.target.as_ref(), now, max_age).await {
            Ok(listing) => Lookup::Read(listing),
            Err(err) => {
                let failed = Lookup::failed(now, &err, max_age);
                if let LookupStatus::Failed { retry_from, .. } = failed.status() {
                    tracing::warn!(
                        target_name = self.name(),
                        error = %err,
                        retry_after_secs = retry_from.saturating_sub(now) / 1000,
                        "cannot read the target's accounts: each new user is looked up alone"
                    );
                }
                failed
            }
        };
        *self.lock_lookup() = lookup;
    }

    /// The target's listing, when it is set to `list_first`.
    pub(crate) fn lookup_status(&self) -> Option<LookupStatus> {
        (self.policy.first_delivery == FirstDelivery::ListFirst)
            .then(|| self.lock_lookup().status())
    }

    fn lock_lookup(&self) -> std::sync::MutexGuard<'_, Lookup> {
        self.lookup
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a fresh listing shows `desired`'s account missing (`list_first`), so its
    /// create may go out without a look-up.
    fn listed_missing(&self, desired: &crate::ledger::Desired) -> bool {
        if self.policy.first_delivery != FirstDelivery::ListFirst
            || desired.operation != DeliveryOp::Upsert
        {
            return false;
        }
        let Some(key) = self.target.lookup_key(&desired.payload) else {
            return false;
        };
        let now = unix_millis(self.clock.as_ref());
        self.lock_lookup().claim_missing(&key, now)
    }

    /// Reads the circuit the ledger last recorded, once: a restart resumes an open one.
    async fn load_circuit(&self) -> Result<(), LedgerError> {
        if self.circuit.is_loaded() {
            return Ok(());
        }
        let name = self.name().to_owned();
        let stored = self.db.read(move |s| s.circuit(&name)).await?;
        self.circuit.load(stored);
        Ok(())
    }

    async fn save_circuit(&self, changed: Option<TargetCircuit>) {
        let Some(circuit) = changed else {
            return;
        };
        let name = self.name().to_owned();
        if let Err(err) = self.db.write(move |s| s.set_circuit(&name, &circuit)).await {
            tracing::error!(target_name = self.name(), error = %err, "cannot record the circuit");
        }
    }

    fn log_circuit(&self, was: CircuitState, now: &TargetCircuit) {
        let (name, state) = (self.name(), now.state.as_str());
        let error = now.last_error.as_deref().unwrap_or("");
        match (was, now.state) {
            (CircuitState::Closed, CircuitState::Open) => tracing::warn!(
                target_name = name, failures = now.failures, retry_at = ?now.retry_at, error,
                "circuit opened: deliveries wait, one probe at a time"
            ),
            (_, CircuitState::Closed) => tracing::warn!(
                target_name = name,
                "circuit closed: the target works again, deliveries resume"
            ),
            _ => tracing::debug!(
                target_name = name, state, failed_probes = now.failed_probes,
                retry_at = ?now.retry_at, error, "probe failed"
            ),
        }
    }

    /// Delivers everything due now and waits for it; for tests and the CLI.
    #[cfg(test)]
    pub(crate) async fn drain(&self) -> Result<usize, LedgerError> {
        let mut total = 0;
        let all = cap(&self.policy) as u32;
        loop {
            // Nothing in flight when looking, so nothing started means nothing is due.
            drop(self.slots.acquire_many(all).await);
            let started = self.dispatch_due().await?;
            total += started;
            if started == 0 {
                return Ok(total);
            }
        }
    }

    fn lock_limit(&self) -> std::sync::MutexGuard<'_, Controller> {
        self.limit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets the target's answer move the limit of deliveries in flight.
    fn adapt(&self, signal: &Signal, took: Duration) {
        let response = match signal {
            Signal::Up | Signal::UserFailure => Response::Answered(took),
            Signal::Down { .. } => Response::PushedBack,
            Signal::Silent => Response::NotSent,
        };
        let now = unix_millis(self.clock.as_ref());
        if let Some(limit) = self.lock_limit().record(now, response) {
            tracing::debug!(
                target_name = self.name(),
                limit,
                "deliveries in flight limit moved"
            );
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn deliver(&self, claimed: Claimed, probe: bool) {
        let Claimed {
            mut delivery,
            sealed,
        } = claimed;
        if !guard::admits(&self.db, &self.clock, self.policy.guard, &delivery).await {
            return;
        }
        let began = Instant::now();
        let result = self.send(&delivery, sealed).await;
        let at = unix_millis(self.clock.as_ref());
        let signal = circuit::signal(&result);
        self.adapt(&signal, began.elapsed());
        let (verdict, circuit) = self
            .circuit
            .record(&signal, probe, at, &mut rand::thread_rng());
        let circuit = circuit.map(|(was, now)| {
            if was != now.state {
                self.log_circuit(was, &now);
            }
            now
        });
        let outcome = self.classify(&delivery, result, &verdict, at);
        self.metrics.record_delivery(
            self.name(),
            outcome_name(&outcome),
            began.elapsed().as_secs_f64(),
        );
        let (status, error) = outcome.failure();
        let attempt = Attempt {
            at,
            user_id: delivery.desired.user_id.clone(),
            target: delivery.desired.target.clone(),
            operation: delivery.desired.operation.as_str().to_owned(),
            status,
            duration_ms: began.elapsed().as_millis() as u64,
            outcome: outcome_name(&outcome).to_owned(),
            error: error.map(str::to_owned),
            payload_hash: delivery.desired.hash.clone(),
            mapping_version: delivery.desired.mapping_version.clone(),
            // Moved, not copied: the delivery needs its body no more.
            sent: Some(std::mem::take(&mut delivery.desired.payload)),
        };
        tracing::info!(
            target_name = %attempt.target,
            user = %attempt.user_id,
            operation = %attempt.operation,
            outcome = %attempt.outcome,
            status = ?attempt.status,
            duration_ms = attempt.duration_ms,
            error = attempt.error.as_deref().unwrap_or(""),
            "delivery attempt"
        );
        let name = self.name().to_owned();
        // Only a delivery of a target that takes a password can be the last one to need the
        // user's sealed password.
        let may_free_secret = delivery.desired.password_field.is_some()
            || delivery.desired.secret_id.is_some()
            || delivery.desired.retain_secret;
        let outcome = Outcome {
            circuit: circuit.map(|circuit| (name, circuit)),
            attempt,
            outcome,
            may_free_secret,
        };
        let recorded = self.outcomes.record(&self.db, outcome).await;
        if let Err(err) = recorded {
            tracing::error!(error = %err, "cannot record a delivery attempt; it will be retried");
        }
    }

    fn classify(
        &self,
        delivery: &Delivery,
        result: Result<Option<String>, TargetError>,
        verdict: &Verdict,
        now: i64,
    ) -> AttemptOutcome {
        match result {
            Ok(remote_id) => AttemptOutcome::Delivered {
                remote_id,
                status: None,
            },
            Err(TargetError::Rejected { status, message }) => AttemptOutcome::Rejected {
                status: Some(status),
                error: message,
            },
            Err(TargetError::Unusable { message }) => AttemptOutcome::Rejected {
                status: None,
                error: message,
            },
            Err(TargetError::Retryable {
                status,
                reason,
                retry_after,
            }) => {
                let attempt = delivery.attempts + u32::from(verdict.charged);
                if verdict.charged && attempt >= self.policy.max_attempts {
                    return AttemptOutcome::Dead {
                        status,
                        error: format!("gave up after {attempt} attempts: {reason}"),
                    };
                }
                let failing_for = now - delivery.failing_since.unwrap_or(now);
                if failing_for >= self.policy.dead_letter_after.as_millis() as i64 {
                    return AttemptOutcome::Dead {
                        status,
                        error: format!(
                            "gave up after failing for {} hours: {reason}",
                            failing_for / 3_600_000
                        ),
                    };
                }
                // While the circuit is open the delivery waits for it; the probe decides.
                let next_attempt_at = verdict.retry_at.unwrap_or_else(|| {
                    let delay = self.policy.backoff.delay(
                        attempt.max(1),
                        retry_after,
                        &mut rand::thread_rng(),
                    );
                    now + delay.as_millis() as i64
                });
                AttemptOutcome::Retry {
                    status,
                    error: reason,
                    next_attempt_at,
                    charged: verdict.charged,
                }
            }
        }
    }

    /// Performs one delivery; returns the target's id for the account (None once deleted).
    /// Without a known id the account is either created at once, a 409 on its natural key
    /// then looking it up, or looked up by its natural key first (the target's
    /// `first_delivery`); one found either way is adopted: linked and updated where it
    /// differs, never re-created.
    async fn send(
        &self,
        delivery: &Delivery,
        sealed: Option<SealedSecret>,
    ) -> Result<Option<String>, TargetError> {
        let desired = &delivery.desired;
        let password = self.password_for(delivery, sealed)?;
        let creates_first = self.policy.first_delivery == FirstDelivery::CreateFirst
            && desired.operation == DeliveryOp::Upsert;
        let account = match &delivery.remote_id {
            Some(id) => Account::Linked(id.clone()),
            None if creates_first || self.listed_missing(desired) => Account::Missing,
            None => match self.target.find(&desired.payload).await? {
                Some(found) => Account::Found(found),
                None => Account::Missing,
            },
        };
        match (desired.operation, account) {
            (DeliveryOp::Upsert, Account::Missing) => self.create(delivery, password).await,
            (DeliveryOp::Upsert | DeliveryOp::Disable, Account::Found(found)) => {
                self.take_over(delivery, found, password.as_ref()).await
            }
            (DeliveryOp::Upsert | DeliveryOp::Disable, Account::Linked(id)) => {
                let adopted = self.was_adopted(delivery, &id, password.as_ref()).await?;
                let current = self.current_if_held_back(delivery, &id, adopted).await?;
                let fields = current.as_ref().map(|account| &account.fields);
                let update = self.update_payload(delivery, password.as_ref(), adopted, fields)?;
                let written = match &current {
                    Some(account) => self.write_held(delivery, account, &update).await,
                    None => self.write(delivery, &id, &update).await,
                };
                match written {
                    Ok(account) => Ok(Some(account.id)),
                    // Deleted on the target by hand: heals as a reconcile heals a missing
                    // account, rather than waiting as a rejection nobody can fix.
                    Err(TargetError::Rejected { status: 404, .. }) => {
                        self.vanished(delivery, &id, password).await
                    }
                    Err(err) => Err(err),
                }
            }
            // Nothing to disable or delete where no account exists.
            (DeliveryOp::Disable | DeliveryOp::Delete, Account::Missing) => Ok(None),
            (
                DeliveryOp::Delete,
                Account::Linked(id) | Account::Found(RemoteAccount { id, .. }),
            ) => match self.target.delete(&id).await {
                Ok(()) | Err(TargetError::Rejected { status: 404, .. }) => Ok(None),
                Err(err) => Err(err),
            },
        }
    }

    /// Creates the account. A target that cannot create one without a password gets the
    /// identity provider's or, when it sent none, a random one made up for this create. Only
    /// a target that also wants the password on every update keeps that one (sealed, before
    /// the create is sent, so a lost answer loses nothing), for the account this create
    /// makes and no other. A 409 means the natural key is taken after all (an account the
    /// look-up missed, or one made meanwhile): that account is adopted, and no password made
    /// up here ever reaches it.
    async fn create(
        &self,
        delivery: &Delivery,
        password: Option<Password>,
    ) -> Result<Option<String>, TargetError> {
        let desired = &delivery.desired;
        let mut payload = desired.payload.clone();
        // A password made up by an earlier attempt, kept for this target: its create may
        // have made the account a 409 now names.
        let held = password.as_ref().is_some_and(|p| p.made_up);
        let mut password = password;
        if let Some(field) = &desired.password_field {
            let spec = self.target.schema().field(field);
            if password.is_none() && spec.is_some_and(|spec| spec.required_on_create) {
                let kept = spec.is_some_and(|spec| spec.required_on_update);
                password = Some(self.made_up_password(delivery, kept).await?);
            }
            if let Some(password) = &password {
                payload.insert(
                    field.clone(),
                    Value::String(password.secret.expose_secret().to_owned()),
                );
            }
        }
        match self.target.create(&payload).await {
            Ok(account) => Ok(Some(account.id)),
            Err(TargetError::Rejected {
                status: 409,
                message,
            }) => match self.target.find(&desired.payload).await? {
                Some(account) if held => self.take_over(delivery, account, password.as_ref()).await,
                Some(account) => self.adopt(delivery, account, password.as_ref()).await,
                None => Err(TargetError::Rejected {
                    status: 409,
                    message: format!(
                        "{message} (and no account with this user's natural key was found to adopt)"
                    ),
                }),
            },
            Err(err) => Err(err),
        }
    }

    /// Takes an account found by the user's natural key: the one this very bridge created
    /// with a password of its own, whose create answer was lost (a crash, a timeout), is its
    /// own and updated as such; any other is adopted.
    async fn take_over(
        &self,
        delivery: &Delivery,
        found: RemoteAccount,
        password: Option<&Password>,
    ) -> Result<Option<String>, TargetError> {
        if !password.is_some_and(|p| p.made_up) {
            return self.adopt(delivery, found, password).await;
        }
        let update = self.update_payload(delivery, password, false, Some(&found.fields))?;
        Ok(Some(self.write_held(delivery, &found, &update).await?.id))
    }

    /// The linked account `id` is gone. An upsert creates it again (adopting one a 409 names,
    /// as any create does); a disable has nothing left to disable, and the link is dropped
    /// so that a later enable creates the account.
    async fn vanished(
        &self,
        delivery: &Delivery,
        id: &str,
        password: Option<Password>,
    ) -> Result<Option<String>, TargetError> {
        tracing::warn!(
            target_name = self.name(),
            user = %delivery.desired.user_id,
            remote_id = id,
            "the linked account is gone from the target (404)"
        );
        match delivery.desired.operation {
            DeliveryOp::Upsert if self.policy.recreate_vanished => {
                self.create(delivery, password).await
            }
            DeliveryOp::Upsert => Err(TargetError::Rejected {
                status: 404,
                message: format!(
                    "account {id} is gone from the target; with reconcile.on_missing = \
                     \"report\" it is left for an operator, and a reconcile reports it missing"
                ),
            }),
            DeliveryOp::Disable | DeliveryOp::Delete => Ok(None),
        }
    }

    /// Updates the existing account `id`, or disables it when that is what the delivery is.
    async fn write(
        &self,
        delivery: &Delivery,
        id: &str,
        update: &Payload,
    ) -> Result<RemoteAccount, TargetError> {
        match delivery.desired.operation {
            DeliveryOp::Disable => self.target.disable(id, update).await,
            DeliveryOp::Upsert | DeliveryOp::Delete => self.target.update(id, update).await,
        }
    }

    /// `write` of an account read moments ago, whose fields the adapter takes instead of
    /// reading it again.
    async fn write_held(
        &self,
        delivery: &Delivery,
        account: &RemoteAccount,
        update: &Payload,
    ) -> Result<RemoteAccount, TargetError> {
        match delivery.desired.operation {
            DeliveryOp::Disable => self.target.disable_held(account, update).await,
            DeliveryOp::Upsert | DeliveryOp::Delete => {
                self.target.update_held(account, update).await
            }
        }
    }

    /// Takes over an account that already existed: updates (or disables) it like one the
    /// bridge made, unless it already holds every field the update would send, and records
    /// the takeover with the names of the fields that update changed, for an admin to
    /// review.
    async fn adopt(
        &self,
        delivery: &Delivery,
        account: RemoteAccount,
        password: Option<&Password>,
    ) -> Result<Option<String>, TargetError> {
        let update = self.update_payload(delivery, password, true, Some(&account.fields))?;
        // A disable is the adapter's own change to the payload, so only an upsert can be
        // seen to change nothing. A field the stored form leaves out cannot be seen to be
        // held: a write-only one (a password) is never read back, and a list the target
        // merges with hand-given entries (roles, licences) may lack what the update grants
        // or still hold what it revokes; either one in the update always sends it.
        let stored = self.target.as_stored(&update);
        let holds_it_all = delivery.desired.operation == DeliveryOp::Upsert
            && update.keys().all(|name| stored.contains_key(name))
            && stored
                .iter()
                .all(|(name, value)| account.fields.get(name) == Some(value));
        let (remote_id, changed) = if holds_it_all {
            (account.id.clone(), Vec::new())
        } else {
            let written = self.write_held(delivery, &account, &update).await?;
            let changed = changed_fields(&account.fields, &written.fields, &update);
            (written.id, changed)
        };
        let adoption = Adoption {
            user_id: delivery.desired.user_id.clone(),
            target: delivery.desired.target.clone(),
            remote_id,
            adopted_at: unix_millis(self.clock.as_ref()),
            changed,
        };
        tracing::info!(
            target_name = %adoption.target,
            user = %adoption.user_id,
            remote_id = %adoption.remote_id,
            changed = ?adoption.changed,
            "adopted an existing account"
        );
        let remote_id = adoption.remote_id.clone();
        if let Err(err) = self.db.write(move |s| s.record_adoption(&adoption)).await {
            tracing::error!(error = %err, "cannot record an adoption; the account is linked all the same");
        }
        Ok(Some(remote_id))
    }

    /// Whether the linked account `id` is one the bridge adopted. Asked only where it
    /// changes the update: the mapping has fields it does not manage on adopted accounts, or
    /// the password in hand was made up by the bridge.
    async fn was_adopted(
        &self,
        delivery: &Delivery,
        id: &str,
        password: Option<&Password>,
    ) -> Result<bool, TargetError> {
        let made_up = password.is_some_and(|p| p.made_up);
        if delivery.desired.unmanaged.is_empty() && !made_up {
            return Ok(false);
        }
        let (user, target) = (
            delivery.desired.user_id.clone(),
            delivery.desired.target.clone(),
        );
        let adoption = self
            .db
            .read(move |s| s.adoption(&user, &target))
            .await
            .map_err(|err| TargetError::Retryable {
                status: None,
                reason: format!("cannot read whether the account was adopted: {err}"),
                retry_after: None,
            })?;
        Ok(adoption.is_some_and(|adoption| adoption.remote_id == id))
    }

    /// The fields an update holds back: those sent on create only and, on an adopted
    /// account, those the mapping does not manage there. Write-only ones (a password) are
    /// never read back, so they are simply left out.
    fn held_back<'d>(&self, delivery: &'d Delivery, adopted: bool) -> Vec<&'d String> {
        let desired = &delivery.desired;
        let unmanaged = desired.unmanaged.iter().filter(|_| adopted);
        desired
            .create_only
            .iter()
            .chain(unmanaged)
            .filter(|field| desired.payload.contains_key(*field))
            .collect()
    }

    /// The account as the target holds it, read only when an update holds fields back: a
    /// target whose PUT replaces the whole account (Appgate, Kibo) would clear a field that
    /// is merely left out, so such a field is sent with the value the account holds.
    async fn current_if_held_back(
        &self,
        delivery: &Delivery,
        id: &str,
        adopted: bool,
    ) -> Result<Option<RemoteAccount>, TargetError> {
        let schema = self.target.schema();
        let readable = self
            .held_back(delivery, adopted)
            .into_iter()
            .any(|field| !schema.field(field).is_some_and(|spec| spec.write_only));
        if !readable {
            return Ok(None);
        }
        self.target.read(id).await
    }

    /// The payload of an update: the fields it holds back carry the value the account holds
    /// (`current`) or are left out, and the password is there only when the identity
    /// provider gave a new one, or when the target wants one on every update and the
    /// identity provider's (or, on the account the bridge created, the one it made up) is
    /// held. A target that wants one on every update and has none to give (the identity
    /// provider sends none, and the account was adopted) is not updated: sending any other
    /// password would reset the user's.
    fn update_payload(
        &self,
        delivery: &Delivery,
        password: Option<&Password>,
        adopted: bool,
        current: Option<&Payload>,
    ) -> Result<Payload, TargetError> {
        let desired = &delivery.desired;
        let mut update = desired.payload.clone();
        for field in self.held_back(delivery, adopted) {
            let schema = self.target.schema();
            let held = current
                .filter(|_| !schema.field(field).is_some_and(|spec| spec.write_only))
                .and_then(|account| account.get(field));
            match held {
                Some(value) => update.insert(field.clone(), value.clone()),
                None => update.remove(field),
            };
        }
        let Some(field) = &desired.password_field else {
            return Ok(update);
        };
        let required = self
            .target
            .schema()
            .field(field)
            .is_some_and(|spec| spec.required_on_update);
        let newly_given = desired.hash.carries_new_password();
        // A password the bridge made up belongs to the account it created, never another.
        let password = password.filter(|p| !(p.made_up && adopted));
        match password {
            Some(password) if newly_given || required => {
                update.insert(
                    field.clone(),
                    Value::String(password.secret.expose_secret().to_owned()),
                );
                Ok(update)
            }
            None if required => Err(TargetError::unusable(format!(
                "needs the user's password: the IdP sent none, and {} requires `{field}` on \
                 every update, so the update is held rather than reset the account's password",
                self.target.name()
            ))),
            _ => Ok(update),
        }
    }

    /// The password this delivery carries, from the user's sealed password claimed with it:
    /// the identity provider's one it names, or else, for a target that wants one on every
    /// update, the one the bridge made up when it created this user's account there.
    fn password_for(
        &self,
        delivery: &Delivery,
        sealed: Option<SealedSecret>,
    ) -> Result<Option<Password>, TargetError> {
        let desired = &delivery.desired;
        let wants_always = desired.password_field.as_ref().is_some_and(|field| {
            self.target
                .schema()
                .field(field)
                .is_some_and(|spec| spec.required_on_update)
        });
        if desired.secret_id.is_none() && !wants_always {
            return Ok(None);
        }
        let target = self.target.name();
        let usable = sealed.filter(|sealed| match made_up_for(&sealed.secret_id) {
            Some(made_for) => made_for == target,
            None => desired.secret_id.as_ref() == Some(&sealed.secret_id),
        });
        // None: already delivered and erased, superseded by a newer password, or made up for
        // another target.
        let Some(sealed) = usable else {
            return Ok(None);
        };
        let secret = self
            .secrets
            .open(&desired.user_id, &sealed)
            .map_err(|err| TargetError::unusable(err.to_string()))?;
        Ok(Some(Password {
            secret,
            made_up: made_up_for(&sealed.secret_id).is_some(),
        }))
    }

    /// A random password for a create; sealed and stored first when `kept` (the target wants
    /// it on every update), under an id that names the target it was made for.
    async fn made_up_password(
        &self,
        delivery: &Delivery,
        kept: bool,
    ) -> Result<Password, TargetError> {
        let secret = random_password();
        if kept {
            let user = delivery.desired.user_id.clone();
            let sealed = self
                .secrets
                .seal_made_up(&user, &secret, self.target.name());
            let now = unix_millis(self.clock.as_ref());
            self.db
                .write(move |s| s.store_secret(&user, &sealed, now))
                .await
                .map_err(|err| TargetError::Retryable {
                    status: None,
                    reason: format!("cannot keep the password made up for the create: {err}"),
                    retry_after: None,
                })?;
        }
        Ok(Password {
            secret,
            made_up: true,
        })
    }
}

/// The names of the fields an update set to something other than what the account held:
/// compared with what the target answered where it echoes the field, else with what was
/// sent. Write-only fields (a password) count as changed whenever they were sent.
fn changed_fields(before: &Payload, after: &Payload, sent: &Payload) -> Vec<String> {
    sent.iter()
        .filter(|(name, value)| {
            let now = after.get(*name).unwrap_or(value);
            before.get(*name) != Some(now)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// A password on its way to a target.
struct Password {
    secret: SecretString,
    /// Made up by the bridge for a create (the identity provider sent none).
    made_up: bool,
}

/// Where the account of a delivery stands before it is sent.
enum Account {
    /// The ledger holds its id.
    Linked(String),
    /// Not linked, but the target holds one with the user's natural key: adopted.
    Found(RemoteAccount),
    Missing,
}

/// The most deliveries ever in flight: the slots the worker holds.
/// A delivery that would make the account: an upsert with none linked yet.
fn is_first(delivery: &Delivery) -> bool {
    delivery.remote_id.is_none() && delivery.desired.operation == DeliveryOp::Upsert
}

fn cap(policy: &TargetPolicy) -> usize {
    let limits = policy.concurrency;
    if limits.adaptive {
        limits.max.max(1)
    } else {
        limits.initial.max(1)
    }
}

/// How many slots must be free before the due list is read again while deliveries are in
/// flight. Reading it for every finished delivery re-read (and re-parsed) every row in
/// flight each time: at 64 in flight, 64 rows per delivery. From 16 in flight, half the
/// limit: the reads run on the writer, whose round trips every delivery waits for, and 16
/// in flight deliver as fast as 200 there (BENCHMARKS.md, "Fewer due reads"). Below, a
/// slot is a large share of a slow target's pace: a quarter, one slot at a limit of 4 or
/// less.
fn refill_at(limit: usize) -> usize {
    if limit >= 16 {
        limit / 2
    } else {
        (limit / 4).max(1)
    }
}

fn outcome_name(outcome: &AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Delivered { .. } => "delivered",
        AttemptOutcome::Retry { .. } => "retry",
        AttemptOutcome::Dead { .. } => "dead",
        AttemptOutcome::Rejected { .. } => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ledger::{DbOptions, DeliveryState, Desired, StateKey};
    use crate::targets::{FieldKind, FieldSpec, TargetResult, TargetSchema};
    use std::collections::VecDeque;
    use std::time::SystemTime;

    #[test]
    fn the_due_list_is_read_again_once_enough_slots_are_free() {
        // A slow target's few slots: one at a time, then a quarter.
        assert_eq!(refill_at(1), 1);
        assert_eq!(refill_at(4), 1);
        assert_eq!(refill_at(12), 3);
        // A fast target's many: half.
        assert_eq!(refill_at(16), 8);
        assert_eq!(refill_at(64), 32);
    }

    /// A target whose answers are scripted; records every call.
    struct Scripted {
        schema: TargetSchema,
        answers: Mutex<VecDeque<TargetResult<()>>>,
        /// What successive look-ups find; nothing once these run out.
        found: Mutex<VecDeque<Option<RemoteAccount>>>,
        calls: Mutex<Vec<String>>,
        /// While set, every call (look-ups included) is answered with this error.
        fault: Mutex<Option<TargetError>>,
        /// Calls about the account whose name contains the text get the error.
        poisoned: Mutex<Option<(String, TargetError)>>,
        /// The accounts a listing shows, two a page; `None`: the target cannot list.
        listed: Option<Vec<RemoteAccount>>,
        /// A listing never answers.
        listing_hangs: bool,
    }

    impl Scripted {
        fn new(answers: Vec<TargetResult<()>>) -> Arc<Scripted> {
            Scripted::with(answers, Vec::new(), Vec::new())
        }

        fn with(
            answers: Vec<TargetResult<()>>,
            found: Vec<Option<RemoteAccount>>,
            fields: Vec<FieldSpec>,
        ) -> Arc<Scripted> {
            Arc::new(Scripted {
                schema: TargetSchema {
                    fields,
                    natural_key: &["name"],
                },
                answers: Mutex::new(answers.into()),
                found: Mutex::new(found.into()),
                calls: Mutex::new(Vec::new()),
                fault: Mutex::new(None),
                poisoned: Mutex::new(None),
                listed: None,
                listing_hangs: false,
            })
        }

        /// A target that lists `listed` and looks accounts up by their `name`.
        fn listing(
            answers: Vec<TargetResult<()>>,
            found: Vec<Option<RemoteAccount>>,
            listed: Vec<RemoteAccount>,
        ) -> Arc<Scripted> {
            let mut target = Arc::into_inner(Scripted::with(answers, found, Vec::new())).unwrap();
            target.listed = Some(listed);
            Arc::new(target)
        }

        /// Records the call; the standing fault, or the error of a poisoned name it holds.
        fn refusal(&self, call: String) -> TargetResult<()> {
            self.calls.lock().unwrap().push(call.clone());
            if let Some(fault) = self.fault.lock().unwrap().clone() {
                return Err(fault);
            }
            match self.poisoned.lock().unwrap().clone() {
                Some((name, err)) if call.contains(&name) => Err(err),
                _ => Ok(()),
            }
        }

        fn answer(&self, call: String) -> TargetResult<()> {
            self.refusal(call)?;
            self.answers.lock().unwrap().pop_front().unwrap_or(Ok(()))
        }

        fn set_fault(&self, fault: Option<TargetError>) {
            *self.fault.lock().unwrap() = fault;
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn account(id: &str, payload: &Payload) -> RemoteAccount {
        RemoteAccount {
            id: id.into(),
            fields: payload.clone(),
        }
    }

    /// An account the target already holds, as a look-up finds it.
    fn held(id: &str, fields: Value) -> RemoteAccount {
        account(id, fields.as_object().unwrap())
    }

    #[async_trait::async_trait]
    impl Target for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn schema(&self) -> &TargetSchema {
            &self.schema
        }
        async fn find(&self, _payload: &Payload) -> TargetResult<Option<RemoteAccount>> {
            self.calls.lock().unwrap().push("find".into());
            match self.fault.lock().unwrap().clone() {
                Some(fault) => Err(fault),
                None => Ok(self.found.lock().unwrap().pop_front().flatten()),
            }
        }
        async fn create(&self, payload: &Payload) -> TargetResult<RemoteAccount> {
            self.answer(format!("create {}", Value::Object(payload.clone())))
                .map(|()| account("r1", payload))
        }
        async fn update(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
            self.answer(format!("update {id} {}", Value::Object(payload.clone())))
                .map(|()| account(id, payload))
        }
        async fn disable(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
            self.answer(format!("disable {id}"))
                .map(|()| account(id, payload))
        }
        async fn delete(&self, id: &str) -> TargetResult<()> {
            self.answer(format!("delete {id}"))
        }
        async fn read(&self, _id: &str) -> TargetResult<Option<RemoteAccount>> {
            Ok(None)
        }
        fn listing_page_size(&self) -> Option<usize> {
            self.listed.as_ref().map(|_| 2)
        }
        fn lookup_key(&self, fields: &Payload) -> Option<String> {
            fields
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
        }
        async fn list(&self, cursor: Option<&str>) -> TargetResult<crate::targets::AccountPage> {
            // Scripted answers are for the writes; a listing fails only with a fault.
            self.refusal(format!("list {}", cursor.unwrap_or("0")))?;
            if self.listing_hangs {
                std::future::pending::<()>().await;
            }
            let start = crate::targets::AccountPage::offset(cursor)?;
            let listed = self.listed.clone().unwrap_or_default();
            let total = listed.len();
            let page = listed.into_iter().skip(start).take(2).collect::<Vec<_>>();
            let end = start + page.len();
            Ok(crate::targets::AccountPage {
                accounts: page,
                next: (end < total).then(|| end.to_string()),
            })
        }
    }

    struct Fixture {
        db: Db,
        clock: Arc<ManualClock>,
        worker: Worker,
        target: Arc<Scripted>,
        _dir: tempfile::TempDir,
    }

    fn fixture(answers: Vec<TargetResult<()>>) -> Fixture {
        fixture_with(Scripted::new(answers))
    }

    fn fixture_with(target: Arc<Scripted>) -> Fixture {
        fixture_for(target, FirstDelivery::FindFirst)
    }

    fn creating_first(target: Arc<Scripted>) -> Fixture {
        fixture_for(target, FirstDelivery::CreateFirst)
    }

    fn fixture_for(target: Arc<Scripted>, first_delivery: FirstDelivery) -> Fixture {
        let fixed = ConcurrencyPolicy {
            initial: 4,
            max: 4,
            adaptive: false,
        };
        fixture_limited(target, first_delivery, fixed)
    }

    fn fixture_limited(
        target: Arc<Scripted>,
        first_delivery: FirstDelivery,
        concurrency: ConcurrencyPolicy,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("w.db"),
            readers: 1,
        })
        .unwrap();
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        ));
        let worker = Worker::new(
            target.clone(),
            db.clone(),
            clock.clone(),
            Arc::new(SecretBox::from_key(&[1; 32])),
            Arc::new(Metrics::new()),
            TargetPolicy {
                concurrency,
                first_delivery,
                list_first: ListFirstConfig::default(),
                max_attempts: 3,
                dead_letter_after: Duration::from_secs(72 * 3600),
                circuit_failures: 3,
                backoff: Backoff {
                    base: Duration::from_secs(1),
                    cap: Duration::from_secs(60),
                },
                guard: GuardConfig::default(),
                recreate_vanished: true,
            },
        );
        Fixture {
            db,
            clock,
            worker,
            target,
            _dir: dir,
        }
    }

    impl Fixture {
        async fn want(&self, name: &str, operation: DeliveryOp) {
            self.want_for("u1", name, operation).await;
        }

        async fn want_for(&self, user: &str, name: &str, operation: DeliveryOp) {
            self.want_password_for(user, name, operation, None).await;
        }

        async fn want_password(&self, name: &str, operation: DeliveryOp, field: Option<&str>) {
            self.want_password_for("u1", name, operation, field).await;
        }

        /// A desired state whose `title` the mapping does not manage on adopted accounts;
        /// `name` tells one payload from another.
        async fn want_unmanaged(&self, name: &str) {
            let desired = Desired {
                user_id: "u1".into(),
                target: "scripted".into(),
                operation: DeliveryOp::Upsert,
                payload: serde_json::json!({"name": name, "title": "Engineer"})
                    .as_object()
                    .cloned()
                    .unwrap(),
                create_only: Vec::new(),
                unmanaged: vec!["title".into()],
                password_field: None,
                secret_id: None,
                retain_secret: false,
                hash: StateKey::sample(name),
                mapping_version: "m".into(),
            };
            let now = unix_millis(self.clock.as_ref());
            self.db
                .write(move |s| s.set_desired(&desired, now))
                .await
                .unwrap();
        }

        /// A desired state whose `password_field` the target maps; the identity provider
        /// sent no password.
        async fn want_password_for(
            &self,
            user: &str,
            name: &str,
            operation: DeliveryOp,
            field: Option<&str>,
        ) {
            let desired = Desired {
                user_id: user.into(),
                target: "scripted".into(),
                operation,
                payload:
                    serde_json::json!({"name": format!("{user}-{name}"), "password": "never-here"})
                        .as_object()
                        .cloned()
                        .unwrap(),
                create_only: vec!["password".into()],
                unmanaged: Vec::new(),
                password_field: field.map(str::to_owned),
                secret_id: None,
                // As the plan keeps the password for a target that wants it on every update.
                retain_secret: field.is_some(),
                hash: StateKey::sample_of(operation, name),
                mapping_version: "m".into(),
            };
            let now = unix_millis(self.clock.as_ref());
            self.db
                .write(move |s| s.set_desired(&desired, now))
                .await
                .unwrap();
        }

        async fn row(&self) -> Delivery {
            self.db
                .read(|s| s.delivery("u1", "scripted"))
                .await
                .unwrap()
                .unwrap()
        }
    }

    #[tokio::test]
    async fn creates_then_updates_without_create_only_fields() {
        let f = fixture(vec![]);
        f.want("v1", DeliveryOp::Upsert).await;
        assert_eq!(f.worker.drain().await.unwrap(), 1);
        f.want("v2", DeliveryOp::Upsert).await;
        assert_eq!(f.worker.drain().await.unwrap(), 1);
        let calls = f.target.calls();
        assert_eq!(calls[0], "find");
        assert!(calls[1].starts_with("create ") && calls[1].contains("never-here"));
        assert!(
            calls[2].starts_with("update r1 ") && !calls[2].contains("password"),
            "{calls:?}"
        );
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.delivered_hash, Some(StateKey::sample("v2")));
        // Nothing left to do: no further call.
        assert_eq!(f.worker.drain().await.unwrap(), 0);
        assert_eq!(f.target.calls().len(), 3);
    }

    #[tokio::test]
    async fn retries_with_backoff_then_dead_letters() {
        let retry = || {
            Err(TargetError::Retryable {
                status: Some(500),
                reason: "500: internal error".into(),
                retry_after: None,
            })
        };
        let f = fixture(vec![retry(), retry(), retry()]);
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!((row.state, row.attempts), (DeliveryState::Retrying, 1));
        // Not due again until the clock reaches the backoff.
        assert_eq!(f.worker.drain().await.unwrap(), 0);
        f.clock.advance(Duration::from_secs(61));
        f.worker.drain().await.unwrap();
        assert_eq!(f.row().await.attempts, 2);
        f.clock.advance(Duration::from_secs(61));
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Dead);
        assert_eq!(row.last_status, Some(500));
        assert!(row.last_error.unwrap().contains("gave up after 3 attempts"));
        f.clock.advance(Duration::from_secs(3600));
        assert_eq!(
            f.worker.drain().await.unwrap(),
            0,
            "dead letters wait for a replay"
        );
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let f = fixture(vec![Err(TargetError::Retryable {
            status: Some(429),
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(30)),
        })]);
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(row.next_attempt_at, 1_030_000);
        f.clock.advance(Duration::from_secs(29));
        assert_eq!(f.worker.drain().await.unwrap(), 0);
        f.clock.advance(Duration::from_secs(1));
        assert_eq!(f.worker.drain().await.unwrap(), 1);
        assert_eq!(f.row().await.state, DeliveryState::Delivered);
    }

    #[tokio::test]
    async fn rejections_keep_the_targets_reason_and_wait_for_a_change() {
        let f = fixture(vec![Err(TargetError::Rejected {
            status: 422,
            message: "lastName: must not be empty".into(),
        })]);
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Rejected);
        assert_eq!(row.last_status, Some(422));
        assert_eq!(
            row.last_error.as_deref(),
            Some("lastName: must not be empty")
        );
        f.clock.advance(Duration::from_secs(3600));
        assert_eq!(f.worker.drain().await.unwrap(), 0);
        f.want("v2", DeliveryOp::Upsert).await;
        assert_eq!(f.worker.drain().await.unwrap(), 1);
        assert_eq!(f.row().await.state, DeliveryState::Delivered);
    }

    #[tokio::test]
    async fn paused_targets_receive_nothing_and_delete_of_a_missing_account_is_done() {
        let f = fixture(vec![]);
        f.db.write(|s| s.set_paused("scripted", true))
            .await
            .unwrap();
        f.want("gone", DeliveryOp::Delete).await;
        assert_eq!(f.worker.drain().await.unwrap(), 0);
        f.db.write(|s| s.set_paused("scripted", false))
            .await
            .unwrap();
        assert_eq!(f.worker.drain().await.unwrap(), 1);
        assert_eq!(f.target.calls(), ["find"], "no account: nothing to delete");
        assert_eq!(f.row().await.state, DeliveryState::Delivered);
    }

    #[tokio::test]
    async fn an_update_or_disable_answered_404_heals_instead_of_being_rejected() {
        let gone = || {
            Err(TargetError::Rejected {
                status: 404,
                message: "no such user".into(),
            })
        };
        let f = fixture(vec![Ok(()), gone(), Ok(())]);
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        f.want("v2", DeliveryOp::Upsert).await;
        assert_eq!(f.worker.drain().await.unwrap(), 1);
        let calls = f.target.calls();
        assert!(calls[2].starts_with("update r1 "), "{calls:?}");
        assert!(
            calls[3].starts_with("create ") && calls[3].contains("v2"),
            "{calls:?}"
        );
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.remote_id.as_deref(), Some("r1"));

        let f = fixture(vec![Ok(()), gone()]);
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        f.want("off", DeliveryOp::Disable).await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(
            row.state,
            DeliveryState::Delivered,
            "nothing left to disable"
        );
        assert_eq!(row.remote_id, None, "a later enable creates the account");
        assert_eq!(f.target.calls().len(), 3, "{:?}", f.target.calls());
    }

    #[tokio::test]
    async fn an_account_gone_from_the_target_is_left_for_an_operator_when_the_policy_reports() {
        let mut f = fixture(vec![
            Ok(()),
            Err(TargetError::Rejected {
                status: 404,
                message: "no such user".into(),
            }),
        ]);
        f.worker.policy.recreate_vanished = false;
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        f.want("v2", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(calls.len(), 3, "no create after the 404: {calls:?}");
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Rejected);
        assert!(
            row.last_error
                .as_deref()
                .is_some_and(|text| text.contains("on_missing")),
            "{row:?}"
        );
        assert_eq!(row.remote_id.as_deref(), Some("r1"), "the link is kept");
    }

    fn secret_field(required_on_create: bool, required_on_update: bool) -> Vec<FieldSpec> {
        vec![FieldSpec {
            required_on_create,
            required_on_update,
            write_only: true,
            ..FieldSpec::optional("secret", FieldKind::String)
        }]
    }

    #[tokio::test]
    async fn a_create_answered_409_adopts_the_account_with_that_key() {
        let held = held("h1", serde_json::json!({"name": "Held"}));
        let conflict = Err(TargetError::Rejected {
            status: 409,
            message: "name taken".into(),
        });
        // The first look-up misses it (made meanwhile); the one after the 409 finds it.
        let f = fixture_with(Scripted::with(
            vec![conflict],
            vec![None, Some(held)],
            secret_field(false, false),
        ));
        f.want("v1", DeliveryOp::Upsert).await;
        assert_eq!(f.worker.drain().await.unwrap(), 1);
        let calls = f.target.calls();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert!(calls[1].starts_with("create "), "{calls:?}");
        assert!(calls[3].starts_with("update h1 "), "{calls:?}");
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.remote_id.as_deref(), Some("h1"));
        let adoptions = f.db.read(|s| s.adoptions_of("u1")).await.unwrap();
        assert_eq!(adoptions.len(), 1);
        assert_eq!(adoptions[0].remote_id, "h1");
        assert_eq!(adoptions[0].changed, ["name"]);
    }

    #[tokio::test]
    async fn a_409_with_nothing_to_adopt_stays_a_rejection() {
        let f = fixture(vec![Err(TargetError::Rejected {
            status: 409,
            message: "email taken".into(),
        })]);
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Rejected);
        assert!(row
            .last_error
            .unwrap()
            .starts_with("email taken (and no account"));
    }

    #[tokio::test]
    async fn a_made_up_password_goes_to_a_create_that_needs_one_and_nowhere_else() {
        let f = fixture_with(Scripted::with(vec![], vec![], secret_field(true, false)));
        f.want_password("v1", DeliveryOp::Upsert, Some("secret"))
            .await;
        f.worker.drain().await.unwrap();
        f.want_password("v2", DeliveryOp::Upsert, Some("secret"))
            .await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert!(calls[1].contains(r#""secret":""#), "{calls:?}");
        assert!(!calls[2].contains("secret"), "{calls:?}");
        assert!(f.db.read(|s| s.secret("u1")).await.unwrap().is_none());
        // A target that can create without one gets none.
        let f = fixture_with(Scripted::with(vec![], vec![], secret_field(false, false)));
        f.want_password("v1", DeliveryOp::Upsert, Some("secret"))
            .await;
        f.worker.drain().await.unwrap();
        assert!(!f.target.calls()[1].contains("secret"));
    }

    #[tokio::test]
    async fn an_update_that_needs_a_password_nobody_gave_is_held_not_reset() {
        let held = held("h1", serde_json::json!({"name": "v1"}));
        let f = fixture_with(Scripted::with(
            vec![],
            vec![Some(held)],
            secret_field(true, true),
        ));
        f.want_password("v1", DeliveryOp::Disable, Some("secret"))
            .await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(
            (row.state, row.last_status),
            (DeliveryState::Rejected, None)
        );
        assert!(row
            .last_error
            .unwrap()
            .starts_with("needs the user's password: the IdP sent none"));
        assert_eq!(f.target.calls(), ["find"], "nothing was sent");
    }

    #[tokio::test]
    async fn fields_not_managed_are_never_written_to_an_adopted_account() {
        let held = held("h1", serde_json::json!({"name": "v0", "title": "By hand"}));
        let f = fixture_with(Scripted::with(vec![], vec![Some(held)], Vec::new()));
        f.want_unmanaged("v1").await;
        f.worker.drain().await.unwrap();
        f.want_unmanaged("v2").await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(calls.len(), 3, "{calls:?}");
        for update in &calls[1..] {
            assert!(update.starts_with("update h1 "), "{calls:?}");
            assert!(!update.contains("Engineer"), "{calls:?}");
        }
        // A PUT that replaces everything would clear a field left out: it carries the value
        // the account holds instead.
        assert!(calls[1].contains(r#""title":"By hand""#), "{calls:?}");
        // On an account the bridge created, the same field is written as usual.
        let f = fixture(vec![]);
        f.want_unmanaged("v1").await;
        f.worker.drain().await.unwrap();
        f.want_unmanaged("v2").await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert!(
            calls[2].starts_with("update r1 ") && calls[2].contains("title"),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_made_up_password_the_target_wants_on_every_update_stays_with_its_own_account() {
        // The first create's answer is lost; the retry finds the account that create made.
        let lost = Err(TargetError::Retryable {
            status: None,
            reason: "timed out".into(),
            retry_after: None,
        });
        let made = held("r9", serde_json::json!({"name": "v1"}));
        let f = fixture_with(Scripted::with(
            vec![lost],
            vec![None, Some(made)],
            secret_field(true, true),
        ));
        f.want_password("v1", DeliveryOp::Upsert, Some("secret"))
            .await;
        f.worker.drain().await.unwrap();
        f.clock.advance(Duration::from_secs(61));
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        let sent = |call: &str| {
            let json = call.split_once(' ').unwrap().1;
            let json = json.strip_prefix("r9 ").unwrap_or(json);
            let body: Value = serde_json::from_str(json).unwrap();
            body["secret"].as_str().unwrap().to_owned()
        };
        assert!(calls[1].starts_with("create "), "{calls:?}");
        assert!(calls[3].starts_with("update r9 "), "{calls:?}");
        assert_eq!(sent(&calls[1]), sent(&calls[3]), "the same password");
        assert_eq!(f.row().await.state, DeliveryState::Delivered);
        assert!(
            f.db.read(|s| s.adoptions_of("u1"))
                .await
                .unwrap()
                .is_empty(),
            "its own account, not a takeover"
        );
    }

    fn throttled(seconds: u64) -> TargetError {
        TargetError::Retryable {
            status: Some(429),
            reason: "429: too many requests".into(),
            retry_after: Some(Duration::from_secs(seconds)),
        }
    }

    fn unavailable() -> TargetError {
        TargetError::Retryable {
            status: Some(503),
            reason: "503: the target is down".into(),
            retry_after: None,
        }
    }

    impl Fixture {
        async fn lag(&self) -> crate::ledger::TargetLag {
            self.db.read(|s| s.lag("scripted")).await.unwrap()
        }

        /// Lets `seconds` pass in steps of `step`, delivering whatever falls due.
        async fn run_for(&self, seconds: u64, step: u64) {
            for _ in 0..seconds / step {
                self.worker.drain().await.unwrap();
                self.clock.advance(Duration::from_secs(step));
            }
            self.worker.drain().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_throttling_storm_longer_than_the_retries_dead_letters_no_one() {
        let f = fixture(vec![]);
        for n in 0..20 {
            f.want_for(&format!("u{n:02}"), "v1", DeliveryOp::Upsert)
                .await;
        }
        // 50 s of 429 with Retry-After: 5, against 3 attempts of at most 5 s each.
        f.target.set_fault(Some(throttled(5)));
        f.run_for(50, 1).await;
        assert_eq!(f.lag().await.dead, 0, "{:?}", f.lag().await);
        f.target.set_fault(None);
        f.run_for(10, 1).await;
        let lag = f.lag().await;
        assert_eq!((lag.delivered, lag.dead), (20, 0), "{lag:?}");
    }

    #[tokio::test]
    async fn a_long_outage_dead_letters_no_one_and_heals_without_a_replay() {
        let f = fixture(vec![]);
        for n in 0..20 {
            f.want_for(&format!("u{n:02}"), "v1", DeliveryOp::Upsert)
                .await;
        }
        f.target.set_fault(Some(unavailable()));
        f.run_for(2 * 3600, 10).await;
        assert_eq!(f.lag().await.dead, 0, "{:?}", f.lag().await);
        f.target.set_fault(None);
        // The probe cadence is capped at 60 s in this fixture.
        f.run_for(120, 1).await;
        let lag = f.lag().await;
        assert_eq!((lag.delivered, lag.dead), (20, 0), "{lag:?}");
    }

    async fn attempts_of(f: &Fixture, user: &'static str) -> Delivery {
        f.db.read(move |s| s.delivery(user, "scripted"))
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn an_open_circuit_sends_one_probe_per_cadence_and_charges_no_one() {
        let f = fixture(vec![]);
        for n in 0..20 {
            f.want_for(&format!("u{n:02}"), "v1", DeliveryOp::Upsert)
                .await;
        }
        f.target.set_fault(Some(unavailable()));
        f.worker.drain().await.unwrap();
        // One round at the concurrency of 4 went out before the circuit opened at 3.
        assert_eq!(f.target.calls().len(), 4);
        let circuit = f.lag().await.circuit;
        assert_eq!(circuit.state, crate::ledger::CircuitState::Open);
        assert_eq!(circuit.last_status, Some(503));
        assert_eq!(f.worker.drain().await.unwrap(), 0, "nothing while open");
        for round in 1..=30 {
            // The probe cadence never exceeds the 60 s cap, nor comes twice within it.
            f.clock.advance(Duration::from_secs(60));
            f.worker.drain().await.unwrap();
            assert_eq!(f.target.calls().len(), 4 + round, "round {round}");
        }
        let dues =
            f.db.read(|s| s.deliveries_in(&[DeliveryState::Retrying], None, 100))
                .await
                .unwrap();
        let charged: u32 = dues.iter().map(|d| d.attempts).sum();
        assert_eq!(charged, 1, "only the first failure of the outage counts");
        assert_eq!(dues[0].last_status, Some(503));
        let history = f.db.read(|s| s.history("u00", None, 10)).await.unwrap();
        assert!(history.iter().all(|a| a.status == Some(503)), "{history:?}");

        f.target.set_fault(None);
        f.clock.advance(Duration::from_secs(60));
        f.worker.drain().await.unwrap();
        let lag = f.lag().await;
        assert_eq!((lag.delivered, lag.dead), (20, 0), "{lag:?}");
        assert_eq!(lag.circuit.state, crate::ledger::CircuitState::Closed);
    }

    #[tokio::test]
    async fn a_user_failing_with_500_while_others_succeed_is_dead_lettered() {
        let f = fixture(vec![]);
        *f.target.poisoned.lock().unwrap() = Some((
            "bad-".into(),
            TargetError::Retryable {
                status: Some(500),
                reason: "500: NullPointerException".into(),
                retry_after: None,
            },
        ));
        f.want_for("bad", "v1", DeliveryOp::Upsert).await;
        for round in 0..3 {
            f.want_for(&format!("good{round}"), "v1", DeliveryOp::Upsert)
                .await;
            f.worker.drain().await.unwrap();
            f.clock.advance(Duration::from_secs(61));
        }
        let bad = attempts_of(&f, "bad").await;
        assert_eq!(bad.state, DeliveryState::Dead);
        assert_eq!(bad.last_status, Some(500));
        assert!(bad.last_error.unwrap().contains("gave up after 3 attempts"));
        let lag = f.lag().await;
        assert_eq!((lag.delivered, lag.dead), (3, 1), "{lag:?}");
        assert_eq!(lag.circuit.state, crate::ledger::CircuitState::Closed);
    }

    #[tokio::test]
    async fn a_user_the_target_keeps_refusing_is_still_rejected_at_once() {
        let f = fixture(vec![]);
        *f.target.poisoned.lock().unwrap() = Some((
            "refused-".into(),
            TargetError::Rejected {
                status: 422,
                message: "email: invalid".into(),
            },
        ));
        f.want_for("refused", "v1", DeliveryOp::Upsert).await;
        f.want_for("fine", "v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let refused = attempts_of(&f, "refused").await;
        assert_eq!(
            (refused.state, refused.last_status),
            (DeliveryState::Rejected, Some(422))
        );
        assert_eq!(
            attempts_of(&f, "fine").await.state,
            DeliveryState::Delivered
        );
        assert_eq!(
            f.lag().await.circuit.state,
            crate::ledger::CircuitState::Closed
        );
    }

    #[tokio::test]
    async fn a_made_up_password_never_reaches_the_account_a_409_adopts() {
        let theirs = held("h1", serde_json::json!({"name": "v1"}));
        let conflict = Err(TargetError::Rejected {
            status: 409,
            message: "taken".into(),
        });
        let f = fixture_with(Scripted::with(
            vec![conflict],
            vec![None, Some(theirs)],
            secret_field(true, true),
        ));
        f.want_password("v1", DeliveryOp::Upsert, Some("secret"))
            .await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Rejected);
        assert!(row
            .last_error
            .unwrap()
            .starts_with("needs the user's password"));
        let calls = f.target.calls();
        assert_eq!(calls.len(), 3, "find, create, find; no update: {calls:?}");
    }

    #[tokio::test]
    async fn a_delivery_failing_for_days_is_dead_lettered_by_age() {
        let f = fixture(vec![]);
        f.want("v1", DeliveryOp::Upsert).await;
        // Throttled for good, with an hour named each time: never charged, but old.
        f.target.set_fault(Some(throttled(3600)));
        f.run_for(71 * 3600, 3600).await;
        assert_eq!(f.row().await.state, DeliveryState::Retrying);
        f.run_for(2 * 3600, 3600).await;
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Dead);
        assert_eq!(row.last_status, Some(429));
        assert!(
            row.last_error
                .as_deref()
                .unwrap()
                .contains("gave up after failing for 72 hours"),
            "{row:?}"
        );
    }

    #[tokio::test]
    async fn a_restarted_worker_resumes_an_open_circuit() {
        let f = fixture(vec![]);
        f.want("v1", DeliveryOp::Upsert).await;
        f.target.set_fault(Some(throttled(600)));
        f.worker.drain().await.unwrap();
        let calls = f.target.calls().len();
        let again = Worker::new(
            f.target.clone(),
            f.db.clone(),
            f.clock.clone(),
            Arc::new(SecretBox::from_key(&[1; 32])),
            Arc::new(Metrics::new()),
            f.worker.policy,
        );
        f.clock.advance(Duration::from_secs(599));
        assert_eq!(again.drain().await.unwrap(), 0);
        assert_eq!(f.target.calls().len(), calls);
        f.target.set_fault(None);
        f.clock.advance(Duration::from_secs(1));
        again.drain().await.unwrap();
        assert_eq!(f.row().await.state, DeliveryState::Delivered);
    }

    fn conflict() -> TargetResult<()> {
        Err(TargetError::Rejected {
            status: 409,
            message: "name taken".into(),
        })
    }

    #[tokio::test]
    async fn creating_first_costs_one_request_for_a_new_account() {
        let f = creating_first(Scripted::new(vec![]));
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(calls.len(), 1, "no look-up first: {calls:?}");
        assert!(calls[0].starts_with("create "), "{calls:?}");
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.remote_id.as_deref(), Some("r1"));
        // Only a first upsert creates first: a disable of a user never linked looks first.
        let f = creating_first(Scripted::new(vec![]));
        f.want("v1", DeliveryOp::Disable).await;
        f.worker.drain().await.unwrap();
        assert_eq!(f.target.calls(), ["find"]);
    }

    #[tokio::test]
    async fn creating_first_links_the_account_a_409_names_without_rewriting_what_it_holds() {
        let same = held(
            "h1",
            serde_json::json!({"name": "u1-v1", "title": "By hand"}),
        );
        let f = creating_first(Scripted::with(vec![conflict()], vec![Some(same)], vec![]));
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(calls.len(), 2, "create, find, and no update: {calls:?}");
        assert!(
            calls[0].starts_with("create ") && calls[1] == "find",
            "{calls:?}"
        );
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Delivered);
        assert_eq!(row.remote_id.as_deref(), Some("h1"));
        let adoptions = f.db.read(|s| s.adoptions_of("u1")).await.unwrap();
        assert_eq!(adoptions.len(), 1, "linked as an adoption, not as its own");
        assert!(adoptions[0].changed.is_empty(), "{adoptions:?}");
        // The next change is an update of the linked account: one request, no look-up.
        f.want("v2", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(calls[2].starts_with("update h1 "), "{calls:?}");
    }

    #[tokio::test]
    async fn creating_first_updates_the_account_a_409_names_where_it_differs() {
        let differs = held("h1", serde_json::json!({"name": "U1-V1"}));
        let f = creating_first(Scripted::with(
            vec![conflict()],
            vec![Some(differs)],
            vec![],
        ));
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[2], r#"update h1 {"name":"u1-v1"}"#, "{calls:?}");
        assert_eq!(f.row().await.remote_id.as_deref(), Some("h1"));
        let adoptions = f.db.read(|s| s.adoptions_of("u1")).await.unwrap();
        assert_eq!(adoptions[0].changed, ["name"]);
        // With nothing to adopt, the 409 stays the target's refusal.
        let f = creating_first(Scripted::with(vec![conflict()], vec![None], vec![]));
        f.want("v1", DeliveryOp::Upsert).await;
        f.worker.drain().await.unwrap();
        let row = f.row().await;
        assert_eq!(row.state, DeliveryState::Rejected);
        assert!(row
            .last_error
            .unwrap()
            .starts_with("name taken (and no account"));
    }

    #[tokio::test]
    async fn creating_first_again_after_a_lost_create_finds_its_own_account_not_an_adoption() {
        // The first create's answer is lost; the retry's create meets the account it made.
        let lost = Err(TargetError::Retryable {
            status: None,
            reason: "timed out".into(),
            retry_after: None,
        });
        let made = held("r9", serde_json::json!({"name": "u1-v1"}));
        let f = creating_first(Scripted::with(
            vec![lost, conflict()],
            vec![Some(made)],
            secret_field(true, true),
        ));
        f.want_password("v1", DeliveryOp::Upsert, Some("secret"))
            .await;
        f.worker.drain().await.unwrap();
        f.clock.advance(Duration::from_secs(61));
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert!(
            calls[1].starts_with("create ") && calls[2] == "find",
            "{calls:?}"
        );
        assert!(calls[3].starts_with("update r9 "), "{calls:?}");
        let sent = |call: &str| {
            let json = call.split_once(' ').unwrap().1;
            let json = json.strip_prefix("r9 ").unwrap_or(json);
            let body: Value = serde_json::from_str(json).unwrap();
            body["secret"].as_str().unwrap().to_owned()
        };
        assert_eq!(sent(&calls[0]), sent(&calls[3]), "the same password");
        assert_eq!(f.row().await.state, DeliveryState::Delivered);
        assert!(
            f.db.read(|s| s.adoptions_of("u1"))
                .await
                .unwrap()
                .is_empty(),
            "its own account, not a takeover"
        );
    }

    /// A worker set to `list_first`, listing once `min_users` users wait.
    fn listing_first(target: Arc<Scripted>, min_users: u32) -> Fixture {
        let mut f = fixture_for(target, FirstDelivery::ListFirst);
        f.worker.policy.list_first = ListFirstConfig {
            min_users,
            max_age_secs: 60,
        };
        f
    }

    impl Fixture {
        /// First deliveries of `users`, each named `<user>-v1`.
        async fn want_all(&self, users: &[&str]) {
            for user in users {
                self.want_for(user, "v1", DeliveryOp::Upsert).await;
            }
        }

        async fn row_of(&self, user: &'static str) -> Delivery {
            self.db
                .read(move |s| s.delivery(user, "scripted"))
                .await
                .unwrap()
                .unwrap()
        }
    }

    fn count(calls: &[String], prefix: &str) -> usize {
        calls.iter().filter(|call| call.starts_with(prefix)).count()
    }

    #[tokio::test]
    async fn listing_first_reads_the_accounts_once_and_creates_the_users_it_lacks_without_a_look_up(
    ) {
        let by_hand = held("h2", serde_json::json!({"name": "U2-V1"}));
        let listed = vec![
            held("h8", serde_json::json!({"name": "someone-else"})),
            by_hand.clone(),
            held("h9", serde_json::json!({"title": "no name"})),
        ];
        let f = listing_first(Scripted::listing(vec![], vec![Some(by_hand)], listed), 4);
        f.want_all(&["u1", "u2", "u3", "u4"]).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(
            &calls[..2],
            ["list 0", "list 2"],
            "two pages, once: {calls:?}"
        );
        assert_eq!(count(&calls, "list"), 2, "{calls:?}");
        assert_eq!(count(&calls, "create"), 3, "{calls:?}");
        // Only the user the listing holds an account for is looked up, and adopted.
        assert_eq!(count(&calls, "find"), 1, "{calls:?}");
        assert_eq!(f.row_of("u2").await.remote_id.as_deref(), Some("h2"));
        for user in ["u1", "u3", "u4"] {
            let row = f.row_of(user).await;
            assert_eq!(row.state, DeliveryState::Delivered, "{user}");
            assert_eq!(row.remote_id.as_deref(), Some("r1"), "{user}");
        }
        let adoptions = f.db.read(|s| s.adoptions_of("u2")).await.unwrap();
        assert_eq!(adoptions.len(), 1);

        // The next burst within the listing's age uses it, without reading it again.
        f.want_all(&["u5", "u6", "u7", "u8"]).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 2, "{calls:?}");
        assert_eq!(count(&calls, "create"), 7, "{calls:?}");
        assert_eq!(count(&calls, "find"), 1, "{calls:?}");

        // Past its age the listing answers nothing, and 4 users no longer pay for reading
        // the 8 accounts held at 2 a page: each is looked up.
        f.clock.advance(Duration::from_secs(60));
        f.want_all(&["u9", "u10", "u11", "u12"]).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 2, "{calls:?}");
        assert_eq!(count(&calls, "find"), 1 + 4, "{calls:?}");
        // 14 users do (12 accounts held: 7 pages), and the accounts are read again.
        let users: Vec<String> = (13..27).map(|n| format!("u{n}")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        f.want_all(&users).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 4, "{calls:?}");
        assert_eq!(count(&calls, "find"), 1 + 4, "{calls:?}");
        assert_eq!(count(&calls, "create"), 7 + 4 + 14, "{calls:?}");
    }

    #[tokio::test]
    async fn listing_first_looks_each_user_up_while_few_wait() {
        let f = listing_first(Scripted::listing(vec![], vec![], Vec::new()), 4);
        f.want_all(&["u1", "u2", "u3"]).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 0, "{calls:?}");
        assert_eq!((count(&calls, "find"), count(&calls, "create")), (3, 3));
        // 4 are enough, with 3 accounts held at 2 a page (twice the pages: 4).
        f.want_all(&["u4", "u5", "u6", "u7"]).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 1, "{calls:?}");
        assert_eq!((count(&calls, "find"), count(&calls, "create")), (3, 7));
    }

    #[tokio::test]
    async fn listing_first_looks_up_a_user_whose_create_answer_was_lost_instead_of_creating_again()
    {
        let lost = Err(TargetError::Retryable {
            status: None,
            reason: "timed out".into(),
            retry_after: None,
        });
        let made = held("r7", serde_json::json!({"name": "u1-v1"}));
        let f = listing_first(
            Scripted::listing(vec![lost], vec![Some(made)], Vec::new()),
            2,
        );
        f.want_all(&["u1", "u2"]).await;
        f.worker.drain().await.unwrap();
        f.clock.advance(Duration::from_secs(30));
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 1, "{calls:?}");
        assert_eq!(
            count(&calls, "create"),
            2,
            "one each, never a second for u1: {calls:?}"
        );
        assert_eq!(calls.last().map(String::as_str), Some("find"), "{calls:?}");
        assert_eq!(f.row_of("u1").await.remote_id.as_deref(), Some("r7"));
    }

    #[tokio::test]
    async fn listing_first_falls_back_to_a_look_up_each_when_the_accounts_cannot_be_read() {
        let f = listing_first(Scripted::listing(vec![], vec![], Vec::new()), 2);
        *f.target.poisoned.lock().unwrap() = Some((
            "list".into(),
            TargetError::Rejected {
                status: 403,
                message: "listing users is not allowed".into(),
            },
        ));
        f.want_all(&["u1", "u2"]).await;
        // Nothing in flight when the listing is read: a delivery still running holds it.
        let running = Arc::clone(&f.worker.slots).try_acquire_owned().unwrap();
        assert_eq!(f.worker.dispatch_due().await.unwrap(), 0);
        assert!(f.target.calls().is_empty());
        drop(running);
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 1, "{calls:?}");
        assert_eq!(count(&calls, "find"), 2, "{calls:?}");
        for user in ["u1", "u2"] {
            assert_eq!(f.row_of(user).await.state, DeliveryState::Delivered);
        }
        // Not tried again before its age has passed.
        *f.target.poisoned.lock().unwrap() = None;
        f.clock.advance(Duration::from_secs(30));
        f.want_all(&["u3", "u4"]).await;
        f.worker.drain().await.unwrap();
        let calls = f.target.calls();
        assert_eq!(count(&calls, "list"), 1, "{calls:?}");
        assert_eq!(count(&calls, "find"), 4, "{calls:?}");
    }

    #[tokio::test]
    async fn a_shutdown_does_not_wait_for_a_listing() {
        let mut target = Arc::into_inner(Scripted::listing(vec![], vec![], Vec::new())).unwrap();
        target.listing_hangs = true;
        let f = listing_first(Arc::new(target), 2);
        f.want_all(&["u1", "u2"]).await;
        let (stop, stopping) = watch::channel(false);
        let running = tokio::spawn(f.worker.clone().run(Duration::from_secs(600), stopping));
        let mut turns = 0;
        while f.target.calls().is_empty() {
            turns += 1;
            assert!(turns < 100_000, "the listing never started");
            tokio::task::yield_now().await;
        }
        assert_eq!(f.target.calls(), ["list 0"]);
        stop.send(true).unwrap();
        // A bound, not a timing: without the shutdown's precedence this waits forever.
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the worker stopped")
            .unwrap();
        assert_eq!(f.target.calls(), ["list 0"], "nothing sent after the stop");
    }

    #[tokio::test]
    async fn a_target_pushing_back_gets_fewer_deliveries_in_flight() {
        let adaptive = ConcurrencyPolicy {
            initial: 4,
            max: 8,
            adaptive: true,
        };
        // One 503 among answers that otherwise deliver: the circuit stays closed.
        let f = fixture_limited(
            Scripted::new(vec![Err(unavailable())]),
            FirstDelivery::CreateFirst,
            adaptive,
        );
        for n in 0..12 {
            f.want_for(&format!("u{n:02}"), "v1", DeliveryOp::Upsert)
                .await;
        }
        f.worker.drain().await.unwrap();
        assert_eq!(f.worker.lock_limit().limit(), 3, "cut by 10%, rounded down");
        let lag = f.lag().await;
        assert_eq!((lag.delivered, lag.retrying), (11, 1), "{lag:?}");
        // The slots are sized for the cap; the limit, not the slots, bounds a round.
        for n in 20..26 {
            f.want_for(&format!("u{n:02}"), "v1", DeliveryOp::Upsert)
                .await;
        }
        assert_eq!(f.worker.dispatch_due().await.unwrap(), 3);
        f.worker.drain().await.unwrap();
        assert_eq!(f.lag().await.delivered, 17);
    }

    /// The due list is read while deliveries run, some of which finish before the worker
    /// goes through it: a row listed while its delivery was in flight must not be sent again
    /// from that list. Both runtime threads race the worker's own task here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_finished_after_the_due_list_was_read_is_not_sent_again() {
        let fixed = ConcurrencyPolicy {
            initial: 8,
            max: 8,
            adaptive: false,
        };
        let f = fixture_limited(Scripted::new(Vec::new()), FirstDelivery::CreateFirst, fixed);
        let users = 300;
        for n in 0..users {
            f.want_for(&format!("u{n:03}"), "v1", DeliveryOp::Upsert)
                .await;
        }
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(f.worker.clone().run(Duration::from_millis(1), stopped));
        for _ in 0..10_000 {
            if f.lag().await.delivered == users {
                break;
            }
            tokio::task::yield_now().await;
        }
        stop.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(f.lag().await.delivered, users);
        let mut creates = std::collections::HashMap::<String, usize>::new();
        for call in f.target.calls() {
            let payload = call.strip_prefix("create ").expect("only creates");
            let payload: Value = serde_json::from_str(payload).unwrap();
            *creates.entry(payload["name"].to_string()).or_default() += 1;
        }
        assert_eq!(creates.len(), users as usize);
        let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "sent more than once: {twice:?}");
    }
}
