//! VikingCloud users as a mapping sees them: the field schema, the `userKey` that names a
//! user, and the shaping a payload gets before it is sent.

use serde_json::{json, Value};

use crate::targets::{
    required_str, with_field, FieldKind, FieldSpec, Payload, TargetError, TargetResult,
    TargetSchema,
};

/// The object that names a user: username plus authenticator.
pub(crate) const USER_KEY: &str = "userKey";
const NOTES: &str = "notes";

pub fn schema() -> TargetSchema {
    let field = FieldSpec::optional;
    let write_only = |name| FieldSpec {
        write_only: true,
        ..field(name, FieldKind::String)
    };
    let read_only = |name| FieldSpec {
        read_only: true,
        ..field(name, FieldKind::String)
    };
    let strings = [
        "orgId",
        "email",
        "notes",
        "firstName",
        "lastName",
        "primaryPhone",
        "primaryPhoneCountryCode",
        "primaryPhoneExtension",
        "timeZone",
        "locale",
    ];
    let booleans = [
        "enabled",
        "locked",
        "forcePasswordChange",
        "expired",
        "credentialsExpired",
        "usingMfa",
        "isSsoUser",
    ];
    let mut fields = vec![FieldSpec {
        required_on_create: true,
        required_on_update: true,
        ..field(USER_KEY, FieldKind::Object)
    }];
    fields.extend(strings.map(|name| field(name, FieldKind::String)));
    fields.extend(booleans.map(|name| field(name, FieldKind::Boolean)));
    fields.extend(["password", "mfaSecret", "sharedSecret"].map(write_only));
    fields.extend(["roles", "privileges"].map(|name| field(name, FieldKind::ObjectArray)));
    fields.extend(
        [
            "id",
            "createdInstant",
            "lastUpdatedInstant",
            "createdBy",
            "lastUpdatedBy",
            "lastSuccessfulAuthAttempt",
            "lastFailedAuthAttempt",
        ]
        .map(read_only),
    );
    TargetSchema {
        fields,
        natural_key: &[USER_KEY],
    }
}

/// A user's name in the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserKey {
    pub authenticator: String,
    pub username: String,
}

impl UserKey {
    /// The key in `payload.userKey`, with `default_authenticator` when it names none.
    pub(crate) fn of(payload: &Payload, default_authenticator: &str) -> TargetResult<Self> {
        let key = payload
            .get(USER_KEY)
            .and_then(Value::as_object)
            .ok_or_else(|| TargetError::unusable("payload has no `userKey` object"))?;
        let authenticator = match key.get("authenticator") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => default_authenticator.to_owned(),
        };
        Ok(Self {
            authenticator,
            username: required_str(key, "username")?.to_owned(),
        })
    }

    /// The id the bridge keeps for the account: `authenticator/username`, with `%` and `/`
    /// escaped in the authenticator so the first `/` always separates the two. The service
    /// has no other handle on a user.
    pub(crate) fn id(&self) -> String {
        let authenticator = self.authenticator.replace('%', "%25").replace('/', "%2F");
        format!("{authenticator}/{}", self.username)
    }

    pub(crate) fn from_id(id: &str) -> TargetResult<Self> {
        match id.split_once('/') {
            Some((authenticator, username))
                if !authenticator.is_empty() && !username.is_empty() =>
            {
                Ok(Self {
                    authenticator: authenticator.replace("%2F", "/").replace("%25", "%"),
                    username: username.to_owned(),
                })
            }
            _ => Err(TargetError::unusable(format!(
                "`{id}` is not an authenticator/username id"
            ))),
        }
    }
}

/// The lists the service requires in every body and replaces with what a body sends.
pub(crate) const LISTS: [&str; 2] = ["roles", "privileges"];

/// Marks a list entry the user does not (or no longer) qualify for: the mapping's `revoke`,
/// the spelling Kibo roles and Primavera licences use too.
const REVOKE: (&str, &str) = ("action", "DELETE");

/// A mapped list split into the entries to hold and the entries to take away (their revoke
/// marker removed). An entry that is not an object, or whose `action` is not the marker, is
/// a mapping mistake and refuses the payload before anything is sent.
fn managed_entries(list: &str, mapped: &Value) -> TargetResult<(Vec<Value>, Vec<Value>)> {
    let Value::Array(entries) = mapped else {
        return Err(TargetError::unusable(format!(
            "`{list}` must be a list of entries"
        )));
    };
    let (key, marker) = REVOKE;
    let mut hold = Vec::new();
    let mut release = Vec::new();
    for entry in entries {
        let Value::Object(fields) = entry else {
            return Err(TargetError::unusable(format!(
                "`{list}` entry {entry} is not an object"
            )));
        };
        match fields.get(key) {
            None => hold.push(entry.clone()),
            Some(Value::String(text)) if text == marker => {
                let mut bare = fields.clone();
                bare.remove(key);
                release.push(Value::Object(bare));
            }
            Some(other) => {
                return Err(TargetError::unusable(format!(
                "`{list}` entry {entry}: `{key}` is {other}, but only \"{marker}\" is understood"
            )))
            }
        }
    }
    Ok((hold, release))
}

