//! Rendering: one assembled SCIM user (groups included) through one target's mapping, giving
//! whether the user is in the target's scope, and the operation, payload and payload hash the
//! fan-out delivers, or why nothing is sent.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

use crate::mapping::check::walk_rule;
use crate::mapping::spec::{
    Condition, FieldRule, Grants, OnInvalid, Part, Policy, Rule, Source, Template,
};
use crate::mapping::transforms::{
    as_bool, as_text, is_blank, quote, ParsedPhones, PhoneRegion, Refusal, Step,
};
use crate::mapping::Mapping;
use crate::scim::filter::{self, matches_value, Filter};
use crate::scim::path::{AttrPath, ValuePath};
use crate::scim::resource::{attribute_value, field};
use crate::scim::schema::{AttrType, ResourceSchema};
use crate::targets::{FieldKind, FieldSpec, Payload};

/// What happened to the user in SCIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Created or changed (including a change to an already inactive user).
    Upsert,
    /// `active` became false.
    Deactivated,
    /// SCIM DELETE.
    Deleted,
}

/// What the target is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create the account, or update the one that exists.
    Upsert,
    /// Update the account with the mapping's `disable_sets` applied.
    Disable,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upsert => "upsert",
            Operation::Disable => "disable",
            Operation::Delete => "delete",
        }
    }
}

/// Whether a target takes a user, by its mapping's `[scope]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scoping {
    /// The mapping has no `[scope]`, or the user matches it.
    In,
    /// The user does not match `[scope]`: the target holds no account for them, or loses
    /// the one it holds as `[deprovision] out_of_scope` says.
    Out,
}

/// What the policies make of a user who is inactive, deleted or out of scope.
struct Trigger {
    key: &'static str,
    policy: Policy,
    what: &'static str,
}

