//! Validation: a structurally valid `Spec` held against the target's `TargetSchema` and the
//! SCIM User schema, so that every mistake an admin can make in a mapping file is reported at
//! load time (`mappings check`, reload) rather than discovered on a user.

use serde_json::Value;

use crate::mapping::spec::{
    Condition, FieldRule, Grants, OnInvalid, Part, PathAt, Policy, Rule, Source, Span, Spec,
};
use crate::mapping::transforms::{Kind, PhoneRegion, Shape, Step};
use crate::mapping::{MappingError, MappingWarning, SourceFile};
use crate::scim::filter::{self, Filter};
use crate::scim::path::AttrPath;
use crate::scim::schema::{AttrType, AttributeDef, ResourceSchema};
use crate::targets::{FieldKind, FieldSpec, TargetSchema};

/// Every problem with `spec` for `target`; empty when the mapping can be used.
pub(crate) fn check(
    spec: &Spec,
    file: &SourceFile,
    target: &str,
    schema: &TargetSchema,
    scim: &ResourceSchema,
) -> Vec<MappingError> {
    let mut checker = Checker {
        file,
        target,
        schema,
        scim,
        errors: Vec::new(),
    };
    for field in &spec.fields {
        checker.field(field);
    }
    for (name, span) in &spec.broken_fields {
        checker.target_field(name, span);
    }
    checker.required(spec);
    if let Some(scope) = &spec.scope {
        checker.scope(scope);
    }
    checker.deprovision(spec);
    checker.errors
}

struct Checker<'a> {
    file: &'a SourceFile,
    target: &'a str,
    schema: &'a TargetSchema,
    scim: &'a ResourceSchema,
    errors: Vec<MappingError>,
}

