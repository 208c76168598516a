//! User -> payload, per target: the admin-reviewed files in `mappings/`, loaded and checked
//! against each target's schema (`spec`, `check`), then rendered for every user the fan-out
//! delivers (`engine`, `transforms`). `commands` is what `scim-bridge mappings ...` runs.

mod check;
pub mod commands;
mod engine;
mod spec;
mod transforms;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::scim::schema::ResourceSchema;
use crate::targets::TargetSchema;

pub(crate) use engine::Scoping;
pub use engine::{Event, FieldWarning, Operation, Render};
pub(crate) use transforms::warm_phone_metadata;
pub use transforms::ParsedPhones;

/// A place in a mapping file, as an admin's editor counts it: 1-based line and column (in
/// characters, not bytes, so non-Latin text lines up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The whole line, to show under the message.
    pub line_text: String,
    /// How many characters from `column` on the problem covers (at least 1).
    pub width: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Everything that can go wrong in this layer. Problems found in a mapping file carry where
/// they are and a hint at the fix; loading reports all of them at once, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    Syntax {
        at: Box<Location>,
        message: String,
        hint: Option<String>,
    },
    /// The file is valid TOML but not a valid mapping: an unknown key, a malformed transform,
    /// a constant the target could never accept.
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    Invalid {
        at: Box<Location>,
        message: String,
        hint: Option<String>,
    },
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    UnknownTarget {
        at: Box<Location>,
        target: String,
        hint: Option<String>,
    },
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    UnknownTargetField {
        at: Box<Location>,
        target: String,
        field: String,
        hint: Option<String>,
    },
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    RequiredUnmapped {
        at: Box<Location>,
        target: String,
        field: String,
        hint: Option<String>,
    },
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    OutsideEnum {
        at: Box<Location>,
        field: String,
        value: String,
        allowed: String,
        hint: Option<String>,
    },
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    TypeMismatch {
        at: Box<Location>,
        context: String,
        expected: String,
        found: String,
        hint: Option<String>,
    },
    #[error("{at}: {}{}", self.headline(), hint_suffix(hint))]
    InvalidSourcePath {
        at: Box<Location>,
        path: String,
        reason: String,
        hint: Option<String>,
    },
    /// The user store could not be read (`mappings diff`).
    #[error("cannot read the user store: {0}")]
    Store(String),
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|hint| format!(" (hint: {hint})"))
        .unwrap_or_default()
}

impl MappingError {
    /// Where in a mapping file the problem is, if it is in one.
    pub(crate) fn location(&self) -> Option<&Location> {
        match self {
            MappingError::Syntax { at, .. }
            | MappingError::Invalid { at, .. }
            | MappingError::UnknownTarget { at, .. }
            | MappingError::UnknownTargetField { at, .. }
            | MappingError::RequiredUnmapped { at, .. }
            | MappingError::OutsideEnum { at, .. }
            | MappingError::TypeMismatch { at, .. }
            | MappingError::InvalidSourcePath { at, .. } => Some(at.as_ref()),
            MappingError::Read { .. } | MappingError::Store(_) => None,
        }
    }

    pub(crate) fn hint(&self) -> Option<&str> {
        match self {
            MappingError::Syntax { hint, .. }
            | MappingError::Invalid { hint, .. }
            | MappingError::UnknownTarget { hint, .. }
            | MappingError::UnknownTargetField { hint, .. }
            | MappingError::RequiredUnmapped { hint, .. }
            | MappingError::OutsideEnum { hint, .. }
            | MappingError::TypeMismatch { hint, .. }
            | MappingError::InvalidSourcePath { hint, .. } => hint.as_deref(),
            MappingError::Read { .. } | MappingError::Store(_) => None,
        }
    }

    /// The problem alone, without location and hint, for reports that show those apart.
    pub(crate) fn headline(&self) -> String {
        match self {
            MappingError::Syntax { message, .. } => format!("invalid TOML: {message}"),
            MappingError::Invalid { message, .. } => message.clone(),
            MappingError::UnknownTarget { target, .. } => {
                format!("no target is called '{target}'")
            }
            MappingError::UnknownTargetField { target, field, .. } => {
                format!("{target} has no field '{field}'")
            }
            MappingError::RequiredUnmapped { target, field, .. } => {
                format!("{target} requires '{field}', but the mapping does not set it")
            }
            MappingError::OutsideEnum {
                field,
                value,
                allowed,
                ..
            } => format!("'{field}' only accepts {allowed}, but this gives '{value}'"),
            MappingError::TypeMismatch {
                context,
                expected,
                found,
                ..
            } => format!("{context} expects {expected}, but gets {found}"),
            MappingError::InvalidSourcePath { path, reason, .. } => {
                format!("'{path}' is not a SCIM attribute path: {reason}")
            }
            MappingError::Read { .. } | MappingError::Store(_) => self.to_string(),
        }
    }
}

