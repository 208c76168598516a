//! Admin routes. Handlers are thin: parse, call the `Operator`, render JSON. The
//! authenticated client is the actor each action is audited under.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{self, Next};
use actix_web::{web, HttpMessage, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::admin::{AdminError, Reloader};
use crate::fanout::operator::{audit_query, Operator, ReplayRequest};
use crate::ledger::{Actor, DeliveryState};
use crate::reconcile::run::{RunRequest, Signal};
use crate::reconcile::service::Reconciles;
use crate::reconcile::ReconcileError;
use crate::scim::auth::{request_address, Authenticator};
use crate::scim::error::ScimError;

/// The authenticator of the admin API, kept apart from the SCIM clients' tokens.
pub(crate) struct AdminAuth(pub Authenticator);

type Reply = Result<HttpResponse, AdminError>;
type Ops = web::Data<Operator>;
/// The admin client that made the request, put there by `require_admin`.
type Who = web::ReqData<Actor>;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(middleware::from_fn(require_admin))
            // A query or body that does not parse is answered like every other admin error.
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                AdminError::BadRequest(format!("invalid query: {err}")).into()
            }))
            .app_data(web::JsonConfig::default().error_handler(|err, _| {
                AdminError::BadRequest(format!("invalid JSON body: {err}")).into()
            }))
            .route("/targets", web::get().to(targets))
            .route("/targets/{target}/pause", web::post().to(pause))
            .route("/targets/{target}/resume", web::post().to(resume))
            .route("/targets/{target}/held", web::get().to(held))
            .route("/targets/{target}/release", web::post().to(release))
            .route("/targets/{target}/discard", web::post().to(discard))
            .route("/audit", web::get().to(audit))
            .route("/deliveries", web::get().to(deliveries))
            .route("/users/{id}", web::get().to(user))
            .route("/omissions", web::get().to(omissions))
            .route("/replay", web::post().to(replay))
            .route("/mappings/reload", web::post().to(reload_mappings))
            .route("/users/{id}/sync", web::post().to(sync_user))
            .route("/reconcile", web::post().to(start_reconcile))
            .route("/reconcile/pause", web::post().to(pause_reconcile))
            .route("/reconcile/resume", web::post().to(resume_reconcile))
            .route("/reconcile/cancel", web::post().to(cancel_reconcile))
            .route("/reconcile/runs", web::get().to(reconcile_runs))
            .route("/reconcile/runs/{id}", web::get().to(reconcile_run))
            .route(
                "/reconcile/runs/{id}/findings",
                web::get().to(reconcile_findings),
            ),
    );
}

async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let Some(auth) = req.app_data::<web::Data<AdminAuth>>() else {
        return Err(AdminError::Unauthorized("no admin clients are configured".into()).into());
    };
    match auth.0.authenticate(request_address(&req), header) {
        Ok(client) => {
            req.extensions_mut()
                .insert(Actor::Admin(client.to_string()));
            next.call(req).await
        }
        Err(ScimError::RateLimited { retry_after_secs }) => {
            Err(AdminError::RateLimited { retry_after_secs }.into())
        }
        Err(_) => {
            Err(AdminError::Unauthorized("a valid admin bearer token is required".into()).into())
        }
    }
}

fn known_target(ops: &Operator, target: &str) -> Result<(), AdminError> {
    if ops.targets().iter().any(|t| t == target) {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!(
            "no target named {target}; configured: {}",
            ops.targets().join(", ")
        )))
    }
}

async fn targets(ops: Ops) -> Reply {
    let (lag, planning) = (ops.lag().await?, ops.planning().await?);
    Ok(HttpResponse::Ok().json(json!({
        "targets": lag,
        "planning": planning,
        "listings": ops.lookups(),
    })))
}

async fn pause(ops: Ops, target: web::Path<String>, who: Who) -> Reply {
    known_target(&ops, &target)?;
    ops.set_paused(&target, true, &who).await?;
    Ok(HttpResponse::Ok().json(json!({"target": *target, "paused": true})))
}

