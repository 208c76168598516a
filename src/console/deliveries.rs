//! Deliveries (`/console/deliveries`): the ledger's rows in one state, of every target or
//! one, with replay of a target's failures (dead letters only, or rejections too), and the
//! fields users are sent without: `ledger list`, `ledger replay --target` and `ledger
//! omissions` through the same `Operator` calls.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use crate::fanout::operator::{Operator, ReplayRequest};
use crate::ledger::{Delivery, DeliveryState, Omissions};

use super::layout::{self, Nav};
use super::overview::{query_value, see_other};
use super::session::Admin;
use super::{configured_target, ConsoleError};

/// The states offered, `failed` standing for rejected and dead together.
const STATES: [&str; 7] = [
    "failed",
    "pending",
    "retrying",
    "rejected",
    "dead",
    "held",
    "delivered",
];

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/deliveries", web::get().to(list))
        .route("/deliveries/replay", web::post().to(replay));
}

#[derive(Deserialize)]
struct Filter {
    state: Option<String>,
    target: Option<String>,
    done: Option<String>,
}

fn parse_states(state: &str) -> Result<Vec<DeliveryState>, ConsoleError> {
    if state == "failed" {
        return Ok(vec![DeliveryState::Rejected, DeliveryState::Dead]);
    }
    DeliveryState::parse(state).map(|s| vec![s]).ok_or_else(|| {
        ConsoleError::BadRequest(format!("unknown state {state}: use {}", STATES.join(", ")))
    })
}

async fn list(
    admin: Admin,
    ops: web::Data<Operator>,
    filter: web::Query<Filter>,
) -> Result<HttpResponse, ConsoleError> {
    let state = filter
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("failed");
    let states = parse_states(state)?;
    let target = filter.target.as_deref().filter(|t| !t.is_empty());
    if let Some(target) = target {
        configured_target(&ops, target)?;
    }
    let rows = ops.list(&states, target).await?;
    let omissions = ops.omissions().await?;
    let body = render(
        &admin,
        ops.targets(),
        state,
        target,
        &rows,
        &omissions,
        filter.done.as_deref(),
    );
    Ok(layout::page("Deliveries", &admin, Nav::Deliveries, body))
}

fn render(
    admin: &Admin,
    targets: &[String],
    state: &str,
    target: Option<&str>,
    rows: &[Delivery],
    omissions: &[Omissions],
    notice: Option<&str>,
) -> Markup {
    html! {
        (layout::notice(notice))
        form.search method="get" action="/console/deliveries" {
            label for="state" { "State" }
            select #state name="state" {
                @for each in STATES { option value=(each) selected[each == state] { (each) } }
            }
            label for="target" { "Target" }
            select #target name="target" {
                option value="" { "every target" }
                @for each in targets { option value=(each) selected[Some(each.as_str()) == target] { (each) } }
            }
            button type="submit" { "Show" }
        }
        section.card {
            h2 { "Replay failures" }
            form method="post" action="/console/deliveries/replay" {
                input type="hidden" name="csrf" value=(admin.csrf);
                select name="target" aria-label="Target to replay" {
                    option value="" { "every target" }
                    @for each in targets { option value=(each) selected[Some(each.as_str()) == target] { (each) } }
                }
                label { input type="checkbox" name="dead_only" value="true"; " dead letters only (not rejections)" }
                button type="submit" { "Replay" }
            }
        }
        h2 { (rows.len()) " " (state) " deliveries" @if let Some(t) = target { " to " (t) } }
        @if rows.is_empty() {
            p.muted { "None." }
        } @else {
            table {
                thead { tr {
                    th { "User" } th { "Target" } th { "State" } th { "Operation" }
                    th.num { "Attempts" } th { "Last answer" } th { "Updated" }
                } }
                tbody {
                    @for row in rows {
                        tr {
                            td { a href=(format!("/console/users/{}", row.desired.user_id)) { (row.desired.user_id) } }
                            td { (row.desired.target) }
                            td { span class=(format!("state {}", row.state.as_str())) { (row.state.as_str()) } }
                            td { (row.desired.operation.as_str()) }
                            td.num { (row.attempts) }
                            td {
                                @if let Some(code) = row.last_status { "HTTP " (code) " " }
                                (row.last_error.as_deref().unwrap_or(""))
                            }
                            td { (layout::when(row.updated_at)) }
                        }
                    }
                }
            }
        }
        h2 { "Fields users are sent without" }
        @if omissions.is_empty() {
            p.muted { "Every mapped value could be sent." }
        } @else {
            table {
                thead { tr { th { "Target" } th { "Field" } th.num { "Users" } th { "Example reason" } } }
                tbody {
                    @for each in omissions {
                        tr {
                            td { (each.target) }
                            td { code { (each.field) } }
                            td.num { (each.users) }
                            td { (each.example) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct ReplayForm {
    csrf: String,
    target: Option<String>,
    #[serde(default)]
    dead_only: bool,
}

async fn replay(
    admin: Admin,
    ops: web::Data<Operator>,
    form: web::Form<ReplayForm>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let form = form.into_inner();
    let target = form.target.filter(|t| !t.is_empty());
    if let Some(target) = &target {
        configured_target(&ops, target)?;
    }
    let replayed = ops
        .replay(
            ReplayRequest {
                user_id: None,
                target: target.clone(),
                dead_only: form.dead_only,
            },
            &admin.actor(),
        )
        .await?;
    tracing::info!(client = %admin.client, target = ?target, dead_only = form.dead_only, replayed, "console: replayed");
    Ok(see_other(&format!(
        "/console/deliveries?target={}&done={}",
        query_value(target.as_deref().unwrap_or("")),
        query_value(&format!("{replayed} deliveries replayed"))
    )))
}
