//! `scim-bridge mappings check | preview | diff`: what an admin runs before a mapping ships.
//! Plain functions that write a report and say whether all was well; `cli.rs` wires them up.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::clock::SystemClock;
use crate::ledger::{Db, DbOptions, ResourceKind};
use crate::mapping::spec::Policy;
use crate::mapping::transforms::{as_bool, quote};
use crate::mapping::{
    load_file, mapping_files, Event, FieldWarning, Location, Mapping, MappingError, MappingSet,
    MappingWarning, Render, Scoping,
};
use crate::scim::service::ScimService;
use crate::targets::{TargetSchema, VENDORS};

/// Users read from the store per page in `mappings diff`.
const DIFF_PAGE: u64 = 500;
/// Users named per target among those entering or leaving its scope.
const SHOWN_SAMPLES: usize = 5;
/// Distinct value changes shown per field in the diff summary.
const SHOWN_CHANGES: usize = 3;

/// The schema of every built-in vendor, keyed by vendor name, which is also the default target
/// name and so the stem of its mapping file.
pub fn builtin_schemas() -> BTreeMap<String, TargetSchema> {
    VENDORS
        .iter()
        .map(|vendor| (vendor.kind.to_owned(), (vendor.schema)()))
        .collect()
}

/// `mappings check`: validates every mapping file in `dir`, printing each problem with its
/// location and a hint, then each warning the same way. `Ok(false)` when any file has a
/// problem (exit status 1); warnings alone do not fail it.
pub fn check(dir: &Path, out: &mut impl Write) -> Result<bool, MappingError> {
    let schemas = builtin_schemas();
    let files = mapping_files(dir)?;
    let mut failed = 0;
    let mut problems = 0;
    let mut warned = 0;
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
                warned += mapping.warnings().len();
                print_warnings(mapping.warnings(), out);
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
    let summary = match warned {
        0 => summary,
        n => format!("{summary}; {n} {}", plural(n as u64, "warning")),
    };
    writeln(out, summary);
    Ok(!files.is_empty() && failed == 0)
}

/// Prints errors the way compilers do: location, message, the line with the spot underlined,
/// and the hint.
pub(crate) fn print_errors(errors: &[MappingError], out: &mut impl Write) {
    for error in errors {
        match error.location() {
            Some(at) => print_located("error", at, &error.headline(), error.hint(), out),
            None => writeln(out, format!("error: {error}")),
        }
    }
}

/// Prints warnings like errors, labelled as warnings.
pub(crate) fn print_warnings(warnings: &[MappingWarning], out: &mut impl Write) {
    for warning in warnings {
        print_located(
            "warning",
            &warning.at,
            &warning.message,
            warning.hint.as_deref(),
            out,
        );
    }
}

fn print_located(
    label: &str,
    at: &Location,
    message: &str,
    hint: Option<&str>,
    out: &mut impl Write,
) {
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
    writeln(out, format!("{at}: {label}: {message}"));
    writeln(out, format!("{gutter} |"));
    writeln(out, format!("{} | {}", at.line, at.line_text));
    writeln(out, format!("{gutter} | {underline}"));
    if let Some(hint) = hint {
        writeln(out, format!("{gutter} = hint: {hint}"));
    }
    writeln(out, String::new());
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
    let mut all_sent = true;
    for mapping in mappings {
        all_sent &= preview_one(mapping, user, out);
    }
    Ok(all_sent)
}

/// Whether the target takes the user, and why not when it does not.
fn scope_line(mapping: &Mapping, user: &Value) -> String {
    match (mapping.scope_filter(), mapping.scope_miss(user)) {
        (None, _) => "scope: everyone (the file has no [scope])".to_owned(),
        (Some(filter), None) => format!("scope: in (matches [scope] filter '{filter}')"),
        (Some(_), Some(why)) => format!(
            "scope: out, {why}. Not created here; an account the target already holds for the \
             user gets what [deprovision] out_of_scope says"
        ),
    }
}

