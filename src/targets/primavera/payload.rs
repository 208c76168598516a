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

/// A user as Primavera holds it: the body of a create, without the licences, which
/// Primavera holds beside those given by hand and so cannot be compared value for value.
pub(crate) fn as_stored(schema: &TargetSchema, payload: &Payload) -> Payload {
    let mut stored = shape(schema, payload, None);
    stored.remove(PRODUCTS);
    stored
}

/// Whether a user holds a value in `field`, the bridge's mark.
pub(crate) fn carries_mark(user: &Payload, field: &str) -> bool {
    user.get(field)
        .and_then(serde_json::Value::as_str)
        .is_some_and(|text| !text.trim().is_empty())
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
    fn stored_form_leaves_out_licences_and_the_id() {
        let input = object(json!({
            "email": "a@example.com", "ldapGuid": "g-1", "userId": 7,
            "userProducts": [{"productName": "TASKS"}]
        }));
        assert_eq!(
            Value::Object(as_stored(&schema(), &input)),
            json!({"email": "a@example.com", "ldapGuid": "g-1"})
        );
        assert!(carries_mark(&input, "ldapGuid"));
        assert!(!carries_mark(&input, "title"));
    }

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
