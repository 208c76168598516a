//! VikingCloud users as a mapping sees them: the field schema, the `userKey` that names a
//! user, and the shaping a payload gets before it is sent.

use serde_json::{json, Value};

use crate::targets::{
    required_str, with_field, FieldKind, FieldSpec, Payload, TargetError, TargetResult,
    TargetSchema,
};

/// The object that names a user: username plus authenticator.
pub const USER_KEY: &str = "userKey";

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
pub struct UserKey {
    pub authenticator: String,
    pub username: String,
}

impl UserKey {
    /// The key in `payload.userKey`, with `default_authenticator` when it names none.
    pub fn of(payload: &Payload, default_authenticator: &str) -> TargetResult<Self> {
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

    /// The id the bridge keeps for the account: `authenticator/username`. The service has no
    /// other handle on a user.
    pub fn id(&self) -> String {
        format!("{}/{}", self.authenticator, self.username)
    }

    pub fn from_id(id: &str) -> TargetResult<Self> {
        match id.split_once('/') {
            Some((authenticator, username))
                if !authenticator.is_empty() && !username.is_empty() =>
            {
                Ok(Self {
                    authenticator: authenticator.to_owned(),
                    username: username.to_owned(),
                })
            }
            _ => Err(TargetError::unusable(format!(
                "`{id}` is not an authenticator/username id"
            ))),
        }
    }
}

/// The body of a create or an update: the writable fields, the key the call is about, and
/// the `roles`/`privileges` arrays the service requires (empty when the mapping sets none).
pub fn shape(schema: &TargetSchema, payload: &Payload, key: &UserKey) -> Payload {
    let mut body = schema.writable(payload);
    body.insert(
        USER_KEY.to_owned(),
        json!({"username": key.username, "authenticator": key.authenticator}),
    );
    for list in ["roles", "privileges"] {
        body.entry(list).or_insert_with(|| Value::Array(Vec::new()));
    }
    body
}

/// The same user with login refused.
pub fn disabled(payload: &Payload) -> Payload {
    with_field(payload, "enabled", Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::object;

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
    fn shaping_sets_the_key_and_the_required_lists() {
        let payload = object(json!({
            "userKey": {"username": "someone-else"}, "email": "ana@example.com",
            "roles": [{"name": "admin"}], "id": "server-side", "createdInstant": "x"
        }));
        let key = UserKey::from_id("local/ana").unwrap();
        assert_eq!(
            Value::Object(shape(&schema(), &payload, &key)),
            json!({"userKey": {"username": "ana", "authenticator": "local"},
                   "email": "ana@example.com", "roles": [{"name": "admin"}], "privileges": []})
        );
    }
}
