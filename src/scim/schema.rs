//! SCIM schema model (RFC 7643): the User, Enterprise User and Group definitions every other
//! step of the inbound flow (filter, PATCH, validation, projection, sort, discovery) reads.

use serde_json::{json, Map, Value};

use crate::scim::path::AttrPath;

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub(crate) const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// The most values a multi-valued attribute (emails, roles, entitlements...) may hold. Real
/// users carry a handful; the cap bounds what one request stores, renders for every target
/// and makes PATCH walk.
pub const MAX_ATTRIBUTE_VALUES: usize = 1_000;
/// The most members a group may hold. Every write of a group stores its whole member list
/// again in the writer's transaction, so this bounds the work one group write costs there.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute and its characteristics (RFC 7643 section 2.2 and 7).
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDef {
    pub name: String,
    pub attr_type: AttrType,
    pub multi_valued: bool,
    pub description: String,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: Vec<String>,
    pub reference_types: Vec<String>,
    pub sub_attributes: Vec<AttributeDef>,
    /// For a multi-valued attribute, how many values it may hold.
    pub max_values: usize,
    /// Text naturally spanning lines (a postal address), where tab and line breaks are allowed.
    pub multi_line: bool,
}

impl AttributeDef {
    /// A single-valued, optional, case-insensitive, read-write attribute returned by default:
    /// the RFC 7643 defaults, which the builder methods below adjust.
    fn new(name: &str, attr_type: AttrType, description: &str) -> Self {
        AttributeDef {
            name: name.to_owned(),
            attr_type,
            multi_valued: false,
            description: description.to_owned(),
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: Vec::new(),
            reference_types: Vec::new(),
            sub_attributes: Vec::new(),
            max_values: MAX_ATTRIBUTE_VALUES,
            multi_line: false,
        }
    }

    fn string(name: &str, description: &str) -> Self {
        Self::new(name, AttrType::String, description)
    }

    fn boolean(name: &str, description: &str) -> Self {
        Self::new(name, AttrType::Boolean, description)
    }

    fn reference(name: &str, types: &[&str], description: &str) -> Self {
        let mut def = Self::new(name, AttrType::Reference, description);
        def.reference_types = types.iter().map(|t| (*t).to_owned()).collect();
        def
    }

    fn complex(name: &str, description: &str, sub_attributes: Vec<AttributeDef>) -> Self {
        let mut def = Self::new(name, AttrType::Complex, description);
        def.sub_attributes = sub_attributes;
        def
    }

    /// The `value` / `display` / `type` / `primary` shape RFC 7643 section 2.4 gives most
    /// multi-valued attributes.
    fn multi_valued_standard(
        name: &str,
        description: &str,
        value: AttributeDef,
        types: &[&str],
    ) -> Self {
        Self::complex(
            name,
            description,
            vec![
                value,
                Self::string("display", "A human-readable name for the value."),
                Self::string("type", "What the value is used for.").canonical(types),
                Self::boolean(
                    "primary",
                    "Marks the preferred value; at most one value is primary.",
                ),
            ],
        )
        .multi()
    }

    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }

    fn returned(mut self, returned: Returned) -> Self {
        self.returned = returned;
        self
    }

    fn uniqueness(mut self, uniqueness: Uniqueness) -> Self {
        self.uniqueness = uniqueness;
        self
    }

    fn max_values(mut self, max_values: usize) -> Self {
        self.max_values = max_values;
        self
    }

    fn multi_line(mut self) -> Self {
        self.multi_line = true;
        self
    }

    fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    /// Read-only all the way down: a derived attribute such as `groups` has no writable part.
    fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self.sub_attributes = self
            .sub_attributes
            .into_iter()
            .map(AttributeDef::read_only)
            .collect();
        self
    }

    /// Sub-attribute lookup; attribute names are case-insensitive (RFC 7643 section 2.1).
    pub(crate) fn sub_attribute(&self, name: &str) -> Option<&AttributeDef> {
        find_attribute(&self.sub_attributes, name)
    }

    /// What a comparison against the attribute itself means: for a multi-valued complex
    /// attribute such as `emails`, its `value` sub-attribute (RFC 7644 section 3.4.2.2).
    pub(crate) fn comparable(&self) -> Option<&AttributeDef> {
        if self.attr_type == AttrType::Complex {
            if self.multi_valued {
                self.sub_attribute("value")
            } else {
                None
            }
        } else {
            Some(self)
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), json!(self.name));
        out.insert("type".into(), json!(self.attr_type.as_str()));
        if self.attr_type == AttrType::Complex {
            let subs: Vec<Value> = self
                .sub_attributes
                .iter()
                .map(AttributeDef::to_json)
                .collect();
            out.insert("subAttributes".into(), Value::Array(subs));
        }
        out.insert("multiValued".into(), json!(self.multi_valued));
        out.insert("description".into(), json!(self.description));
        out.insert("required".into(), json!(self.required));
        if !self.canonical_values.is_empty() {
            out.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        out.insert("caseExact".into(), json!(self.case_exact));
        out.insert("mutability".into(), json!(self.mutability.as_str()));
        out.insert("returned".into(), json!(self.returned.as_str()));
        out.insert("uniqueness".into(), json!(self.uniqueness.as_str()));
        if self.attr_type == AttrType::Reference {
            out.insert("referenceTypes".into(), json!(self.reference_types));
        }
        Value::Object(out)
    }
}

