//! PATCH (RFC 7644 section 3.5.2) with the Entra ID and Okta dialects: parses the request,
//! then applies its operations to the stored resource before `resource::prepare` validates
//! the result.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::scim::error::ScimError;
use crate::scim::filter::{as_bool, instant, matches_value, values_equal, CompareOp, Filter};
use crate::scim::path::{parse_value_path, ValuePath};
use crate::scim::resource::{coerce, field, is_primary, is_unassigned, tidy};
use crate::scim::schema::{
    AttrType, AttributeDef, Mutability, Resolved, ResourceSchema, SchemaDef,
};

pub(crate) const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The most operations one PATCH request may carry. Identity providers send one per changed
/// attribute, or one per batch of group members, so real requests hold a few dozen; some
/// operations (a value filter, a sub-attribute of every value) walk every value of their
/// attribute, so this also bounds the work of one request.
pub const MAX_PATCH_OPERATIONS: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub enum PatchOperation {
    Add {
        path: Option<ValuePath>,
        value: Value,
    },
    Replace {
        path: Option<ValuePath>,
        value: Value,
    },
    /// `value`, when given for a multi-valued attribute, removes only the listed values: how
    /// Entra ID removes group members.
    Remove {
        path: ValuePath,
        value: Option<Value>,
    },
}

pub fn parse_request(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::InvalidSyntax("a PATCH body must be a JSON object".to_owned()))?;
    let is_patch_op = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
    };
    let declared = match field(body, "schemas") {
        Some(Value::Array(items)) => items.iter().any(is_patch_op),
        Some(single) => is_patch_op(single),
        None => false,
    };
    if !declared {
        return Err(ScimError::InvalidSyntax(format!(
            "'schemas' must contain '{PATCH_OP_SCHEMA}'"
        )));
    }
    let operations = match field(body, "Operations") {
        Some(Value::Array(operations)) if !operations.is_empty() => operations,
        _ => {
            return Err(ScimError::InvalidSyntax(
                "'Operations' must be a non-empty list".to_owned(),
            ))
        }
    };
    if operations.len() > MAX_PATCH_OPERATIONS {
        return Err(ScimError::TooMany(format!(
            "the request has {} operations; at most {MAX_PATCH_OPERATIONS} are accepted in one PATCH",
            operations.len()
        )));
    }
    operations
        .iter()
        .enumerate()
        .map(|(index, operation)| parse_operation(index + 1, operation))
        .collect()
}

fn parse_operation(number: usize, operation: &Value) -> Result<PatchOperation, ScimError> {
    let operation = operation
        .as_object()
        .ok_or_else(|| ScimError::InvalidSyntax(format!("operation {number} must be an object")))?;
    let name = field(operation, "op")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::InvalidSyntax(format!("operation {number} has no 'op'")))?;
    let path = match field(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.trim().is_empty() => None,
        Some(Value::String(path)) => Some(parse_value_path(path)?),
        Some(_) => {
            return Err(ScimError::InvalidPath(format!(
                "operation {number}: 'path' must be a string"
            )))
        }
    };
    // A present but null value is kept: on add/replace it clears the target.
    let value = field(operation, "value").cloned();
    let needs_value =
        || ScimError::InvalidValue(format!("operation {number} ('{name}') needs a 'value'"));
    if name.eq_ignore_ascii_case("add") {
        Ok(PatchOperation::Add {
            path,
            value: value.ok_or_else(needs_value)?,
        })
    } else if name.eq_ignore_ascii_case("replace") {
        Ok(PatchOperation::Replace {
            path,
            value: value.ok_or_else(needs_value)?,
        })
    } else if name.eq_ignore_ascii_case("remove") {
        let path = path.ok_or_else(|| {
            ScimError::NoTarget(format!("operation {number} ('remove') needs a 'path'"))
        })?;
        Ok(PatchOperation::Remove { path, value })
    } else {
        Err(ScimError::InvalidSyntax(format!(
            "operation {number}: unknown op '{name}' (expected add, replace or remove)"
        )))
    }
}

/// Applies every operation or none: on error `resource` is left as it was.
///
/// A `password` written here lands in the resource; `resource::prepare` takes it out again.
pub fn apply(
    resource: &mut Value,
    ops: &[PatchOperation],
    schema: &ResourceSchema,
) -> Result<(), ScimError> {
    let Value::Object(original) = &*resource else {
        return Err(ScimError::internal(anyhow::anyhow!(
            "PATCH applied to a resource that is not a JSON object"
        )));
    };
    let mut work = original.clone();
    let mut patcher = Patcher {
        schema,
        index: None,
    };
    for op in ops {
        patcher.apply(&mut work, op)?;
    }
    tidy(&mut work, schema);
    *resource = Value::Object(work);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Add,
    Replace,
}

/// Where a PATCH path points.
enum Target<'s> {
    /// A whole extension object, named by its schema URN.
    Extension(&'s SchemaDef),
    Attribute(Resolved<'s>),
}

struct Patcher<'s> {
    schema: &'s ResourceSchema,
    /// The values of the multi-valued attribute the last operations added to, kept from one
    /// operation to the next so that n `add` operations cost O(n), not O(n²).
    index: Option<ValueIndex>,
}

type JsonObject = Map<String, Value>;

impl<'s> Patcher<'s> {
    fn apply(&mut self, top: &mut JsonObject, op: &PatchOperation) -> Result<(), ScimError> {
        match op {
            PatchOperation::Add { path: None, value } => self.merge(top, Mode::Add, value),
            PatchOperation::Replace { path: None, value } => self.merge(top, Mode::Replace, value),
            PatchOperation::Add {
                path: Some(path),
                value,
            } => self.write(top, Mode::Add, path, value),
            PatchOperation::Replace {
                path: Some(path),
                value,
            } => self.write(top, Mode::Replace, path, value),
            PatchOperation::Remove { path, value } => {
                let listed = value.as_ref().filter(|v| !v.is_null());
                self.remove(top, path, listed, false)
            }
        }
    }

    /// A path-less add or replace: each key of the value object is a path (Entra ID sends
    /// `name.givenName`), a schema URN holding that schema's attributes, or a plain attribute.
    fn merge(&mut self, top: &mut JsonObject, mode: Mode, value: &Value) -> Result<(), ScimError> {
        let Value::Object(members) = value else {
            return Err(ScimError::InvalidValue(
                "an operation without 'path' needs an object of attributes as its value".to_owned(),
            ));
        };
        for (key, item) in members {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            // Okta renames a group by sending its id along; the unchanged id is no change.
            if key.eq_ignore_ascii_case("id") && field(top, "id") == Some(item) {
                continue;
            }
            let urn = self
                .schema
                .schema_ids()
                .find(|id| id.eq_ignore_ascii_case(key));
            match urn {
                Some(urn) => self.write_members(top, mode, urn, key, item)?,
                None => self.write(top, mode, &relative_path(None, key)?, item)?,
            }
        }
        Ok(())
    }

