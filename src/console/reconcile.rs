//! Reconcile (`/console/reconcile`): the stored runs with their counts per kind, a run's
//! findings by kind (its page polling its progress while it runs), and starting, pausing,
//! resuming or cancelling a run through the same `Reconciles` service as the admin API.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::fanout::operator::Operator;
use crate::ledger::{FindingRow, RunRow};
use crate::reconcile::compare::FindingKind;
use crate::reconcile::run::{RunRequest, Signal};
use crate::reconcile::service::{Reconciles, RunProgress};

use super::layout::{self, Nav};
use super::overview::{query_value, see_other};
use super::session::Admin;
use super::ConsoleError;

/// Runs listed, newest first.
const RUNS: usize = 50;
/// Findings on one page of a run.
const PAGE: usize = 100;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/reconcile", web::get().to(runs))
        .route("/reconcile", web::post().to(start))
        .route("/reconcile/pause", web::post().to(pause))
        .route("/reconcile/resume", web::post().to(resume))
        .route("/reconcile/cancel", web::post().to(cancel))
        .route("/reconcile/runs/{id}", web::get().to(run))
        .route("/reconcile/runs/{id}/progress", web::get().to(progress));
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn runs(
    admin: Admin,
    recs: web::Data<Reconciles>,
    ops: web::Data<Operator>,
    notice: web::Query<Notice>,
) -> Result<HttpResponse, ConsoleError> {
    let runs = recs.runs(RUNS).await?;
    let body = render_runs(&admin, ops.targets(), &runs, notice.done.as_deref());
    Ok(layout::page("Reconcile", &admin, Nav::Reconcile, body))
}

/// A run's findings per kind, summed over its targets.
fn totals(counts: &Value) -> Vec<(&'static str, u64)> {
    FindingKind::ALL
        .into_iter()
        .map(|kind| {
            let total = counts
                .as_object()
                .into_iter()
                .flat_map(|targets| targets.values())
                .filter_map(|kinds| kinds.get(kind.as_str()).and_then(Value::as_u64))
                .sum();
            (kind.as_str(), total)
        })
        .collect()
}

fn signal_form(admin: &Admin, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/console/reconcile/{action}")) {
            input type="hidden" name="csrf" value=(admin.csrf);
            button.secondary type="submit" { (label) }
        }
    }
}

