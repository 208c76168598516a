//! Sync now (`POST /console/users/{id}/sync`): provisions one user on demand through the
//! same `Reconciles::sync` as the admin API and shows its step-by-step report, the account
//! as each target holds it included.

use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use crate::reconcile::report;
use crate::reconcile::service::Reconciles;

use super::layout::{self, Nav};
use super::session::Admin;
use super::ConsoleError;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/{id}/sync", web::post().to(sync));
}

#[derive(Deserialize)]
struct SyncForm {
    csrf: String,
    #[serde(default)]
    dry_run: bool,
}

async fn sync(
    admin: Admin,
    recs: web::Data<Reconciles>,
    id: web::Path<String>,
    form: web::Form<SyncForm>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    let report = recs.sync(&id, None, form.dry_run, &admin.actor()).await?;
    tracing::info!(client = %admin.client, user_id = %id, dry_run = form.dry_run, "console: user synced");
    let body = html! {
        p { a href=(format!("/console/users/{id}")) { "Back to the user" } }
        pre.report { (report::sync(&report)) }
    };
    let title = if form.dry_run { "Sync dry run" } else { "Sync" };
    Ok(layout::page(title, &admin, Nav::Users, body))
}