impl Checker<'_> {
    fn invalid(&mut self, span: &Span, message: String, hint: Option<String>) {
        self.errors.push(MappingError::Invalid {
            at: self.file.locate(span),
            message,
            hint,
        });
    }

    fn mismatch(
        &mut self,
        span: &Span,
        context: String,
        expected: &str,
        found: &str,
        hint: Option<String>,
    ) {
        self.errors.push(MappingError::TypeMismatch {
            at: self.file.locate(span),
            context,
            expected: expected.to_owned(),
            found: found.to_owned(),
            hint,
        });
    }

    /// The target's field called `name`, if the mapping may set it.
    fn target_field(&mut self, name: &str, span: &Span) -> Option<FieldSpec> {
        let Some(spec) = self.schema.field(name) else {
            let names = self
                .schema
                .fields
                .iter()
                .filter(|f| !f.read_only)
                .map(|f| f.name);
            let hint = match closest(name, names.clone()) {
                Some(close) => format!("did you mean '{close}'?"),
                None => format!("its fields are: {}", names.collect::<Vec<_>>().join(", ")),
            };
            self.errors.push(MappingError::UnknownTargetField {
                at: self.file.locate(span),
                target: self.target.to_owned(),
                field: name.to_owned(),
                hint: Some(hint),
            });
            return None;
        };
        if spec.read_only {
            self.invalid(
                span,
                format!(
                    "{} assigns '{name}' itself; a mapping cannot set it",
                    self.target
                ),
                Some("remove this field".to_owned()),
            );
            return None;
        }
        Some(spec.clone())
    }

    fn field(&mut self, field: &FieldRule) {
        let Some(spec) = self.target_field(&field.name, &field.name_span) else {
            return;
        };
        let needed = spec.required_on_create
            || spec.required_on_update
            || self.schema.natural_key.contains(&spec.name);
        if needed && field.on_invalid == Some(OnInvalid::Omit) {
            self.invalid(
                &field.name_span,
                format!(
                    "{} cannot take a user without '{}', so a value that cannot be mapped must \
                     reject the user",
                    self.target, spec.name
                ),
                Some("remove on_invalid = \"omit\" from this rule".to_owned()),
            );
        }
        let rule = &field.rule;
        if let Source::Grants(grants) = &rule.source {
            if let Some(when) = &rule.when {
                self.condition(when);
            }
            self.grants(&spec, grants, rule);
            return;
        }
        if let Source::Password(span) = &rule.source {
            if spec.kind != FieldKind::String {
                let expected = kind_name(spec.kind);
                self.mismatch(
                    span,
                    format!("'{}'", spec.name),
                    expected,
                    "the SCIM password (text)",
                    None,
                );
            }
            return;
        }
        let Some(shape) = self.infer(rule) else {
            return;
        };
        if !accepts(spec.kind, shape) {
            let hint = conversion_hint(spec.kind, shape.kind);
            self.mismatch(
                &rule.span,
                format!("'{}'", spec.name),
                kind_name(spec.kind),
                &shape.describe(),
                hint,
            );
            return;
        }
        for (value, span) in literals(rule) {
            self.literal(&spec, &value, &span);
        }
    }

    /// A value the file itself spells out (a constant, a value-table entry, a default) that
    /// the field must accept.
    fn literal(&mut self, spec: &FieldSpec, value: &Value, span: &Span) {
        let Value::String(text) = value else {
            return;
        };
        if !spec.allowed.is_empty() && !spec.allowed.contains(&text.as_str()) {
            let hint = closest(text, spec.allowed.iter().copied())
                .map(|close| format!("did you mean '{close}'?"));
            self.errors.push(MappingError::OutsideEnum {
                at: self.file.locate(span),
                field: spec.name.to_owned(),
                value: text.clone(),
                allowed: spec.allowed.join(", "),
                hint,
            });
        }
        if let Some(max) = spec.max_len {
            let length = text.chars().count();
            if length > max {
                self.invalid(
                    span,
                    format!(
                        "'{text}' is {length} characters; {} allows at most {max} in '{}'",
                        self.target, spec.name
                    ),
                    Some("shorten it".to_owned()),
                );
            }
        }
    }

    /// The shape of a rule's values, reporting every problem inside it; `None` once one is
    /// found, so a single mistake is not reported again by everything built on it.
    fn infer(&mut self, rule: &Rule) -> Option<Shape> {
        if let Some(when) = &rule.when {
            self.condition(when);
        }
        let mut shape = match &rule.source {
            Source::Path(path) => self.path(path)?,
            Source::Password(_) => Shape::one(Kind::Text),
            Source::Template(template) => {
                let mut ok = true;
                for part in &template.parts {
                    if let Part::Path(path) = part {
                        match self.path(path) {
                            Some(shape) if shape.kind == Kind::Object => {
                                ok = false;
                                self.mismatch(
                                    &path.span,
                                    format!("placeholder {{{}}}", path.text),
                                    "text",
                                    "an object",
                                    Some("name a sub-attribute, e.g. {name.givenName}".to_owned()),
                                );
                            }
                            Some(_) => {}
                            None => ok = false,
                        }
                    }
                }
                ok.then_some(Shape::one(Kind::Text))?
            }
            Source::Const(value, _) => match value {
                Value::Array(items) => Shape {
                    kind: items.first().map_or(Kind::Any, Kind::of),
                    many: true,
                },
                single => Shape::one(Kind::of(single)),
            },
            Source::FirstOf(alternatives) => self.first_of(alternatives)?,
            Source::Object(members) => {
                let shapes: Vec<Option<Shape>> =
                    members.iter().map(|m| self.infer(&m.rule)).collect();
                if shapes.iter().any(Option::is_none) {
                    return None;
                }
                Shape::one(Kind::Object)
            }
            Source::Grants(_) => Shape {
                kind: Kind::Any,
                many: true,
            },
        };
        for step in &rule.transforms {
            match step.step.output(shape) {
                Ok(next) => shape = next,
                Err(mismatch) => {
                    self.mismatch(
                        &step.span,
                        format!("transform '{}'", step.name),
                        &mismatch.expected,
                        &mismatch.found,
                        conversion_hint_for_step(&step.step, shape.kind),
                    );
                    return None;
                }
            }
        }
        Some(shape)
    }

    fn first_of(&mut self, alternatives: &[Rule]) -> Option<Shape> {
        let shapes: Vec<Option<Shape>> = alternatives.iter().map(|a| self.infer(a)).collect();
        let shapes: Vec<Shape> = shapes.into_iter().collect::<Option<_>>()?;
        let first = *shapes.first()?;
        let kind = shapes
            .iter()
            .map(|s| s.kind)
            .find(|k| *k != Kind::Any)
            .unwrap_or(Kind::Any);
        for (alternative, shape) in alternatives.iter().zip(&shapes) {
            if !shape.kind.fits(kind) {
                self.mismatch(
                    &alternative.span,
                    "this alternative".to_owned(),
                    kind.describe(),
                    shape.kind.describe(),
                    Some(
                        "every alternative of first_of must give the same kind of value".to_owned(),
                    ),
                );
                return None;
            }
        }
        Some(Shape {
            kind,
            many: first.many || shapes.iter().any(|s| s.many),
        })
    }

    fn grants(&mut self, spec: &FieldSpec, grants: &Grants, rule: &Rule) {
        let wants_objects = match spec.kind {
            FieldKind::StringArray => false,
            FieldKind::ObjectArray => true,
            other => {
                self.mismatch(
                    &rule.span,
                    format!("'{}'", spec.name),
                    kind_name(other),
                    "a list of entries (grants)",
                    Some("grants fill a list field such as roles".to_owned()),
                );
                return;
            }
        };
        for grant in &grants.grants {
            self.condition(&grant.when);
            match (&grant.entry, wants_objects) {
                (Value::Object(_), true) => {}
                (Value::String(_), false) => {}
                (other, _) => self.mismatch(
                    &grant.entry_span,
                    format!("an entry of '{}'", spec.name),
                    if wants_objects { "a table" } else { "text" },
                    Kind::of(other).describe(),
                    None,
                ),
            }
        }
        if let (Some((_, span)), false) = (&grants.revoke, wants_objects) {
            self.invalid(
                span,
                format!(
                    "'{}' is a list of names; a lost entry is simply left out",
                    spec.name
                ),
                Some("remove 'revoke'".to_owned()),
            );
        }
        if !rule.transforms.is_empty() {
            self.invalid(
                &rule.span,
                "grants take no transforms".to_owned(),
                Some("spell each entry as it should be sent".to_owned()),
            );
        }
    }

    /// The shape a SCIM path reads, or an error naming what in it does not exist.
    fn path(&mut self, at: &PathAt) -> Option<Shape> {
        let path = &at.path;
        let Some(located) = self.scim.locate(&path.attr) else {
            self.unknown_attribute(at, &path.attr);
            return None;
        };
        let attr = located.attr;
        if let Some(filter) = &path.filter {
            if attr.attr_type != AttrType::Complex || !attr.multi_valued {
                self.bad_path(
                    at,
                    format!(
                        "'{}' is not a multi-valued attribute; it takes no [filter]",
                        attr.name
                    ),
                    None,
                );
                return None;
            }
            if !self.value_filter(at, filter, attr) {
                return None;
            }
        }
        let leaf = match &path.sub_attr {
            Some(sub) => match attr.sub_attribute(sub) {
                Some(leaf) => leaf,
                None => {
                    let hint = closest(sub, attr.sub_attributes.iter().map(|s| s.name.as_str()))
                        .map(|close| format!("did you mean '{}.{close}'?", attr.name));
                    self.bad_path(
                        at,
                        format!("'{}' has no sub-attribute '{sub}'", attr.name),
                        hint,
                    );
                    return None;
                }
            },
            None => attr,
        };
        Some(Shape {
            kind: kind_of_attr(leaf.attr_type),
            many: attr.multi_valued || leaf.multi_valued,
        })
    }

    fn unknown_attribute(&mut self, at: &PathAt, path: &AttrPath) {
        let known = self.scim.extension(path.urn.as_deref().unwrap_or(""));
        let names: Vec<String> = match (&path.urn, known) {
            (Some(_), Some(ext)) => ext.attributes.iter().map(|a| a.name.clone()).collect(),
            (Some(urn), None) if !urn.eq_ignore_ascii_case(&self.scim.core.id) => {
                let schemas: Vec<&str> = self.scim.schema_ids().collect();
                self.bad_path(
                    at,
                    format!("no SCIM schema is called '{urn}'"),
                    Some(format!("known schemas: {}", schemas.join(", "))),
                );
                return;
            }
            _ => self
                .scim
                .core
                .attributes
                .iter()
                .chain(&self.scim.common)
                .map(|a| a.name.clone())
                .collect(),
        };
        let hint = closest(&path.attr, names.iter().map(String::as_str))
            .map(|close| format!("did you mean '{close}'?"));
        self.bad_path(
            at,
            format!("the SCIM User has no attribute '{}'", path.attr),
            hint,
        );
    }

    fn bad_path(&mut self, at: &PathAt, reason: String, hint: Option<String>) {
        self.errors.push(MappingError::InvalidSourcePath {
            at: self.file.locate(&at.span),
            path: at.text.clone(),
            reason,
            hint,
        });
    }

    /// The paths inside `emails[...]` name sub-attributes of `emails`.
    fn value_filter(&mut self, at: &PathAt, filter: &Filter, attr: &AttributeDef) -> bool {
        let mut ok = true;
        walk_paths(filter, &mut |path, _| {
            let known = path.urn.is_none()
                && attr.sub_attribute(&path.attr).is_some_and(|sub| {
                    path.sub_attr
                        .as_ref()
                        .is_none_or(|s| sub.sub_attribute(s).is_some())
                });
            if !known && ok {
                ok = false;
                let hint = closest(
                    &path.attr,
                    attr.sub_attributes.iter().map(|s| s.name.as_str()),
                )
                .map(|close| format!("did you mean '{close}'?"));
                self.bad_path(
                    at,
                    format!("'{}' has no sub-attribute '{path}'", attr.name),
                    hint,
                );
            }
        });
        ok
    }

    /// The first attribute path in `filter` that names nothing in the SCIM User schema, with
    /// the attribute whose `[...]` it is inside, if it is.
    fn unknown_in(&self, filter: &Filter) -> Option<(AttrPath, Option<AttrPath>)> {
        let mut unknown = None;
        walk_paths(filter, &mut |path, inside| {
            let found = match inside {
                None => self.scim.locate(path).is_some(),
                Some(outer) => self
                    .scim
                    .locate(outer)
                    .is_some_and(|o| o.attr.sub_attribute(&path.attr).is_some()),
            };
            if !found && unknown.is_none() {
                unknown = Some((path.clone(), inside.cloned()));
            }
        });
        unknown
    }

    fn condition(&mut self, condition: &Condition) {
        if let Some(path) = self
            .unknown_in(&condition.filter)
            .map(|(p, _)| p.to_string())
        {
            self.errors.push(MappingError::InvalidSourcePath {
                at: self.file.locate(&condition.span),
                path: path.clone(),
                reason: format!(
                    "the condition '{}' names an unknown attribute",
                    condition.text
                ),
                hint: Some(
                    "conditions use SCIM User attributes: title pr, groups[display eq \"x\"]"
                        .to_owned(),
                ),
            });
            return;
        }
        if let Err(error) = filter::validate(&condition.filter, self.scim) {
            self.invalid(
                &condition.span,
                format!("the condition '{}' cannot work: {error}", condition.text),
                None,
            );
        }
    }

    /// `[scope] filter`: every attribute it names exists, and every comparison can hold. An
    /// unknown attribute is pointed at inside the filter, where the file spells it.
    fn scope(&mut self, scope: &Condition) {
        if let Some((path, inside)) = self.unknown_in(&scope.filter) {
            let written = path.to_string();
            let span = self
                .within(&scope.span, &written)
                .unwrap_or_else(|| scope.span.clone());
            let hint = self.nearest_attribute(&path, inside.as_ref()).map_or_else(
                || {
                    "scope filters use SCIM User attributes: groups[display eq \"x\"], \
                    userType eq \"Employee\", urn:...:enterprise:2.0:User:department eq \"x\""
                        .to_owned()
                },
                |close| format!("did you mean '{close}'?"),
            );
            self.errors.push(MappingError::InvalidSourcePath {
                at: self.file.locate(&span),
                path: written,
                reason: "the [scope] filter names an unknown attribute".to_owned(),
                hint: Some(hint),
            });
            return;
        }
        if let Err(error) = filter::validate(&scope.filter, self.scim) {
            self.invalid(
                &scope.span,
                format!("the [scope] filter can never match as written: {error}"),
                None,
            );
        }
    }

    /// Where the attribute path `needle` is first written (ignoring case, as SCIM names are)
    /// inside the string at `span`, as a whole name: `nam` is not found inside `displayName`.
    fn within(&self, span: &Span, needle: &str) -> Option<Span> {
        let raw = self.file.text.get(span.clone())?.to_ascii_lowercase();
        let in_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_' | '$');
        let at = raw
            .match_indices(&needle.to_ascii_lowercase())
            .map(|(at, _)| at)
            .find(|&at| {
                let before = raw[..at].chars().next_back();
                let after = raw[at + needle.len()..].chars().next();
                !before.is_some_and(in_name) && !after.is_some_and(in_name)
            })?;
        Some(span.start + at..span.start + at + needle.len())
    }

    /// The known attribute (or sub-attribute) closest to an unknown one, written as a path;
    /// inside `outer[...]`, the closest sub-attribute of `outer`.
    fn nearest_attribute(&self, path: &AttrPath, outer: Option<&AttrPath>) -> Option<String> {
        if let Some(outer) = outer {
            let located = self.scim.locate(outer)?;
            let names = located.attr.sub_attributes.iter().map(|s| s.name.as_str());
            return closest(&path.attr, names).map(str::to_owned);
        }
        if let Some(located) = self.scim.locate(&path.with_sub(None)) {
            let sub = path.sub_attr.as_deref()?;
            let names = located.attr.sub_attributes.iter().map(|s| s.name.as_str());
            return closest(sub, names).map(|close| format!("{}.{close}", located.attr.name));
        }
        let names: Vec<&str> = match &path.urn {
            Some(urn) => self
                .scim
                .extension(urn)?
                .attributes
                .iter()
                .map(|a| a.name.as_str())
                .collect(),
            None => self
                .scim
                .core
                .attributes
                .iter()
                .chain(&self.scim.common)
                .map(|a| a.name.as_str())
                .collect(),
        };
        let close = closest(&path.attr, names.into_iter())?;
        Some(match &path.urn {
            Some(urn) => format!("{urn}:{close}"),
            None => close.to_owned(),
        })
    }

    fn required(&mut self, spec: &Spec) {
        let mapped = |name: &str| {
            spec.fields.iter().any(|f| f.name == name)
                || spec.broken_fields.iter().any(|(f, _)| f == name)
        };
        let needed: Vec<&FieldSpec> = self
            .schema
            .fields
            .iter()
            .filter(|f| !f.read_only)
            .filter(|f| {
                f.required_on_create
                    || f.required_on_update
                    || self.schema.natural_key.contains(&f.name)
            })
            .collect();
        for field in needed {
            if mapped(field.name) {
                continue;
            }
            let example = guess_source(field);
            self.errors.push(MappingError::RequiredUnmapped {
                at: self.file.locate(&spec.fields_span),
                target: self.target.to_owned(),
                field: field.name.to_owned(),
                hint: Some(format!("add under [fields]: {} = {example}", field.name)),
            });
        }
    }

    fn deprovision(&mut self, spec: &Spec) {
        let policy = &spec.deprovision;
        let mut policies = vec![policy.deactivate, policy.delete];
        // Without [scope] nobody leaves it, so out_of_scope never applies.
        if spec.scope.is_some() {
            policies.push(policy.out_of_scope);
        }
        let disables = policies.contains(&Policy::Disable);
        match (&policy.disable_sets_span, disables) {
            (None, true) => self.invalid(
                &policy.span,
                "a policy says \"disable\", but [deprovision] has no disable_sets".to_owned(),
                Some(if policy.out_of_scope_span.is_none() && spec.scope.is_some() {
                    "with [scope], out_of_scope = \"disable\" is the default: add disable_sets = \
                     { disabled = true }, or say out_of_scope = \"delete\" or \"ignore\""
                        .to_owned()
                } else {
                    "say which fields disable the account, e.g. disable_sets = { disabled = true }"
                        .to_owned()
                }),
            ),
            (Some(span), false) => self.invalid(
                span,
                "disable_sets is never used: no policy says \"disable\"".to_owned(),
                Some("remove it, or set deactivate = \"disable\"".to_owned()),
            ),
            _ => {}
        }
        for set in &policy.disable_sets {
            let Some(field) = self.target_field(&set.field, &set.field_span) else {
                continue;
            };
            let shape = match &set.value {
                Value::Array(items) => Shape {
                    kind: items.first().map_or(Kind::Any, Kind::of),
                    many: true,
                },
                single => Shape::one(Kind::of(single)),
            };
            if accepts(field.kind, shape) {
                self.literal(&field, &set.value, &set.value_span);
            } else {
                self.mismatch(
                    &set.value_span,
                    format!("'{}'", field.name),
                    kind_name(field.kind),
                    &shape.describe(),
                    None,
                );
            }
        }
    }
}

