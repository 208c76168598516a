//! The emulators' own reading of each vendor's user fields, written from the vendor's
//! documentation and kept apart from the adapters' declared schemas: a request reaching an
//! emulator is held to the vendor's contract, so a slip in an adapter's schema shows up as
//! a refusal in the sandbox instead of being copied into it.

use serde_json::Value;

use super::emulator::Payload;

/// The JSON type of a vendor field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Integer,
    /// Any JSON number (Appgate documents `failedLoginAttempts` as `number`).
    Number,
    StringArray,
    Object,
    ObjectArray,
}

impl Kind {
    fn fits(self, value: &Value) -> bool {
        match self {
            Kind::String => value.is_string(),
            Kind::Boolean => value.is_boolean(),
            Kind::Integer => value.is_i64(),
            Kind::Number => value.is_number(),
            Kind::StringArray => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Kind::Object => value.is_object(),
            Kind::ObjectArray => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_object)),
        }
    }

    /// How the kind reads in an error message ("must be a string").
    pub(crate) fn described(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Boolean => "a boolean",
            Kind::Integer => "an integer",
            Kind::Number => "a number",
            Kind::StringArray => "an array of strings",
            Kind::Object => "an object",
            Kind::ObjectArray => "an array of objects",
        }
    }
}

/// One field of a vendor's user object, as its documentation states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required_on_create: bool,
    pub required_on_update: bool,
    /// In characters.
    pub max_len: Option<usize>,
    /// The values an enumerated string may take; empty when any value is allowed.
    pub allowed: &'static [&'static str],
    /// Accepted on a write, never returned by a read (passwords, secrets).
    pub write_only: bool,
    /// Assigned by the vendor: returned by reads, ignored when a write carries it.
    pub read_only: bool,
}

impl Field {
    /// A field accepted and returned, required nowhere, with no limits; a table starts
    /// from it and states what differs.
    pub(crate) const fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            required_on_create: false,
            required_on_update: false,
            max_len: None,
            allowed: &[],
            write_only: false,
            read_only: false,
        }
    }

    pub(crate) const fn text(name: &'static str) -> Self {
        Self::new(name, Kind::String)
    }

    pub(crate) const fn flag(name: &'static str) -> Self {
        Self::new(name, Kind::Boolean)
    }

    /// Required on create and on every update.
    pub(crate) const fn required(self) -> Self {
        Self {
            required_on_create: true,
            required_on_update: true,
            ..self
        }
    }

    pub(crate) const fn max(self, max_len: usize) -> Self {
        Self {
            max_len: Some(max_len),
            ..self
        }
    }

    pub(crate) const fn one_of(self, allowed: &'static [&'static str]) -> Self {
        Self { allowed, ..self }
    }

    pub(crate) const fn write_only(self) -> Self {
        Self {
            write_only: true,
            ..self
        }
    }

    pub(crate) const fn read_only(self) -> Self {
        Self {
            read_only: true,
            ..self
        }
    }
}

/// What a vendor does with a body field its table does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// The request is refused, naming the field.
    Refuse,
    /// The field is dropped and the rest of the body taken.
    Ignore,
}

/// One vendor's user object: its fields and how it meets a field it does not know.
#[derive(Debug)]
pub struct Contract {
    pub fields: &'static [Field],
    pub unknown: Unknown,
}

impl Contract {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.name == name)
    }

    /// The fields a write may set.
    pub(crate) fn writable(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|field| !field.read_only)
    }

    pub(crate) fn write_only(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields
            .iter()
            .filter(|field| field.write_only)
            .map(|field| field.name)
    }

    /// The fields of `body` a client may write (nulls included: some vendors read a null
    /// as "clear it").
    pub(crate) fn writable_fields(&self, body: &Payload) -> Payload {
        self.writable()
            .filter_map(|field| Some((field.name.to_owned(), body.get(field.name)?.clone())))
            .collect()
    }

    /// The writable fields of `body` whose value is not of the documented kind; a null
    /// passes, as the vendors read it as "not set".
    pub(crate) fn mistyped<'a>(&'a self, body: &'a Payload) -> impl Iterator<Item = &'a Field> {
        self.writable().filter(move |field| {
            body.get(field.name)
                .is_some_and(|value| !value.is_null() && !field.kind.fits(value))
        })
    }

    /// The fields a create (or an update) must carry.
    pub(crate) fn required(&self, creating: bool) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |field| {
            if creating {
                field.required_on_create
            } else {
                field.required_on_update
            }
        })
    }

    /// The names in `body` the table does not have, in the body's order, when the vendor
    /// refuses such fields; none when it ignores them.
    pub(crate) fn refused_unknown<'a>(
        &'a self,
        body: &'a Payload,
    ) -> impl Iterator<Item = &'a str> {
        body.keys()
            .map(String::as_str)
            .filter(move |name| self.unknown == Unknown::Refuse && self.field(name).is_none())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FIELDS: &[Field] = &[
        Field::text("name").required().max(5),
        Field::text("secret").write_only(),
        Field::new("count", Kind::Integer).read_only(),
        Field::new("tags", Kind::StringArray),
    ];

    fn body(value: Value) -> Payload {
        match value {
            Value::Object(object) => object,
            _ => Payload::new(),
        }
    }

    #[test]
    fn writes_keep_the_writable_fields_and_drop_the_rest() {
        let contract = Contract {
            fields: FIELDS,
            unknown: Unknown::Ignore,
        };
        let sent = body(json!({"name": "a", "secret": "s", "count": 3, "other": 1, "tags": null}));
        let kept = contract.writable_fields(&sent);
        assert_eq!(
            Value::Object(kept),
            json!({"name": "a", "secret": "s", "tags": null})
        );
        assert_eq!(contract.write_only().collect::<Vec<_>>(), ["secret"]);
        assert_eq!(contract.refused_unknown(&sent).count(), 0);
    }

    #[test]
    fn a_strict_vendor_names_the_fields_it_does_not_know() {
        let contract = Contract {
            fields: FIELDS,
            unknown: Unknown::Refuse,
        };
        let sent = body(json!({"zeta": 1, "name": "a", "count": 1, "alpha": 2}));
        let unknown: Vec<_> = contract.refused_unknown(&sent).collect();
        assert_eq!(unknown, ["zeta", "alpha"]);
    }

    #[test]
    fn types_are_checked_on_writable_fields_only_and_null_passes() {
        let contract = Contract {
            fields: FIELDS,
            unknown: Unknown::Refuse,
        };
        let sent = body(json!({"name": 5, "count": "x", "tags": ["a", 1], "secret": null}));
        let wrong: Vec<_> = contract.mistyped(&sent).map(|field| field.name).collect();
        assert_eq!(wrong, ["name", "tags"]);
        assert!(Kind::Number.fits(&json!(0.0)));
        assert!(!Kind::Integer.fits(&json!(0.5)));
    }

    #[test]
    fn required_fields_differ_between_create_and_update() {
        const PARTIAL: &[Field] = &[
            Field::text("a").required(),
            Field {
                required_on_update: false,
                ..Field::text("b").required()
            },
        ];
        let contract = Contract {
            fields: PARTIAL,
            unknown: Unknown::Ignore,
        };
        let names = |creating| -> Vec<_> {
            contract
                .required(creating)
                .map(|field| field.name)
                .collect()
        };
        assert_eq!(names(true), ["a", "b"]);
        assert_eq!(names(false), ["a"]);
    }
}