async fn resume(ops: Ops, target: web::Path<String>, who: Who) -> Reply {
    known_target(&ops, &target)?;
    ops.set_paused(&target, false, &who).await?;
    Ok(HttpResponse::Ok().json(json!({"target": *target, "paused": false})))
}

async fn held(ops: Ops, target: web::Path<String>) -> Reply {
    known_target(&ops, &target)?;
    Ok(HttpResponse::Ok().json(ops.held(&target).await?))
}

async fn release(ops: Ops, target: web::Path<String>, who: Who) -> Reply {
    known_target(&ops, &target)?;
    let released = ops.release(&target, &who).await?;
    Ok(HttpResponse::Ok().json(json!({"target": *target, "released": released})))
}

async fn discard(ops: Ops, target: web::Path<String>, who: Who) -> Reply {
    known_target(&ops, &target)?;
    let discarded = ops.discard(&target, &who).await?;
    Ok(HttpResponse::Ok().json(json!({"target": *target, "discarded": discarded})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    action: Option<String>,
    target: Option<String>,
    /// Entries before this `seq` (the `next_before` of the previous page).
    before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

async fn audit(ops: Ops, params: web::Query<AuditParams>) -> Reply {
    let params = params.into_inner();
    let query = audit_query(
        params.action.as_deref(),
        params.target,
        params.before,
        params.limit.unwrap_or(100),
    )
    .map_err(AdminError::BadRequest)?;
    let limit = query.limit;
    let entries = ops.audit(query).await?;
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|last| last.seq))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({"entries": entries, "next_before": next_before})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// pending, retrying, rejected, dead, delivered, held, or failed (= rejected + dead).
    state: Option<String>,
    target: Option<String>,
}

pub(crate) fn parse_states(state: Option<&str>) -> Result<Vec<DeliveryState>, String> {
    match state {
        None | Some("failed") => Ok(vec![DeliveryState::Rejected, DeliveryState::Dead]),
        Some(name) => DeliveryState::parse(name).map(|s| vec![s]).ok_or_else(|| {
            format!(
                "unknown state {name}: use pending, retrying, rejected, dead, delivered, held or \
                 failed"
            )
        }),
    }
}

async fn deliveries(ops: Ops, params: web::Query<ListParams>) -> Reply {
    let states = parse_states(params.state.as_deref()).map_err(AdminError::BadRequest)?;
    if let Some(target) = &params.target {
        known_target(&ops, target)?;
    }
    let rows = ops.list(&states, params.target.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({"deliveries": rows})))
}

async fn user(ops: Ops, id: web::Path<String>) -> Reply {
    let status = ops.user(&id).await?;
    if status.deliveries.is_empty() && status.history.is_empty() {
        return Err(AdminError::NotFound(format!(
            "the ledger has nothing for user {id}"
        )));
    }
    Ok(HttpResponse::Ok().json(status))
}

async fn omissions(ops: Ops) -> Reply {
    Ok(HttpResponse::Ok().json(json!({"omissions": ops.omissions().await?})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    user_id: Option<String>,
    target: Option<String>,
    #[serde(default)]
    dead_only: bool,
}

async fn replay(ops: Ops, body: web::Json<ReplayBody>, who: Who) -> Reply {
    let body = body.into_inner();
    if let Some(target) = &body.target {
        known_target(&ops, target)?;
    }
    if body.user_id.is_none() && body.target.is_none() {
        return Err(AdminError::BadRequest(
            "name a user_id, a target, or both: replaying everything at once is not offered".into(),
        ));
    }
    let replayed = ops
        .replay(
            ReplayRequest {
                user_id: body.user_id,
                target: body.target,
                dead_only: body.dead_only,
            },
            &who,
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"replayed": replayed})))
}

async fn reload_mappings(reloader: web::Data<Reloader>, who: Who) -> Reply {
    match reloader.reload(&who).await {
        Ok(report) => Ok(HttpResponse::Ok().json(json!({"reloaded": true, "report": report}))),
        Err(errors) => Ok(HttpResponse::BadRequest().json(json!({
            "reloaded": false,
            "detail": "the new mappings were refused; the previous ones stay in force",
            "errors": errors,
        }))),
    }
}

