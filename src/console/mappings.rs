//! Mappings (`/console/mappings`): each file as in force, highlighted, with the check's
//! findings at their lines; a proposed change checked as it is typed, its diff over the
//! stored users, a preview of one user, and apply: an atomic write that keeps the previous
//! file as `<target>.toml.bak`, then the same reload as SIGHUP.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::admin::Reloader;
use crate::ledger::{Db, ResourceKind};
use crate::mapping::commands::{preview_one, ranked, DiffReport};
use crate::mapping::Mapping;
use crate::scim::service::Resource;

use super::diffjob::{DiffJob, Ended};
use super::highlight;
use super::layout::{self, Nav};
use super::overview::{query_value, see_other};
use super::session::Admin;
use super::{Console, ConsoleError};

/// Value changes shown per field in a diff.
const SHOWN_CHANGES: usize = 3;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/mappings", web::get().to(list))
        .route("/mappings/{target}", web::get().to(show))
        .route("/mappings/{target}/check", web::post().to(check))
        .route("/mappings/{target}/diff", web::post().to(diff))
        .route("/mappings/{target}/diff/{job}", web::get().to(diff_job))
        .route(
            "/mappings/{target}/diff/{job}/status",
            web::get().to(diff_status),
        )
        .route(
            "/mappings/{target}/diff/{job}/cancel",
            web::post().to(cancel_diff),
        )
        .route("/mappings/{target}/preview", web::post().to(preview))
        .route("/mappings/{target}/apply", web::post().to(apply));
}

/// One finding of the check, at its place in the file.
struct Mark {
    line: usize,
    column: usize,
    warning: bool,
    message: String,
    hint: Option<String>,
}

/// A mapping text checked for one target: the mapping if it loads, and every finding.
struct Checked {
    mapping: Option<Mapping>,
    marks: Vec<Mark>,
}

