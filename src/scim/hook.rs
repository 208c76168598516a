//! The seam between a SCIM write and what keeps other systems in step with it: the service
//! calls a `WriteHook` before a new user's write, inside every write's transaction and after
//! the commit. `fanout` implements it; the SCIM side knows nothing more of the targets.

use std::any::Any;
use std::collections::BTreeSet;

use secrecy::SecretString;
use serde_json::Value;

use crate::ledger::{LedgerError, Store};

/// What a SCIM write asks of whatever mirrors it elsewhere.
pub trait WriteHook: Send + Sync {
    /// Work on a new user that needs no database, done on the request's own thread before
    /// the write reaches the single writer thread. Handed back in `Change::User` only if the
    /// user was stored exactly as given here.
    fn prepare(&self, user: &UserView<'_>) -> Option<Staged>;

    /// Records `change` in the write's own transaction, so it commits or rolls back with it.
    fn record(
        &self,
        store: &Store<'_>,
        change: Change<'_>,
        now_ms: i64,
    ) -> Result<Woken, LedgerError>;

    /// The write that produced `woken` has committed.
    fn committed(&self, woken: Woken);
}

/// What a write did, as the hook sees it.
pub enum Change<'a> {
    /// A user created, replaced or patched, or recorded again after the mappings changed.
    User {
        user: UserView<'a>,
        password: Option<&'a SecretString>,
        staged: Option<Staged>,
    },
    /// A user deleted, as it was last stored.
    UserDeleted(UserView<'a>),
    /// A group created (no `before`), changed, or deleted (no `after`). Its members' own
    /// resources are read through `users`, as this transaction sees them.
    Group {
        before: Option<GroupView<'a>>,
        after: Option<GroupView<'a>>,
        users: &'a dyn Fn(&str) -> Result<Option<Value>, LedgerError>,
    },
}

/// A stored user, with the attributes decisions are made on read once.
#[derive(Debug, Clone, Copy)]
pub struct UserView<'a> {
    pub id: &'a str,
    /// Only an explicit `active: false` deactivates; a user without the attribute is active.
    pub active: bool,
    /// The whole resource, for rendering.
    pub resource: &'a Value,
}

impl<'a> UserView<'a> {
    /// `None` for a resource without an id, which nothing can be recorded for.
    pub(crate) fn of(resource: &'a Value) -> Option<UserView<'a>> {
        Some(UserView {
            id: resource.get("id")?.as_str()?,
            active: resource.get("active") != Some(&Value::Bool(false)),
            resource,
        })
    }
}

/// A stored group: its name, and the users (not nested groups) among its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView<'a> {
    pub display_name: Option<&'a str>,
    pub user_members: BTreeSet<&'a str>,
}

impl<'a> GroupView<'a> {
    pub(crate) fn of(resource: &'a Value) -> GroupView<'a> {
        let user_members = resource
            .get("members")
            .and_then(Value::as_array)
            .map(|members| {
                members
                    .iter()
                    .filter(|m| m.get("type").and_then(Value::as_str) != Some("Group"))
                    .filter_map(|m| m.get("value").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        GroupView {
            display_name: resource.get("displayName").and_then(Value::as_str),
            user_members,
        }
    }
}

/// What a hook's `prepare` produced, opaque to the SCIM side.
pub struct Staged(Box<dyn Any + Send>);

impl Staged {
    pub(crate) fn new<T: Any + Send>(work: T) -> Staged {
        Staged(Box::new(work))
    }

    /// The work, if it is of the type the hook put in.
    pub(crate) fn take<T: Any>(self) -> Option<T> {
        self.0.downcast().ok().map(|work| *work)
    }
}

/// Who has work once a write commits: the names of the targets, sorted, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Woken(Vec<String>);

impl Woken {
    pub(crate) fn new(mut targets: Vec<String>) -> Woken {
        targets.sort();
        targets.dedup();
        Woken(targets)
    }

    pub(crate) fn merge(&mut self, other: Woken) {
        self.0.extend(other.0);
        self.0.sort();
        self.0.dedup();
    }

    pub(crate) fn targets(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_explicit_false_makes_a_user_inactive() {
        let absent = json!({"id": "u1", "userName": "ana"});
        let inactive = json!({"id": "u1", "active": false});
        let odd = json!({"id": "u1", "active": "false"});
        assert!(UserView::of(&absent).is_some_and(|u| u.active && u.id == "u1"));
        assert!(UserView::of(&inactive).is_some_and(|u| !u.active));
        assert!(UserView::of(&odd).is_some_and(|u| u.active));
        assert!(UserView::of(&json!({"userName": "ana"})).is_none());
    }

    #[test]
    fn a_group_view_leaves_out_nested_groups() {
        let group = json!({
            "displayName": "Schedulers",
            "members": [
                {"value": "u1", "type": "User"},
                {"value": "g2", "type": "Group"},
                {"value": "u2"},
            ],
        });
        let view = GroupView::of(&group);
        assert_eq!(view.display_name, Some("Schedulers"));
        assert_eq!(view.user_members, BTreeSet::from(["u1", "u2"]));
    }

    #[test]
    fn staged_work_comes_back_only_as_its_own_type() {
        assert_eq!(Staged::new(7_u32).take::<u32>(), Some(7));
        assert_eq!(Staged::new(7_u32).take::<String>(), None);
    }

    #[test]
    fn woken_targets_are_sorted_and_named_once() {
        let mut woken = Woken::new(vec!["kibo".into(), "appgate".into(), "kibo".into()]);
        woken.merge(Woken::new(vec!["appgate".into(), "primavera".into()]));
        assert_eq!(woken.targets(), ["appgate", "kibo", "primavera"]);
    }
}