impl From<ReconcileError> for AdminError {
    fn from(err: ReconcileError) -> Self {
        match err {
            ReconcileError::UnknownTarget { .. }
            | ReconcileError::UnknownUser(_)
            | ReconcileError::UnknownRun(_) => AdminError::NotFound(err.to_string()),
            ReconcileError::UnknownKind(_) => AdminError::BadRequest(err.to_string()),
            ReconcileError::Busy(_) | ReconcileError::Cancelled => {
                AdminError::Conflict(err.to_string())
            }
            ReconcileError::Target { .. } => AdminError::Upstream(err.to_string()),
            ReconcileError::Ledger(err) => AdminError::from(err),
        }
    }
}

type Recs = web::Data<Reconciles>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    target: Option<String>,
    #[serde(default)]
    apply: bool,
}

/// Starts a run in the background: 202 with its id, to follow at /admin/reconcile/runs/{id}.
async fn start_reconcile(recs: Recs, body: web::Bytes, who: Who) -> Reply {
    // No body at all asks for the default run; a body must be read in full, typos refused.
    let body: ReconcileBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReconcileBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| AdminError::BadRequest(format!("unreadable request body: {err}")))?
    };
    let run_id = recs
        .start(RunRequest {
            target: body.target,
            apply: body.apply,
            actor: who.into_inner(),
        })
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/admin/reconcile/runs/{run_id}")))
        .json(json!({"run": run_id, "status": "running"})))
}

async fn pause_reconcile(recs: Recs, who: Who) -> Reply {
    recs.signal(Signal::Pause, &who).await;
    Ok(HttpResponse::Ok().json(json!({"signal": "pause"})))
}

async fn resume_reconcile(recs: Recs, who: Who) -> Reply {
    recs.signal(Signal::Run, &who).await;
    Ok(HttpResponse::Ok().json(json!({"signal": "resume"})))
}

async fn cancel_reconcile(recs: Recs, who: Who) -> Reply {
    recs.signal(Signal::Cancel, &who).await;
    Ok(HttpResponse::Ok().json(json!({"signal": "cancel"})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsParams {
    limit: Option<usize>,
}

async fn reconcile_runs(recs: Recs, params: web::Query<RunsParams>) -> Reply {
    let limit = params.limit.unwrap_or(20).clamp(1, 1000);
    Ok(HttpResponse::Ok().json(json!({"runs": recs.runs(limit).await?})))
}

/// A run id from the path, refused clearly when it is not a number.
fn run_id(text: &str) -> Result<i64, AdminError> {
    text.parse()
        .map_err(|_| AdminError::NotFound(format!("no reconcile run {text}")))
}

async fn reconcile_run(recs: Recs, id: web::Path<String>) -> Reply {
    Ok(HttpResponse::Ok().json(recs.run(run_id(&id)?).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingsParams {
    kind: Option<String>,
    /// The `seq` of the last finding already read.
    after: Option<i64>,
    limit: Option<usize>,
}

async fn reconcile_findings(
    recs: Recs,
    id: web::Path<String>,
    params: web::Query<FindingsParams>,
) -> Reply {
    let run_id = run_id(&id)?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let findings = recs
        .findings(
            run_id,
            params.kind.as_deref(),
            params.after.unwrap_or(0),
            limit,
        )
        .await?;
    let next = (findings.len() == limit)
        .then(|| findings.last().map(|f| f.seq))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({"run": run_id, "findings": findings, "next": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncParams {
    target: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Provisions one user now (or, with `dry_run=true`, shows what would be sent).
async fn sync_user(
    recs: Recs,
    id: web::Path<String>,
    params: web::Query<SyncParams>,
    who: Who,
) -> Reply {
    let report = recs
        .sync(&id, params.target.as_deref(), params.dry_run, &who)
        .await?;
    Ok(HttpResponse::Ok().json(report))
}
