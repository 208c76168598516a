//! The mapping file format: TOML read into a tree that remembers where each value was written,
//! then into a `Spec` (rules per target field, scope, deprovisioning policy). Only the file's own
//! structure is checked here; `check` then holds the spec against the target's schema.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::mapping::check::closest;
use crate::mapping::transforms::{Step, StepAt};
use crate::mapping::{MappingError, SourceFile};
use crate::scim::filter::{self, Filter};
use crate::scim::path::{parse_value_path, ValuePath};
use crate::scim::schema::USER_SCHEMA;

/// A byte range in the mapping file.
pub(crate) type Span = Range<usize>;

/// A TOML value and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub span: Span,
    pub value: NodeValue,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// A TOML date or time literal, kept as written.
    Datetime(String),
    Array(Vec<Node>),
    /// Entries in the order they were written.
    Table(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Span,
    pub node: Node,
}

impl Node {
    pub(crate) fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::String(text) | NodeValue::Datetime(text) => Value::String(text.clone()),
            NodeValue::Integer(n) => Value::from(*n),
            NodeValue::Float(n) => Value::from(*n),
            NodeValue::Boolean(b) => Value::Bool(*b),
            NodeValue::Array(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Table(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.node.to_json()))
                    .collect(),
            ),
        }
    }

    fn describe(&self) -> &'static str {
        match self.value {
            NodeValue::String(_) => "text",
            NodeValue::Integer(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Boolean(_) => "a boolean",
            NodeValue::Datetime(_) => "a date",
            NodeValue::Array(_) => "a list",
            NodeValue::Table(_) => "a table",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<NodeValue>::deserialize(deserializer)?;
        Ok(Node {
            span: spanned.span(),
            value: spanned.into_inner(),
        })
    }
}

