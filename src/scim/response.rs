//! Rendering of SCIM answers: resources with `meta.location`, projection and ETag, and list
//! responses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::scim::error::SCIM_CONTENT_TYPE;
use crate::scim::projection::project;
use crate::scim::request::{base_url, Projection};
use crate::scim::schema::ResourceSchema;
use crate::scim::service::{ListPage, Resource, ScimService};

pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The resource as the client sees it: with its location, and only the requested attributes.
pub fn render(
    resource: &Resource,
    schema: &ResourceSchema,
    base: &str,
    projection: &Projection,
) -> Value {
    let mut value = resource.value.clone();
    value["meta"]["location"] = Value::String(location(schema, base, &resource.id));
    add_references(&mut value, base);
    project(&value, schema, &projection.attributes, &projection.excluded)
}

/// Fills `$ref` of group members and of a user's groups, which depend on the URL the
/// client used and so are not stored.
fn add_references(value: &mut Value, base: &str) {
    for attribute in ["members", "groups"] {
        let Some(Value::Array(entries)) = value.get_mut(attribute) else {
            continue;
        };
        for entry in entries {
            let Some(id) = entry
                .get("value")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            // A user's `groups` are always groups; a member is a group only when typed so.
            let is_group =
                attribute == "groups" || entry.get("type").and_then(Value::as_str) == Some("Group");
            let endpoint = if is_group { "Groups" } else { "Users" };
            entry["$ref"] = Value::String(format!("{base}/{endpoint}/{id}"));
        }
    }
}

pub fn location(schema: &ResourceSchema, base: &str, id: &str) -> String {
    format!("{base}{}/{id}", schema.endpoint)
}

pub fn resource(
    status: StatusCode,
    req: &HttpRequest,
    resource: &Resource,
    schema: &ResourceSchema,
    projection: &Projection,
) -> HttpResponse {
    let base = base_url(req);
    let body = render(resource, schema, &base, projection);
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, SCIM_CONTENT_TYPE))
        .insert_header((header::ETAG, resource.etag()));
    if status == StatusCode::CREATED {
        response.insert_header((header::LOCATION, location(schema, &base, &resource.id)));
    }
    response.body(body.to_string())
}

pub fn list(
    req: &HttpRequest,
    page: &ListPage,
    schema: &ResourceSchema,
    projection: &Projection,
) -> HttpResponse {
    let base = base_url(req);
    let resources: Vec<Value> = page
        .resources
        .iter()
        .map(|r| render(r, schema, &base, projection))
        .collect();
    list_body(page, resources)
}

/// A list whose resources may be of several types (root `/.search`).
pub fn list_mixed(
    req: &HttpRequest,
    page: &ListPage,
    service: &ScimService,
    projection: &Projection,
) -> HttpResponse {
    let base = base_url(req);
    let resources: Vec<Value> = page
        .resources
        .iter()
        .map(|r| render(r, service.schema(r.kind), &base, projection))
        .collect();
    list_body(page, resources)
}

fn list_body(page: &ListPage, resources: Vec<Value>) -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": page.total_results,
            "startIndex": page.start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

pub fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, SCIM_CONTENT_TYPE))
        .body(body.to_string())
}
