//! Resources as stored and answered: validation and canonical form of a User or Group on
//! POST, PUT and after PATCH, and the case-insensitive lookups the later steps share.

use serde_json::{Map, Value};

use crate::scim::schema::Resolved;

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
    let top = resource.as_object()?;
    let container = match at.extension {
        None => top,
        Some(ext) => field(top, &ext.id)?.as_object()?,
    };
    field(container, &at.attr.name)
}
