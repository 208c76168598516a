//! Provisioning on demand: one user, target by target, shown step by step (the SCIM user,
//! the rendered payload, the account found, the three-way diff, the request, the answer).
//! Unless it is a dry run, the user's rows are made due and the bridge's workers deliver
//! them, as they deliver any change.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::compare::{compare, Finding, FindingKind};
use super::run::{account_read, Reconciler};
use super::{audit, ReconcileError};
use crate::clock::unix_millis;
use crate::ledger::{
    Actor, AuditAction, Delivery, DeliveryOp, DeliveryState, LedgerError, ResourceKind,
};
use crate::targets::{Payload, RemoteAccount, Target};

/// What a sync did (or would do) for one user.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SyncReport {
    pub user_id: String,
    /// The stored SCIM user.
    pub user: Value,
    pub dry_run: bool,
    pub targets: Vec<TargetSync>,
}

/// One target's steps.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetSync {
    pub target: String,
    pub mapping_version: String,
    pub operation: DeliveryOp,
    /// The payload the mapping rendered, passwords redacted.
    pub payload: Payload,
    /// The account: linked in the ledger, found by natural key, or none.
    pub account: Option<String>,
    pub found_by: &'static str,
    /// The three-way comparison; `None` when the target holds what the ledger says.
    pub finding: Option<Finding>,
    pub request: String,
    /// What the target answered; `None` on a dry run.
    pub answer: Option<String>,
}

/// How long a sync waits for the workers to deliver before it says the rows are left due.
const WAIT: Duration = Duration::from_secs(30);