fn render_runs(admin: &Admin, targets: &[String], runs: &[RunRow], notice: Option<&str>) -> Markup {
    let running = runs.iter().any(|run| run.status == "running");
    html! {
        (layout::notice(notice))
        section.card {
            h2 { "Start a run" }
            form method="post" action="/console/reconcile" {
                input type="hidden" name="csrf" value=(admin.csrf);
                label for="target" { "Target" }
                select #target name="target" {
                    option value="" { "every target" }
                    @for target in targets { option value=(target) { (target) } }
                }
                label {
                    input type="checkbox" name="apply" value="true";
                    " apply each target's policies (otherwise only report)"
                }
                button type="submit" { "Start" }
            }
            @if running {
                p {
                    "A run is in progress: "
                    (signal_form(admin, "pause", "Pause"))
                    (signal_form(admin, "resume", "Resume"))
                    (signal_form(admin, "cancel", "Cancel"))
                }
            }
        }
        @if runs.is_empty() {
            p.muted { "No reconcile has run yet." }
        } @else {
            table {
                thead { tr {
                    th { "Run" } th { "Started" } th { "Target" } th { "Mode" } th { "Status" }
                    @for kind in FindingKind::ALL { th.num { (kind.as_str()) } }
                } }
                tbody {
                    @for run in runs {
                        tr {
                            td { a href=(format!("/console/reconcile/runs/{}", run.id)) { "#" (run.id) } }
                            td { (layout::when(run.started_at)) }
                            td { (run.target.as_deref().unwrap_or("every target")) }
                            td { @if run.apply { "apply" } @else { "report" } }
                            td {
                                span class=(format!("state {}", run.status)) { (run.status) }
                                @if let Some(error) = &run.error { " " span.problem { (error) } }
                            }
                            @for (_, count) in totals(&run.counts) { td.num { (count) } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct FindingsQuery {
    kind: Option<String>,
    /// The `seq` of the last finding on the previous page.
    after: Option<i64>,
}

async fn run(
    admin: Admin,
    recs: web::Data<Reconciles>,
    id: web::Path<String>,
    query: web::Query<FindingsQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let run_id: i64 = id
        .parse()
        .map_err(|_| ConsoleError::NotFound(format!("no reconcile run {id}")))?;
    let kind = query.kind.as_deref().filter(|kind| !kind.is_empty());
    let run = recs.run(run_id).await?;
    let findings = recs
        .findings(run_id, kind, query.after.unwrap_or(0), PAGE)
        .await?;
    let live = recs.progress(run_id);
    let body = html! {
        @if run.status == "running" { (render_progress(&admin, &run, live)) }
        (render_run(&run, kind, &findings))
    };
    Ok(layout::page(
        &format!("Reconcile run #{run_id}"),
        &admin,
        Nav::Reconcile,
        body,
    ))
}

/// The part of a running run's page that htmx asks for again every second: what it has
/// read and found so far, and the buttons that pause, resume or cancel it.
fn render_progress(admin: &Admin, run: &RunRow, live: Option<RunProgress>) -> Markup {
    html! {
        div #run-progress hx-get=(format!("/console/reconcile/runs/{}/progress", run.id))
            hx-trigger="every 1s" hx-swap="outerHTML" {
            p role="status" {
                "In progress: "
                @match live {
                    Some(live) => {
                        strong { (live.accounts) } " accounts read, "
                        strong { (live.findings) } " findings so far"
                    },
                    None => "started by another process, its progress is not known here",
                }
                " · " a href=(format!("/console/reconcile/runs/{}", run.id)) { "Refresh" }
            }
            p {
                (signal_form(admin, "pause", "Pause"))
                (signal_form(admin, "resume", "Resume"))
                (signal_form(admin, "cancel", "Cancel"))
            }
        }
    }
}

/// The progress fragment; once the run has ended, htmx is told to load the whole page
/// again, which shows its findings and polls no more.
async fn progress(
    admin: Admin,
    recs: web::Data<Reconciles>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let run_id: i64 = id
        .parse()
        .map_err(|_| ConsoleError::NotFound(format!("no reconcile run {id}")))?;
    let run = recs.run(run_id).await?;
    if run.status != "running" {
        let mut response = layout::html_response(
            StatusCode::OK,
            html! { p role="status" { "The run has ended: " (run.status) "." } },
        );
        response.headers_mut().insert(
            HeaderName::from_static("hx-refresh"),
            HeaderValue::from_static("true"),
        );
        return Ok(response);
    }
    Ok(layout::html_response(
        StatusCode::OK,
        render_progress(&admin, &run, recs.progress(run_id)),
    ))
}

fn render_run(run: &RunRow, kind: Option<&str>, findings: &[FindingRow]) -> Markup {
    let base = format!("/console/reconcile/runs/{}", run.id);
    let next = (findings.len() == PAGE)
        .then(|| findings.last().map(|f| f.seq))
        .flatten();
    html! {
        p {
            span class=(format!("state {}", run.status)) { (run.status) }
            " · " (run.target.as_deref().unwrap_or("every target"))
            " · " @if run.apply { "policies applied" } @else { "report only" }
            " · started " (layout::when(run.started_at))
            @if let Some(end) = run.finished_at { " · took " (layout::span(end - run.started_at)) }
        }
        @if let Some(error) = &run.error { p.problem { (error) } }
        nav.kinds {
            @if kind.is_none() { strong { "all" } } @else { a href=(base) { "all" } }
            @for (name, count) in totals(&run.counts) {
                " · "
                @if kind == Some(name) {
                    strong { (name) " (" (count) ")" }
                } @else {
                    a href=(format!("{base}?kind={name}")) { (name) " (" (count) ")" }
                }
            }
        }
        @if findings.is_empty() {
            p.muted { "No findings here." }
        } @else {
            table {
                thead { tr {
                    th { "Kind" } th { "Target" } th { "User" } th { "Account" }
                    th { "Fields" } th { "Decision" }
                } }
                tbody {
                    @for finding in findings {
                        tr {
                            td { (finding.kind) }
                            td { (finding.target) }
                            td {
                                @match &finding.user_id {
                                    Some(user) => a href=(format!("/console/users/{user}")) { (user) },
                                    None => span.muted { "none" },
                                }
                            }
                            td { code { (finding.remote_id.as_deref().unwrap_or("-")) } }
                            td {
                                @if finding.fields.as_object().is_some_and(|f| !f.is_empty()) {
                                    pre { (layout::pretty(&finding.fields)) }
                                }
                            }
                            td {
                                (finding.decision)
                                @if let Some(error) = &finding.error { " " span.problem { (error) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(after) = next {
            p {
                a href=(format!("{base}?kind={}&after={after}", query_value(kind.unwrap_or("")))) { "Next page" }
            }
        }
    }
}

#[derive(Deserialize)]
struct StartForm {
    csrf: String,
    target: Option<String>,
    #[serde(default)]
    apply: bool,
}

async fn start(
    admin: Admin,
    recs: web::Data<Reconciles>,
    form: web::Form<StartForm>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let form = form.into_inner();
    let run_id = recs
        .start(RunRequest {
            target: form.target.filter(|target| !target.is_empty()),
            apply: form.apply,
            actor: admin.actor(),
        })
        .await?;
    tracing::info!(client = %admin.client, run_id, apply = form.apply, "console: reconcile started");
    Ok(see_other(&format!("/console/reconcile/runs/{run_id}")))
}

#[derive(Deserialize)]
struct Posted {
    csrf: String,
}

async fn pause(
    admin: Admin,
    recs: web::Data<Reconciles>,
    form: web::Form<Posted>,
) -> Result<HttpResponse, ConsoleError> {
    send(admin, recs, form, Signal::Pause, "paused").await
}

async fn resume(
    admin: Admin,
    recs: web::Data<Reconciles>,
    form: web::Form<Posted>,
) -> Result<HttpResponse, ConsoleError> {
    send(admin, recs, form, Signal::Run, "resumed").await
}

async fn cancel(
    admin: Admin,
    recs: web::Data<Reconciles>,
    form: web::Form<Posted>,
) -> Result<HttpResponse, ConsoleError> {
    send(admin, recs, form, Signal::Cancel, "cancelled").await
}

async fn send(
    admin: Admin,
    recs: web::Data<Reconciles>,
    form: web::Form<Posted>,
    signal: Signal,
    done: &str,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    recs.signal(signal, &admin.actor()).await;
    tracing::info!(client = %admin.client, "console: reconcile {done}");
    Ok(see_other(&format!(
        "/console/reconcile?done={}",
        query_value(&format!("the running reconcile is {done}"))
    )))
}