pub(crate) fn find_attribute<'a>(
    attributes: &'a [AttributeDef],
    name: &str,
) -> Option<&'a AttributeDef> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

/// One schema (core or extension) as RFC 7643 section 7 describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaDef {
    pub id: String,
    pub name: String,
    pub description: String,
    pub attributes: Vec<AttributeDef>,
}

impl SchemaDef {
    pub(crate) fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        find_attribute(&self.attributes, name)
    }

    /// The `/Schemas/{id}` representation. `base_url` is the SCIM root the client used, e.g.
    /// `https://bridge.example.com/scim/v2`.
    pub(crate) fn to_json(&self, base_url: &str) -> Value {
        let attributes: Vec<Value> = self.attributes.iter().map(AttributeDef::to_json).collect();
        json!({
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": attributes,
            "meta": {
                "resourceType": "Schema",
                "location": format!("{}/Schemas/{}", base_url.trim_end_matches('/'), self.id),
            },
        })
    }
}

/// A resource type: its core schema, its extensions and the attributes common to every
/// resource (RFC 7643 section 3.1), which belong to no schema but are addressable all the same.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSchema {
    pub name: String,
    pub endpoint: String,
    pub core: SchemaDef,
    /// Each extension with whether a resource must carry it.
    pub extensions: Vec<(SchemaDef, bool)>,
    pub common: Vec<AttributeDef>,
}

/// Where a path points: the attribute, the sub-attribute if any, and the extension whose
/// object holds the attribute (`None`: the attribute sits at the top level of the resource).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved<'s> {
    pub extension: Option<&'s SchemaDef>,
    pub attr: &'s AttributeDef,
    pub sub_attr: Option<&'s AttributeDef>,
}

impl Resolved<'_> {
    /// The definition the path ends at.
    pub(crate) fn leaf(&self) -> &AttributeDef {
        self.sub_attr.unwrap_or(self.attr)
    }
}

impl ResourceSchema {
    pub fn user() -> Self {
        ResourceSchema {
            name: "User".to_owned(),
            endpoint: "/Users".to_owned(),
            core: user_schema(),
            extensions: vec![(enterprise_user_schema(), false)],
            common: common_attributes(),
        }
    }

    pub(crate) fn group() -> Self {
        ResourceSchema {
            name: "Group".to_owned(),
            endpoint: "/Groups".to_owned(),
            core: group_schema(),
            extensions: Vec::new(),
            common: common_attributes(),
        }
    }

    /// The extension whose URN this is (URNs compare case-insensitively).
    pub(crate) fn extension(&self, urn: &str) -> Option<&SchemaDef> {
        self.extensions
            .iter()
            .map(|(ext, _)| ext)
            .find(|ext| ext.id.eq_ignore_ascii_case(urn))
    }

