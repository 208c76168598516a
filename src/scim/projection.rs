//! Response shaping (RFC 7644 sections 3.4.2.5 and 3.9): which attributes of a stored
//! resource go into an answer, per `attributes`, `excludedAttributes` and each attribute's
//! `returned` characteristic. The last step before a resource is serialised.

use serde_json::{Map, Value};

use crate::scim::error::ScimError;
use crate::scim::path::{parse_attr_path, AttrPath};
use crate::scim::schema::{AttrType, AttributeDef, ResourceSchema, Returned, SchemaDef};

/// The comma-separated `attributes` or `excludedAttributes` query parameter (or the same
/// member of a `/.search` body joined with commas).
pub(crate) fn parse_attribute_list(text: &str) -> Result<Vec<AttrPath>, ScimError> {
    let paths: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    check_list_length(paths.len())?;
    paths.into_iter().map(parse_attr_path).collect()
}

/// The most paths one `attributes` or `excludedAttributes` list may name. The User schemas
/// have fewer than 100 attributes and sub-attributes in all; every returned resource is
/// checked against each path, so a list of thousands cost that much per resource listed.
pub(crate) const MAX_ATTRIBUTE_LIST: usize = 200;

pub(crate) fn check_list_length(count: usize) -> Result<(), ScimError> {
    if count > MAX_ATTRIBUTE_LIST {
        return Err(ScimError::InvalidValue(format!(
            "the list names {count} attributes; at most {MAX_ATTRIBUTE_LIST} are accepted"
        )));
    }
    Ok(())
}

/// The resource as the client asked to see it. With `attributes` non-empty only those (plus
/// the returned=always ones: `schemas`, `id`, `meta`) are returned and `excluded` is ignored,
/// as `attributes` replaces the default set that `excluded` trims. `password` never leaves.
/// A path naming a whole extension by its URN selects or excludes all of it.
///
/// Takes the resource by value: what is kept is moved into the answer, not copied.
pub(crate) fn project(
    resource: Value,
    schema: &ResourceSchema,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Value {
    match resource {
        // Most requests name no attributes: what is returned by default is trimmed in place
        // rather than copied into a new object (a copy per member showed in the profile of
        // every SCIM answer).
        Value::Object(mut members) if attributes.is_empty() && excluded.is_empty() => {
            by_default(&mut members, schema);
            Value::Object(members)
        }
        resource => select(resource, schema, attributes, excluded),
    }
}

/// Keeps what a resource returns by default, as `select` does with no attribute named.
fn by_default(members: &mut Map<String, Value>, schema: &ResourceSchema) {
    members.retain(|key, value| match schema.extension(key) {
        Some(ext) => match value {
            Value::Object(members) => {
                members.retain(|key, item| {
                    ext.attribute(key)
                        .is_some_and(|def| returned_by_default(def, item))
                });
                !members.is_empty()
            }
            _ => false,
        },
        None => schema
            .top_level(key)
            .is_none_or(|def| returned_by_default(def, value)),
    });
}

/// Whether `value` of `def` is returned by default, trimmed to the sub-attributes that are.
fn returned_by_default(def: &AttributeDef, value: &mut Value) -> bool {
    if !default_sub(def) {
        return false;
    }
    if def.attr_type != AttrType::Complex {
        return true;
    }
    let trim = |item: &mut Value| match item {
        Value::Object(members) => {
            members.retain(|key, _| def.sub_attribute(key).is_some_and(default_sub));
            !members.is_empty()
        }
        _ => true,
    };
    match value {
        Value::Array(items) => {
            items.retain_mut(trim);
            !items.is_empty()
        }
        single => trim(single),
    }
}

/// The general projection: `attributes` asked for, or `excluded`.
fn select(
    resource: Value,
    schema: &ResourceSchema,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Value {
    let Value::Object(members) = resource else {
        return resource;
    };
    let selection = Selection {
        schema,
        attributes,
        excluded,
    };
    let mut out = Map::new();
    for (key, value) in members {
        let projected = match schema.extension(&key) {
            Some(ext) => selection.extension(ext, value),
            None => match schema.top_level(&key) {
                Some(def) => selection.attribute(None, def, value, false),
                None => selection.unknown(&key, value),
            },
        };
        if let Some(projected) = projected {
            out.insert(key, projected);
        }
    }
    Value::Object(out)
}

struct Selection<'a> {
    schema: &'a ResourceSchema,
    attributes: &'a [AttrPath],
    excluded: &'a [AttrPath],
}

/// What a list of paths says about one attribute: all of it, or some of its sub-attributes.
struct Mentions<'p> {
    whole: bool,
    subs: Vec<&'p str>,
}