/// Whether a held entry is the one a mapped entry names: every field the mapping gives
/// matches (the service may add its own, such as an id).
fn names(mapped: &Value, held: &Value) -> bool {
    match (mapped, held) {
        (Value::Object(mapped), Value::Object(held)) => mapped
            .iter()
            .all(|(name, value)| held.get(name) == Some(value)),
        _ => false,
    }
}

/// The list an update sends: what the account holds, less the entries the mapping takes
/// away, plus the ones it grants that are missing. Entries the mapping does not name (given
/// by hand) stay.
pub(crate) fn merged_list(held: &[Value], hold: &[Value], release: &[Value]) -> Vec<Value> {
    let mut list: Vec<Value> = held
        .iter()
        .filter(|entry| !release.iter().any(|gone| names(gone, entry)))
        .cloned()
        .collect();
    for wanted in hold {
        if !list.iter().any(|entry| names(wanted, entry)) {
            list.push(wanted.clone());
        }
    }
    list
}

fn with_key(schema: &TargetSchema, payload: &Payload, key: &UserKey) -> Payload {
    let mut body = schema.writable(payload);
    body.insert(
        USER_KEY.to_owned(),
        json!({"username": key.username, "authenticator": key.authenticator}),
    );
    body
}

/// The body of a create: the mapped fields, the key, and the lists the service requires
/// (the entries granted, empty when the mapping sets none).
pub(crate) fn create_body(
    schema: &TargetSchema,
    payload: &Payload,
    key: &UserKey,
) -> TargetResult<Payload> {
    let mut body = with_key(schema, payload, key);
    for list in LISTS {
        let granted = match payload.get(list) {
            Some(mapped) => managed_entries(list, mapped)?.0,
            None => Vec::new(),
        };
        body.insert(list.to_owned(), Value::Array(granted));
    }
    Ok(body)
}

/// The body of an update of the account `current`: only the mapped fields and the key,
/// and each list as the account holds it with the mapping's entries added or taken away. A
/// list the mapping does not set is sent back unchanged, since the service would otherwise
/// replace it with the empty default.
pub(crate) fn update_body(
    schema: &TargetSchema,
    payload: &Payload,
    key: &UserKey,
    current: &Payload,
) -> TargetResult<Payload> {
    let mut body = with_key(schema, payload, key);
    for list in LISTS {
        let held = current
            .get(list)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let sent = match payload.get(list) {
            Some(mapped) => {
                let (hold, release) = managed_entries(list, mapped)?;
                merged_list(held, &hold, &release)
            }
            None => held.to_vec(),
        };
        body.insert(list.to_owned(), Value::Array(sent));
    }
    Ok(body)
}

/// Puts `note` in `notes` when the body sets none (an empty note puts nothing): the mark,
/// written only where it overwrites nobody's text.
pub(crate) fn with_mark(body: &mut Payload, note: &str) {
    let unset = body
        .get(NOTES)
        .is_none_or(|notes| notes.as_str().is_none_or(str::is_empty));
    if unset && !note.is_empty() {
        body.insert(NOTES.to_owned(), Value::String(note.to_owned()));
    }
}

/// Whether a user's notes hold `note`.
pub(crate) fn carries_mark(user: &Payload, note: &str) -> bool {
    !note.is_empty()
        && user
            .get(NOTES)
            .and_then(Value::as_str)
            .is_some_and(|notes| notes.contains(note))
}

/// A user as the service holds it: the mapped fields with the key as it is stored (the
/// default authenticator filled in), without the secrets (never returned) and the lists,
/// which the service holds with the entries given by hand and so cannot be compared value
/// for value.
pub(crate) fn as_stored(schema: &TargetSchema, payload: &Payload, authenticator: &str) -> Payload {
    let mut stored: Payload = schema
        .writable(payload)
        .into_iter()
        .filter(|(name, _)| {
            !LISTS.contains(&name.as_str())
                && !schema.field(name).is_some_and(|spec| spec.write_only)
        })
        .collect();
    if let Ok(key) = UserKey::of(payload, authenticator) {
        stored.insert(
            USER_KEY.to_owned(),
            json!({"username": key.username, "authenticator": key.authenticator}),
        );
    }
    stored
}

