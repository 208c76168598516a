//! SCIM HTTP routes. Every handler has one shape: extract, parse, call the service, render.

use actix_web::http::StatusCode;
use actix_web::{middleware, web, HttpRequest, HttpResponse};

use crate::config::ScimSettings;
use crate::ledger::ResourceKind;
use crate::scim::error::ScimError;
use crate::scim::request::{if_match, if_none_match, ListRequest, Projection, ScimBody};
use crate::scim::service::ScimService;
use crate::scim::{auth, bulk, discovery, response};

/// What every SCIM handler needs.
pub(crate) struct ScimState {
    pub service: ScimService,
    pub settings: ScimSettings,
}

type Kind = web::Data<ResourceKind>;
type State = web::Data<ScimState>;
type Reply = Result<HttpResponse, ScimError>;

/// Mounts the SCIM API under `/scim/v2`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, body_limit: usize, bulk_limit: usize) {
    cfg.service(
        web::scope("/scim/v2")
            .wrap(middleware::from_fn(auth::require_bearer))
            .app_data(web::PayloadConfig::new(body_limit))
            .service(resource_scope("/Users", ResourceKind::User))
            .service(resource_scope("/Groups", ResourceKind::Group))
            .service(
                web::resource("/Bulk")
                    .app_data(web::PayloadConfig::new(bulk_limit.max(body_limit)))
                    .route(web::post().to(bulk::handle))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/ServiceProviderConfig")
                    .route(web::get().to(discovery::service_provider_config))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/ResourceTypes")
                    .route(web::get().to(discovery::resource_types))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/ResourceTypes/{name}")
                    .route(web::get().to(discovery::resource_type))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/Schemas")
                    .route(web::get().to(discovery::schemas))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/Schemas/{id}")
                    .route(web::get().to(discovery::schema))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/.search")
                    .route(web::post().to(search_all))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(web::resource("/Me").to(me))
            .default_service(web::to(not_found)),
    );
}

fn resource_scope(path: &str, kind: ResourceKind) -> actix_web::Scope {
    web::scope(path)
        .app_data(web::Data::new(kind))
        .service(
            web::resource("")
                .route(web::get().to(list))
                .route(web::post().to(create))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/.search")
                .route(web::post().to(search))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{id}")
                .route(web::get().to(get))
                .route(web::put().to(replace))
                .route(web::patch().to(patch))
                .route(web::delete().to(delete))
                .default_service(web::to(method_not_allowed)),
        )
        // Without it, a deeper path such as /Users/{id}/x got an empty 404.
        .default_service(web::to(not_found))
}

async fn create(state: State, kind: Kind, req: HttpRequest, body: ScimBody) -> Reply {
    let projection = Projection::from_query(&req)?;
    let created = state.service.create(**kind, body.0).await?;
    let schema = state.service.schema(**kind);
    Ok(response::resource(
        StatusCode::CREATED,
        &req,
        created,
        schema,
        &projection,
    ))
}

async fn get(state: State, kind: Kind, req: HttpRequest, id: web::Path<String>) -> Reply {
    let projection = Projection::from_query(&req)?;
    let found = state.service.get(**kind, &id).await?;
    if if_none_match(req.headers()).is_some_and(|c| c.matches(found.version)) {
        return Ok(HttpResponse::NotModified()
            .insert_header((actix_web::http::header::ETAG, found.etag()))
            .finish());
    }
    let schema = state.service.schema(**kind);
    Ok(response::resource(
        StatusCode::OK,
        &req,
        found,
        schema,
        &projection,
    ))
}

async fn replace(
    state: State,
    kind: Kind,
    req: HttpRequest,
    id: web::Path<String>,
    body: ScimBody,
) -> Reply {
    let projection = Projection::from_query(&req)?;
    let replaced = state
        .service
        .replace(**kind, &id, body.0, if_match(req.headers()))
        .await?;
    let schema = state.service.schema(**kind);
    Ok(response::resource(
        StatusCode::OK,
        &req,
        replaced,
        schema,
        &projection,
    ))
}

async fn patch(
    state: State,
    kind: Kind,
    req: HttpRequest,
    id: web::Path<String>,
    body: ScimBody,
) -> Reply {
    let projection = Projection::from_query(&req)?;
    let patched = state
        .service
        .patch(**kind, &id, body.0, if_match(req.headers()))
        .await?;
    let schema = state.service.schema(**kind);
    Ok(response::resource(
        StatusCode::OK,
        &req,
        patched,
        schema,
        &projection,
    ))
}

async fn delete(state: State, kind: Kind, req: HttpRequest, id: web::Path<String>) -> Reply {
    state
        .service
        .delete(**kind, &id, if_match(req.headers()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list(state: State, kind: Kind, req: HttpRequest) -> Reply {
    let request = ListRequest::from_query(&req, &state.settings)?;
    let page = state.service.list(**kind, request.query).await?;
    let schema = state.service.schema(**kind);
    Ok(response::list(&req, page, schema, &request.projection))
}

async fn search(state: State, kind: Kind, req: HttpRequest, body: ScimBody) -> Reply {
    let request = ListRequest::from_search(&body.0, &state.settings)?;
    let page = state.service.list(**kind, request.query).await?;
    let schema = state.service.schema(**kind);
    Ok(response::list(&req, page, schema, &request.projection))
}

/// `POST /.search` at the root: users and groups together, users first.
async fn search_all(state: State, req: HttpRequest, body: ScimBody) -> Reply {
    let request = ListRequest::from_search(&body.0, &state.settings)?;
    let page = state.service.search_all(request.query).await?;
    Ok(response::list_mixed(
        &req,
        page,
        &state.service,
        &request.projection,
    ))
}

async fn me() -> Reply {
    Err(ScimError::NotImplemented(
        "/Me is not supported: identity providers provision users through /Users".into(),
    ))
}

async fn method_not_allowed(req: HttpRequest) -> Reply {
    Err(ScimError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.path()
    )))
}

async fn not_found(req: HttpRequest) -> Reply {
    Err(ScimError::NotFound(format!(
        "no SCIM endpoint at {}",
        req.path()
    )))
}