/// Advice that does not stop a mapping from loading: an `out_of_scope` in a file without
/// `[scope]`, and phone regions (`phone_lints`).
pub(crate) fn lints(spec: &Spec, file: &SourceFile) -> Vec<MappingWarning> {
    let mut warnings = Vec::new();
    if let (None, Some(span)) = (&spec.scope, &spec.deprovision.out_of_scope_span) {
        warnings.push(MappingWarning {
            at: file.locate(span),
            message: "out_of_scope never applies: the file has no [scope], so every user is \
                      in scope"
                .to_owned(),
            hint: Some("add [scope] filter = '...', or remove out_of_scope".to_owned()),
        });
    }
    warnings.extend(phone_lints(spec, file));
    warnings
}

/// A phone transform with a fixed region in a file that maps the user's locale or address,
/// so it knows users can be elsewhere, while every number without a country code is read as
/// a number of that one region.
fn phone_lints(spec: &Spec, file: &SourceFile) -> Vec<MappingWarning> {
    let mut paths = Vec::new();
    let mut phones = Vec::new();
    for field in &spec.fields {
        walk_rule(&field.rule, &mut |rule| {
            match &rule.source {
                Source::Path(path) => paths.push(path.clone()),
                Source::Template(template) => {
                    paths.extend(template.parts.iter().filter_map(|part| match part {
                        Part::Path(path) => Some(path.as_ref().clone()),
                        Part::Text(_) => None,
                    }))
                }
                _ => {}
            }
            for step in &rule.transforms {
                if let Step::Phone(_, PhoneRegion::Fixed(region)) = &step.step {
                    phones.push((step.span.clone(), *region, step.name));
                }
            }
        });
    }
    let regional = paths.iter().find(|at| {
        at.path.attr.urn.is_none()
            && ["locale", "preferredLanguage", "addresses"]
                .iter()
                .any(|name| at.path.attr.attr.eq_ignore_ascii_case(name))
    });
    let Some(regional) = regional else {
        return Vec::new();
    };
    let line = file.locate(&regional.span).line;
    phones
        .into_iter()
        .map(|(span, region, name)| {
            let region = region.as_ref();
            MappingWarning {
                at: file.locate(&span),
                message: format!(
                    "'{name}' reads every number without a +country code as a {region} number, \
                     but this file maps '{}' (line {line}): users elsewhere get wrong numbers \
                     or none",
                    regional.text
                ),
                hint: Some(format!(
                    "read each user's own region: {{ {name} = {{ region = \"user\", default = \
                     \"{region}\" }} }}"
                )),
            }
        })
        .collect()
}