/// The file of a target's mapping in force, its text on disk and that text's hash.
struct InForce {
    file: PathBuf,
    version: String,
    text: String,
    base: String,
}

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Console {
    fn in_force(&self, target: &str) -> Result<InForce, ConsoleError> {
        let mappings = self.planner.mappings();
        let mapping = mappings.get(target).ok_or_else(|| {
            ConsoleError::NotFound(format!(
                "no mapping named {target} is in force; there are: {}",
                mappings
                    .iter()
                    .map(Mapping::target)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let file = mapping.file().to_owned();
        let text = std::fs::read_to_string(&file).map_err(ConsoleError::Write)?;
        Ok(InForce {
            base: hash(&text),
            version: mapping.version().to_owned(),
            file,
            text,
        })
    }

    /// `mappings check` for one text: the same parse and checks the loader runs.
    fn check(&self, target: &str, file: &Path, text: &str) -> Result<Checked, ConsoleError> {
        let schema = self
            .schemas
            .get(target)
            .ok_or_else(|| ConsoleError::NotFound(format!("no target named {target}")))?;
        Ok(match Mapping::parse(file, text, target, schema) {
            Ok(mapping) => Checked {
                marks: mapping
                    .warnings()
                    .iter()
                    .map(|w| Mark {
                        line: w.at.line,
                        column: w.at.column,
                        warning: true,
                        message: w.message.clone(),
                        hint: w.hint.clone(),
                    })
                    .collect(),
                mapping: Some(mapping),
            },
            Err(errors) => Checked {
                mapping: None,
                marks: errors
                    .iter()
                    .map(|e| {
                        let (line, column) = e.location().map_or((1, 1), |at| (at.line, at.column));
                        Mark {
                            line,
                            column,
                            warning: false,
                            message: e.headline(),
                            hint: e.hint().map(str::to_owned),
                        }
                    })
                    .collect(),
            },
        })
    }
}

async fn list(admin: Admin, console: web::Data<Console>) -> Result<HttpResponse, ConsoleError> {
    let mappings = console.planner.mappings();
    let mut rows = Vec::new();
    for mapping in mappings.iter() {
        let on_disk = std::fs::read_to_string(mapping.file()).ok();
        let changed = on_disk.as_deref().map(hash).as_deref() != Some(mapping.version());
        rows.push((mapping, changed));
    }
    let body = html! {
        p.hint { "Each target's mapping file as the bridge runs it. Open one to read it with the check's findings, or to propose a change." }
        table {
            thead { tr { th { "Target" } th { "File" } th { "Version in force" } th { "Warnings" } th {} } }
            tbody {
                @for (mapping, changed) in &rows {
                    tr {
                        td { a href=(format!("/console/mappings/{}", mapping.target())) { strong { (mapping.target()) } } }
                        td { code { (mapping.file().display()) } }
                        td { code { (layout::short(mapping.version())) } }
                        td.num { (mapping.warnings().len()) }
                        td { @if *changed { span.state.pending { "file on disk differs" } } }
                    }
                }
            }
        }
    };
    Ok(layout::page("Mappings", &admin, Nav::Mappings, body))
}

/// The file, numbered and highlighted, with each finding under its line.
fn listing(text: &str, marks: &[Mark]) -> Markup {
    let mut open = None;
    html! {
        ol.code {
            @for (index, line) in text.lines().enumerate() {
                @let number = index + 1;
                @let here: Vec<&Mark> = marks.iter().filter(|m| m.line == number).collect();
                @let class = if here.iter().any(|m| !m.warning) { "has-error" } else if here.is_empty() { "" } else { "has-warning" };
                li id=(format!("L{number}")) class=(class) {
                    span.ln { (number) }
                    (highlight::line(line, &mut open))
                    @for mark in here {
                        div.mark.warning[mark.warning] {
                            @if mark.warning { "warning" } @else { "error" }
                            " at line " (mark.line) ", column " (mark.column) ": " (mark.message)
                            @if let Some(hint) = &mark.hint { " (hint: " (hint) ")" }
                        }
                    }
                }
            }
        }
    }
}

/// The check's verdict and the proposed text with its findings: what `#check` shows.
fn check_result(checked: &Checked, text: &str) -> Markup {
    let errors = checked.marks.iter().filter(|m| !m.warning).count();
    let warnings = checked.marks.len() - errors;
    html! {
        @if errors == 0 {
            p.check-ok { "Check passed" @if warnings > 0 { " with " (warnings) " warning(s)" } "." }
        } @else {
            p.check-bad { (errors) " error(s): the change cannot be applied until they are fixed." }
            ul.errors {
                @for mark in checked.marks.iter().filter(|m| !m.warning) {
                    li { a href=(format!("#L{}", mark.line)) { "line " (mark.line) } ": " (mark.message) }
                }
            }
        }
        (listing(text, &checked.marks))
    }
}

#[derive(Deserialize)]
struct Proposal {
    csrf: String,
    text: String,
    /// The hash of the file on disk the proposal started from.
    base: String,
    #[serde(default)]
    user: String,
}

/// What the proposal form holds.
struct Draft<'a> {
    text: &'a str,
    base: &'a str,
    user: &'a str,
}

/// The edit page: the file in force, the proposal form, and what the last action found.
fn edit_page(
    admin: &Admin,
    target: &str,
    in_force: &InForce,
    in_force_check: &Checked,
    draft: Draft<'_>,
    results: Markup,
) -> Markup {
    let on_disk_differs = in_force.base != in_force.version;
    html! {
        p {
            code { (in_force.file.display()) } " · version in force " code { (layout::short(&in_force.version)) }
            @if on_disk_differs { " " span.state.pending { "the file on disk differs from the one in force" } }
        }
        details open[draft.text == in_force.text] {
            summary { "The file " @if on_disk_differs { "on disk" } @else { "in force" } ", with the check's findings" }
            (listing(&in_force.text, &in_force_check.marks))
        }
        h2 #propose { "Propose a change" }
        form #proposal method="post" action=(format!("/console/mappings/{target}/check")) {
            input type="hidden" name="csrf" value=(admin.csrf);
            input type="hidden" name="base" value=(draft.base);
            textarea.editor name="text" spellcheck="false" aria-label="Proposed mapping"
                hx-post=(format!("/console/mappings/{target}/check")) hx-trigger="input changed delay:400ms"
                hx-target="#check" hx-swap="innerHTML" hx-include="closest form" { (draft.text) }
            div.actions {
                button type="submit" formaction=(format!("/console/mappings/{target}/check")) { "Check" }
                button type="submit" formaction=(format!("/console/mappings/{target}/diff")) { "Diff over stored users" }
                input type="text" name="user" value=(draft.user) placeholder="userName or id" aria-label="User to preview";
                button.secondary type="submit" formaction=(format!("/console/mappings/{target}/preview")) { "Preview user" }
                button.danger type="submit" formaction=(format!("/console/mappings/{target}/apply")) { "Apply and reload" }
            }
        }
        div #results { (results) }
    }
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn show(
    admin: Admin,
    console: web::Data<Console>,
    target: web::Path<String>,
    notice: web::Query<Notice>,
) -> Result<HttpResponse, ConsoleError> {
    let in_force = console.in_force(&target)?;
    let checked = console.check(&target, &in_force.file, &in_force.text)?;
    let body = html! {
        (layout::notice(notice.done.as_deref()))
        (edit_page(&admin, &target, &in_force, &checked,
            Draft { text: &in_force.text, base: &in_force.base, user: "" },
            html! { div #check {} }))
    };
    Ok(layout::page(
        &format!("Mapping: {target}"),
        &admin,
        Nav::Mappings,
        body,
    ))
}

/// The page after a proposal action, with `results` under the form.
fn proposal_page(
    admin: &Admin,
    console: &Console,
    target: &str,
    form: &Proposal,
    status: StatusCode,
    results: Markup,
) -> Result<HttpResponse, ConsoleError> {
    let in_force = console.in_force(target)?;
    let in_force_check = console.check(target, &in_force.file, &in_force.text)?;
    let body = edit_page(
        admin,
        target,
        &in_force,
        &in_force_check,
        Draft {
            text: &form.text,
            base: &form.base,
            user: &form.user,
        },
        results,
    );
    let mut response = layout::page(&format!("Mapping: {target}"), admin, Nav::Mappings, body);
    *response.status_mut() = status;
    Ok(response)
}

async fn check(
    req: HttpRequest,
    admin: Admin,
    console: web::Data<Console>,
    target: web::Path<String>,
    form: web::Form<Proposal>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let in_force = console.in_force(&target)?;
    let checked = console.check(&target, &in_force.file, &form.text)?;
    let result = check_result(&checked, &form.text);
    if req.headers().contains_key("HX-Request") {
        return Ok(layout::html_response(StatusCode::OK, result));
    }
    proposal_page(
        &admin,
        &console,
        &target,
        &form,
        StatusCode::OK,
        html! { div #check { (result) } },
    )
}

fn render_diff(target: &str, report: &DiffReport) -> Markup {
    html! {
        h2 { "What this change does to the " (report.users) " stored users" }
        @for (name, changes) in &report.targets {
            @if changes.changed() > 0 || name == target {
                section.card {
                    h3 { (name) ": " (changes.changed()) " of " (report.users) " users would change" }
                    @if changes.entering.users > 0 {
                        p { (changes.entering.users) " would enter scope: " (changes.entering.listed()) }
                    }
                    @if changes.leaving.users > 0 {
                        p { (changes.leaving.users) " would leave scope: " (changes.leaving.listed()) }
                    }
                    @if !changes.by_field.is_empty() {
                        table {
                            thead { tr { th { "What" } th.num { "Users" } th { "Before → after (users)" } } }
                            tbody {
                                @for (what, transitions) in &changes.by_field {
                                    @let ranked = ranked(transitions);
                                    tr {
                                        td { code { (what) } }
                                        td.num { (transitions.values().sum::<u64>()) }
                                        td {
                                            @for (transition, count) in ranked.iter().take(SHOWN_CHANGES) {
                                                div.field-diff { code { (transition) } " (" (count) ")" }
                                            }
                                            @if ranked.len() > SHOWN_CHANGES {
                                                div.muted { "and " (ranked.len() - SHOWN_CHANGES) " other changes" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @for (field, (count, example)) in &changes.omissions.by_field {
                        p.muted { (count) " user(s) sent without " code { (field) } ", e.g. " (example) }
                    }
                    @if !changes.per_user.is_empty() {
                        h3 { "Samples" }
                        ul { @for line in &changes.per_user { li { code { (line) } } } }
                    }
                }
            }
        }
    }
}

async fn diff(
    admin: Admin,
    console: web::Data<Console>,
    target: web::Path<String>,
    form: web::Form<Proposal>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let in_force = console.in_force(&target)?;
    let checked = console.check(&target, &in_force.file, &form.text)?;
    let Some(proposed) = checked.mapping else {
        let result = check_result(&checked, &form.text);
        return proposal_page(
            &admin,
            &console,
            &target,
            &form,
            StatusCode::BAD_REQUEST,
            html! { div #check { (result) } },
        );
    };
    let current = console.planner.mappings();
    let next = current.with(proposed);
    let job = console.diffs.start(
        &target,
        &form.text,
        &form.base,
        Arc::clone(&current),
        next,
        console.service.clone(),
    );
    tracing::info!(client = %admin.client, target_name = %target, job = job.id, "console: mapping diff started");
    Ok(see_other(&job_path(&job)))
}

fn job_path(job: &DiffJob) -> String {
    format!("/console/mappings/{}/diff/{}", job.target, job.id)
}

/// The job `{target}/diff/{job}` names, or a 404 saying it is gone.
fn find_job(console: &Console, target: &str, id: u64) -> Result<Arc<DiffJob>, ConsoleError> {
    console
        .diffs
        .get(id)
        .filter(|job| job.target == target)
        .ok_or_else(|| {
            ConsoleError::NotFound(format!(
                "no diff {id} of {target}: it ended long ago or never ran; start it again"
            ))
        })
}

/// A job as the page shows it: the diff once done, else its progress, which asks htmx to
/// ask again in a second (a link does where there is no script).
fn job_status(admin: &Admin, console: &Console, job: &DiffJob) -> Markup {
    let (scanned, total) = job.progress();
    let ended = job.ended();
    let elapsed = |until: i64| layout::span((until - job.started_at).max(0));
    match &*ended {
        Some((at, Ended::Done(report))) => html! {
            div #diff-job {
                div #check { p.check-ok { "Check passed." } }
                p.muted { "Scanned " (report.users) " users in " (elapsed(*at)) "." }
                (render_diff(&job.target, report))
            }
        },
        Some((at, Ended::Cancelled)) => html! {
            div #diff-job {
                p.problem { "Cancelled after " (scanned) " of " (total) " users, " (elapsed(*at)) "." }
            }
        },
        Some((_, Ended::Failed(reason))) => html! {
            div #diff-job { p.problem { "The diff failed: " (reason) } }
        },
        None => html! {
            div #diff-job hx-get=(format!("{}/status", job_path(job))) hx-trigger="every 1s" hx-swap="outerHTML" {
                p role="status" {
                    "Diff over the stored users: "
                    @if total == 0 { "counting them" } @else { strong { (scanned) } " of " (total) " users scanned" }
                    ", " (elapsed(console.diffs.now())) " elapsed."
                }
                progress max=(total.max(1)) value=(scanned) {}
                form.inline method="post" action=(format!("{}/cancel", job_path(job))) {
                    input type="hidden" name="csrf" value=(admin.csrf);
                    button.secondary type="submit" { "Cancel the diff" }
                }
                " "
                a href=(job_path(job)) { "Refresh" }
            }
        },
    }
}

async fn diff_job(
    admin: Admin,
    console: web::Data<Console>,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ConsoleError> {
    let (target, id) = path.into_inner();
    let job = find_job(&console, &target, id)?;
    let form = Proposal {
        csrf: admin.csrf.clone(),
        text: job.text.clone(),
        base: job.base.clone(),
        user: String::new(),
    };
    let status = job_status(&admin, &console, &job);
    proposal_page(&admin, &console, &target, &form, StatusCode::OK, status)
}

async fn diff_status(
    admin: Admin,
    console: web::Data<Console>,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ConsoleError> {
    let (target, id) = path.into_inner();
    let job = find_job(&console, &target, id)?;
    Ok(layout::html_response(
        StatusCode::OK,
        job_status(&admin, &console, &job),
    ))
}

#[derive(Deserialize)]
struct CancelForm {
    csrf: String,
}

async fn cancel_diff(
    admin: Admin,
    console: web::Data<Console>,
    path: web::Path<(String, u64)>,
    form: web::Form<CancelForm>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let (target, id) = path.into_inner();
    let job = find_job(&console, &target, id)?;
    if !console.diffs.cancel(&job) {
        return Err(ConsoleError::Conflict(format!(
            "diff {id} of {target} has already ended"
        )));
    }
    tracing::info!(client = %admin.client, target_name = %target, job = id, "console: mapping diff cancelled");
    Ok(see_other(&job_path(&job)))
}

/// A stored user by id or, failing that, by userName.
async fn find_user(console: &Console, db: &Db, wanted: &str) -> Result<Resource, ConsoleError> {
    if let Ok(found) = console.service.get(ResourceKind::User, wanted).await {
        return Ok(found);
    }
    let name = wanted.to_owned();
    let id = db.read(move |s| s.user_id_by_name(&name)).await?;
    match id {
        Some(id) => Ok(console.service.get(ResourceKind::User, &id).await?),
        None => Err(ConsoleError::NotFound(format!(
            "no stored user has the id or userName '{wanted}'"
        ))),
    }
}

fn previewed(mapping: &Mapping, user: &Resource) -> String {
    let mut out = Vec::new();
    let sent = preview_one(mapping, &user.value, &mut out);
    if !sent {
        let _ = writeln!(out, "(the target would reject this user)");
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn preview(
    admin: Admin,
    console: web::Data<Console>,
    db: web::Data<Db>,
    target: web::Path<String>,
    form: web::Form<Proposal>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    if form.user.trim().is_empty() {
        return Err(ConsoleError::BadRequest(
            "name a stored user (userName or id) to preview".into(),
        ));
    }
    let user = find_user(&console, &db, form.user.trim()).await?;
    let in_force = console.in_force(&target)?;
    let checked = console.check(&target, &in_force.file, &form.text)?;
    let current = console.planner.mappings();
    let before = current.get(&target).map(|m| previewed(m, &user));
    let result = html! {
        div #check { (check_result(&checked, &form.text)) }
        h2 { "Preview of " (user.value.get("userName").and_then(|v| v.as_str()).unwrap_or(&user.id)) " for " (target) }
        div.columns {
            div { h3 { "In force" } pre { (before.unwrap_or_default()) } }
            div {
                h3 { "Proposed" }
                @match &checked.mapping {
                    Some(mapping) => pre { (previewed(mapping, &user)) },
                    None => p.check-bad { "The proposal does not pass the check." },
                }
            }
        }
    };
    proposal_page(&admin, &console, &target, &form, StatusCode::OK, result)
}

/// Writes `text` over `file` so a crash leaves either the old or the new file whole: a
/// temporary beside it, synced, then renamed. The old file is kept as `<file>.bak`.
fn write_with_backup(file: &Path, text: &str) -> std::io::Result<PathBuf> {
    let backup = file.with_extension("toml.bak");
    let staged = file.with_extension("toml.new");
    let mut out = std::fs::File::create(&staged)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::copy(file, &backup)?;
    std::fs::rename(&staged, file)?;
    if let Some(dir) = file.parent() {
        // The rename is durable once the directory is; some file systems refuse to sync one.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(backup)
}

async fn apply(
    admin: Admin,
    console: web::Data<Console>,
    reloader: web::Data<Reloader>,
    target: web::Path<String>,
    form: web::Form<Proposal>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let in_force = console.in_force(&target)?;
    if in_force.base != form.base {
        let result = html! {
            p.problem { "The file changed on disk since this proposal started from it; nothing was written. Reopen the mapping to start from the current file." }
        };
        return proposal_page(
            &admin,
            &console,
            &target,
            &form,
            StatusCode::CONFLICT,
            result,
        );
    }
    let checked = console.check(&target, &in_force.file, &form.text)?;
    if checked.mapping.is_none() {
        let result = html! { div #check { (check_result(&checked, &form.text)) } };
        return proposal_page(
            &admin,
            &console,
            &target,
            &form,
            StatusCode::BAD_REQUEST,
            result,
        );
    }
    let file = in_force.file.clone();
    let text = form.text.clone();
    let backup = web::block(move || write_with_backup(&file, &text))
        .await
        .map_err(|err| ConsoleError::Write(std::io::Error::other(err.to_string())))?
        .map_err(ConsoleError::Write)?;
    match reloader.reload(&admin.actor()).await {
        Ok(report) => {
            let version = report
                .versions
                .get(target.as_str())
                .map(|v| layout::short(v).to_owned())
                .unwrap_or_default();
            tracing::info!(
                client = %admin.client,
                target = %target,
                version = %version,
                backup = %backup.display(),
                users = report.users,
                "console: mapping applied and reloaded"
            );
            Ok(see_other(&format!(
                "/console/mappings/{target}?done={}",
                query_value(&format!(
                    "Applied version {version}; {} users are being planned again (the overview counts down those still to be planned). The previous file is kept as {}.",
                    report.users,
                    backup.display()
                ))
            )))
        }
        Err(errors) => {
            // Another file keeps the set from loading: put this one back as it was.
            std::fs::rename(&backup, &in_force.file).map_err(ConsoleError::Write)?;
            tracing::warn!(client = %admin.client, target = %target, ?errors, "console: mapping change refused on reload; the previous file is back");
            let result = html! {
                p.problem { "The reload refused the mappings; the previous file is back in place and stays in force." }
                ul { @for error in &errors { li { code { (error) } } } }
            };
            proposal_page(
                &admin,
                &console,
                &target,
                &form,
                StatusCode::BAD_REQUEST,
                result,
            )
        }
    }
}
