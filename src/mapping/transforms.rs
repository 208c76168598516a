//! Transforms: the chainable steps a value takes between the SCIM user and the payload
//! (`lower`, `truncate`, value tables, phone numbers, ...). Parsed from a mapping file by
//! `spec`, typed by `check` so an impossible chain is refused at load time, applied by `engine`.

use std::fmt;
use std::str::FromStr;

use phonenumber::metadata::DATABASE;
use phonenumber::{country, Mode, PhoneNumber};
use regex::Regex;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::format_description::OwnedFormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::mapping::spec::{Node, NodeValue, Span};
use crate::scim::resource::field;

/// What kind of value flows through a rule, as far as the mapping file can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    Integer,
    Number,
    Object,
    /// Not knowable from the file (a custom value); checked when rendering.
    Any,
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Bool => "a boolean",
            Kind::Integer => "an integer",
            Kind::Number => "a number",
            Kind::Object => "an object",
            Kind::Any => "any value",
        }
    }

    pub(crate) fn of(value: &Value) -> Kind {
        match value {
            Value::String(_) => Kind::Text,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Integer,
            Value::Number(_) => Kind::Number,
            Value::Object(_) => Kind::Object,
            Value::Null | Value::Array(_) => Kind::Any,
        }
    }

    /// Whether a value of kind `self` can stand where `other` is expected.
    pub(crate) fn fits(self, other: Kind) -> bool {
        self == other
            || self == Kind::Any
            || other == Kind::Any
            || (self == Kind::Integer && other == Kind::Number)
    }
}

/// The kind of a rule's values and whether there may be several (a multi-valued attribute,
/// the output of `split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub kind: Kind,
    pub many: bool,
}

impl Shape {
    pub(crate) fn one(kind: Kind) -> Shape {
        Shape { kind, many: false }
    }

    pub(crate) fn describe(self) -> String {
        if self.many {
            format!("a list of {}", plural(self.kind))
        } else {
            self.kind.describe().to_owned()
        }
    }
}

fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "text values",
        Kind::Bool => "booleans",
        Kind::Integer => "integers",
        Kind::Number => "numbers",
        Kind::Object => "objects",
        Kind::Any => "values",
    }
}

/// Which part of a phone number a phone step keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhonePart {
    /// `+14155550100`
    E164,
    /// `1`: the country calling code, without the `+`.
    CountryCode,
    /// `4155550100`: the number within its country, digits only.
    National,
    /// `123` from `+1 415 555 0100 ext. 123`.
    Extension,
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    Lower,
    Upper,
    Trim,
    Truncate(usize),
    Replace {
        find: String,
        with: String,
    },
    /// The first capture group of the first match (the whole match when the pattern has no
    /// group); a value that does not match is dropped.
    Capture(Regex),
    Split(String),
    Join(String),
    /// Used when the rule has no value; never replaces one.
    Default(Value),
    /// A value table. Keys are compared exactly first, then ignoring case; a value with no
    /// entry is dropped (chain `default` to catch it).
    Table(Vec<TableEntry>),
    Not,
    /// Reads an RFC 3339 date-time or a plain `YYYY-MM-DD` date and writes it in this format.
    Date(OwnedFormatItem),
    /// Parses a phone number, with the region for numbers written without a country code.
    Phone(PhonePart, PhoneRegion),
}

/// How a phone step reads a number written without a `+country` code. A number that carries
/// one keeps it, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhoneRegion {
    /// It is not read at all (`"phone_e164"`).
    Unset,
    /// As a number of this region, for every user (`{ phone_e164 = "US" }`).
    Fixed(country::Id),
    /// As a number of the user's own region (see `user_region`), else of `default`
    /// (`{ phone_e164 = "user" }`, `{ phone_e164 = { region = "user", default = "US" } }`).
    User { default: Option<country::Id> },
}

impl PhoneRegion {
    /// The region a number of `user` without a country code is read in, and why. Runs for
    /// every phone step of every render, so the reason is kept as borrowed parts and only
    /// written out when shown.
    pub(crate) fn resolve(self, user: &Value) -> Option<RegionChoice<'_>> {
        match self {
            PhoneRegion::Unset => None,
            PhoneRegion::Fixed(id) => Some(RegionChoice {
                id,
                why: RegionReason::Fixed,
            }),
            PhoneRegion::User { default } => user_region(user).or_else(|| {
                default.map(|id| RegionChoice {
                    id,
                    why: RegionReason::Default,
                })
            }),
        }
    }

    /// Why a number without a country code found no region to be read in; a fixed region
    /// always has one.
    fn unreadable_without_code(self) -> Option<&'static str> {
        match self {
            PhoneRegion::Unset => Some("it has no +country code and the transform names no region"),
            PhoneRegion::Fixed(_) => None,
            PhoneRegion::User { .. } => Some(
                "it has no +country code, and the user has no address country or locale with a \
                 region to read it by",
            ),
        }
    }
}

/// The region chosen for a user's numbers and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegionChoice<'u> {
    pub id: country::Id,
    pub why: RegionReason<'u>,
}

/// Where a region came from, in words for the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegionReason<'u> {
    Fixed,
    Address {
        which: &'static str,
        country: &'u str,
    },
    Locale {
        attribute: &'static str,
        tag: &'u str,
    },
    Default,
}