    /// Every schema URN this resource type knows, core first.
    pub(crate) fn schema_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.core.id.as_str())
            .chain(self.extensions.iter().map(|(ext, _)| ext.id.as_str()))
    }

    /// A top-level attribute of the core schema or a common attribute.
    pub(crate) fn top_level(&self, name: &str) -> Option<&AttributeDef> {
        self.core
            .attribute(name)
            .or_else(|| find_attribute(&self.common, name))
    }

    /// Resolves a path case-insensitively. Unprefixed names refer to the core schema and the
    /// common attributes; extension attributes need their schema URN as prefix.
    pub(crate) fn locate(&self, path: &AttrPath) -> Option<Resolved<'_>> {
        let (extension, attr) = match &path.urn {
            Some(urn) if urn.eq_ignore_ascii_case(&self.core.id) => {
                (None, self.top_level(&path.attr)?)
            }
            Some(urn) => {
                let ext = self.extension(urn)?;
                (Some(ext), ext.attribute(&path.attr)?)
            }
            None => (None, self.top_level(&path.attr)?),
        };
        let sub_attr = match &path.sub_attr {
            Some(sub) => Some(attr.sub_attribute(sub)?),
            None => None,
        };
        Some(Resolved {
            extension,
            attr,
            sub_attr,
        })
    }

    #[cfg(test)]
    pub(crate) fn resolve(&self, path: &AttrPath) -> Option<&AttributeDef> {
        self.locate(path).map(|r| r.sub_attr.unwrap_or(r.attr))
    }

    /// The `/ResourceTypes/{name}` representation.
    pub(crate) fn resource_type_json(&self, base_url: &str) -> Value {
        let extensions: Vec<Value> = self
            .extensions
            .iter()
            .map(|(ext, required)| json!({ "schema": ext.id, "required": required }))
            .collect();
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.core.description,
            "schema": self.core.id,
            "schemaExtensions": extensions,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!(
                    "{}/ResourceTypes/{}",
                    base_url.trim_end_matches('/'),
                    self.name
                ),
            },
        })
    }
}

/// `schemas`, `id`, `externalId` and `meta`. `meta` is marked returned=always because the
/// bridge always answers with it, even when `attributes` narrows the response.
fn common_attributes() -> Vec<AttributeDef> {
    let s = AttributeDef::string;
    let date_time =
        |name: &str, description: &str| AttributeDef::new(name, AttrType::DateTime, description);
    vec![
        AttributeDef::reference("schemas", &["uri"], "The schema URNs the resource uses.")
            .multi()
            .required()
            .mutability(Mutability::ReadOnly)
            .returned(Returned::Always),
        s("id", "Identifier the service provider assigned.")
            .case_exact()
            .mutability(Mutability::ReadOnly)
            .returned(Returned::Always)
            .uniqueness(Uniqueness::Server),
        s("externalId", "Identifier the provisioning client assigned.").case_exact(),
        AttributeDef::complex(
            "meta",
            "Resource metadata maintained by the service provider.",
            vec![
                s("resourceType", "The resource type's name.").case_exact(),
                date_time("created", "When the resource was created."),
                date_time("lastModified", "When the resource was last changed."),
                AttributeDef::reference("location", &["uri"], "The resource's URI.").case_exact(),
                s("version", "The resource's entity tag.").case_exact(),
            ],
        )
        .read_only()
        .returned(Returned::Always),
    ]
}

