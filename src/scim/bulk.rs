//! `POST /Bulk` (RFC 7644 section 3.7): many operations in one request, with `bulkId`
//! references between them resolved whatever order they arrive in.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::ledger::ResourceKind;
use crate::scim::error::ScimError;
use crate::scim::request::{base_url, ScimBody};
use crate::scim::response::{json_response, location};
use crate::scim::routes::ScimState;
use crate::scim::service::{Precondition, Resource};

pub(crate) const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub(crate) const BULK_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
const BULK_ID_PREFIX: &str = "bulkId:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One operation of the request, as parsed.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    bulk_id: Option<String>,
    version: Option<String>,
    path: String,
    data: Option<Value>,
}

pub(crate) async fn handle(
    state: web::Data<ScimState>,
    req: HttpRequest,
    body: ScimBody,
) -> Result<HttpResponse, ScimError> {
    let settings = &state.settings;
    let size = body.0.to_string().len();
    if size > settings.bulk_max_payload_bytes {
        return Err(ScimError::PayloadTooLarge(format!(
            "the bulk request is {size} bytes; the limit is {}",
            settings.bulk_max_payload_bytes
        )));
    }
    let (operations, fail_on_errors) = parse(&body.0)?;
    if operations.len() > settings.bulk_max_operations {
        return Err(ScimError::PayloadTooLarge(format!(
            "the bulk request has {} operations; the limit is {}",
            operations.len(),
            settings.bulk_max_operations
        )));
    }
    let base = base_url(&req);
    let results = run(&state, &base, operations, fail_on_errors).await;
    Ok(json_response(
        StatusCode::OK,
        &json!({"schemas": [BULK_RESPONSE_SCHEMA], "Operations": results}),
    ))
}

fn parse(body: &Value) -> Result<(Vec<Operation>, Option<usize>), ScimError> {
    let Value::Object(map) = body else {
        return Err(ScimError::InvalidSyntax(
            "a bulk request must be a JSON object".into(),
        ));
    };
    let get = |name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let listed = get("schemas").and_then(Value::as_array).is_some_and(|s| {
        s.iter().any(|u| {
            u.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST_SCHEMA))
        })
    });
    if !listed {
        return Err(ScimError::InvalidSyntax(format!(
            "a bulk request must list the schema {BULK_REQUEST_SCHEMA}"
        )));
    }
    let fail_on_errors = match get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            ScimError::InvalidValue("failOnErrors must be a positive integer".into())
        })? as usize),
    };
    let Some(Value::Array(raw)) = get("Operations") else {
        return Err(ScimError::InvalidSyntax(
            "a bulk request needs an \"Operations\" array".into(),
        ));
    };
    let operations: Vec<Operation> = raw
        .iter()
        .enumerate()
        .map(|(index, op)| parse_operation(index, op))
        .collect::<Result<_, _>>()?;
    refuse_duplicate_bulk_ids(&operations)?;
    Ok((operations, fail_on_errors))
}

/// RFC 7644 section 3.7 has each bulkId identify one new resource. With two operations
/// sharing one, `bulkId:x` could name either resource; the whole request is refused before
/// anything runs, as failing only the later operation would still leave the earlier
/// resource created and references to it resolved by request order alone.
fn refuse_duplicate_bulk_ids(operations: &[Operation]) -> Result<(), ScimError> {
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    for (index, op) in operations.iter().enumerate() {
        let Some(bulk_id) = op.bulk_id.as_deref() else {
            continue;
        };
        if let Some(first) = first_use.insert(bulk_id, index) {
            return Err(ScimError::InvalidValue(format!(
                "bulkId \"{bulk_id}\" is used by Operations[{first}] and Operations[{index}]; \
                 each bulkId must be unique within a request"
            )));
        }
    }
    Ok(())
}

