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

use super::contract::{Contract, Field, Kind, Unknown};
use super::emulator::{
    bearer, header, json_object, timestamp, Accounts, Counts, EmulatorState, Flavor, Payload,
    Record, Refusal, Refused, Reply, Verdict,
};
use super::index::Key;
use super::{DEV_PASSWORD, DEV_PRIMAVERA_TENANT, DEV_USERNAME};

/// Requests per second before the service answers 429.
pub(crate) const RATE_LIMIT_PER_SECOND: u32 = 55;
/// The `Version` header values the service understands (3 is the latest).
const VERSIONS: std::ops::RangeInclusive<u32> = 1..=3;
const NOT_FOUND: &str = "The user does not exist.";
const EMAIL: Key = Key::ascii("email");
const LDAP_GUID: Key = Key::ascii("ldapGuid");
const INDEXED: &[Key] = &[EMAIL, LDAP_GUID];
/// Another user with the same email or ldapGuid is a conflict.
const UNIQUE: &[(&str, &str)] = &[
    ("email", "A user with this email already exists."),
    ("ldapGuid", "A user with this ldapGuid already exists."),
];
/// Users on a page when `limit` is not given, and the most a page holds (a larger `limit` is
/// cut to it). The reference states neither for users; these are the sandbox's.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 500;
const UNNAMED: &str = "The user is identified by userId or ldapGuid; neither was given.";
const INVALID_JSON: &str = "Invalid input: the request body is not a JSON object.";

/// The system-assigned id, which also names the user in a PUT body.
const USER_ID: &str = "userId";
/// The user's licences.
const PRODUCTS: &str = "userProducts";
const PRODUCT_NAMES: &[&str] = &["IDEA", "PORTFOLIO", "PROGRESS", "SCHEDULE", "TASKS"];

/// `ApiEntityApplicationUserInput`, the body of a user create or update, as the API
/// reference states it (seed 004), lengths and allowed values included. The reference lists
/// the input entity's fields as a closed set and answers a body it cannot read with 400
/// "Invalid input", so a field outside the entity is refused, not dropped.
pub const CONTRACT: Contract = Contract {
    fields: &[
        Field::text("email").required().max(320),
        Field::text("firstName").required().max(100),
        Field::text("lastName").required().max(100),
        // Also at least one character long (checked in `violation`).
        Field::text("ldapGuid").max(255),
        Field::text("mobile").max(100),
        Field::text("phone").max(100),
        Field::text("title").max(25),
        Field::text("status")
            .max(20)
            .one_of(&["ACTIVE", "INACTIVE"]),
        Field::text("userLocale").one_of(&[
            "pt_BR", "nl", "en", "fr", "de", "it", "ja", "ko", "ru", "zh_CN", "es", "zh_TW",
        ]),
        Field::text("userType").one_of(&[
            "USER",
            "COMPANY_RESTRICTED",
            "APPLICATION_ADMIN",
            "IDEA_SUBMITTER",
        ]),
        Field::new(PRODUCTS, Kind::ObjectArray),
        // System-generated, yet a PUT names its user with it (checked in `violation`).
        Field::new(USER_ID, Kind::Integer).read_only(),
    ],
    unknown: Unknown::Refuse,
};

