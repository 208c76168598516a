//! Kibo admin-user accounts as a mapping sees them: the field schema, the shaping a payload
//! gets before it is sent, and the role changes that bring an account to the mapping's roles.

use serde_json::Value;

use crate::targets::{with_field, FieldKind, FieldSpec, Payload, TargetError, TargetSchema};

/// Unique per tenant, so it is the natural key.
pub(crate) const EMAIL: &str = "emailAddress";

/// The account's admin roles: entries `{ "roleId": 2 }`, as Kibo reports them on GET.
pub(crate) const ROLES: &str = "roles";

/// The key of a role entry that names the role.
const ROLE_ID: &str = "roleId";

/// Marks a role entry the user does not (or no longer) qualify for: the mapping's `revoke`,
/// the same marker Primavera takes for licences, so one spelling serves every mapping file.
const REVOKE: (&str, &str) = ("action", "DELETE");

/// The schema as Kibo's reference states it: the password required on every PUT.
pub fn schema() -> TargetSchema {
    schema_with(true)
}

/// The schema, with the password required on update or not (`password_required_on_update`).
pub(crate) fn schema_with(password_required_on_update: bool) -> TargetSchema {
    let field = FieldSpec::optional;
    // Kibo wants these on every PUT as well as on create.
    let always = |name| FieldSpec {
        required_on_create: true,
        required_on_update: true,
        ..field(name, FieldKind::String)
    };
    let read_only = |name, kind| FieldSpec {
        read_only: true,
        ..field(name, kind)
    };
    TargetSchema {
        fields: vec![
            always(EMAIL),
            always("firstName"),
            always("lastName"),
            FieldSpec {
                write_only: true,
                required_on_update: password_required_on_update,
                ..always("password")
            },
            field("userName", FieldKind::String),
            field("phoneNumber", FieldKind::String),
            field("externalId", FieldKind::String),
            field("localeCode", FieldKind::String),
            field("identityProviderId", FieldKind::String),
            field("optInToEmail", FieldKind::Boolean),
            field("optInToTextMessage", FieldKind::Boolean),
            field("isActive", FieldKind::Boolean),
            read_only("id", FieldKind::String),
            read_only("systemData", FieldKind::Object),
            // Set through Kibo's own role calls after the account is written, never in the
            // account body (see `account_body`).
            field(ROLES, FieldKind::ObjectArray),
        ],
        natural_key: &[EMAIL],
    }
}

/// An account as Kibo holds it: the body, without the password (never returned) and the
/// roles, which Kibo holds beside those given by hand and so cannot be compared value for
/// value.
pub(crate) fn as_stored(schema: &TargetSchema, payload: &Payload) -> Payload {
    account_body(schema, payload)
        .into_iter()
        .filter(|(name, _)| !schema.field(name).is_some_and(|spec| spec.write_only))
        .collect()
}

/// Whether an account holds a value in `field`, the bridge's mark.
pub(crate) fn carries_mark(account: &Payload, field: &str) -> bool {
    account
        .get(field)
        .and_then(Value::as_str)
        .is_some_and(|text| !text.trim().is_empty())
}

/// The same account, deactivated.
pub(crate) fn disabled(payload: &Payload) -> Payload {
    with_field(payload, "isActive", Value::Bool(false))
}

/// The body of an account POST or PUT: what Kibo assigns is left out, and so are the roles,
/// which Kibo takes only through `/accounts/{id}/roles/{roleId}`.
pub(crate) fn account_body(schema: &TargetSchema, payload: &Payload) -> Payload {
    let mut body = schema.writable(payload);
    body.remove(ROLES);
    body
}

/// The roles a payload asks for: those to hold, and those the mapping manages but the user
/// does not qualify for. A role in neither list is nobody's business here: a role assigned by
/// hand in Kibo for another purpose stays.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RoleGoal {
    pub hold: Vec<i64>,
    pub release: Vec<i64>,
}

/// The calls that bring an account to a `RoleGoal`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RoleChanges {
    pub assign: Vec<i64>,
    pub remove: Vec<i64>,
}

impl RoleChanges {
    pub(crate) fn is_empty(&self) -> bool {
        self.assign.is_empty() && self.remove.is_empty()
    }
}