impl fmt::Display for RegionReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionReason::Fixed => f.write_str("fixed in the mapping"),
            RegionReason::Address { which, country } => {
                write!(f, "the {which} address's country is '{country}'")
            }
            RegionReason::Locale { attribute, tag } => write!(f, "{attribute} is '{tag}'"),
            RegionReason::Default => f.write_str(
                "the mapping's default; the user has no address country and no locale with a \
                 region",
            ),
        }
    }
}

/// The user's own region: the country of the primary address, else of the work address, else
/// the region of `locale` or `preferredLanguage` in either form identity providers send
/// (`fr-FR`, `de_DE`). A value that names no region phone numbers are known in is passed over.
pub(crate) fn user_region(user: &Value) -> Option<RegionChoice<'_>> {
    let object = user.as_object()?;
    let addresses: &[Value] = match field(object, "addresses") {
        Some(Value::Array(items)) => items,
        _ => &[],
    };
    let primary = addresses
        .iter()
        .filter_map(Value::as_object)
        .find(|a| field(a, "primary").and_then(as_bool) == Some(true));
    let work = addresses.iter().filter_map(Value::as_object).find(|a| {
        field(a, "type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("work"))
    });
    for (address, which) in [(primary, "primary"), (work, "work")] {
        let Some(Value::String(country)) = address.and_then(|a| field(a, "country")) else {
            continue;
        };
        if let Some(id) = known_region(country) {
            return Some(RegionChoice {
                id,
                why: RegionReason::Address { which, country },
            });
        }
    }
    for attribute in ["locale", "preferredLanguage"] {
        let Some(Value::String(tag)) = field(object, attribute) else {
            continue;
        };
        if let Some(id) = locale_region(tag).and_then(known_region) {
            return Some(RegionChoice {
                id,
                why: RegionReason::Locale { attribute, tag },
            });
        }
    }
    None
}

/// The region subtag of a language tag: `FR` in `fr-FR`, `DE` in `de_DE`, `CN` in
/// `zh-Hans-CN`. Of a list such as preferredLanguage's `da, en-gb;q=0.8`, the first entry's.
fn locale_region(tag: &str) -> Option<&str> {
    let first = tag.split(',').next()?.split(';').next()?.trim();
    let mut subtags = first.split(['-', '_']);
    let language = subtags.next()?;
    if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    subtags
        .take(2)
        .find(|s| s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic()))
}

/// A two-letter region code the phone number data knows.
fn known_region(code: &str) -> Option<country::Id> {
    let &[a, b] = code.trim().as_bytes() else {
        return None;
    };
    let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    let id = country::Id::from_str(std::str::from_utf8(&upper).ok()?).ok()?;
    DATABASE.by_id(id.as_ref()).map(|_| id)
}

#[derive(Debug, Clone)]
pub(crate) struct TableEntry {
    pub key: String,
    pub value: Value,
    pub span: Span,
}

/// A step as written in the file, with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct StepAt {
    pub step: Step,
    pub name: &'static str,
    pub span: Span,
}

/// Every transform name, for parsing and for "did you mean" hints.
pub(crate) const NAMES: &[&str] = &[
    "lower",
    "upper",
    "trim",
    "truncate",
    "replace",
    "capture",
    "split",
    "join",
    "default",
    "table",
    "not",
    "date",
    "phone_e164",
    "phone_country_code",
    "phone_national",
    "phone_extension",
];

/// What a step needed and what it was given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub expected: String,
    pub found: String,
}

/// Why a step as written is not a step, with a hint at the fix.
#[derive(Debug)]
pub(crate) struct StepError {
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
}

/// Why a rule's value cannot be used, with the value to blame when there is one, so that a
/// warning can show it apart from the reason.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub value: Option<Value>,
    pub reason: String,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal {
            value: None,
            reason,
        }
    }
}

impl Step {
    /// Parses `"name"` or `{ name = argument }`.
    pub(crate) fn parse(node: &Node) -> Result<StepAt, StepError> {
        let (name, name_span, arg) = match &node.value {
            NodeValue::String(name) => (name.as_str(), node.span.clone(), None),
            NodeValue::Table(entries) if entries.len() == 1 => {
                let entry = &entries[0];
                (
                    entry.key.as_str(),
                    entry.key_span.clone(),
                    Some(&entry.node),
                )
            }
            _ => {
                return Err(StepError {
                    span: node.span.clone(),
                    message: "a transform is a name (\"lower\") or a one-key table \
                              ({ truncate = 25 })"
                        .to_owned(),
                    hint: None,
                })
            }
        };
        let Some(known) = NAMES.iter().copied().find(|known| *known == name) else {
            return Err(StepError {
                span: name_span,
                message: format!("unknown transform '{name}'"),
                hint: Some(
                    match crate::mapping::check::closest(name, NAMES.iter().copied()) {
                        Some(close) => format!("did you mean '{close}'?"),
                        None => format!("transforms are: {}", NAMES.join(", ")),
                    },
                ),
            });
        };
        let step = parse_argument(known, arg).map_err(|(message, hint)| StepError {
            span: arg.map_or(name_span, |arg| arg.span.clone()),
            message: format!("{known}: {message}"),
            hint,
        })?;
        Ok(StepAt {
            step,
            name: known,
            span: node.span.clone(),
        })
    }