    /// Writes an object of attributes that belong to the schema `urn`.
    fn write_members(
        &mut self,
        top: &mut JsonObject,
        mode: Mode,
        urn: &str,
        label: &str,
        value: &Value,
    ) -> Result<(), ScimError> {
        match value {
            Value::Object(members) => {
                // Clients that serialise the extension as a resource of its own add its
                // `schemas`; it names no attribute.
                for (name, item) in members
                    .iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("schemas"))
                {
                    self.write(top, mode, &relative_path(Some(urn), name)?, item)?;
                }
                Ok(())
            }
            Value::Null => {
                if let Some(ext) = self.schema.extension(urn) {
                    self.index = None;
                    remove_key(top, &ext.id);
                }
                Ok(())
            }
            _ => Err(ScimError::InvalidValue(format!(
                "'{label}' must be an object of that schema's attributes"
            ))),
        }
    }

    fn locate(&self, path: &ValuePath) -> Result<Target<'s>, ScimError> {
        if path.filter.is_none() && path.sub_attr.is_none() {
            if let Some(ext) = path
                .attr
                .as_schema_urn()
                .and_then(|urn| self.schema.extension(&urn))
            {
                return Ok(Target::Extension(ext));
            }
        }
        let at = self.schema.locate(&path.target()).ok_or_else(|| {
            ScimError::InvalidPath(format!(
                "'{path}' is not an attribute of {} resources",
                self.schema.name
            ))
        })?;
        if path.filter.is_some()
            && !(at.attr.attr_type == AttrType::Complex && at.attr.multi_valued)
        {
            return Err(ScimError::InvalidPath(format!(
                "'{path}': only multi-valued complex attributes take a value filter"
            )));
        }
        if at.attr.mutability == Mutability::ReadOnly
            || at
                .sub_attr
                .is_some_and(|sub| sub.mutability == Mutability::ReadOnly)
        {
            return Err(ScimError::Mutability(format!("'{path}' is read-only")));
        }
        Ok(Target::Attribute(at))
    }

    fn write(
        &mut self,
        top: &mut JsonObject,
        mode: Mode,
        path: &ValuePath,
        value: &Value,
    ) -> Result<(), ScimError> {
        let at = match self.locate(path)? {
            Target::Extension(ext) => {
                return self.write_members(top, mode, &ext.id, &ext.id, value);
            }
            Target::Attribute(at) => at,
        };
        if value.is_null() {
            return self.remove(top, path, None, true);
        }
        let label = path.to_string();
        let owner = ValueIndex::owner_of(&at);
        let indexed = mode == Mode::Add
            && at.attr.multi_valued
            && path.filter.is_none()
            && at.sub_attr.is_none();
        // Any other write to the indexed attribute changes it behind the index's back.
        if !indexed
            && self
                .index
                .as_ref()
                .is_some_and(|index| index.owner == owner)
        {
            self.index = None;
        }
        let mut index = if indexed {
            self.index.take().filter(|index| index.owner == owner)
        } else {
            None
        };
        let result = in_container(top, at.extension, |container| {
            update(container, &at.attr.name, |current| {
                match (&path.filter, at.sub_attr) {
                    (None, None) if indexed => {
                        let items = items(current);
                        let mut reused = index
                            .take()
                            .filter(|index| index.len == items.len())
                            .unwrap_or_else(|| ValueIndex::build(owner.clone(), at.attr, &items));
                        let added = add_values(items, at.attr, &mut reused, value, &label);
                        index = Some(reused);
                        added
                    }
                    (None, None) => set_attribute(current, at.attr, value, &label),
                    (None, Some(sub)) => set_sub_attribute(current, at.attr, sub, value, &label),
                    (Some(filter), sub) => {
                        set_filtered(current, at.attr, filter, sub, value, &label)
                    }
                }
            })
        });
        if indexed {
            self.index = index;
        }
        result
    }

    /// `missing_ok`: a value filter that matches nothing is fine, as when a null value
    /// clears an attribute that has no value.
    fn remove(
        &mut self,
        top: &mut JsonObject,
        path: &ValuePath,
        value: Option<&Value>,
        missing_ok: bool,
    ) -> Result<(), ScimError> {
        let at = match self.locate(path)? {
            Target::Extension(ext) => {
                self.index = None;
                remove_key(top, &ext.id);
                return Ok(());
            }
            Target::Attribute(at) => at,
        };
        if self
            .index
            .as_ref()
            .is_some_and(|index| index.owner == ValueIndex::owner_of(&at))
        {
            self.index = None;
        }
        let whole = path.filter.is_none() && at.sub_attr.is_none();
        let listed = value.is_some_and(|_| at.attr.multi_valued);
        if at.attr.required && whole && !listed {
            return Err(ScimError::Mutability(format!(
                "'{path}' is required and cannot be removed"
            )));
        }
        let label = path.to_string();
        in_container(top, at.extension, |container| {
            update(container, &at.attr.name, |current| {
                remove_from(current, &at, path, value, missing_ok, &label)
            })
        })
    }
}

/// The values of one multi-valued attribute by identity, and which of them are primary: what
/// `add` needs to merge a value into an equal one and keep a single primary without walking
/// the whole list.
struct ValueIndex {
    /// The extension schema holding the attribute, if any, and the attribute's name.
    owner: (Option<String>, String),
    /// Positions by `identity`; values in one bucket may still differ and are told apart by
    /// `same_value`.
    buckets: HashMap<Identity, Vec<usize>>,
    primaries: Vec<usize>,
    /// The list's length when last seen; a list of another length was changed elsewhere.
    len: usize,
}

impl ValueIndex {
    fn owner_of(at: &Resolved<'_>) -> (Option<String>, String) {
        (at.extension.map(|ext| ext.id.clone()), at.attr.name.clone())
    }

    fn build(owner: (Option<String>, String), attr: &AttributeDef, items: &[Value]) -> Self {
        let mut index = ValueIndex {
            owner,
            buckets: HashMap::new(),
            primaries: Vec::new(),
            len: 0,
        };
        for (position, item) in items.iter().enumerate() {
            index.insert(attr, item, position);
        }
        index.len = items.len();
        index
    }

    fn insert(&mut self, attr: &AttributeDef, item: &Value, position: usize) {
        if let Some(identity) = identity(attr, item) {
            self.buckets.entry(identity).or_default().push(position);
        }
        if is_primary(item) {
            self.primaries.push(position);
        }
    }

    fn find(&self, attr: &AttributeDef, items: &[Value], new: &Value) -> Option<usize> {
        let bucket = self.buckets.get(&identity(attr, new)?)?;
        bucket.iter().copied().find(|position| {
            items
                .get(*position)
                .is_some_and(|old| same_value(attr, old, new))
        })
    }
}

/// `add` of values to a multi-valued attribute: a value equal to one already there is merged
/// into it, others are appended, and a primary value among them becomes the only primary.
fn add_values(
    mut items: Vec<Value>,
    attr: &AttributeDef,
    index: &mut ValueIndex,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let mut touched = Vec::new();
    for new in items_of(coerce(attr, value, label)?) {
        match index.find(attr, &items, &new) {
            Some(position) => {
                if let Some(old) = items.get_mut(position) {
                    merge_element(attr, old, &new, false, label)?;
                    if is_primary(old) {
                        index.primaries.push(position);
                    }
                }
                touched.push(position);
            }
            None => {
                index.insert(attr, &new, items.len());
                touched.push(items.len());
                items.push(new);
            }
        }
    }
    index.len = items.len();
    let keep = touched
        .iter()
        .copied()
        .find(|position| items.get(*position).is_some_and(is_primary));
    // Only listed positions can be primary: every value that became primary was listed.
    index.primaries.retain(|position| {
        let Some(item) = items.get_mut(*position) else {
            return false;
        };
        if keep.is_some_and(|keep| keep != *position) {
            if let Some(members) = item.as_object_mut() {
                members.insert("primary".to_owned(), Value::Bool(false));
            }
        }
        is_primary(item)
    });
    index.primaries.dedup();
    Ok(Some(Value::Array(items)))
}

/// A hashable stand-in for what `same_value` compares: two values that are the same value
/// have the same identity. None for a value `same_value` never equates with anything.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Identity {
    Text(String),
    Bool(bool),
    /// The bits of the number as f64: integers equal as i64 are equal as f64 too.
    Number(u64),
    Instant(i128),
    /// A complex value without a `value` sub-attribute, which compares whole.
    Whole(String),
}

