//! Emulator of the Oracle Primavera Cloud user service: a token request with Basic auth
//! naming the tenant code, the `x-prime-tenant-code` header, the API reference's lengths and
//! allowed values, PUT naming its user in the body and answering 204, licences released
//! with `action: "DELETE"`, and about 55 requests per second before a bare 429.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::emulator::{
    bearer, header, json_object, timestamp, Accounts, Counts, EmulatorState, Flavor, Record,
    Refusal, Reply,
};
use super::{DEV_PASSWORD, DEV_PRIMAVERA_TENANT, DEV_USERNAME};
use crate::targets::primavera::payload::{schema, PRODUCTS, PRODUCT_NAMES, USER_ID};
use crate::targets::{FieldKind, Payload};

/// Requests per second before the service answers 429.
pub const RATE_LIMIT_PER_SECOND: u32 = 55;
/// The `Version` header values the service understands (3 is the latest).
const VERSIONS: std::ops::RangeInclusive<u32> = 1..=3;
const REQUIRED: &[&str] = &["email", "firstName", "lastName"];
const INVALID_JSON: &str = "Invalid input: the request body is not a JSON object.";

pub(crate) fn flavor() -> Flavor {
    Flavor {
        base_path: "/api/restapi",
        error_body,
        seed,
        routes,
    }
}

fn error_body(status: StatusCode, message: &str, path: &str, at: SystemTime) -> Value {
    json!({
        "status": status.as_u16(),
        "message": message,
        "path": path,
        "timestamp": timestamp(at),
    })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/primediscovery/apitoken/request", web::post().to(token))
        .service(
            web::scope("/api/restapi")
                .route("/user", web::get().to(list))
                .route("/user", web::post().to(create))
                .route("/user", web::put().to(update))
                .route("/user/{id}", web::get().to(read))
                .route("/user/{id}", web::delete().to(delete)),
        );
}

