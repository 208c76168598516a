//! Appgate local users as a mapping sees them: the field schema, and the shaping a payload
//! gets before it is sent (Appgate refuses empty strings, and a PUT replaces everything).

use serde_json::Value;

use crate::targets::{with_field, FieldKind, FieldSpec, Payload, TargetSchema};

/// The field that names a local user; unique per controller, so it is the natural key.
pub(crate) const NAME: &str = "name";
pub(crate) const TAGS: &str = "tags";

pub fn schema() -> TargetSchema {
    let field = FieldSpec::optional;
    let required = |name| FieldSpec {
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
            required(NAME),
            required("firstName"),
            required("lastName"),
            FieldSpec {
                // Optional on create too: the reference marks name, firstName and lastName
                // "Required" and not the password (seed 001); omitted on update, the old
                // password stays (seed 000).
                write_only: true,
                ..field("password", FieldKind::String)
            },
            field("email", FieldKind::String),
            field("phone", FieldKind::String),
            field("notes", FieldKind::String),
            field(TAGS, FieldKind::StringArray),
            field("disabled", FieldKind::Boolean),
            read_only("id", FieldKind::String),
            read_only("created", FieldKind::String),
            read_only("updated", FieldKind::String),
            read_only("failedLoginAttempts", FieldKind::Integer),
            read_only("lockStart", FieldKind::String),
        ],
        natural_key: &[NAME],
    }
}

/// The body of a create or a PUT. Appgate answers 422 to an empty string and reads an absent
/// field as "clear it" on PUT, so empty strings and nulls are left out; that includes an
/// empty password, which a PUT then keeps as it was.
pub(crate) fn shape(schema: &TargetSchema, payload: &Payload) -> Payload {
    schema
        .writable(payload)
        .into_iter()
        .filter_map(|(name, value)| {
            let value = match value {
                Value::Null => return None,
                Value::String(text) if text.is_empty() => return None,
                Value::Array(items) => Value::Array(
                    items
                        .into_iter()
                        .filter(|item| item.as_str() != Some(""))
                        .collect(),
                ),
                other => other,
            };
            Some((name, value))
        })
        .collect()
}

/// Puts the tags `current` holds that `body` lacks before the body's own: the mapping
/// manages the tags it names, and a tag given in Appgate stays.
pub(crate) fn keep_held_tags(body: &mut Payload, current: &Payload) {
    let Some(Value::Array(mapped)) = body.get(TAGS) else {
        return;
    };
    let mut tags: Vec<Value> = current
        .get(TAGS)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|tag| tag.as_str().is_some_and(|text| !text.is_empty()))
        .cloned()
        .collect();
    for tag in mapped {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    body.insert(TAGS.to_owned(), Value::Array(tags));
}

/// Adds `mark` to the body's tags when it is not there yet (an empty mark adds nothing).
pub(crate) fn with_mark(body: &mut Payload, mark: &str) {
    if mark.is_empty() {
        return;
    }
    let tags = body.entry(TAGS).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(tags) = tags {
        if !tags.iter().any(|tag| tag.as_str() == Some(mark)) {
            tags.push(Value::String(mark.to_owned()));
        }
    }
}

/// Whether a user's tags hold `mark`.
pub(crate) fn carries_mark(user: &Payload, mark: &str) -> bool {
    !mark.is_empty()
        && user
            .get(TAGS)
            .and_then(Value::as_array)
            .is_some_and(|tags| tags.iter().any(|tag| tag.as_str() == Some(mark)))
}

/// A payload as the controller holds it: the body's shaping (empty strings and nulls left
/// out), without what no read returns (the password). Tags are left out too: the
/// controller holds those given by hand beside the mapping's, so they cannot be compared
/// value for value.
pub(crate) fn as_stored(schema: &TargetSchema, payload: &Payload) -> Payload {
    shape(schema, payload)
        .into_iter()
        .filter(|(name, _)| name != TAGS && !schema.field(name).is_some_and(|spec| spec.write_only))
        .collect()
}

/// The same account with login refused.
pub(crate) fn disabled(payload: &Payload) -> Payload {
    with_field(payload, "disabled", Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::targets::object;

    #[test]
    fn shaping_drops_empty_strings_nulls_and_read_only_fields() {
        let input = object(json!({
            "name": "ana", "firstName": "Ana", "lastName": "Lima",
            "email": "", "phone": null, "password": "",
            "tags": ["staff", ""], "disabled": false,
            "id": "4c07bc67-57ea-42dd-b702-c2d6c45419fc", "created": "2024-01-01T00:00:00Z"
        }));
        let shaped = shape(&schema(), &input);
        assert_eq!(
            Value::Object(shaped),
            json!({"name": "ana", "firstName": "Ana", "lastName": "Lima",
                   "tags": ["staff"], "disabled": false})
        );
    }

    #[test]
    fn a_given_password_is_sent() {
        let input = object(json!({"name": "ana", "password": "s3cret!"}));
        assert_eq!(shape(&schema(), &input)["password"], json!("s3cret!"));
    }

    #[test]
    fn tags_held_are_kept_beside_the_mappings() {
        let mut body = object(json!({"name": "ana", "tags": ["scim-bridge"]}));
        let current = object(json!({"tags": ["vpn-admins", "scim-bridge"]}));
        keep_held_tags(&mut body, &current);
        assert_eq!(body["tags"], json!(["vpn-admins", "scim-bridge"]));
        let mut untagged = object(json!({"name": "ana"}));
        keep_held_tags(&mut untagged, &current);
        assert!(!untagged.contains_key("tags"));
    }

    #[test]
    fn the_mark_is_added_once_and_read_back() {
        let mut body = object(json!({"name": "ana", "tags": ["staff"]}));
        with_mark(&mut body, "scim-bridge");
        with_mark(&mut body, "scim-bridge");
        assert_eq!(body["tags"], json!(["staff", "scim-bridge"]));
        assert!(carries_mark(&body, "scim-bridge"));
        let mut untagged = object(json!({"name": "ana"}));
        with_mark(&mut untagged, "scim-bridge");
        assert_eq!(untagged["tags"], json!(["scim-bridge"]));
        let mut unmarked = object(json!({"name": "ana"}));
        with_mark(&mut unmarked, "");
        assert!(!unmarked.contains_key("tags"));
        assert!(!carries_mark(
            &object(json!({"tags": ["staff"]})),
            "scim-bridge"
        ));
        assert!(!carries_mark(&body, ""), "an empty mark marks nothing");
    }

    #[test]
    fn stored_form_drops_what_is_not_sent_or_not_returned() {
        let input = object(json!({
            "name": "ana", "firstName": "Ana", "lastName": "Lima", "email": "",
            "phone": null, "password": "s3cret!", "tags": ["scim-bridge"], "disabled": false
        }));
        assert_eq!(
            Value::Object(as_stored(&schema(), &input)),
            json!({"name": "ana", "firstName": "Ana", "lastName": "Lima", "disabled": false})
        );
    }

    #[test]
    fn disabling_sets_the_flag_and_keeps_the_rest() {
        let input = object(json!({"name": "ana", "disabled": false, "notes": "x"}));
        assert_eq!(
            Value::Object(disabled(&input)),
            json!({"name": "ana", "disabled": true, "notes": "x"})
        );
    }
}
