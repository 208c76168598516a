//! Primavera Cloud users as a mapping sees them: the field schema (lengths and allowed
//! values from the API reference), and the shaping a payload gets before it is sent.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::targets::{with_field, FieldKind, FieldSpec, Payload, TargetSchema};

/// Unique per tenant, so it is the natural key.
pub const EMAIL: &str = "email";
/// The system-assigned id, which also names the user in a PUT body.
pub const USER_ID: &str = "userId";
pub const PRODUCTS: &str = "userProducts";
pub const STATUSES: &[&str] = &["ACTIVE", "INACTIVE"];
pub const LOCALES: &[&str] = &[
    "pt_BR", "nl", "en", "fr", "de", "it", "ja", "ko", "ru", "zh_CN", "es", "zh_TW",
];
pub const USER_TYPES: &[&str] = &[
    "USER",
    "COMPANY_RESTRICTED",
    "APPLICATION_ADMIN",
    "IDEA_SUBMITTER",
];
pub const PRODUCT_NAMES: &[&str] = &["IDEA", "PORTFOLIO", "PROGRESS", "SCHEDULE", "TASKS"];

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
pub fn shape(schema: &TargetSchema, payload: &Payload, user_id: Option<i64>) -> Payload {
    let mut body = schema.writable(payload);
    if let Some(id) = user_id {
        body.insert(USER_ID.to_owned(), json!(id));
    }
    body
}

/// Adds an `action: "DELETE"` entry for every licence the user holds that `body` no longer
/// lists: Primavera keeps a licence that is merely left out. A body without `userProducts`
/// does not manage licences and is left alone.
pub fn release_dropped_licences(body: &mut Payload, current: &Payload) {
    let product_name = |entry: &Value| {
        entry
            .get("productName")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let Some(Value::Array(listed)) = body.get(PRODUCTS) else {
        return;
    };
    let wanted: BTreeSet<String> = listed.iter().filter_map(product_name).collect();
    let releases: Vec<Value> = current
        .get(PRODUCTS)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|held| {
            let name = product_name(held)?;
            if wanted.contains(&name) {
                return None;
            }
            let mut release = json!({"productName": name, "action": "DELETE"});
            if let Some(id) = held.get("userProductId") {
                release["userProductId"] = id.clone();
            }
            Some(release)
        })
        .collect();
    if let Some(Value::Array(entries)) = body.get_mut(PRODUCTS) {
        entries.extend(releases);
    }
}

/// The same user, inactive.
pub fn disabled(payload: &Payload) -> Payload {
    with_field(payload, "status", json!("INACTIVE"))
}

#[cfg(test)]
mod tests {
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
    fn licences_left_out_are_released_explicitly() {
        let mut body = object(json!({"userProducts": [{"productName": "TASKS"}]}));
        let current = object(json!({"userProducts": [
            {"productName": "TASKS", "productId": 1, "userProductId": 10},
            {"productName": "SCHEDULE", "productId": 2, "userProductId": 11}
        ]}));
        release_dropped_licences(&mut body, &current);
        assert_eq!(
            body["userProducts"],
            json!([{"productName": "TASKS"},
                   {"productName": "SCHEDULE", "action": "DELETE", "userProductId": 11}])
        );
    }

    #[test]
    fn a_body_without_licences_does_not_manage_them() {
        let mut body = object(json!({"email": "a@example.com"}));
        let current = object(json!({"userProducts": [{"productName": "TASKS"}]}));
        release_dropped_licences(&mut body, &current);
        assert_eq!(Value::Object(body), json!({"email": "a@example.com"}));
    }

    #[test]
    fn disabling_sets_inactive() {
        let payload = object(json!({"status": "ACTIVE"}));
        assert_eq!(disabled(&payload)["status"], json!("INACTIVE"));
    }
}