impl Trigger {
    /// How much of the account the policy takes away: a user both deactivated and out of
    /// scope gets the stronger of the two.
    fn weight(&self) -> u8 {
        match self.policy {
            Policy::Ignore => 0,
            Policy::Disable => 1,
            Policy::Delete => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Render {
    Send {
        operation: Operation,
        /// In the target's field names, in the order of the mapping file.
        payload: Payload,
        /// Fields in `payload` to leave out of an update.
        create_only: Vec<String>,
        /// Fields in `payload` never written to an account the bridge adopted
        /// (`managed = false`).
        unmanaged: Vec<String>,
        /// The target field that carries the password. It is never in `payload`: the fan-out
        /// adds the decrypted password on create, and on update only when it changed.
        password_field: Option<String>,
        /// Hex SHA-256 of the payload in canonical form (keys sorted), so equal payloads hash
        /// equal whatever their field order.
        hash: String,
        /// Fields left out because this user's value could not be mapped.
        warnings: Vec<FieldWarning>,
    },
    /// Nothing to do, by policy.
    Skip { reason: String },
    /// The user cannot be sent as mapped; an admin-readable sentence naming field and value.
    Rejected { reason: String },
}

/// A field left out of a payload: the user is sent without it, and an admin can fix the
/// source. Kept with the delivery in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldWarning {
    /// The target field.
    pub field: String,
    /// The value that could not be mapped, as text.
    pub value: String,
    /// Why, in a sentence an admin can act on.
    pub reason: String,
}

/// Why a field has no usable value: the reason alone (for a warning) and the sentence that
/// names the field (for a rejection).
struct FieldRefusal {
    value: Option<Value>,
    reason: String,
    sentence: String,
}

/// Longest value text kept in a warning: enough to recognise it, not a whole pasted document.
const WARNING_VALUE_CHARS: usize = 120;

impl Mapping {
    pub fn render(&self, user: &Value, event: Event) -> Render {
        self.render_with(user, event, &mut ParsedPhones::default())
    }

    /// `render`, reusing the phone numbers other mappings already parsed for this user.
    pub fn render_with(&self, user: &Value, event: Event, phones: &mut ParsedPhones) -> Render {
        self.render_scoped(user, event, self.scoping(user), phones)
    }

    /// Whether this target takes `user`.
    pub(crate) fn scoping(&self, user: &Value) -> Scoping {
        match &self.spec.scope {
            Some(scope) if !filter::matches(&scope.filter, user, &self.scim) => Scoping::Out,
            _ => Scoping::In,
        }
    }

    /// `render_with` for a user whose scoping is already known. Out of scope, the user is
    /// rendered as `out_of_scope` says (or as a deactivation or deletion says, if that takes
    /// more away); whether there is an account to apply it to is the caller's to know.
    pub(crate) fn render_scoped(
        &self,
        user: &Value,
        event: Event,
        scoping: Scoping,
        phones: &mut ParsedPhones,
    ) -> Render {
        let policy = &self.spec.deprovision;
        let by_event = match event {
            Event::Upsert => None,
            Event::Deactivated => Some(Trigger {
                key: "deactivate",
                policy: policy.deactivate,
                what: "SCIM active=false",
            }),
            Event::Deleted => Some(Trigger {
                key: "delete",
                policy: policy.delete,
                what: "SCIM DELETE",
            }),
        };
        let by_scope = (scoping == Scoping::Out).then_some(Trigger {
            key: "out_of_scope",
            policy: policy.out_of_scope,
            what: "leaving [scope]",
        });
        // On a tie the scope names the reason: it is why the user is no longer sent here.
        let trigger = [by_scope, by_event]
            .into_iter()
            .flatten()
            .reduce(|kept, other| {
                if other.weight() > kept.weight() {
                    other
                } else {
                    kept
                }
            });
        let operation = match trigger {
            None => Operation::Upsert,
            Some(trigger) => match trigger.policy {
                Policy::Disable => Operation::Disable,
                Policy::Delete => Operation::Delete,
                Policy::Ignore => {
                    return Render::Skip {
                        reason: format!(
                            "{} is ignored for {}: [deprovision] {} = \"{}\" in {}",
                            trigger.what,
                            self.target,
                            trigger.key,
                            trigger.policy.as_str(),
                            self.file.display()
                        ),
                    }
                }
            },
        };
        match self.payload(user, operation, phones) {
            Ok((payload, password_field, warnings)) => {
                let create_only = self
                    .spec
                    .fields
                    .iter()
                    .filter(|f| f.create_only && payload.contains_key(&f.name))
                    .map(|f| f.name.clone())
                    .collect();
                let unmanaged = self
                    .spec
                    .fields
                    .iter()
                    .filter(|f| !f.managed && payload.contains_key(&f.name))
                    .map(|f| f.name.clone())
                    .collect();
                let hash = payload_hash(&payload);
                Render::Send {
                    operation,
                    payload,
                    create_only,
                    unmanaged,
                    password_field,
                    hash,
                    warnings,
                }
            }
            Err(reason) => Render::Rejected { reason },
        }
    }

    /// The payload, the password field and the fields left out. A value that cannot be mapped
    /// does what its rule's `on_invalid` says: by default a field the target requires (or
    /// finds the account by) rejects the user, any other is left out with a warning. A disable
    /// or delete is never held up by an optional field, whatever its rule says.
    fn payload(
        &self,
        user: &Value,
        operation: Operation,
        phones: &mut ParsedPhones,
    ) -> Result<(Payload, Option<String>, Vec<FieldWarning>), String> {
        let mut payload = Payload::new();
        let mut password_field = None;
        let mut warnings = Vec::new();
        for rule in &self.spec.fields {
            let Some(spec) = self.schema.field(&rule.name) else {
                continue;
            };
            if matches!(rule.rule.source, Source::Password(_)) {
                // A disable is an update too, and a target that wants the password on every
                // update (Kibo) wants it there; a delete sends no body.
                if operation != Operation::Delete {
                    password_field = Some(rule.name.clone());
                }
                continue;
            }
            match self.field_value(rule, spec, user, phones) {
                Ok(Some(value)) => {
                    payload.insert(rule.name.clone(), value);
                }
                Ok(None) => {}
                Err(refusal) => {
                    let needed = is_needed(spec, self.schema.natural_key);
                    let rejects = match rule.on_invalid {
                        Some(OnInvalid::Reject) => operation == Operation::Upsert,
                        Some(OnInvalid::Omit) | None => false,
                    };
                    if needed || rejects {
                        return Err(refusal.sentence);
                    }
                    warnings.push(FieldWarning {
                        field: rule.name.clone(),
                        value: refusal.value.as_ref().map(shown_value).unwrap_or_default(),
                        reason: refusal.reason,
                    });
                }
            }
        }
        if operation == Operation::Disable {
            for set in &self.spec.deprovision.disable_sets {
                payload.insert(set.field.clone(), set.value.clone());
            }
            // A field the disable sets is sent after all, whatever the user's value was.
            warnings.retain(|w| !payload.contains_key(&w.field));
        }
        for spec in &self.schema.fields {
            let needed = match operation {
                Operation::Delete => self.schema.natural_key.contains(&spec.name),
                Operation::Upsert | Operation::Disable => is_needed(spec, self.schema.natural_key),
            };
            let carried = payload.contains_key(spec.name) || self.is_password_field(spec.name);
            if needed && !spec.read_only && !carried {
                return Err(self.missing(spec.name));
            }
        }
        Ok((payload, password_field, warnings))
    }

    fn is_password_field(&self, name: &str) -> bool {
        self.spec
            .fields
            .iter()
            .any(|f| f.name == name && matches!(f.rule.source, Source::Password(_)))
    }

    fn missing(&self, field: &str) -> String {
        let mut places = Vec::new();
        if let Some(rule) = self.spec.fields.iter().find(|f| f.name == field) {
            sources(&rule.rule, &mut places);
        }
        match places.as_slice() {
            [] => format!(
                "{} needs '{field}', but the mapping gives it no value",
                self.target
            ),
            [one] => format!(
                "{} needs '{field}', but this user has no value in {one}",
                self.target
            ),
            [several @ .., last] => format!(
                "{} needs '{field}', but this user has no value in any of {} or {last}",
                self.target,
                several.join(", ")
            ),
        }
    }

    /// The field's value in the payload; `None` leaves the field out.
    fn field_value(
        &self,
        rule: &FieldRule,
        spec: &FieldSpec,
        user: &Value,
        phones: &mut ParsedPhones,
    ) -> Result<Option<Value>, FieldRefusal> {
        if !self.applies(&rule.rule, user) {
            return Ok(None);
        }
        let named = |refusal: Refusal| FieldRefusal {
            sentence: format!("'{}': {}", rule.name, refusal.reason),
            value: refusal.value,
            reason: refusal.reason,
        };
        let values = self.produce(&rule.rule, user, phones).map_err(named)?;
        let first = values.first().cloned();
        let value = shape_for(spec, values).map_err(|reason| {
            named(Refusal {
                value: first,
                reason,
            })
        })?;
        if let Some(Value::String(text)) = &value {
            self.constrain(spec, text)?;
        }
        Ok(value)
    }

    /// Refuses text the target would refuse, saying how the mapping could avoid it.
    fn constrain(&self, spec: &FieldSpec, text: &str) -> Result<(), FieldRefusal> {
        let shown = quote(&Value::String(text.to_owned()));
        let refusal = |reason: String, sentence: String| FieldRefusal {
            value: Some(Value::String(text.to_owned())),
            reason,
            sentence,
        };
        if !spec.allowed.is_empty() && !spec.allowed.contains(&text) {
            let accepted = spec.allowed.join(", ");
            return Err(refusal(
                format!(
                    "{shown} is not a value {} accepts ({accepted})",
                    self.target
                ),
                format!(
                    "'{}' would be {shown}, which {} does not accept; it accepts {accepted}",
                    spec.name, self.target
                ),
            ));
        }
        if let Some(max) = spec.max_len {
            let length = text.chars().count();
            if length > max {
                let fix = format!("add {{ truncate = {max} }} to its transform to cut it instead");
                return Err(refusal(
                    format!(
                        "{shown} is {length} characters, but {} accepts at most {max}; {fix}",
                        self.target
                    ),
                    format!(
                        "'{}' would be {shown} ({length} characters), but {} accepts at most \
                         {max}; {fix}",
                        spec.name, self.target
                    ),
                ));
            }
        }
        Ok(())
    }

    fn applies(&self, rule: &Rule, user: &Value) -> bool {
        rule.when
            .as_ref()
            .is_none_or(|when| filter::matches(&when.filter, user, &self.scim))
    }

    /// A rule's values, or none when its condition does not hold.
    fn values(
        &self,
        rule: &Rule,
        user: &Value,
        phones: &mut ParsedPhones,
    ) -> Result<Vec<Value>, Refusal> {
        if self.applies(rule, user) {
            self.produce(rule, user, phones)
        } else {
            Ok(Vec::new())
        }
    }

    /// A rule's values, its own condition already checked.
    fn produce(
        &self,
        rule: &Rule,
        user: &Value,
        phones: &mut ParsedPhones,
    ) -> Result<Vec<Value>, Refusal> {
        let mut values = match &rule.source {
            Source::Path(path) => read(user, &path.path, &self.scim),
            Source::Password(_) => Vec::new(),
            Source::Template(template) => self.template(template, user)?,
            Source::Const(Value::Array(items), _) => items.clone(),
            Source::Const(value, _) => vec![value.clone()],
            Source::FirstOf(alternatives) => {
                let mut found = Vec::new();
                for alternative in alternatives {
                    found = self.values(alternative, user, phones)?;
                    if !found.is_empty() {
                        break;
                    }
                }
                found
            }
            Source::Object(members) => {
                let mut object = Map::new();
                for member in members {
                    if let Some(first) = self.values(&member.rule, user, phones)?.into_iter().next()
                    {
                        object.insert(member.name.clone(), first);
                    }
                }
                if object.is_empty() {
                    Vec::new()
                } else {
                    vec![Value::Object(object)]
                }
            }
            Source::Grants(grants) => self.grants(grants, user),
        };
        values.retain(|value| !is_blank(value));
        for step in &rule.transforms {
            values = step.step.apply(values, user, phones)?;
        }
        Ok(values)
    }

    fn template(&self, template: &Template, user: &Value) -> Result<Vec<Value>, String> {
        let mut out = String::new();
        for part in &template.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Path(path) => {
                    let Some(first) = read(user, &path.path, &self.scim).into_iter().next() else {
                        // A template is all or nothing, so "{given} {family}" never yields a
                        // half name; first_of gives the fallback.
                        return Ok(Vec::new());
                    };
                    out.push_str(
                        &as_text(&first).map_err(|why| format!("{{{}}}: {why}", path.text))?,
                    );
                }
            }
        }
        Ok(vec![Value::String(out)])
    }

