//! Resources as stored and answered: validation and canonical form of a User or Group on
//! POST, PUT and after PATCH, and the case-insensitive lookups the later steps share.

use serde_json::{Map, Value};

use crate::scim::error::ScimError;
use crate::scim::filter::{as_bool, instant};
use crate::scim::path::{parse_attr_path, MAX_PATH_LENGTH};
use crate::scim::schema::{
    AttrType, AttributeDef, Mutability, Resolved, ResourceSchema, Uniqueness,
};

/// The longest string value accepted, in bytes. The longest real values are base64
/// certificates and photo URLs of a few KiB; nothing longer is a value a target takes, and
/// every value is stored, rendered and sent once per target.
pub const MAX_STRING_BYTES: usize = 16 * 1024;

/// A resource ready to store, and the password it carried, which is never stored with it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prepared {
    pub resource: Value,
    pub password: Option<String>,
}

/// Validates a POST or PUT body (or a resource after PATCH) and puts it in canonical form:
/// attribute names in the schema's spelling and order, values coerced to their declared
/// types, `schemas` listing the core schema and every extension present.
///
/// Read-only attributes (`id`, `meta`, `groups`) are dropped, as are attributes no schema
/// defines; the caller sets `id` and `meta`. Unknown schema URNs, whether in `schemas` or as
/// a key, are refused; URN-prefixed keys naming a known attribute
/// (`urn:...:enterprise:2.0:User:department`) are accepted. `existing` is the stored resource on PUT, against which immutable
/// attributes are checked.
pub(crate) fn prepare(
    schema: &ResourceSchema,
    incoming: &Value,
    existing: Option<&Value>,
) -> Result<Prepared, ScimError> {
    let body = incoming.as_object().ok_or_else(|| {
        ScimError::InvalidSyntax("a SCIM resource must be a JSON object".to_owned())
    })?;
    check_declared_schemas(schema, body)?;

    let mut top = Map::new();
    let mut extensions = vec![Map::new(); schema.extensions.len()];
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        // Unknown attributes are ignored, but a key this long names nothing and is refused
        // rather than carried through the loop below.
        if key.len() > MAX_PATH_LENGTH {
            return Err(ScimError::InvalidSyntax(format!(
                "an attribute name of {} bytes is longer than the {MAX_PATH_LENGTH} accepted",
                key.len()
            )));
        }
        if key.eq_ignore_ascii_case(&schema.core.id) {
            for (name, value) in schema_object(key, value)? {
                if let Some(def) = schema.top_level(name) {
                    absorb(&mut top, def, value)?;
                }
            }
        } else if let Some(index) = extension_index(schema, key) {
            let ext = &schema.extensions[index].0;
            for (name, value) in schema_object(key, value)? {
                if let Some(def) = ext.attribute(name) {
                    absorb(&mut extensions[index], def, value)?;
                }
            }
        } else if looks_like_urn(key) {
            // Some clients flatten an extension into URN-prefixed keys such as
            // `urn:...:enterprise:2.0:User:department`.
            let at = parse_attr_path(key)
                .ok()
                .and_then(|path| schema.locate(&path))
                .filter(|at| at.sub_attr.is_none())
                .ok_or_else(|| {
                    ScimError::InvalidSyntax(format!(
                        "'{key}' is neither a schema nor a top-level attribute of {} resources",
                        schema.name
                    ))
                })?;
            match at
                .extension
                .and_then(|ext| extension_index(schema, &ext.id))
            {
                Some(index) => absorb(&mut extensions[index], at.attr, value)?,
                None => absorb(&mut top, at.attr, value)?,
            }
        } else if let Some(def) = schema.top_level(key) {
            absorb(&mut top, def, value)?;
        }
    }

    for def in schema.core.attributes.iter().filter(|def| def.required) {
        require(&top, def)?;
    }
    for ((ext, required), values) in schema.extensions.iter().zip(&extensions) {
        if values.is_empty() {
            if *required {
                return Err(ScimError::InvalidValue(format!(
                    "the extension '{}' is required",
                    ext.id
                )));
            }
            continue;
        }
        for def in ext.attributes.iter().filter(|def| def.required) {
            require(values, def)?;
        }
    }

    let mut resource = Map::new();
    resource.insert("schemas".to_owned(), Value::Array(Vec::new()));
    for def in schema.common.iter().chain(&schema.core.attributes) {
        if let Some(value) = top.remove(&def.name) {
            resource.insert(def.name.clone(), value);
        }
    }
    for ((ext, _), mut values) in schema.extensions.iter().zip(extensions) {
        let ordered: Map<String, Value> = ext
            .attributes
            .iter()
            .filter_map(|def| values.remove(&def.name).map(|v| (def.name.clone(), v)))
            .collect();
        resource.insert(ext.id.clone(), Value::Object(ordered));
    }
    tidy(&mut resource, schema);

    if let Some(existing) = existing.and_then(Value::as_object) {
        check_immutable(schema, existing, &resource)?;
    }
    let password = match resource.remove("password") {
        Some(Value::String(password)) => Some(password),
        _ => None,
    };
    Ok(Prepared {
        resource: Value::Object(resource),
        password,
    })
}