fn identity(attr: &AttributeDef, value: &Value) -> Option<Identity> {
    if attr.attr_type != AttrType::Complex {
        return leaf_identity(attr, value);
    }
    let Some(value_def) = attr.sub_attribute("value") else {
        return Some(Identity::Whole(canonical_text(value)));
    };
    match value.as_object().and_then(|o| field(o, &value_def.name)) {
        Some(inner) => leaf_identity(value_def, inner),
        None => Some(Identity::Whole(canonical_text(value))),
    }
}

/// Mirrors `values_equal` (the `eq` of filters) for one attribute type.
fn leaf_identity(def: &AttributeDef, value: &Value) -> Option<Identity> {
    let fold = |text: &str| {
        if def.case_exact {
            text.to_owned()
        } else {
            text.to_lowercase()
        }
    };
    match def.attr_type {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            value.as_str().map(|text| Identity::Text(fold(text)))
        }
        AttrType::Boolean => as_bool(value).map(Identity::Bool),
        AttrType::Integer | AttrType::Decimal => value
            .as_f64()
            .map(|number| Identity::Number((number + 0.0).to_bits())),
        AttrType::DateTime => value.as_str().map(|text| match instant(text) {
            Some(at) => Identity::Instant(at.unix_timestamp_nanos()),
            None => Identity::Text(fold(text)),
        }),
        AttrType::Complex => None,
    }
}

/// JSON text with object members in name order, so that equal values read the same whatever
/// order their members came in.
fn canonical_text(value: &Value) -> String {
    match value {
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = sorted
                .into_iter()
                .map(|(name, member)| {
                    format!("{}:{}", Value::from(name.as_str()), canonical_text(member))
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical_text).collect();
            format!("[{}]", inner.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// A key of a path-less value object, read as a path inside the schema `urn` if given.
fn relative_path(urn: Option<&str>, key: &str) -> Result<ValuePath, ScimError> {
    let mut path = parse_value_path(key)?;
    if path.attr.urn.is_none() {
        path.attr.urn = urn.map(str::to_owned);
    }
    Ok(path)
}

fn key_of(object: &JsonObject, name: &str) -> Option<String> {
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}

fn remove_key(object: &mut JsonObject, name: &str) -> Option<Value> {
    key_of(object, name).and_then(|key| object.shift_remove(&key))
}

/// Runs `f` on the object holding the attribute: the resource itself, or the extension
/// object, created if missing (`tidy` drops it again if it ends up empty).
fn in_container(
    top: &mut JsonObject,
    extension: Option<&SchemaDef>,
    f: impl FnOnce(&mut JsonObject) -> Result<(), ScimError>,
) -> Result<(), ScimError> {
    let Some(ext) = extension else {
        return f(top);
    };
    let key = key_of(top, &ext.id).unwrap_or_else(|| ext.id.clone());
    let mut inner = match top.get_mut(&key).map(std::mem::take) {
        Some(Value::Object(inner)) => inner,
        _ => Map::new(),
    };
    let result = f(&mut inner);
    top.insert(key, Value::Object(inner));
    result
}

/// Replaces one member of `container` by what `f` makes of it, keeping its place and the
/// client's spelling of its name; an unassigned result removes it.
fn update(
    container: &mut JsonObject,
    name: &str,
    f: impl FnOnce(Option<Value>) -> Result<Option<Value>, ScimError>,
) -> Result<(), ScimError> {
    let key = key_of(container, name);
    let current = key
        .as_ref()
        .and_then(|key| container.get_mut(key))
        .map(std::mem::take);
    let updated = f(current)?.filter(|value| !is_unassigned(value));
    match (key, updated) {
        (Some(key), Some(value)) => {
            container.insert(key, value);
        }
        (Some(key), None) => {
            container.shift_remove(&key);
        }
        (None, Some(value)) => {
            container.insert(name.to_owned(), value);
        }
        (None, None) => {}
    }
    Ok(())
}

fn items(current: Option<Value>) -> Vec<Value> {
    match current {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(single) => vec![single],
    }
}

fn set_attribute(
    current: Option<Value>,
    attr: &AttributeDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let coerced = coerce(attr, value, label)?;
    // An add to a multi-valued attribute goes through `add_values`; what comes here replaces.
    if attr.multi_valued {
        return Ok(Some(coerced));
    }
    match current {
        Some(mut old) if attr.attr_type == AttrType::Complex && old.is_object() => {
            merge_element(attr, &mut old, &coerced, true, label)?;
            Ok(Some(old))
        }
        Some(old) if attr.mutability == Mutability::Immutable && old != coerced => Err(
            ScimError::Mutability(format!("'{label}' is immutable and cannot be changed")),
        ),
        _ => Ok(Some(coerced)),
    }
}

fn items_of(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        single => vec![single],
    }
}

fn set_sub_attribute(
    current: Option<Value>,
    attr: &AttributeDef,
    sub: &AttributeDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let coerced = coerce(sub, value, label)?;
    if !attr.multi_valued {
        let mut element = current
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Map::new()));
        set_sub(&mut element, sub, coerced, label)?;
        return Ok(Some(element));
    }
    // Without a filter the sub-attribute of every value is set; with no values yet, one is
    // created to hold it.
    let mut items = items(current);
    if items.is_empty() {
        items.push(Value::Object(Map::new()));
    }
    for item in &mut items {
        set_sub(item, sub, coerced.clone(), label)?;
    }
    let touched: Vec<usize> = (0..items.len()).collect();
    single_primary(&mut items, &touched);
    Ok(Some(Value::Array(items)))
}

fn set_filtered(
    current: Option<Value>,
    attr: &AttributeDef,
    filter: &Filter,
    sub: Option<&AttributeDef>,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let mut items = items(current);
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| matches_value(filter, item, attr))
        .map(|(index, _)| index)
        .collect();
    // Either one sub-attribute value, or one whole value (an object of sub-attributes).
    let update = match sub {
        Some(sub) => {
            let mut element = Value::Object(Map::new());
            set_sub(&mut element, sub, coerce(sub, value, label)?, label)?;
            element
        }
        None => {
            let mut values = items_of(coerce(attr, value, label)?);
            if values.len() > 1 {
                return Err(ScimError::InvalidValue(format!(
                    "'{label}' selects values by filter and takes a single value"
                )));
            }
            values.pop().unwrap_or_else(|| Value::Object(Map::new()))
        }
    };
    let touched = if matched.is_empty() {
        // Entra ID adds `emails[type eq "work"].value` to users without a work email and
        // expects the email to be created, typed from the filter.
        let mut created = Value::Object(seed_from_filter(filter, attr, label)?);
        merge_element(attr, &mut created, &update, true, label)?;
        items.push(created);
        vec![items.len() - 1]
    } else {
        for index in &matched {
            if let Some(item) = items.get_mut(*index) {
                merge_element(attr, item, &update, true, label)?;
            }
        }
        matched
    };
    single_primary(&mut items, &touched);
    Ok(Some(Value::Array(items)))
}

