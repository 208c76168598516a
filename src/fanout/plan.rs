//! From a SCIM change to desired states: the SCIM service's write hook. Renders the users a
//! write touched through every target's mapping (scope included), records the result in the
//! ledger inside the same transaction as the SCIM write, and wakes the workers once it commits.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use secrecy::SecretString;

use crate::fanout::secrets::SecretBox;
use crate::fanout::Fanout;
use crate::ledger::{
    DeliveryOp, DeliveryState, Desired, LedgerError, SealedSecret, StateKey, Store,
};
use crate::mapping::{Event, MappingSet, Operation, ParsedPhones, Render, Scoping};
use crate::scim::hook::{Change, GroupView, Staged, UserView, Woken, WriteHook};

/// What happened to the user in SCIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserChange {
    /// Created or updated; `active` in the user decides between upsert and deactivation.
    Changed,
    Deleted,
}

/// A user rendered through every mapping of one mapping set, not yet recorded. Rendering
/// needs no database, so a new user is rendered before its write reaches the single writer
/// thread, on the request's own thread.
struct Rendered {
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
    /// A user created in this very write: nothing to read back.
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

    /// Records, for every target, the state it should reach for `user`. Returns the targets
    /// that now have something to deliver.
    fn plan(
        &self,
        store: &Store<'_>,
        user: &UserView<'_>,
        change: UserChange,
        password: Option<&SecretString>,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let rendered = self.render(user, change);
        self.record(store, user, rendered, History::Existing, password, now)
    }

    /// `plan` for a user created in this write, rendered beforehand from `user` as it was
    /// going to be stored. A mapping reload since then renders it again.
    fn plan_new(
        &self,
        store: &Store<'_>,
        user: &UserView<'_>,
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
        user: &UserView<'_>,
        rendered: Rendered,
        history: History,
        password: Option<&SecretString>,
        now: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let user_id = user.id;
        let Rendered {
            mappings,
            event,
            renders,
        } = rendered;
        let mut sealed: Option<SealedSecret> = None;
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

/// The fan-out as the SCIM service sees it: plans inside the write's transaction, wakes the
/// workers of the targets that got work once it commits.
pub(crate) struct FanoutHook {
    planner: Arc<Planner>,
    fanout: Arc<Fanout>,
}

impl FanoutHook {
    pub(crate) fn new(planner: Arc<Planner>, fanout: Arc<Fanout>) -> FanoutHook {
        FanoutHook { planner, fanout }
    }
}

impl WriteHook for FanoutHook {
    /// A new user belongs to no group yet, so it can be rendered for every target before
    /// its write, in parallel with other requests, rather than on the one writer thread.
    fn prepare(&self, user: &UserView<'_>) -> Option<Staged> {
        Some(Staged::new(self.planner.render(user, UserChange::Changed)))
    }

    fn record(
        &self,
        store: &Store<'_>,
        change: Change<'_>,
        now_ms: i64,
    ) -> Result<Woken, LedgerError> {
        let planner = &self.planner;
        let due = match change {
            Change::User {
                user,
                password,
                staged,
            } => match staged.and_then(Staged::take::<Rendered>) {
                Some(rendered) => planner.plan_new(store, &user, rendered, password, now_ms)?,
                None => planner.plan(store, &user, UserChange::Changed, password, now_ms)?,
            },
            Change::UserDeleted(user) => {
                planner.plan(store, &user, UserChange::Deleted, None, now_ms)?
            }
            Change::Group {
                before,
                after,
                users,
            } => {
                let mut due = Vec::new();
                for member in affected_members(before.as_ref(), after.as_ref()) {
                    if let Some(resource) = users(member)? {
                        if let Some(user) = UserView::of(&resource) {
                            due.extend(planner.plan(
                                store,
                                &user,
                                UserChange::Changed,
                                None,
                                now_ms,
                            )?);
                        }
                    }
                }
                due
            }
        };
        Ok(Woken::new(due))
    }

    fn committed(&self, woken: Woken) {
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