    /// The shape a value leaves this step with, or what the step expected instead of `input`.
    pub(crate) fn output(&self, input: Shape) -> Result<Shape, Mismatch> {
        let needs = |kinds: &[Kind], what: &str| {
            if input.kind == Kind::Any || kinds.contains(&input.kind) {
                Ok(())
            } else {
                Err(Mismatch {
                    expected: what.to_owned(),
                    found: input.describe(),
                })
            }
        };
        match self {
            Step::Lower
            | Step::Upper
            | Step::Trim
            | Step::Truncate(_)
            | Step::Replace { .. }
            | Step::Capture(_)
            | Step::Date(_)
            | Step::Phone(..) => {
                needs(&[Kind::Text], "text")?;
                Ok(Shape {
                    kind: Kind::Text,
                    many: input.many,
                })
            }
            Step::Split(_) => {
                needs(&[Kind::Text], "text")?;
                Ok(Shape {
                    kind: Kind::Text,
                    many: true,
                })
            }
            Step::Join(_) => {
                needs(
                    &[Kind::Text, Kind::Bool, Kind::Integer, Kind::Number],
                    "text, numbers or booleans",
                )?;
                Ok(Shape::one(Kind::Text))
            }
            Step::Not => {
                needs(&[Kind::Bool], "a boolean")?;
                Ok(input)
            }
            Step::Default(value) => {
                let kind = Kind::of(value);
                if kind.fits(input.kind) || input.kind.fits(kind) {
                    let kind = if input.kind == Kind::Any {
                        kind
                    } else {
                        input.kind
                    };
                    Ok(Shape {
                        kind,
                        many: input.many,
                    })
                } else {
                    Err(Mismatch {
                        expected: input.kind.describe().to_owned(),
                        found: kind.describe().to_owned(),
                    })
                }
            }
            Step::Table(entries) => {
                needs(
                    &[Kind::Text, Kind::Bool, Kind::Integer, Kind::Number],
                    "text, numbers or booleans",
                )?;
                let kind = entries.first().map_or(Kind::Any, |e| Kind::of(&e.value));
                Ok(Shape {
                    kind,
                    many: input.many,
                })
            }
        }
    }