/// One target's part of `mappings preview`: the operation and body `mapping` gives `user`,
/// write-only values redacted, or why nothing would be sent. `false` when it is rejected.
pub(crate) fn preview_one(mapping: &Mapping, user: &Value, out: &mut impl Write) -> bool {
    let (event, why) = event_for(user);
    let mut sent = true;
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
    writeln(out, scope_line(mapping, user));
    let regions = mapping.phone_regions(user);
    match mapping.render(user, event) {
        Render::Send {
            operation,
            payload,
            create_only,
            unmanaged,
            password_field,
            hash,
            warnings,
        } => {
            writeln(out, format!("operation: {}", operation.as_str()));
            if !create_only.is_empty() {
                writeln(
                    out,
                    format!("sent on create only: {}", create_only.join(", ")),
                );
            }
            if !unmanaged.is_empty() {
                writeln(
                    out,
                    format!(
                        "never written to an adopted account: {}",
                        unmanaged.join(", ")
                    ),
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
                    Value::String("<redacted: the SCIM password, if the IdP sent one>".to_owned()),
                );
            }
            for line in regions {
                writeln(out, line);
            }
            for warning in &warnings {
                writeln(
                    out,
                    format!("warning: '{}' left out: {}", warning.field, warning.reason),
                );
            }
            writeln(out, format!("payload hash: {}", short(&hash)));
            writeln(out, pretty(&Value::Object(body)));
        }
        Render::Skip { reason } => writeln(out, format!("skipped: {reason}")),
        Render::Rejected { reason } => {
            sent = false;
            for line in regions {
                writeln(out, line);
            }
            writeln(out, format!("rejected: {reason}"));
        }
    }
    writeln(out, String::new());
    sent
}

/// `mappings diff`: for every user in the store at `db`, what each target would be sent if
/// the mappings in `against` replaced those in `current`. Prints a summary per target and
/// field ("kibo: 312 users, field localeCode: 'en' -> 'en-US'"), the users entering and
/// leaving each target's scope, and, with `verbose`, every changed user. Users out of scope
/// under both are not compared: their target is sent nothing new. `Ok(false)` when either set
/// of mappings is invalid.
pub async fn diff(
    current: &Path,
    against: &Path,
    db: &Path,
    verbose: bool,
    out: &mut impl Write,
) -> Result<bool, MappingError> {
    let schemas = builtin_schemas();
    let mut sets = Vec::new();
    for dir in [current, against] {
        match MappingSet::load_dir(dir, &schemas) {
            Ok(set) => sets.push(set),
            Err(errors) => {
                print_errors(&errors, out);
                writeln(
                    out,
                    format!(
                        "the mappings in {} have problems; fix them first",
                        dir.display()
                    ),
                );
                return Ok(false);
            }
        }
    }
    let (old, new) = (&sets[0], &sets[1]);
    if !db.exists() {
        return Err(MappingError::Store(format!(
            "no database at {}",
            db.display()
        )));
    }
    let store = Db::open(&DbOptions {
        path: db.to_owned(),
        readers: 1,
    })
    .map_err(|error| MappingError::Store(error.to_string()))?;
    let service = ScimService::new(store, Arc::new(SystemClock), None);
    let report = diff_users(old, new, &service, if verbose { usize::MAX } else { 0 }).await?;

    writeln(
        out,
        format!(
            "{} users in {}; {} compared with {}",
            report.users,
            db.display(),
            against.display(),
            current.display()
        ),
    );
    for (target, found) in &report.targets {
        let omitted = &found.omissions;
        if found.changed() == 0 {
            writeln(out, format!("{target}: no change"));
            omitted.print(target, out);
            continue;
        }
        writeln(
            out,
            format!(
                "{target}: {} of {} users would change",
                found.changed(),
                report.users
            ),
        );
        if found.entering.users > 0 {
            writeln(
                out,
                format!(
                    "{target}: {} {} would enter scope: {}",
                    found.entering.users,
                    plural(found.entering.users, "user"),
                    found.entering.listed()
                ),
            );
        }
        if found.leaving.users > 0 {
            let policy = new
                .get(target.as_str())
                .map_or(Policy::Disable, Mapping::out_of_scope);
            let effect = match policy {
                Policy::Disable => format!("disabled where {target} holds an account"),
                Policy::Delete => format!("deleted where {target} holds an account"),
                Policy::Ignore => "their accounts left as they are".to_owned(),
            };
            writeln(
                out,
                format!(
                    "{target}: {} {} would leave scope: {} (out_of_scope = \"{}\": {effect})",
                    found.leaving.users,
                    plural(found.leaving.users, "user"),
                    found.leaving.listed(),
                    policy.as_str()
                ),
            );
        }
        for (what, transitions) in &found.by_field {
            let count: u64 = transitions.values().sum();
            let ranked = ranked(transitions);
            let mut shown: Vec<String> = ranked
                .iter()
                .take(SHOWN_CHANGES)
                .map(|(transition, n)| {
                    if ranked.len() == 1 {
                        (*transition).to_owned()
                    } else {
                        format!("{transition} ({n})")
                    }
                })
                .collect();
            if ranked.len() > SHOWN_CHANGES {
                shown.push(format!(
                    "and {} other changes",
                    ranked.len() - SHOWN_CHANGES
                ));
            }
            writeln(
                out,
                format!(
                    "{target}: {count} {}, {what}: {}",
                    plural(count, "user"),
                    shown.join(", ")
                ),
            );
        }
        omitted.print(target, out);
        for line in &found.per_user {
            writeln(out, format!("  {line}"));
        }
    }
    Ok(true)
}

