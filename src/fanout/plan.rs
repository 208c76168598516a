//! From a SCIM change to desired states: the SCIM service's write hook, and the rendering and
//! recording the planner runs. A user written in SCIM is only marked in the write's own
//! transaction; the planner (`planner.rs`) later renders it through every target's mapping
//! (scope included) and records the result. A deleted user is recorded in the delete's own
//! transaction, from the resource as it was last stored.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::fanout::secrets::SecretBox;
use crate::fanout::Fanout;
use crate::ledger::{DeliveryOp, DeliveryState, Desired, LedgerError, Mark, StateKey, Store};
use crate::mapping::{Event, MappingSet, Operation, ParsedPhones, Render, Scoping};
use crate::scim::hook::{Change, GroupView, UserView, Woken, WriteHook};

/// What happened to the user in SCIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserChange {
    /// Created or updated; `active` in the user decides between upsert and deactivation.
    Changed,
    Deleted,
}

/// A user rendered through every mapping of one mapping set, not yet recorded. Rendering
/// needs no database, so the planner does it on a thread of its own, not on the writer.
pub(super) struct Rendered {
    mappings: Arc<MappingSet>,
    event: Event,
    /// Per mapping, in the set's order.
    renders: Vec<ForTarget>,
}

/// One target's part of a `Rendered`.
enum ForTarget {
    InScope(Render),
    /// Rendered only once the ledger says the target may hold an account to let go of: most
    /// users of a scoped target never had one there.
    OutOfScope,
}

/// Whether the ledger may already hold rows for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum History {
    /// A user never planned before: nothing to read back.
    New,
    Existing,
}

/// Holds the mappings in force (swapped whole on reload) and the password sealer.
pub(crate) struct Planner {
    mappings: RwLock<Arc<MappingSet>>,
    secrets: Arc<SecretBox>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Planner")
    }
}

impl Planner {
    pub(crate) fn new(mappings: MappingSet, secrets: Arc<SecretBox>) -> Planner {
        Planner {
            mappings: RwLock::new(Arc::new(mappings)),
            secrets,
        }
    }

