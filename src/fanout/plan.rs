//! From a SCIM change to desired states: renders the user through every target's mapping
//! and records the result in the ledger, inside the same transaction as the SCIM write.

use std::sync::{Arc, RwLock};

use secrecy::SecretString;
use serde_json::Value;

use crate::fanout::secrets::SecretBox;
use crate::ledger::{DeliveryOp, Desired, LedgerError, SealedSecret, Store, PASSWORD_MARK};
use crate::mapping::{Event, MappingSet, Operation, ParsedPhones, Render};

/// What happened to the user in SCIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    /// Created or updated; `active` in the user decides between upsert and deactivation.
    Changed,
    Deleted,
}

/// A user rendered through every mapping of one mapping set, not yet recorded. Rendering
/// needs no database, so a new user is rendered before its write reaches the single writer
/// thread, on the request's own thread.
pub struct Rendered {
    mappings: Arc<MappingSet>,
    event: Event,
    renders: Vec<Render>,
}

/// Whether the ledger may already hold rows for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum History {
    /// A user created in this very write: nothing to read back.
    New,
    Existing,
}

/// Holds the mappings in force (swapped whole on reload) and the password sealer.
pub struct Planner {
    mappings: RwLock<Arc<MappingSet>>,
    secrets: Arc<SecretBox>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Planner")
    }
}

impl Planner {
    pub fn new(mappings: MappingSet, secrets: Arc<SecretBox>) -> Planner {
        Planner {
            mappings: RwLock::new(Arc::new(mappings)),
            secrets,
        }
    }

    pub fn mappings(&self) -> Arc<MappingSet> {
        Arc::clone(&self.mappings.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn replace_mappings(&self, mappings: MappingSet) {
        *self.mappings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mappings);
    }

    /// Renders `user` through every mapping in force.
    pub fn render(&self, user: &Value, change: UserChange) -> Rendered {
        let event = match change {
            UserChange::Deleted => Event::Deleted,
            UserChange::Changed if user.get("active") == Some(&Value::Bool(false)) => {
                Event::Deactivated
            }
            UserChange::Changed => Event::Upsert,
        };
        let mappings = self.mappings();
        let mut phones = ParsedPhones::default();
        let renders = mappings
            .iter()
            .map(|m| m.render_with(user, event, &mut phones))
            .collect();
        Rendered {
            mappings,
            event,
            renders,
        }
    }

    /// Records, for every target, the state it should reach for `user`. Returns the targets
    /// that now have something to deliver.
    pub fn plan(
        &self,
        store: &Store<'_>,
        user: &Value,
        change: UserChange,
        password: Option<&SecretString>,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let rendered = self.render(user, change);
        self.record(store, user, rendered, History::Existing, password, now)
    }

    /// `plan` for a user created in this write, rendered beforehand from `user` as it was
    /// going to be stored. A mapping reload since then renders it again.
    pub fn plan_new(
        &self,
        store: &Store<'_>,
        user: &Value,
        rendered: Rendered,
        password: Option<&SecretString>,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let rendered = if Arc::ptr_eq(&rendered.mappings, &self.mappings()) {
            rendered
        } else {
            self.render(user, UserChange::Changed)
        };
        self.record(store, user, rendered, History::New, password, now)
    }

    fn record(
        &self,
        store: &Store<'_>,
        user: &Value,
        rendered: Rendered,
        history: History,
        password: Option<&SecretString>,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let Some(user_id) = user.get("id").and_then(Value::as_str) else {
            return Ok(Vec::new());
        };
        let Rendered {
            mappings,
            event,
            renders,
        } = rendered;
        let mut sealed: Option<SealedSecret> = None;
        let mut due = Vec::new();
        for (mapping, render) in mappings.iter().zip(renders) {
            let target = mapping.target();
            match render {
                Render::Send {
                    operation,
                    payload,
                    create_only,
                    unmanaged,
                    password_field,
                    hash,
                    warnings,
                } => {
                    // A target that wants the password on every update keeps getting the
                    // sealed one already held; otherwise it travels only when newly given.
                    let needs_always = password_field.as_deref().is_some_and(|field| {
                        mapping
                            .schema()
                            .field(field)
                            .is_some_and(|spec| spec.required_on_update)
                    });
                    // After a SCIM delete no further update follows: once this last state
                    // is delivered, the password can go.
                    let retain_secret = needs_always && event != Event::Deleted;
                    // A first delivery carries the password already sealed for this user, in
                    // case the account is created. When the identity provider never sent one,
                    // nothing is made up here: the worker makes one up for a create that
                    // needs it, for that create's account alone.
                    let first_delivery = password_field.is_some()
                        && event == Event::Upsert
                        && (history == History::New || never_delivered(store, user_id, target)?);
                    let held = if password.is_none()
                        && sealed.is_none()
                        && (needs_always || first_delivery)
                    {
                        store.secret(user_id)?.map(|s| s.secret_id)
                    } else {
                        None
                    };
                    let fresh = match (&password_field, password, &sealed) {
                        (None, _, _) | (Some(_), None, _) => None,
                        // Sealed for an earlier target in this same change.
                        (Some(_), Some(_), Some(secret)) => Some(secret.secret_id.clone()),
                        (Some(_), Some(password), None) => {
                            let secret = self.secrets.seal(user_id, password);
                            store.store_secret(user_id, &secret, now)?;
                            let id = secret.secret_id.clone();
                            sealed = Some(secret);
                            Some(id)
                        }
                    };
                    let secret_id = fresh.clone().or(held);
                    // Only a newly given password makes the state differ from what the
                    // target holds.
                    let operation = match operation {
                        Operation::Upsert => DeliveryOp::Upsert,
                        Operation::Disable => DeliveryOp::Disable,
                        Operation::Delete => DeliveryOp::Delete,
                    };
                    // The same payload deleted is not the same state as that payload kept.
                    let hash = match &fresh {
                        Some(id) => format!("{}:{hash}{PASSWORD_MARK}{id}", operation.as_str()),
                        None => format!("{}:{hash}", operation.as_str()),
                    };
                    let desired = Desired {
                        user_id: user_id.to_owned(),
                        target: target.to_owned(),
                        operation,
                        payload,
                        create_only,
                        unmanaged,
                        password_field,
                        secret_id,
                        retain_secret,
                        hash,
                        mapping_version: mapping.version().to_owned(),
                    };
                    let pending = match history {
                        History::New => store.set_first_desired(&desired, now)?,
                        History::Existing => store.set_desired(&desired, now)?,
                    };
                    // A new row has none to clear; an existing one may hold the last ones.
                    if history == History::Existing || !warnings.is_empty() {
                        store.set_warnings(user_id, target, &warnings)?;
                    }
                    if pending {
                        due.push(target.to_owned());
                    }
                }
                Render::Skip { .. } => {}
                Render::Rejected { reason } => {
                    store.set_mapping_rejection(
                        user_id,
                        target,
                        mapping.version(),
                        &reason,
                        now,
                    )?;
                }
            }
        }
        if event == Event::Deleted {
            // No update follows a deletion: a password kept for later updates can go now,
            // unless a last delivery still has to carry it.
            store.erase_secret_if_delivered(user_id)?;
        }
        Ok(due)
    }
}

/// True when this target has never been sent anything for this user.
fn never_delivered(store: &Store<'_>, user_id: &str, target: &str) -> Result<bool, LedgerError> {
    Ok(store
        .delivery(user_id, target)?
        .is_none_or(|d| d.delivered_hash.is_none() && d.remote_id.is_none()))
}