fn user_schema() -> SchemaDef {
    let s = AttributeDef::string;
    let name = AttributeDef::complex(
        "name",
        "The parts of the user's real name.",
        vec![
            s("formatted", "The full name, formatted for display."),
            s(
                "familyName",
                "Family name (last name in most Western languages).",
            ),
            s(
                "givenName",
                "Given name (first name in most Western languages).",
            ),
            s("middleName", "Middle name or names."),
            s("honorificPrefix", "Title before the name, e.g. Ms."),
            s("honorificSuffix", "Suffix after the name, e.g. III."),
        ],
    );
    let address = AttributeDef::complex(
        "addresses",
        "Physical mailing addresses.",
        vec![
            s(
                "formatted",
                "The full address, formatted for display or mailing.",
            )
            .multi_line(),
            s("streetAddress", "Street, house number and similar."),
            s("locality", "City or locality."),
            s("region", "State or region."),
            s("postalCode", "Postal code."),
            s("country", "Country, as an ISO 3166-1 alpha-2 code."),
            s("type", "What the address is used for.").canonical(&["work", "home", "other"]),
            AttributeDef::boolean("primary", "Marks the preferred address."),
        ],
    )
    .multi();
    let groups = AttributeDef::complex(
        "groups",
        "Groups the user belongs to, derived from group membership.",
        vec![
            s("value", "The group's id."),
            AttributeDef::reference("$ref", &["User", "Group"], "The group's URI."),
            s("display", "The group's display name."),
            s("type", "How the user belongs to the group.").canonical(&["direct", "indirect"]),
        ],
    )
    .multi()
    .read_only();
    SchemaDef {
        id: USER_SCHEMA.to_owned(),
        name: "User".to_owned(),
        description: "User Account".to_owned(),
        attributes: vec![
            s("userName", "The user's unique sign-in name.")
                .required()
                .uniqueness(Uniqueness::Server),
            name,
            s("displayName", "The name to display for the user."),
            s("nickName", "A casual name for the user."),
            AttributeDef::reference("profileUrl", &["external"], "The user's profile page."),
            s("title", "The user's job title."),
            s(
                "userType",
                "How the user relates to the organization, e.g. Employee.",
            ),
            s(
                "preferredLanguage",
                "Preferred language, as an HTTP Accept-Language value.",
            ),
            s("locale", "Default location for formatting, e.g. en-US."),
            s(
                "timezone",
                "Time zone, as an IANA name such as Europe/Paris.",
            ),
            AttributeDef::boolean("active", "Whether the user may use the service."),
            s(
                "password",
                "The user's clear-text password; it is only ever written.",
            )
            .mutability(Mutability::WriteOnly)
            .returned(Returned::Never),
            AttributeDef::multi_valued_standard(
                "emails",
                "Email addresses.",
                s("value", "The email address."),
                &["work", "home", "other"],
            ),
            AttributeDef::multi_valued_standard(
                "phoneNumbers",
                "Phone numbers.",
                s("value", "The phone number."),
                &["work", "home", "mobile", "fax", "pager", "other"],
            ),
            AttributeDef::multi_valued_standard(
                "ims",
                "Instant messaging addresses.",
                s("value", "The instant messaging address."),
                &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
            ),
            AttributeDef::multi_valued_standard(
                "photos",
                "Pictures of the user.",
                AttributeDef::reference("value", &["external"], "The picture's URL."),
                &["photo", "thumbnail"],
            ),
            address,
            groups,
            AttributeDef::multi_valued_standard(
                "entitlements",
                "Entitlements the user has.",
                s("value", "The entitlement."),
                &[],
            ),
            AttributeDef::multi_valued_standard(
                "roles",
                "Roles the user has.",
                s("value", "The role."),
                &[],
            ),
            AttributeDef::multi_valued_standard(
                "x509Certificates",
                "The user's X.509 certificates.",
                AttributeDef::new("value", AttrType::Binary, "A DER certificate, base64."),
                &[],
            ),
        ],
    }
}

fn enterprise_user_schema() -> SchemaDef {
    let s = AttributeDef::string;
    SchemaDef {
        id: ENTERPRISE_USER_SCHEMA.to_owned(),
        name: "EnterpriseUser".to_owned(),
        description: "Enterprise User".to_owned(),
        attributes: vec![
            s(
                "employeeNumber",
                "Identifier the organization assigned to the user.",
            ),
            s("costCenter", "Cost center."),
            s("organization", "Organization."),
            s("division", "Division."),
            s("department", "Department."),
            AttributeDef::complex(
                "manager",
                "The user's manager.",
                vec![
                    s("value", "The manager's id."),
                    AttributeDef::reference("$ref", &["User"], "The manager's URI."),
                    s("displayName", "The manager's display name.")
                        .mutability(Mutability::ReadOnly),
                ],
            ),
        ],
    }
}