/// Advice about a mapping that still loads and runs: shown by `mappings check`, with its place
/// and a hint, the way errors are.
#[derive(Debug, Clone)]
pub(crate) struct MappingWarning {
    pub at: Box<Location>,
    pub message: String,
    pub hint: Option<String>,
}

/// A mapping file's text and name, to turn byte spans into locations.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Boxed, because every error carries one and errors travel by value in `Result`s.
    pub(crate) fn locate(&self, span: &Range<usize>) -> Box<Location> {
        let start = floor_char_boundary(&self.text, span.start);
        let end = floor_char_boundary(&self.text, span.end.max(start));
        let line_start = self.text[..start].rfind('\n').map_or(0, |at| at + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |at| start + at);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        // A problem spanning lines (a whole table) is underlined to the end of its first line.
        let width = self.text[start..end.min(line_end).max(start)]
            .chars()
            .count();
        Box::new(Location {
            file: self.path.clone(),
            line: self.text[..start].matches('\n').count() + 1,
            column: self.text[line_start..start].chars().count() + 1,
            line_text: line_text.to_owned(),
            width: width.max(1),
        })
    }
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// One target's mapping, validated against that target's schema and ready to render.
#[derive(Debug, Clone)]
pub struct Mapping {
    target: String,
    file: PathBuf,
    version: String,
    spec: spec::Spec,
    schema: TargetSchema,
    scim: ResourceSchema,
    warnings: Vec<MappingWarning>,
}

impl Mapping {
    /// Parses and validates the mapping `text` (read from `file`, which only names it in
    /// errors) for `target`, reporting every problem found.
    pub(crate) fn parse(
        file: &Path,
        text: &str,
        target: &str,
        schema: &TargetSchema,
    ) -> Result<Mapping, Vec<MappingError>> {
        let source = SourceFile {
            path: file.to_owned(),
            text: text.to_owned(),
        };
        let scim = ResourceSchema::user();
        let (spec, mut errors) = spec::parse(&source).map_err(|error| vec![error])?;
        errors.extend(check::check(&spec, &source, target, schema, &scim));
        // In file order, the way an admin reads and fixes them.
        errors.sort_by_key(|error| error.location().map(|at| (at.line, at.column)));
        if !errors.is_empty() {
            return Err(errors);
        }
        let warnings = check::lints(&spec, &source);
        Ok(Mapping {
            target: target.to_owned(),
            file: file.to_owned(),
            version: hex::encode(Sha256::digest(text.as_bytes())),
            spec,
            schema: schema.clone(),
            scim,
            warnings,
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Hex SHA-256 of the file's text: which mapping produced a delivered payload.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    pub(crate) fn schema(&self) -> &TargetSchema {
        &self.schema
    }

    /// Advice from `mappings check` that does not stop the mapping from loading.
    pub(crate) fn warnings(&self) -> &[MappingWarning] {
        &self.warnings
    }
}

/// The mapping of every target, keyed by target name (the file stem).
#[derive(Debug, Default)]
pub struct MappingSet {
    mappings: BTreeMap<String, Mapping>,
}

impl MappingSet {
    /// Loads every `*.toml` in `dir`; `schemas` names the targets that exist. A file whose
    /// stem names no target is an error, so a misnamed file is not silently ignored. Targets
    /// without a file are simply absent: the caller decides whether that is acceptable.
    pub fn load_dir(
        dir: &Path,
        schemas: &BTreeMap<String, TargetSchema>,
    ) -> Result<MappingSet, Vec<MappingError>> {
        let files = mapping_files(dir).map_err(|error| vec![error])?;
        let mut mappings = BTreeMap::new();
        let mut errors = Vec::new();
        for (target, path) in files {
            match load_file(&path, &target, schemas) {
                Ok(mapping) => {
                    mappings.insert(target, mapping);
                }
                Err(found) => errors.extend(found),
            }
        }
        if errors.is_empty() {
            Ok(MappingSet { mappings })
        } else {
            Err(errors)
        }
    }

    pub(crate) fn get(&self, target: &str) -> Option<&Mapping> {
        self.mappings.get(target)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.mappings.values()
    }

    /// This set with `mapping` in place of its target's: a proposed change, to compare
    /// with the set in force before it is written.
    pub(crate) fn with(&self, mapping: Mapping) -> MappingSet {
        let mut mappings: BTreeMap<String, Mapping> = self
            .mappings
            .iter()
            .filter(|(target, _)| **target != mapping.target)
            .map(|(target, m)| (target.clone(), m.clone()))
            .collect();
        mappings.insert(mapping.target.clone(), mapping);
        MappingSet { mappings }
    }
}

/// The mapping files in `dir` with their target names, sorted by name.
fn mapping_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, MappingError> {
    let read_error = |source| MappingError::Read {
        file: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) {
                files.push((stem.to_owned(), path.clone()));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn load_file(
    path: &Path,
    target: &str,
    schemas: &BTreeMap<String, TargetSchema>,
) -> Result<Mapping, Vec<MappingError>> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        vec![MappingError::Read {
            file: path.to_owned(),
            source,
        }]
    })?;
    let Some(schema) = schemas.get(target) else {
        let source = SourceFile {
            path: path.to_owned(),
            text,
        };
        let known: Vec<&str> = schemas.keys().map(String::as_str).collect();
        return Err(vec![MappingError::UnknownTarget {
            at: source.locate(&(0..0)),
            target: target.to_owned(),
            hint: Some(format!(
                "the file name names the target; known targets: {}",
                known.join(", ")
            )),
        }]);
    };
    Mapping::parse(path, &text, target, schema)
}

/// A made-up target that has one field of every kind and constraint, so the layer's unit tests
/// do not depend on any vendor's schema.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    use crate::targets::{FieldKind, FieldSpec, TargetSchema};