impl Mentions<'_> {
    fn sub(&self, def: &AttributeDef) -> bool {
        self.subs.iter().any(|s| s.eq_ignore_ascii_case(&def.name))
    }
}

impl Selection<'_> {
    fn names(&self, path: &AttrPath, extension: Option<&SchemaDef>, def: &AttributeDef) -> bool {
        let schema_matches = match (&path.urn, extension) {
            (None, None) => true,
            (Some(urn), None) => urn.eq_ignore_ascii_case(&self.schema.core.id),
            (Some(urn), Some(ext)) => urn.eq_ignore_ascii_case(&ext.id),
            (None, Some(_)) => false,
        };
        schema_matches && path.attr.eq_ignore_ascii_case(&def.name)
    }

    fn mentions<'p>(
        &self,
        paths: &'p [AttrPath],
        extension: Option<&SchemaDef>,
        def: &AttributeDef,
    ) -> Mentions<'p> {
        let mut mentions = Mentions {
            whole: false,
            subs: Vec::new(),
        };
        for path in paths.iter().filter(|p| self.names(p, extension, def)) {
            match &path.sub_attr {
                None => mentions.whole = true,
                Some(sub) => mentions.subs.push(sub),
            }
        }
        mentions
    }

    fn names_extension(paths: &[AttrPath], ext: &SchemaDef) -> bool {
        paths.iter().any(|p| {
            p.as_schema_urn()
                .is_some_and(|urn| urn.eq_ignore_ascii_case(&ext.id))
        })
    }

    fn extension(&self, ext: &SchemaDef, value: Value) -> Option<Value> {
        let Value::Object(members) = value else {
            return None;
        };
        let whole = if self.attributes.is_empty() {
            if Self::names_extension(self.excluded, ext) {
                return None;
            }
            false
        } else {
            Self::names_extension(self.attributes, ext)
        };
        let projected: Map<String, Value> = members
            .into_iter()
            .filter_map(|(key, item)| {
                let def = ext.attribute(&key)?;
                self.attribute(Some(ext), def, item, whole)
                    .map(|v| (key, v))
            })
            .collect();
        (!projected.is_empty()).then_some(Value::Object(projected))
    }

    /// Attributes the schema does not define are treated as returned by default.
    fn unknown(&self, key: &str, value: Value) -> Option<Value> {
        let excluded = self
            .excluded
            .iter()
            .any(|p| p.urn.is_none() && p.sub_attr.is_none() && p.attr.eq_ignore_ascii_case(key));
        (self.attributes.is_empty() && !excluded).then_some(value)
    }

    fn attribute(
        &self,
        extension: Option<&SchemaDef>,
        def: &AttributeDef,
        value: Value,
        whole_extension: bool,
    ) -> Option<Value> {
        match def.returned {
            Returned::Never => return None,
            Returned::Always => return keep_subs(def, value, default_sub),
            Returned::Default | Returned::Request => {}
        }
        if !self.attributes.is_empty() {
            let asked = self.mentions(self.attributes, extension, def);
            if asked.whole || whole_extension {
                keep_subs(def, value, |sub| default_sub(sub) || asked.sub(sub))
            } else if !asked.subs.is_empty() {
                keep_subs(def, value, |sub| {
                    sub.returned == Returned::Always
                        || (sub.returned != Returned::Never && asked.sub(sub))
                })
            } else {
                None
            }
        } else {
            let excluded = self.mentions(self.excluded, extension, def);
            if def.returned == Returned::Request || excluded.whole {
                return None;
            }
            keep_subs(def, value, |sub| {
                sub.returned == Returned::Always || (default_sub(sub) && !excluded.sub(sub))
            })
        }
    }
}

fn default_sub(sub: &AttributeDef) -> bool {
    matches!(sub.returned, Returned::Always | Returned::Default)
}