/// The value a filter of equalities describes: `type eq "work" and primary eq true` becomes
/// `{"type": "work", "primary": true}`.
fn seed_from_filter(
    filter: &Filter,
    attr: &AttributeDef,
    label: &str,
) -> Result<JsonObject, ScimError> {
    fn equalities<'f>(filter: &'f Filter, out: &mut Vec<(&'f str, &'f Value)>) -> bool {
        match filter {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if path.urn.is_none() && path.sub_attr.is_none() => {
                out.push((&path.attr, value));
                true
            }
            Filter::And(left, right) => equalities(left, out) && equalities(right, out),
            Filter::Compare { .. }
            | Filter::Or(..)
            | Filter::Not(_)
            | Filter::Present(_)
            | Filter::ValuePath { .. } => false,
        }
    }
    let mut pairs = Vec::new();
    if !equalities(filter, &mut pairs) {
        return Err(ScimError::NoTarget(format!(
            "no value matches '{label}', and its filter is not a set of equalities to create one from"
        )));
    }
    let mut seed = Map::new();
    for (name, value) in pairs {
        let sub = attr.sub_attribute(name).ok_or_else(|| {
            ScimError::InvalidPath(format!(
                "'{label}': '{name}' is not a sub-attribute of '{}'",
                attr.name
            ))
        })?;
        let coerced = coerce(sub, value, label)?;
        if !is_unassigned(&coerced) {
            seed.insert(sub.name.clone(), coerced);
        }
    }
    Ok(seed)
}

/// Sets one sub-attribute of a complex value; immutable ones may be set but not changed.
fn set_sub(
    element: &mut Value,
    sub: &AttributeDef,
    coerced: Value,
    label: &str,
) -> Result<(), ScimError> {
    if !element.is_object() {
        *element = Value::Object(Map::new());
    }
    let Value::Object(members) = element else {
        return Ok(());
    };
    if sub.mutability == Mutability::Immutable {
        if let Some(old) = field(members, &sub.name) {
            if !is_unassigned(old) && *old != coerced {
                return Err(ScimError::Mutability(format!(
                    "'{label}': '{}' is immutable and cannot be changed",
                    sub.name
                )));
            }
        }
    }
    update(members, &sub.name, |_| Ok(Some(coerced)))
}

/// Merges the sub-attributes of `new` into `old`. Re-adding a value that is already there
/// (`strict` false) leaves its immutable sub-attributes alone instead of failing.
fn merge_element(
    attr: &AttributeDef,
    old: &mut Value,
    new: &Value,
    strict: bool,
    label: &str,
) -> Result<(), ScimError> {
    let Value::Object(members) = new else {
        *old = new.clone();
        return Ok(());
    };
    for (name, value) in members {
        let Some(sub) = attr.sub_attribute(name) else {
            continue;
        };
        let keep_existing = !strict
            && sub.mutability == Mutability::Immutable
            && old.as_object().and_then(|o| field(o, &sub.name)).is_some();
        if !keep_existing {
            set_sub(old, sub, value.clone(), label)?;
        }
    }
    Ok(())
}

/// Whether two values of a multi-valued attribute are the same value: complex values with a
/// `value` sub-attribute are the same when those are equal (a member is its id).
fn same_value(attr: &AttributeDef, a: &Value, b: &Value) -> bool {
    if attr.attr_type != AttrType::Complex {
        return values_equal(attr, a, b);
    }
    let Some(value_def) = attr.sub_attribute("value") else {
        return a == b;
    };
    let pick = |v: &Value| {
        v.as_object()
            .and_then(|o| field(o, &value_def.name))
            .cloned()
    };
    match (pick(a), pick(b)) {
        (Some(x), Some(y)) => values_equal(value_def, &x, &y),
        _ => a == b,
    }
}

/// After values were set, at most one stays primary: the first touched one that is.
fn single_primary(items: &mut [Value], touched: &[usize]) {
    let Some(keep) = touched
        .iter()
        .copied()
        .find(|index| items.get(*index).is_some_and(is_primary))
    else {
        return;
    };
    for (index, item) in items.iter_mut().enumerate() {
        if index != keep && is_primary(item) {
            if let Some(members) = item.as_object_mut() {
                members.insert("primary".to_owned(), Value::Bool(false));
            }
        }
    }
}

fn remove_from(
    current: Option<Value>,
    at: &Resolved<'_>,
    path: &ValuePath,
    value: Option<&Value>,
    missing_ok: bool,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let attr = at.attr;
    let no_target = || ScimError::NoTarget(format!("no value matches '{label}'"));
    match (&path.filter, at.sub_attr) {
        (None, None) => {
            if attr.mutability == Mutability::Immutable
                && current.as_ref().is_some_and(|v| !is_unassigned(v))
            {
                return Err(ScimError::Mutability(format!(
                    "'{label}' is immutable and cannot be removed"
                )));
            }
            match value {
                Some(listed) if attr.multi_valued => {
                    let unwanted = items_of(coerce(attr, listed, label)?);
                    let mut by_identity: HashMap<Identity, Vec<&Value>> = HashMap::new();
                    for gone in &unwanted {
                        if let Some(identity) = identity(attr, gone) {
                            by_identity.entry(identity).or_default().push(gone);
                        }
                    }
                    let kept = items(current)
                        .into_iter()
                        .filter(|old| {
                            !identity(attr, old)
                                .and_then(|identity| by_identity.get(&identity))
                                .is_some_and(|bucket| {
                                    bucket.iter().any(|gone| same_value(attr, old, gone))
                                })
                        })
                        .collect();
                    Ok(Some(Value::Array(kept)))
                }
                _ => Ok(None),
            }
        }
        (None, Some(sub)) => {
            if !attr.multi_valued {
                let mut element = current;
                if let Some(element) = element.as_mut() {
                    remove_sub(element, sub, label)?;
                }
                return Ok(element);
            }
            let mut items = items(current);
            for item in &mut items {
                remove_sub(item, sub, label)?;
            }
            items.retain(|item| !is_unassigned(item));
            Ok(Some(Value::Array(items)))
        }
        (Some(filter), sub) => {
            let mut items = items(current);
            let mut hit = false;
            match sub {
                None => items.retain(|item| {
                    let selected = matches_value(filter, item, attr);
                    hit |= selected;
                    !selected
                }),
                Some(sub) => {
                    for item in &mut items {
                        if matches_value(filter, item, attr) {
                            hit = true;
                            remove_sub(item, sub, label)?;
                        }
                    }
                    items.retain(|item| !is_unassigned(item));
                }
            }
            if !hit && !missing_ok {
                return Err(no_target());
            }
            Ok(Some(Value::Array(items)))
        }
    }
}

