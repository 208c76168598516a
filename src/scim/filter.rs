//! Filter expressions (RFC 7644 section 3.4.2.2): parsed from `?filter=`, `/.search` bodies and
//! PATCH value paths, then evaluated against stored resources.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::scim::error::ScimError;
use crate::scim::path::{parse_attr_path, AttrPath};
use crate::scim::resource::{attribute_value, field};
use crate::scim::schema::{find_attribute, AttrType, AttributeDef, ResourceSchema};

/// The longest filter accepted, in bytes. The longest filters identity providers send are a
/// few dozen `or`ed ids or names, well under 4 KiB; 8 KiB leaves room for that and bounds
/// what one request makes the parser and every evaluation walk.
pub(crate) const MAX_FILTER_LENGTH: usize = 8 * 1024;
/// The deepest nesting of `(`, `not (` and `attr[` accepted. Real filters nest two or three
/// levels; the parser and every walk over the tree recurse once per level, so this bounds
/// their stack use whatever the input.
pub const MAX_FILTER_DEPTH: usize = 32;
/// The most comparisons (`attr op value`, `attr pr`) in one filter. `and`/`or` chains build
/// one tree level per clause, so this also bounds the depth of the tree the evaluator, the
/// validator, `Display` and `Drop` recurse through, and the work per evaluated resource.
pub const MAX_FILTER_CLAUSES: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Value,
    },
    Present(AttrPath),
    /// `emails[type eq "work"]`: the inner filter's paths name sub-attributes of `path`.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn from_keyword(word: &str) -> Option<Self> {
        [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ]
        .into_iter()
        .find(|op| op.keyword().eq_ignore_ascii_case(word))
    }

    fn is_equality(self) -> bool {
        matches!(self, CompareOp::Eq | CompareOp::Ne)
    }

    fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering == Ordering::Equal,
            CompareOp::Ne => ordering != Ordering::Equal,
            CompareOp::Gt => ordering == Ordering::Greater,
            CompareOp::Ge => ordering != Ordering::Less,
            CompareOp::Lt => ordering == Ordering::Less,
            CompareOp::Le => ordering != Ordering::Greater,
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// Writes the shortest form that parses back to the same tree: `and` binds tighter than `or`
/// and both group to the left, so only a right operand of the same or looser operator, or an
/// `or` under an `and`, needs parentheses.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn operand(f: &mut fmt::Formatter<'_>, filter: &Filter, grouped: bool) -> fmt::Result {
            if grouped {
                write!(f, "({filter})")
            } else {
                write!(f, "{filter}")
            }
        }
        match self {
            Filter::And(left, right) => {
                operand(f, left, matches!(**left, Filter::Or(..)))?;
                f.write_str(" and ")?;
                operand(
                    f,
                    right,
                    matches!(**right, Filter::Or(..) | Filter::And(..)),
                )
            }
            Filter::Or(left, right) => {
                write!(f, "{left} or ")?;
                operand(f, right, matches!(**right, Filter::Or(..)))
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

pub fn parse(input: &str) -> Result<Filter, ScimError> {
    Parser::new(input, false)?.parse_all()
}

/// Refuses a filter past `MAX_FILTER_LENGTH` before lexing it; the detail does not echo it.
fn check_length(input: &str) -> Result<(), ScimError> {
    if input.len() > MAX_FILTER_LENGTH {
        return Err(ScimError::InvalidFilter(format!(
            "the filter is {} bytes long, longer than the {MAX_FILTER_LENGTH} bytes accepted",
            input.len()
        )));
    }
    Ok(())
}

/// The filter between the brackets of a PATCH or mapping path such as
/// `emails[type eq "work"].value`: its paths name sub-attributes.
pub(crate) fn parse_value_filter(input: &str) -> Result<Filter, ScimError> {
    Parser::new(input, true)?.parse_all()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Str(String),
    /// An attribute path, an operator or a bare literal, told apart by position.
    Word(&'a str),
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Open => f.write_str("'('"),
            Tok::Close => f.write_str("')'"),
            Tok::OpenBracket => f.write_str("'['"),
            Tok::CloseBracket => f.write_str("']'"),
            Tok::Str(s) => write!(f, "string {}", Value::String(s.clone())),
            Tok::Word(w) => write!(f, "'{w}'"),
        }
    }
}

#[derive(Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    at: usize,
}

fn syntax_error(input: &str, at: usize, message: &str) -> ScimError {
    let position = input.get(..at).map_or(at, |before| before.chars().count()) + 1;
    ScimError::InvalidFilter(format!(
        "{message} at position {position} of filter '{input}'"
    ))
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

fn lex(input: &str) -> Result<Vec<Token<'_>>, ScimError> {
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(c) = input[at..].chars().next() {
        let start = at;
        let tok = match c {
            c if c.is_whitespace() => {
                at += c.len_utf8();
                continue;
            }
            '(' => Tok::Open,
            ')' => Tok::Close,
            '[' => Tok::OpenBracket,
            ']' => Tok::CloseBracket,
            '"' => {
                let end = string_end(input, start)
                    .ok_or_else(|| syntax_error(input, start, "unterminated string"))?;
                let text: String = serde_json::from_str(&input[start..end]).map_err(|e| {
                    syntax_error(input, start, &format!("invalid string literal ({e})"))
                })?;
                at = end;
                tokens.push(Token {
                    tok: Tok::Str(text),
                    at: start,
                });
                continue;
            }
            _ => {
                let end = input[start..]
                    .find(is_delimiter)
                    .map_or(input.len(), |len| start + len);
                at = end;
                tokens.push(Token {
                    tok: Tok::Word(&input[start..end]),
                    at: start,
                });
                continue;
            }
        };
        at += 1;
        tokens.push(Token { tok, at: start });
    }
    Ok(tokens)
}