fn check_declared_schemas(
    schema: &ResourceSchema,
    body: &Map<String, Value>,
) -> Result<(), ScimError> {
    let not_a_list =
        || ScimError::InvalidSyntax("'schemas' must be a list of schema URN strings".to_owned());
    let declared = field(body, "schemas").ok_or_else(|| {
        ScimError::InvalidSyntax(format!(
            "'schemas' is missing; it must contain '{}'",
            schema.core.id
        ))
    })?;
    let urns = match declared {
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(not_a_list))
            .collect::<Result<Vec<_>, _>>()?,
        Value::String(single) => vec![single.as_str()],
        _ => return Err(not_a_list()),
    };
    if let Some(unknown) = urns
        .iter()
        .find(|urn| !schema.schema_ids().any(|id| id.eq_ignore_ascii_case(urn)))
    {
        return Err(ScimError::InvalidSyntax(format!(
            "'{unknown}' is not a schema of {} resources",
            schema.name
        )));
    }
    if !urns
        .iter()
        .any(|urn| urn.eq_ignore_ascii_case(&schema.core.id))
    {
        return Err(ScimError::InvalidSyntax(format!(
            "'schemas' must contain '{}'",
            schema.core.id
        )));
    }
    Ok(())
}

fn extension_index(schema: &ResourceSchema, urn: &str) -> Option<usize> {
    schema
        .extensions
        .iter()
        .position(|(ext, _)| ext.id.eq_ignore_ascii_case(urn))
}

/// Attribute names never contain ':', so a key that does is a schema URN or a URN-prefixed
/// attribute path.
fn looks_like_urn(key: &str) -> bool {
    key.contains(':')
}

/// The members of an object keyed by a schema URN; null stands for an absent extension.
fn schema_object<'v>(
    key: &str,
    value: &'v Value,
) -> Result<impl Iterator<Item = (&'v String, &'v Value)>, ScimError> {
    match value {
        Value::Object(members) => Ok(Some(members).into_iter().flatten()),
        Value::Null => Ok(None.into_iter().flatten()),
        _ => Err(ScimError::InvalidSyntax(format!(
            "'{key}' must be an object of that schema's attributes"
        ))),
    }
}

/// Adds one client-supplied attribute, coerced, unless it is read-only or unassigned.
fn absorb(
    target: &mut Map<String, Value>,
    def: &AttributeDef,
    value: &Value,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    let coerced = coerce(def, value, &def.name)?;
    if is_unassigned(&coerced) {
        target.remove(&def.name);
    } else {
        target.insert(def.name.clone(), coerced);
    }
    Ok(())
}

fn require(values: &Map<String, Value>, def: &AttributeDef) -> Result<(), ScimError> {
    let blank = match values.get(&def.name) {
        None => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(_) => false,
    };
    if blank {
        Err(ScimError::InvalidValue(format!(
            "'{}' is required and must not be empty",
            def.name
        )))
    } else {
        Ok(())
    }
}