/// Calls `visit` with a rule and every rule nested in it (fallbacks, object members).
pub(crate) fn walk_rule(rule: &Rule, visit: &mut impl FnMut(&Rule)) {
    visit(rule);
    match &rule.source {
        Source::FirstOf(alternatives) => alternatives.iter().for_each(|a| walk_rule(a, visit)),
        Source::Object(members) => members.iter().for_each(|m| walk_rule(&m.rule, visit)),
        Source::Path(_)
        | Source::Password(_)
        | Source::Template(_)
        | Source::Const(..)
        | Source::Grants(_) => {}
    }
}

/// Calls `visit` with every attribute path in a filter; inside `x[...]` the second argument
/// is the enclosing attribute `x`.
fn walk_paths(filter: &Filter, visit: &mut impl FnMut(&AttrPath, Option<&AttrPath>)) {
    fn walk(
        filter: &Filter,
        inside: Option<&AttrPath>,
        visit: &mut impl FnMut(&AttrPath, Option<&AttrPath>),
    ) {
        match filter {
            Filter::And(left, right) | Filter::Or(left, right) => {
                walk(left, inside, visit);
                walk(right, inside, visit);
            }
            Filter::Not(inner) => walk(inner, inside, visit),
            Filter::Compare { path, .. } | Filter::Present(path) => visit(path, inside),
            Filter::ValuePath { path, filter } => {
                visit(path, inside);
                walk(filter, Some(path), visit);
            }
        }
    }
    walk(filter, None, visit);
}

