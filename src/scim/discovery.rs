//! Discovery endpoints (RFC 7644 section 4): what this service provider supports, told
//! truthfully from the same settings and schemas the rest of the API uses.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::ledger::ResourceKind;
use crate::scim::error::ScimError;
use crate::scim::request::base_url;
use crate::scim::response::{json_response, LIST_RESPONSE_SCHEMA};
use crate::scim::routes::ScimState;
use crate::scim::schema::SchemaDef;

type Reply = Result<HttpResponse, ScimError>;

pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

pub(crate) async fn service_provider_config(
    state: web::Data<ScimState>,
    req: HttpRequest,
) -> Reply {
    let settings = &state.settings;
    let base = base_url(&req);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
            "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
            // Only RFC 7643's attributes: strict clients (the conformance suite among them)
            // refuse a configuration with others, even under an extension schema. The PATCH
            // and filter limits are told by the 400 that enforces them and in docs/scim.md.
            "patch": {"supported": true},
            "bulk": {
                "supported": true,
                "maxOperations": settings.bulk_max_operations,
                "maxPayloadSize": settings.bulk_max_payload_bytes,
            },
            "filter": {
                "supported": true,
                "maxResults": settings.max_page_size,
            },
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A bearer token per identity-provider client, in the Authorization header.",
                "specUri": "https://datatracker.ietf.org/doc/html/rfc6750",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{base}/ServiceProviderConfig"),
            },
        }),
    ))
}

fn kinds() -> [ResourceKind; 2] {
    [ResourceKind::User, ResourceKind::Group]
}

pub(crate) async fn resource_types(state: web::Data<ScimState>, req: HttpRequest) -> Reply {
    let base = base_url(&req);
    let types: Vec<Value> = kinds()
        .into_iter()
        .map(|kind| state.service.schema(kind).resource_type_json(&base))
        .collect();
    Ok(list(types))
}

pub(crate) async fn resource_type(
    state: web::Data<ScimState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Reply {
    let base = base_url(&req);
    kinds()
        .into_iter()
        .map(|kind| state.service.schema(kind))
        .find(|schema| schema.name.eq_ignore_ascii_case(&name))
        .map(|schema| json_response(StatusCode::OK, &schema.resource_type_json(&base)))
        .ok_or_else(|| ScimError::NotFound(format!("no resource type named {name}")))
}

fn all_schemas(state: &ScimState) -> Vec<&SchemaDef> {
    kinds()
        .into_iter()
        .flat_map(|kind| {
            let schema = state.service.schema(kind);
            std::iter::once(&schema.core).chain(schema.extensions.iter().map(|(ext, _)| ext))
        })
        .collect()
}

pub(crate) async fn schemas(state: web::Data<ScimState>, req: HttpRequest) -> Reply {
    let base = base_url(&req);
    let schemas = all_schemas(&state)
        .into_iter()
        .map(|schema| schema.to_json(&base))
        .collect();
    Ok(list(schemas))
}

pub(crate) async fn schema(
    state: web::Data<ScimState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Reply {
    let base = base_url(&req);
    all_schemas(&state)
        .into_iter()
        .find(|schema| schema.id.eq_ignore_ascii_case(&id))
        .map(|schema| json_response(StatusCode::OK, &schema.to_json(&base)))
        .ok_or_else(|| ScimError::NotFound(format!("no schema with id {id}")))
}

fn list(resources: Vec<Value>) -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}
