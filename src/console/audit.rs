//! Audit (`/console/audit`): the operators' actions as the trail holds them, newest first,
//! filtered by action and paged, read through the operator like `GET /admin/audit`.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use crate::fanout::operator::{audit_query, Operator};
use crate::ledger::{AuditAction, Audited};

use super::layout::{self, Nav};
use super::session::Admin;
use super::ConsoleError;

/// Entries on one page.
const PAGE: usize = 100;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(audit));
}

#[derive(Deserialize)]
struct AuditFilter {
    action: Option<String>,
    /// The `seq` of the last entry on the previous page.
    before: Option<i64>,
}

async fn audit(
    admin: Admin,
    ops: web::Data<Operator>,
    filter: web::Query<AuditFilter>,
) -> Result<HttpResponse, ConsoleError> {
    let action = filter.action.as_deref().filter(|action| !action.is_empty());
    let query = audit_query(action, None, filter.before, PAGE).map_err(ConsoleError::BadRequest)?;
    let entries = ops.audit(query).await?;
    let body = render(action, &entries);
    Ok(layout::page("Audit trail", &admin, Nav::Audit, body))
}

fn render(action: Option<&str>, entries: &[Audited]) -> Markup {
    let next = (entries.len() == PAGE)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    html! {
        form.search method="get" action="/console/audit" {
            label for="action" { "Action" }
            select #action name="action" {
                option value="" { "every action" }
                @for each in AuditAction::ALL {
                    option value=(each.as_str()) selected[action == Some(each.as_str())] { (each.as_str()) }
                }
            }
            button type="submit" { "Show" }
        }
        @if entries.is_empty() {
            p.muted { "No action recorded here yet." }
        } @else {
            table {
                thead { tr {
                    th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "User" }
                    th { "Outcome" } th { "Detail" }
                } }
                tbody {
                    @for audited in entries {
                        @let entry = &audited.entry;
                        tr {
                            td { (layout::when(entry.at)) }
                            td { (entry.actor) }
                            td { (entry.action.as_str()) }
                            td { (entry.target.as_deref().unwrap_or("")) }
                            td {
                                @if let Some(user) = &entry.user_id {
                                    a href=(format!("/console/users/{user}")) { (user) }
                                }
                            }
                            td { span class=(format!("state {}", entry.outcome.as_str())) { (entry.outcome.as_str()) } }
                            td {
                                @if !entry.detail.is_null() {
                                    code { (entry.detail.to_string()) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(before) = next {
            p {
                a href=(format!("/console/audit?action={}&before={before}", action.unwrap_or(""))) { "Older entries" }
            }
        }
    }
}
