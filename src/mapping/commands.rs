//! `scim-bridge mappings check | preview | diff`: what an admin runs before a mapping ships.
//! Plain functions that write a report and say whether all was well; `cli.rs` wires them up.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::mapping::transforms::as_bool;
use crate::mapping::{load_file, mapping_files, Event, Mapping, MappingError, MappingSet, Render};
use crate::targets::{appgate, kibo, primavera, vikingcloud, TargetSchema};

/// The schema of every built-in vendor, keyed by vendor name, which is also the default target
/// name and so the stem of its mapping file.
pub fn builtin_schemas() -> BTreeMap<String, TargetSchema> {
    BTreeMap::from([
        ("appgate".to_owned(), appgate::payload::schema()),
        ("kibo".to_owned(), kibo::payload::schema()),
        ("primavera".to_owned(), primavera::payload::schema()),
        ("vikingcloud".to_owned(), vikingcloud::payload::schema()),
    ])
}

/// `mappings check`: validates every mapping file in `dir`, printing each problem with its
/// location and a hint. `Ok(false)` when any file has a problem (exit status 1).
pub fn check(dir: &Path, out: &mut impl Write) -> Result<bool, MappingError> {
    let schemas = builtin_schemas();
    let files = mapping_files(dir)?;
    let mut failed = 0;
    let mut problems = 0;
    for (target, path) in &files {
        match load_file(path, target, &schemas) {
            Ok(mapping) => {
                writeln(
                    out,
                    format!(
                        "{}: ok (version {})",
                        path.display(),
                        short(mapping.version())
                    ),
                );
            }
            Err(errors) => {
                failed += 1;
                problems += errors.len();
                print_errors(&errors, out);
            }
        }
    }
    let summary = match (files.len(), failed) {
        (0, _) => format!("no mapping files (*.toml) in {}", dir.display()),
        (total, 0) => format!("{total} mapping files ok"),
        (total, failed) => format!(
            "{} ok, {failed} with problems ({problems} in all)",
            total - failed
        ),
    };
    writeln(out, summary);
    Ok(!files.is_empty() && failed == 0)
}

/// Prints errors the way compilers do: location, message, the line with the spot underlined,
/// and the hint.
pub fn print_errors(errors: &[MappingError], out: &mut impl Write) {
    for error in errors {
        let Some(at) = error.location() else {
            writeln(out, format!("error: {error}"));
            continue;
        };
        let gutter = " ".repeat(at.line.to_string().len());
        let underline = format!(
            "{}{}",
            " ".repeat(at.column.saturating_sub(1)),
            "^".repeat(
                at.width
                    .min(
                        at.line_text
                            .chars()
                            .count()
                            .saturating_sub(at.column.saturating_sub(1))
                    )
                    .max(1)
            )
        );
        writeln(out, format!("{at}: error: {}", error.headline()));
        writeln(out, format!("{gutter} |"));
        writeln(out, format!("{} | {}", at.line, at.line_text));
        writeln(out, format!("{gutter} | {underline}"));
        if let Some(hint) = error.hint() {
            writeln(out, format!("{gutter} = hint: {hint}"));
        }
        writeln(out, String::new());
    }
}

/// `mappings preview`: for each target (or only `target`), the operation and the exact body
/// the target would receive for `user`, the password shown as a placeholder, or why nothing
/// would be sent. `Ok(false)` when the mappings are invalid or a target would reject the user.
pub fn preview(
    dir: &Path,
    user: &Value,
    target: Option<&str>,
    out: &mut impl Write,
) -> Result<bool, MappingError> {
    let set = match MappingSet::load_dir(dir, &builtin_schemas()) {
        Ok(set) => set,
        Err(errors) => {
            print_errors(&errors, out);
            writeln(
                out,
                "the mappings have problems; fix them first (mappings check)".to_owned(),
            );
            return Ok(false);
        }
    };
    let mappings: Vec<&Mapping> = match target {
        None => set.iter().collect(),
        Some(name) => match set.get(name) {
            Some(mapping) => vec![mapping],
            None => {
                let known: Vec<&str> = set.iter().map(Mapping::target).collect();
                writeln(
                    out,
                    format!(
                        "no mapping for target '{name}' in {}; there are: {}",
                        dir.display(),
                        known.join(", ")
                    ),
                );
                return Ok(false);
            }
        },
    };
    let (event, why) = event_for(user);
    let mut all_sent = true;
    for mapping in mappings {
        writeln(
            out,
            format!(
                "== {} ({}, version {})",
                mapping.target(),
                mapping.file().display(),
                short(mapping.version())
            ),
        );
        writeln(out, format!("event: {why}"));
        match mapping.render(user, event) {
            Render::Send {
                operation,
                payload,
                create_only,
                password_field,
                hash,
            } => {
                writeln(out, format!("operation: {}", operation.as_str()));
                if !create_only.is_empty() {
                    writeln(
                        out,
                        format!("sent on create only: {}", create_only.join(", ")),
                    );
                }
                let mut body = payload;
                for spec in mapping.schema().fields.iter().filter(|f| f.write_only) {
                    if let Some(value) = body.get_mut(spec.name) {
                        *value = Value::String("<redacted>".to_owned());
                    }
                }
                if let Some(field) = &password_field {
                    writeln(
                        out,
                        format!(
                            "password: '{field}' carries the SCIM password, sent on create and \
                             on update only when it changed"
                        ),
                    );
                    body.insert(
                        field.clone(),
                        Value::String(
                            "<redacted: the SCIM password, if the IdP sent one>".to_owned(),
                        ),
                    );
                }
                writeln(out, format!("payload hash: {}", short(&hash)));
                writeln(out, pretty(&Value::Object(body)));
            }
            Render::Skip { reason } => writeln(out, format!("skipped: {reason}")),
            Render::Rejected { reason } => {
                all_sent = false;
                writeln(out, format!("rejected: {reason}"));
            }
        }
        writeln(out, String::new());
    }
    Ok(all_sent)
}

/// The event a stored user stands for: an inactive user is one that was deactivated.
pub fn event_for(user: &Value) -> (Event, &'static str) {
    let inactive = user
        .get("active")
        .and_then(as_bool)
        .is_some_and(|active| !active);
    if inactive {
        (
            Event::Deactivated,
            "deactivated (the user has active = false)",
        )
    } else {
        (Event::Upsert, "upsert (the user is active)")
    }
}

/// The first 12 hex digits: enough to tell versions apart on screen.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Writes a report line. A report that cannot be written (a closed pipe) has nobody to tell,
/// so write errors are dropped rather than turned into mapping errors.
fn writeln(out: &mut impl Write, line: String) {
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
}