    /// The entries the user qualifies for, then, when the mapping says how to revoke, every
    /// other managed entry marked for removal.
    fn grants(&self, grants: &Grants, user: &Value) -> Vec<Value> {
        let mut granted: Vec<Value> = Vec::new();
        for grant in &grants.grants {
            if filter::matches(&grant.when.filter, user, &self.scim)
                && !granted.contains(&grant.entry)
            {
                granted.push(grant.entry.clone());
            }
        }
        let mut entries = granted.clone();
        if let Some((revoke, _)) = &grants.revoke {
            for grant in &grants.grants {
                let Value::Object(entry) = &grant.entry else {
                    continue;
                };
                if granted.contains(&grant.entry) {
                    continue;
                }
                let mut revoked = entry.clone();
                revoked.extend(revoke.iter().map(|(k, v)| (k.clone(), v.clone())));
                let revoked = Value::Object(revoked);
                if !entries.contains(&revoked) {
                    entries.push(revoked);
                }
            }
        }
        // An empty list is a real value here: it tells the target the user holds none.
        vec![Value::Array(entries)]
    }
}

impl Mapping {
    /// How this mapping reads `user`'s phone numbers written without a `+country` code: one
    /// sentence per way its phone transforms choose a region, for the preview.
    pub(crate) fn phone_regions(&self, user: &Value) -> Vec<String> {
        let mut seen: Vec<PhoneRegion> = Vec::new();
        for field in &self.spec.fields {
            walk_rule(&field.rule, &mut |rule| {
                for step in &rule.transforms {
                    if let Step::Phone(_, region) = step.step {
                        if !seen.contains(&region) {
                            seen.push(region);
                        }
                    }
                }
            });
        }
        seen.into_iter()
            .map(|region| match (region, region.resolve(user)) {
                (PhoneRegion::Unset, _) => "phone region: none; only numbers written with a \
                                            +country code are read"
                    .to_owned(),
                (_, Some(choice)) => format!(
                    "phone region: {} ({}); numbers written with a +country code keep theirs",
                    choice.id.as_ref(),
                    choice.why
                ),
                (_, None) => "phone region: none; the user has no address country or locale \
                              with a region and the mapping names no default, so only numbers \
                              written with a +country code are read"
                    .to_owned(),
            })
            .collect()
    }

    /// Whether the rule of `field` reads phone numbers in each user's own region.
    pub(crate) fn reads_user_region(&self, field: &str) -> bool {
        let mut found = false;
        if let Some(rule) = self.spec.fields.iter().find(|f| f.name == field) {
            walk_rule(&rule.rule, &mut |rule| {
                found |= rule
                    .transforms
                    .iter()
                    .any(|step| matches!(step.step, Step::Phone(_, PhoneRegion::User { .. })));
            });
        }
        found
    }
}

/// What the preview and the diff say about scope.
impl Mapping {
    /// `[scope] filter` as written, if the file has one.
    pub(crate) fn scope_filter(&self) -> Option<&str> {
        self.spec.scope.as_ref().map(|scope| scope.text.as_str())
    }

    /// `[deprovision] out_of_scope`, as written (or its default).
    pub(crate) fn out_of_scope(&self) -> Policy {
        self.spec.deprovision.out_of_scope
    }

    /// Why `user` is out of this target's scope: the clauses of `[scope]` that do not hold,
    /// each with what the user has there. `None` when the user is in scope.
    pub(crate) fn scope_miss(&self, user: &Value) -> Option<String> {
        let scope: &Condition = self.spec.scope.as_ref()?;
        if filter::matches(&scope.filter, user, &self.scim) {
            return None;
        }
        let mut unmet = Vec::new();
        self.unmet(&scope.filter, user, &mut unmet);
        Some(format!(
            "[scope] filter '{}' does not match: {}",
            scope.text,
            unmet.join("; ")
        ))
    }

    /// The clauses under `filter` that fail for `user`, as sentences. Of an `and`, the
    /// failing sides; of an `or`, every side (none held).
    fn unmet(&self, filter: &Filter, user: &Value, out: &mut Vec<String>) {
        match filter {
            Filter::And(left, right) => {
                for side in [left, right] {
                    if !filter::matches(side, user, &self.scim) {
                        self.unmet(side, user, out);
                    }
                }
            }
            Filter::Or(left, right) => {
                self.unmet(left, user, out);
                self.unmet(right, user, out);
            }
            Filter::Not(inner) => out.push(format!(
                "'{filter}' does not hold: the user matches '{inner}'"
            )),
            Filter::Compare { path, .. } | Filter::Present(path) => out.push(format!(
                "'{filter}' does not hold; {}",
                self.has(user, path)
            )),
            Filter::ValuePath { path, .. } => {
                let shown = self
                    .scim
                    .locate(path)
                    .and_then(|at| {
                        ["display", "value"]
                            .into_iter()
                            .find(|sub| at.attr.sub_attribute(sub).is_some())
                    })
                    .map_or_else(|| path.clone(), |sub| path.with_sub(Some(sub)));
                out.push(format!(
                    "'{filter}' does not hold; {}",
                    self.has(user, &shown)
                ))
            }
        }
    }