/// The payload's roles; `None` when the mapping sets no `roles` field, in which case the
/// account's roles are left alone. An entry without an integer `roleId` is a mapping mistake
/// and refuses the payload before anything is sent.
pub(crate) fn role_goal(payload: &Payload) -> Result<Option<RoleGoal>, TargetError> {
    let Some(roles) = payload.get(ROLES) else {
        return Ok(None);
    };
    let Value::Array(entries) = roles else {
        return Err(TargetError::unusable(
            "`roles` must be a list of role entries",
        ));
    };
    let mut goal = RoleGoal::default();
    for entry in entries {
        let id = entry.get(ROLE_ID).and_then(Value::as_i64).ok_or_else(|| {
            TargetError::unusable(format!(
                "role entry {entry} has no integer `{ROLE_ID}` (write entry = {{ {ROLE_ID} = 2 }})"
            ))
        })?;
        let (key, marker) = REVOKE;
        let list = match entry.get(key) {
            None => &mut goal.hold,
            Some(Value::String(text)) if text == marker => &mut goal.release,
            Some(other) => {
                return Err(TargetError::unusable(format!(
                    "role entry {entry}: `{key}` is {other}, but only \"{marker}\" is understood"
                )))
            }
        };
        if !list.contains(&id) {
            list.push(id);
        }
    }
    // A role both granted and released (two grants naming it) is held: a grant wins.
    goal.release.retain(|id| !goal.hold.contains(id));
    Ok(Some(goal))
}

/// The role ids an account holds, from Kibo's `roles[].roleId`.
pub(crate) fn held_roles(account: &Payload) -> Vec<i64> {
    account
        .get(ROLES)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|role| role.get(ROLE_ID).and_then(Value::as_i64))
        .collect()
}

/// Assign what is wanted and missing; remove what is held but released.
pub(crate) fn role_changes(goal: &RoleGoal, held: &[i64]) -> RoleChanges {
    RoleChanges {
        assign: goal
            .hold
            .iter()
            .copied()
            .filter(|id| !held.contains(id))
            .collect(),
        remove: goal
            .release
            .iter()
            .copied()
            .filter(|id| held.contains(id))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::targets::object;

    #[test]
    fn stored_form_leaves_out_the_password_roles_and_what_kibo_assigns() {
        let input = object(json!({
            "emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima",
            "password": "p", "externalId": "e-1", "isActive": true,
            "roles": [{"roleId": 2}], "id": "abc"
        }));
        assert_eq!(
            Value::Object(as_stored(&schema(), &input)),
            json!({"emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima",
                   "externalId": "e-1", "isActive": true})
        );
    }

    #[test]
    fn the_mark_is_a_value_in_the_marking_field() {
        assert!(carries_mark(
            &object(json!({"externalId": "e-1"})),
            "externalId"
        ));
        assert!(!carries_mark(
            &object(json!({"externalId": " "})),
            "externalId"
        ));
        assert!(!carries_mark(
            &object(json!({"externalId": null})),
            "externalId"
        ));
        assert!(!carries_mark(
            &object(json!({"userName": "ana"})),
            "externalId"
        ));
    }

    #[test]
    fn writes_leave_out_what_kibo_assigns_and_the_roles() {
        let payload = object(json!({"emailAddress": "a@example.com", "id": "abc",
                             "systemData": {"isLocked": false}, "roles": [{"roleId": 2}],
                             "isActive": true}));
        let body = account_body(&schema(), &payload);
        assert_eq!(
            Value::Object(body),
            json!({"emailAddress": "a@example.com", "isActive": true})
        );
    }

    #[test]
    fn disabling_deactivates() {
        let payload = object(json!({"emailAddress": "a@example.com", "isActive": true}));
        assert_eq!(disabled(&payload)["isActive"], json!(false));
    }

    #[test]
    fn goal_splits_held_and_released_roles() {
        let payload = object(json!({"roles": [
            {"roleId": 2}, {"roleId": 3, "action": "DELETE"}, {"roleId": 2},
            {"roleId": 4, "action": "DELETE"}, {"roleId": 4},
        ]}));
        assert_eq!(
            role_goal(&payload),
            Ok(Some(RoleGoal {
                hold: vec![2, 4],
                release: vec![3],
            }))
        );
        assert_eq!(role_goal(&object(json!({}))), Ok(None));
    }

    #[test]
    fn goal_refuses_entries_it_cannot_read() {
        for roles in [
            json!([{"roleId": "2"}]),
            json!([{"name": "Admin"}]),
            json!([{"roleId": 2, "action": "REMOVE"}]),
            json!({"roleId": 2}),
        ] {
            let payload = object(json!({ "roles": roles }));
            assert!(
                matches!(role_goal(&payload), Err(TargetError::Unusable { .. })),
                "{roles}"
            );
        }
    }

    #[test]
    fn changes_touch_only_managed_roles() {
        let goal = RoleGoal {
            hold: vec![2, 3],
            release: vec![5, 6],
        };
        // 1 was assigned by hand and is not in the mapping: it stays.
        let held = [1, 3, 5];
        assert_eq!(
            role_changes(&goal, &held),
            RoleChanges {
                assign: vec![2],
                remove: vec![5],
            }
        );
        assert!(role_changes(&goal, &[2, 3, 1]).is_empty());
    }
}