pub(crate) fn flavor() -> Flavor {
    Flavor {
        contract: &CONTRACT,
        base_path: "/api/restapi",
        error_body,
        seed,
        routes,
        indexed: INDEXED,
        console_check,
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

/// The first rule a body breaks, checked against the API reference's entity.
fn violation(contract: &Contract, user: &Payload, creating: bool) -> Option<String> {
    let text = |field: &str| user.get(field).and_then(Value::as_str);
    if let Some(field) = contract.refused_unknown(user).next() {
        return Some(format!("Unrecognized field \"{field}\"."));
    }
    if let Some(spec) = contract
        .required(creating)
        .find(|spec| text(spec.name).is_none_or(str::is_empty))
    {
        return Some(format!("{} is required.", spec.name));
    }
    if let Some(spec) = contract.mistyped(user).next() {
        return Some(format!("{} must be {}.", spec.name, spec.kind.described()));
    }
    for spec in contract.fields {
        let Some(text) = text(spec.name) else {
            continue;
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
    if text("ldapGuid") == Some("") {
        return Some("ldapGuid must be at least 1 character long.".to_owned());
    }
    // `userId` is assigned by the service, but a PUT names its user with it.
    if user
        .get(USER_ID)
        .is_some_and(|id| !id.is_null() && !id.is_i64())
    {
        return Some("userId must be an integer.".to_owned());
    }
    user.get(PRODUCTS)
        .and_then(Value::as_array)
        .and_then(|entries| entries.iter().find_map(product_violation))
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

/// The console holds a user to the API reference's rules, with the same 400 and 409.
fn console_check(accounts: &Accounts, user: &Payload, editing: Option<&str>) -> Verdict {
    if let Some(message) = violation(&CONTRACT, user, true) {
        return Err((StatusCode::BAD_REQUEST, message));
    }
    accounts.check_unique(user, UNIQUE, editing)
}

/// The body, once it passes every rule.
fn accept_user(
    state: &EmulatorState,
    req: &HttpRequest,
    body: &[u8],
    creating: bool,
) -> Result<Payload, Refusal> {
    let user = json_object(state, req, body, INVALID_JSON)?;
    match violation(state.flavor.contract, &user, creating) {
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

/// Stores a new user from its writable fields, giving it an id, defaults and licences.
fn store_new(accounts: &mut Accounts, mut fields: Payload, counts: Counts) -> &Record {
    let user_id = 1_000 + accounts.next_sequence();
    fields.insert(USER_ID.to_owned(), json!(user_id));
    fields.entry("status").or_insert_with(|| json!("ACTIVE"));
    fields.entry("userType").or_insert_with(|| json!("USER"));
    let mut products = Vec::new();
    if let Some(Value::Array(entries)) = fields.remove(PRODUCTS) {
        apply_products(accounts, &mut products, &entries);
    }
    fields.insert(PRODUCTS.to_owned(), Value::Array(products));
    accounts.insert(&user_id.to_string(), fields, counts)
}

fn seed(accounts: &mut Accounts, user: Payload, _now: SystemTime) -> String {
    store_new(accounts, user, Counts::default()).id.clone()
}

/// The API's paging parameters. The user service's own list call is not in the public
/// reference; these follow the API's documented conventions for other services.
#[derive(Deserialize)]
struct Paging {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /user`, narrowed by a `filters: email=<address>` header, in ascending `userId`
/// order as the API orders its answers. Without paging parameters the answer is the whole
/// list; with `offset` or `limit` it is one page of at most `limit` users:
/// `{count, next, previous, items}`, `next` and `previous` the links to the pages beside it
/// (null at either end), `count` the users on this page.
async fn list(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    paging: web::Query<Paging>,
) -> Reply {
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
    let (offset, limit) = match (paging.offset, paging.limit) {
        (None, None) => (0, usize::MAX),
        (_, Some(0)) => {
            let message = "Invalid input: limit must be at least 1.";
            return Err(state.refuse(StatusCode::BAD_REQUEST, message, &req));
        }
        (offset, limit) => (
            offset.unwrap_or(0),
            limit.unwrap_or(DEFAULT_PAGE_SIZE).min(MAX_PAGE_SIZE),
        ),
    };
    // Only the page is copied out: a listing of a large tenant costs each page its own size.
    let (items, total) = state.with_accounts(|accounts| {
        let found = match &email {
            Some(email) => accounts.find(EMAIL, email),
            None => accounts.live().collect(),
        };
        let items: Vec<Payload> = found
            .iter()
            .skip(offset)
            .take(limit)
            .map(|record| record.fields.clone())
            .collect();
        (items, found.len())
    });
    if paging.offset.is_none() && paging.limit.is_none() {
        return Ok(HttpResponse::Ok().json(items));
    }
    let link = |at: usize| format!("{}?offset={at}&limit={limit}", req.path());
    let next = (offset + items.len() < total).then(|| link(offset + items.len()));
    let previous = (offset > 0).then(|| link(offset.saturating_sub(limit)));
    Ok(HttpResponse::Ok().json(json!({
        "count": items.len(),
        "next": next,
        "previous": previous,
        "items": items,
    })))
}

async fn create(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body, true)?;
    let fields = state.flavor.contract.writable_fields(&user);
    let user = state.create_unique(&req, fields, UNIQUE, |accounts, fields| {
        store_new(accounts, fields, Counts::CREATED).fields.clone()
    })?;
    Ok(HttpResponse::Created().json(user))
}

/// `PUT /user`: the body names its user by `userId` or `ldapGuid`; the fields sent are
/// updated (null clears one) and the answer is 204 with no body.
async fn update(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body, false)?;
    let mut changes = state.flavor.contract.writable_fields(&user);
    let entries = changes.remove(PRODUCTS);
    let outcome = state.with_accounts(|accounts| {
        let id = match (
            user.get(USER_ID).and_then(Value::as_i64),
            user.get("ldapGuid").and_then(Value::as_str),
        ) {
            (Some(id), _) => id.to_string(),
            // The index finds it without regard to case; the guid itself must match exactly.
            (None, Some(guid)) => accounts
                .find(LDAP_GUID, guid)
                .into_iter()
                .find(|record| record.fields.get("ldapGuid").and_then(Value::as_str) == Some(guid))
                .map(|record| record.id.clone())
                .ok_or(Refused::NotFound)?,
            (None, None) => return Ok(false),
        };
        let mut products = accounts
            .get(&id)
            .ok_or(Refused::NotFound)?
            .fields
            .get(PRODUCTS)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(entries)) = &entries {
            apply_products(accounts, &mut products, entries);
        }
        changes.insert(PRODUCTS.to_owned(), Value::Array(products));
        accounts.merge(&id, changes, UNIQUE)?;
        Ok(true)
    });
    match outcome {
        Ok(true) => Ok(HttpResponse::NoContent().finish()),
        Ok(false) => Err(state.refuse(StatusCode::BAD_REQUEST, UNNAMED, &req)),
        Err(Refused::NotFound) => Err(state.refuse(StatusCode::NOT_FOUND, NOT_FOUND, &req)),
        Err(Refused::Conflict(message)) => Err(state.refuse(StatusCode::CONFLICT, message, &req)),
    }
}

async fn read(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    state.read_reply(&req, &id, NOT_FOUND)
}

async fn delete(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    state.delete_reply(&req, &id, NOT_FOUND)
}