fn remove_sub(element: &mut Value, sub: &AttributeDef, label: &str) -> Result<(), ScimError> {
    let Some(members) = element.as_object_mut() else {
        return Ok(());
    };
    let present = field(members, &sub.name).is_some_and(|v| !is_unassigned(v));
    if present && sub.mutability == Mutability::Immutable {
        return Err(ScimError::Mutability(format!(
            "'{label}': '{}' is immutable and cannot be removed",
            sub.name
        )));
    }
    remove_key(members, &sub.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource::prepare;
    use crate::scim::schema::{
        ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, MAX_ATTRIBUTE_VALUES, MAX_GROUP_MEMBERS, USER_SCHEMA,
    };
    use proptest::prelude::*;
    use serde_json::json;

    fn request(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
    }

    fn patched(
        schema: &ResourceSchema,
        resource: &Value,
        operations: Value,
    ) -> Result<Value, ScimError> {
        let ops = parse_request(&request(operations))?;
        let mut out = resource.clone();
        let result = apply(&mut out, &ops, schema);
        if result.is_err() {
            assert_eq!(&out, resource, "a failed PATCH changed the resource");
        }
        result.map(|()| out)
    }

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "id": "u-1",
            "userName": "ana@example.com",
            "name": {"givenName": "Ana", "familyName": "Lima"},
            "title": "Guide",
            "active": true,
            "emails": [
                {"value": "ana@example.com", "type": "work", "primary": true},
                {"value": "ana@home.example", "type": "home"}
            ],
            "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": "g-1",
            "displayName": "Guides",
            "members": [{"value": "u1", "display": "Ana"}, {"value": "u2"}]
        })
    }

    /// The user with `changes` merged in at the top level (`null` removes).
    fn user_with(changes: Value) -> Value {
        let mut out = user();
        if let (Some(target), Some(changes)) = (out.as_object_mut(), changes.as_object()) {
            for (key, value) in changes {
                if value.is_null() {
                    target.shift_remove(key);
                } else {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        out
    }

    #[test]
    fn parses_requests() {
        let ops = parse_request(&json!({
            "schemas": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
            "operations": [
                {"op": "Add", "path": "members", "value": [{"value": "u3"}]},
                {"op": "REPLACE", "value": {"active": false}},
                {"op": "remove", "path": "members[value eq \"u2\"]"},
                {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
                {"op": "replace", "path": "title", "value": null},
                {"op": "add", "path": "", "value": {"title": "x"}}
            ]
        }))
        .expect("valid request");
        assert_eq!(ops.len(), 6);
        assert!(
            matches!(&ops[0], PatchOperation::Add { path: Some(p), .. } if p.to_string() == "members")
        );
        assert!(
            matches!(&ops[1], PatchOperation::Replace { path: None, value } if value == &json!({"active": false}))
        );
        assert!(matches!(
            &ops[2],
            PatchOperation::Remove { value: None, .. }
        ));
        assert!(matches!(
            &ops[3],
            PatchOperation::Remove { value: Some(_), .. }
        ));
        assert!(matches!(
            &ops[4],
            PatchOperation::Replace {
                value: Value::Null,
                ..
            }
        ));
        assert!(matches!(&ops[5], PatchOperation::Add { path: None, .. }));
    }

    #[test]
    fn rejects_bad_requests() {
        let add = json!([{"op": "add", "path": "title", "value": "x"}]);
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "invalidSyntax"),
            (json!({"Operations": add}), "invalidSyntax"),
            (
                json!({"schemas": [USER_SCHEMA], "Operations": add}),
                "invalidSyntax",
            ),
            (json!({"schemas": [PATCH_OP_SCHEMA]}), "invalidSyntax"),
            (request(json!([])), "invalidSyntax"),
            (request(json!({"op": "add"})), "invalidSyntax"),
            (request(json!(["add"])), "invalidSyntax"),
            (
                request(json!([{"path": "title", "value": "x"}])),
                "invalidSyntax",
            ),
            (
                request(json!([{"op": "move", "path": "title", "value": "x"}])),
                "invalidSyntax",
            ),
            (
                request(json!([{"op": "add", "path": "title"}])),
                "invalidValue",
            ),
            (request(json!([{"op": "Replace"}])), "invalidValue"),
            (request(json!([{"op": "remove"}])), "noTarget"),
            (request(json!([{"op": "remove", "path": ""}])), "noTarget"),
            (request(json!([{"op": "remove", "path": 3}])), "invalidPath"),
            (
                request(json!([{"op": "remove", "path": "emails[type eq]"}])),
                "invalidFilter",
            ),
            (
                request(json!([{"op": "remove", "path": "emails[type eq \"x\""}])),
                "invalidPath",
            ),
            (
                request(json!([{"op": "add", "path": "a b", "value": 1}])),
                "invalidPath",
            ),
        ];
        for (body, scim_type) in cases {
            match parse_request(&body) {
                Err(e) => assert_eq!(e.scim_type(), Some(scim_type), "{body}: {e}"),
                Ok(ops) => panic!("{body} parsed as {ops:?}"),
            }
        }
    }

    #[test]
    fn applies_user_operations() {
        let schema = ResourceSchema::user();
        let ext = ENTERPRISE_USER_SCHEMA;
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "okta deactivation",
                json!([{"op": "replace", "value": {"active": false}}]),
                user_with(json!({"active": false})),
            ),
            (
                "entra path-less with attribute paths and string booleans",
                json!([{"op": "Replace", "value": {"name.givenName": "Ann", "ACTIVE": "False"}}]),
                user_with(
                    json!({"active": false, "name": {"givenName": "Ann", "familyName": "Lima"}}),
                ),
            ),
            (
                "entra string boolean on a path",
                json!([{"op": "Replace", "path": "active", "value": "FALSE"}]),
                user_with(json!({"active": false})),
            ),
            (
                "sub-attribute",
                json!([{"op": "replace", "path": "name.familyName", "value": "Souza"}]),
                user_with(json!({"name": {"givenName": "Ana", "familyName": "Souza"}})),
            ),
            (
                "complex merge keeps unmentioned sub-attributes",
                json!([{"op": "replace", "path": "name", "value": {"middleName": "M"}}]),
                user_with(
                    json!({"name": {"givenName": "Ana", "familyName": "Lima", "middleName": "M"}}),
                ),
            ),
            (
                "replace of a filtered sub-attribute",
                json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ana@new.example"}]),
                user_with(json!({"emails": [
                    {"value": "ana@new.example", "type": "work", "primary": true},
                    {"value": "ana@home.example", "type": "home"}
                ]})),
            ),
            (
                "filtered add that matches nothing creates the value",
                json!([{"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"}]),
                user_with(json!({"phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}]})),
            ),
            (
                "filtered replace that matches nothing creates the value",
                json!([{"op": "Replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"}]),
                user_with(json!({"addresses": [{"streetAddress": "1 Main St", "type": "work"}]})),
            ),
            (
                "filtered whole value",
                json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]),
                user_with(json!({"emails": [
                    {"value": "ana@example.com", "type": "work", "primary": true},
                    {"value": "ana@home.example", "display": "Home", "type": "home"}
                ]})),
            ),
            (
                "add appends and a new primary demotes the old one",
                json!([{"op": "add", "path": "emails", "value": [{"value": "ana@other.example", "type": "other", "primary": true}]}]),
                user_with(json!({"emails": [
                    {"value": "ana@example.com", "type": "work", "primary": false},
                    {"value": "ana@home.example", "type": "home"},
                    {"value": "ana@other.example", "type": "other", "primary": true}
                ]})),
            ),
            (
                "add of a value already there merges instead of duplicating",
                json!([{"op": "add", "path": "emails", "value": {"value": "ANA@HOME.EXAMPLE", "display": "h"}}]),
                user_with(json!({"emails": [
                    {"value": "ana@example.com", "type": "work", "primary": true},
                    {"value": "ANA@HOME.EXAMPLE", "type": "home", "display": "h"}
                ]})),
            ),
            (
                "primary set through a filter demotes the others",
                json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "true"}]),
                user_with(json!({"emails": [
                    {"value": "ana@example.com", "type": "work", "primary": false},
                    {"value": "ana@home.example", "type": "home", "primary": true}
                ]})),
            ),
            (
                "replace of a multi-valued attribute replaces the list",
                json!([{"op": "replace", "path": "emails", "value": [{"value": "x@example.com"}]}]),
                user_with(json!({"emails": [{"value": "x@example.com"}]})),
            ),
            (
                "remove by filter",
                json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
                user_with(
                    json!({"emails": [{"value": "ana@example.com", "type": "work", "primary": true}]}),
                ),
            ),
            (
                "remove of a filtered sub-attribute",
                json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
                user_with(json!({"emails": [
                    {"value": "ana@example.com", "type": "work"},
                    {"value": "ana@home.example", "type": "home"}
                ]})),
            ),
            (
                "remove of a sub-attribute of every value",
                json!([{"op": "remove", "path": "emails.type"}]),
                user_with(json!({"emails": [
                    {"value": "ana@example.com", "primary": true},
                    {"value": "ana@home.example"}
                ]})),
            ),
            (
                "remove of the last sub-attribute removes the attribute",
                json!([{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "NAME.FAMILYNAME"}]),
                user_with(json!({"name": null})),
            ),
            (
                "remove of an attribute without a value is a no-op",
                json!([{"op": "remove", "path": "nickName"}]),
                user(),
            ),
            (
                "null clears",
                json!([{"op": "replace", "path": "title", "value": null}, {"op": "replace", "value": {"active": null}}]),
                user_with(json!({"title": null, "active": null})),
            ),
            (
                "empty string is a value",
                json!([{"op": "replace", "path": "title", "value": ""}]),
                user_with(json!({"title": ""})),
            ),
            (
                "extension attribute path",
                json!([
                    {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
                    {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": 42}
                ]),
                user_with(json!({
                    "schemas": [USER_SCHEMA, ext],
                    ext: {"department": "Sales", "employeeNumber": "42"}
                })),
            ),
            (
                "entra manager as a bare id",
                json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"}]),
                user_with(
                    json!({"schemas": [USER_SCHEMA, ext], ext: {"manager": {"value": "m-1"}}}),
                ),
            ),
            (
                "extension sub-attribute path",
                json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m-2"}]),
                user_with(
                    json!({"schemas": [USER_SCHEMA, ext], ext: {"manager": {"value": "m-2"}}}),
                ),
            ),
            (
                "path-less value keyed by the extension URN",
                json!([{"op": "replace", "value": {ext: {"Department": "Ops"}, "title": "Lead"}}]),
                user_with(
                    json!({"schemas": [USER_SCHEMA, ext], "title": "Lead", ext: {"department": "Ops"}}),
                ),
            ),
            (
                "path-less value keyed by extension attribute paths",
                json!([{"op": "Replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter": "CC1"}}]),
                user_with(json!({"schemas": [USER_SCHEMA, ext], ext: {"costCenter": "CC1"}})),
            ),
            (
                "path naming the whole extension",
                json!([
                    {"op": "add", "path": ext, "value": {"division": "D"}},
                    {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization", "value": "O"},
                    {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division"}
                ]),
                user_with(json!({"schemas": [USER_SCHEMA, ext], ext: {"organization": "O"}})),
            ),
            (
                "removing the last extension attribute drops the extension",
                json!([
                    {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division", "value": "D"},
                    {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division"}
                ]),
                user(),
            ),
            (
                "removing the whole extension",
                json!([
                    {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division", "value": "D"},
                    {"op": "remove", "path": ext}
                ]),
                user(),
            ),
            (
                "id echoed unchanged is ignored",
                json!([{"op": "replace", "value": {"id": "u-1", "schemas": [USER_SCHEMA], "title": "Lead"}}]),
                user_with(json!({"title": "Lead"})),
            ),
            (
                "password is written for prepare to take out",
                json!([{"op": "replace", "path": "password", "value": "s3cret!"}]),
                user_with(json!({"password": "s3cret!"})),
            ),
            (
                "core schema URN prefix",
                json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:title", "value": "Lead"}]),
                user_with(json!({"title": "Lead"})),
            ),
        ];
        for (name, operations, expected) in cases {
            match patched(&schema, &user(), operations) {
                Ok(out) => assert_eq!(out, expected, "{name}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }

    #[test]
    fn refuses_bad_user_operations() {
        let schema = ResourceSchema::user();
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "remove of a required attribute",
                json!([{"op": "remove", "path": "userName"}]),
                "mutability",
            ),
            (
                "null for a required attribute",
                json!([{"op": "replace", "path": "userName", "value": null}]),
                "mutability",
            ),
            (
                "id",
                json!([{"op": "replace", "path": "id", "value": "u-2"}]),
                "mutability",
            ),
            (
                "id changed in a path-less value",
                json!([{"op": "replace", "value": {"id": "u-2"}}]),
                "mutability",
            ),
            (
                "meta",
                json!([{"op": "add", "path": "meta.created", "value": "2024-01-01T00:00:00Z"}]),
                "mutability",
            ),
            (
                "meta path-less",
                json!([{"op": "replace", "value": {"meta": {}}}]),
                "mutability",
            ),
            (
                "groups",
                json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
                "mutability",
            ),
            (
                "read-only sub-attribute",
                json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName", "value": "x"}]),
                "mutability",
            ),
            (
                "remove of id",
                json!([{"op": "remove", "path": "id"}]),
                "mutability",
            ),
            (
                "uncoercible boolean",
                json!([{"op": "replace", "path": "active", "value": "yes"}]),
                "invalidValue",
            ),
            (
                "uncoercible path-less boolean",
                json!([{"op": "replace", "value": {"active": 1}}]),
                "invalidValue",
            ),
            (
                "list for a single value",
                json!([{"op": "replace", "path": "title", "value": ["a"]}]),
                "invalidValue",
            ),
            (
                "path-less value not an object",
                json!([{"op": "add", "value": "x"}]),
                "invalidValue",
            ),
            (
                "extension value not an object",
                json!([{"op": "add", "value": {ENTERPRISE_USER_SCHEMA: "x"}}]),
                "invalidValue",
            ),
            (
                "two values for one filtered slot",
                json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": [{"value": "a"}, {"value": "b"}]}]),
                "invalidValue",
            ),
            (
                "unknown attribute",
                json!([{"op": "add", "path": "favouriteColour", "value": "green"}]),
                "invalidPath",
            ),
            (
                "unknown path-less attribute",
                json!([{"op": "replace", "value": {"favouriteColour": "green"}}]),
                "invalidPath",
            ),
            (
                "unknown sub-attribute",
                json!([{"op": "add", "path": "name.nick", "value": "x"}]),
                "invalidPath",
            ),
            (
                "unknown extension",
                json!([{"op": "add", "path": "urn:example:ext:1.0:User:x", "value": "x"}]),
                "invalidPath",
            ),
            (
                "extension attribute without its URN",
                json!([{"op": "add", "path": "department", "value": "x"}]),
                "invalidPath",
            ),
            (
                "filter on a simple attribute",
                json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": "y"}]),
                "invalidPath",
            ),
            (
                "filter naming an unknown sub-attribute to create",
                json!([{"op": "add", "path": "emails[kind eq \"x\"].value", "value": "y"}]),
                "invalidPath",
            ),
            (
                "remove by a filter matching nothing",
                json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
                "noTarget",
            ),
            (
                "remove of a sub-attribute by a filter matching nothing",
                json!([{"op": "remove", "path": "emails[type eq \"other\"].value"}]),
                "noTarget",
            ),
            (
                "create from a filter that is not equalities",
                json!([{"op": "add", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "v"}]),
                "noTarget",
            ),
            (
                "create from a negated filter",
                json!([{"op": "add", "path": "emails[not (type eq \"work\") and not (type eq \"home\")].display", "value": "v"}]),
                "noTarget",
            ),
            (
                "atomic: a later failure undoes earlier operations",
                json!([{"op": "replace", "path": "title", "value": "Lead"}, {"op": "remove", "path": "userName"}]),
                "mutability",
            ),
        ];
        for (name, operations, scim_type) in cases {
            match patched(&schema, &user(), operations) {
                Err(e) => assert_eq!(e.scim_type(), Some(scim_type), "{name}: {e}"),
                Ok(out) => panic!("{name}: accepted as {out}"),
            }
        }
    }

    #[test]
    fn applies_group_operations() {
        let schema = ResourceSchema::group();
        let with_members = |members: Value| {
            let mut g = group();
            g["members"] = members;
            g
        };
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "entra adds members without duplicates",
                json!([{"op": "Add", "path": "members", "value": [{"value": "u3"}, {"value": "u1", "display": "Other"}]}]),
                with_members(
                    json!([{"value": "u1", "display": "Ana"}, {"value": "u2"}, {"value": "u3"}]),
                ),
            ),
            (
                "entra removes exactly the listed members",
                json!([{"op": "Remove", "path": "members", "value": [{"value": "u1"}, {"value": "u9"}]}]),
                with_members(json!([{"value": "u2"}])),
            ),
            (
                "okta removes by filter",
                json!([{"op": "remove", "path": "members[value eq \"u2\"]"}]),
                with_members(json!([{"value": "u1", "display": "Ana"}])),
            ),
            (
                "okta replaces the whole list",
                json!([{"op": "replace", "path": "members", "value": [{"value": "u7"}]}]),
                with_members(json!([{"value": "u7"}])),
            ),
            (
                "okta renames with the id echoed",
                json!([{"op": "replace", "value": {"id": "g-1", "displayName": "Tour Guides"}}]),
                {
                    let mut g = group();
                    g["displayName"] = json!("Tour Guides");
                    g
                },
            ),
            (
                "removing every member",
                json!([{"op": "remove", "path": "members", "value": null}]),
                {
                    let mut g = group();
                    g.as_object_mut().map(|o| o.shift_remove("members"));
                    g
                },
            ),
            (
                "member ids are compared exactly",
                json!([{"op": "add", "path": "members", "value": [{"value": "U1"}]}]),
                with_members(
                    json!([{"value": "u1", "display": "Ana"}, {"value": "u2"}, {"value": "U1"}]),
                ),
            ),
        ];
        for (name, operations, expected) in cases {
            match patched(&schema, &group(), operations) {
                Ok(out) => assert_eq!(out, expected, "{name}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
        for (name, operations, scim_type) in [
            (
                "required displayName",
                json!([{"op": "remove", "path": "displayName"}]),
                "mutability",
            ),
            (
                "immutable member id",
                json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u5"}]),
                "mutability",
            ),
            (
                "immutable member display",
                json!([{"op": "replace", "path": "members[value eq \"u1\"].display", "value": "B"}]),
                "mutability",
            ),
            (
                "removing an immutable member id",
                json!([{"op": "remove", "path": "members[value eq \"u1\"].value"}]),
                "mutability",
            ),
            (
                "rename with another id",
                json!([{"op": "replace", "value": {"id": "g-2", "displayName": "x"}}]),
                "mutability",
            ),
            (
                "removing a member that is not there",
                json!([{"op": "remove", "path": "members[value eq \"u9\"]"}]),
                "noTarget",
            ),
        ] {
            match patched(&schema, &group(), operations) {
                Err(e) => assert_eq!(e.scim_type(), Some(scim_type), "{name}: {e}"),
                Ok(out) => panic!("{name}: accepted as {out}"),
            }
        }
    }

    #[test]
    fn patched_resources_prepare_cleanly() {
        let schema = ResourceSchema::user();
        let out = patched(
            &schema,
            &user(),
            json!([
                {"op": "Replace", "value": {"password": "pw", "Active": "False"}},
                {"op": "Add", "path": "emails[type eq \"other\"].value", "value": "x@example.com"}
            ]),
        )
        .expect("valid");
        let prepared = prepare(&schema, &out, Some(&user())).expect("valid resource");
        assert_eq!(prepared.password.as_deref(), Some("pw"));
        assert_eq!(prepared.resource["active"], json!(false));
        assert_eq!(
            prepared.resource["emails"][2],
            json!({"value": "x@example.com", "type": "other"})
        );
    }

    #[test]
    fn apply_on_a_non_object_is_an_internal_error() {
        let mut not_a_resource = json!([1]);
        let result = apply(&mut not_a_resource, &[], &ResourceSchema::user());
        assert!(matches!(result, Err(ScimError::Internal(_))));
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..100).prop_map(Value::from),
            proptest::sample::select(vec![
                "",
                "True",
                "false",
                "work",
                "u1",
                "x",
                "2024-01-01T00:00:00Z",
                "42"
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        proptest::sample::select(vec![
            "value",
            "type",
            "primary",
            "display",
            "givenName",
            "active",
            "title",
            "userName",
            "emails",
            "members",
            "name",
            "name.givenName",
            "id",
            "meta",
            "schemas",
            "department",
            "manager",
            ENTERPRISE_USER_SCHEMA,
            "displayName",
            "bogus",
            "a b",
        ])
        .prop_map(str::to_owned)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    const USER_PATHS: &[&str] = &[
        "userName",
        "active",
        "title",
        "name",
        "name.givenName",
        "emails",
        "emails.value",
        "emails[type eq \"work\"]",
        "emails[type eq \"work\"].value",
        "emails[primary eq true].primary",
        "emails[type eq \"work\" or value pr].display",
        "addresses[type eq \"home\"].country",
        "id",
        "meta",
        "groups",
        "password",
        "nickName",
        "bogus",
        "name.bogus",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ];

    const GROUP_PATHS: &[&str] = &[
        "displayName",
        "members",
        "members.value",
        "members[value eq \"u1\"]",
        "members[value eq \"u3\"]",
        "members[value eq \"u1\"].display",
        "members[type eq \"User\"].display",
        "externalId",
        "id",
        "meta.version",
        "userName",
    ];

    fn patch_path(paths: &'static [&'static str]) -> impl Strategy<Value = Option<ValuePath>> {
        proptest::option::of(
            proptest::sample::select(paths).prop_filter_map("parses", |p| parse_value_path(p).ok()),
        )
    }

    /// Values an IdP would plausibly send, so that enough generated operations succeed.
    fn plausible_value() -> impl Strategy<Value = Value> {
        proptest::sample::select(vec![
            json!("x"),
            json!("u3"),
            json!(true),
            json!("False"),
            json!({"value": "u3"}),
            json!([{"value": "u1", "display": "B"}, {"value": "u4"}]),
            json!([{"value": "x@example.com", "type": "work", "primary": true}]),
            json!({"givenName": "B", "familyName": "C"}),
            json!({"active": false}),
            json!({"title": "T", "name.givenName": "Z"}),
            json!({"id": "u-1", "displayName": "D"}),
            json!({ENTERPRISE_USER_SCHEMA: {"department": "D"}}),
            Value::Null,
        ])
    }

    fn operation(paths: &'static [&'static str]) -> impl Strategy<Value = PatchOperation> {
        let value = prop_oneof![3 => plausible_value(), 1 => json_value()];
        (0..3u8, patch_path(paths), proptest::option::of(value)).prop_map(|(kind, path, value)| {
            match (kind, path) {
                (0, path) => PatchOperation::Add {
                    path,
                    value: value.unwrap_or(Value::Null),
                },
                (1, path) => PatchOperation::Replace {
                    path,
                    value: value.unwrap_or(Value::Null),
                },
                (_, Some(path)) => PatchOperation::Remove { path, value },
                (_, None) => PatchOperation::Add {
                    path: None,
                    value: value.unwrap_or(Value::Null),
                },
            }
        })
    }

    #[test]
    fn operations_and_values_past_the_limits_are_too_many() {
        let one = json!({"op": "add", "path": "emails", "value": {"value": "a@example.com"}});
        let body = request(Value::Array(vec![one; MAX_PATCH_OPERATIONS + 1]));
        assert!(matches!(parse_request(&body), Err(ScimError::TooMany(_))));

        let emails = |count: usize| -> Value {
            (0..count)
                .map(|n| json!({"value": format!("u{n}@example.com")}))
                .collect()
        };
        let schema = ResourceSchema::user();
        let too_many =
            json!([{"op": "add", "path": "emails", "value": emails(MAX_ATTRIBUTE_VALUES + 1)}]);
        assert!(matches!(
            patched(&schema, &user(), too_many),
            Err(ScimError::TooMany(_))
        ));
        // One at a time the user's two emails grow past the cap, and the result is refused.
        let singles: Vec<Value> = (0..MAX_ATTRIBUTE_VALUES - 1)
            .map(|n| json!({"op": "add", "path": "emails", "value": format!("u{n}@example.com")}))
            .collect();
        let grown = patched(&schema, &user(), Value::Array(singles)).expect("applies");
        assert!(matches!(
            prepare(&schema, &grown, None),
            Err(ScimError::TooMany(_))
        ));

        let members: Vec<Value> = (0..=MAX_GROUP_MEMBERS)
            .map(|n| json!({"value": format!("u{n}")}))
            .collect();
        let add = json!([{"op": "add", "path": "members", "value": members}]);
        assert!(matches!(
            patched(&ResourceSchema::group(), &group(), add),
            Err(ScimError::TooMany(_))
        ));
    }

    #[test]
    fn many_adds_merge_into_equal_values_and_keep_one_primary() {
        let schema = ResourceSchema::user();
        let mut ops: Vec<Value> = (0..500)
            .map(|n| json!({"op": "add", "path": "emails", "value": {"value": format!("U{n}@Example.com"), "type": "work"}}))
            .collect();
        ops.push(json!({"op": "add", "path": "emails", "value": {"value": "u7@example.com", "primary": true}}));
        ops.push(json!({"op": "add", "path": "emails", "value": [{"value": "ANA@example.com", "type": "other"}]}));
        let out = patched(&schema, &user(), Value::Array(ops)).expect("applies");
        let emails = out["emails"].as_array().expect("emails");
        assert_eq!(emails.len(), 502, "500 new, two re-added in another case");
        let primaries: Vec<&Value> = emails.iter().filter(|e| is_primary(e)).collect();
        assert_eq!(
            primaries,
            [&json!({"value": "u7@example.com", "type": "work", "primary": true})]
        );
        assert_eq!(
            emails[0]["type"], "other",
            "the re-added value merged in place"
        );
    }

    /// Operations on `emails` that mix indexed adds with every other kind of write to it.
    fn email_operation() -> impl Strategy<Value = PatchOperation> {
        let address =
            proptest::sample::select(vec!["a@x.org", "A@X.org", "b@x.org", "ana@example.com"]);
        let email = (
            address,
            proptest::option::of(proptest::sample::select(vec!["work", "home"])),
            any::<bool>(),
        )
            .prop_map(|(value, kind, primary)| {
                let mut email = json!({"value": value});
                if let Some(kind) = kind {
                    email["type"] = json!(kind);
                }
                if primary {
                    email["primary"] = json!(true);
                }
                email
            });
        let paths = proptest::sample::select(vec![
            "emails",
            "emails.type",
            "emails[value eq \"a@x.org\"]",
            "emails[type eq \"home\"].value",
            "title",
        ])
        .prop_map(|p| parse_value_path(p).ok());
        (0..6u8, proptest::collection::vec(email, 1..3), paths).prop_map(|(kind, emails, path)| {
            let value = Value::Array(emails.clone());
            match (kind, path) {
                (0..=2, _) => PatchOperation::Add {
                    path: parse_value_path("emails").ok(),
                    value,
                },
                (3, Some(path)) => PatchOperation::Remove { path, value: None },
                (4, _) => PatchOperation::Remove {
                    path: ValuePath::from(crate::scim::path::AttrPath::attr("emails")),
                    value: Some(value),
                },
                (_, path) => PatchOperation::Replace {
                    path,
                    value: emails
                        .first()
                        .and_then(|e| e.get("value"))
                        .cloned()
                        .unwrap_or_default(),
                },
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn user_patches_never_panic_and_failures_change_nothing(
            ops in proptest::collection::vec(operation(USER_PATHS), 1..4),
        ) {
            let original = user();
            let mut resource = original.clone();
            match apply(&mut resource, &ops, &ResourceSchema::user()) {
                Err(_) => prop_assert_eq!(resource, original),
                Ok(()) => {
                    let _ = prepare(&ResourceSchema::user(), &resource, Some(&original));
                }
            }
        }

        /// The index `add` keeps from one operation to the next gives what applying the
        /// operations one request at a time gives.
        #[test]
        fn one_request_applies_like_one_request_per_operation(
            ops in proptest::collection::vec(email_operation(), 1..24),
        ) {
            let schema = ResourceSchema::user();
            let mut together = user();
            let batch = apply(&mut together, &ops, &schema);
            let mut one_by_one = user();
            let mut sequential = Ok(());
            for op in &ops {
                sequential = apply(&mut one_by_one, std::slice::from_ref(op), &schema);
                if sequential.is_err() {
                    break;
                }
            }
            prop_assert_eq!(batch.is_ok(), sequential.is_ok(), "{:?} / {:?}", batch, sequential);
            if batch.is_ok() {
                prop_assert_eq!(together, one_by_one);
            }
        }

        #[test]
        fn group_patches_never_panic_and_failures_change_nothing(
            ops in proptest::collection::vec(operation(GROUP_PATHS), 1..4),
        ) {
            let original = group();
            let mut resource = original.clone();
            match apply(&mut resource, &ops, &ResourceSchema::group()) {
                Err(_) => prop_assert_eq!(resource, original),
                Ok(()) => {
                    let _ = prepare(&ResourceSchema::group(), &resource, Some(&original));
                }
            }
        }
    }

    /// A JSON value nested `depth` levels deep, alternating lists and objects.
    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!("x"), |inner, level| {
            if level % 2 == 0 {
                json!([inner])
            } else {
                json!({"value": inner})
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Wide PATCH documents (up to twice the operation limit) with values nested deeper
        /// than any attribute: past the limit the request is refused before anything is
        /// applied; otherwise it applies or fails whole, on a quarter of a worker's stack.
        #[test]
        fn wide_and_deep_patch_documents_apply_or_fail_within_bounds(
            count in 1..(2 * MAX_PATCH_OPERATIONS),
            templates in proptest::collection::vec(0..6u8, 1..8),
            depth in 0..120usize,
        ) {
            let deep = nested(depth);
            let operations: Vec<Value> = (0..count)
                .map(|n| match templates[n % templates.len()] {
                    0 => json!({"op": "add", "path": "emails", "value": {"value": format!("u{n}@x.org")}}),
                    1 => json!({"op": "add", "path": "emails", "value": deep.clone()}),
                    2 => json!({"op": "replace", "path": "emails[value pr].type", "value": "work"}),
                    3 => json!({"op": "remove", "path": "emails", "value": [{"value": format!("u{}@x.org", n / 2)}]}),
                    4 => json!({"op": "replace", "value": {"title": deep.clone()}}),
                    _ => json!({"op": "add", "path": "name.givenName", "value": format!("g{n}")}),
                })
                .collect();
            let body = request(Value::Array(operations));
            let outcome = std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || {
                    let schema = ResourceSchema::user();
                    let ops = parse_request(&body)?;
                    let original = user();
                    let mut resource = original.clone();
                    let applied = apply(&mut resource, &ops, &schema);
                    if applied.is_err() {
                        assert_eq!(resource, original, "a failed PATCH changed the resource");
                    }
                    applied.and_then(|()| prepare(&schema, &resource, Some(&original)).map(|_| ()))
                })
                .expect("spawn")
                .join()
                .expect("no panic");
            if count > MAX_PATCH_OPERATIONS {
                prop_assert!(matches!(outcome, Err(ScimError::TooMany(_))), "{:?}", outcome);
            }
        }
    }
}