/// The values a rule certainly can end with, as written in the file, with where: a constant,
/// the entries of a final value table, a final default.
fn literals(rule: &Rule) -> Vec<(Value, Span)> {
    let mut found = Vec::new();
    let mut steps = rule.transforms.iter().rev();
    for step in steps.by_ref() {
        match &step.step {
            Step::Default(value) => found.push((value.clone(), step.span.clone())),
            Step::Table(entries) => {
                found.extend(entries.iter().map(|e| (e.value.clone(), e.span.clone())));
                return found;
            }
            _ => return found,
        }
    }
    match &rule.source {
        Source::Const(Value::Array(items), span) => {
            found.extend(items.iter().map(|item| (item.clone(), span.clone())));
        }
        Source::Const(value, span) => found.push((value.clone(), span.clone())),
        Source::FirstOf(alternatives) => found.extend(alternatives.iter().flat_map(literals)),
        Source::Path(_)
        | Source::Password(_)
        | Source::Template(_)
        | Source::Object(_)
        | Source::Grants(_) => {}
    }
    found
}

fn kind_of_attr(attr_type: AttrType) -> Kind {
    match attr_type {
        AttrType::String | AttrType::DateTime | AttrType::Binary | AttrType::Reference => {
            Kind::Text
        }
        AttrType::Boolean => Kind::Bool,
        AttrType::Integer => Kind::Integer,
        AttrType::Decimal => Kind::Number,
        AttrType::Complex => Kind::Object,
    }
}

/// Whether a field of this kind can take values of this shape. A single value fills a list
/// field; a scalar field takes the first of several.
fn accepts(kind: FieldKind, shape: Shape) -> bool {
    let want = match kind {
        FieldKind::String | FieldKind::StringArray => Kind::Text,
        FieldKind::Boolean => Kind::Bool,
        FieldKind::Integer => Kind::Integer,
        FieldKind::Number => Kind::Number,
        FieldKind::Object | FieldKind::ObjectArray => Kind::Object,
    };
    shape.kind == Kind::Any || shape.kind.fits(want)
}

pub(crate) fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::String => "text",
        FieldKind::Boolean => "a boolean",
        FieldKind::Integer => "an integer",
        FieldKind::Number => "a number",
        FieldKind::StringArray => "a list of text values",
        FieldKind::Object => "an object",
        FieldKind::ObjectArray => "a list of objects",
    }
}