fn authorize(state: &EmulatorState, req: &HttpRequest) -> Result<(), Refusal> {
    let token_ok = bearer(req).is_some_and(|token| state.token_valid(token));
    let tenant_ok = header(req, "x-prime-tenant-code") == Some(DEV_PRIMAVERA_TENANT);
    if !(token_ok && tenant_ok) {
        return Err(state.refuse(StatusCode::UNAUTHORIZED, "Unauthorized", req));
    }
    match header(req, "version").map(str::parse::<u32>) {
        None => Ok(()),
        Some(Ok(version)) if VERSIONS.contains(&version) => Ok(()),
        Some(_) => Err(state.refuse(StatusCode::BAD_REQUEST, "Unsupported API version.", req)),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    scope: Option<String>,
}

/// `user:password` from a Basic `Authorization` header.
fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let encoded = header(req, "authorization")?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn token(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    params: web::Query<TokenQuery>,
) -> Reply {
    if params.scope.as_deref().is_none_or(str::is_empty) {
        return Err(state.refuse(
            StatusCode::BAD_REQUEST,
            "The scope parameter is required.",
            &req,
        ));
    }
    let expected = (DEV_USERNAME.to_owned(), DEV_PASSWORD.to_owned());
    if basic_credentials(&req) != Some(expected) {
        return Err(state.refuse(StatusCode::UNAUTHORIZED, "Invalid credentials.", &req));
    }
    let ([access], _) = state.issue_tokens();
    Ok(HttpResponse::Ok().json(json!({
        "access_token": access,
        "expiresIn": state.token_ttl_secs(),
        "primeTenantCode": DEV_PRIMAVERA_TENANT,
        "requestHost": req.connection_info().host(),
    })))
}

/// The first rule a body breaks, checked against the API reference's schema.
fn violation(user: &Payload) -> Option<String> {
    for field in REQUIRED {
        if user
            .get(*field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Some(format!("{field} is required."));
        }
    }
    for spec in schema()
        .fields
        .iter()
        .filter(|spec| spec.kind == FieldKind::String)
    {
        let Some(value) = user.get(spec.name).filter(|value| !value.is_null()) else {
            continue;
        };
        let Some(text) = value.as_str() else {
            return Some(format!("{} must be a string.", spec.name));
        };
        if let Some(max) = spec.max_len.filter(|max| text.chars().count() > *max) {
            return Some(format!(
                "{} exceeds the maximum length of {max}.",
                spec.name
            ));
        }
        if !spec.allowed.is_empty() && !spec.allowed.contains(&text) {
            let allowed = spec.allowed.join(", ");
            return Some(format!("{} must be one of: {allowed}.", spec.name));
        }
    }
    if user.get("ldapGuid").and_then(Value::as_str) == Some("") {
        return Some("ldapGuid must be at least 1 character long.".to_owned());
    }
    if user
        .get(USER_ID)
        .is_some_and(|id| !id.is_null() && !id.is_i64())
    {
        return Some("userId must be an integer.".to_owned());
    }
    match user.get(PRODUCTS) {
        None | Some(Value::Null) => None,
        Some(Value::Array(entries)) => entries.iter().find_map(product_violation),
        Some(_) => Some("userProducts must be an array.".to_owned()),
    }
}

fn product_violation(entry: &Value) -> Option<String> {
    let name = entry.get("productName").and_then(Value::as_str);
    if !name.is_some_and(|name| PRODUCT_NAMES.contains(&name)) {
        let allowed = PRODUCT_NAMES.join(", ");
        return Some(format!(
            "userProducts.productName must be one of: {allowed}."
        ));
    }
    match entry.get("action") {
        None | Some(Value::Null) => None,
        Some(action) if action.as_str() == Some("DELETE") => None,
        Some(_) => Some("userProducts.action must be one of: DELETE.".to_owned()),
    }
}

fn accept_user(state: &EmulatorState, req: &HttpRequest, body: &[u8]) -> Result<Payload, Refusal> {
    let user = json_object(state, req, body, INVALID_JSON)?;
    match violation(&user) {
        Some(message) => Err(state.refuse(StatusCode::BAD_REQUEST, &message, req)),
        None => Ok(user),
    }
}

/// Applies licence entries to the ones a user holds: `action: "DELETE"` releases a licence,
/// any other entry grants it when not already held.
fn apply_products(accounts: &mut Accounts, held: &mut Vec<Value>, entries: &[Value]) {
    for entry in entries {
        let Some(name) = entry.get("productName").and_then(Value::as_str) else {
            continue;
        };
        let holds = |held: &Value| held.get("productName").and_then(Value::as_str) == Some(name);
        if entry.get("action").and_then(Value::as_str) == Some("DELETE") {
            held.retain(|product| !holds(product));
        } else if !held.iter().any(holds) {
            let product_id = PRODUCT_NAMES
                .iter()
                .position(|known| *known == name)
                .unwrap_or(0)
                + 1;
            held.push(json!({
                "productName": name,
                "productId": product_id,
                "userProductId": accounts.next_sequence(),
            }));
        }
    }
}

/// The writable fields of a body, as the service keeps them.
fn known_fields(user: &Payload) -> Payload {
    schema()
        .fields
        .iter()
        .filter(|spec| !spec.read_only && spec.name != PRODUCTS)
        .filter_map(|spec| Some((spec.name.to_owned(), user.get(spec.name)?.clone())))
        .filter(|(_, value)| !value.is_null())
        .collect()
}

fn store_new<'a>(accounts: &'a mut Accounts, user: &Payload, counts: Counts) -> &'a Record {
    let user_id = 1_000 + accounts.next_sequence();
    let mut fields = known_fields(user);
    fields.insert(USER_ID.to_owned(), json!(user_id));
    fields.entry("status").or_insert_with(|| json!("ACTIVE"));
    fields.entry("userType").or_insert_with(|| json!("USER"));
    let mut products = Vec::new();
    if let Some(entries) = user.get(PRODUCTS).and_then(Value::as_array) {
        apply_products(accounts, &mut products, entries);
    }
    fields.insert(PRODUCTS.to_owned(), Value::Array(products));
    accounts.insert(&user_id.to_string(), fields, &[], counts)
}

fn seed(accounts: &mut Accounts, user: Payload, _now: SystemTime) -> String {
    store_new(accounts, &user, Counts::default()).id.clone()
}

fn not_found(state: &EmulatorState, req: &HttpRequest) -> Refusal {
    state.refuse(StatusCode::NOT_FOUND, "The user does not exist.", req)
}