    /// Applies the step to a rule's values (none, one or several) of `user`. Empty strings
    /// that come out count as no value, so they never reach a target that refuses them.
    pub(crate) fn apply(
        &self,
        values: Vec<Value>,
        user: &Value,
        phones: &mut ParsedPhones,
    ) -> Result<Vec<Value>, Refusal> {
        let out = match self {
            Step::Lower => map_text(values, |s| Ok(Some(s.to_lowercase())))?,
            Step::Upper => map_text(values, |s| Ok(Some(s.to_uppercase())))?,
            Step::Trim => map_text(values, |s| Ok(Some(s.trim().to_owned())))?,
            Step::Truncate(max) => map_text(values, |s| Ok(Some(s.chars().take(*max).collect())))?,
            Step::Replace { find, with } => map_text(values, |s| Ok(Some(s.replace(find, with))))?,
            Step::Capture(regex) => map_text(values, |s| {
                Ok(regex.captures(&s).and_then(|caps| {
                    caps.get(1)
                        .or_else(|| caps.get(0))
                        .map(|m| m.as_str().to_owned())
                }))
            })?,
            Step::Split(separator) => {
                let mut out = Vec::new();
                for value in values {
                    let text = as_text(&value).map_err(|reason| blame(&value, reason))?;
                    out.extend(text.split(separator.as_str()).map(Value::from));
                }
                out
            }
            Step::Join(separator) => {
                if values.is_empty() {
                    return Ok(values);
                }
                let parts = values
                    .iter()
                    .map(|value| as_text(value).map_err(|reason| blame(value, reason)))
                    .collect::<Result<Vec<_>, _>>()?;
                vec![Value::from(parts.join(separator))]
            }
            Step::Default(value) => {
                if values.is_empty() {
                    match value {
                        Value::Array(items) => items.clone(),
                        single => vec![single.clone()],
                    }
                } else {
                    values
                }
            }
            Step::Table(entries) => values
                .iter()
                .map(|value| lookup(entries, value).map_err(|reason| blame(value, reason)))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
            Step::Not => values
                .iter()
                .map(|value| {
                    as_bool(value).map(|b| Value::Bool(!b)).ok_or_else(|| {
                        blame(
                            value,
                            format!("'not' needs a boolean, not {}", quote(value)),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Step::Date(format) => map_text(values, |s| reformat_date(&s, format).map(Some))?,
            Step::Phone(part, region) => {
                let chosen = region.resolve(user).map(|choice| choice.id);
                map_text(values, |s| match phones.parse(&s, chosen) {
                    Ok(number) => Ok(phone(number, *part)),
                    Err(why) => match region.unreadable_without_code() {
                        Some(hint) if chosen.is_none() && !s.trim_start().starts_with('+') => {
                            Err(format!("{why} ({hint})"))
                        }
                        _ => Err(why),
                    },
                })?
            }
        };
        Ok(out.into_iter().filter(|value| !is_blank(value)).collect())
    }
}

fn parse_argument(name: &str, arg: Option<&Node>) -> Result<Step, (String, Option<String>)> {
    let text_arg = |what: &str| match arg.map(|a| &a.value) {
        Some(NodeValue::String(text)) => Ok(text.clone()),
        _ => Err((
            format!("needs {what} in quotes"),
            Some(format!("write {{ {name} = \"...\" }}")),
        )),
    };
    let no_arg = |step: Step| match arg {
        None => Ok(step),
        Some(_) => Err((
            "takes no argument".to_owned(),
            Some(format!("write it as the plain string \"{name}\"")),
        )),
    };
    match name {
        "lower" => no_arg(Step::Lower),
        "upper" => no_arg(Step::Upper),
        "trim" => no_arg(Step::Trim),
        "not" => no_arg(Step::Not),
        "truncate" => match arg.map(|a| &a.value) {
            Some(NodeValue::Integer(n)) if *n > 0 => usize::try_from(*n)
                .map(Step::Truncate)
                .map_err(|_| ("the length is too large".to_owned(), None)),
            _ => Err((
                "needs a positive number of characters".to_owned(),
                Some("write { truncate = 25 }".to_owned()),
            )),
        },
        "replace" => {
            let hint = Some("write { replace = { find = \" \", with = \".\" } }".to_owned());
            let Some(NodeValue::Table(entries)) = arg.map(|a| &a.value) else {
                return Err(("needs a table with 'find' and 'with'".to_owned(), hint));
            };
            let text = |key: &str| {
                entries
                    .iter()
                    .find(|e| e.key == key)
                    .and_then(|e| match &e.node.value {
                        NodeValue::String(text) => Some(text.clone()),
                        _ => None,
                    })
            };
            let unknown = entries.iter().find(|e| e.key != "find" && e.key != "with");
            match (text("find"), text("with"), unknown) {
                (Some(find), Some(with), None) if !find.is_empty() => {
                    Ok(Step::Replace { find, with })
                }
                _ => Err((
                    "needs exactly 'find' (not empty) and 'with', both text".to_owned(),
                    hint,
                )),
            }
        }
        "capture" => {
            let pattern = text_arg("a regular expression")?;
            Regex::new(&pattern)
                .map(Step::Capture)
                .map_err(|error| (format!("invalid regular expression: {error}"), None))
        }
        "split" | "join" => {
            let separator = text_arg("a separator")?;
            if name == "split" {
                if separator.is_empty() {
                    return Err(("the separator must not be empty".to_owned(), None));
                }
                Ok(Step::Split(separator))
            } else {
                Ok(Step::Join(separator))
            }
        }
        "default" => match arg {
            Some(node) => match node.to_json() {
                Value::Array(items) if items.iter().any(|i| i.is_array() || i.is_object()) => {
                    Err(("a list default may only hold plain values".to_owned(), None))
                }
                value => Ok(Step::Default(value)),
            },
            None => Err((
                "needs the value to use".to_owned(),
                Some("write { default = \"en\" }".to_owned()),
            )),
        },
        "table" => parse_table(arg),
        "date" => {
            let format = text_arg("a format such as \"[year]-[month]-[day]\"")?;
            time::format_description::parse_owned::<2>(&format)
                .map(Step::Date)
                .map_err(|error| {
                    (
                        format!("invalid date format: {error}"),
                        Some(
                            "components look like [year]-[month]-[day]T[hour]:[minute]".to_owned(),
                        ),
                    )
                })
        }
        "phone_e164" | "phone_country_code" | "phone_national" | "phone_extension" => {
            let part = match name {
                "phone_e164" => PhonePart::E164,
                "phone_country_code" => PhonePart::CountryCode,
                "phone_national" => PhonePart::National,
                _ => PhonePart::Extension,
            };
            let region = match arg.map(|a| &a.value) {
                None => PhoneRegion::Unset,
                Some(NodeValue::String(code)) if code == "user" => {
                    PhoneRegion::User { default: None }
                }
                Some(NodeValue::String(code)) => PhoneRegion::Fixed(region_code(code)?),
                Some(NodeValue::Table(entries)) => phone_region_table(name, entries)?,
                Some(_) => {
                    return Err((
                        "needs a region code such as \"US\", \"user\" or a table".to_owned(),
                        Some(phone_hint(name)),
                    ))
                }
            };
            Ok(Step::Phone(part, region))
        }
        _ => Err(("is not a transform".to_owned(), None)),
    }
}

fn phone_hint(name: &str) -> String {
    format!(
        "write {{ {name} = \"DE\" }} for one region, or {{ {name} = {{ region = \"user\", \
         default = \"US\" }} }} for each user's own"
    )
}

fn region_code(code: &str) -> Result<country::Id, (String, Option<String>)> {
    country::Id::from_str(&code.to_uppercase()).map_err(|_| {
        (
            format!("'{code}' is not a region code"),
            Some(
                "use a two-letter ISO 3166 code such as \"US\" or \"DE\", or \"user\" for the \
                 user's own region"
                    .to_owned(),
            ),
        )
    })
}

/// `{ region = "user", default = "US" }` or `{ region = "DE" }`.
fn phone_region_table(
    name: &str,
    entries: &[crate::mapping::spec::Entry],
) -> Result<PhoneRegion, (String, Option<String>)> {
    let text = |key: &str| {
        entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| match &e.node.value {
                NodeValue::String(text) => Ok(text.as_str()),
                _ => Err((format!("'{key}' takes a region code in quotes"), None)),
            })
            .transpose()
    };
    if let Some(unknown) = entries
        .iter()
        .find(|e| e.key != "region" && e.key != "default")
    {
        return Err((
            format!(
                "unknown key '{}': the table takes 'region' and 'default'",
                unknown.key
            ),
            Some(phone_hint(name)),
        ));
    }
    let default = text("default")?.map(region_code).transpose()?;
    match (text("region")?, default) {
        (Some("user"), default) => Ok(PhoneRegion::User { default }),
        (Some(code), None) => Ok(PhoneRegion::Fixed(region_code(code)?)),
        (Some(_), Some(_)) => Err((
            "'default' only applies to region = \"user\"".to_owned(),
            Some(phone_hint(name)),
        )),
        (None, _) => Err((
            "the table needs a 'region'".to_owned(),
            Some(phone_hint(name)),
        )),
    }
}

fn parse_table(arg: Option<&Node>) -> Result<Step, (String, Option<String>)> {
    let hint = Some("write { table = { true = \"ACTIVE\", false = \"INACTIVE\" } }".to_owned());
    let Some(NodeValue::Table(rows)) = arg.map(|a| &a.value) else {
        return Err(("needs a table of 'from = to' entries".to_owned(), hint));
    };
    if rows.is_empty() {
        return Err(("the table is empty".to_owned(), hint));
    }
    let mut entries = Vec::new();
    let mut kind = None;
    for row in rows {
        let value = row.node.to_json();
        let this = Kind::of(&value);
        if matches!(this, Kind::Object | Kind::Any) {
            return Err((
                format!("the entry for '{}' must be a plain value", row.key),
                None,
            ));
        }
        match kind {
            Some(first) if first != this => {
                return Err((
                    format!(
                        "every entry must give the same kind of value; '{}' gives {} but an \
                         earlier one gives {}",
                        row.key,
                        this.describe(),
                        Kind::describe(first)
                    ),
                    None,
                ))
            }
            _ => kind = Some(this),
        }
        entries.push(TableEntry {
            key: row.key.clone(),
            value,
            span: row.node.span.clone(),
        });
    }
    Ok(Step::Table(entries))
}

fn lookup(entries: &[TableEntry], value: &Value) -> Result<Option<Value>, String> {
    let key = as_text(value)?;
    let found = entries
        .iter()
        .find(|e| e.key == key)
        .or_else(|| entries.iter().find(|e| e.key.eq_ignore_ascii_case(&key)));
    Ok(found.map(|e| e.value.clone()))
}

fn map_text(
    values: Vec<Value>,
    mut f: impl FnMut(String) -> Result<Option<String>, String>,
) -> Result<Vec<Value>, Refusal> {
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let text = as_text(&value).map_err(|reason| blame(&value, reason))?;
        match f(text) {
            Ok(Some(text)) => out.push(Value::String(text)),
            Ok(None) => {}
            Err(reason) => return Err(blame(&value, reason)),
        }
    }
    Ok(out)
}

fn blame(value: &Value, reason: String) -> Refusal {
    Refusal {
        value: Some(value.clone()),
        reason,
    }
}

/// A plain value as text: text as is, numbers and booleans written out.
pub(crate) fn as_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Bool(_) | Value::Number(_) => Ok(value.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => {
            Err(format!("expected text, found {}", quote(value)))
        }
    }
}

/// Booleans as JSON or, the way Entra ID sends them, as "True" / "false".
pub(crate) fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// No value: null, an empty string, an empty list.
pub(crate) fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => false,
    }
}

