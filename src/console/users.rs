//! Users: an indexed prefix search by userName, email or externalId, and a user's page with
//! the SCIM resource, each target's ledger row, its desired, delivered and read-back
//! account side by side, the attempt timeline, and replay.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::fanout::operator::{Operator, ReplayRequest, UserStatus};
use crate::ledger::{
    AccountRead, Db, Delivery, DeliveryState, LedgerError, ResourceKind, SearchField, UserHit,
};
use crate::reconcile::service::Reconciles;
use crate::scim::service::Resource;

use super::layout::{self, Nav};
use super::overview::{query_value, see_other};
use super::session::Admin;
use super::threeway::{self, Delivered, FieldRow};
use super::{configured_target, Console, ConsoleError};

/// Users per page of search results.
const PAGE: usize = 50;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(search))
        .route("/users/{id}", web::get().to(user))
        .route("/users/{id}/replay", web::post().to(replay));
}

#[derive(Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
    field: Option<String>,
    /// Where the previous page ended: the field's key and the user's row number.
    after: Option<String>,
    after_seq: Option<i64>,
}

fn parse_field(name: Option<&str>) -> Result<SearchField, ConsoleError> {
    match name.unwrap_or("userName") {
        "userName" => Ok(SearchField::UserName),
        "email" => Ok(SearchField::Email),
        "externalId" => Ok(SearchField::ExternalId),
        other => Err(ConsoleError::BadRequest(format!(
            "cannot search by '{other}': use userName, email or externalId"
        ))),
    }
}

fn field_name(field: SearchField) -> &'static str {
    match field {
        SearchField::UserName => "userName",
        SearchField::Email => "email",
        SearchField::ExternalId => "externalId",
    }
}

async fn search(
    admin: Admin,
    db: web::Data<Db>,
    params: web::Query<Search>,
) -> Result<HttpResponse, ConsoleError> {
    let params = params.into_inner();
    let field = parse_field(params.field.as_deref())?;
    let q = params.q.trim().to_owned();
    let after = params.after.clone().zip(params.after_seq);
    let prefix = q.clone();
    let mut hits = db
        .read(move |s| {
            s.search_users(
                field,
                &prefix,
                after.as_ref().map(|(key, seq)| (key.as_str(), *seq)),
                PAGE + 1,
            )
        })
        .await?;
    let more = hits.len() > PAGE;
    hits.truncate(PAGE);
    let body = render_search(&q, field, &hits, more);
    Ok(layout::page("Users", &admin, Nav::Users, body))
}