fn parse_operation(index: usize, op: &Value) -> Result<Operation, ScimError> {
    let Value::Object(op) = op else {
        return Err(ScimError::InvalidSyntax(format!(
            "Operations[{index}] must be an object"
        )));
    };
    let get = |name: &str| {
        op.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let text = |name: &str| get(name).and_then(Value::as_str).map(str::to_owned);
    let method = match text("method").map(|m| m.to_ascii_uppercase()).as_deref() {
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("PATCH") => Method::Patch,
        Some("DELETE") => Method::Delete,
        other => {
            return Err(ScimError::InvalidSyntax(format!(
                "Operations[{index}].method must be POST, PUT, PATCH or DELETE, not {other:?}"
            )))
        }
    };
    let path = text("path")
        .ok_or_else(|| ScimError::InvalidSyntax(format!("Operations[{index}] needs a \"path\"")))?;
    let bulk_id = text("bulkId");
    if method == Method::Post && bulk_id.is_none() {
        return Err(ScimError::InvalidSyntax(format!(
            "Operations[{index}] is a POST and needs a \"bulkId\""
        )));
    }
    let data = get("data").cloned();
    if method != Method::Delete && data.is_none() {
        return Err(ScimError::InvalidSyntax(format!(
            "Operations[{index}] needs \"data\""
        )));
    }
    Ok(Operation {
        method,
        bulk_id,
        version: text("version"),
        path,
        data,
    })
}

/// Runs operations in request order, deferring those that reference a bulkId created by a
/// later operation, until everything ran or nothing more can.
async fn run(
    state: &ScimState,
    base: &str,
    operations: Vec<Operation>,
    fail_on_errors: Option<usize>,
) -> Vec<Value> {
    // bulkIds are unique (see `refuse_duplicate_bulk_ids`), so each names one operation. The
    // references are found once: a chain of operations each naming the next one runs one
    // per round, and walking every pending id for every reference in every round made such
    // a request cubic in its length.
    let declared: HashMap<String, usize> = operations
        .iter()
        .enumerate()
        .filter_map(|(index, op)| op.bulk_id.clone().map(|id| (id, index)))
        .collect();
    let mut results: Vec<Option<Value>> = vec![None; operations.len()];
    let mut created: HashMap<String, String> = HashMap::new();
    let mut pending: Vec<(usize, Operation, Vec<String>)> = operations
        .into_iter()
        .enumerate()
        .map(|(index, op)| {
            let refs = references(&op);
            (index, op, refs)
        })
        .collect();
    let mut errors = 0usize;

    while !pending.is_empty() {
        let mut deferred = Vec::new();
        let mut progressed = false;
        for (index, op, refs) in pending {
            if fail_on_errors.is_some_and(|limit| errors >= limit) {
                break;
            }
            let waiting = refs.iter().any(|r| {
                !created.contains_key(r)
                    && declared
                        .get(r)
                        .is_some_and(|&i| i != index && results[i].is_none())
            });
            if waiting {
                deferred.push((index, op, refs));
                continue;
            }
            progressed = true;
            let outcome = execute(state, &op, &created).await;
            let entry = match outcome {
                Ok((status, resource)) => {
                    if let (Some(bulk_id), Some(resource)) = (&op.bulk_id, &resource) {
                        created.insert(bulk_id.clone(), resource.id.clone());
                    }
                    success_entry(state, base, &op, status, resource.as_ref())
                }
                Err(err) => {
                    errors += 1;
                    failure_entry(&op, &err)
                }
            };
            results[index] = Some(entry);
        }
        if !progressed {
            // What is left references each other in a cycle.
            for (index, op, _) in deferred {
                let err = ScimError::InvalidValue(format!(
                    "the bulkId references of this {} cannot be resolved (circular)",
                    op.method.as_str()
                ));
                results[index] = Some(failure_entry(&op, &err));
            }
            break;
        }
        if fail_on_errors.is_some_and(|limit| errors >= limit) {
            break;
        }
        pending = deferred;
    }
    results.into_iter().flatten().collect()
}

/// Every `bulkId:x` the operation mentions, in its path or anywhere in its data.
fn references(op: &Operation) -> Vec<String> {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                    found.push(id.to_owned());
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            Value::Object(map) => map.values().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for segment in op.path.split('/') {
        if let Some(id) = segment.strip_prefix(BULK_ID_PREFIX) {
            found.push(id.to_owned());
        }
    }
    if let Some(data) = &op.data {
        walk(data, &mut found);
    }
    found
}

fn substitute(value: &Value, created: &HashMap<String, String>) -> Result<Value, ScimError> {
    Ok(match value {
        Value::String(s) => match s.strip_prefix(BULK_ID_PREFIX) {
            Some(id) => Value::String(resolve(id, created)?),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute(v, created))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, created)?)))
                .collect::<Result<Map<_, _>, ScimError>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve(bulk_id: &str, created: &HashMap<String, String>) -> Result<String, ScimError> {
    created.get(bulk_id).cloned().ok_or_else(|| {
        ScimError::InvalidValue(format!(
            "bulkId {bulk_id} does not name a resource created in this request"
        ))
    })
}