/// A value as an admin should read it in a message: short, quoted, one line.
pub(crate) fn quote(value: &Value) -> String {
    let text = match value {
        Value::String(text) => format!("'{text}'"),
        Value::Object(_) => "an object".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Null => "nothing".to_owned(),
        other => other.to_string(),
    };
    let short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        format!("{short}...")
    } else {
        short
    }
}

fn reformat_date(text: &str, format: &OwnedFormatItem) -> Result<String, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        Date::parse(text, format_description!("[year]-[month]-[day]"))
            .map(|date| date.midnight().assume_utc())
    });
    let instant = parsed.map_err(|_| format!("'{text}' is not an RFC 3339 date-time"))?;
    instant
        .format(format)
        .map_err(|error| format!("cannot write '{text}' in the date format: {error}"))
}

/// The phone numbers already parsed while rendering one user, for every mapping. The shipped
/// mappings read the same number up to seven times (in E.164 for three targets, in three
/// parts for VikingCloud), and parsing one is the most expensive step of a render.
#[derive(Default)]
pub struct ParsedPhones {
    parsed: Vec<(String, Option<country::Id>, Result<PhoneNumber, String>)>,
}

impl ParsedPhones {
    fn parse(&mut self, text: &str, region: Option<country::Id>) -> Result<&PhoneNumber, String> {
        let at = match self
            .parsed
            .iter()
            .position(|(seen, seen_region, _)| seen == text && *seen_region == region)
        {
            Some(at) => at,
            None => {
                let number = parse_phone(text, region);
                self.parsed.push((text.to_owned(), region, number));
                self.parsed.len() - 1
            }
        };
        self.parsed[at].2.as_ref().map_err(Clone::clone)
    }
}

#[cfg(test)]
impl ParsedPhones {
    /// How many (number, region) pairs were parsed.
    pub(crate) fn len(&self) -> usize {
        self.parsed.len()
    }
}

fn phone(number: &PhoneNumber, part: PhonePart) -> Option<String> {
    match part {
        PhonePart::E164 => Some(number.format().mode(Mode::E164).to_string()),
        PhonePart::CountryCode => Some(number.code().value().to_string()),
        PhonePart::National => Some(national_digits(number)),
        PhonePart::Extension => number.extension().map(|ext| ext.to_string()),
    }
}