/// The byte offset just past the closing quote of the string opening at `start`.
fn string_end(input: &str, start: usize) -> Option<usize> {
    let bytes = input.as_bytes();
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

struct Parser<'a> {
    input: &'a str,
    tokens: std::iter::Peekable<std::vec::IntoIter<Token<'a>>>,
    /// Inside `attr[...]`: paths are sub-attribute names and brackets cannot nest.
    in_value_filter: bool,
    /// Open `(`, `not (` and `[` levels; the parser recurses once per level.
    depth: usize,
    clauses: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, in_value_filter: bool) -> Result<Self, ScimError> {
        check_length(input)?;
        Ok(Parser {
            input,
            tokens: lex(input)?.into_iter().peekable(),
            in_value_filter,
            depth: 0,
            clauses: 0,
        })
    }

    /// Enters one nesting level, refusing the filter past `MAX_FILTER_DEPTH`; `leave` undoes it.
    fn enter(&mut self, at: usize) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(ScimError::InvalidFilter(format!(
                "the filter is nested more than {MAX_FILTER_DEPTH} levels deep (at position {})",
                at + 1
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn count_clause(&mut self) -> Result<(), ScimError> {
        self.clauses += 1;
        if self.clauses > MAX_FILTER_CLAUSES {
            return Err(ScimError::InvalidFilter(format!(
                "the filter has more than {MAX_FILTER_CLAUSES} clauses (comparisons and 'pr' tests)"
            )));
        }
        Ok(())
    }

    fn error(&self, at: usize, message: &str) -> ScimError {
        syntax_error(self.input, at, message)
    }

    fn at_end(&self, message: &str) -> ScimError {
        self.error(self.input.len(), &format!("{message}, found the end"))
    }

    fn parse_all(mut self) -> Result<Filter, ScimError> {
        let filter = self.or_expr()?;
        match self.tokens.next() {
            None => Ok(filter),
            Some(token) => Err(self.error(
                token.at,
                &format!("expected 'and', 'or' or the end, found {}", token.tok),
            )),
        }
    }

    fn next_is_keyword(&mut self, keyword: &str) -> bool {
        matches!(self.tokens.peek(), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(keyword))
    }

    fn or_expr(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and_expr()?;
        while self.next_is_keyword("or") {
            self.tokens.next();
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.next_is_keyword("and") {
            self.tokens.next();
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expect(&mut self, wanted: Tok<'static>) -> Result<(), ScimError> {
        match self.tokens.next() {
            Some(token) if token.tok == wanted => Ok(()),
            Some(token) => {
                Err(self.error(token.at, &format!("expected {wanted}, found {}", token.tok)))
            }
            None => Err(self.at_end(&format!("expected {wanted}"))),
        }
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        const WANTED: &str = "expected an attribute path, '(' or 'not'";
        let Some(token) = self.tokens.next() else {
            return Err(self.at_end(WANTED));
        };
        match token.tok {
            Tok::Open => {
                self.enter(token.at)?;
                let inner = self.or_expr()?;
                self.expect(Tok::Close)?;
                self.leave();
                Ok(inner)
            }
            Tok::Word(word)
                if word.eq_ignore_ascii_case("not")
                    && matches!(self.tokens.peek(), Some(Token { tok: Tok::Open, .. })) =>
            {
                self.tokens.next();
                self.enter(token.at)?;
                let inner = self.or_expr()?;
                self.expect(Tok::Close)?;
                self.leave();
                Ok(Filter::Not(Box::new(inner)))
            }
            Tok::Word(word) => self.attribute_expr(word, token.at),
            other => Err(self.error(token.at, &format!("{WANTED}, found {other}"))),
        }
    }

    fn attribute_expr(&mut self, word: &str, at: usize) -> Result<Filter, ScimError> {
        self.count_clause()?;
        let path = parse_attr_path(word).map_err(|e| self.error(at, &e.to_string()))?;
        if self.in_value_filter && (path.urn.is_some() || path.sub_attr.is_some()) {
            return Err(self.error(
                at,
                &format!(
                    "inside '[...]' name a sub-attribute of the filtered attribute, not '{path}'"
                ),
            ));
        }
        let Some(token) = self.tokens.next() else {
            return Err(self.at_end(&format!("expected an operator after '{path}'")));
        };
        match token.tok {
            Tok::OpenBracket => self.value_path(path, at),
            Tok::Word(op) if op.eq_ignore_ascii_case("pr") => Ok(Filter::Present(path)),
            Tok::Word(op) => match CompareOp::from_keyword(op) {
                Some(op) => Ok(Filter::Compare {
                    value: self.comparison_value(op)?,
                    path,
                    op,
                }),
                None => Err(self.error(
                    token.at,
                    &format!(
                        "unknown operator '{op}' (expected eq, ne, co, sw, ew, gt, ge, lt, le or pr)"
                    ),
                )),
            },
            other => Err(self.error(
                token.at,
                &format!("expected an operator after '{path}', found {other}"),
            )),
        }
    }

    fn value_path(&mut self, path: AttrPath, at: usize) -> Result<Filter, ScimError> {
        if self.in_value_filter {
            return Err(self.error(at, "value filters cannot be nested"));
        }
        if path.sub_attr.is_some() {
            return Err(self.error(
                at,
                &format!("'[' must follow an attribute, not the sub-attribute path '{path}'"),
            ));
        }
        self.enter(at)?;
        self.in_value_filter = true;
        let inner = self.or_expr()?;
        self.expect(Tok::CloseBracket)?;
        self.in_value_filter = false;
        self.leave();
        let sub_attribute_follows = match self.tokens.peek() {
            Some(Token {
                tok: Tok::Word(word),
                at,
            }) if word.starts_with('.') => Some(*at),
            _ => None,
        };
        if let Some(at) = sub_attribute_follows {
            return Err(self.error(
                at,
                "a sub-attribute after ']' is not part of the filter grammar; filter on \
                 'attr[sub op value]' or compare 'attr.sub' instead",
            ));
        }
        Ok(Filter::ValuePath {
            path,
            filter: Box::new(inner),
        })
    }

    fn comparison_value(&mut self, op: CompareOp) -> Result<Value, ScimError> {
        const WANTED: &str = "expected a string, number, true, false or null";
        let Some(token) = self.tokens.next() else {
            return Err(self.at_end(&format!("{WANTED} after '{op}'")));
        };
        match token.tok {
            Tok::Str(text) => Ok(Value::String(text)),
            Tok::Word(word) => bare_literal(word)
                .ok_or_else(|| self.error(token.at, &format!("{WANTED}, found '{word}'"))),
            other => Err(self.error(token.at, &format!("{WANTED}, found {other}"))),
        }
    }
}

fn bare_literal(word: &str) -> Option<Value> {
    if word.eq_ignore_ascii_case("true") {
        Some(Value::Bool(true))
    } else if word.eq_ignore_ascii_case("false") {
        Some(Value::Bool(false))
    } else if word.eq_ignore_ascii_case("null") {
        Some(Value::Null)
    } else {
        let number = serde_json::from_str::<Value>(word)
            .ok()
            .filter(Value::is_number)?;
        if number.is_f64() {
            // serde_json's fast float parser can be off by one ulp; std's is exact, which keeps
            // `parse(display(f)) == f`.
            word.parse::<f64>().ok().map(Value::from)
        } else {
            Some(number)
        }
    }
}

/// What paths are resolved against: the whole resource, or inside `attr[...]` the
/// sub-attributes of one complex value.
enum Scope<'s> {
    Resource(&'s ResourceSchema),
    Complex(&'s [AttributeDef]),
}

/// The attribute a path names, its sub-attribute if any, and the attribute's raw value.
type Reached<'s, 'v> = (
    &'s AttributeDef,
    Option<&'s AttributeDef>,
    Option<&'v Value>,
);

impl<'s> Scope<'s> {
    fn definition(&self, path: &AttrPath) -> Option<(&'s AttributeDef, Option<&'s AttributeDef>)> {
        match self {
            Scope::Resource(schema) => schema.locate(path).map(|r| (r.attr, r.sub_attr)),
            Scope::Complex(attributes) => {
                if path.urn.is_some() {
                    return None;
                }
                let attr = find_attribute(attributes, &path.attr)?;
                match &path.sub_attr {
                    Some(sub) => Some((attr, Some(attr.sub_attribute(sub)?))),
                    None => Some((attr, None)),
                }
            }
        }
    }

    fn reach<'v>(&self, path: &AttrPath, value: &'v Value) -> Option<Reached<'s, 'v>> {
        match self {
            Scope::Resource(schema) => {
                let at = schema.locate(path)?;
                Some((at.attr, at.sub_attr, attribute_value(value, &at)))
            }
            Scope::Complex(_) => {
                let (attr, sub) = self.definition(path)?;
                let raw = value.as_object().and_then(|o| field(o, &attr.name));
                Some((attr, sub, raw))
            }
        }
    }
}

/// The values of a possibly multi-valued JSON value, nulls left out.
fn each(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    let items: &[Value] = match value {
        Some(Value::Array(items)) => items,
        Some(single) => std::slice::from_ref(single),
        None => &[],
    };
    items.iter().filter(|v| !v.is_null())
}

/// The values a path reaches: the attribute's values, or each value's sub-attribute.
fn reached_values<'v>(sub: Option<&AttributeDef>, raw: Option<&'v Value>) -> Vec<&'v Value> {
    match sub {
        None => each(raw).collect(),
        Some(sub) => each(raw)
            .filter_map(|item| item.as_object().and_then(|o| field(o, &sub.name)))
            .flat_map(|v| each(Some(v)))
            .collect(),
    }
}

/// The definition and values a comparison applies to: `emails eq "x"` compares each email's
/// `value`.
fn comparands<'s, 'v>(
    attr: &'s AttributeDef,
    sub: Option<&'s AttributeDef>,
    raw: Option<&'v Value>,
) -> Option<(&'s AttributeDef, Vec<&'v Value>)> {
    let leaf = sub.unwrap_or(attr);
    let values = reached_values(sub, raw);
    if leaf.attr_type != AttrType::Complex {
        return Some((leaf, values));
    }
    let value_def = leaf.comparable()?;
    let inner = values
        .into_iter()
        .filter_map(|v| v.as_object().and_then(|o| field(o, &value_def.name)))
        .flat_map(|v| each(Some(v)))
        .collect();
    Some((value_def, inner))
}

/// Whether a resource matches. Paths that name nothing in the schema match nothing.
pub(crate) fn matches(filter: &Filter, resource: &Value, schema: &ResourceSchema) -> bool {
    eval(filter, &Scope::Resource(schema), resource)
}

/// Whether one value of a complex attribute (one email, one member) matches a value filter.
pub(crate) fn matches_value(filter: &Filter, value: &Value, attr: &AttributeDef) -> bool {
    eval(filter, &Scope::Complex(&attr.sub_attributes), value)
}

fn eval(filter: &Filter, scope: &Scope<'_>, value: &Value) -> bool {
    match filter {
        Filter::And(left, right) => eval(left, scope, value) && eval(right, scope, value),
        Filter::Or(left, right) => eval(left, scope, value) || eval(right, scope, value),
        Filter::Not(inner) => !eval(inner, scope, value),
        Filter::Present(path) => scope
            .reach(path, value)
            .is_some_and(|(_, sub, raw)| reached_values(sub, raw).into_iter().any(is_present)),
        Filter::Compare {
            path,
            op,
            value: expected,
        } => scope
            .reach(path, value)
            .and_then(|(attr, sub, raw)| comparands(attr, sub, raw))
            .is_some_and(|(def, actual)| compare_all(def, &actual, *op, expected)),
        Filter::ValuePath { path, filter } => {
            scope
                .reach(path, value)
                .is_some_and(|(attr, sub, raw)| match sub {
                    None if attr.attr_type == AttrType::Complex => {
                        each(raw).any(|item| matches_value(filter, item, attr))
                    }
                    _ => false,
                })
        }
    }
}

/// `pr`: assigned and not empty.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Any value matching is a match; `ne` is the negation of `eq` so that a user without the
/// value, including one without the attribute, matches `ne`.
fn compare_all(def: &AttributeDef, actual: &[&Value], op: CompareOp, expected: &Value) -> bool {
    if expected.is_null() {
        return match op {
            CompareOp::Eq => actual.is_empty(),
            CompareOp::Ne => !actual.is_empty(),
            _ => false,
        };
    }
    match op {
        CompareOp::Ne => !actual
            .iter()
            .any(|v| compare_one(def, v, CompareOp::Eq, expected)),
        _ => actual.iter().any(|v| compare_one(def, v, op, expected)),
    }
}

/// Equality as `eq` means it for this attribute: case-insensitive unless caseExact, numbers by
/// value, date-times as instants.
pub(crate) fn values_equal(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    compare_one(def, a, CompareOp::Eq, b)
}

fn compare_one(def: &AttributeDef, actual: &Value, op: CompareOp, expected: &Value) -> bool {
    match def.attr_type {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            match (actual.as_str(), expected.as_str()) {
                (Some(a), Some(e)) => compare_text(a, e, op, def.case_exact),
                _ => false,
            }
        }
        AttrType::Boolean => match (as_bool(actual), as_bool(expected)) {
            (Some(a), Some(e)) if op.is_equality() => op.holds(a.cmp(&e)),
            _ => false,
        },
        AttrType::Integer | AttrType::Decimal => {
            compare_numbers(actual, expected).is_some_and(|ordering| op.holds(ordering))
        }
        AttrType::DateTime => match (actual.as_str(), expected.as_str()) {
            (Some(a), Some(e)) if !op.is_substring() => match (instant(a), instant(e)) {
                (Some(a), Some(e)) => op.holds(a.cmp(&e)),
                _ => compare_text(a, e, op, def.case_exact),
            },
            (Some(a), Some(e)) => compare_text(a, e, op, def.case_exact),
            _ => false,
        },
        AttrType::Complex => false,
    }
}

fn compare_text(actual: &str, expected: &str, op: CompareOp, case_exact: bool) -> bool {
    let fold = |s: &str| {
        if case_exact {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    let (a, e) = (fold(actual), fold(expected));
    match op {
        CompareOp::Co => a.contains(&e),
        CompareOp::Sw => a.starts_with(&e),
        CompareOp::Ew => a.ends_with(&e),
        _ => op.holds(a.cmp(&e)),
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

pub(crate) fn compare_numbers(a: &Value, b: &Value) -> Option<Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

pub(crate) fn instant(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Rejects filters that are well-formed but meaningless for the schema: ordering or substring
/// operators on booleans, comparisons of a complex attribute as a whole, ordering against
/// `true`/`null`, and value filters on simple attributes. Unknown attributes are accepted; they
/// simply match nothing.
pub(crate) fn validate(filter: &Filter, schema: &ResourceSchema) -> Result<(), ScimError> {
    check(filter, &Scope::Resource(schema))
}

fn check(filter: &Filter, scope: &Scope<'_>) -> Result<(), ScimError> {
    let refuse = |message: String| Err(ScimError::InvalidFilter(message));
    match filter {
        Filter::And(left, right) | Filter::Or(left, right) => {
            check(left, scope)?;
            check(right, scope)
        }
        Filter::Not(inner) => check(inner, scope),
        Filter::Present(_) => Ok(()),
        Filter::Compare { path, op, value } => {
            let Some((attr, sub)) = scope.definition(path) else {
                return Ok(());
            };
            let Some(target) = sub.unwrap_or(attr).comparable() else {
                return refuse(format!(
                    "'{path}' is a complex attribute; compare one of its sub-attributes"
                ));
            };
            if !op.is_equality() {
                let pointless = match target.attr_type {
                    AttrType::Boolean => true,
                    AttrType::Integer | AttrType::Decimal => op.is_substring(),
                    AttrType::String
                    | AttrType::Reference
                    | AttrType::Binary
                    | AttrType::DateTime
                    | AttrType::Complex => false,
                };
                if pointless {
                    return refuse(format!(
                        "'{op}' does not apply to '{path}', which is of type {}",
                        target.attr_type.as_str()
                    ));
                }
                if value.is_null() || value.is_boolean() {
                    return refuse(format!("'{op}' needs a string or number, not {value}"));
                }
            }
            Ok(())
        }
        Filter::ValuePath { path, filter } => {
            let Some((attr, sub)) = scope.definition(path) else {
                return Ok(());
            };
            if sub.is_some() || attr.attr_type != AttrType::Complex {
                return refuse(format!(
                    "'{path}' is not a complex attribute and cannot take '[...]'"
                ));
            }
            check(filter, &Scope::Complex(&attr.sub_attributes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn path(text: &str) -> AttrPath {
        parse_attr_path(text).expect("valid path")
    }

    fn cmp(p: &str, op: CompareOp, value: Value) -> Filter {
        Filter::Compare {
            path: path(p),
            op,
            value,
        }
    }

    fn and(l: Filter, r: Filter) -> Filter {
        Filter::And(Box::new(l), Box::new(r))
    }

    fn or(l: Filter, r: Filter) -> Filter {
        Filter::Or(Box::new(l), Box::new(r))
    }

    #[test]
    fn parses_the_grammar() {
        use CompareOp::*;
        let cases: Vec<(&str, Filter)> = vec![
            ("userName eq \"bjensen\"", cmp("userName", Eq, json!("bjensen"))),
            ("USERNAME EQ \"x\"", cmp("USERNAME", Eq, json!("x"))),
            ("name.familyName co \"O'Malley\"", cmp("name.familyName", Co, json!("O'Malley"))),
            ("userName sw \"J\"", cmp("userName", Sw, json!("J"))),
            ("userName Ew \"n\"", cmp("userName", Ew, json!("n"))),
            ("title pr", Filter::Present(path("title"))),
            ("title PR", Filter::Present(path("title"))),
            (
                "meta.lastModified gt \"2011-05-13T04:42:34Z\"",
                cmp("meta.lastModified", Gt, json!("2011-05-13T04:42:34Z")),
            ),
            ("meta.lastModified ge \"2011\"", cmp("meta.lastModified", Ge, json!("2011"))),
            ("meta.lastModified lt \"2011\"", cmp("meta.lastModified", Lt, json!("2011"))),
            ("meta.lastModified le \"2011\"", cmp("meta.lastModified", Le, json!("2011"))),
            ("active ne false", cmp("active", Ne, json!(false))),
            ("active eq TRUE", cmp("active", Eq, json!(true))),
            ("manager eq NULL", cmp("manager", Eq, Value::Null)),
            ("age gt 42", cmp("age", Gt, json!(42))),
            ("ratio lt -1.5e3", cmp("ratio", Lt, json!(-1500.0))),
            ("userName eq \"a \\\"quoted\\\" \\u00e9\"", cmp("userName", Eq, json!("a \"quoted\" é"))),
            ("userName eq \"a+b\"", cmp("userName", Eq, json!("a+b"))),
            (
                "title pr and userType eq \"Employee\"",
                and(Filter::Present(path("title")), cmp("userType", Eq, json!("Employee"))),
            ),
            (
                "title pr or userType eq \"Intern\"",
                or(Filter::Present(path("title")), cmp("userType", Eq, json!("Intern"))),
            ),
            (
                "a pr or b pr and c pr",
                or(
                    Filter::Present(path("a")),
                    and(Filter::Present(path("b")), Filter::Present(path("c"))),
                ),
            ),
            (
                "a pr AND b pr Or c pr",
                or(
                    and(Filter::Present(path("a")), Filter::Present(path("b"))),
                    Filter::Present(path("c")),
                ),
            ),
            (
                "userType eq \"Employee\" and (emails co \"example.com\" or emails.value co \"example.org\")",
                and(
                    cmp("userType", Eq, json!("Employee")),
                    or(cmp("emails", Co, json!("example.com")), cmp("emails.value", Co, json!("example.org"))),
                ),
            ),
            (
                "userType ne \"Employee\" and not (emails co \"example.com\")",
                and(
                    cmp("userType", Ne, json!("Employee")),
                    Filter::Not(Box::new(cmp("emails", Co, json!("example.com")))),
                ),
            ),
            (
                "NOT(title pr)",
                Filter::Not(Box::new(Filter::Present(path("title")))),
            ),
            (
                "emails[type eq \"work\" and value co \"@example.com\"]",
                Filter::ValuePath {
                    path: path("emails"),
                    filter: Box::new(and(
                        cmp("type", Eq, json!("work")),
                        cmp("value", Co, json!("@example.com")),
                    )),
                },
            ),
            (
                "members[value eq \"2819c223\"]",
                Filter::ValuePath {
                    path: path("members"),
                    filter: Box::new(cmp("value", Eq, json!("2819c223"))),
                },
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"26118915\"",
                cmp(
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                    Eq,
                    json!("26118915"),
                ),
            ),
            ("  ( ( title pr ) )  ", Filter::Present(path("title"))),
            ("userName eq\"x\"", cmp("userName", Eq, json!("x"))),
        ];
        for (input, expected) in cases {
            match parse(input) {
                Ok(parsed) => assert_eq!(parsed, expected, "{input}"),
                Err(e) => panic!("{input}: {e}"),
            }
        }
    }

    #[test]
    fn rejects_bad_filters_with_a_position() {
        let cases = [
            ("", "position 1"),
            ("userName", "expected an operator"),
            ("userName eq", "expected a string"),
            ("userName eq bjensen", "found 'bjensen'"),
            ("userName equals \"x\"", "unknown operator 'equals'"),
            ("userName eq \"x", "unterminated string"),
            ("userName eq \"\\x\"", "invalid string literal"),
            ("(userName pr", "expected ')'"),
            ("userName pr)", "position 12"),
            ("userName pr and", "found the end"),
            ("userName pr userName pr", "expected 'and', 'or'"),
            ("emails[type eq \"work\"", "expected ']'"),
            (
                "emails[type eq \"work\"].value eq \"x\"",
                "sub-attribute after ']'",
            ),
            ("emails[members[value pr]]", "cannot be nested"),
            (
                "emails[name.givenName pr]",
                "sub-attribute of the filtered attribute",
            ),
            ("name.givenName[x pr]", "must follow an attribute"),
            ("userName eq +1", "found '+1'"),
            ("userName+eq+\"x\"", "position 1"),
            ("not title pr", "unknown operator 'title'"),
            ("1abc pr", "not an attribute name"),
            ("[x]", "expected an attribute path"),
            ("userName eq (x)", "expected a string"),
        ];
        for (input, needle) in cases {
            match parse(input) {
                Err(ScimError::InvalidFilter(detail)) => {
                    assert!(
                        detail.contains(needle),
                        "{input:?}: {detail:?} lacks {needle:?}"
                    )
                }
                other => panic!("{input:?}: expected InvalidFilter, got {other:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips_examples() {
        for input in [
            "userName eq \"bjensen\"",
            "a pr and (b pr or c pr)",
            "a pr and (b pr and c pr)",
            "a pr or (b pr or c pr)",
            "(a pr or b pr) and c pr",
            "not (a pr and b pr)",
            "emails[type eq \"work\" and (primary eq true or value ew \".org\")]",
            "x eq \"\\n\\t\\\"\"",
        ] {
            let parsed = parse(input).expect("parses");
            assert_eq!(parse(&parsed.to_string()).ok(), Some(parsed), "{input}");
        }
        assert_eq!(
            parse("A PR AND (B PR OR C PR)")
                .map(|f| f.to_string())
                .ok()
                .as_deref(),
            Some("A pr and (B pr or C pr)")
        );
    }

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "Ext-701984",
            "userName": "BJensen@example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs Jensen",
            "title": "",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "phoneNumbers": [{"value": "555-555-8377", "type": "mobile"}],
            "addresses": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "department": "Tour Operations",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
            },
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34+02:00"
            }
        })
    }

    #[test]
    fn evaluates_against_a_user() {
        let schema = ResourceSchema::user();
        let resource = user();
        let cases = [
            ("userName eq \"bjensen@example.com\"", true),
            ("USERNAME EQ \"BJENSEN@EXAMPLE.COM\"", true),
            ("userName eq \"bjensen\"", false),
            ("userName sw \"bjen\"", true),
            ("userName ew \"EXAMPLE.COM\"", true),
            ("userName co \"sen@\"", true),
            ("userName gt \"a\"", true),
            ("userName lt \"a\"", false),
            ("userName ne \"bjensen@example.com\"", false),
            ("externalId eq \"Ext-701984\"", true),
            ("externalId eq \"ext-701984\"", false),
            ("id eq \"2819C223-7F76-453A-919D-413861904646\"", false),
            ("name.familyName eq \"jensen\"", true),
            ("Name.GivenName sw \"Bar\"", true),
            ("title pr", false),
            ("displayName pr", true),
            ("nickName pr", false),
            ("addresses pr", false),
            ("emails pr", true),
            ("name pr", true),
            ("nickName eq null", true),
            ("displayName ne null", true),
            ("nickName ne \"x\"", true),
            ("active eq true", true),
            ("active eq \"True\"", true),
            ("active ne true", false),
            ("emails eq \"babs@jensen.org\"", true),
            ("emails co \"jensen.org\"", true),
            ("emails.value eq \"BABS@jensen.org\"", true),
            ("emails.type eq \"home\"", true),
            ("emails.type eq \"other\"", false),
            ("emails ne \"babs@jensen.org\"", false),
            ("emails[type eq \"work\" and value co \"@example.com\"]", true),
            ("emails[type eq \"home\" and primary eq true]", false),
            ("emails[type eq \"work\" and primary eq true]", true),
            ("emails[not (type eq \"work\")]", true),
            ("phoneNumbers[type eq \"mobile\"]", true),
            ("meta.created gt \"2010-01-01T00:00:00Z\"", true),
            ("meta.created lt \"2010-01-23T05:56:22+01:00\"", false),
            ("meta.created eq \"2010-01-23T05:56:22+01:00\"", true),
            ("meta.lastModified lt \"2011-05-13T03:00:00Z\"", true),
            ("meta.lastModified ge \"2011-05-13T02:42:34Z\"", true),
            ("meta.lastModified gt \"2011-05-13T02:42:34Z\"", false),
            ("meta.resourceType eq \"User\"", true),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"tour operations\"",
                true,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"26118915-6090-4610-87e4-49d8ca9f808d\"",
                true,
            ),
            (
                "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:EMPLOYEENUMBER eq \"701984\"",
                true,
            ),
            ("urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"b\"", true),
            ("department eq \"Tour Operations\"", false),
            ("nonsense eq \"x\"", false),
            ("nonsense ne \"x\"", false),
            ("nonsense pr", false),
            ("not (nonsense pr)", true),
            ("name.nonsense pr", false),
            ("userName eq \"x\" or userType eq \"employee\"", true),
            ("userName eq \"x\" or userType eq \"employee\" and active eq false", false),
            ("(userName eq \"x\" or userType eq \"employee\") and active eq true", true),
            ("schemas eq \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:user\"", true),
            ("active gt 3", false),
        ];
        for (input, expected) in cases {
            let filter = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(matches(&filter, &resource, &schema), expected, "{input}");
        }
    }

    #[test]
    fn numbers_compare_numerically() {
        let mut schema = ResourceSchema::user();
        let mut age = schema.core.attributes[0].clone();
        age.name = "age".to_owned();
        age.attr_type = AttrType::Integer;
        let mut ratio = age.clone();
        ratio.name = "ratio".to_owned();
        ratio.attr_type = AttrType::Decimal;
        schema.core.attributes.extend([age, ratio]);
        let resource = json!({"age": 42, "ratio": 0.5});
        for (input, expected) in [
            ("age eq 42", true),
            ("age gt 9", true),
            ("age le 42.0", true),
            ("age lt 42", false),
            ("ratio gt 0.25", true),
            ("ratio eq 0.5", true),
            ("ratio eq \"0.5\"", false),
            ("age co 4", false),
        ] {
            let filter = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(matches(&filter, &resource, &schema), expected, "{input}");
        }
    }

    #[test]
    fn evaluates_group_members() {
        let schema = ResourceSchema::group();
        let group = json!({
            "displayName": "Tour Guides",
            "members": [{"value": "2819c223", "display": "Babs"}, {"value": "902c246b"}]
        });
        for (input, expected) in [
            ("displayName eq \"tour guides\"", true),
            ("members[value eq \"2819c223\"]", true),
            ("members[value eq \"2819C223\"]", false),
            ("members eq \"902c246b\"", true),
            ("members.display pr", true),
            ("members[value eq \"nope\"]", false),
        ] {
            let filter = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(matches(&filter, &group, &schema), expected, "{input}");
        }
    }

    #[test]
    fn validation_rejects_meaningless_comparisons() {
        let schema = ResourceSchema::user();
        for input in [
            "userName eq \"x\"",
            "active eq true",
            "active ne false",
            "emails gt \"a\"",
            "meta.created gt \"2010-01-01T00:00:00Z\"",
            "nonsense gt true",
            "emails[type eq \"work\"]",
            "emails[nonsense gt true]",
            "nonsense[x eq 1]",
            "name.givenName pr",
        ] {
            let filter = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(validate(&filter, &schema).is_ok(), "{input}");
        }
        for input in [
            "active gt true",
            "active co \"t\"",
            "name eq \"Barbara\"",
            "name gt \"a\"",
            "meta lt \"x\"",
            "userName gt null",
            "userName ge true",
            "userName[value eq \"x\"]",
            "emails[primary lt true]",
            "not (active le false) or title pr",
        ] {
            let filter = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            match validate(&filter, &schema) {
                Err(ScimError::InvalidFilter(_)) => {}
                other => panic!("{input}: expected InvalidFilter, got {other:?}"),
            }
        }
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
            Just("$ref".to_owned()),
            Just("not".to_owned()),
            Just("and".to_owned()),
            Just("pr".to_owned()),
        ]
    }

    fn attr_path(with_urn: bool) -> impl Strategy<Value = AttrPath> {
        let urn = if with_urn {
            proptest::option::of("urn:[a-z]{1,6}(:[a-zA-Z0-9.]{1,6}){0,3}").boxed()
        } else {
            Just(None).boxed()
        };
        (urn, name(), proptest::option::of(name())).prop_map(|(urn, attr, sub_attr)| AttrPath {
            urn,
            attr,
            sub_attr,
        })
    }

    fn literal() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
    }

    fn op() -> impl Strategy<Value = CompareOp> {
        use CompareOp::*;
        proptest::sample::select(vec![Eq, Ne, Co, Sw, Ew, Gt, Ge, Lt, Le])
    }

    fn tree(leaf: BoxedStrategy<Filter>) -> BoxedStrategy<Filter> {
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
        .boxed()
    }

    fn attribute_leaf(path: BoxedStrategy<AttrPath>) -> BoxedStrategy<Filter> {
        prop_oneof![
            (path.clone(), op(), literal()).prop_map(|(path, op, value)| Filter::Compare {
                path,
                op,
                value
            }),
            path.prop_map(Filter::Present),
        ]
        .boxed()
    }

    fn filter() -> BoxedStrategy<Filter> {
        let simple = attr_path(false)
            .prop_map(|p| AttrPath::attr(&p.attr))
            .boxed();
        let value_path = (
            attr_path(true).prop_map(|p| p.with_sub(None)),
            tree(attribute_leaf(simple)),
        )
            .prop_map(|(path, inner)| Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        tree(prop_oneof![3 => attribute_leaf(attr_path(true).boxed()), 1 => value_path].boxed())
    }

    /// Runs `f` on a thread with a 512 KiB stack, a quarter of an actix worker's: a parser or
    /// evaluator whose recursion input can drive overflows it and aborts the test binary.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no panic")
    }

    fn refused(input: String) -> String {
        on_small_stack(move || match parse(&input) {
            Err(ScimError::InvalidFilter(detail)) => detail,
            other => panic!("expected invalidFilter, got {other:?}"),
        })
    }

    #[test]
    fn hostile_filters_are_refused_without_recursing() {
        let clause = "userName eq \"a\"";
        let nested = format!("{}{clause}{}", "(".repeat(1_500), ")".repeat(1_500));
        assert!(refused(nested).contains("nested"));
        let negated = format!("{}{clause}{}", "not (".repeat(1_200), ")".repeat(1_200));
        assert!(refused(negated).contains("nested"));
        let ored = vec![clause; 10_000].join(" or ");
        assert!(refused(ored).contains("longer"));
        let anded = vec!["a pr"; MAX_FILTER_CLAUSES + 1].join(" and ");
        assert!(anded.len() < MAX_FILTER_LENGTH);
        assert!(refused(anded).contains("clauses"));
        let long_value = format!("userName eq \"{}\"", "x".repeat(MAX_FILTER_LENGTH));
        assert!(refused(long_value).contains("longer"));
        let value_filter = format!("emails[{}]", vec!["value eq \"u\""; 300].join(" or "));
        assert!(refused(value_filter).contains("clauses"));
        let detail = refused("(".repeat(5_000));
        assert!(
            detail.len() < 200,
            "the detail does not echo the filter: {detail}"
        );
    }

    #[test]
    fn filters_at_the_limits_parse_and_evaluate_on_a_small_stack() {
        let clause = "emails[type eq \"work\" and value co \"@\"]";
        let deep = format!(
            "{}{clause}{}",
            "not (".repeat(MAX_FILTER_DEPTH - 1),
            ")".repeat(MAX_FILTER_DEPTH - 1)
        );
        let wide = vec!["userName eq \"u\""; MAX_FILTER_CLAUSES].join(" or ");
        for text in [deep, wide] {
            assert!(text.len() <= MAX_FILTER_LENGTH);
            on_small_stack(move || {
                let schema = ResourceSchema::user();
                let filter = parse(&text).expect("within the limits");
                validate(&filter, &schema).expect("valid");
                let _ = matches(&filter, &user(), &schema);
                assert_eq!(parse(&filter.to_string()).ok(), Some(filter));
            });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parser_never_panics(input in "\\PC*") {
            let _ = parse(&input);
        }

        #[test]
        fn parser_never_panics_on_filter_like_text(
            input in "[a-zA-Z.:\\[\\]()\" \\\\0-9$-]{0,40}"
        ) {
            let _ = parse(&input);
        }

        #[test]
        fn display_round_trips(f in filter()) {
            let text = f.to_string();
            prop_assert_eq!(parse(&text).ok(), Some(f), "{}", text);
        }

        #[test]
        fn evaluation_never_panics(f in filter()) {
            let schema = ResourceSchema::user();
            let _ = matches(&f, &user(), &schema);
            let _ = validate(&f, &schema);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Deep and wide filter text, up to twice every limit: parsing answers a filter or
        /// invalidFilter, and what parses stays within the limits and evaluates, all on a
        /// quarter of a worker's stack.
        #[test]
        fn deep_and_wide_filters_are_parsed_or_refused_within_bounds(
            shape in proptest::collection::vec((0..4u8, 0..3u8), 1..(2 * MAX_FILTER_CLAUSES)),
            nesting in 0..(2 * MAX_FILTER_DEPTH),
        ) {
            let mut text = String::new();
            for (index, (opener, joiner)) in shape.iter().enumerate() {
                if index > 0 {
                    text.push_str(["and ", "or ", "AND "][usize::from(*joiner)]);
                }
                text.push_str(["", "(", "not (", ""][usize::from(*opener)]);
                text.push_str(if *opener == 3 { "emails[value pr] " } else { "title pr " });
                if matches!(opener, 1 | 2) {
                    text.push_str(") ");
                }
            }
            let text = format!("{}{text}{}", "not (".repeat(nesting), ")".repeat(nesting));
            let clauses: usize = shape.iter().map(|(opener, _)| if *opener == 3 { 2 } else { 1 }).sum();
            let depth = nesting + usize::from(shape.iter().any(|(opener, _)| *opener != 0));
            let within = clauses <= MAX_FILTER_CLAUSES
                && depth <= MAX_FILTER_DEPTH
                && text.len() <= MAX_FILTER_LENGTH;
            let outcome = on_small_stack(move || {
                let schema = ResourceSchema::user();
                parse(&text).map(|filter| {
                    let _ = validate(&filter, &schema);
                    let _ = matches(&filter, &user(), &schema);
                    filter.to_string().len()
                })
            });
            prop_assert_eq!(outcome.is_ok(), within, "{:?}", outcome);
            match outcome {
                Ok(length) => prop_assert!(length <= 2 * MAX_FILTER_LENGTH),
                Err(error) => prop_assert!(matches!(error, ScimError::InvalidFilter(_))),
            }
        }

    }
}
