//! The seam between a SCIM write and what keeps other systems in step with it: the service
//! calls a `WriteHook` inside every write's transaction and after the commit. `fanout`
//! implements it; the SCIM side knows nothing more of the targets.

use std::collections::BTreeSet;

use secrecy::SecretString;
use serde_json::Value;

use crate::ledger::{LedgerError, Store};

/// What a SCIM write asks of whatever mirrors it elsewhere.
pub trait WriteHook: Send + Sync {
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
        /// Created by this very write.
        created: bool,
    },
    /// A user deleted, as it was last stored.
    UserDeleted(UserView<'a>),
    /// A group created (no `before`), changed, or deleted (no `after`).
    Group {
        before: Option<GroupView<'a>>,
        after: Option<GroupView<'a>>,
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

/// Who has work once a write commits: the names of the targets, sorted, each once, and
/// whether users were marked for planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Woken {
    targets: Vec<String>,
    planning: bool,
}

impl Woken {
    pub(crate) fn new(mut targets: Vec<String>) -> Woken {
        targets.sort();
        targets.dedup();
        Woken {
            targets,
            planning: false,
        }
    }

    /// Work for the planner rather than for a target directly.
    pub(crate) fn planning() -> Woken {
        Woken {
            targets: Vec::new(),
            planning: true,
        }
    }

    pub(crate) fn targets(&self) -> &[String] {
        &self.targets
    }

    pub(crate) fn needs_planning(&self) -> bool {
        self.planning
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
    fn woken_targets_are_sorted_and_named_once() {
        let woken = Woken::new(vec!["kibo".into(), "appgate".into(), "kibo".into()]);
        assert_eq!(woken.targets(), ["appgate", "kibo"]);
        assert!(!woken.needs_planning());
        assert!(Woken::planning().needs_planning());
    }
}