/// Loads the phone number metadata and builds the patterns of one region, which the first
/// phone number rendered would otherwise wait for.
pub(crate) fn warm_phone_metadata() {
    // Only the loading matters, not what this number parses to.
    let _ = parse_phone("+1 202 555 0172", None);
}

fn parse_phone(text: &str, region: Option<country::Id>) -> Result<PhoneNumber, String> {
    // The region is only for numbers written without a country code. Given one anyway, the
    // parser may read the digits after "+55" as the region's international prefix and drop
    // them, so a number that names its country is parsed without it.
    let region = region.filter(|_| !text.trim_start().starts_with('+'));
    let number = phonenumber::parse(region, text)
        .map_err(|_| format!("'{text}' is not a readable phone number"))?;
    // The length check first: full validation matches the number against every range
    // pattern of its region, the most expensive step of rendering a user.
    if is_possible(&number) || number.is_valid() {
        Ok(number)
    } else {
        Err(format!(
            "'{text}' has the wrong number of digits for a +{} phone number",
            number.code().value()
        ))
    }
}

/// Whether the number has a length that some kind of number (fixed line, mobile, ...) uses in
/// some region with its country code. Full validity also checks number ranges, which change
/// faster than any copy of the metadata: a real new number must not keep a user from being
/// provisioned, while a truncated or padded one is still caught.
fn is_possible(number: &PhoneNumber) -> bool {
    let length = national_digits(number).len();
    DATABASE
        .by_code(&number.code().value())
        .unwrap_or_default()
        .iter()
        .any(|region| {
            let kinds = region.descriptors();
            [
                kinds.fixed_line(),
                kinds.mobile(),
                kinds.toll_free(),
                kinds.voip(),
                kinds.personal_number(),
                kinds.uan(),
                kinds.pager(),
                kinds.shared_cost(),
                kinds.premium_rate(),
            ]
            .into_iter()
            .flatten()
            .any(|kind| {
                kind.possible_length()
                    .iter()
                    .any(|l| usize::from(*l) == length)
            })
        })
}

