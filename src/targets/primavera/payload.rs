//! Primavera Cloud users as a mapping sees them: the field schema (lengths and allowed
//! values from the API reference), and the shaping a payload gets before it is sent.

use serde_json::json;

use crate::targets::{with_field, FieldKind, FieldSpec, Payload, TargetSchema};

/// Unique per tenant, so it is the natural key.
pub(crate) const EMAIL: &str = "email";
/// The system-assigned id, which also names the user in a PUT body.
pub(crate) const USER_ID: &str = "userId";
pub(crate) const PRODUCTS: &str = "userProducts";
pub(crate) const STATUSES: &[&str] = &["ACTIVE", "INACTIVE"];
pub(crate) const LOCALES: &[&str] = &[
    "pt_BR", "nl", "en", "fr", "de", "it", "ja", "ko", "ru", "zh_CN", "es", "zh_TW",
];
pub(crate) const USER_TYPES: &[&str] = &[
    "USER",
    "COMPANY_RESTRICTED",
    "APPLICATION_ADMIN",
    "IDEA_SUBMITTER",
];

pub fn schema() -> TargetSchema {
    let field = |name, max_len| FieldSpec {
        max_len,
        ..FieldSpec::optional(name, FieldKind::String)
    };
    let required = |name, max_len| FieldSpec {
        required_on_create: true,
        required_on_update: true,
        ..field(name, Some(max_len))
    };
    let one_of = |name, max_len, allowed| FieldSpec {
        allowed,
        ..field(name, max_len)
    };
    TargetSchema {
        fields: vec![
            required(EMAIL, 320),
            required("firstName", 100),
            required("lastName", 100),
            field("ldapGuid", Some(255)),
            field("mobile", Some(100)),
            field("phone", Some(100)),
            field("title", Some(25)),
            one_of("status", Some(20), STATUSES),
            one_of("userLocale", None, LOCALES),
            one_of("userType", None, USER_TYPES),
            FieldSpec {
                kind: FieldKind::ObjectArray,
                ..field(PRODUCTS, None)
            },
            FieldSpec {
                kind: FieldKind::Integer,
                read_only: true,
                ..field(USER_ID, None)
            },
        ],
        natural_key: &[EMAIL],
    }
}

/// The body of a create, or with `user_id` of a PUT, which names its user in the body.
pub(crate) fn shape(schema: &TargetSchema, payload: &Payload, user_id: Option<i64>) -> Payload {
    let mut body = schema.writable(payload);
    if let Some(id) = user_id {
        body.insert(USER_ID.to_owned(), json!(id));
    }
    body
}

/// The same user, inactive.
pub(crate) fn disabled(payload: &Payload) -> Payload {
    with_field(payload, "status", json!("INACTIVE"))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::targets::object;

    #[test]
    fn a_put_names_its_user_in_the_body() {
        let payload = object(json!({"email": "a@example.com", "userId": 99}));
        assert_eq!(
            Value::Object(shape(&schema(), &payload, Some(7))),
            json!({"email": "a@example.com", "userId": 7})
        );
        assert_eq!(
            Value::Object(shape(&schema(), &payload, None)),
            json!({"email": "a@example.com"})
        );
    }

    #[test]
    fn disabling_sets_inactive() {
        let payload = object(json!({"status": "ACTIVE"}));
        assert_eq!(disabled(&payload)["status"], json!("INACTIVE"));
    }
}
