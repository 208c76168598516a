//! The operator's view of the fan-out: what each target holds or lacks, what failed and why,
//! replay and pause, what the deprovisioning guard holds and its release or discard, and the
//! audit trail every one of these actions is written to. Shared by the admin HTTP API and the
//! `ledger` CLI, which may run against the database of a running or a stopped bridge.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::{unix_millis, SharedClock};
use crate::fanout::Fanout;
use crate::ledger::{
    Actor, Adoption, Attempt, AuditAction, AuditEntry, AuditOutcome, AuditQuery, Audited, Db,
    Delivery, DeliveryState, LedgerError, Omissions, TargetLag,
};

/// How many rows a listing returns at most.
const LIST_LIMIT: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct UserStatus {
    pub user_id: String,
    pub deliveries: Vec<Delivery>,
    pub history: Vec<Attempt>,
    /// The targets where the bridge took over an existing account for this user.
    pub adoptions: Vec<Adoption>,
    /// The identity provider's latest change to the user is not planned yet: the rows
    /// above show the desired states from before it.
    pub planning: bool,
}

/// What to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReplayRequest {
    pub user_id: Option<String>,
    pub target: Option<String>,
    /// Only dead letters (`true`), or rejected ones too (`false`).
    pub dead_only: bool,
}

/// What the deprovisioning guard holds on one target.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Held {
    pub target: String,
    /// How many deprovisions are held (all of them, however many are listed).
    pub held: u64,
    /// The held deliveries, most recent first, at most a listing's limit.
    pub deliveries: Vec<Delivery>,
}

/// An operator's audit-trail question, from the admin API's query or the CLI's flags.
pub(crate) fn audit_query(
    action: Option<&str>,
    target: Option<String>,
    before: Option<i64>,
    limit: usize,
) -> Result<AuditQuery, String> {
    let action = action
        .map(|name| {
            AuditAction::parse(name).ok_or_else(|| {
                format!("unknown action {name}: use one of {}", AuditAction::names())
            })
        })
        .transpose()?;
    if !(1..=LIST_LIMIT).contains(&limit) {
        return Err(format!("limit must be between 1 and {LIST_LIMIT}"));
    }
    Ok(AuditQuery {
        action,
        target,
        before,
        limit,
    })
}

#[derive(Clone)]
pub(crate) struct Operator {
    db: Db,
    clock: SharedClock,
    targets: Vec<String>,
    /// The running workers, inside the bridge: an action that makes rows due wakes them.
    /// `None` for the `ledger` CLI, whose changes a running bridge finds on its next poll.
    fanout: Option<Arc<Fanout>>,
}

impl Operator {
    pub(crate) fn new(db: Db, clock: SharedClock, targets: Vec<String>) -> Operator {
        Operator {
            db,
            clock,
            targets,
            fanout: None,
        }
    }

    /// Wakes `fanout`'s workers after the actions that make rows due.
    pub(crate) fn waking(mut self, fanout: Arc<Fanout>) -> Operator {
        self.fanout = Some(fanout);
        self
    }

    fn wake(&self, target: Option<&str>) {
        if let Some(fanout) = &self.fanout {
            match target {
                Some(target) => fanout.wake(&[target.to_owned()]),
                None => fanout.wake(&self.targets),
            }
        }
    }

    pub(crate) fn targets(&self) -> &[String] {
        &self.targets
    }

    /// The listings the running workers look new users up in (`list_first`); none from the
    /// `ledger` CLI, which runs no workers.
    pub(crate) fn lookups(
        &self,
    ) -> std::collections::BTreeMap<String, crate::fanout::listing::LookupStatus> {
        self.fanout
            .as_ref()
            .map(|fanout| fanout.lookups())
            .unwrap_or_default()
    }

    pub(crate) async fn lag(&self) -> Result<Vec<TargetLag>, LedgerError> {
        let targets = self.targets.clone();
        self.db
            .read(move |s| targets.iter().map(|t| s.lag(t)).collect())
            .await
    }

    /// How many users SCIM wrote that the planner has not yet turned into desired states:
    /// their changes are in none of the counts of `lag` yet.
    pub(crate) async fn planning(&self) -> Result<u64, LedgerError> {
        self.db.read(|s| s.planning()).await
    }

