//! Failures: rejected and dead deliveries grouped by target and by the target's own reason,
//! with replay per group (each user through the operator's replay) or per user.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use crate::fanout::operator::{Operator, ReplayRequest};
use crate::ledger::{Db, FailureGroup, LedgerError};

use super::layout::{self, Nav};
use super::overview::{query_value, see_other};
use super::session::Admin;
use super::{configured_target, ConsoleError};

/// Groups shown; the rest are summed under the table.
const GROUPS: usize = 200;
/// Users listed under each group.
const SHOWN_USERS: usize = 10;
/// Users one group replay makes due; a larger group takes more than one press.
const REPLAY_BATCH: usize = 1000;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/failures", web::get().to(failures))
        .route("/failures/replay", web::post().to(replay_group));
}

type Group = (FailureGroup, Vec<(String, Option<String>)>);

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn failures(
    admin: Admin,
    db: web::Data<Db>,
    notice: web::Query<Notice>,
) -> Result<HttpResponse, ConsoleError> {
    let groups: Vec<Group> = db
        .read(|s| -> Result<Vec<Group>, LedgerError> {
            s.failure_groups(GROUPS)?
                .into_iter()
                .map(|group| {
                    let users = s.failure_group_users(
                        &group.target,
                        &group.state,
                        group.reason.as_deref(),
                        SHOWN_USERS,
                    )?;
                    Ok((group, users))
                })
                .collect()
        })
        .await?;
    let body = render(&admin, &groups, notice.done.as_deref());
    Ok(layout::page("Failures", &admin, Nav::Failures, body))
}

fn render(admin: &Admin, groups: &[Group], notice: Option<&str>) -> Markup {
    html! {
        (layout::notice(notice))
        @if groups.is_empty() {
            p.muted { "Nothing is rejected or dead-lettered." }
        }
        @for (group, users) in groups {
            section.card {
                h2 {
                    (group.target) " "
                    span class=(format!("state {}", group.state)) { (group.state) }
                    " · " (group.users) " " @if group.users == 1 { "user" } @else { "users" }
                }
                p.problem {
                    @if let Some(status) = group.status { "HTTP " (status) ": " }
                    (group.reason.as_deref().unwrap_or("(no reason given)"))
                }
                p.muted { "latest " (layout::when(group.latest)) }
                form.inline method="post" action="/console/failures/replay" {
                    input type="hidden" name="csrf" value=(admin.csrf);
                    input type="hidden" name="target" value=(group.target);
                    input type="hidden" name="state" value=(group.state);
                    @if let Some(reason) = &group.reason {
                        input type="hidden" name="reason" value=(reason);
                    }
                    button type="submit" { "Replay this group" }
                }
                ul {
                    @for (id, name) in users {
                        li {
                            a href=(format!("/console/users/{id}")) { (name.as_deref().unwrap_or(id)) }
                            " "
                            form.inline method="post" action=(format!("/console/users/{id}/replay")) {
                                input type="hidden" name="csrf" value=(admin.csrf);
                                input type="hidden" name="target" value=(group.target);
                                button.secondary type="submit" { "Replay" }
                            }
                        }
                    }
                    @if group.users > users.len() as u64 {
                        li.muted { "and " (group.users - users.len() as u64) " more" }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct ReplayGroup {
    csrf: String,
    target: String,
    state: String,
    reason: Option<String>,
}

async fn replay_group(
    admin: Admin,
    ops: web::Data<Operator>,
    db: web::Data<Db>,
    form: web::Form<ReplayGroup>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let form = form.into_inner();
    configured_target(&ops, &form.target)?;
    let dead_only = match form.state.as_str() {
        "dead" => true,
        "rejected" => false,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "cannot replay deliveries in state '{other}': only rejected or dead ones"
            )))
        }
    };
    let (target, state, reason) = (form.target.clone(), form.state.clone(), form.reason.clone());
    let users = db
        .read(move |s| s.failure_group_users(&target, &state, reason.as_deref(), REPLAY_BATCH))
        .await?;
    let mut replayed = 0;
    for (user_id, _) in users {
        replayed += ops
            .replay(
                ReplayRequest {
                    user_id: Some(user_id),
                    target: Some(form.target.clone()),
                    dead_only,
                },
                &admin.actor(),
            )
            .await?;
    }
    tracing::info!(
        client = %admin.client,
        target = %form.target,
        state = %form.state,
        reason = ?form.reason,
        replayed,
        "console: replayed a failure group"
    );
    Ok(see_other(&format!(
        "/console/failures?done={}",
        query_value(&format!(
            "{replayed} deliveries to {} replayed",
            form.target
        ))
    )))
}
