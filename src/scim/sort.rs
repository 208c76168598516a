//! Result ordering for list and `/.search` answers (RFC 7644 section 3.4.2.3), applied after
//! filtering and before paging.

use std::cmp::Ordering;

use serde_json::Value;

use crate::scim::filter::{as_bool, compare_numbers, instant};
use crate::scim::path::AttrPath;
use crate::scim::resource::{attribute_value, field, is_primary};
use crate::scim::schema::{AttrType, AttributeDef, Resolved, ResourceSchema};

/// Ascending order of two resources by `by`. A multi-valued attribute sorts by its primary
/// value, else its first; strings ignore case unless the attribute is caseExact; resources
/// without a value come last. For descending order reverse the result, which puts resources
/// without a value first. A path the schema does not know leaves the order unchanged.
pub(crate) fn compare(a: &Value, b: &Value, by: &AttrPath, schema: &ResourceSchema) -> Ordering {
    let Some(at) = schema.locate(by) else {
        return Ordering::Equal;
    };
    let Some(def) = at.leaf().comparable() else {
        return Ordering::Equal;
    };
    match (sort_value(a, &at, def), sort_value(b, &at, def)) {
        (Some(x), Some(y)) => order(def, x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn sort_value<'v>(resource: &'v Value, at: &Resolved<'_>, def: &AttributeDef) -> Option<&'v Value> {
    let raw = attribute_value(resource, at)?;
    let chosen = match raw {
        Value::Array(items) => items
            .iter()
            .find(|item| is_primary(item))
            .or_else(|| items.first())?,
        single => single,
    };
    // `def` is the attribute itself only for a simple attribute; otherwise it is a
    // sub-attribute (the named one, or `value` for `emails`-like attributes).
    let leaf = if at.sub_attr.is_none() && at.attr.attr_type != AttrType::Complex {
        chosen
    } else {
        field(chosen.as_object()?, &def.name)?
    };
    (!leaf.is_null()).then_some(leaf)
}

fn order(def: &AttributeDef, x: &Value, y: &Value) -> Ordering {
    match def.attr_type {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            match (x.as_str(), y.as_str()) {
                (Some(x), Some(y)) if def.case_exact => x.cmp(y),
                (Some(x), Some(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
                _ => Ordering::Equal,
            }
        }
        AttrType::Boolean => as_bool(x).cmp(&as_bool(y)),
        AttrType::Integer | AttrType::Decimal => compare_numbers(x, y).unwrap_or(Ordering::Equal),
        AttrType::DateTime => match (x.as_str(), y.as_str()) {
            (Some(x), Some(y)) => match (instant(x), instant(y)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => x.cmp(y),
            },
            _ => Ordering::Equal,
        },
        AttrType::Complex => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::path::parse_attr_path;
    use serde_json::json;

    fn sorted(resources: &[Value], by: &str) -> Vec<String> {
        let schema = ResourceSchema::user();
        let by = parse_attr_path(by).expect("valid path");
        let mut out = resources.to_vec();
        out.sort_by(|a, b| compare(a, b, &by, &schema));
        out.iter()
            .map(|r| r["id"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    fn users() -> Vec<Value> {
        vec![
            json!({"id": "1", "userName": "carol", "externalId": "b", "active": true,
                   "name": {"familyName": "Zed"},
                   "emails": [{"value": "z@x"}, {"value": "a@x", "primary": true}],
                   "meta": {"created": "2024-01-01T10:00:00+02:00"},
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "b"}}),
            json!({"id": "2", "userName": "Bob", "externalId": "B", "active": false,
                   "emails": [{"value": "m@x"}, {"value": "n@x"}],
                   "meta": {"created": "2024-01-01T09:00:00Z"}}),
            json!({"id": "3", "userName": "alice", "externalId": "a",
                   "name": {"familyName": "adams"},
                   "meta": {"created": "2024-01-01T08:30:00Z"},
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "A"}}),
        ]
    }

    #[test]
    fn sorts_by_attribute_type() {
        let cases = [
            ("userName", ["3", "2", "1"]),
            ("USERNAME", ["3", "2", "1"]),
            ("externalId", ["2", "3", "1"]),
            ("name.familyName", ["3", "1", "2"]),
            ("emails", ["1", "2", "3"]),
            ("emails.value", ["1", "2", "3"]),
            ("active", ["2", "1", "3"]),
            ("meta.created", ["1", "3", "2"]),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                ["3", "1", "2"],
            ),
            ("nonsense", ["1", "2", "3"]),
            ("name", ["1", "2", "3"]),
        ];
        for (by, expected) in cases {
            assert_eq!(sorted(&users(), by), expected, "{by}");
        }
    }

    #[test]
    fn descending_is_the_reverse() {
        let schema = ResourceSchema::user();
        let by = AttrPath::attr("userName");
        let mut out = users();
        out.push(json!({"id": "4"}));
        out.sort_by(|a, b| compare(a, b, &by, &schema).reverse());
        let ids: Vec<&str> = out.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids, ["4", "1", "2", "3"]);
    }
}