async fn execute(
    state: &ScimState,
    op: &Operation,
    created: &HashMap<String, String>,
) -> Result<(StatusCode, Option<Resource>), ScimError> {
    let (kind, id) = parse_path(&op.path, created)?;
    let data = op
        .data
        .as_ref()
        .map(|d| substitute(d, created))
        .transpose()?;
    let condition = op.version.as_deref().map(Precondition::parse);
    let service = &state.service;
    match (op.method, id) {
        (Method::Post, None) => {
            let resource = service.create(kind, data.unwrap_or_default()).await?;
            Ok((StatusCode::CREATED, Some(resource)))
        }
        (Method::Put, Some(id)) => {
            let resource = service
                .replace(kind, &id, data.unwrap_or_default(), condition)
                .await?;
            Ok((StatusCode::OK, Some(resource)))
        }
        (Method::Patch, Some(id)) => {
            let resource = service
                .patch(kind, &id, data.unwrap_or_default(), condition)
                .await?;
            Ok((StatusCode::OK, Some(resource)))
        }
        (Method::Delete, Some(id)) => {
            service.delete(kind, &id, condition).await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (Method::Post, Some(_)) => Err(ScimError::InvalidPath(format!(
            "POST goes to a collection such as /Users, not {}",
            op.path
        ))),
        (_, None) => Err(ScimError::InvalidPath(format!(
            "{} needs a resource path such as /Users/{{id}}, not {}",
            op.method.as_str(),
            op.path
        ))),
    }
}

fn parse_path(
    path: &str,
    created: &HashMap<String, String>,
) -> Result<(ResourceKind, Option<String>), ScimError> {
    let mut segments = path.trim_matches('/').splitn(2, '/');
    let kind = match segments.next() {
        Some(s) if s.eq_ignore_ascii_case("Users") => ResourceKind::User,
        Some(s) if s.eq_ignore_ascii_case("Groups") => ResourceKind::Group,
        _ => {
            return Err(ScimError::InvalidPath(format!(
                "bulk path {path} names no resource type (expected /Users or /Groups)"
            )))
        }
    };
    let id = match segments.next() {
        None | Some("") => None,
        Some(segment) => Some(match segment.strip_prefix(BULK_ID_PREFIX) {
            Some(bulk_id) => resolve(bulk_id, created)?,
            None => segment.to_owned(),
        }),
    };
    Ok((kind, id))
}

fn success_entry(
    state: &ScimState,
    base: &str,
    op: &Operation,
    status: StatusCode,
    resource: Option<&Resource>,
) -> Value {
    let mut entry = json!({"method": op.method.as_str(), "status": status.as_u16().to_string()});
    if let Some(bulk_id) = &op.bulk_id {
        entry["bulkId"] = json!(bulk_id);
    }
    if let Some(resource) = resource {
        let schema = state.service.schema(resource.kind);
        entry["location"] = json!(location(schema, base, &resource.id));
        entry["version"] = json!(resource.etag());
    } else if let Ok((kind, Some(id))) = parse_path(&op.path, &HashMap::new()) {
        entry["location"] = json!(location(state.service.schema(kind), base, &id));
    }
    entry
}

fn failure_entry(op: &Operation, err: &ScimError) -> Value {
    let mut entry = json!({
        "method": op.method.as_str(),
        "status": actix_web::ResponseError::status_code(err).as_u16().to_string(),
        "response": err.body(),
    });
    if let Some(bulk_id) = &op.bulk_id {
        entry["bulkId"] = json!(bulk_id);
    }
    entry
}
