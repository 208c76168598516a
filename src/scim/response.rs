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

pub(crate) const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The resource as the client sees it: with its location, and only the requested attributes.
pub(crate) fn render(
    resource: Resource,
    schema: &ResourceSchema,
    base: &str,
    projection: &Projection,
) -> Value {
    let location = Value::String(location(schema, base, &resource.id));
    let mut value = resource.value;
    if has_references(&value) {
        value["meta"]["location"] = location;
        add_references(&mut value, base);
        return project(value, schema, &projection.attributes, &projection.excluded);
    }
    // Without references to fill, projecting first and adding the location afterwards
    // gives the same answer with less to project: the projection judges each attribute and
    // sub-attribute on its own, so whether it keeps `meta.location` can be asked of a
    // value holding nothing else.
    let mut projected = project(value, schema, &projection.attributes, &projection.excluded);
    if keeps_location(schema, projection) {
        match projected.get_mut("meta") {
            Some(Value::Object(meta)) => {
                meta.insert("location".to_owned(), location);
            }
            _ => {
                if let Value::Object(members) = &mut projected {
                    members.insert("meta".to_owned(), json!({ "location": location }));
                }
            }
        }
    }
    projected
}

/// Whether the resource holds group members or groups, whose `$ref` depends on the URL.
fn has_references(value: &Value) -> bool {
    ["members", "groups"].iter().any(|attribute| {
        value
            .get(attribute)
            .and_then(Value::as_array)
            .is_some_and(|entries| !entries.is_empty())
    })
}

fn keeps_location(schema: &ResourceSchema, projection: &Projection) -> bool {
    let probe = json!({"meta": {"location": ""}});
    let projected = project(probe, schema, &projection.attributes, &projection.excluded);
    projected
        .get("meta")
        .and_then(|meta| meta.get("location"))
        .is_some()
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

pub(crate) fn location(schema: &ResourceSchema, base: &str, id: &str) -> String {
    format!("{base}{}/{id}", schema.endpoint)
}

pub(crate) fn resource(
    status: StatusCode,
    req: &HttpRequest,
    resource: Resource,
    schema: &ResourceSchema,
    projection: &Projection,
) -> HttpResponse {
    let base = base_url(req);
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, SCIM_CONTENT_TYPE))
        .insert_header((header::ETAG, resource.etag()));
    if status == StatusCode::CREATED {
        response.insert_header((header::LOCATION, location(schema, &base, &resource.id)));
    }
    let body = render(resource, schema, &base, projection);
    response.body(to_bytes(&body))
}

/// JSON text of an answer. Writing bytes directly skips the formatter layer that
/// `to_string` goes through; a `Value` always serialises.
fn to_bytes(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

pub(crate) fn list(
    req: &HttpRequest,
    page: ListPage,
    schema: &ResourceSchema,
    projection: &Projection,
) -> HttpResponse {
    let base = base_url(req);
    let resources: Vec<Value> = page
        .resources
        .into_iter()
        .map(|r| render(r, schema, &base, projection))
        .collect();
    list_body(page.total_results, page.start_index, resources)
}

/// A list whose resources may be of several types (root `/.search`).
pub(crate) fn list_mixed(
    req: &HttpRequest,
    page: ListPage,
    service: &ScimService,
    projection: &Projection,
) -> HttpResponse {
    let base = base_url(req);
    let resources: Vec<Value> = page
        .resources
        .into_iter()
        .map(|r| {
            let schema = service.schema(r.kind);
            render(r, schema, &base, projection)
        })
        .collect();
    list_body(page.total_results, page.start_index, resources)
}

fn list_body(total_results: u64, start_index: u64, resources: Vec<Value>) -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": total_results,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, SCIM_CONTENT_TYPE))
        .body(to_bytes(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ResourceKind;
    use crate::scim::projection::parse_attribute_list;

    /// Rendering as it was before the shortcut: a full copy, then the projection.
    fn copied_then_projected(
        resource: &Resource,
        schema: &ResourceSchema,
        base: &str,
        projection: &Projection,
    ) -> Value {
        let mut value = resource.value.clone();
        value["meta"]["location"] = Value::String(location(schema, base, &resource.id));
        add_references(&mut value, base);
        project(value, schema, &projection.attributes, &projection.excluded)
    }

    #[test]
    fn projecting_first_answers_exactly_what_copying_first_did() {
        let schema = ResourceSchema::user();
        let resource = Resource {
            kind: ResourceKind::User,
            id: "u-1".into(),
            version: 2,
            value: json!({
                "id": "u-1",
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ana",
                "name": {"givenName": "Ana", "familyName": "Lima"},
                "emails": [{"value": "a@x", "type": "work", "primary": true}],
                "meta": {"resourceType": "User", "created": "t", "lastModified": "t", "version": "W/\"2\""}
            }),
        };
        let base = "http://127.0.0.1:8080/scim/v2";
        let cases = [
            ("", ""),
            ("userName", ""),
            ("meta", ""),
            ("meta.location", ""),
            ("meta.created", ""),
            ("name.givenName,emails", ""),
            ("", "meta"),
            ("", "meta.location"),
            ("", "userName,name"),
        ];
        for (attributes, excluded) in cases {
            let projection = Projection {
                attributes: parse_attribute_list(attributes).unwrap(),
                excluded: parse_attribute_list(excluded).unwrap(),
            };
            let fast = render(resource.clone(), &schema, base, &projection);
            let reference = copied_then_projected(&resource, &schema, base, &projection);
            // Compared as text, so the order of members counts too.
            assert_eq!(
                fast.to_string(),
                reference.to_string(),
                "attributes={attributes} excluded={excluded}"
            );
        }
    }
}