    pub(crate) fn mappings(&self) -> Arc<MappingSet> {
        Arc::clone(&self.mappings.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn replace_mappings(&self, mappings: MappingSet) {
        *self.mappings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mappings);
    }

    /// Renders `user` through every mapping in force whose scope takes them.
    fn render(&self, user: &UserView<'_>, change: UserChange) -> Rendered {
        let event = match change {
            UserChange::Deleted => Event::Deleted,
            UserChange::Changed if !user.active => Event::Deactivated,
            UserChange::Changed => Event::Upsert,
        };
        let mappings = self.mappings();
        let mut phones = ParsedPhones::default();
        let renders = mappings
            .iter()
            .map(|m| match m.scoping(user.resource) {
                Scoping::In => ForTarget::InScope(m.render_scoped(
                    user.resource,
                    event,
                    Scoping::In,
                    &mut phones,
                )),
                Scoping::Out => ForTarget::OutOfScope,
            })
            .collect();
        Rendered {
            mappings,
            event,
            renders,
        }
    }

    /// `render` for a user created, replaced or patched.
    pub(super) fn render_changed(&self, user: &UserView<'_>) -> Rendered {
        self.render(user, UserChange::Changed)
    }

    /// Records, for every target, the state it should reach for `user`, as rendered while
    /// `mark` was read. Returns the targets that now have something to deliver.
    pub(super) fn plan_marked(
        &self,
        store: &Store<'_>,
        user: &UserView<'_>,
        rendered: Rendered,
        mark: &Mark,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let history = if mark.new {
            History::New
        } else {
            History::Existing
        };
        let fresh = mark.fresh_secret.as_deref();
        self.record(store, user, rendered, history, fresh, now)
    }

    /// Records, for every target, what deleting `user` asks of it.
    fn plan_deleted(
        &self,
        store: &Store<'_>,
        user: &UserView<'_>,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let rendered = self.render(user, UserChange::Deleted);
        self.record(store, user, rendered, History::Existing, None, now)
    }

    /// `fresh_secret`: the id of a password given in SCIM since the user was last planned,
    /// sealed and stored in that write's transaction.
    fn record(
        &self,
        store: &Store<'_>,
        user: &UserView<'_>,
        rendered: Rendered,
        history: History,
        fresh_secret: Option<&str>,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let user_id = user.id;
        let Rendered {
            mappings,
            event,
            renders,
        } = rendered;
        let mut due = Vec::new();
        let mut phones = ParsedPhones::default();
        for (mapping, for_target) in mappings.iter().zip(renders) {
            let target = mapping.target();
            let render = match for_target {
                ForTarget::InScope(render) => render,
                // Out of scope, a target is only told to let go of an account the bridge may
                // have given it; a user it never had leaves nothing to deliver.
                ForTarget::OutOfScope => {
                    if history == History::New || !may_hold_account(store, user_id, target)? {
                        continue;
                    }
                    mapping.render_scoped(user.resource, event, Scoping::Out, &mut phones)
                }
            };
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
                    let held = if fresh_secret.is_none() && (needs_always || first_delivery) {
                        store.secret(user_id)?.map(|s| s.secret_id)
                    } else {
                        None
                    };
                    let fresh = password_field.as_ref().and(fresh_secret).map(str::to_owned);
                    let secret_id = fresh.clone().or(held);
                    // Only a newly given password makes the state differ from what the
                    // target holds.
                    let operation = match operation {
                        Operation::Upsert => DeliveryOp::Upsert,
                        Operation::Disable => DeliveryOp::Disable,
                        Operation::Delete => DeliveryOp::Delete,
                    };
                    // The same payload deleted is not the same state as that payload kept.
                    let hash = StateKey::new(operation, &hash, fresh.as_deref());
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

/// The fan-out as the SCIM service sees it: marks the users a write changed for the
/// planner, records deletions, and once the write commits wakes the planner or the workers.
pub(crate) struct FanoutHook {
    planner: Arc<Planner>,
    fanout: Arc<Fanout>,
    planning: Arc<Notify>,
}

impl FanoutHook {
    /// `planning` wakes the planner's task.
    pub(crate) fn new(
        planner: Arc<Planner>,
        fanout: Arc<Fanout>,
        planning: Arc<Notify>,
    ) -> FanoutHook {
        FanoutHook {
            planner,
            fanout,
            planning,
        }
    }
}

impl WriteHook for FanoutHook {
    fn record(
        &self,
        store: &Store<'_>,
        change: Change<'_>,
        now_ms: i64,
    ) -> Result<Woken, LedgerError> {
        match change {
            Change::User {
                user,
                password,
                created,
            } => {
                // Sealed here, in the write's transaction: the plain password lives no
                // longer than the request, and the mark names what to hand the targets.
                let fresh = match password {
                    Some(password) => {
                        let secret = self.planner.secrets.seal(user.id, password);
                        store.store_secret(user.id, &secret, now_ms)?;
                        Some(secret.secret_id)
                    }
                    None => None,
                };
                store.mark_for_planning(user.id, fresh.as_deref(), created)?;
                Ok(Woken::planning())
            }
            Change::UserDeleted(user) => match store.drop_mark(user.id)? {
                // Never planned: no target was ever told of the user, so none has anything
                // to let go of.
                Some(mark) if mark.new => {
                    store.erase_secret_if_delivered(user.id)?;
                    Ok(Woken::default())
                }
                _ => Ok(Woken::new(self.planner.plan_deleted(store, &user, now_ms)?)),
            },
            Change::Group { before, after } => {
                let affected = affected_members(before.as_ref(), after.as_ref());
                if affected.is_empty() {
                    return Ok(Woken::default());
                }
                // Members that are not users (nested groups without a type) are dropped by
                // the planner, which finds no user by that id.
                for member in affected {
                    store.mark_for_planning(member, None, false)?;
                }
                Ok(Woken::planning())
            }
        }
    }

    fn committed(&self, woken: Woken) {
        if woken.needs_planning() {
            self.planning.notify_one();
        }
        if !woken.targets().is_empty() {
            self.fanout.wake(woken.targets());
        }
    }
}

/// The users whose rendering a group change can alter. Only users whose membership changed
/// see a different group list, unless the group itself was renamed, created or deleted
/// (mappings match groups by name).
fn affected_members<'a>(
    before: Option<&GroupView<'a>>,
    after: Option<&GroupView<'a>>,
) -> BTreeSet<&'a str> {
    let none = BTreeSet::new();
    let was = before.map_or(&none, |g| &g.user_members);
    let is = after.map_or(&none, |g| &g.user_members);
    let renamed = match (before, after) {
        (Some(b), Some(a)) => b.display_name != a.display_name,
        _ => true,
    };
    if renamed {
        was.union(is).copied().collect()
    } else {
        was.symmetric_difference(is).copied().collect()
    }
}

/// Whether the target may hold an account the bridge planned for this user: something was
/// planned for it, and it has not since confirmed a delete.
fn may_hold_account(store: &Store<'_>, user_id: &str, target: &str) -> Result<bool, LedgerError> {
    Ok(store.delivery(user_id, target)?.is_some_and(|d| {
        !(d.desired.operation == DeliveryOp::Delete && d.state == DeliveryState::Delivered)
    }))
}

/// True when this target has never been sent anything for this user.
fn never_delivered(store: &Store<'_>, user_id: &str, target: &str) -> Result<bool, LedgerError> {
    Ok(store
        .delivery(user_id, target)?
        .is_none_or(|d| d.delivered_hash.is_none() && d.remote_id.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group<'a>(name: &'a str, members: &[&'a str]) -> GroupView<'a> {
        GroupView {
            display_name: Some(name),
            user_members: members.iter().copied().collect(),
        }
    }

    #[test]
    fn a_membership_change_touches_only_the_users_who_joined_or_left() {
        let before = group("Schedulers", &["u1", "u2"]);
        let after = group("Schedulers", &["u2", "u3"]);
        assert_eq!(
            affected_members(Some(&before), Some(&after)),
            BTreeSet::from(["u1", "u3"])
        );
        assert!(affected_members(Some(&before), Some(&before)).is_empty());
    }

    #[test]
    fn a_rename_touches_every_member_old_and_new() {
        let before = group("Schedulers", &["u1", "u2"]);
        let after = group("Planners", &["u2", "u3"]);
        assert_eq!(
            affected_members(Some(&before), Some(&after)),
            BTreeSet::from(["u1", "u2", "u3"])
        );
    }

    #[test]
    fn creating_or_deleting_a_group_touches_all_its_members() {
        let members = group("Schedulers", &["u1", "u2"]);
        let all = BTreeSet::from(["u1", "u2"]);
        assert_eq!(affected_members(None, Some(&members)), all);
        assert_eq!(affected_members(Some(&members), None), all);
    }
}
