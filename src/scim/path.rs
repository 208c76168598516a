//! Attribute paths (RFC 7644 section 3.10): how filters, PATCH operations, `attributes`
//! lists, sorting and the mapping engine name a place in a SCIM resource.

use std::fmt;

use crate::scim::error::ScimError;
use crate::scim::filter::{self, Filter};

/// The longest attribute path accepted, in bytes (the filter of a value path aside). The
/// longest real path, an extension URN with an attribute and sub-attribute, is under 100.
pub(crate) const MAX_PATH_LENGTH: usize = 512;

/// `[urn ":"] attr ["." sub_attr]`, e.g. `userName`, `name.givenName`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
/// Names keep the client's spelling; resolution against a schema is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// An unprefixed top-level attribute.
    #[cfg(test)]
    pub(crate) fn attr(name: &str) -> Self {
        AttrPath {
            urn: None,
            attr: name.to_owned(),
            sub_attr: None,
        }
    }

    /// The path with the sub-attribute replaced.
    pub(crate) fn with_sub(&self, sub_attr: Option<&str>) -> Self {
        AttrPath {
            urn: self.urn.clone(),
            attr: self.attr.clone(),
            sub_attr: sub_attr.map(str::to_owned),
        }
    }

    /// The path read as a whole schema URN: `urn:...:enterprise:2.0:User` parses as URN
    /// `urn:...:2.0` plus attribute `User`, and PATCH and `attributes` also use it to name a
    /// whole extension object.
    pub(crate) fn as_schema_urn(&self) -> Option<String> {
        match (&self.urn, &self.sub_attr) {
            (Some(urn), None) => Some(format!("{urn}:{}", self.attr)),
            _ => None,
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A PATCH or mapping path: an attribute, optionally narrowed to the values matching a filter,
/// optionally followed by a sub-attribute: `emails[type eq "work"].value`,
/// `members[value eq "2819c223"]`, `name.givenName`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuePath {
    /// Never carries a sub-attribute; that is `sub_attr` below.
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub_attr: Option<String>,
}

impl ValuePath {
    /// The attribute and sub-attribute, without the filter.
    pub(crate) fn target(&self) -> AttrPath {
        self.attr.with_sub(self.sub_attr.as_deref())
    }
}

impl From<AttrPath> for ValuePath {
    fn from(path: AttrPath) -> Self {
        ValuePath {
            attr: path.with_sub(None),
            filter: None,
            sub_attr: path.sub_attr,
        }
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

pub(crate) fn parse_attr_path(input: &str) -> Result<AttrPath, ScimError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ScimError::InvalidPath("empty attribute path".to_owned()));
    }
    if text.len() > MAX_PATH_LENGTH {
        return Err(too_long(text));
    }
    // Attribute names never contain ':', and URNs do contain '.' ("2.0"), so the URN ends at
    // the last ':' and only what follows it is split on '.'.
    let (urn, rest) = match text.rfind(':') {
        Some(at) => (Some(&text[..at]), &text[at + 1..]),
        None => (None, text),
    };
    if let Some(urn) = urn {
        check_urn(urn, text)?;
    }
    let (attr, sub_attr) = match rest.split_once('.') {
        Some((attr, sub)) => (attr, Some(sub)),
        None => (rest, None),
    };
    check_name(attr, text)?;
    if let Some(sub) = sub_attr {
        check_name(sub, text)?;
    }
    Ok(AttrPath {
        urn: urn.map(str::to_owned),
        attr: attr.to_owned(),
        sub_attr: sub_attr.map(str::to_owned),
    })
}

pub fn parse_value_path(input: &str) -> Result<ValuePath, ScimError> {
    let text = input.trim();
    let Some(open) = text.find('[') else {
        return parse_attr_path(text).map(ValuePath::from);
    };
    // The filter may itself contain ']' inside string literals, but what follows the closing
    // bracket is at most ".subAttr", so the last ']' is the closing one.
    let close = text
        .rfind(']')
        .filter(|close| *close > open)
        .ok_or_else(|| invalid(text, "'[' without a matching ']'"))?;
    let attr = parse_attr_path(&text[..open])?;
    if attr.sub_attr.is_some() {
        return Err(invalid(
            text,
            "a value filter must follow the attribute, not a sub-attribute",
        ));
    }
    let filter = filter::parse_value_filter(&text[open + 1..close])?;
    let sub_attr = match &text[close + 1..] {
        "" => None,
        tail => {
            if tail.len() > MAX_PATH_LENGTH {
                return Err(too_long(tail));
            }
            let sub = tail
                .strip_prefix('.')
                .ok_or_else(|| invalid(text, "only '.subAttribute' may follow ']'"))?;
            check_name(sub, text)?;
            Some(sub.to_owned())
        }
    };
    Ok(ValuePath {
        attr,
        filter: Some(filter),
        sub_attr,
    })
}

fn too_long(path: &str) -> ScimError {
    ScimError::InvalidPath(format!(
        "an attribute path of {} bytes is longer than the {MAX_PATH_LENGTH} accepted",
        path.len()
    ))
}

fn invalid(path: &str, why: &str) -> ScimError {
    ScimError::InvalidPath(format!("invalid attribute path '{path}': {why}"))
}

