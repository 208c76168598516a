//! The overview (`/console`): the users still to be planned, each target's queue by state,
//! its lag and circuit, a chart of attempts per minute, and pause/resume through the
//! operator's own call.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use crate::clock::{unix_millis, SharedClock};
use crate::fanout::operator::Operator;
use crate::ledger::{Db, MinuteCount, TargetLag};

use super::layout::{self, Nav};
use super::session::Admin;
use super::{chart, configured_target, Console, ConsoleError};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(overview))
        .route("/", web::get().to(overview))
        .route("/targets/{target}/pause", web::post().to(pause))
        .route("/targets/{target}/resume", web::post().to(resume));
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn overview(
    admin: Admin,
    console: web::Data<Console>,
    ops: web::Data<Operator>,
    db: web::Data<Db>,
    clock: web::Data<SharedClock>,
    notice: web::Query<Notice>,
) -> Result<HttpResponse, ConsoleError> {
    let now = unix_millis(clock.as_ref().as_ref());
    let (lag, planning) = (ops.lag().await?, ops.planning().await?);
    let now_minute = now / 60_000;
    let since = console.minutes.read_from(now_minute);
    let fresh = db.read(move |s| s.attempts_per_minute(since)).await?;
    let minutes = console.minutes.merge(fresh, now_minute);
    let body = render(
        &admin,
        &Queues {
            lag: &lag,
            planning,
        },
        &minutes,
        now,
        notice.done.as_deref(),
    );
    Ok(layout::page("Overview", &admin, Nav::Overview, body))
}

/// What waits: the users not yet planned, then each target's rows.
struct Queues<'a> {
    lag: &'a [TargetLag],
    planning: u64,
}

fn render(
    admin: &Admin,
    queues: &Queues<'_>,
    minutes: &[MinuteCount],
    now: i64,
    notice: Option<&str>,
) -> Markup {
    let lag = queues.lag;
    html! {
        (layout::notice(notice))
        // Refreshed in place every few seconds when scripts run; a reload does the same.
        section.card #targets hx-get="/console" hx-trigger="every 5s" hx-select="#targets" hx-swap="outerHTML" {
            p #planning {
                @if queues.planning > 0 {
                    strong { (queues.planning) } " users written by the identity provider are "
                    "waiting to be planned; their changes join the counts below once they are."
                } @else {
                    span.muted { "Every change the identity provider sent is planned." }
                }
            }
            table {
                thead { tr {
                    th { "Target" } th { "State" }
                    th.num { "Delivered" } th.num { "Pending" } th.num { "Retrying" }
                    th.num { "Rejected" } th.num { "Dead" } th { "Lag" } th {}
                } }
                tbody {
                    @for target in lag {
                        tr {
                            td { strong { (target.target) } }
                            td {
                                @if target.paused { span.state.paused { "paused" } " " }
                                @if target.held > 0 {
                                    a.state.held href="/console/held" { "held " (target.held) } " "
                                }
                                span class=(format!("state {}", target.circuit.state.as_str())) {
                                    "circuit " (target.circuit.state.as_str())
                                }
                            }
                            td.num { (target.delivered) }
                            td.num { (target.pending) }
                            td.num { (target.retrying) }
                            td.num {
                                @if target.rejected > 0 { a href="/console/failures" { (target.rejected) } } @else { "0" }
                            }
                            td.num {
                                @if target.dead > 0 { a href="/console/failures" { (target.dead) } } @else { "0" }
                            }
                            td {
                                @match target.oldest_change_at {
                                    Some(oldest) => { "oldest change waiting " (layout::span(now - oldest)) }
                                    None => span.muted { "up to date" },
                                }
                            }
                            td {
                                @let (action, label) = if target.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                                form.inline method="post" action=(format!("/console/targets/{}/{action}", target.target)) {
                                    input type="hidden" name="csrf" value=(admin.csrf);
                                    button.secondary type="submit" { (label) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Attempts per minute, last " (chart::MINUTES / 60) " hours" }
        p.legend { span.swatch.delivered {} "delivered" span.swatch.failed {} "failed (retried, rejected or dead)" }
        @for target in lag {
            @let counts: Vec<&MinuteCount> = minutes.iter().filter(|m| m.target == target.target).collect();
            section.card {
                h3 { (target.target) }
                (chart::per_minute(&counts, now / 60_000))
            }
        }
    }
}

#[derive(Deserialize)]
struct Posted {
    csrf: String,
}

async fn pause(
    admin: Admin,
    ops: web::Data<Operator>,
    target: web::Path<String>,
    form: web::Form<Posted>,
) -> Result<HttpResponse, ConsoleError> {
    set_paused(admin, ops, target, form, true).await
}

async fn resume(
    admin: Admin,
    ops: web::Data<Operator>,
    target: web::Path<String>,
    form: web::Form<Posted>,
) -> Result<HttpResponse, ConsoleError> {
    set_paused(admin, ops, target, form, false).await
}

async fn set_paused(
    admin: Admin,
    ops: web::Data<Operator>,
    target: web::Path<String>,
    form: web::Form<Posted>,
    paused: bool,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    configured_target(&ops, &target)?;
    ops.set_paused(&target, paused, &admin.actor()).await?;
    let done = if paused { "paused" } else { "resumed" };
    tracing::info!(client = %admin.client, target = %target, paused, "console: target {done}");
    Ok(see_other(&format!(
        "/console?done={}",
        query_value(&format!("{target} {done}"))
    )))
}

/// A redirect after a successful form post, so a reload does not post it again.
pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Percent-encodes a query value.
pub(super) fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(planning: u64) -> String {
        let admin = Admin {
            client: "admin".into(),
            csrf: "t".into(),
        };
        let queues = Queues { lag: &[], planning };
        render(&admin, &queues, &[], 0, None).into_string()
    }

    #[test]
    fn the_users_still_to_be_planned_are_counted_above_the_queues() {
        let waiting = page(3);
        assert!(
            waiting.contains("<strong>3</strong> users written by the identity provider are waiting to be planned"),
            "{waiting}"
        );
        assert!(page(0).contains("Every change the identity provider sent is planned."));
    }
}