fn render_search(q: &str, field: SearchField, hits: &[UserHit], more: bool) -> Markup {
    html! {
        form.search method="get" action="/console/users" role="search" {
            select name="field" aria-label="Search by" {
                @for option in [SearchField::UserName, SearchField::Email, SearchField::ExternalId] {
                    option value=(field_name(option)) selected[option == field] { (field_name(option)) }
                }
            }
            input type="search" name="q" value=(q) placeholder="starts with…" aria-label="Search";
            button type="submit" { "Search" }
        }
        p.hint { "Matches the start of the field (userName and email ignore case), in its order, from its index." }
        @if hits.is_empty() {
            p.muted { "No user matches." }
        } @else {
            table {
                thead { tr { th { "userName" } th { "externalId" } th { "id" } } }
                tbody {
                    @for hit in hits {
                        tr {
                            td { a href=(format!("/console/users/{}", hit.id)) { (hit.user_name) } }
                            td { (hit.external_id.as_deref().unwrap_or("")) }
                            td.muted { (hit.id) }
                        }
                    }
                }
            }
            @if more {
                @if let Some(last) = hits.last() {
                    p.pager {
                        a rel="next" href=(format!(
                            "/console/users?field={}&q={}&after={}&after_seq={}",
                            field_name(field), query_value(q), query_value(&last.key), last.seq
                        )) { "Next " (PAGE) " →" }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct UserNotice {
    done: Option<String>,
}

/// One target's three columns, ready to render.
struct Compared {
    delivered: Delivered,
    read: Option<AccountRead>,
    rows: Vec<FieldRow>,
}

async fn user(
    admin: Admin,
    console: web::Data<Console>,
    ops: web::Data<Operator>,
    recs: web::Data<Reconciles>,
    db: web::Data<Db>,
    id: web::Path<String>,
    notice: web::Query<UserNotice>,
) -> Result<HttpResponse, ConsoleError> {
    let resource = console.service.get(ResourceKind::User, &id).await;
    let status = ops.user(&id).await?;
    let user_id = id.to_string();
    let (kept, reads) = db
        .read(move |s| {
            Ok::<_, LedgerError>((
                s.delivered_payloads(&user_id)?,
                s.accounts_read_of(&user_id)?,
            ))
        })
        .await?;
    let resource = match resource {
        Ok(resource) => Some(resource),
        // A deleted user's ledger rows and history are still worth seeing.
        Err(_) if !status.deliveries.is_empty() || !status.history.is_empty() => None,
        Err(err) => return Err(err.into()),
    };
    let mappings = console.planner.mappings();
    let secret_fields = |target: &str| -> Vec<String> {
        mappings
            .get(target)
            .map(|m| {
                m.schema()
                    .fields
                    .iter()
                    .filter(|f| f.write_only)
                    .map(|f| f.name.to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut kept: BTreeMap<String, Map<String, Value>> = kept.into_iter().collect();
    let mut reads: BTreeMap<String, AccountRead> =
        reads.into_iter().map(|r| (r.target.clone(), r)).collect();
    let compared: BTreeMap<String, Compared> = status
        .deliveries
        .iter()
        .map(|delivery| {
            let target = delivery.desired.target.as_str();
            let secrets = secret_fields(target);
            let stored = |payload: &Map<String, Value>| {
                let mut stored = recs
                    .as_stored(target, payload)
                    .unwrap_or_else(|| payload.clone());
                for field in secrets.iter().chain(delivery.desired.password_field.iter()) {
                    stored.remove(field);
                }
                stored
            };
            let delivered = match Delivered::of(delivery, kept.remove(target)) {
                Delivered::Body(body) => Delivered::Body(stored(&body)),
                other => other,
            };
            let read = reads.remove(target);
            let desired = stored(&delivery.desired.payload);
            let rows = threeway::rows(
                delivery,
                &desired,
                match &delivered {
                    Delivered::Body(body) => Some(body),
                    Delivered::Nothing | Delivered::NotKept => None,
                },
                read.as_ref().and_then(|r| r.account.as_ref()),
            );
            let view = Compared {
                delivered,
                read,
                rows,
            };
            (target.to_owned(), view)
        })
        .collect();
    let title = resource
        .as_ref()
        .and_then(|r| r.value.get("userName"))
        .and_then(Value::as_str)
        .unwrap_or(&id)
        .to_owned();
    let body = render_user(
        &admin,
        &id,
        resource.as_ref(),
        &status,
        &secret_fields,
        &compared,
        notice.done.as_deref(),
    );
    Ok(layout::page(&title, &admin, Nav::Users, body))
}

/// The desired payload as shown: the password and write-only fields replaced, since the
/// page must never carry a secret.
fn shown_payload(delivery: &Delivery, secret_fields: &[String]) -> Value {
    let mut payload: Map<String, Value> = delivery.desired.payload.clone();
    for field in secret_fields
        .iter()
        .chain(delivery.desired.password_field.iter())
    {
        if let Some(value) = payload.get_mut(field) {
            *value = Value::String("<redacted>".into());
        }
    }
    Value::Object(payload)
}

fn render_user(
    admin: &Admin,
    id: &str,
    resource: Option<&Resource>,
    status: &UserStatus,
    secret_fields: &dyn Fn(&str) -> Vec<String>,
    compared: &BTreeMap<String, Compared>,
    notice: Option<&str>,
) -> Markup {
    html! {
        (layout::notice(notice))
        p.muted { "id " (id) }
        form.inline method="post" action=(format!("/console/users/{id}/replay")) {
            input type="hidden" name="csrf" value=(admin.csrf);
            button type="submit" { "Replay failed deliveries to every target" }
        }
        " "
        form.inline method="post" action=(format!("/console/users/{id}/sync")) {
            input type="hidden" name="csrf" value=(admin.csrf);
            button type="submit" { "Sync now" }
        }
        " "
        form.inline method="post" action=(format!("/console/users/{id}/sync")) {
            input type="hidden" name="csrf" value=(admin.csrf);
            input type="hidden" name="dry_run" value="true";
            button.secondary type="submit" { "Sync dry run" }
        }
        h2 { "SCIM resource" }
        @match resource {
            Some(resource) => pre { (layout::pretty(&resource.value)) },
            None => p.muted { "The user is no longer stored (deleted); the ledger keeps what the targets were told." },
        }
        @if status.planning {
            p #planning {
                span.state.pending { "waiting to be planned" }
                " The identity provider's latest change is stored above and is not yet in the "
                "targets' desired states below; it joins them in a moment."
            }
        }
        @for delivery in &status.deliveries {
            @let target = &delivery.desired.target;
            section.card {
                h2 {
                    (target) " "
                    span class=(format!("state {}", delivery.state.as_str())) { (delivery.state.as_str()) }
                }
                p {
                    "operation " strong { (delivery.desired.operation.as_str()) }
                    " · mapping " code { (layout::short(&delivery.desired.mapping_version)) }
                    " · attempts " (delivery.attempts)
                    @if let Some(remote) = &delivery.remote_id { " · target id " code { (remote) } }
                    @if status.adoptions.iter().any(|a| a.target == *target) { " · adopted an existing account" }
                }
                @if let Some(error) = &delivery.last_error {
                    p.problem {
                        @if let Some(code) = delivery.last_status { "HTTP " (code) ": " }
                        (error)
                    }
                }
                @if matches!(delivery.state, DeliveryState::Rejected | DeliveryState::Dead) {
                    form.inline method="post" action=(format!("/console/users/{id}/replay")) {
                        input type="hidden" name="csrf" value=(admin.csrf);
                        input type="hidden" name="target" value=(target);
                        button type="submit" { "Replay to " (target) }
                    }
                }
                @if let Some(view) = compared.get(target) {
                    h3 { "Desired, delivered and held" }
                    (threeway::render(&view.delivered, view.read.as_ref(), &view.rows))
                }
                details {
                    summary { "Desired payload as the mapping rendered it" }
                    pre { (layout::pretty(&shown_payload(delivery, &secret_fields(target)))) }
                }
                @if !delivery.warnings.is_empty() {
                    h3 { "Left out" }
                    ul {
                        @for warning in &delivery.warnings {
                            li { code { (warning.field) } ": " (warning.reason) }
                        }
                    }
                }
                h3 { "Attempts" }
                @let attempts: Vec<_> = status.history.iter().filter(|a| a.target == *target).collect();
                @if attempts.is_empty() {
                    p.muted { "No attempt yet." }
                } @else {
                    ol.timeline {
                        @for attempt in attempts {
                            li class=(attempt.outcome) {
                                (layout::when(attempt.at)) " · " (attempt.operation) " · "
                                span class=(format!("state {}", attempt.outcome)) { (attempt.outcome) }
                                @if let Some(code) = attempt.status { " · HTTP " (code) }
                                " · " (attempt.duration_ms) " ms"
                                @if let Some(error) = &attempt.error { div.answer { (error) } }
                            }
                        }
                    }
                }
            }
        }
        @if status.deliveries.is_empty() && !status.planning {
            p.muted { "The ledger holds nothing for this user yet." }
        }
    }
}

#[derive(Deserialize)]
struct Replay {
    csrf: String,
    target: Option<String>,
}

async fn replay(
    admin: Admin,
    ops: web::Data<Operator>,
    id: web::Path<String>,
    form: web::Form<Replay>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let form = form.into_inner();
    if let Some(target) = &form.target {
        configured_target(&ops, target)?;
    }
    let replayed = ops
        .replay(
            ReplayRequest {
                user_id: Some(id.to_string()),
                target: form.target.clone(),
                dead_only: false,
            },
            &admin.actor(),
        )
        .await?;
    tracing::info!(client = %admin.client, user_id = %id, target = ?form.target, replayed, "console: replayed");
    Ok(see_other(&format!(
        "/console/users/{id}?done={}",
        query_value(&format!("{replayed} deliveries replayed"))
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(planning: bool) -> String {
        let admin = Admin {
            client: "admin".into(),
            csrf: "t".into(),
        };
        let status = UserStatus {
            user_id: "u1".into(),
            deliveries: Vec::new(),
            history: Vec::new(),
            adoptions: Vec::new(),
            planning,
        };
        render_user(
            &admin,
            "u1",
            None,
            &status,
            &|_| Vec::new(),
            &BTreeMap::new(),
            None,
        )
        .into_string()
    }

    #[test]
    fn a_user_waiting_to_be_planned_says_so_instead_of_an_empty_ledger() {
        let waiting = page(true);
        assert!(waiting.contains("waiting to be planned"), "{waiting}");
        assert!(!waiting.contains("holds nothing"), "{waiting}");
        let planned = page(false);
        assert!(!planned.contains("waiting to be planned"), "{planned}");
        assert!(planned.contains("The ledger holds nothing for this user yet."));
    }
}