    /// What `user` has at `path`, for an explanation: "the user has title = 'Engineer'".
    fn has(&self, user: &Value, path: &AttrPath) -> String {
        let read_path = ValuePath {
            attr: path.with_sub(None),
            filter: None,
            sub_attr: path.sub_attr.clone(),
        };
        let values: Vec<String> = read(user, &read_path, &self.scim)
            .iter()
            .map(quote)
            .collect();
        if values.is_empty() {
            format!("the user has no {path}")
        } else {
            format!("the user has {path} = {}", values.join(", "))
        }
    }
}

/// A value as a warning shows it: text as is, anything else as JSON, cut to a readable length.
fn shown_value(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > WARNING_VALUE_CHARS {
        let cut: String = text.chars().take(WARNING_VALUE_CHARS).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub(crate) fn is_needed(spec: &FieldSpec, natural_key: &[&str]) -> bool {
    spec.required_on_create || spec.required_on_update || natural_key.contains(&spec.name)
}

/// The SCIM paths a rule reads, as written in the file, with their conditions.
fn sources(rule: &Rule, out: &mut Vec<String>) {
    let before = out.len();
    match &rule.source {
        Source::Path(path) => out.push(path.text.clone()),
        Source::Template(template) => {
            out.extend(template.parts.iter().filter_map(|part| match part {
                Part::Path(path) => Some(path.text.clone()),
                Part::Text(_) => None,
            }))
        }
        Source::FirstOf(alternatives) => alternatives.iter().for_each(|a| sources(a, out)),
        Source::Object(members) => members.iter().for_each(|m| sources(&m.rule, out)),
        Source::Const(..) => out.push("a constant".to_owned()),
        Source::Password(_) | Source::Grants(_) => {}
    }
    if let Some(when) = &rule.when {
        if out.len() == before + 1 {
            if let Some(last) = out.last_mut() {
                *last = format!("{last} (when {})", when.text);
            }
        }
    }
}

/// The values a SCIM path reaches in a user: each matching element's sub-attribute, in the
/// order the user lists them, blanks left out.
fn read(user: &Value, path: &ValuePath, scim: &ResourceSchema) -> Vec<Value> {
    let Some(at) = scim.locate(&path.attr) else {
        return Vec::new();
    };
    let Some(raw) = attribute_value(user, &at) else {
        return Vec::new();
    };
    let elements = match raw {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let selected = elements.into_iter().filter(|element| {
        path.filter
            .as_ref()
            .is_none_or(|filter| matches_value(filter, element, at.attr))
    });
    let (leaves, leaf_def): (Vec<&Value>, _) = match &path.sub_attr {
        None => (selected.collect(), Some(at.attr)),
        Some(sub) => (
            selected
                .filter_map(|element| element.as_object().and_then(|o| field(o, sub)))
                .flat_map(|value| match value {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    single => vec![single],
                })
                .collect(),
            at.attr.sub_attribute(sub),
        ),
    };
    let boolean = leaf_def.is_some_and(|def| def.attr_type == AttrType::Boolean);
    leaves
        .into_iter()
        .filter(|value| !is_blank(value))
        .map(|value| match (boolean, as_bool(value)) {
            // Entra ID sends booleans as "True"/"False"; the schema says what they mean.
            (true, Some(b)) => Value::Bool(b),
            _ => value.clone(),
        })
        .collect()
}

/// Values in the form the field takes: the first for a single field, all (without repeats)
/// for a list field, which is sent even when empty.
fn shape_for(spec: &FieldSpec, values: Vec<Value>) -> Result<Option<Value>, String> {
    let list = |values: Vec<Value>, each: &dyn Fn(Value) -> Result<Value, String>| {
        let mut out: Vec<Value> = Vec::new();
        for value in values.into_iter().flat_map(|v| match v {
            Value::Array(items) => items,
            single => vec![single],
        }) {
            let value = each(value)?;
            if !out.contains(&value) {
                out.push(value);
            }
        }
        Ok(Some(Value::Array(out)))
    };
    let text = |value: Value| as_text(&value).map(Value::String);
    let object = |value: Value| match value {
        Value::Object(_) => Ok(value),
        other => Err(format!("expected an object, found {}", quote(&other))),
    };
    match spec.kind {
        FieldKind::StringArray => list(values, &text),
        FieldKind::ObjectArray => list(values, &object),
        FieldKind::String
        | FieldKind::Boolean
        | FieldKind::Integer
        | FieldKind::Number
        | FieldKind::Object => {
            let Some(first) = values.into_iter().next() else {
                return Ok(None);
            };
            match spec.kind {
                FieldKind::Boolean => as_bool(&first)
                    .map(|b| Some(Value::Bool(b)))
                    .ok_or_else(|| format!("expected true or false, found {}", quote(&first))),
                FieldKind::Integer => integer(&first)
                    .map(|n| Some(Value::from(n)))
                    .ok_or_else(|| format!("expected a whole number, found {}", quote(&first))),
                FieldKind::Number => number(&first)
                    .map(|n| Some(Value::Number(n)))
                    .ok_or_else(|| format!("expected a number, found {}", quote(&first))),
                FieldKind::Object => object(first).map(Some),
                _ => text(first).map(Some),
            }
        }
    }
}

fn number(value: &Value) -> Option<serde_json::Number> {
    match value {
        Value::Number(n) => Some(n.clone()),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Hex SHA-256 of the payload written with sorted keys and no spaces.
pub(crate) fn payload_hash(payload: &Payload) -> String {
    let mut canonical = Vec::with_capacity(512);
    write_members(payload.iter(), &mut canonical);
    hex::encode(Sha256::digest(&canonical))
}

/// Compact JSON with every object's keys in byte order, so equal payloads write equal bytes.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(members) => write_members(members.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_compact(scalar, out),
    }
}

fn write_members<'v>(members: impl Iterator<Item = (&'v String, &'v Value)>, out: &mut Vec<u8>) {
    let mut members: Vec<_> = members.collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (index, (key, value)) in members.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_compact(key, out);
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

fn write_compact(value: &(impl serde::Serialize + ?Sized), out: &mut Vec<u8>) {
    // Writing a string or a scalar into memory cannot fail.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::test_support::{load, with_fields};

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223",
            "userName": "ana.lima@example.com",
            "name": {"givenName": "Ana", "familyName": "Lima"},
            "title": "Principal Engineer, Platform Reliability",
            "locale": "pt-BR",
            "active": "False",
            "emails": [
                {"value": "ana@home.example", "type": "home"},
                {"value": "ana.lima@example.com", "type": "work", "primary": true}
            ],
            "phoneNumbers": [{"value": "+1 415 555 0132", "type": "mobile"}],
            "groups": [{"value": "g1", "display": "Schedulers"}]
        })
    }

    fn send(rendered: Render) -> (Operation, Value, Vec<String>, Option<String>) {
        match rendered {
            Render::Send {
                operation,
                payload,
                create_only,
                password_field,
                ..
            } => (
                operation,
                Value::Object(payload),
                create_only,
                password_field,
            ),
            other => panic!("expected a payload, got {other:?}"),
        }
    }

    fn rejected(rendered: Render) -> String {
        match rendered {
            Render::Rejected { reason } => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_number_field_takes_any_number_and_numeric_text() {
        let spec = FieldSpec::optional("score", FieldKind::Number);
        let shaped = |value: Value| shape_for(&spec, vec![value]);
        assert_eq!(shaped(json!(0.5)), Ok(Some(json!(0.5))));
        assert_eq!(shaped(json!(3)), Ok(Some(json!(3))));
        assert_eq!(shaped(json!(" 2.25 ")), Ok(Some(json!(2.25))));
        assert!(shaped(json!("many")).is_err());
        assert!(shaped(json!(true)).is_err());
    }

    #[test]
    fn an_upsert_maps_every_kind_of_rule() {
        let mapping = load(&with_fields(
            r#"firstName = { template = "{name.givenName} ({userName})", create_only = true }
title = { from = "title", transform = [{ truncate = 25 }, "trim"] }
status = { from = "active", transform = [{ table = { true = "ACTIVE", false = "INACTIVE" } }] }
userLocale = { from = "locale", transform = [{ replace = { find = "-", with = "_" } }, { table = { pt_BR = "pt_BR", en_US = "en" } }] }
mobile = { from = 'phoneNumbers[type eq "mobile"].value', transform = ["phone_national"] }
countryCode = { from = 'phoneNumbers[type eq "mobile"].value', transform = ["phone_country_code"] }
enabled = "active"
tags = { from = "emails.type", transform = ["upper"] }
userKey = { object = { username = "userName", authenticator = { value = "local" } } }
userProducts = { grants = [{ group = "Schedulers", entry = { productName = "SCHEDULE" } }, { group = "Portfolio", entry = { productName = "PORTFOLIO" } }], revoke = { action = "DELETE" } }"#,
        ))
        .expect("valid mapping");
        let (operation, payload, create_only, password) =
            send(mapping.render(&user(), Event::Upsert));
        assert_eq!(operation, Operation::Upsert);
        assert_eq!(
            payload,
            json!({
                "email": "ana.lima@example.com",
                "lastName": "Lima",
                "firstName": "Ana (ana.lima@example.com)",
                "title": "Principal Engineer, Platf",
                "status": "INACTIVE",
                "userLocale": "pt_BR",
                "mobile": "4155550132",
                "countryCode": "1",
                "enabled": false,
                "tags": ["HOME", "WORK"],
                "userKey": {"username": "ana.lima@example.com", "authenticator": "local"},
                "userProducts": [
                    {"productName": "SCHEDULE"},
                    {"productName": "PORTFOLIO", "action": "DELETE"}
                ]
            })
        );
        assert_eq!(create_only, ["firstName"]);
        assert_eq!(password.as_deref(), Some("password"));
    }

    #[test]
    fn fields_not_managed_on_adopted_accounts_are_listed_and_the_flag_is_checked() {
        let mapping = load(&with_fields(
            r#"title = { from = "title", transform = [{ truncate = 25 }], managed = false }
mobile = { from = 'phoneNumbers[type eq "mobile"].value', managed = true }"#,
        ))
        .expect("valid mapping");
        match mapping.render(&user(), Event::Upsert) {
            Render::Send { unmanaged, .. } => assert_eq!(unmanaged, ["title"]),
            other => panic!("expected a payload, got {other:?}"),
        }
        let errors = load(&with_fields(
            r#"title = { from = "title", managed = "no" }"#,
        ))
        .expect_err("a flag that is not a boolean");
        assert!(
            format!("{errors:?}").contains("'managed' must be true or false"),
            "{errors:?}"
        );
    }

    #[test]
    fn fallbacks_templates_and_conditions() {
        let mapping = load(&with_fields(
            r#"firstName = { first_of = [{ template = "{name.givenName} {name.middleName}" }, "displayName", "userName"] }
title = { from = "title", when = 'groups[display eq "Managers"]' }
mobile = { first_of = ['phoneNumbers[type eq "work"].value', { value = "none" }] }"#,
        ))
        .expect("valid mapping");
        let (_, payload, _, _) = send(mapping.render(&user(), Event::Upsert));
        assert_eq!(payload["firstName"], json!("ana.lima@example.com"));
        assert_eq!(payload["mobile"], json!("none"));
        assert!(payload.get("title").is_none(), "{payload}");
    }

    #[test]
    fn deprovisioning_follows_the_policy() {
        let mapping = load(&with_fields("status = { value = \"ACTIVE\" }")).expect("valid");
        let (operation, payload, _, password) = send(mapping.render(&user(), Event::Deactivated));
        assert_eq!(operation, Operation::Disable);
        assert_eq!(payload["status"], json!("INACTIVE"));
        assert_eq!(payload["enabled"], json!(false));
        assert_eq!(
            password.as_deref(),
            Some("password"),
            "a disable is an update"
        );
        let (operation, _, _, password) = send(mapping.render(&user(), Event::Deleted));
        assert_eq!(operation, Operation::Delete);
        assert_eq!(password, None, "a delete sends no body");

        let ignoring = with_fields("").replace("delete = \"delete\"", "delete = \"ignore\"");
        let mapping = load(&ignoring).expect("valid");
        match mapping.render(&user(), Event::Deleted) {
            Render::Skip { reason } => assert_eq!(
                reason,
                "SCIM DELETE is ignored for test: [deprovision] delete = \"ignore\" in \
                 mappings/test.toml"
            ),
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    /// The test mapping with `[scope]` and, if given, `out_of_scope`.
    fn scoped(filter: &str, out_of_scope: Option<&str>) -> Mapping {
        let mut text = with_fields("");
        if let Some(policy) = out_of_scope {
            text = text.replace(
                "delete = \"delete\"\n",
                &format!("delete = \"delete\"\nout_of_scope = \"{policy}\"\n"),
            );
        }
        load(&format!("[scope]\nfilter = '{filter}'\n{text}")).expect("valid mapping")
    }

    fn operation(rendered: Render) -> Option<Operation> {
        match rendered {
            Render::Send { operation, .. } => Some(operation),
            Render::Skip { .. } => None,
            Render::Rejected { reason } => panic!("rejected: {reason}"),
        }
    }

    #[test]
    fn a_user_outside_the_scope_is_deprovisioned_as_out_of_scope_says() {
        let active = |mut user: Value| {
            user["active"] = json!(true);
            user
        };
        let member = active(user());
        let outsider = active(json!({"userName": "bo", "name": {"familyName": "Bo"},
            "emails": [{"value": "bo@example.com", "primary": true}]}));
        let by_default = scoped(r#"groups[display eq "Schedulers"]"#, None);
        assert_eq!(by_default.scoping(&member), Scoping::In);
        assert_eq!(by_default.scoping(&outsider), Scoping::Out);
        assert_eq!(
            operation(by_default.render(&member, Event::Upsert)),
            Some(Operation::Upsert)
        );
        let (op, payload, _, _) = send(by_default.render(&outsider, Event::Upsert));
        assert_eq!(op, Operation::Disable, "out_of_scope defaults to disable");
        assert_eq!(payload["status"], json!("INACTIVE"));

        let deleting = scoped(r#"groups[display eq "Schedulers"]"#, Some("delete"));
        assert_eq!(
            operation(deleting.render(&outsider, Event::Upsert)),
            Some(Operation::Delete)
        );
        let ignoring = scoped(r#"groups[display eq "Schedulers"]"#, Some("ignore"));
        match ignoring.render(&outsider, Event::Upsert) {
            Render::Skip { reason } => assert_eq!(
                reason,
                "leaving [scope] is ignored for test: [deprovision] out_of_scope = \"ignore\" \
                 in mappings/test.toml"
            ),
            other => panic!("expected a skip, got {other:?}"),
        }
        assert_eq!(
            operation(ignoring.render(&member, Event::Upsert)),
            Some(Operation::Upsert),
            "the policy only applies outside the scope"
        );
    }

    #[test]
    fn out_of_scope_and_deprovisioned_takes_the_stronger_policy() {
        let outsider = json!({"userName": "bo", "active": false, "name": {"familyName": "Bo"},
            "emails": [{"value": "bo@example.com", "primary": true}]});
        // deactivate = disable, delete = delete in the test mapping.
        let ignoring = scoped("title pr", Some("ignore"));
        assert_eq!(
            operation(ignoring.render(&outsider, Event::Deactivated)),
            Some(Operation::Disable),
            "a deactivated user is still disabled where scope would leave the account"
        );
        let deleting = scoped("title pr", Some("delete"));
        assert_eq!(
            operation(deleting.render(&outsider, Event::Deactivated)),
            Some(Operation::Delete)
        );
        let disabling = scoped("title pr", Some("disable"));
        assert_eq!(
            operation(disabling.render(&outsider, Event::Deleted)),
            Some(Operation::Delete)
        );
    }

    #[test]
    fn an_extension_attribute_scope_and_why_a_user_is_outside_it() {
        let mapping = scoped(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Planning" and (title pr or not (userType eq "Contractor"))"#,
            None,
        );
        let mut planner = user();
        planner["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] =
            json!({"department": "Planning"});
        assert_eq!(mapping.scoping(&planner), Scoping::In);
        assert_eq!(mapping.scope_miss(&planner), None);

        let mut sales = json!({"userName": "bo", "userType": "Contractor",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}});
        assert_eq!(mapping.scoping(&sales), Scoping::Out);
        let why = mapping.scope_miss(&sales).expect("out of scope");
        assert!(
            why.contains(
                "'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \
                 \"Planning\"' does not hold; the user has \
                 urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department = 'Sales'"
            ),
            "{why}"
        );
        assert!(
            why.contains("'title pr' does not hold; the user has no title"),
            "{why}"
        );
        assert!(
            why.contains("'not (userType eq \"Contractor\")' does not hold: the user matches"),
            "{why}"
        );

        sales["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"] =
            json!("planning");
        sales["title"] = json!("Scheduler");
        assert_eq!(
            mapping.scoping(&sales),
            Scoping::In,
            "text compares as SCIM filters do, without case"
        );

        let groups = scoped(r#"groups[display eq "Planners"]"#, None);
        assert_eq!(
            groups.scope_miss(&user()).as_deref(),
            Some(
                "[scope] filter 'groups[display eq \"Planners\"]' does not match: \
                 'groups[display eq \"Planners\"]' does not hold; the user has \
                 groups.display = 'Schedulers'"
            )
        );
    }

    fn warnings(rendered: Render) -> Vec<FieldWarning> {
        match rendered {
            Render::Send { warnings, .. } => warnings,
            other => panic!("expected a payload, got {other:?}"),
        }
    }

    #[test]
    fn an_optional_value_the_target_would_refuse_is_left_out_with_a_warning() {
        let mapping = load(&with_fields("title = \"title\"")).expect("valid");
        let rendered = mapping.render(&user(), Event::Upsert);
        assert_eq!(
            warnings(rendered.clone()),
            [FieldWarning {
                field: "title".to_owned(),
                value: "Principal Engineer, Platform Reliability".to_owned(),
                reason: "'Principal Engineer, Platform Reliability' is 40 characters, but test \
                         accepts at most 25; add { truncate = 25 } to its transform to cut it \
                         instead"
                    .to_owned()
            }]
        );
        let (_, payload, _, _) = send(rendered);
        assert!(payload.get("title").is_none(), "{payload}");

        let mapping = load(&with_fields(
            "mobile = { from = \"title\", transform = [\"phone_e164\"] }",
        ))
        .expect("valid");
        assert_eq!(
            warnings(mapping.render(&user(), Event::Upsert)),
            [FieldWarning {
                field: "mobile".to_owned(),
                value: "Principal Engineer, Platform Reliability".to_owned(),
                reason: "'Principal Engineer, Platform Reliability' is not a readable phone \
                         number (it has no +country code and the transform names no region)"
                    .to_owned()
            }]
        );
    }

    #[test]
    fn on_invalid_reject_refuses_the_user_with_a_reason() {
        let mapping = load(&with_fields(
            "title = { from = \"title\", on_invalid = \"reject\" }",
        ))
        .expect("valid");
        assert_eq!(
            rejected(mapping.render(&user(), Event::Upsert)),
            "'title' would be 'Principal Engineer, Platform Reliability' (40 characters), but \
             test accepts at most 25; add { truncate = 25 } to its transform to cut it instead"
        );
        // A disable is not held up by an optional field: it is left out.
        let (_, payload, _, _) = send(mapping.render(&user(), Event::Deactivated));
        assert!(payload.get("title").is_none());

        let mapping = load(&with_fields(
            "userLocale = { from = \"locale\", on_invalid = \"reject\" }",
        ))
        .expect("valid");
        assert_eq!(
            rejected(mapping.render(&user(), Event::Upsert)),
            "'userLocale' would be 'pt-BR', which test does not accept; it accepts en, de, pt_BR"
        );

        let mapping = load(&with_fields(
            "mobile = { from = \"title\", transform = [\"phone_e164\"], on_invalid = \"reject\" }",
        ))
        .expect("valid");
        assert_eq!(
            rejected(mapping.render(&user(), Event::Upsert)),
            "'mobile': 'Principal Engineer, Platform Reliability' is not a readable phone number \
             (it has no +country code and the transform names no region)"
        );
    }

    #[test]
    fn a_required_value_that_cannot_be_mapped_still_rejects_the_user() {
        // The natural key, read through a phone transform that cannot read it.
        let mapping = load(&with_fields("").replace(
            "email = 'emails[primary eq true].value'",
            "email = { from = \"title\", transform = [{ truncate = 5 }, \"phone_e164\"] }",
        ))
        .expect("valid");
        assert_eq!(
            rejected(mapping.render(&user(), Event::Upsert)),
            "'email': 'Princ' is not a readable phone number (it has no +country code and the \
             transform names no region)"
        );
    }

    #[test]
    fn phone_numbers_are_read_in_the_users_own_region() {
        let mapping = load(&with_fields(
            r#"mobile = { from = 'phoneNumbers[type eq "mobile"].value', transform = [{ phone_e164 = { region = "user", default = "US" } }] }
countryCode = { from = 'phoneNumbers[type eq "mobile"].value', transform = [{ phone_country_code = "user" }] }
title = { from = 'phoneNumbers[type eq "mobile"].value', transform = [{ phone_national = "user" }] }"#,
        ))
        .expect("valid");
        let person = |extra: Value| {
            let mut user = user();
            user["locale"] = Value::Null;
            for (key, value) in extra.as_object().expect("object") {
                user[key] = value.clone();
            }
            user
        };
        let cases = [
            // Okta's form of a German locale, and a work address in Germany.
            (
                json!({"locale": "de_DE", "addresses": [{"type": "work", "country": "DE"}],
                       "phoneNumbers": [{"value": "0151 23456789", "type": "mobile"}]}),
                json!(["+4915123456789", "49", "15123456789"]),
            ),
            // Entra's form of a French locale, no address.
            (
                json!({"preferredLanguage": "fr-FR",
                       "phoneNumbers": [{"value": "06 12 34 56 78", "type": "mobile"}]}),
                json!(["+33612345678", "33", "612345678"]),
            ),
            // The primary address wins over the work address and the locale.
            (
                json!({"locale": "fr-FR", "addresses": [
                          {"type": "work", "country": "FR"},
                          {"type": "home", "country": "br", "primary": "True"}],
                       "phoneNumbers": [{"value": "(11) 98765-4321", "type": "mobile"}]}),
                json!(["+5511987654321", "55", "11987654321"]),
            ),
            // A number with its country code keeps it, wherever the user is.
            (
                json!({"locale": "ja-JP",
                       "phoneNumbers": [{"value": "+91 98765 43210", "type": "mobile"}]}),
                json!(["+919876543210", "91", "9876543210"]),
            ),
            // Nothing to go by: the default for E.164; "user" alone has no default.
            (
                json!({"phoneNumbers": [{"value": "(415) 555-0132", "type": "mobile"}]}),
                json!(["+14155550132", null, null]),
            ),
        ];
        for (extra, expected) in cases {
            let user = person(extra);
            let rendered = mapping.render(&user, Event::Upsert);
            let (_, payload, _, _) = send(rendered);
            assert_eq!(
                json!([
                    payload.get("mobile"),
                    payload.get("countryCode"),
                    payload.get("title")
                ]),
                expected,
                "{user}"
            );
        }
    }

    #[test]
    fn each_number_is_parsed_once_per_user_for_all_four_mappings() {
        let schemas = crate::mapping::commands::builtin_schemas();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let set = crate::mapping::MappingSet::load_dir(&dir, &schemas).expect("shipped");
        let german = json!({
            "userName": "jonas", "name": {"givenName": "Jonas", "familyName": "Müller"},
            "emails": [{"value": "jonas@example.de", "primary": true}],
            "locale": "de_DE",
            "phoneNumbers": [{"value": "030 1234567", "type": "work"},
                             {"value": "0151 23456789", "type": "mobile"}]
        });
        let mut phones = ParsedPhones::default();
        for mapping in set.iter() {
            assert!(matches!(
                mapping.render_with(&german, Event::Upsert, &mut phones),
                Render::Send { .. }
            ));
        }
        assert_eq!(phones.len(), 2, "one parse per number, not per step");

        // VikingCloud refuses a national number without its country code: a number that
        // cannot be read leaves out all of its parts, never half of it.
        let mut garbage = german;
        garbage["phoneNumbers"] = json!([{"value": "ask reception", "type": "work"}]);
        let vikingcloud = set.get("vikingcloud").expect("shipped");
        let rendered = vikingcloud.render(&garbage, Event::Upsert);
        let fields: Vec<String> = warnings(rendered.clone())
            .into_iter()
            .map(|w| w.field)
            .collect();
        assert_eq!(
            fields,
            [
                "primaryPhone",
                "primaryPhoneCountryCode",
                "primaryPhoneExtension"
            ]
        );
        let (_, payload, _, _) = send(rendered);
        assert!(
            payload.get("primaryPhone").is_none()
                && payload.get("primaryPhoneCountryCode").is_none()
        );
    }

    #[test]
    fn preview_sentences_say_which_region_and_why() {
        let mapping = load(&with_fields(
            r#"mobile = { from = "phoneNumbers.value", transform = [{ phone_e164 = { region = "user", default = "US" } }] }
countryCode = { from = "phoneNumbers.value", transform = [{ phone_country_code = "JP" }] }"#,
        ))
        .expect("valid");
        let mut user = user();
        user["addresses"] = json!([{"type": "work", "country": "DE"}]);
        assert_eq!(
            mapping.phone_regions(&user),
            [
                "phone region: DE (the work address's country is 'DE'); numbers written with a \
                 +country code keep theirs",
                "phone region: JP (fixed in the mapping); numbers written with a +country code \
                 keep theirs",
            ]
        );
        user["addresses"] = json!([]);
        user["locale"] = json!("en");
        assert!(
            mapping.phone_regions(&user)[0].starts_with("phone region: US (the mapping's default;"),
            "{:?}",
            mapping.phone_regions(&user)
        );
    }

    #[test]
    fn a_missing_required_value_is_rejected() {
        let mapping = load(&with_fields("")).expect("valid");
        let mut user = user();
        user["name"] = json!({"givenName": "Ana"});
        assert_eq!(
            rejected(mapping.render(&user, Event::Upsert)),
            "test needs 'lastName', but this user has no value in name.familyName"
        );
    }

    #[test]
    fn equal_payloads_hash_equal_whatever_the_order() {
        let a = Payload::from_iter([
            ("a".to_owned(), json!(1)),
            ("b".to_owned(), json!({"y": 1, "x": [true]})),
        ]);
        let b = Payload::from_iter([
            ("b".to_owned(), json!({"x": [true], "y": 1})),
            ("a".to_owned(), json!(1)),
        ]);
        assert_eq!(payload_hash(&a), payload_hash(&b));
        let c = Payload::from_iter([("a".to_owned(), json!(2))]);
        assert_ne!(payload_hash(&a), payload_hash(&c));
    }

    #[test]
    fn the_payload_hash_is_that_of_compact_json_with_sorted_keys() {
        // Pinned: the ledger compares hashes across versions, so a change of the canonical
        // form would send every user to every target again.
        let payload = Payload::from_iter([
            ("b".to_owned(), json!("é")),
            ("a".to_owned(), json!({"d": [1, "x\"y", true], "c": null})),
        ]);
        // sha256 of {"a":{"c":null,"d":[1,"x\"y",true]},"b":"é"}
        assert_eq!(
            payload_hash(&payload),
            "a44479f40274f3b747669b4262ef2b6f939d24197dcff64c4043121d0fdf3f01"
        );
    }

    #[test]
    fn odd_json_is_rendered_or_rejected_never_panicked_on() {
        let mapping = load(&with_fields(
            "firstName = \"name.givenName\"\nenabled = \"active\"",
        ))
        .expect("valid");
        for odd in [
            json!(null),
            json!([]),
            json!("user"),
            json!({"emails": "x", "name": 5}),
            json!({"emails": [{"value": {"a": 1}, "primary": "yes"}], "name": {"familyName": ["L"]}}),
            json!({"emails": [{"value": "a@b", "primary": true}], "name": {"familyName": "L", "givenName": {"x": 1}}, "active": 3}),
        ] {
            let rendered = mapping.render(&odd, Event::Upsert);
            assert!(!matches!(rendered, Render::Skip { .. }), "{rendered:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use std::path::Path;

    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;
    use crate::mapping::commands::builtin_schemas;
    use crate::mapping::test_support::{load, with_fields};

    /// Names a user's JSON is made of, so generated users reach the mapping's paths often.
    const NAMES: &[&str] = &[
        "userName",
        "name",
        "givenName",
        "familyName",
        "displayName",
        "emails",
        "value",
        "type",
        "primary",
        "display",
        "phoneNumbers",
        "active",
        "locale",
        "preferredLanguage",
        "title",
        "groups",
        "externalId",
        "timezone",
        "id",
        "work",
        "mobile",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "department",
    ];

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec![
                "True",
                "False",
                "work",
                "mobile",
                "Primavera Schedulers",
                "en_US",
                "pt-BR",
                "a@b.c"
            ])
            .prop_map(Value::from),
            "\\+?[0-9 ()-]{0,18}( ext\\. ?[0-9]{1,4})?".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(NAMES), inner), 0..6).prop_map(
                    |members| {
                        Value::Object(
                            members
                                .into_iter()
                                .map(|(k, v)| (k.to_owned(), v))
                                .collect::<Map<_, _>>(),
                        )
                    }
                ),
            ]
        })
    }

    fn user() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => json(),
            4 => prop::collection::vec((prop::sample::select(NAMES), json()), 0..14).prop_map(
                |members| Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    }

    fn mappings() -> Vec<Mapping> {
        let schemas = builtin_schemas();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let mut all: Vec<Mapping> = ["appgate", "kibo", "primavera", "vikingcloud"]
            .into_iter()
            .map(|target| {
                let file = dir.join(format!("{target}.toml"));
                let text = std::fs::read_to_string(&file).expect("shipped mapping");
                Mapping::parse(&file, &text, target, &schemas[target]).expect("valid")
            })
            .collect();
        all.push(
            load(&with_fields(
                r#"firstName = { first_of = [{ template = "{name.givenName} {name.familyName}" }, "displayName"], transform = ["trim", { truncate = 100 }] }
title = { from = "title", when = 'groups[display eq "Managers"] or title pr', transform = [{ split = "," }, { join = ";" }, { capture = '^(.{0,25})' }] }
status = { from = "active", transform = [{ default = true }, { table = { true = "ACTIVE", false = "INACTIVE" } }] }
mobile = { from = 'phoneNumbers[type eq "mobile"].value', transform = ["phone_e164"] }
countryCode = { from = "phoneNumbers.value", transform = [{ phone_country_code = "DE" }] }
enabled = { from = "active", transform = ["not"] }
tags = { from = "groups.display", transform = ["lower"] }
userLocale = { from = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", transform = [{ table = { Sales = "en" } }] }
userKey = { object = { username = "userName", kind = { value = "local" } } }
userProducts = { grants = [{ group = "Primavera Schedulers", entry = { productName = "SCHEDULE" } }], revoke = { action = "DELETE" } }"#,
            ))
            .expect("valid"),
        );
        all.push(
            load(&format!(
                "[scope]\nfilter = 'groups[display eq \"Schedulers\"] or (title pr and not \
                 (urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department sw \
                 \"Ext\")) and active eq true'\n{}",
                with_fields("")
            ))
            .expect("valid"),
        );
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever JSON arrives as a user, every mapping answers with a render that keeps its
        /// promises: the hash is the payload's, and the password never sits in the payload.
        #[test]
        fn rendering_never_panics_and_keeps_its_promises(user in user()) {
            for mapping in mappings() {
                // Out of scope is explained; in scope is not.
                let explained = mapping.scope_miss(&user);
                prop_assert_eq!(explained.is_some(), mapping.scoping(&user) == Scoping::Out);
                prop_assert!(explained.is_none_or(|why| why.contains("does not hold")));
                for event in [Event::Upsert, Event::Deactivated, Event::Deleted] {
                    match mapping.render(&user, event) {
                        Render::Send { payload, hash, password_field, create_only, warnings, .. } => {
                            prop_assert_eq!(&hash, &payload_hash(&payload));
                            // A field left out is left out, and never one the target needs.
                            for warning in &warnings {
                                prop_assert!(!payload.contains_key(&warning.field));
                                let spec = mapping.schema().field(&warning.field);
                                prop_assert!(spec.is_some_and(|s| !is_needed(s, mapping.schema().natural_key)));
                            }
                            if let Some(field) = password_field {
                                prop_assert!(!payload.contains_key(&field));
                            }
                            prop_assert!(create_only.iter().all(|f| payload.contains_key(f)));
                        }
                        Render::Skip { reason } | Render::Rejected { reason } => {
                            prop_assert!(!reason.is_empty());
                        }
                    }
                }
            }
        }
    }
}