    use super::{Mapping, MappingError};

    pub(crate) fn schema() -> TargetSchema {
        let field = |name, kind| FieldSpec {
            name,
            kind,
            required_on_create: false,
            required_on_update: false,
            max_len: None,
            allowed: &[],
            write_only: false,
            read_only: false,
        };
        TargetSchema {
            fields: vec![
                FieldSpec {
                    required_on_create: true,
                    required_on_update: true,
                    max_len: Some(320),
                    ..field("email", FieldKind::String)
                },
                FieldSpec {
                    max_len: Some(100),
                    ..field("firstName", FieldKind::String)
                },
                FieldSpec {
                    required_on_create: true,
                    required_on_update: true,
                    max_len: Some(100),
                    ..field("lastName", FieldKind::String)
                },
                FieldSpec {
                    max_len: Some(25),
                    ..field("title", FieldKind::String)
                },
                FieldSpec {
                    allowed: &["ACTIVE", "INACTIVE"],
                    ..field("status", FieldKind::String)
                },
                FieldSpec {
                    allowed: &["en", "de", "pt_BR"],
                    ..field("userLocale", FieldKind::String)
                },
                field("mobile", FieldKind::String),
                field("countryCode", FieldKind::String),
                field("enabled", FieldKind::Boolean),
                field("tags", FieldKind::StringArray),
                field("userProducts", FieldKind::ObjectArray),
                field("userKey", FieldKind::Object),
                field("employeeNumber", FieldKind::Integer),
                FieldSpec {
                    required_on_create: true,
                    write_only: true,
                    ..field("password", FieldKind::String)
                },
                FieldSpec {
                    read_only: true,
                    ..field("userId", FieldKind::Integer)
                },
            ],
            natural_key: &["email"],
        }
    }

    pub(crate) fn load(text: &str) -> Result<Mapping, Vec<MappingError>> {
        Mapping::parse(Path::new("mappings/test.toml"), text, "test", &schema())
    }

    /// The smallest valid mapping, with `extra` lines added under `[fields]`.
    pub(crate) fn with_fields(extra: &str) -> String {
        format!(
            "[deprovision]\n\
             deactivate = \"disable\"\n\
             delete = \"delete\"\n\
             disable_sets = {{ status = \"INACTIVE\", enabled = false }}\n\
             \n\
             [fields]\n\
             email = 'emails[primary eq true].value'\n\
             lastName = \"name.familyName\"\n\
             password = \"password\"\n\
             {extra}\n"
        )
    }
}
