//! Held deprovisions (`/console/held`): per target, what the deprovisioning guard holds back,
//! with Release (send each once) and Discard (never send) through the operator's own calls.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use crate::fanout::operator::{Held, Operator};

use super::layout::{self, Nav};
use super::overview::{query_value, see_other};
use super::session::Admin;
use super::{configured_target, ConsoleError};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/held", web::get().to(held))
        .route("/held/{target}/release", web::post().to(release))
        .route("/held/{target}/discard", web::post().to(discard));
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn held(
    admin: Admin,
    ops: web::Data<Operator>,
    notice: web::Query<Notice>,
) -> Result<HttpResponse, ConsoleError> {
    let mut holding = Vec::new();
    for target in ops.lag().await?.into_iter().filter(|t| t.held > 0) {
        holding.push(ops.held(&target.target).await?);
    }
    let body = render(&admin, &holding, notice.done.as_deref());
    Ok(layout::page("Held deprovisions", &admin, Nav::Held, body))
}

fn action(admin: &Admin, target: &str, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/console/held/{target}/{action}")) {
            input type="hidden" name="csrf" value=(admin.csrf);
            button type="submit" { (label) }
        }
    }
}

fn render(admin: &Admin, holding: &[Held], notice: Option<&str>) -> Markup {
    html! {
        (layout::notice(notice))
        @if holding.is_empty() {
            p.muted { "The deprovisioning guard holds nothing: every disable and delete flows." }
        }
        @for held in holding {
            section.card {
                h2 {
                    (held.target) " "
                    span.state.held { "held" }
                    " · " (held.held) @if held.held == 1 { " deprovision" } @else { " deprovisions" }
                }
                p {
                    (action(admin, &held.target, "release", "Release: send each once"))
                    " "
                    (action(admin, &held.target, "discard", "Discard: never send"))
                }
                table {
                    thead { tr { th { "User" } th { "Operation" } th { "Changed" } } }
                    tbody {
                        @for delivery in &held.deliveries {
                            @let user = &delivery.desired.user_id;
                            tr {
                                td { a href=(format!("/console/users/{user}")) { (user) } }
                                td { (delivery.desired.operation.as_str()) }
                                td { (layout::when(delivery.changed_at)) }
                            }
                        }
                    }
                }
                @if held.held > held.deliveries.len() as u64 {
                    p.muted { "and " (held.held - held.deliveries.len() as u64) " more" }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Posted {
    csrf: String,
}

async fn release(
    admin: Admin,
    ops: web::Data<Operator>,
    target: web::Path<String>,
    form: web::Form<Posted>,
) -> Result<HttpResponse, ConsoleError> {
    decide(admin, ops, target, form, true).await
}

async fn discard(
    admin: Admin,
    ops: web::Data<Operator>,
    target: web::Path<String>,
    form: web::Form<Posted>,
) -> Result<HttpResponse, ConsoleError> {
    decide(admin, ops, target, form, false).await
}

async fn decide(
    admin: Admin,
    ops: web::Data<Operator>,
    target: web::Path<String>,
    form: web::Form<Posted>,
    release: bool,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    configured_target(&ops, &target)?;
    let (count, done) = if release {
        (ops.release(&target, &admin.actor()).await?, "released")
    } else {
        (ops.discard(&target, &admin.actor()).await?, "discarded")
    };
    tracing::info!(client = %admin.client, target = %target, count, "console: held deprovisions {done}");
    Ok(see_other(&format!(
        "/console/held?done={}",
        query_value(&format!("{count} held deprovisions of {target} {done}"))
    )))
}