    pub(crate) async fn user(&self, user_id: &str) -> Result<UserStatus, LedgerError> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |s| {
                Ok(UserStatus {
                    deliveries: s.deliveries_of(&user_id)?,
                    history: s.history(&user_id, None, 100)?,
                    adoptions: s.adoptions_of(&user_id)?,
                    planning: s.is_marked(&user_id)?,
                    user_id,
                })
            })
            .await
    }

    pub(crate) async fn list(
        &self,
        states: &[DeliveryState],
        target: Option<&str>,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let states = states.to_vec();
        let target = target.map(str::to_owned);
        self.db
            .read(move |s| s.deliveries_in(&states, target.as_deref(), LIST_LIMIT))
            .await
    }

    /// Per target and field, how many users are sent without it because their value could
    /// not be mapped.
    pub(crate) async fn omissions(&self) -> Result<Vec<Omissions>, LedgerError> {
        self.db.read(|s| s.omissions()).await
    }

    /// Makes matching rejected / dead deliveries due now; returns how many.
    pub(crate) async fn replay(
        &self,
        request: ReplayRequest,
        actor: &Actor,
    ) -> Result<usize, LedgerError> {
        let now = unix_millis(self.clock.as_ref());
        let actor = actor.name();
        let states = if request.dead_only {
            vec![DeliveryState::Dead]
        } else {
            vec![DeliveryState::Dead, DeliveryState::Rejected]
        };
        let target = request.target.clone();
        let replayed = self
            .db
            .write(move |s| {
                let replayed = s.replay(
                    request.user_id.as_deref(),
                    request.target.as_deref(),
                    &states,
                    now,
                )?;
                s.append_audit(&AuditEntry {
                    at: now,
                    actor,
                    action: AuditAction::Replay,
                    target: request.target,
                    user_id: request.user_id,
                    detail: json!({"replayed": replayed, "dead_only": request.dead_only}),
                    outcome: AuditOutcome::Ok,
                })?;
                Ok::<_, LedgerError>(replayed)
            })
            .await?;
        if replayed > 0 {
            self.wake(target.as_deref());
        }
        Ok(replayed)
    }

    pub(crate) async fn set_paused(
        &self,
        target: &str,
        paused: bool,
        actor: &Actor,
    ) -> Result<(), LedgerError> {
        let entry = self.entry(
            actor,
            if paused {
                AuditAction::Pause
            } else {
                AuditAction::Resume
            },
            target,
            json!({}),
        );
        let paused_target = target.to_owned();
        self.db
            .write(move |s| {
                s.set_paused(&paused_target, paused)?;
                s.append_audit(&entry)?;
                Ok::<_, LedgerError>(())
            })
            .await?;
        if !paused {
            self.wake(Some(target));
        }
        Ok(())
    }

    /// The deprovisions the guard holds on `target`.
    pub(crate) async fn held(&self, target: &str) -> Result<Held, LedgerError> {
        let target = target.to_owned();
        self.db
            .read(move |s| {
                Ok(Held {
                    held: s.held_count(&target)?,
                    deliveries: s.deliveries_in(
                        &[DeliveryState::Held],
                        Some(&target),
                        LIST_LIMIT,
                    )?,
                    target,
                })
            })
            .await
    }

    /// Sends what the guard holds on `target`, each once, and starts its window afresh;
    /// returns how many. The bridge's worker is woken to send them now (a running bridge
    /// released from the CLI finds them on its next poll).
    pub(crate) async fn release(&self, target: &str, actor: &Actor) -> Result<usize, LedgerError> {
        let mut entry = self.entry(actor, AuditAction::Release, target, Value::Null);
        let held_target = target.to_owned();
        let released = self
            .db
            .write(move |s| {
                let released = s.release_held(&held_target, entry.at)?;
                entry.detail = json!({"released": released});
                s.append_audit(&entry)?;
                Ok::<_, LedgerError>(released)
            })
            .await?;
        if released > 0 {
            self.wake(Some(target));
        }
        Ok(released)
    }

    /// Drops what the guard holds on `target` unsent: the ledger takes those users as
    /// deprovisioned there, so a later re-activation is an ordinary update. Returns how many.
    pub(crate) async fn discard(&self, target: &str, actor: &Actor) -> Result<usize, LedgerError> {
        let mut entry = self.entry(actor, AuditAction::Discard, target, Value::Null);
        let note = format!(
            "discarded by {}: held by the deprovisioning guard and never sent; the target \
             keeps the account as it was",
            entry.actor
        );
        let held_target = target.to_owned();
        let discarded = self
            .db
            .write(move |s| {
                let discarded = s.discard_held(&held_target, &note, entry.at)?;
                entry.detail = json!({"discarded": discarded});
                s.append_audit(&entry)?;
                Ok::<_, LedgerError>(discarded)
            })
            .await?;
        // The target is no longer held: deprovisions that came after these go now.
        if discarded > 0 {
            self.wake(Some(target));
        }
        Ok(discarded)
    }

    /// Appends an operator action that is not one ledger write of its own (a mapping
    /// reload, say) to the audit trail.
    pub(crate) async fn record(
        &self,
        actor: &Actor,
        action: AuditAction,
        detail: Value,
        outcome: AuditOutcome,
    ) -> Result<(), LedgerError> {
        let entry = AuditEntry {
            at: unix_millis(self.clock.as_ref()),
            actor: actor.name(),
            action,
            target: None,
            user_id: None,
            detail,
            outcome,
        };
        self.db
            .write(move |s| s.append_audit(&entry).map(|_| ()))
            .await
    }

    /// The audit trail, newest first.
    pub(crate) async fn audit(&self, query: AuditQuery) -> Result<Vec<Audited>, LedgerError> {
        self.db.read(move |s| s.audit(&query)).await
    }

    fn entry(&self, actor: &Actor, action: AuditAction, target: &str, detail: Value) -> AuditEntry {
        AuditEntry {
            at: unix_millis(self.clock.as_ref()),
            actor: actor.name(),
            action,
            target: Some(target.to_owned()),
            user_id: None,
            detail,
            outcome: AuditOutcome::Ok,
        }
    }
}