/// What a mapping change does to the stored users: `mappings diff` prints it, the console
/// shows it before an admin applies a change.
#[derive(Debug, Default)]
pub(crate) struct DiffReport {
    pub users: u64,
    /// Every target either set maps, including those with no change.
    pub targets: BTreeMap<String, TargetChanges>,
}

/// Transitions of one field, the most frequent first.
pub(crate) fn ranked(transitions: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let mut ranked: Vec<(&str, u64)> = transitions
        .iter()
        .map(|(transition, n)| (transition.as_str(), *n))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
}

/// Renders every stored user through `old` and `new` and gathers, per target and field, how
/// many users would be sent something else; `per_user` lines are kept for at most
/// `per_user_limit` changed users per target.
pub(crate) async fn diff_users(
    old: &MappingSet,
    new: &MappingSet,
    service: &ScimService,
    per_user_limit: usize,
) -> Result<DiffReport, MappingError> {
    let report = diff_users_told(old, new, service, per_user_limit, &|_, _| true).await?;
    Ok(report.unwrap_or_default())
}

/// `diff_users`, telling `go_on` after each page how many users it has scanned of how many
/// are stored; its `false` stops the diff (`None`), so a long one can be cancelled.
pub(crate) async fn diff_users_told(
    old: &MappingSet,
    new: &MappingSet,
    service: &ScimService,
    per_user_limit: usize,
    go_on: &(dyn Fn(u64, u64) -> bool + Sync),
) -> Result<Option<DiffReport>, MappingError> {
    let targets: BTreeSet<&str> = old.iter().chain(new.iter()).map(Mapping::target).collect();
    let mut report = DiffReport {
        users: 0,
        targets: targets
            .iter()
            .map(|target| ((*target).to_owned(), TargetChanges::default()))
            .collect(),
    };
    let mut after = 0;
    loop {
        let page = service
            .scan(ResourceKind::User, after, DIFF_PAGE)
            .await
            .map_err(|error| MappingError::Store(error.to_string()))?;
        if page.resources.is_empty() {
            break;
        }
        if !go_on(report.users, page.total_results) {
            return Ok(None);
        }
        after = page.next;
        for user in &page.resources {
            report.users += 1;
            let (event, _) = event_for(&user.value);
            for (target, entry) in report.targets.iter_mut() {
                let (was, is) = (old.get(target.as_str()), new.get(target.as_str()));
                let scoping = (
                    was.map(|m| m.scoping(&user.value)),
                    is.map(|m| m.scoping(&user.value)),
                );
                match scoping {
                    (Some(Scoping::Out), Some(Scoping::In)) => {
                        // Sent in full from now on, so what it is sent without counts.
                        if let Some(Render::Send { warnings, .. }) =
                            is.map(|m| m.render(&user.value, event))
                        {
                            entry.omissions.count(&warnings);
                        }
                        entry.entering.add(&user.value);
                        if entry.per_user.len() < per_user_limit {
                            entry.per_user.push(format!(
                                "{} ({}): enters scope",
                                user_label(&user.value),
                                user.id
                            ));
                        }
                        continue;
                    }
                    (Some(Scoping::In), Some(Scoping::Out)) => {
                        entry.leaving.add(&user.value);
                        if entry.per_user.len() < per_user_limit {
                            let why = is.and_then(|m| m.scope_miss(&user.value));
                            entry.per_user.push(format!(
                                "{} ({}): leaves scope ({})",
                                user_label(&user.value),
                                user.id,
                                why.unwrap_or_default()
                            ));
                        }
                        continue;
                    }
                    // Out of scope either way: the target is sent nothing new for the user.
                    (Some(Scoping::Out), Some(Scoping::Out)) => continue,
                    _ => {}
                }
                let before = was.map(|m| m.render(&user.value, event));
                let after = is.map(|m| m.render(&user.value, event));
                if let Some(Render::Send { warnings, .. }) = &after {
                    entry.omissions.count(warnings);
                }
                let mut found = compare(before.as_ref(), after.as_ref());
                if let (Some(old), Some(new)) = (old.get(target), new.get(target)) {
                    mark_region_changes(&mut found, old, new);
                }
                if found.is_empty() {
                    continue;
                }
                entry.users += 1;
                if entry.per_user.len() < per_user_limit {
                    entry.per_user.push(format!(
                        "{} ({}): {}",
                        user_label(&user.value),
                        user.id,
                        found
                            .iter()
                            .map(Change::describe)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
                for change in found {
                    *entry
                        .by_field
                        .entry(change.what)
                        .or_default()
                        .entry(change.transition)
                        .or_default() += 1;
                }
            }
        }
    }
    go_on(report.users, report.users);
    Ok(Some(report))
}

/// The fields the new mappings leave out for one target, gathered over all users.
#[derive(Debug, Default)]
pub(crate) struct TargetOmissions {
    /// field -> (users, the first reason seen).
    pub by_field: BTreeMap<String, (u64, String)>,
}

impl TargetOmissions {
    fn count(&mut self, warnings: &[FieldWarning]) {
        for warning in warnings {
            let entry = self
                .by_field
                .entry(warning.field.clone())
                .or_insert_with(|| (0, warning.reason.clone()));
            entry.0 += 1;
        }
    }

    fn print(&self, target: &str, out: &mut impl Write) {
        for (field, (count, example)) in &self.by_field {
            writeln(
                out,
                format!(
                    "{target}: {count} {} sent without {field}, e.g. {example}",
                    plural(*count, "user")
                ),
            );
        }
    }
}

/// Marks the changes of fields that the new mapping reads in each user's own phone region and
/// the old one did not, so an admin sees which changes the region rules make.
fn mark_region_changes(found: &mut [Change], old: &Mapping, new: &Mapping) {
    for change in found {
        let Some(field) = change.what.strip_prefix("field ") else {
            continue;
        };
        if new.reads_user_region(field) && !old.reads_user_region(field) {
            change.what = format!("{} (phone region now the user's)", change.what);
        }
    }
}

/// What changes for one target, gathered over all users.
#[derive(Debug, Default)]
pub(crate) struct TargetChanges {
    /// Users who would be sent something else.
    pub users: u64,
    /// "field localeCode" -> "'en' -> 'en-US'" -> how many users.
    pub by_field: BTreeMap<String, BTreeMap<String, u64>>,
    /// "name (id): what changes", for the first changed users.
    pub per_user: Vec<String>,
    /// The fields the new mapping leaves out for some users.
    pub omissions: TargetOmissions,
    pub entering: Crossing,
    pub leaving: Crossing,
}

impl TargetChanges {
    /// Users sent something else, entering or leaving scope included.
    pub(crate) fn changed(&self) -> u64 {
        self.users + self.entering.users + self.leaving.users
    }
}

/// Users crossing a target's scope one way: how many, and the first few by name.
#[derive(Debug, Default)]
pub(crate) struct Crossing {
    pub users: u64,
    pub samples: Vec<String>,
}

impl Crossing {
    fn add(&mut self, user: &Value) {
        self.users += 1;
        if self.samples.len() < SHOWN_SAMPLES {
            self.samples.push(user_label(user));
        }
    }

    pub(crate) fn listed(&self) -> String {
        let more = self.users - self.samples.len() as u64;
        match more {
            0 => self.samples.join(", "),
            _ => format!("{} and {more} more", self.samples.join(", ")),
        }
    }
}

/// One difference for one user: what changed ("field x", "operation", "outcome") and how.
struct Change {
    what: String,
    transition: String,
}

impl Change {
    fn describe(&self) -> String {
        format!("{} {}", self.what, self.transition)
    }
}

/// The differences between two renders of one user for one target; `None` is a target the
/// mapping set has no file for.
fn compare(before: Option<&Render>, after: Option<&Render>) -> Vec<Change> {
    let change = |what: &str, from: String, to: String| Change {
        what: what.to_owned(),
        transition: format!("{from} -> {to}"),
    };
    match (before, after) {
        (
            Some(Render::Send {
                operation: old_op,
                payload: old,
                ..
            }),
            Some(Render::Send {
                operation: new_op,
                payload: new,
                ..
            }),
        ) => {
            let mut found = Vec::new();
            if old_op != new_op {
                found.push(change(
                    "operation",
                    old_op.as_str().to_owned(),
                    new_op.as_str().to_owned(),
                ));
            }
            let fields: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
            for field in fields {
                let (a, b) = (old.get(field), new.get(field));
                if a != b {
                    found.push(change(&format!("field {field}"), shown(a), shown(b)));
                }
            }
            found
        }
        // A skip names the file that decided it; moving the file changes nothing.
        (Some(Render::Skip { .. }), Some(Render::Skip { .. })) => Vec::new(),
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![change("outcome", outcome(a), outcome(b))],
    }
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(
        || "(not sent)".to_owned(),
        |value| match value {
            Value::Array(_) | Value::Object(_) => value.to_string(),
            other => quote(other),
        },
    )
}

fn outcome(render: Option<&Render>) -> String {
    match render {
        None => "no mapping file".to_owned(),
        Some(Render::Send { operation, .. }) => format!("sent ({})", operation.as_str()),
        Some(Render::Skip { reason }) => format!("skipped ({reason})"),
        Some(Render::Rejected { reason }) => format!("rejected ({reason})"),
    }
}

fn user_label(user: &Value) -> String {
    user.get("userName")
        .and_then(Value::as_str)
        .unwrap_or("(no userName)")
        .to_owned()
}

fn plural(count: u64, word: &str) -> String {
    if count == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::clock::SystemClock;
    use crate::ledger::{Db, DbOptions};

    /// The shipped mappings, and a copy in which Kibo is sent every userName in capitals,
    /// so the diff names every user it scans in Kibo's per-user lines.
    fn shipped_and_every_user_changed(dir: &std::path::Path) -> (MappingSet, MappingSet) {
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        for file in std::fs::read_dir(&shipped).unwrap() {
            let file = file.unwrap().path();
            let mut text = std::fs::read_to_string(&file).unwrap();
            if file.file_name().unwrap() == "kibo.toml" {
                text = text.replace(
                    "userName = \"userName\"",
                    "userName = { from = \"userName\", transform = [\"upper\"] }",
                );
            }
            std::fs::write(dir.join(file.file_name().unwrap()), text).unwrap();
        }
        let schemas = builtin_schemas();
        (
            MappingSet::load_dir(&shipped, &schemas).unwrap(),
            MappingSet::load_dir(dir, &schemas).unwrap(),
        )
    }

    async fn create(service: &ScimService, name: &str) -> String {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "name": {"givenName": "Ana", "familyName": "Lima"},
            "emails": [{"value": format!("{name}@example.com"), "primary": true}],
        });
        service.create(ResourceKind::User, body).await.unwrap().id
    }

    /// The console's diff runs beside SCIM writes: between its pages users are deleted
    /// (some already scanned, one not yet) and created. Every user stored through the whole
    /// diff is scanned once, the one deleted before its page never, the new ones once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_diff_over_several_pages_scans_each_user_once_while_users_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DbOptions {
            path: dir.path().join("d.db"),
            readers: 2,
        })
        .unwrap();
        let service = ScimService::new(db, Arc::new(SystemClock), None);
        let stored = 2 * DIFF_PAGE as usize + 100;
        let mut ids = Vec::with_capacity(stored);
        for user in 0..stored {
            ids.push(create(&service, &format!("u{user:04}")).await);
        }
        let edited = tempfile::tempdir().unwrap();
        let (old, new) = shipped_and_every_user_changed(edited.path());

        // After each page is read: deletions of users before and past it, and a creation.
        let (scanned, not_yet) = (ids[10].clone(), ids[DIFF_PAGE as usize + 150].clone());
        let (later, created) = (ids[20].clone(), Mutex::new(Vec::new()));
        let pages = Mutex::new(0);
        let runtime = tokio::runtime::Handle::current();
        let go_on = |_: u64, _: u64| {
            let page = {
                let mut pages = pages.lock().unwrap();
                *pages += 1;
                *pages
            };
            let gone: Vec<&String> = match page {
                1 => vec![&scanned, &not_yet],
                2 => vec![&later],
                _ => Vec::new(),
            };
            tokio::task::block_in_place(|| {
                runtime.block_on(async {
                    for id in gone {
                        service.delete(ResourceKind::User, id, None).await.unwrap();
                    }
                    if page <= 2 {
                        let id = create(&service, &format!("new{page}")).await;
                        created.lock().unwrap().push(id);
                    }
                })
            });
            true
        };
        let report = diff_users_told(&old, &new, &service, usize::MAX, &go_on)
            .await
            .unwrap()
            .unwrap();

        let mut times: BTreeMap<String, usize> = BTreeMap::new();
        for line in &report.targets["kibo"].per_user {
            let id = line.split(" (").nth(1).unwrap().split(')').next().unwrap();
            *times.entry(id.to_owned()).or_default() += 1;
        }
        let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "scanned more than once: {twice:?}");
        let mut expected: Vec<String> = ids.into_iter().filter(|id| *id != not_yet).collect();
        expected.extend(created.into_inner().unwrap());
        expected.sort();
        let seen: Vec<String> = times.into_keys().collect();
        let missed: Vec<_> = expected.iter().filter(|id| !seen.contains(id)).collect();
        assert!(missed.is_empty(), "never scanned: {missed:?}");
        assert_eq!(seen, expected);
        assert_eq!(report.users, expected.len() as u64);
    }
}