/// The national significant number, digits only: what "national number" means next to a
/// separate country code (leading zeros that belong to it, as in Italy, are kept).
fn national_digits(number: &PhoneNumber) -> String {
    let e164 = number.format().mode(Mode::E164).to_string();
    let code = number.code().value().to_string();
    e164.trim_start_matches('+')
        .strip_prefix(&code)
        .map(str::to_owned)
        .unwrap_or_else(|| number.national().to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step(toml_text: &str) -> Step {
        let node: Node = toml::from_str(&format!("s = {toml_text}")).expect("toml");
        let NodeValue::Table(entries) = node.value else {
            panic!("not a table")
        };
        Step::parse(&entries[0].node).expect("a step").step
    }

    fn run(toml_text: &str, input: Value) -> Result<Vec<Value>, String> {
        let values = match input {
            Value::Array(items) => items,
            single => vec![single],
        };
        step(toml_text)
            .apply(values, &Value::Null, &mut ParsedPhones::default())
            .map_err(|refusal| refusal.reason)
    }

    #[test]
    fn the_start_up_number_is_a_real_one_so_warming_loads_its_region() {
        assert!(parse_phone("+1 202 555 0172", None).is_ok());
    }

    #[test]
    fn every_transform_by_example() {
        let cases = [
            ("\"lower\"", json!("Ana.LIMA"), json!(["ana.lima"])),
            ("\"upper\"", json!("straße"), json!(["STRASSE"])),
            ("\"trim\"", json!("  Ana  "), json!(["Ana"])),
            ("\"trim\"", json!("   "), json!([])),
            ("{ truncate = 3 }", json!("Łukasz"), json!(["Łuk"])),
            ("{ truncate = 3 }", json!("山田太郎"), json!(["山田太"])),
            (
                "{ replace = { find = \"_\", with = \"-\" } }",
                json!("pt_BR"),
                json!(["pt-BR"]),
            ),
            (
                "{ capture = '^([^@]+)@' }",
                json!("ana@example.com"),
                json!(["ana"]),
            ),
            ("{ capture = '^[a-z]{2}' }", json!("de-AT"), json!(["de"])),
            ("{ capture = '^x' }", json!("abc"), json!([])),
            ("{ split = \",\" }", json!("a,b"), json!(["a", "b"])),
            ("{ join = \", \" }", json!(["a", "b"]), json!(["a, b"])),
            ("{ default = \"en\" }", json!([]), json!(["en"])),
            ("{ default = \"en\" }", json!("fr"), json!(["fr"])),
            ("{ default = [] }", json!([]), json!([])),
            (
                "{ table = { true = \"ACTIVE\", false = \"INACTIVE\" } }",
                json!(false),
                json!(["INACTIVE"]),
            ),
            (
                "{ table = { \"en-US\" = \"en\" } }",
                json!("EN-us"),
                json!(["en"]),
            ),
            (
                "{ table = { \"en-US\" = \"en\" } }",
                json!("sv-SE"),
                json!([]),
            ),
            ("\"not\"", json!(true), json!([false])),
            ("\"not\"", json!("False"), json!([true])),
            (
                "{ date = \"[day].[month].[year]\" }",
                json!("2024-03-01T10:00:00Z"),
                json!(["01.03.2024"]),
            ),
            (
                "{ date = \"[year]\" }",
                json!("2024-03-01"),
                json!(["2024"]),
            ),
            (
                "\"phone_e164\"",
                json!("+1 (415) 555-0132"),
                json!(["+14155550132"]),
            ),
            (
                "{ phone_e164 = \"DE\" }",
                json!("030 1234567"),
                json!(["+49301234567"]),
            ),
            (
                "\"phone_country_code\"",
                json!("+44 20 7946 0958"),
                json!(["44"]),
            ),
            (
                "\"phone_national\"",
                json!("+44 20 7946 0958"),
                json!(["2079460958"]),
            ),
            (
                "\"phone_national\"",
                json!("+39 06 6982 1234"),
                json!(["0669821234"]),
            ),
            (
                "\"phone_extension\"",
                json!("+1 415 555 0132 ext. 77"),
                json!(["77"]),
            ),
            ("\"phone_extension\"", json!("+1 415 555 0132"), json!([])),
        ];
        for (written, input, expected) in cases {
            let got = run(written, input.clone()).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(Value::Array(got), expected, "{written} on {input}");
        }
    }

    #[test]
    fn steps_of_one_render_share_each_parsed_number() {
        let mut phones = ParsedPhones::default();
        let mut apply = |written: &str, text: &str| {
            step(written)
                .apply(vec![json!(text)], &Value::Null, &mut phones)
                .map(Value::Array)
                .map_err(|refusal| refusal.reason)
        };
        assert_eq!(
            apply("\"phone_national\"", "+1 415 555 0132 ext. 77"),
            Ok(json!(["4155550132"]))
        );
        assert_eq!(
            apply("\"phone_extension\"", "+1 415 555 0132 ext. 77"),
            Ok(json!(["77"]))
        );
        // The same national digits in another region are another number.
        assert_eq!(
            apply("{ phone_e164 = \"DE\" }", "030 1234567"),
            Ok(json!(["+49301234567"]))
        );
        assert_eq!(
            apply("{ phone_e164 = \"FR\" }", "030 1234567"),
            Ok(json!(["+33301234567"]))
        );
        // A number that cannot be read is refused as often as it is asked for.
        for _ in 0..2 {
            let refused = apply("\"phone_e164\"", "call me").unwrap_err();
            assert!(refused.contains("not a readable phone number"), "{refused}");
        }
        assert_eq!(phones.parsed.len(), 4);
    }

    #[test]
    fn bad_input_is_explained_not_panicked_on() {
        let cases = [
            (
                "\"phone_e164\"",
                json!("call me"),
                "'call me' is not a readable phone number",
            ),
            ("\"phone_e164\"", json!("4155550132"), "no +country code"),
            (
                "\"phone_e164\"",
                json!("+1 415 555"),
                "wrong number of digits for a +1 phone",
            ),
            (
                "{ date = \"[year]\" }",
                json!("yesterday"),
                "not an RFC 3339 date-time",
            ),
            ("\"not\"", json!("maybe"), "'not' needs a boolean"),
            ("\"lower\"", json!({"a": 1}), "expected text"),
        ];
        for (written, input, expected) in cases {
            match run(written, input) {
                Err(message) => assert!(message.contains(expected), "{written}: {message}"),
                Ok(values) => panic!("{written}: expected an error, got {values:?}"),
            }
        }
    }

    #[test]
    fn malformed_steps_are_refused_with_a_hint() {
        let cases = [
            (
                "\"lowr\"",
                "unknown transform 'lowr'",
                "did you mean 'lower'?",
            ),
            (
                "{ truncate = 0 }",
                "truncate: needs a positive number",
                "truncate = 25",
            ),
            (
                "{ truncate = \"5\" }",
                "truncate: needs a positive number",
                "truncate = 25",
            ),
            (
                "{ capture = \"(\" }",
                "capture: invalid regular expression",
                "",
            ),
            ("{ table = {} }", "table: the table is empty", "ACTIVE"),
            (
                "{ table = { a = \"x\", b = true } }",
                "same kind of value",
                "",
            ),
            (
                "{ phone_e164 = \"XX\" }",
                "'XX' is not a region code",
                "ISO 3166",
            ),
            ("{ date = \"[yeer]\" }", "invalid date format", "[year]"),
            ("{ lower = 1 }", "lower: takes no argument", "plain string"),
            (
                "{ replace = { find = \"a\" } }",
                "needs exactly 'find'",
                "with =",
            ),
            ("[\"lower\"]", "a transform is a name", ""),
        ];
        for (written, message, hint) in cases {
            let node: Node = toml::from_str(&format!("s = {written}")).expect("toml");
            let NodeValue::Table(entries) = node.value else {
                panic!("not a table")
            };
            let error = Step::parse(&entries[0].node).expect_err(written);
            assert!(
                error.message.contains(message),
                "{written}: {}",
                error.message
            );
            assert!(
                error.hint.as_deref().unwrap_or("").contains(hint),
                "{written}: {:?}",
                error.hint
            );
        }
    }

    #[test]
    fn phone_regions_as_written() {
        let cases = [
            ("\"phone_e164\"", PhoneRegion::Unset),
            (
                "{ phone_e164 = \"de\" }",
                PhoneRegion::Fixed(country::Id::DE),
            ),
            (
                "{ phone_national = \"user\" }",
                PhoneRegion::User { default: None },
            ),
            (
                "{ phone_country_code = { region = \"user\", default = \"US\" } }",
                PhoneRegion::User {
                    default: Some(country::Id::US),
                },
            ),
            (
                "{ phone_extension = { region = \"FR\" } }",
                PhoneRegion::Fixed(country::Id::FR),
            ),
        ];
        for (written, expected) in cases {
            match step(written) {
                Step::Phone(_, region) => assert_eq!(region, expected, "{written}"),
                other => panic!("{written}: {other:?}"),
            }
        }
        let refused = [
            (
                "{ phone_e164 = { region = \"DE\", default = \"US\" } }",
                "'default' only applies to region = \"user\"",
            ),
            (
                "{ phone_e164 = { region = \"user\", default = \"XX\" } }",
                "'XX' is not a region code",
            ),
            ("{ phone_e164 = { default = \"US\" } }", "needs a 'region'"),
            (
                "{ phone_e164 = { region = \"user\", fallback = \"US\" } }",
                "unknown key 'fallback'",
            ),
            ("{ phone_e164 = 1 }", "needs a region code"),
        ];
        for (written, message) in refused {
            let node: Node = toml::from_str(&format!("s = {written}")).expect("toml");
            let NodeValue::Table(entries) = node.value else {
                panic!("not a table")
            };
            let error = Step::parse(&entries[0].node).expect_err(written);
            assert!(
                error.message.contains(message),
                "{written}: {}",
                error.message
            );
            assert!(error.hint.is_some(), "{written}");
        }
    }

    #[test]
    fn the_users_region_comes_from_the_address_then_the_locale() {
        let region =
            |user: Value| user_region(&user).map(|c| (c.id.as_ref().to_owned(), c.why.to_string()));
        let cases = [
            (json!({"locale": "de_DE"}), Some("DE"), "locale is 'de_DE'"),
            (json!({"locale": "fr-FR"}), Some("FR"), "locale is 'fr-FR'"),
            (
                json!({"locale": "zh-Hans-CN"}),
                Some("CN"),
                "locale is 'zh-Hans-CN'",
            ),
            (
                json!({"preferredLanguage": "pt-br, en;q=0.8"}),
                Some("BR"),
                "preferredLanguage is 'pt-br, en;q=0.8'",
            ),
            (
                json!({"locale": "ja", "preferredLanguage": "ja-JP"}),
                Some("JP"),
                "preferredLanguage is 'ja-JP'",
            ),
            (
                json!({"locale": "en-US", "addresses": [{"type": "work", "country": "in"}]}),
                Some("IN"),
                "the work address's country is 'in'",
            ),
            (
                json!({"addresses": [
                    {"type": "work", "country": "Germany"},
                    {"type": "home", "country": "FR", "primary": true}
                ]}),
                Some("FR"),
                "the primary address's country is 'FR'",
            ),
            // Neither a country phone numbers are known in, nor a region in the locale.
            (
                json!({"addresses": [{"type": "work", "country": "Germany"}], "locale": "en"}),
                None,
                "",
            ),
            (json!({"locale": "es-419"}), None, ""),
            (json!({"locale": "xx-ZZ"}), None, ""),
            (json!("not a user"), None, ""),
        ];
        for (user, id, why) in cases {
            let expected = id.map(|id| (id.to_owned(), why.to_owned()));
            assert_eq!(region(user.clone()), expected, "{user}");
        }
    }

    #[test]
    fn shapes_follow_the_chain() {
        let text = Shape::one(Kind::Text);
        assert_eq!(
            step("{ split = \",\" }").output(text),
            Ok(Shape {
                kind: Kind::Text,
                many: true
            })
        );
        assert_eq!(
            step("{ join = \",\" }").output(Shape {
                kind: Kind::Text,
                many: true
            }),
            Ok(text)
        );
        assert_eq!(
            step("{ table = { true = \"A\" } }").output(Shape::one(Kind::Bool)),
            Ok(text)
        );
        assert_eq!(
            step("\"lower\"").output(Shape::one(Kind::Bool)),
            Err(Mismatch {
                expected: "text".to_owned(),
                found: "a boolean".to_owned()
            })
        );
        assert!(step("\"not\"").output(text).is_err());
        assert!(step("{ default = 3 }").output(text).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Phone numbers come from identity providers as typed by people; the parser must
        /// answer, not panic, whatever they typed.
        #[test]
        fn phone_steps_never_panic(
            text in prop_oneof![
                "[0-9+() .extEXT#;:,/-]{0,40}",
                "\\+[0-9]{1,3}[ 0-9]{0,20}( ?(ext|x|#)\\.? ?[0-9]{0,8})?",
                any::<String>(),
            ],
            region in prop::sample::select(vec![
                PhoneRegion::Unset,
                PhoneRegion::Fixed(country::Id::US),
                PhoneRegion::Fixed(country::Id::JP),
                PhoneRegion::User { default: None },
                PhoneRegion::User { default: Some(country::Id::DE) },
            ]),
            user in prop_oneof![
                Just(Value::Null),
                "[a-zA-Z_-]{0,12}".prop_map(|locale| serde_json::json!({ "locale": locale })),
                "[A-Za-z]{0,3}".prop_map(|country| serde_json::json!({
                    "addresses": [{ "type": "work", "country": country }]
                })),
            ],
        ) {
            for part in [PhonePart::E164, PhonePart::CountryCode, PhonePart::National, PhonePart::Extension] {
                let _ = Step::Phone(part, region)
                    .apply(vec![Value::String(text.clone())], &user, &mut ParsedPhones::default());
            }
        }
    }
}