impl Reconciler {
    /// Syncs `user` (an id or a userName) on every target, or on `only`.
    pub(crate) async fn sync(
        &self,
        user: &str,
        only: Option<&str>,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<SyncReport, ReconcileError> {
        if let Some(name) = only {
            self.entry(name)?;
        }
        let wanted = user.to_owned();
        let (row, deliveries) = self
            .db()
            .read(move |s| {
                let id = match s.get(ResourceKind::User, &wanted)? {
                    Some(row) => Some(row),
                    None => match s.user_id_by_name(&wanted)? {
                        Some(id) => s.get(ResourceKind::User, &id)?,
                        None => None,
                    },
                };
                let deliveries = match &id {
                    Some(row) => s.deliveries_of(&row.id)?,
                    None => Vec::new(),
                };
                Ok::<_, LedgerError>((id, deliveries))
            })
            .await?;
        let row = row.ok_or_else(|| ReconcileError::UnknownUser(user.to_owned()))?;
        let mut targets = Vec::new();
        for delivery in deliveries {
            let Ok(entry) = self.entry(&delivery.desired.target) else {
                continue;
            };
            if only.is_some_and(|name| name != entry.target.name()) {
                continue;
            }
            targets.push(
                self.sync_target(entry.target.as_ref(), delivery, dry_run)
                    .await?,
            );
        }
        if !dry_run {
            let synced: Vec<&str> = targets.iter().map(|t| t.target.as_str()).collect();
            audit(
                self.db(),
                self.clock(),
                actor,
                AuditAction::Sync,
                only.map(str::to_owned),
                Some(row.id.clone()),
                serde_json::json!({"targets": synced}),
            )
            .await;
        }
        Ok(SyncReport {
            user_id: row.id,
            user: Value::Object(row.body),
            dry_run,
            targets,
        })
    }

    async fn sync_target(
        &self,
        target: &dyn Target,
        delivery: Delivery,
        dry_run: bool,
    ) -> Result<TargetSync, ReconcileError> {
        let (account, found_by) = self.account_of(target, &delivery).await?;
        let looked =
            delivery.remote_id.is_some() || delivery.desired.operation != DeliveryOp::Delete;
        if looked {
            let now = unix_millis(self.clock().as_ref());
            self.remember(vec![account_read(target, &delivery, account.as_ref(), now)])
                .await?;
        }
        let finding = compare(target, Some(&delivery), account.as_ref());
        let id = account.as_ref().map(|a| a.id.clone());
        let request = match (delivery.desired.operation, &id) {
            (DeliveryOp::Upsert, Some(id)) => format!("update {id}"),
            (DeliveryOp::Upsert, None) => "create".to_owned(),
            (DeliveryOp::Disable, Some(id)) => format!("disable {id}"),
            (DeliveryOp::Delete, Some(id)) => format!("delete {id}"),
            (DeliveryOp::Disable | DeliveryOp::Delete, None) => {
                "nothing: the target has no account".to_owned()
            }
        };
        let answer = if dry_run {
            None
        } else {
            Some(self.deliver_now(&delivery, finding.as_ref()).await?)
        };
        Ok(TargetSync {
            target: target.name().to_owned(),
            mapping_version: delivery.desired.mapping_version.clone(),
            operation: delivery.desired.operation,
            payload: redacted(target, &delivery),
            account: id,
            found_by,
            finding,
            request,
            answer,
        })
    }

    /// The account the ledger links, or the one the user's natural key finds.
    async fn account_of(
        &self,
        target: &dyn Target,
        delivery: &Delivery,
    ) -> Result<(Option<RemoteAccount>, &'static str), ReconcileError> {
        let entry = self.entry(target.name())?;
        if let Some(id) = &delivery.remote_id {
            let account = self.call_target(entry, || target.read(id)).await?;
            return Ok((account, "ledger link"));
        }
        if delivery.desired.operation == DeliveryOp::Delete {
            return Ok((None, "none"));
        }
        let found = self
            .call_target(entry, || target.find(&delivery.desired.payload))
            .await?;
        let how = if found.is_some() {
            "natural key"
        } else {
            "none"
        };
        Ok((found, how))
    }

    /// Makes the row due (dropping a link to an account that is gone) and waits, bounded,
    /// for the workers to record their attempt.
    async fn deliver_now(
        &self,
        delivery: &Delivery,
        finding: Option<&Finding>,
    ) -> Result<String, ReconcileError> {
        let (user, target, hash) = (
            delivery.desired.user_id.clone(),
            delivery.desired.target.clone(),
            delivery.desired.hash.clone(),
        );
        let missing = finding
            .filter(|f| f.kind == FindingKind::Missing)
            .and_then(|f| f.remote_id.clone());
        let since = unix_millis(self.clock().as_ref());
        {
            let (user, target) = (user.clone(), target.clone());
            self.db()
                .write(move |s| match &missing {
                    Some(remote_id) => s.heal_missing(&user, &target, remote_id, since),
                    None => s.redeliver(&user, &target, &hash, since),
                })
                .await?;
        }
        self.wake(&target);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (user, target) = (user.clone(), target.clone());
            let (row, last) = self
                .db()
                .read(move |s| {
                    Ok::<_, LedgerError>((
                        s.delivery(&user, &target)?,
                        s.history(&user, Some(&target), 1)?.pop(),
                    ))
                })
                .await?;
            let settled = row.is_some_and(|row| {
                row.state != DeliveryState::Pending && row.state != DeliveryState::Retrying
            });
            match last {
                Some(attempt) if settled && attempt.at >= since => {
                    let status = attempt
                        .status
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default();
                    let error = attempt.error.map(|e| format!(": {e}")).unwrap_or_default();
                    return Ok(format!("{}{status}{error}", attempt.outcome));
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Ok(
                        "left due: the bridge's workers deliver it (on its next start if \
                               it is not running)"
                            .to_owned(),
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// The payload with the password and every write-only field hidden.
fn redacted(target: &dyn Target, delivery: &Delivery) -> Payload {
    let schema = target.schema();
    delivery
        .desired
        .payload
        .iter()
        .map(|(name, value)| {
            let secret = delivery.desired.password_field.as_deref() == Some(name.as_str())
                || schema.field(name).is_some_and(|spec| spec.write_only);
            let shown = if secret {
                Value::String("(redacted)".into())
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}