fn group_schema() -> SchemaDef {
    let s = AttributeDef::string;
    let member = |def: AttributeDef| def.mutability(Mutability::Immutable);
    SchemaDef {
        id: GROUP_SCHEMA.to_owned(),
        name: "Group".to_owned(),
        description: "Group".to_owned(),
        attributes: vec![
            s("displayName", "The group's name.").required(),
            AttributeDef::complex(
                "members",
                "The group's members.",
                vec![
                    member(s("value", "The member's id.").case_exact()),
                    member(AttributeDef::reference(
                        "$ref",
                        &["User", "Group"],
                        "The member's URI.",
                    )),
                    member(s("display", "The member's display name.")),
                    member(s("type", "The kind of member.").canonical(&["User", "Group"])),
                ],
            )
            .multi()
            .max_values(MAX_GROUP_MEMBERS),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::path::parse_attr_path;

    fn resolved<'s>(schema: &'s ResourceSchema, path: &str) -> Option<&'s AttributeDef> {
        schema.resolve(&parse_attr_path(path).expect("valid path"))
    }

    #[test]
    fn user_schema_has_every_rfc_attribute() {
        let user = ResourceSchema::user();
        let names: Vec<&str> = user
            .core
            .attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "userName",
                "name",
                "displayName",
                "nickName",
                "profileUrl",
                "title",
                "userType",
                "preferredLanguage",
                "locale",
                "timezone",
                "active",
                "password",
                "emails",
                "phoneNumbers",
                "ims",
                "photos",
                "addresses",
                "groups",
                "entitlements",
                "roles",
                "x509Certificates",
            ]
        );
        let ext = &user.extensions[0].0;
        let ext_names: Vec<&str> = ext.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            ext_names,
            [
                "employeeNumber",
                "costCenter",
                "organization",
                "division",
                "department",
                "manager"
            ]
        );
        assert!(!user.extensions[0].1);
    }

    #[test]
    fn resolves_paths_case_insensitively() {
        let user = ResourceSchema::user();
        let cases = [
            ("userName", Some("userName")),
            ("USERNAME", Some("userName")),
            ("name.givenName", Some("givenName")),
            ("NAME.GIVENNAME", Some("givenName")),
            ("emails.value", Some("value")),
            ("groups.$ref", Some("$ref")),
            ("id", Some("id")),
            ("meta.lastModified", Some("lastModified")),
            ("externalId", Some("externalId")),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName",
                Some("userName"),
            ),
            ("urn:ietf:params:scim:schemas:core:2.0:User:id", Some("id")),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                Some("department"),
            ),
            (
                "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:manager.VALUE",
                Some("value"),
            ),
            ("department", None),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:userName",
                None,
            ),
            ("urn:example:other:1.0:User:userName", None),
            ("name.bogus", None),
            ("userName.value", None),
            ("bogus", None),
        ];
        for (path, expected) in cases {
            assert_eq!(
                resolved(&user, path).map(|a| a.name.as_str()),
                expected,
                "{path}"
            );
        }
        let group = ResourceSchema::group();
        assert_eq!(
            resolved(&group, "members.value").map(|a| a.mutability),
            Some(Mutability::Immutable)
        );
        assert!(resolved(&group, "userName").is_none());
        let located = user
            .locate(
                &parse_attr_path(
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                )
                .expect("valid"),
            )
            .expect("resolves");
        assert_eq!(
            located.extension.map(|e| e.id.as_str()),
            Some(ENTERPRISE_USER_SCHEMA)
        );
        assert_eq!(located.attr.name, "manager");
        assert_eq!(located.leaf().name, "value");
    }

    #[test]
    fn characteristics_follow_rfc_7643() {
        let user = ResourceSchema::user();
        let get = |path: &str| resolved(&user, path).cloned().expect("known attribute");
        let user_name = get("userName");
        assert!(user_name.required && !user_name.case_exact);
        assert_eq!(user_name.uniqueness, Uniqueness::Server);
        assert_eq!(user_name.returned, Returned::Default);
        let password = get("password");
        assert_eq!(
            (password.mutability, password.returned),
            (Mutability::WriteOnly, Returned::Never)
        );
        let id = get("id");
        assert!(id.case_exact);
        assert_eq!(
            (id.mutability, id.returned),
            (Mutability::ReadOnly, Returned::Always)
        );
        assert!(get("externalId").case_exact);
        let groups = get("groups");
        assert_eq!(groups.mutability, Mutability::ReadOnly);
        assert!(groups
            .sub_attributes
            .iter()
            .all(|s| s.mutability == Mutability::ReadOnly));
        assert_eq!(get("meta.created").attr_type, AttrType::DateTime);
        assert_eq!(get("meta.created").mutability, Mutability::ReadOnly);
        assert_eq!(get("x509Certificates.value").attr_type, AttrType::Binary);
        assert_eq!(get("photos.value").reference_types, ["external"]);
        assert_eq!(
            get("emails.type").canonical_values,
            ["work", "home", "other"]
        );
        assert_eq!(get("active").attr_type, AttrType::Boolean);
        let group = ResourceSchema::group();
        assert!(group
            .core
            .attribute("displayName")
            .is_some_and(|a| a.required));
        let member_type = resolved(&group, "members.type").cloned().expect("known");
        assert_eq!(member_type.canonical_values, ["User", "Group"]);
        assert_eq!(
            resolved(&group, "members.$ref").map(|a| a.reference_types.clone()),
            Some(vec!["User".to_owned(), "Group".to_owned()])
        );
    }

    #[test]
    fn renders_schema_resources() {
        let user = ResourceSchema::user();
        let rendered = user.core.to_json("https://bridge.example/scim/v2/");
        assert_eq!(rendered["id"], USER_SCHEMA);
        assert_eq!(rendered["schemas"], json!([SCHEMA_SCHEMA]));
        assert_eq!(rendered["name"], "User");
        assert_eq!(
            rendered["meta"],
            json!({
                "resourceType": "Schema",
                "location": format!("https://bridge.example/scim/v2/Schemas/{USER_SCHEMA}"),
            })
        );
        let first = &rendered["attributes"][0];
        assert_eq!(
            first,
            &json!({
                "name": "userName", "type": "string", "multiValued": false,
                "description": first["description"], "required": true, "caseExact": false,
                "mutability": "readWrite", "returned": "default", "uniqueness": "server"
            })
        );
        let name = &rendered["attributes"][1];
        assert_eq!(name["type"], "complex");
        assert_eq!(name["subAttributes"][2]["name"], "givenName");
        let profile = &rendered["attributes"][4];
        assert_eq!(profile["referenceTypes"], json!(["external"]));
        let emails = &rendered["attributes"][12];
        assert_eq!(emails["multiValued"], true);
        assert_eq!(
            emails["subAttributes"][2]["canonicalValues"],
            json!(["work", "home", "other"])
        );
        assert!(emails.get("referenceTypes").is_none());
        let names: Vec<&str> = rendered["attributes"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            !names.contains(&"id"),
            "common attributes are not part of the schema"
        );
    }

    #[test]
    fn renders_resource_types() {
        assert_eq!(
            ResourceSchema::user().resource_type_json("https://b.example/scim/v2"),
            json!({
                "schemas": [RESOURCE_TYPE_SCHEMA],
                "id": "User",
                "name": "User",
                "endpoint": "/Users",
                "description": "User Account",
                "schema": USER_SCHEMA,
                "schemaExtensions": [{"schema": ENTERPRISE_USER_SCHEMA, "required": false}],
                "meta": {"resourceType": "ResourceType", "location": "https://b.example/scim/v2/ResourceTypes/User"}
            })
        );
        let group = ResourceSchema::group().resource_type_json("https://b.example/scim/v2");
        assert_eq!(group["endpoint"], "/Groups");
        assert_eq!(group["schema"], GROUP_SCHEMA);
        assert_eq!(group["schemaExtensions"], json!([]));
    }
}