/// `ATTRNAME = ALPHA *(ALPHA / DIGIT / "-" / "_")`, plus `$ref`, which RFC 7643 uses as a
/// sub-attribute name although the grammar forgets it.
fn check_name(name: &str, path: &str) -> Result<(), ScimError> {
    let body = name.strip_prefix('$').unwrap_or(name);
    let mut chars = body.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if well_formed {
        Ok(())
    } else if name.is_empty() {
        Err(invalid(path, "missing attribute name"))
    } else {
        Err(invalid(path, &format!("'{name}' is not an attribute name")))
    }
}

fn check_urn(urn: &str, path: &str) -> Result<(), ScimError> {
    let scheme_ok = urn
        .get(..4)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("urn:"));
    let chars_ok = urn
        .chars()
        .all(|c| !c.is_whitespace() && !"[]()\"".contains(c));
    if scheme_ok && chars_ok && urn.len() > 4 {
        Ok(())
    } else {
        Err(invalid(path, &format!("'{urn}' is not a schema URN")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn ap(urn: Option<&str>, attr: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: urn.map(str::to_owned),
            attr: attr.to_owned(),
            sub_attr: sub.map(str::to_owned),
        }
    }

    #[test]
    fn attr_paths_parse() {
        let cases = [
            ("userName", ap(None, "userName", None)),
            ("  userName ", ap(None, "userName", None)),
            ("name.givenName", ap(None, "name", Some("givenName"))),
            ("members.$ref", ap(None, "members", Some("$ref"))),
            ("$ref", ap(None, "$ref", None)),
            ("x509Certificates", ap(None, "x509Certificates", None)),
            ("first_name-2", ap(None, "first_name-2", None)),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                ap(Some(ENTERPRISE), "department", None),
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                ap(Some(ENTERPRISE), "manager", Some("value")),
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
                ap(
                    Some("urn:ietf:params:scim:schemas:core:2.0:User"),
                    "name",
                    Some("familyName"),
                ),
            ),
            (
                ENTERPRISE,
                ap(
                    Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0"),
                    "User",
                    None,
                ),
            ),
        ];
        for (input, expected) in cases {
            let parsed = parse_attr_path(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed, expected, "{input}");
            assert_eq!(parse_attr_path(&parsed.to_string()).ok(), Some(parsed));
        }
    }

    #[test]
    fn bad_attr_paths_are_invalid_path() {
        for input in [
            "",
            "   ",
            "name.",
            ".name",
            "name.givenName.x",
            "1abc",
            "user name",
            "emails[type eq \"work\"]",
            "foo:bar",
            "urn:",
            "urn:x:",
            "name..x",
            "a$b",
            "$",
        ] {
            match parse_attr_path(input) {
                Err(ScimError::InvalidPath(_)) => {}
                other => panic!("{input:?}: expected InvalidPath, got {other:?}"),
            }
        }
    }

    #[test]
    fn value_paths_parse_and_round_trip() {
        let cases = [
            "emails",
            "name.givenName",
            "emails[type eq \"work\"].value",
            "phoneNumbers[type eq \"mobile\"].value",
            "addresses[type eq \"work\"].streetAddress",
            "members[value eq \"2819c223\"]",
            "members[value eq \"a]b\"]",
            "emails[type eq \"work\" and primary eq true]",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        ];
        for input in cases {
            let parsed = parse_value_path(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.to_string(), input);
            assert_eq!(parse_value_path(&parsed.to_string()).ok(), Some(parsed));
        }
    }

    #[test]
    fn value_path_parts() {
        let parsed = parse_value_path("emails[type eq \"work\"].value").expect("parses");
        assert_eq!(parsed.attr, AttrPath::attr("emails"));
        assert_eq!(parsed.sub_attr.as_deref(), Some("value"));
        assert_eq!(
            parsed.filter.map(|f| f.to_string()).as_deref(),
            Some("type eq \"work\"")
        );
        let plain = parse_value_path("name.givenName").expect("parses");
        assert_eq!(plain.attr, AttrPath::attr("name"));
        assert_eq!(plain.sub_attr.as_deref(), Some("givenName"));
        assert_eq!(plain.target(), ap(None, "name", Some("givenName")));
        assert!(plain.filter.is_none());
    }

    #[test]
    fn bad_value_paths() {
        for input in [
            "emails[type eq \"work\"",
            "emails]",
            "emails[type eq \"work\"]value",
            "emails[type eq \"work\"].",
            "name.givenName[type eq \"x\"]",
            "[type eq \"work\"]",
        ] {
            match parse_value_path(input) {
                Err(ScimError::InvalidPath(_)) => {}
                other => panic!("{input:?}: expected InvalidPath, got {other:?}"),
            }
        }
        for input in ["emails[type eq]", "emails[]", "emails[type eq \"x\" and]"] {
            match parse_value_path(input) {
                Err(ScimError::InvalidFilter(_)) => {}
                other => panic!("{input:?}: expected InvalidFilter, got {other:?}"),
            }
        }
    }

    #[test]
    fn schema_urn_reading() {
        let whole = parse_attr_path(ENTERPRISE).expect("parses");
        assert_eq!(whole.as_schema_urn().as_deref(), Some(ENTERPRISE));
        assert_eq!(AttrPath::attr("userName").as_schema_urn(), None);
    }
}
