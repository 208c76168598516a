//! Kibo admin-user accounts as a mapping sees them: the field schema and the shaping a
//! payload gets before it is sent.

use serde_json::Value;

use crate::targets::{with_field, FieldKind, FieldSpec, Payload, TargetSchema};

/// Unique per tenant, so it is the natural key.
pub const EMAIL: &str = "emailAddress";

pub fn schema() -> TargetSchema {
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
            // Roles have their own endpoints; the account body does not set them.
            read_only("roles", FieldKind::ObjectArray),
        ],
        natural_key: &[EMAIL],
    }
}

/// The same account, deactivated.
pub fn disabled(payload: &Payload) -> Payload {
    with_field(payload, "isActive", Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::targets::object;

    #[test]
    fn writes_leave_out_what_kibo_assigns() {
        let payload = object(json!({"emailAddress": "a@example.com", "id": "abc",
                             "systemData": {"isLocked": false}, "roles": [], "isActive": true}));
        let body = schema().writable(&payload);
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
}