/// How the `toml` deserializer hands over a date: a one-entry map under this private key.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = NodeValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML value")
            }

            fn visit_bool<E: de::Error>(self, b: bool) -> Result<NodeValue, E> {
                Ok(NodeValue::Boolean(b))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<NodeValue, E> {
                Ok(NodeValue::Integer(n))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<NodeValue, E> {
                i64::try_from(n)
                    .map(NodeValue::Integer)
                    .map_err(|_| E::custom("integer too large"))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<NodeValue, E> {
                Ok(NodeValue::Float(n))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<NodeValue, E> {
                Ok(NodeValue::String(s.to_owned()))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<NodeValue, E> {
                Ok(NodeValue::String(s))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(NodeValue::Array(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<toml::Spanned<String>>()? {
                    if key.get_ref() == TOML_DATETIME_KEY {
                        return Ok(NodeValue::Datetime(map.next_value::<String>()?));
                    }
                    let node = map.next_value::<Node>()?;
                    entries.push(Entry {
                        key_span: key.span(),
                        key: key.into_inner(),
                        node,
                    });
                }
                Ok(NodeValue::Table(entries))
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}

/// A mapping file, structurally valid.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// In file order, which is also the order of the payload's fields.
    pub fields: Vec<FieldRule>,
    /// Fields whose rule could not be read: they exist, but there is nothing to render.
    pub broken_fields: Vec<(String, Span)>,
    /// The `[fields]` table, or the file start when it is missing.
    pub fields_span: Span,
    /// `[scope] filter`: the users this target takes; `None` takes everyone.
    pub scope: Option<Condition>,
    pub deprovision: Deprovision,
}

#[derive(Debug, Clone)]
pub(crate) struct FieldRule {
    pub name: String,
    pub name_span: Span,
    pub rule: Rule,
    /// Sent when the account is created, left out of updates.
    pub create_only: bool,
    /// `managed = false`: the target's own on accounts the bridge adopted (never written
    /// there); written as usual on accounts the bridge created.
    pub managed: bool,
    /// What a value that cannot be mapped does; unset, the target's schema decides.
    pub on_invalid: Option<OnInvalid>,
}

/// What a user's value that cannot be mapped (an unreadable phone number, a title too long)
/// does to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnInvalid {
    /// The user is sent without the field, and the delivery keeps a warning.
    Omit,
    /// The user is not sent; the delivery is rejected with the reason.
    Reject,
}

/// Where a value comes from, when it applies, and what happens to it on the way.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub span: Span,
    pub source: Source,
    pub when: Option<Condition>,
    pub transforms: Vec<StepAt>,
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Path(PathAt),
    /// The SCIM password: never in the user the engine sees, injected by the fan-out.
    Password(Span),
    Template(Template),
    Const(Value, Span),
    /// The first alternative that gives a value.
    FirstOf(Vec<Rule>),
    /// An object built member by member.
    Object(Vec<Member>),
    Grants(Grants),
}

#[derive(Debug, Clone)]
pub(crate) struct PathAt {
    pub path: ValuePath,
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub filter: Filter,
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub(crate) enum Part {
    Text(String),
    Path(Box<PathAt>),
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub name: String,
    pub rule: Rule,
}

/// Entitlements: group memberships (or other conditions) that become list entries.
#[derive(Debug, Clone)]
pub(crate) struct Grants {
    pub grants: Vec<Grant>,
    /// Merged into the entry of every grant the user does not qualify for, which is then sent
    /// as well (Primavera removes a licence on `action = "DELETE"`). Without it, such entries
    /// are left out.
    pub revoke: Option<(Map<String, Value>, Span)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub when: Condition,
    pub entry: Value,
    pub entry_span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    Disable,
    Delete,
    Ignore,
}

impl Policy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Policy::Disable => "disable",
            Policy::Delete => "delete",
            Policy::Ignore => "ignore",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Deprovision {
    /// What SCIM `active = false` does.
    pub deactivate: Policy,
    /// What SCIM DELETE does.
    pub delete: Policy,
    /// What leaving `[scope]` does to an account the target holds; disable unless written.
    pub out_of_scope: Policy,
    /// Where `out_of_scope` is written, if it is.
    pub out_of_scope_span: Option<Span>,
    /// The fields a disable overrides, on top of the user's full payload.
    pub disable_sets: Vec<DisableSet>,
    pub disable_sets_span: Option<Span>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) struct DisableSet {
    pub field: String,
    pub field_span: Span,
    pub value: Value,
    pub value_span: Span,
}

const TOP_KEYS: &[&str] = &["deprovision", "fields", "scope"];
const SCOPE_KEYS: &[&str] = &["filter"];
const SOURCE_KEYS: &[&str] = &["from", "template", "value", "first_of", "object", "grants"];
const FIELD_KEYS: &[&str] = &[
    "from",
    "template",
    "value",
    "first_of",
    "object",
    "grants",
    "revoke",
    "when",
    "transform",
    "create_only",
    "managed",
    "on_invalid",
];
const DEPROVISION_KEYS: &[&str] = &["deactivate", "delete", "out_of_scope", "disable_sets"];
const GRANT_KEYS: &[&str] = &["group", "when", "entry"];
const POLICIES: &[&str] = &["disable", "delete", "ignore"];

/// Reads a mapping file. Invalid TOML stops here; every other problem is collected while
/// the rest of the file is still read, so one run reports them all.
pub(crate) fn parse(file: &SourceFile) -> Result<(Spec, Vec<MappingError>), MappingError> {
    let root: Node = toml::from_str(&file.text).map_err(|error| MappingError::Syntax {
        at: file.locate(&error.span().unwrap_or(0..0)),
        message: error.message().trim().to_owned(),
        hint: None,
    })?;
    let mut reader = Reader {
        file,
        errors: Vec::new(),
    };
    let spec = reader.spec(&root);
    Ok((spec, reader.errors))
}

struct Reader<'f> {
    file: &'f SourceFile,
    errors: Vec<MappingError>,
}

impl Reader<'_> {
    fn invalid(&mut self, span: &Span, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(MappingError::Invalid {
            at: self.file.locate(span),
            message: message.into(),
            hint,
        });
    }

    /// Reports keys not in `known`, with the nearest known key as a hint; true if any.
    fn unknown_keys(&mut self, entries: &[Entry], known: &[&str], context: &str) -> bool {
        let before = self.errors.len();
        for entry in entries.iter().filter(|e| !known.contains(&e.key.as_str())) {
            let hint = match closest(&entry.key, known.iter().copied()) {
                Some(close) => format!("did you mean '{close}'?"),
                None => format!("{context} takes: {}", known.join(", ")),
            };
            self.invalid(
                &entry.key_span,
                format!("unknown key '{}' in {context}", entry.key),
                Some(hint),
            );
        }
        self.errors.len() > before
    }

    fn table<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Entry]> {
        match &node.value {
            NodeValue::Table(entries) => Some(entries),
            _ => {
                self.invalid(
                    &node.span,
                    format!("{what} must be a table, not {}", node.describe()),
                    None,
                );
                None
            }
        }
    }

    fn spec(&mut self, root: &Node) -> Spec {
        let entries: &[Entry] = match &root.value {
            NodeValue::Table(entries) => entries,
            _ => &[],
        };
        self.unknown_keys(entries, TOP_KEYS, "a mapping file");
        let find = |key: &str| entries.iter().find(|e| e.key == key);
        let deprovision = match find("deprovision") {
            Some(entry) => self.deprovision(&entry.node),
            None => {
                self.invalid(
                    &(0..0),
                    "the file has no [deprovision] section",
                    Some(
                        "say what SCIM active=false and DELETE do: [deprovision] deactivate = \
                         \"disable\", delete = \"disable\", disable_sets = { ... }"
                            .to_owned(),
                    ),
                );
                Deprovision {
                    deactivate: Policy::Ignore,
                    delete: Policy::Ignore,
                    out_of_scope: Policy::Disable,
                    out_of_scope_span: None,
                    disable_sets: Vec::new(),
                    disable_sets_span: None,
                    span: 0..0,
                }
            }
        };
        let scope = find("scope").and_then(|entry| self.scope(&entry.node));
        let mut spec = Spec {
            fields: Vec::new(),
            broken_fields: Vec::new(),
            fields_span: 0..0,
            scope,
            deprovision,
        };
        match find("fields") {
            Some(entry) => {
                spec.fields_span = entry.key_span.clone();
                if let Some(fields) = self.table(&entry.node, "[fields]") {
                    for field in fields {
                        self.field(field, &mut spec);
                    }
                }
            }
            None => self.invalid(
                &(0..0),
                "the file has no [fields] section",
                Some("map each target field: [fields] lastName = \"name.familyName\"".to_owned()),
            ),
        }
        spec
    }

    fn deprovision(&mut self, node: &Node) -> Deprovision {
        let mut result = Deprovision {
            deactivate: Policy::Ignore,
            delete: Policy::Ignore,
            out_of_scope: Policy::Disable,
            out_of_scope_span: None,
            disable_sets: Vec::new(),
            disable_sets_span: None,
            span: node.span.clone(),
        };
        let Some(entries) = self.table(node, "[deprovision]") else {
            return result;
        };
        self.unknown_keys(entries, DEPROVISION_KEYS, "[deprovision]");
        for (key, slot) in [
            ("deactivate", &mut result.deactivate),
            ("delete", &mut result.delete),
        ] {
            match entries.iter().find(|e| e.key == key) {
                Some(entry) => match policy(&entry.node) {
                    Some(found) => *slot = found,
                    None => self.errors.push(MappingError::Invalid {
                        at: self.file.locate(&entry.node.span),
                        message: format!("'{key}' must be one of: {}", POLICIES.join(", ")),
                        hint: Some(format!("write {key} = \"disable\"")),
                    }),
                },
                None => self.invalid(
                    &node.span,
                    format!("[deprovision] does not say what '{key}' does"),
                    Some(format!(
                        "add {key} = \"disable\", \"delete\" or \"ignore\"; there is no default, \
                         so the choice is visible in review"
                    )),
                ),
            }
        }
        // Unlike the two above it has a default: files written before scoping existed
        // stay valid, and a file without [scope] never uses it.
        if let Some(entry) = entries.iter().find(|e| e.key == "out_of_scope") {
            result.out_of_scope_span = Some(entry.key_span.clone());
            match policy(&entry.node) {
                Some(found) => result.out_of_scope = found,
                None => self.invalid(
                    &entry.node.span,
                    format!("'out_of_scope' must be one of: {}", POLICIES.join(", ")),
                    Some(
                        "write out_of_scope = \"disable\" (the default), \"delete\" or \"ignore\""
                            .to_owned(),
                    ),
                ),
            }
        }
        if let Some(entry) = entries.iter().find(|e| e.key == "disable_sets") {
            result.disable_sets_span = Some(entry.key_span.clone());
            if let Some(sets) = self.table(&entry.node, "disable_sets") {
                result.disable_sets = sets
                    .iter()
                    .map(|set| DisableSet {
                        field: set.key.clone(),
                        field_span: set.key_span.clone(),
                        value: set.node.to_json(),
                        value_span: set.node.span.clone(),
                    })
                    .collect();
            }
        }
        result
    }

    /// `[scope]`: one SCIM filter, in quotes.
    fn scope(&mut self, node: &Node) -> Option<Condition> {
        let entries = self.table(node, "[scope]")?;
        self.unknown_keys(entries, SCOPE_KEYS, "[scope]");
        let Some(entry) = entries.iter().find(|e| e.key == "filter") else {
            self.invalid(
                &node.span,
                "[scope] has no filter",
                Some(SCOPE_EXAMPLE.to_owned()),
            );
            return None;
        };
        let NodeValue::String(text) = &entry.node.value else {
            self.invalid(
                &entry.node.span,
                format!(
                    "'filter' takes a SCIM filter in quotes, not {}",
                    entry.node.describe()
                ),
                Some(SCOPE_EXAMPLE.to_owned()),
            );
            return None;
        };
        match filter::parse(text) {
            Ok(filter) => Some(Condition {
                filter,
                text: text.clone(),
                span: entry.node.span.clone(),
            }),
            Err(error) => {
                let span = error_position(&error.to_string())
                    .and_then(|position| self.inside_string(&entry.node, text, position))
                    .unwrap_or_else(|| entry.node.span.clone());
                self.invalid(
                    &span,
                    format!("the [scope] filter does not parse: {error}"),
                    Some(SCOPE_EXAMPLE.to_owned()),
                );
                None
            }
        }
    }

    /// Where the character at `position` (1-based) of the string `text`, written at `node`,
    /// is in the file. Only a string written without escapes lines up character for
    /// character; for any other the caller points at the whole string.
    fn inside_string(&self, node: &Node, text: &str, position: usize) -> Option<Span> {
        let raw = self.file.text.get(node.span.clone())?;
        let quote = [3, 1].into_iter().find(|&quote| {
            raw.len() == text.len() + 2 * quote && raw.get(quote..quote + text.len()) == Some(text)
        })?;
        let start = node.span.start + quote;
        let offset = text
            .char_indices()
            .nth(position.saturating_sub(1))
            .map_or(text.len(), |(at, _)| at);
        let width = text[offset..].chars().next().map_or(0, char::len_utf8);
        Some(start + offset..start + offset + width)
    }

    fn field(&mut self, entry: &Entry, spec: &mut Spec) {
        let before = self.errors.len();
        let create_only = self.flag(entry, "create_only").unwrap_or(false);
        let managed = self.flag(entry, "managed").unwrap_or(true);
        let on_invalid = match &entry.node.value {
            NodeValue::Table(keys) => keys
                .iter()
                .find(|k| k.key == "on_invalid")
                .and_then(|k| self.on_invalid(&k.node)),
            _ => None,
        };
        let rule = self.rule(&entry.node, true);
        match rule {
            Some(rule) if self.errors.len() == before => spec.fields.push(FieldRule {
                name: entry.key.clone(),
                name_span: entry.key_span.clone(),
                rule,
                create_only,
                managed,
                on_invalid,
            }),
            _ => spec
                .broken_fields
                .push((entry.key.clone(), entry.key_span.clone())),
        }
    }

    fn on_invalid(&mut self, node: &Node) -> Option<OnInvalid> {
        match &node.value {
            NodeValue::String(text) if text == "omit" => Some(OnInvalid::Omit),
            NodeValue::String(text) if text == "reject" => Some(OnInvalid::Reject),
            _ => {
                self.invalid(
                    &node.span,
                    "'on_invalid' must be \"omit\" or \"reject\"",
                    Some(
                        "\"omit\" sends the user without the field and keeps a warning; \
                         \"reject\" sends nothing and records why"
                            .to_owned(),
                    ),
                );
                None
            }
        }
    }

    /// A boolean key of a field's table (`create_only`, `managed`), if given.
    fn flag(&mut self, entry: &Entry, key: &str) -> Option<bool> {
        let NodeValue::Table(keys) = &entry.node.value else {
            return None;
        };
        let found = keys.iter().find(|k| k.key == key)?;
        match found.node.value {
            NodeValue::Boolean(b) => Some(b),
            _ => {
                self.invalid(
                    &found.node.span,
                    format!("'{key}' must be true or false"),
                    None,
                );
                None
            }
        }
    }

    /// A rule: a path in quotes, a bare constant, or a table. `top` is true for a field's own
    /// rule, where `create_only` and `grants` may appear.
    fn rule(&mut self, node: &Node, top: bool) -> Option<Rule> {
        match &node.value {
            NodeValue::String(text) => {
                let source = self.path_source(text, &node.span, node)?;
                Some(Rule {
                    span: node.span.clone(),
                    source,
                    when: None,
                    transforms: Vec::new(),
                })
            }
            NodeValue::Integer(_)
            | NodeValue::Float(_)
            | NodeValue::Boolean(_)
            | NodeValue::Datetime(_) => Some(Rule {
                span: node.span.clone(),
                source: Source::Const(node.to_json(), node.span.clone()),
                when: None,
                transforms: Vec::new(),
            }),
            NodeValue::Array(_) => {
                self.invalid(
                    &node.span,
                    "a list here is ambiguous",
                    Some(
                        "for a constant list write { value = [...] }; for fallbacks write \
                         { first_of = [...] }"
                            .to_owned(),
                    ),
                );
                None
            }
            NodeValue::Table(entries) => self.rule_table(node, entries, top),
        }
    }

    fn rule_table(&mut self, node: &Node, entries: &[Entry], top: bool) -> Option<Rule> {
        let known: Vec<&str> = FIELD_KEYS
            .iter()
            .copied()
            .filter(|k| {
                top || !matches!(
                    *k,
                    "create_only" | "managed" | "grants" | "revoke" | "on_invalid"
                )
            })
            .collect();
        let misspelt = self.unknown_keys(entries, &known, "a field rule");
        let sources: Vec<&Entry> = entries
            .iter()
            .filter(|e| SOURCE_KEYS.contains(&e.key.as_str()) && known.contains(&e.key.as_str()))
            .collect();
        let source_entry = match sources.as_slice() {
            [one] => *one,
            // A misspelt source key ("form") has been reported already.
            [] if misspelt => return None,
            [] => {
                self.invalid(
                    &node.span,
                    "this rule does not say where the value comes from",
                    Some(format!("give exactly one of: {}", SOURCE_KEYS.join(", "))),
                );
                return None;
            }
            [_, second, ..] => {
                self.invalid(
                    &second.key_span,
                    format!(
                        "a rule takes one source, but this one has {}",
                        sources
                            .iter()
                            .map(|e| format!("'{}'", e.key))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                    Some("for fallbacks use first_of = [...]".to_owned()),
                );
                return None;
            }
        };
        let source = self.source(source_entry, entries)?;
        let when = match entries.iter().find(|e| e.key == "when") {
            Some(entry) => Some(self.condition(&entry.node)?),
            None => None,
        };
        let transforms = match entries.iter().find(|e| e.key == "transform") {
            Some(entry) => self.transforms(&entry.node)?,
            None => Vec::new(),
        };
        if let Some(revoke) = entries.iter().find(|e| e.key == "revoke") {
            if !matches!(source, Source::Grants(_)) {
                self.invalid(&revoke.key_span, "'revoke' only applies to grants", None);
            }
        }
        if matches!(source, Source::Password(_)) && (when.is_some() || !transforms.is_empty()) {
            self.invalid(
                &node.span,
                "the password is passed through as is",
                Some("remove 'when' and 'transform' from this rule".to_owned()),
            );
        }
        Some(Rule {
            span: node.span.clone(),
            source,
            when,
            transforms,
        })
    }

    fn source(&mut self, entry: &Entry, siblings: &[Entry]) -> Option<Source> {
        let node = &entry.node;
        match entry.key.as_str() {
            "from" => match &node.value {
                NodeValue::String(text) => self.path_source(text, &node.span, node),
                _ => {
                    self.invalid(
                        &node.span,
                        format!(
                            "'from' takes a SCIM path in quotes, not {}",
                            node.describe()
                        ),
                        Some("for a constant write value = ...".to_owned()),
                    );
                    None
                }
            },
            "value" => Some(Source::Const(node.to_json(), node.span.clone())),
            "template" => match &node.value {
                NodeValue::String(text) => self.template(text, node).map(Source::Template),
                _ => {
                    self.invalid(&node.span, "'template' takes text", None);
                    None
                }
            },
            "first_of" => match &node.value {
                NodeValue::Array(items) if items.len() >= 2 => {
                    let rules: Vec<Option<Rule>> =
                        items.iter().map(|item| self.rule(item, false)).collect();
                    let rules: Option<Vec<Rule>> = rules.into_iter().collect();
                    if let Some(rules) = &rules {
                        if rules
                            .iter()
                            .any(|r| matches!(r.source, Source::Password(_)))
                        {
                            self.invalid(&node.span, "the password cannot be a fallback", None);
                            return None;
                        }
                    }
                    rules.map(Source::FirstOf)
                }
                _ => {
                    self.invalid(
                        &node.span,
                        "'first_of' takes a list of at least two alternatives",
                        Some("first_of = [\"displayName\", \"userName\"]".to_owned()),
                    );
                    None
                }
            },
            "object" => {
                let members = self.table(node, "'object'")?;
                let mut built = Vec::new();
                for member in members {
                    let rule = self.rule(&member.node, false)?;
                    if matches!(rule.source, Source::Password(_)) {
                        self.invalid(&member.node.span, "the password cannot be nested", None);
                        return None;
                    }
                    built.push(Member {
                        name: member.key.clone(),
                        rule,
                    });
                }
                Some(Source::Object(built))
            }
            "grants" => self.grants(node, siblings).map(Source::Grants),
            _ => None,
        }
    }

    fn path_source(&mut self, text: &str, span: &Span, node: &Node) -> Option<Source> {
        let path = self.path(text, span)?;
        let is_password = path.filter.is_none()
            && path.sub_attr.is_none()
            && path.attr.attr.eq_ignore_ascii_case("password")
            && path
                .attr
                .urn
                .as_deref()
                .is_none_or(|urn| urn.eq_ignore_ascii_case(USER_SCHEMA));
        if is_password {
            return Some(Source::Password(node.span.clone()));
        }
        Some(Source::Path(PathAt {
            path,
            text: text.to_owned(),
            span: span.clone(),
        }))
    }

    fn path(&mut self, text: &str, span: &Span) -> Option<ValuePath> {
        match parse_value_path(text) {
            Ok(path) => Some(path),
            Err(error) => {
                let looks_constant = !text.contains(['.', '[', ':'])
                    && text.chars().any(|c| !c.is_ascii_alphanumeric());
                self.errors.push(MappingError::InvalidSourcePath {
                    at: self.file.locate(span),
                    path: text.to_owned(),
                    reason: error.to_string(),
                    hint: Some(if looks_constant {
                        format!("for the constant text write {{ value = \"{text}\" }}")
                    } else {
                        "paths look like userName, name.givenName or \
                         emails[type eq \"work\"].value"
                            .to_owned()
                    }),
                });
                None
            }
        }
    }

    fn condition(&mut self, node: &Node) -> Option<Condition> {
        let NodeValue::String(text) = &node.value else {
            self.invalid(
                &node.span,
                "'when' takes a SCIM filter in quotes",
                Some("when = 'title pr' or when = 'groups[display eq \"Admins\"]'".to_owned()),
            );
            return None;
        };
        self.filter(text, &node.span)
    }

    fn filter(&mut self, text: &str, span: &Span) -> Option<Condition> {
        match filter::parse(text) {
            Ok(filter) => Some(Condition {
                filter,
                text: text.to_owned(),
                span: span.clone(),
            }),
            Err(error) => {
                self.invalid(
                    span,
                    format!("'{text}' is not a SCIM filter: {error}"),
                    Some(
                        "conditions are SCIM filters: 'title pr', 'userType eq \"Employee\"', \
                         'groups[display eq \"Admins\"]'"
                            .to_owned(),
                    ),
                );
                None
            }
        }
    }

    fn transforms(&mut self, node: &Node) -> Option<Vec<StepAt>> {
        let NodeValue::Array(items) = &node.value else {
            self.invalid(
                &node.span,
                "'transform' takes a list of steps",
                Some("transform = [\"trim\", { truncate = 25 }]".to_owned()),
            );
            return None;
        };
        let mut steps = Vec::new();
        let mut ok = true;
        for item in items {
            match Step::parse(item) {
                Ok(step) => steps.push(step),
                Err(error) => {
                    ok = false;
                    self.invalid(&error.span, error.message, error.hint);
                }
            }
        }
        ok.then_some(steps)
    }

    fn template(&mut self, text: &str, node: &Node) -> Option<Template> {
        // Placeholder positions are exact only when the string is written without escapes
        // (the usual case); otherwise errors point at the whole string.
        let raw = self.file.text.get(node.span.clone()).unwrap_or("");
        let inner_start = (raw.len() == text.len() + 2).then_some(node.span.start + 1);
        let at = |from: usize, to: usize| match inner_start {
            Some(start) => start + from..start + to,
            None => node.span.clone(),
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices().peekable();
        let mut ok = true;
        while let Some((index, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|(_, next)| *next) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|(_, next)| *next) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '{' => {
                    let Some(close) = text[index..].find('}').map(|c| index + c) else {
                        self.invalid(
                            &at(index, index + 1),
                            "'{' opens a placeholder that is never closed",
                            Some("write {{ for a literal brace".to_owned()),
                        );
                        return None;
                    };
                    let inner = &text[index + 1..close];
                    let span = at(index + 1, close);
                    match self.path(inner, &span) {
                        Some(path) => {
                            if !literal.is_empty() {
                                parts.push(Part::Text(std::mem::take(&mut literal)));
                            }
                            parts.push(Part::Path(Box::new(PathAt {
                                path,
                                text: inner.to_owned(),
                                span,
                            })));
                        }
                        None => ok = false,
                    }
                    while rest.peek().is_some_and(|(i, _)| *i <= close) {
                        rest.next();
                    }
                }
                '}' => {
                    self.invalid(
                        &at(index, index + 1),
                        "'}' closes no placeholder",
                        Some("write }} for a literal brace".to_owned()),
                    );
                    return None;
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if !parts.iter().any(|part| matches!(part, Part::Path(_))) {
            self.invalid(
                &node.span,
                "this template has no {placeholder}",
                Some(format!("for constant text write value = \"{text}\"")),
            );
            return None;
        }
        ok.then_some(Template { parts })
    }

    fn grants(&mut self, node: &Node, siblings: &[Entry]) -> Option<Grants> {
        let NodeValue::Array(items) = &node.value else {
            self.invalid(
                &node.span,
                "'grants' takes a list of { group = ..., entry = ... }",
                None,
            );
            return None;
        };
        let mut grants = Vec::new();
        let mut ok = true;
        for item in items {
            match self.grant(item) {
                Some(grant) => grants.push(grant),
                None => ok = false,
            }
        }
        let revoke = match siblings.iter().find(|e| e.key == "revoke") {
            Some(entry) => match entry.node.to_json() {
                Value::Object(members) => Some((members, entry.node.span.clone())),
                _ => {
                    self.invalid(
                        &entry.node.span,
                        "'revoke' takes a table merged into entries the user lost",
                        Some("revoke = { action = \"DELETE\" }".to_owned()),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };
        ok.then_some(Grants { grants, revoke })
    }

    fn grant(&mut self, node: &Node) -> Option<Grant> {
        let entries = self.table(node, "a grant")?;
        self.unknown_keys(entries, GRANT_KEYS, "a grant");
        let find = |key: &str| entries.iter().find(|e| e.key == key);
        let when = match (find("group"), find("when")) {
            (Some(group), None) => {
                let NodeValue::String(name) = &group.node.value else {
                    self.invalid(
                        &group.node.span,
                        "'group' takes a group's display name",
                        None,
                    );
                    return None;
                };
                let quoted = serde_json::to_string(name).unwrap_or_default();
                let mut condition =
                    self.filter(&format!("groups[display eq {quoted}]"), &group.node.span)?;
                condition.text = format!("member of '{name}'");
                condition
            }
            (None, Some(when)) => self.condition(&when.node)?,
            _ => {
                self.invalid(
                    &node.span,
                    "a grant needs exactly one of 'group' or 'when'",
                    Some(
                        "{ group = \"Schedulers\", entry = { productName = \"SCHEDULE\" } }"
                            .to_owned(),
                    ),
                );
                return None;
            }
        };
        let Some(entry) = find("entry") else {
            self.invalid(&node.span, "a grant needs an 'entry'", None);
            return None;
        };
        Some(Grant {
            when,
            entry: entry.node.to_json(),
            entry_span: entry.node.span.clone(),
        })
    }
}

const SCOPE_EXAMPLE: &str =
    "[scope] filter = 'groups[display eq \"Primavera Schedulers\"] and active eq true'";

/// The 1-based character a filter syntax error points at. The SCIM layer's error carries
/// only its detail text, which ends in "at position N of filter '...'".
fn error_position(detail: &str) -> Option<usize> {
    let (_, after) = detail.rsplit_once(" at position ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn policy(node: &Node) -> Option<Policy> {
    match &node.value {
        NodeValue::String(text) => match text.as_str() {
            "disable" => Some(Policy::Disable),
            "delete" => Some(Policy::Delete),
            "ignore" => Some(Policy::Ignore),
            _ => None,
        },
        _ => None,
    }
}