/// The value with only the sub-attributes `keep` accepts; `None` when nothing is left.
fn keep_subs(
    def: &AttributeDef,
    value: Value,
    keep: impl Fn(&AttributeDef) -> bool,
) -> Option<Value> {
    if def.attr_type != AttrType::Complex {
        return Some(value);
    }
    let trim = |item: Value| -> Option<Value> {
        let Value::Object(members) = item else {
            return Some(item);
        };
        let kept: Map<String, Value> = members
            .into_iter()
            .filter(|(key, _)| def.sub_attribute(key).is_some_and(&keep))
            .collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match value {
        Value::Array(items) => {
            let kept: Vec<Value> = items.into_iter().filter_map(trim).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        single => trim(single),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "u-1",
            "externalId": "e-1",
            "userName": "ana",
            "name": {"givenName": "Ana", "familyName": "Lima"},
            "password": "leaked?",
            "emails": [{"value": "a@x", "type": "work", "primary": true}, {"value": "b@x", "type": "home"}],
            ENTERPRISE_USER_SCHEMA: {"department": "Sales", "manager": {"value": "m-1"}},
            "meta": {"resourceType": "User", "version": "W/\"1\""}
        })
    }

    fn list(text: &str) -> Vec<AttrPath> {
        parse_attribute_list(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_attribute_lists() {
        assert_eq!(list(""), Vec::<AttrPath>::new());
        assert_eq!(
            list(" userName , name.givenName,,"),
            vec![
                AttrPath::attr("userName"),
                AttrPath::attr("name").with_sub(Some("givenName")),
            ]
        );
        assert_eq!(list(ENTERPRISE_USER_SCHEMA).len(), 1);
        assert!(matches!(
            parse_attribute_list("userName,a b"),
            Err(ScimError::InvalidPath(_))
        ));
    }

    #[test]
    fn projects_users() {
        let schema = ResourceSchema::user();
        let base = || {
            json!({"schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], "id": "u-1",
                              "meta": {"resourceType": "User", "version": "W/\"1\""}})
        };
        let with = |extra: Value| {
            let mut out = base();
            if let (Some(o), Some(extra)) = (out.as_object_mut(), extra.as_object()) {
                o.extend(extra.clone());
            }
            out
        };
        let mut default = user();
        default.as_object_mut().map(|o| o.shift_remove("password"));
        let cases: Vec<(&str, &str, Value)> = vec![
            ("", "", default.clone()),
            ("userName", "", with(json!({"userName": "ana"}))),
            ("USERNAME,password,id", "", with(json!({"userName": "ana"}))),
            ("name.givenName", "", with(json!({"name": {"givenName": "Ana"}}))),
            ("emails.value", "", with(json!({"emails": [{"value": "a@x"}, {"value": "b@x"}]}))),
            ("emails", "", with(json!({"emails": user()["emails"]}))),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                "",
                with(json!({ENTERPRISE_USER_SCHEMA: {"manager": {"value": "m-1"}}})),
            ),
            (ENTERPRISE_USER_SCHEMA, "", with(json!({ENTERPRISE_USER_SCHEMA: user()[ENTERPRISE_USER_SCHEMA]}))),
            ("urn:ietf:params:scim:schemas:core:2.0:User:userName", "", with(json!({"userName": "ana"}))),
            ("department", "", base()),
            ("nonsense", "", base()),
            ("userName", "userName", with(json!({"userName": "ana"}))),
            ("", "emails,name.familyName,externalId", {
                let mut out = default.clone();
                if let Some(o) = out.as_object_mut() {
                    o.shift_remove("emails");
                    o.shift_remove("externalId");
                    o.insert("name".to_owned(), json!({"givenName": "Ana"}));
                }
                out
            }),
            ("", "id,meta,schemas", default.clone()),
            ("", ENTERPRISE_USER_SCHEMA, {
                let mut out = default.clone();
                out.as_object_mut().map(|o| o.shift_remove(ENTERPRISE_USER_SCHEMA));
                out
            }),
            ("", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", {
                let mut out = default.clone();
                out.as_object_mut().map(|o| o.shift_remove(ENTERPRISE_USER_SCHEMA));
                out
            }),
        ];
        for (attributes, excluded, expected) in cases {
            let out = project(user(), &schema, &list(attributes), &list(excluded));
            assert_eq!(out, expected, "attributes={attributes} excluded={excluded}");
        }
    }

    #[test]
    fn entra_group_lookup_without_members() {
        let group = json!({
            "schemas": [GROUP_SCHEMA], "id": "g-1", "displayName": "Guides",
            "members": [{"value": "u1"}], "meta": {"resourceType": "Group"}
        });
        let out = project(
            group.clone(),
            &ResourceSchema::group(),
            &[],
            &list("members"),
        );
        assert_eq!(
            out,
            json!({"schemas": [GROUP_SCHEMA], "id": "g-1", "displayName": "Guides",
                               "meta": {"resourceType": "Group"}})
        );
    }

    #[test]
    fn request_only_attributes_need_asking() {
        let mut schema = ResourceSchema::user();
        if let Some(title) = schema
            .core
            .attributes
            .iter_mut()
            .find(|a| a.name == "title")
        {
            title.returned = Returned::Request;
        }
        let resource = json!({"id": "u-1", "userName": "ana", "title": "Guide", "extra": 1});
        assert_eq!(
            project(resource.clone(), &schema, &[], &[]),
            json!({"id": "u-1", "userName": "ana", "extra": 1})
        );
        assert_eq!(
            project(resource.clone(), &schema, &list("title"), &[]),
            json!({"id": "u-1", "title": "Guide"})
        );
        assert_eq!(
            project(resource.clone(), &schema, &[], &list("extra")),
            json!({"id": "u-1", "userName": "ana"})
        );
        assert_eq!(project(json!("x"), &schema, &[], &[]), json!("x"));
    }

    mod by_default {
        use proptest::prelude::*;
        use serde_json::{json, Map, Value};

        use super::super::{project, select};
        use crate::scim::schema::{ResourceSchema, Returned, ENTERPRISE_USER_SCHEMA};

        /// Leaves: the shapes a stored member can take, right or wrong for its attribute.
        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                "[a-z]{0,4}".prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
                Just(Value::Null),
                Just(json!([])),
            ]
        }

        /// An object of sub-attributes, some the schema defines, some it does not.
        fn object() -> impl Strategy<Value = Value> {
            let key = prop::sample::select(vec![
                "value",
                "type",
                "primary",
                "display",
                "$ref",
                "givenName",
                "familyName",
                "formatted",
                "resourceType",
                "version",
                "location",
                "junk",
                "manager",
            ]);
            prop::collection::vec((key, leaf()), 0..5).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            })
        }

        fn member() -> impl Strategy<Value = Value> {
            prop_oneof![
                leaf(),
                object(),
                prop::collection::vec(prop_oneof![object(), leaf()], 0..4).prop_map(Value::Array),
            ]
        }

        fn resource() -> impl Strategy<Value = Value> {
            let key = prop::sample::select(vec![
                "id",
                "externalId",
                "userName",
                "name",
                "password",
                "emails",
                "groups",
                "meta",
                "schemas",
                "active",
                "title",
                "x509Certificates",
                "roles",
                "extra",
                ENTERPRISE_USER_SCHEMA,
                "urn:example:unknown",
            ]);
            prop::collection::vec((key, member()), 0..12).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            })
        }

        proptest! {
            /// Trimmed in place, a resource comes out as the general projection makes it,
            /// member order included.
            #[test]
            fn the_in_place_default_is_the_general_projection(
                resource in resource(),
                request_title in any::<bool>(),
                hide_display in any::<bool>(),
            ) {
                let mut schema = ResourceSchema::user();
                for attribute in &mut schema.core.attributes {
                    if request_title && attribute.name == "title" {
                        attribute.returned = Returned::Request;
                    }
                    // A sub-attribute never returned, which the shipped schema lacks.
                    for sub in &mut attribute.sub_attributes {
                        if hide_display && sub.name == "display" {
                            sub.returned = Returned::Never;
                        }
                    }
                }
                let fast = project(resource.clone(), &schema, &[], &[]);
                let general = select(resource, &schema, &[], &[]);
                prop_assert_eq!(fast.to_string(), general.to_string());
            }
        }
    }
}