fn conversion_hint(kind: FieldKind, found: Kind) -> Option<String> {
    let hint = match (kind, found) {
        (FieldKind::String | FieldKind::StringArray, Kind::Bool) => {
            "turn it into text with a value table: \
             transform = [{ table = { true = \"...\", false = \"...\" } }]"
        }
        (FieldKind::String | FieldKind::StringArray, Kind::Object) => {
            "name a sub-attribute, e.g. emails[primary eq true].value or name.familyName"
        }
        (FieldKind::String | FieldKind::StringArray, Kind::Integer | Kind::Number) => {
            "write it into text with a template: template = \"{...}\""
        }
        (FieldKind::Boolean, Kind::Text) => {
            "compare it in a condition instead: value = true, when = '... eq \"...\"', or map \
             it with transform = [{ table = { yes = true, no = false } }]"
        }
        (FieldKind::Object | FieldKind::ObjectArray, _) => {
            "build it member by member: object = { key = \"userName\" }"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

fn conversion_hint_for_step(step: &Step, found: Kind) -> Option<String> {
    match (step, found) {
        (Step::Not, Kind::Text) => {
            Some("'not' flips booleans; for text use a value table".to_owned())
        }
        (_, Kind::Bool) => Some(
            "booleans become text through a value table: { table = { true = \"...\", false = \"...\" } }"
                .to_owned(),
        ),
        (_, Kind::Object) => Some("name a sub-attribute, e.g. emails[primary eq true].value".to_owned()),
        _ => None,
    }
}

/// A plausible source for a required field, to make the hint concrete.
fn guess_source(field: &FieldSpec) -> String {
    let name = field.name.to_ascii_lowercase();
    let guess = if name == "password" {
        "\"password\"   (the fan-out sends the SCIM password on create and when it changes)"
    } else if name.contains("mail") {
        "'emails[primary eq true].value'"
    } else if name.contains("first") || name.contains("given") {
        "\"name.givenName\""
    } else if name.contains("last") || name.contains("family") {
        "\"name.familyName\""
    } else if name.contains("name") || name.contains("login") {
        "\"userName\""
    } else {
        match field.kind {
            FieldKind::Object => "{ object = { ... } }",
            FieldKind::Boolean => "{ from = \"active\" }",
            _ => "\"<SCIM path>\"",
        }
    };
    guess.to_owned()
}

/// The candidate nearest to `name` (same letters ignoring case, or a few edits away), for
/// "did you mean" hints.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let lowered = name.to_lowercase();
    let budget = (lowered.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|candidate| (distance(&lowered, &candidate.to_lowercase()), candidate))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

/// Edit distance over characters, a swap of neighbours counting as one edit (the commonest
/// typo: "emial").
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![(0..=b.len()).collect::<Vec<usize>>()];
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(row[j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            row[j] = best;
        }
        rows.push(row);
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use crate::mapping::test_support::{load, with_fields};
    use crate::mapping::MappingError;

    /// Loads a mapping that must fail, returning each error as `line:column: message`.
    fn errors(text: &str) -> Vec<String> {
        let errors = load(text).expect_err("the mapping should be refused");
        errors
            .iter()
            .map(|error| {
                let at = error.location().expect("a located error");
                assert_eq!(at.file.to_str(), Some("mappings/test.toml"));
                format!("{}:{}: {}", at.line, at.column, error.headline())
            })
            .collect()
    }

    fn only_error(text: &str) -> MappingError {
        let mut errors = load(text).expect_err("the mapping should be refused");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.remove(0)
    }

    #[test]
    fn the_baseline_is_valid() {
        load(&with_fields("")).expect("valid");
    }

    #[test]
    fn unknown_target_field() {
        let error = only_error(&with_fields("emial = \"userName\""));
        assert!(matches!(error, MappingError::UnknownTargetField { .. }));
        assert_eq!(
            error.to_string(),
            "mappings/test.toml:10:1: test has no field 'emial' (hint: did you mean 'email'?)"
        );
        assert_eq!(error.location().map(|at| at.width), Some(5));
    }

    #[test]
    fn read_only_field() {
        let error = only_error(&with_fields("userId = \"id\""));
        assert_eq!(
            error.to_string(),
            "mappings/test.toml:10:1: test assigns 'userId' itself; a mapping cannot set it \
             (hint: remove this field)"
        );
    }

    #[test]
    fn required_field_left_unmapped() {
        let text = with_fields("").replace("lastName = \"name.familyName\"\n", "");
        let error = only_error(&text);
        assert!(matches!(error, MappingError::RequiredUnmapped { .. }));
        assert_eq!(
            error.to_string(),
            "mappings/test.toml:6:2: test requires 'lastName', but the mapping does not set it \
             (hint: add under [fields]: lastName = \"name.familyName\")"
        );
    }

    #[test]
    fn value_table_outside_the_enum() {
        let error = only_error(&with_fields(
            "status = { from = \"active\", transform = [{ table = { true = \"ACTIVE\", false = \"INACTIV\" } }] }",
        ));
        assert!(matches!(error, MappingError::OutsideEnum { .. }));
        assert_eq!(
            error.to_string(),
            "mappings/test.toml:10:79: 'status' only accepts ACTIVE, INACTIVE, but this gives \
             'INACTIV' (hint: did you mean 'INACTIVE'?)"
        );
    }

    #[test]
    fn constants_and_defaults_outside_the_enum() {
        let found = errors(&with_fields(
            "status = { value = \"Active\" }\nuserLocale = { from = \"locale\", transform = [{ default = \"fr\" }] }",
        ));
        assert_eq!(
            found,
            [
                "10:20: 'status' only accepts ACTIVE, INACTIVE, but this gives 'Active'",
                "11:46: 'userLocale' only accepts en, de, pt_BR, but this gives 'fr'",
            ]
        );
    }

    #[test]
    fn type_mismatches() {
        let found = errors(&with_fields(
            "title = \"active\"\n\
             enabled = \"userName\"\n\
             firstName = { from = \"active\", transform = [\"lower\"] }\n\
             tags = { value = [\"a\"], transform = [\"not\"] }",
        ));
        assert_eq!(
            found,
            [
                "10:9: 'title' expects text, but gets a boolean",
                "11:11: 'enabled' expects a boolean, but gets text",
                "12:45: transform 'lower' expects text, but gets a boolean",
                "13:38: transform 'not' expects a boolean, but gets a list of text values",
            ]
        );
        let error = only_error(&with_fields("title = \"active\""));
        assert!(matches!(error, MappingError::TypeMismatch { .. }));
        assert!(error.hint().unwrap_or("").contains("table"), "{error}");
    }

    #[test]
    fn source_paths_that_are_not_scim_paths() {
        let found = errors(&with_fields(
            "title = \"name.givenNmae\"\n\
             firstName = 'emails[type eq \"work\"'\n\
             mobile = 'phoneNumbers[kind eq \"mobile\"].value'\n\
             countryCode = \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:departmnt\"",
        ));
        assert_eq!(
            found,
            [
                "10:9: 'name.givenNmae' is not a SCIM attribute path: 'name' has no \
                 sub-attribute 'givenNmae'",
                "11:13: 'emails[type eq \"work\"' is not a SCIM attribute path: invalid \
                 attribute path 'emails[type eq \"work\"': '[' without a matching ']'",
                "12:10: 'phoneNumbers[kind eq \"mobile\"].value' is not a SCIM attribute path: \
                 'phoneNumbers' has no sub-attribute 'kind'",
                "13:15: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:departmnt' \
                 is not a SCIM attribute path: the SCIM User has no attribute 'departmnt'",
            ]
        );
        let error = only_error(&with_fields("title = \"name.givenNmae\""));
        assert!(matches!(error, MappingError::InvalidSourcePath { .. }));
        assert_eq!(error.hint(), Some("did you mean 'name.givenName'?"));
    }

    #[test]
    fn a_constant_written_as_a_path_gets_a_hint() {
        let error = only_error(&with_fields("title = \"Sales rep\""));
        assert_eq!(
            error.hint(),
            Some("for the constant text write { value = \"Sales rep\" }")
        );
    }

    #[test]
    fn template_placeholders_are_located_inside_the_string() {
        let found = errors(&with_fields(
            "title = { template = \"{name.givenName} {nmae.familyName}\" }",
        ));
        assert_eq!(
            found,
            [
                "10:41: 'nmae.familyName' is not a SCIM attribute path: the SCIM User has no \
              attribute 'nmae'"
            ]
        );
    }

    #[test]
    fn conditions_are_checked() {
        let found = errors(&with_fields(
            "title = { from = \"title\", when = 'titel pr' }\n\
             mobile = { from = \"title\", when = 'title eq' }",
        ));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("10:34: 'titel' is not a SCIM attribute path"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("11:35: 'title eq' is not a SCIM filter"),
            "{found:?}"
        );
    }

    fn with_scope(scope: &str) -> String {
        format!("[scope]\n{scope}\n{}", with_fields(""))
    }

    #[test]
    fn a_scope_filter_that_does_not_parse_is_pointed_at_inside_the_string() {
        let found = errors(&with_scope(
            r#"filter = 'groups[display eq "Schedulers"] and'"#,
        ));
        assert_eq!(
            found,
            [
                "2:46: the [scope] filter does not parse: expected an attribute path, '(' or \
              'not', found the end at position 36 of filter 'groups[display eq \"Schedulers\"] \
              and'"
            ]
        );
        let found = errors(&with_scope(r#"filter = 'title eq "x" or userType is "y"'"#));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("2:36: "), "{found:?}");
        // Escapes in a basic string shift every position: the whole string is pointed at.
        let found = errors(&with_scope(r#"filter = "title eq \"x\" and""#));
        assert!(found[0].starts_with("2:10: "), "{found:?}");
    }

    #[test]
    fn a_scope_filter_naming_an_unknown_attribute_is_pointed_at_it() {
        let found = errors(&with_scope(
            r#"filter = 'active eq true and urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:departmnt eq "Planning"'"#,
        ));
        assert_eq!(
            found,
            [
                "2:30: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:departmnt' \
              is not a SCIM attribute path: the [scope] filter names an unknown attribute"
            ]
        );
        let error = only_error(&with_scope(
            r#"filter = 'active eq true and urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:departmnt eq "Planning"'"#,
        ));
        assert_eq!(
            error.hint(),
            Some(
                "did you mean \
                 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department'?"
            )
        );
        let error = only_error(&with_scope(r#"filter = 'groups[dispaly eq "Schedulers"]'"#));
        let at = error.location().expect("located");
        assert_eq!((at.line, at.column, at.width), (2, 18, 7));
        assert_eq!(error.hint(), Some("did you mean 'display'?"));
        let error = only_error(&with_scope(r#"filter = 'titel pr'"#));
        assert_eq!(error.hint(), Some("did you mean 'title'?"));
        // Found as a whole name, not inside a longer one written before it.
        let error = only_error(&with_scope(r#"filter = 'displayName pr and nam pr'"#));
        let at = error.location().expect("located");
        assert_eq!((at.column, at.width), (30, 3));
        let error = only_error(&with_scope(r#"filter = 'name.givenNme pr'"#));
        assert_eq!(error.hint(), Some("did you mean 'name.givenName'?"));
    }

    #[test]
    fn a_scope_is_one_filter_in_quotes_and_out_of_scope_a_policy() {
        assert_eq!(
            errors(&with_scope("filters = 'title pr'")),
            [
                "1:1: [scope] has no filter",
                "2:1: unknown key 'filters' in [scope]",
            ]
        );
        assert_eq!(
            errors(&with_scope("filter = true")),
            ["2:10: 'filter' takes a SCIM filter in quotes, not a boolean"]
        );
        assert_eq!(
            errors(&with_scope("filter = 'active gt true'")),
            [
                "2:10: the [scope] filter can never match as written: 'gt' does not apply to \
              'active', which is of type boolean"
            ]
        );
        let text = with_scope("filter = 'title pr'").replace(
            "delete = \"delete\"\n",
            "delete = \"delete\"\nout_of_scope = \"drop\"\n",
        );
        assert_eq!(
            errors(&text),
            ["6:16: 'out_of_scope' must be one of: disable, delete, ignore"]
        );
    }

    #[test]
    fn out_of_scope_without_a_scope_is_warned_about() {
        let text = with_fields("").replace(
            "delete = \"delete\"\n",
            "delete = \"delete\"\nout_of_scope = \"delete\"\n",
        );
        let mapping = load(&text).expect("a warning does not stop the mapping");
        let warnings: Vec<String> = mapping
            .warnings()
            .iter()
            .map(|w| format!("{}:{}: {}", w.at.line, w.at.column, w.message))
            .collect();
        assert_eq!(
            warnings,
            ["4:1: out_of_scope never applies: the file has no [scope], so every user is in scope"]
        );
        let scoped = load(&format!("[scope]\nfilter = 'title pr'\n{text}")).expect("valid");
        assert!(scoped.warnings().is_empty());
    }

    #[test]
    fn out_of_scope_disables_by_default_and_then_needs_disable_sets() {
        let deleting = "[deprovision]\ndeactivate = \"delete\"\ndelete = \"delete\"\n\n\
            [fields]\nemail = \"userName\"\nlastName = \"userName\"\npassword = \"password\"\n";
        load(deleting).expect("without [scope] out_of_scope never applies");
        let scoped = format!("[scope]\nfilter = 'title pr'\n{deleting}");
        let error = only_error(&scoped);
        assert_eq!(
            error.headline(),
            "a policy says \"disable\", but [deprovision] has no disable_sets"
        );
        assert!(
            error
                .hint()
                .is_some_and(|hint| hint.contains("out_of_scope = \"disable\" is the default")),
            "{error}"
        );
        let explicit = scoped.replace(
            "delete = \"delete\"\n",
            "delete = \"delete\"\nout_of_scope = \"delete\"\n",
        );
        load(&explicit).expect("out_of_scope = delete needs no disable_sets");
    }

    #[test]
    fn structure_mistakes() {
        let found = errors(&with_fields(
            "title = { form = \"title\" }\n\
             mobile = { from = \"title\", value = \"x\" }\n\
             firstName = { template = \"Hello\" }\n\
             tags = [\"a\"]",
        ));
        assert_eq!(
            found,
            [
                "10:11: unknown key 'form' in a field rule",
                "11:28: a rule takes one source, but this one has 'from' and 'value'",
                "12:26: this template has no {placeholder}",
                "13:8: a list here is ambiguous",
            ]
        );
    }

    #[test]
    fn deprovisioning_must_be_spelled_out() {
        let text = with_fields("").replace("delete = \"delete\"\n", "delete = \"purge\"\n");
        assert_eq!(
            errors(&text),
            ["3:10: 'delete' must be one of: disable, delete, ignore"]
        );
        let text = with_fields("").replace(
            "disable_sets = { status = \"INACTIVE\", enabled = false }",
            "disable_sets = { status = \"DISABLED\", enabled = \"no\" }",
        );
        assert_eq!(
            errors(&text),
            [
                "4:27: 'status' only accepts ACTIVE, INACTIVE, but this gives 'DISABLED'",
                "4:49: 'enabled' expects a boolean, but gets text",
            ]
        );
        let missing =
            "[fields]\nemail = \"userName\"\nlastName = \"userName\"\npassword = \"password\"\n";
        assert_eq!(
            errors(missing),
            ["1:1: the file has no [deprovision] section"]
        );
    }

    #[test]
    fn grants_fit_the_list_they_fill() {
        let found = errors(&with_fields(
            "tags = { grants = [{ group = \"Admins\", entry = { name = \"x\" } }] }\n\
             userProducts = { grants = [{ group = \"S\", entry = \"SCHEDULE\" }] }\n\
             title = { grants = [{ group = \"S\", entry = \"x\" }] }",
        ));
        assert_eq!(
            found,
            [
                "10:48: an entry of 'tags' expects text, but gets an object",
                "11:51: an entry of 'userProducts' expects a table, but gets text",
                "12:9: 'title' expects text, but gets a list of entries (grants)",
            ]
        );
    }

    #[test]
    fn on_invalid_is_checked() {
        let found = errors(&with_fields(
            "lastName = { from = \"name.familyName\", on_invalid = \"omit\" }\n\
             title = { from = \"title\", on_invalid = \"skip\" }\n\
             firstName = { first_of = [{ from = \"name.givenName\", on_invalid = \"omit\" }, \"userName\"] }",
        )
        .replace("lastName = \"name.familyName\"\n", ""));
        assert_eq!(
            found,
            [
                "9:1: test cannot take a user without 'lastName', so a value that cannot be \
                 mapped must reject the user",
                "10:40: 'on_invalid' must be \"omit\" or \"reject\"",
                "11:54: unknown key 'on_invalid' in a field rule",
            ]
        );
    }

    #[test]
    fn a_fixed_phone_region_next_to_a_mapped_locale_is_warned_about() {
        let fixed = with_fields(
            "mobile = { from = \"phoneNumbers.value\", transform = [{ phone_e164 = \"US\" }] }\n\
             userLocale = { from = \"locale\", transform = [{ table = { de_DE = \"de\" } }] }",
        );
        let mapping = load(&fixed).expect("a warning does not stop the mapping");
        let warnings: Vec<String> = mapping
            .warnings()
            .iter()
            .map(|w| format!("{}:{}: {}", w.at.line, w.at.column, w.message))
            .collect();
        assert_eq!(
            warnings,
            [
                "10:54: 'phone_e164' reads every number without a +country code as a US number, \
              but this file maps 'locale' (line 11): users elsewhere get wrong numbers or none"
            ]
        );
        assert_eq!(
            mapping.warnings()[0].hint.as_deref(),
            Some(
                "read each user's own region: { phone_e164 = { region = \"user\", default = \
                 \"US\" } }"
            )
        );
        // The user's own region, or no locale or address in the file: nothing to say.
        for quiet in [
            fixed.replace("phone_e164 = \"US\"", "phone_e164 = \"user\""),
            with_fields(
                "mobile = { from = \"phoneNumbers.value\", transform = [{ phone_e164 = \"US\" }] }",
            ),
        ] {
            assert!(
                load(&quiet).expect("valid").warnings().is_empty(),
                "{quiet}"
            );
        }
    }

    #[test]
    fn invalid_toml_is_located() {
        let error = only_error(&with_fields("title = \"unterminated"));
        assert!(matches!(error, MappingError::Syntax { .. }));
        let at = error.location().expect("located");
        assert_eq!((at.line, at.column), (10, 22), "{error}");
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let text = with_fields(
            "emial = \"userName\"\n\
             title = \"active\"\n\
             status = { value = \"ON\" }\n\
             mobile = \"phoneNumbers[type eq \\\"mobile\\\"].valeu\"",
        )
        .replace("lastName = \"name.familyName\"\n", "");
        let found = errors(&text);
        assert_eq!(found.len(), 5, "{found:#?}");
    }
}