fn check_immutable(
    schema: &ResourceSchema,
    existing: &Map<String, Value>,
    replacement: &Map<String, Value>,
) -> Result<(), ScimError> {
    let scopes = std::iter::once((None, &schema.core.attributes)).chain(
        schema
            .extensions
            .iter()
            .map(|(ext, _)| (Some(ext), &ext.attributes)),
    );
    for (extension, attributes) in scopes {
        for attr in attributes
            .iter()
            .filter(|def| def.mutability == Mutability::Immutable)
        {
            let at = Resolved {
                extension,
                attr,
                sub_attr: None,
            };
            if let (Some(old), Some(new)) =
                (attribute_in(existing, &at), attribute_in(replacement, &at))
            {
                if old != new {
                    return Err(ScimError::Mutability(format!(
                        "'{}' is immutable and cannot be changed",
                        attr.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Drops empty extension objects and rewrites `schemas` to the core schema plus the
/// extensions present, keeping `schemas` where it was.
pub(crate) fn tidy(resource: &mut Map<String, Value>, schema: &ResourceSchema) {
    resource.retain(|key, value| schema.extension(key).is_none() || !is_unassigned(value));
    let present: Vec<Value> = schema
        .schema_ids()
        .filter(|id| *id == schema.core.id || field(resource, id).is_some())
        .map(|id| Value::String(id.to_owned()))
        .collect();
    let key = resource
        .keys()
        .find(|key| key.eq_ignore_ascii_case("schemas"))
        .cloned()
        .unwrap_or_else(|| "schemas".to_owned());
    resource.insert(key, Value::Array(present));
}

/// Null, `[]` and `{}` all mean "no value" (RFC 7643 section 2.5).
pub(crate) fn is_unassigned(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.is_empty(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => false,
    }
}

/// Converts a client value to the attribute's declared type: "True" to `true`, "42" to `42`
/// for integers, a lone value to a one-element list for multi-valued attributes, a bare
/// string to `{"value": ...}` for complex ones. Sub-attribute names take the schema's
/// spelling and order; unknown and read-only sub-attributes are dropped. `at` names the
/// attribute in error messages.
pub(crate) fn coerce(def: &AttributeDef, value: &Value, at: &str) -> Result<Value, ScimError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if !def.multi_valued {
        if value.is_array() {
            return Err(wrong_type(def, value, at, "a single value"));
        }
        return coerce_one(def, value, at);
    }
    let items = match value {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    if items.len() > def.max_values {
        return Err(ScimError::TooMany(format!(
            "'{at}' has {} values; at most {} are accepted",
            items.len(),
            def.max_values
        )));
    }
    let mut coerced = Vec::with_capacity(items.len());
    for item in items {
        let one = coerce_one(def, item, at)?;
        if !is_unassigned(&one) {
            coerced.push(one);
        }
    }
    if coerced.iter().filter(|item| is_primary(item)).count() > 1 {
        return Err(ScimError::InvalidValue(format!(
            "'{at}' has more than one primary value"
        )));
    }
    Ok(Value::Array(coerced))
}

pub(crate) fn is_primary(value: &Value) -> bool {
    value.get("primary") == Some(&Value::Bool(true))
}

fn coerce_one(def: &AttributeDef, value: &Value, at: &str) -> Result<Value, ScimError> {
    let wrong = |expected: &str| wrong_type(def, value, at, expected);
    match def.attr_type {
        AttrType::Complex => match value {
            Value::Object(members) => {
                let mut given = Map::new();
                for (key, item) in members {
                    let Some(sub) = def.sub_attribute(key) else {
                        continue;
                    };
                    if sub.mutability == Mutability::ReadOnly {
                        continue;
                    }
                    let one = coerce(sub, item, &format!("{at}.{}", sub.name))?;
                    if !is_unassigned(&one) {
                        given.insert(sub.name.clone(), one);
                    }
                }
                let ordered = def
                    .sub_attributes
                    .iter()
                    .filter_map(|sub| given.remove(&sub.name).map(|v| (sub.name.clone(), v)))
                    .collect();
                Ok(Value::Object(ordered))
            }
            Value::Array(_) => Err(wrong("an object")),
            scalar => match def.sub_attribute("value") {
                Some(value_def) => {
                    let one = coerce(value_def, scalar, &format!("{at}.{}", value_def.name))?;
                    let mut wrapped = Map::new();
                    wrapped.insert(value_def.name.clone(), one);
                    Ok(Value::Object(wrapped))
                }
                None => Err(wrong("an object")),
            },
        },
        AttrType::String => match value {
            Value::String(text) => check_text(def, text, at).map(|()| value.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            _ => Err(wrong("a string")),
        },
        AttrType::Reference | AttrType::Binary => match value {
            Value::String(text) => check_text(def, text, at).map(|()| value.clone()),
            _ => Err(wrong("a string")),
        },
        AttrType::Boolean => as_bool(value)
            .map(Value::Bool)
            .ok_or_else(|| wrong("true or false")),
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| Value::from(f as i64))
                .ok_or_else(|| wrong("an integer")),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| wrong("an integer")),
            _ => Err(wrong("an integer")),
        },
        AttrType::Decimal => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from)
                .ok_or_else(|| wrong("a number")),
            _ => Err(wrong("a number")),
        },
        AttrType::DateTime => match value {
            Value::String(s) if instant(s).is_some() => Ok(value.clone()),
            _ => Err(wrong("an RFC 3339 date-time such as 2024-01-31T12:00:00Z")),
        },
    }
}

/// Refuses what no string attribute may carry, whichever request brings it: more than
/// `MAX_STRING_BYTES`; control characters, which targets, logs and terminals act on (NUL ends
/// C strings, CR/LF split headers and log lines, ESC starts terminal escapes), except tab and
/// line breaks in text that spans lines; and, in attributes that identify a resource such
/// as `userName`, the invisible formatting characters (bidirectional overrides, zero-width
/// characters) that make two different names look the same. The value is not echoed: it may
/// be a password.
fn check_text(def: &AttributeDef, text: &str, at: &str) -> Result<(), ScimError> {
    if text.len() > MAX_STRING_BYTES {
        return Err(ScimError::InvalidValue(format!(
            "'{at}' is {} bytes long; at most {MAX_STRING_BYTES} are accepted",
            text.len()
        )));
    }
    let identifies = def.uniqueness != Uniqueness::None;
    let refused = text.chars().enumerate().find(|(_, c)| {
        let line_break = matches!(c, '\t' | '\n' | '\r');
        (c.is_control() && !(def.multi_line && line_break)) || (identifies && is_invisible(*c))
    });
    match refused {
        None => Ok(()),
        Some((position, c)) => Err(ScimError::InvalidValue(format!(
            "'{at}' contains the {} U+{:04X} at character {}; it is not accepted in this attribute",
            if c.is_control() {
                "control character"
            } else {
                "invisible formatting character"
            },
            u32::from(c),
            position + 1
        ))),
    }
}

/// Default-ignorable formatting characters: soft hyphen, zero-width space and joiners,
/// directional marks, embeddings, overrides and isolates, word joiner, byte order mark.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

/// Passwords are never echoed back, not even in an error.
fn wrong_type(def: &AttributeDef, value: &Value, at: &str, expected: &str) -> ScimError {
    let found = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    };
    let shown = match value {
        Value::Bool(_) | Value::Number(_) | Value::String(_)
            if def.mutability != Mutability::WriteOnly =>
        {
            let text = value.to_string();
            match text.char_indices().nth(60) {
                Some((cut, _)) => format!("{found} ({}...)", &text[..cut]),
                None => format!("{found} ({text})"),
            }
        }
        _ => found,
    };
    ScimError::InvalidValue(format!("'{at}' must be {expected}, not {shown}"))
}

#[cfg(test)]
pub(crate) fn user_name(resource: &Value) -> Option<&str> {
    top_level_str(resource, "userName")
}

#[cfg(test)]
pub(crate) fn external_id(resource: &Value) -> Option<&str> {
    top_level_str(resource, "externalId")
}

#[cfg(test)]
pub(crate) fn display_name(resource: &Value) -> Option<&str> {
    top_level_str(resource, "displayName")
}

#[cfg(test)]
fn top_level_str<'v>(resource: &'v Value, name: &str) -> Option<&'v str> {
    field(resource.as_object()?, name)?.as_str()
}

/// A member of a JSON object by attribute name, which SCIM compares case-insensitively.
pub(crate) fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// The value of a resolved attribute (not of its sub-attribute) in a resource, looking inside
/// the extension object when the attribute belongs to an extension.
pub(crate) fn attribute_value<'v>(resource: &'v Value, at: &Resolved<'_>) -> Option<&'v Value> {
    attribute_in(resource.as_object()?, at)
}

fn attribute_in<'v>(top: &'v Map<String, Value>, at: &Resolved<'_>) -> Option<&'v Value> {
    let container = match at.extension {
        None => top,
        Some(ext) => field(top, &ext.id)?.as_object()?,
    };
    field(container, &at.attr.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
    use serde_json::json;

    fn prepared(body: Value) -> Prepared {
        prepare(&ResourceSchema::user(), &body, None).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn rejected(schema: &ResourceSchema, body: Value) -> ScimError {
        match prepare(schema, &body, None) {
            Ok(p) => panic!("{body} was accepted as {}", p.resource),
            Err(e) => e,
        }
    }

    #[test]
    fn canonicalises_a_user() {
        let out = prepared(json!({
            "SCHEMAS": ["URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"],
            "id": "client-chosen",
            "meta": {"created": "2020-01-01T00:00:00Z"},
            "groups": [{"value": "g1"}],
            "Active": "True",
            "USERNAME": "Ana@Example.com",
            "externalId": "e-1",
            "name": {"GIVENNAME": "Ana", "familyname": "Lima", "nonsense": 1},
            "emails": {"value": "ana@example.com", "Type": "work", "primary": "true"},
            "phoneNumbers": [],
            "nickName": null,
            "favouriteColour": "green",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "Department": "Sales",
                "employeeNumber": 701984,
                "manager": {"value": "m-1", "displayName": "Boss"}
            }
        }));
        assert_eq!(
            out.resource,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "externalId": "e-1",
                "userName": "Ana@Example.com",
                "name": {"familyName": "Lima", "givenName": "Ana"},
                "active": true,
                "emails": [{"value": "ana@example.com", "type": "work", "primary": true}],
                ENTERPRISE_USER_SCHEMA: {
                    "employeeNumber": "701984",
                    "department": "Sales",
                    "manager": {"value": "m-1"}
                }
            })
        );
        assert_eq!(out.password, None);
        let keys: Vec<&String> = out
            .resource
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys[0], "schemas");
    }

    #[test]
    fn schemas_list_follows_the_extensions_present() {
        let listed_but_empty = prepared(json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "a",
            ENTERPRISE_USER_SCHEMA: {}
        }));
        assert_eq!(
            listed_but_empty.resource,
            json!({"schemas": [USER_SCHEMA], "userName": "a"})
        );
        let present_but_unlisted = prepared(json!({
            "schemas": USER_SCHEMA,
            "userName": "a",
            ENTERPRISE_USER_SCHEMA: {"department": "x"}
        }));
        assert_eq!(
            present_but_unlisted.resource["schemas"],
            json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA])
        );
        let null_extension = prepared(json!({
            "schemas": [USER_SCHEMA], "userName": "a", ENTERPRISE_USER_SCHEMA: null
        }));
        assert_eq!(
            null_extension.resource,
            json!({"schemas": [USER_SCHEMA], "userName": "a"})
        );
    }

    #[test]
    fn flattened_extension_keys_are_accepted() {
        let out = prepared(json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "a",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
            "urn:ietf:params:scim:schemas:core:2.0:User:title": "Guide"
        }));
        assert_eq!(
            out.resource,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "a",
                "title": "Guide",
                ENTERPRISE_USER_SCHEMA: {"department": "Sales"}
            })
        );
    }

    #[test]
    fn password_is_taken_out() {
        let out = prepared(json!({
            "schemas": [USER_SCHEMA], "userName": "a", "PASSWORD": "t1meMa$heen"
        }));
        assert_eq!(out.password.as_deref(), Some("t1meMa$heen"));
        assert_eq!(
            out.resource,
            json!({"schemas": [USER_SCHEMA], "userName": "a"})
        );
        let err = rejected(
            &ResourceSchema::user(),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "password": true}),
        );
        assert!(
            matches!(&err, ScimError::InvalidValue(d) if d.contains("'password'") && !d.contains("true")),
            "{err:?}"
        );
    }

    #[test]
    fn syntax_errors() {
        let user = ResourceSchema::user();
        for body in [
            json!([]),
            json!("x"),
            json!({"userName": "a"}),
            json!({"schemas": [], "userName": "a"}),
            json!({"schemas": [GROUP_SCHEMA], "userName": "a"}),
            json!({"schemas": [USER_SCHEMA, "urn:example:custom"], "userName": "a"}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "urn:example:custom": {"x": 1}}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "urn:example:custom:1.0:User:x": 1}),
            json!({"schemas": [USER_SCHEMA], "userName": "a",
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:bogus": 1}),
            json!({"schemas": [USER_SCHEMA], "userName": "a",
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "m"}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", ENTERPRISE_USER_SCHEMA: "x"}),
            json!({"schemas": [1], "userName": "a"}),
            json!({"schemas": {"a": 1}, "userName": "a"}),
        ] {
            assert!(
                matches!(rejected(&user, body.clone()), ScimError::InvalidSyntax(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn control_and_invisible_characters_are_refused_by_attribute() {
        let user = ResourceSchema::user();
        let with = |changes: Value| {
            let mut body = json!({"schemas": [USER_SCHEMA], "userName": "ana"});
            if let (Some(body), Some(changes)) = (body.as_object_mut(), changes.as_object()) {
                body.extend(changes.clone());
            }
            body
        };
        let refused = [
            (json!({"userName": "ana\u{0}"}), "'userName'", "U+0000"),
            (
                json!({"userName": "ana\r\nX-Admin: 1"}),
                "'userName'",
                "U+000D",
            ),
            (json!({"userName": "\u{1b}[31mana"}), "'userName'", "U+001B"),
            (json!({"userName": "ana\tb"}), "'userName'", "U+0009"),
            (json!({"userName": "ana\u{85}"}), "'userName'", "U+0085"),
            (
                json!({"userName": "adm\u{202E}nin"}),
                "'userName'",
                "U+202E",
            ),
            (json!({"userName": "ad\u{200B}min"}), "'userName'", "U+200B"),
            (
                json!({"displayName": "Ana\nLima"}),
                "'displayName'",
                "U+000A",
            ),
            (
                json!({"name": {"givenName": "A\u{7f}"}}),
                "'name.givenName'",
                "U+007F",
            ),
            (
                json!({"emails": [{"value": "a@x.org\r\n"}]}),
                "'emails.value'",
                "U+000D",
            ),
            (
                json!({"profileUrl": "https://x.org/\u{0}"}),
                "'profileUrl'",
                "U+0000",
            ),
            (json!({"password": "se\u{0}cret"}), "'password'", "U+0000"),
            (
                json!({"addresses": [{"formatted": "1 Road\u{0}"}]}),
                "'addresses.formatted'",
                "U+0000",
            ),
            (
                json!({"nickName": "x".repeat(MAX_STRING_BYTES + 1)}),
                "'nickName'",
                "bytes long",
            ),
        ];
        for (changes, attribute, why) in refused {
            match rejected(&user, with(changes.clone())) {
                ScimError::InvalidValue(detail) => assert!(
                    detail.contains(attribute) && detail.contains(why) && !detail.contains("cret"),
                    "{changes}: {detail}"
                ),
                other => panic!("{changes}: expected InvalidValue, got {other:?}"),
            }
        }
        let accepted = [
            json!({"addresses": [{"formatted": "1 Road\r\nTown\tN1"}]}),
            json!({"displayName": "\u{5e9}\u{5dc}\u{5d5}\u{5dd} Ana"}),
            json!({"displayName": "\u{1F469}\u{200D}\u{1F4BB}"}),
            json!({"userName": "\u{627}\u{644}\u{639}\u{631}\u{628}\u{64a}\u{629}"}),
            json!({"nickName": "x".repeat(MAX_STRING_BYTES)}),
        ];
        for changes in accepted {
            let body = with(changes.clone());
            assert!(prepare(&user, &body, None).is_ok(), "{changes}");
        }
    }

    #[test]
    fn value_errors_name_the_attribute() {
        let user = ResourceSchema::user();
        let cases = [
            (json!({"schemas": [USER_SCHEMA]}), "'userName'"),
            (
                json!({"schemas": [USER_SCHEMA], "userName": ""}),
                "'userName'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "  "}),
                "'userName'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": null}),
                "'userName'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": ["a"]}),
                "'userName'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "active": "yes"}),
                "'active'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "name": "Ana"}),
                "'name'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "name": {"givenName": {}}}),
                "'name.givenName'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "emails": [{"value": true}]}),
                "'emails.value'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "profileUrl": 3}),
                "'profileUrl'",
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a",
                       "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": "True"}]}),
                "more than one primary",
            ),
        ];
        for (body, needle) in cases {
            match rejected(&user, body.clone()) {
                ScimError::InvalidValue(detail) => {
                    assert!(detail.contains(needle), "{body}: {detail:?} lacks {needle}")
                }
                other => panic!("{body}: expected InvalidValue, got {other:?}"),
            }
        }
        let group = ResourceSchema::group();
        assert!(matches!(
            rejected(&group, json!({"schemas": [GROUP_SCHEMA], "members": []})),
            ScimError::InvalidValue(d) if d.contains("'displayName'")
        ));
    }

    #[test]
    fn groups_keep_members() {
        let out = prepare(
            &ResourceSchema::group(),
            &json!({
                "schemas": [GROUP_SCHEMA],
                "DisplayName": "Tour Guides",
                "members": [{"value": "u1", "display": "Ana", "$REF": "https://x/Users/u1"}, "u2"]
            }),
            None,
        )
        .expect("valid group");
        assert_eq!(
            out.resource,
            json!({
                "schemas": [GROUP_SCHEMA],
                "displayName": "Tour Guides",
                "members": [{"value": "u1", "$ref": "https://x/Users/u1", "display": "Ana"}, {"value": "u2"}]
            })
        );
        assert_eq!(display_name(&out.resource), Some("Tour Guides"));
    }

    fn with_attribute(name: &str, attr_type: AttrType, mutability: Mutability) -> ResourceSchema {
        let mut schema = ResourceSchema::user();
        let mut def = schema.core.attributes[0].clone();
        def.name = name.to_owned();
        def.attr_type = attr_type;
        def.required = false;
        def.mutability = mutability;
        schema.core.attributes.push(def);
        schema
    }

    #[test]
    fn numbers_and_dates_are_coerced() {
        let schema = with_attribute("level", AttrType::Integer, Mutability::ReadWrite);
        let schema = {
            let mut s = schema;
            let mut ratio = s.core.attributes[0].clone();
            ratio.name = "ratio".to_owned();
            ratio.attr_type = AttrType::Decimal;
            ratio.required = false;
            let mut since = ratio.clone();
            since.name = "since".to_owned();
            since.attr_type = AttrType::DateTime;
            s.core.attributes.extend([ratio, since]);
            s
        };
        let ok = prepare(
            &schema,
            &json!({"schemas": [USER_SCHEMA], "userName": "a", "level": " 42", "ratio": "0.5",
                    "since": "2024-01-31T12:00:00+01:00"}),
            None,
        )
        .expect("coercible");
        assert_eq!(ok.resource["level"], json!(42));
        assert_eq!(ok.resource["ratio"], json!(0.5));
        let whole = prepare(
            &schema,
            &json!({"schemas": [USER_SCHEMA], "userName": "a", "level": 7.0}),
            None,
        )
        .expect("integral float");
        assert_eq!(whole.resource["level"], json!(7));
        for body in [
            json!({"schemas": [USER_SCHEMA], "userName": "a", "level": "4.5"}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "level": 4.5}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "ratio": "NaN"}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "ratio": true}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "since": "yesterday"}),
        ] {
            assert!(
                matches!(rejected(&schema, body.clone()), ScimError::InvalidValue(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn immutable_attributes_cannot_change_on_put() {
        let schema = with_attribute("badge", AttrType::String, Mutability::Immutable);
        let existing = json!({"schemas": [USER_SCHEMA], "userName": "a", "badge": "B1"});
        let same = json!({"schemas": [USER_SCHEMA], "userName": "b", "badge": "B1"});
        let omitted = json!({"schemas": [USER_SCHEMA], "userName": "b"});
        let changed = json!({"schemas": [USER_SCHEMA], "userName": "b", "badge": "B2"});
        assert!(prepare(&schema, &same, Some(&existing)).is_ok());
        assert!(prepare(&schema, &omitted, Some(&existing)).is_ok());
        assert!(prepare(&schema, &changed, None).is_ok());
        assert!(matches!(
            prepare(&schema, &changed, Some(&existing)),
            Err(ScimError::Mutability(_))
        ));
    }

    #[test]
    fn accessors() {
        let user = json!({"userName": "ana", "EXTERNALID": "e-1"});
        assert_eq!(user_name(&user), Some("ana"));
        assert_eq!(external_id(&user), Some("e-1"));
        assert_eq!(display_name(&user), None);
        assert_eq!(user_name(&json!([])), None);
    }
}