/// `GET /user`, narrowed by a `filters: email=<address>` header.
async fn list(state: web::Data<EmulatorState>, req: HttpRequest) -> Reply {
    authorize(&state, &req)?;
    let email = match header(&req, "filters") {
        None => None,
        Some(filter) => match filter.split_once('=') {
            Some(("email", email)) => Some(email.to_owned()),
            _ => {
                let message = "Unsupported filter: the user list filters by email=<address>.";
                return Err(state.refuse(StatusCode::BAD_REQUEST, message, &req));
            }
        },
    };
    let users: Vec<Payload> = state.with_accounts(|accounts| {
        accounts
            .live()
            .filter(|record| match &email {
                Some(email) => record
                    .fields
                    .get("email")
                    .and_then(Value::as_str)
                    .is_some_and(|held| held.eq_ignore_ascii_case(email)),
                None => true,
            })
            .map(|record| record.fields.clone())
            .collect()
    });
    Ok(HttpResponse::Ok().json(users))
}

fn duplicate(accounts: &Accounts, user: &Payload, except: Option<&str>) -> Option<&'static str> {
    let held = |field: &str| {
        user.get(field)
            .and_then(Value::as_str)
            .is_some_and(|value| accounts.taken(field, value, except))
    };
    if held("email") {
        Some("A user with this email already exists.")
    } else if held("ldapGuid") {
        Some("A user with this ldapGuid already exists.")
    } else {
        None
    }
}

async fn create(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body)?;
    let created = state.with_accounts(|accounts| {
        if let Some(message) = duplicate(accounts, &user, None) {
            return Err(message);
        }
        Ok(store_new(accounts, &user, Counts::CREATED).fields.clone())
    });
    match created {
        Ok(user) => Ok(HttpResponse::Created().json(user)),
        Err(message) => Err(state.refuse(StatusCode::CONFLICT, message, &req)),
    }
}

enum UpdateError {
    Unnamed,
    NotFound,
    Duplicate(&'static str),
}

/// `PUT /user`: the body names its user by `userId` or `ldapGuid`; the fields sent are
/// updated (null clears one) and the answer is 204 with no body.
async fn update(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body)?;
    let outcome = state.with_accounts(|accounts| {
        let id = match (
            user.get(USER_ID).and_then(Value::as_i64),
            user.get("ldapGuid").and_then(Value::as_str),
        ) {
            (Some(id), _) => id.to_string(),
            (None, Some(guid)) => accounts
                .live()
                .find(|record| record.fields.get("ldapGuid").and_then(Value::as_str) == Some(guid))
                .map(|record| record.id.clone())
                .ok_or(UpdateError::NotFound)?,
            (None, None) => return Err(UpdateError::Unnamed),
        };
        let mut products = accounts
            .get(&id)
            .ok_or(UpdateError::NotFound)?
            .fields
            .get(PRODUCTS)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(message) = duplicate(accounts, &user, Some(&id)) {
            return Err(UpdateError::Duplicate(message));
        }
        if let Some(entries) = user.get(PRODUCTS).and_then(Value::as_array) {
            apply_products(accounts, &mut products, entries);
        }
        let record = accounts.get_mut(&id).ok_or(UpdateError::NotFound)?;
        for spec in schema()
            .fields
            .iter()
            .filter(|spec| !spec.read_only && spec.name != PRODUCTS)
        {
            match user.get(spec.name) {
                None => {}
                Some(Value::Null) => {
                    record.fields.remove(spec.name);
                }
                Some(value) => {
                    record.fields.insert(spec.name.to_owned(), value.clone());
                }
            }
        }
        record
            .fields
            .insert(PRODUCTS.to_owned(), Value::Array(products));
        record.counts.updates += 1;
        Ok(())
    });
    match outcome {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(UpdateError::Unnamed) => Err(state.refuse(
            StatusCode::BAD_REQUEST,
            "The user is identified by userId or ldapGuid; neither was given.",
            &req,
        )),
        Err(UpdateError::NotFound) => Err(not_found(&state, &req)),
        Err(UpdateError::Duplicate(message)) => {
            Err(state.refuse(StatusCode::CONFLICT, message, &req))
        }
    }
}

async fn read(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    let user = state.with_accounts(|accounts| accounts.fields(&id));
    user.map(|user| HttpResponse::Ok().json(user))
        .ok_or_else(|| not_found(&state, &req))
}

async fn delete(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    if state.with_accounts(|accounts| accounts.delete(&id)) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(&state, &req))
    }
}