/// The same user with login refused.
pub(crate) fn disabled(payload: &Payload) -> Payload {
    with_field(payload, "enabled", Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::object;

    #[test]
    fn the_mark_note_fills_empty_notes_only() {
        let mut body = object(json!({"notes": ""}));
        with_mark(&mut body, "Provisioned by scim-bridge.");
        assert_eq!(body["notes"], json!("Provisioned by scim-bridge."));
        assert!(carries_mark(&body, "Provisioned by scim-bridge."));
        let mut noted = object(json!({"notes": "Contractor"}));
        with_mark(&mut noted, "Provisioned by scim-bridge.");
        assert_eq!(noted["notes"], json!("Contractor"));
        assert!(!carries_mark(&noted, "Provisioned by scim-bridge."));
        let mut unmarked = object(json!({}));
        with_mark(&mut unmarked, "");
        assert!(!unmarked.contains_key("notes"));
    }

    #[test]
    fn stored_form_fills_the_authenticator_and_leaves_out_secrets_and_lists() {
        let input = object(json!({
            "userKey": {"username": "ana"}, "email": "ana@example.com", "password": "p",
            "roles": [{"name": "ADMIN"}], "privileges": [], "enabled": true
        }));
        assert_eq!(
            Value::Object(as_stored(&schema(), &input, "local")),
            json!({"userKey": {"username": "ana", "authenticator": "local"},
                   "email": "ana@example.com", "enabled": true})
        );
    }

    #[test]
    fn the_key_defaults_its_authenticator_and_round_trips_as_an_id() {
        let payload = object(json!({"userKey": {"username": "ana@example.com"}}));
        let key = UserKey::of(&payload, "local").unwrap();
        assert_eq!(key.id(), "local/ana@example.com");
        assert_eq!(UserKey::from_id(&key.id()).unwrap(), key);
        assert!(UserKey::from_id("no-slash").is_err());
        assert!(UserKey::of(&object(json!({"userKey": {}})), "local").is_err());
    }

    #[test]
    fn an_authenticator_with_a_slash_survives_the_id() {
        let key = UserKey {
            authenticator: "corp/ad%x".into(),
            username: "ana/b".into(),
        };
        assert_eq!(key.id(), "corp%2Fad%25x/ana/b");
        assert_eq!(UserKey::from_id(&key.id()).unwrap(), key);
    }

    #[test]
    fn a_create_sends_the_key_the_granted_entries_and_empty_lists() {
        let payload = object(json!({
            "userKey": {"username": "someone-else"}, "email": "ana@example.com",
            "roles": [{"name": "ADMIN"}, {"name": "AUDITOR", "action": "DELETE"}],
            "id": "server-side", "createdInstant": "x"
        }));
        let key = UserKey::from_id("local/ana").unwrap();
        assert_eq!(
            Value::Object(create_body(&schema(), &payload, &key).unwrap()),
            json!({"userKey": {"username": "ana", "authenticator": "local"},
                   "email": "ana@example.com", "roles": [{"name": "ADMIN"}], "privileges": []})
        );
    }

    #[test]
    fn an_update_keeps_entries_the_mapping_does_not_name() {
        let payload = object(json!({
            "userKey": {"username": "ana"}, "firstName": "Ana",
            "roles": [{"name": "ANALYST"}, {"name": "ADMIN", "action": "DELETE"}]
        }));
        let current = object(json!({
            "roles": [{"name": "ADMIN", "id": 1}, {"name": "BILLING", "id": 7}],
            "privileges": [{"name": "EXPORT"}],
            "notes": "made by hand"
        }));
        let key = UserKey::from_id("local/ana").unwrap();
        assert_eq!(
            Value::Object(update_body(&schema(), &payload, &key, &current).unwrap()),
            json!({"userKey": {"username": "ana", "authenticator": "local"}, "firstName": "Ana",
                   "roles": [{"name": "BILLING", "id": 7}, {"name": "ANALYST"}],
                   "privileges": [{"name": "EXPORT"}]})
        );
    }

    #[test]
    fn list_entries_it_cannot_read_refuse_the_payload() {
        let key = UserKey::from_id("local/ana").unwrap();
        for roles in [
            json!(["ADMIN"]),
            json!([{"name": "A", "action": "REMOVE"}]),
            json!({}),
        ] {
            let payload = object(json!({ "roles": roles }));
            assert!(
                matches!(
                    create_body(&schema(), &payload, &key),
                    Err(TargetError::Unusable { .. })
                ),
                "{roles}"
            );
        }
    }
}
