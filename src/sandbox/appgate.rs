//! Emulator of the Appgate SDP Admin API's local users: the versioned `Accept` header (406
//! outside the supported window), login tokens, substring search, create answering 200,
//! PUT replacing the whole user, 422 with `errors[]`, and 409 on a duplicate name.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::contract::{Contract, Field, Kind, Unknown};
use super::emulator::{
    bearer, header, json_object, timestamp, Accounts, Counts, EmulatorState, Flavor, Payload,
    Record, Refusal, Refused, Reply, Verdict,
};
use super::index::Key;
use super::{DEV_PASSWORD, DEV_USERNAME};

/// The Admin API versions this emulated controller accepts.
pub const MIN_VERSION: u32 = 18;
pub const MAX_VERSION: u32 = 22;

const ACCEPT_PREFIX: &str = "application/vnd.appgate.peer-v";
const JSON_ERROR: &str = "JSON error. Check the JSON format.";
const NOT_FOUND: &str = "The requested resource can not be found.";
/// A second user with the same name is a conflict.
const UNIQUE: &[(&str, &str)] = &[("name", "A Local User with the same name already exists.")];
/// The fields `query` is looked for in, without regard to case.
const SEARCHED: &[Key] = &[
    Key::lower("name"),
    Key::lower("firstName"),
    Key::lower("lastName"),
    Key::lower("email"),
];
const INDEXED: &[Key] = &[
    Key::ascii("name"),
    Key::lower("name"),
    Key::lower("firstName"),
    Key::lower("lastName"),
    Key::lower("email"),
];

/// A Local User as the Admin API reference describes it (seeds 000 and 001). The
/// controller validates a body strictly and answers 422 naming each bad field, so a field
/// it does not know is refused too, not dropped.
pub const CONTRACT: Contract = Contract {
    fields: &[
        Field::text("name").required(),
        Field::text("firstName").required(),
        Field::text("lastName").required(),
        // Not marked "Required" in the create reference, and "omit the field to keep the
        // old password when updating".
        Field::text("password").write_only(),
        Field::text("email"),
        Field::text("phone"),
        Field::text("notes"),
        Field::new("tags", Kind::StringArray),
        Field::flag("disabled"),
        // A create may carry these (they are in its body parameters), but the controller
        // assigns them.
        Field::text("id").read_only(),
        Field::new("failedLoginAttempts", Kind::Number).read_only(),
        Field::text("lockStart").read_only(),
        // Only in answers; a client that sends back what it read carries them.
        Field::text("created").read_only(),
        Field::text("updated").read_only(),
    ],
    unknown: Unknown::Refuse,
};

pub(crate) fn flavor() -> Flavor {
    Flavor {
        contract: &CONTRACT,
        base_path: "/admin",
        error_body,
        seed,
        routes,
        indexed: INDEXED,
        console_check,
    }
}

fn error_body(status: StatusCode, message: &str, _path: &str, _at: SystemTime) -> Value {
    let id = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    json!({"id": id, "message": message})
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/login", web::post().to(login))
            .route("/local-users", web::get().to(search))
            .route("/local-users", web::post().to(create))
            .route("/local-users/{id}", web::get().to(read))
            .route("/local-users/{id}", web::put().to(replace))
            .route("/local-users/{id}", web::delete().to(delete)),
    );
}

/// Every call, the login included, must name a supported version.
fn check_accept(req: &HttpRequest) -> Result<(), Refusal> {
    let version = header(req, "accept")
        .and_then(|accept| accept.strip_prefix(ACCEPT_PREFIX))
        .and_then(|rest| rest.strip_suffix("+json"))
        .and_then(|version| version.parse::<u32>().ok());
    match version {
        Some(version) if (MIN_VERSION..=MAX_VERSION).contains(&version) => Ok(()),
        _ => Err(Refusal {
            status: StatusCode::NOT_ACCEPTABLE,
            body: json!({
                "id": "not acceptable",
                "message": "Invalid 'Accept' header.",
                "minSupportedVersion": MIN_VERSION,
                "maxSupportedVersion": MAX_VERSION,
            }),
        }),
    }
}

fn authorize(state: &EmulatorState, req: &HttpRequest) -> Result<(), Refusal> {
    check_accept(req)?;
    match bearer(req) {
        Some(token) if state.token_valid(token) => Ok(()),
        _ => Err(state.refuse(StatusCode::UNAUTHORIZED, "Token error. Login again.", req)),
    }
}

async fn login(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    check_accept(&req)?;
    let body = json_object(&state, &req, &body, JSON_ERROR)?;
    let text = |field: &str| body.get(field).and_then(Value::as_str).unwrap_or_default();
    if uuid::Uuid::parse_str(text("deviceId")).is_err() {
        return Err(state.refuse(StatusCode::BAD_REQUEST, "deviceId must be a UUID.", &req));
    }
    if text("providerName") != "local"
        || text("username") != DEV_USERNAME
        || text("password") != DEV_PASSWORD
    {
        return Err(state.refuse(
            StatusCode::UNAUTHORIZED,
            "Invalid username or password.",
            &req,
        ));
    }
    let ([token], expires_at) = state.issue_tokens();
    Ok(HttpResponse::Ok().json(json!({
        "token": token,
        "expires": timestamp(expires_at),
        "user": {"name": DEV_USERNAME, "needTwoFactorAuth": false},
    })))
}

/// The per-field problems Appgate reports in a 422.
fn validate(contract: &Contract, user: &Payload, creating: bool) -> Vec<Value> {
    let mut errors = Vec::new();
    for field in contract.refused_unknown(user) {
        errors.push(json!({"field": field, "message": "is not a field of a Local User"}));
    }
    for spec in contract.required(creating) {
        if user.get(spec.name).is_none_or(Value::is_null) {
            errors.push(json!({"field": spec.name, "message": "may not be null"}));
        }
    }
    for spec in contract.mistyped(user) {
        let message = format!("must be {}", spec.kind.described());
        errors.push(json!({"field": spec.name, "message": message}));
    }
    // Appgate refuses an empty string anywhere, in `tags` too: a client omits the field.
    for (field, value) in contract.writable_fields(user) {
        let empty = match &value {
            Value::String(text) => text.is_empty(),
            Value::Array(items) => items.iter().any(|item| item.as_str() == Some("")),
            _ => false,
        };
        if empty {
            errors.push(json!({"field": field, "message": "may not be empty"}));
        }
    }
    errors
}

/// Validates a create or PUT body and keeps what Appgate stores from it.
fn accept_user(
    state: &EmulatorState,
    req: &HttpRequest,
    body: &[u8],
    creating: bool,
) -> Result<Payload, Refusal> {
    let user = json_object(state, req, body, JSON_ERROR)?;
    let contract = state.flavor.contract;
    let errors = validate(contract, &user, creating);
    if !errors.is_empty() {
        return Err(Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "id": "unprocessable entity",
                "message": "Request validation error. Check \"errors\" array for details.",
                "errors": errors,
            }),
        });
    }
    let mut stored = contract.writable_fields(&user);
    stored.entry("tags").or_insert_with(|| json!([]));
    stored.entry("disabled").or_insert(Value::Bool(false));
    Ok(stored)
}

/// The console saves a Local User under the API's rules, with the same 422 and 409.
fn console_check(accounts: &Accounts, user: &Payload, editing: Option<&str>) -> Verdict {
    let errors: Vec<String> = validate(&CONTRACT, user, true)
        .iter()
        .map(|error| {
            let text = |key: &str| error[key].as_str().unwrap_or_default().to_owned();
            format!("{}: {}", text("field"), text("message"))
        })
        .collect();
    if !errors.is_empty() {
        let message = format!("Request validation error. {}", errors.join("; "));
        return Err((StatusCode::UNPROCESSABLE_ENTITY, message));
    }
    accounts.check_unique(user, UNIQUE, editing)
}

fn name_of(user: &Payload) -> &str {
    user.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// The users from `start` to `end` (exclusive) in name order. Only that range is put in
/// order, so reading a large controller page by page costs each page a pass over the users
/// rather than a sort of them all. Names are unique, so the order is the same every time.
fn in_name_order<'a, 'r>(
    users: &'a mut [&'r Record],
    start: usize,
    end: usize,
) -> &'a [&'r Record] {
    let by_name = |a: &&Record, b: &&Record| name_of(&a.fields).cmp(name_of(&b.fields));
    let start = start.min(users.len());
    if start > 0 && start < users.len() {
        // The `start` users first by name end up before the page.
        users.select_nth_unstable_by(start, by_name);
    }
    let rest = &mut users[start..];
    let len = end.saturating_sub(start).min(rest.len());
    if len < rest.len() {
        rest.select_nth_unstable_by(len, by_name);
    }
    let page = &mut rest[..len];
    page.sort_unstable_by(by_name);
    page
}

/// Gives a new user the fields the controller assigns and stores it.
fn store_new(
    accounts: &mut Accounts,
    mut user: Payload,
    now: SystemTime,
    counts: Counts,
) -> &Record {
    let id = uuid::Uuid::new_v4().to_string();
    user.insert("id".to_owned(), json!(id));
    user.insert("created".to_owned(), json!(timestamp(now)));
    user.insert("updated".to_owned(), json!(timestamp(now)));
    user.insert("failedLoginAttempts".to_owned(), json!(0));
    accounts.insert(&id, user, counts)
}

fn seed(accounts: &mut Accounts, user: Payload, now: SystemTime) -> String {
    store_new(accounts, user, now, Counts::default()).id.clone()
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    query: String,
    range: Option<String>,
}

async fn search(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    params: web::Query<SearchQuery>,
) -> Reply {
    authorize(&state, &req)?;
    let (start, end) = match params.range.as_deref().map(|range| range.split_once('-')) {
        None => (0, usize::MAX),
        Some(Some((start, end))) => match (start.parse::<usize>(), end.parse::<usize>()) {
            (Ok(start), Ok(end)) if start <= end => (start, end),
            _ => return Err(state.refuse(StatusCode::BAD_REQUEST, "Invalid range.", &req)),
        },
        Some(None) => return Err(state.refuse(StatusCode::BAD_REQUEST, "Invalid range.", &req)),
    };
    let needle = params.query.to_lowercase();
    let (page, total) = state.with_accounts(|accounts| {
        // Every user contains the empty text: a full listing reads no field to know that.
        let mut matches: Vec<&Record> = if needle.is_empty() {
            accounts.live().collect()
        } else {
            accounts.search(SEARCHED, &needle)
        };
        let total = matches.len();
        let page = in_name_order(&mut matches, start, end)
            .iter()
            .map(|record| record.fields.clone())
            .collect::<Vec<Payload>>();
        (page, total)
    });
    Ok(HttpResponse::Ok().json(json!({
        "data": page,
        "range": format!("{start}-{}/{total}", start + page.len()),
        "orderBy": "name",
        "descending": false,
        "queries": [params.query],
        "totalCount": total,
    })))
}

async fn create(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body, true)?;
    let now = state.now();
    let user = state.create_unique(&req, user, UNIQUE, |accounts, user| {
        store_new(accounts, user, now, Counts::CREATED)
            .fields
            .clone()
    })?;
    // Appgate answers a create with 200, not 201.
    Ok(HttpResponse::Ok().json(user))
}

async fn read(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    state.read_reply(&req, &id, NOT_FOUND)
}

/// PUT replaces the whole user: fields left out are cleared, except the password, which is
/// kept when omitted.
async fn replace(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body, false)?;
    let now = state.now();
    let outcome = state.with_accounts(|accounts| {
        let kept = ["id", "created", "failedLoginAttempts", "lockStart"];
        let record = accounts.replace(&id, user, UNIQUE, &kept)?;
        record
            .fields
            .insert("updated".to_owned(), json!(timestamp(now)));
        Ok(record.fields.clone())
    });
    match outcome {
        Ok(user) => Ok(HttpResponse::Ok().json(user)),
        Err(Refused::NotFound) => Err(state.refuse(StatusCode::NOT_FOUND, NOT_FOUND, &req)),
        Err(Refused::Conflict(message)) => Err(state.refuse(StatusCode::CONFLICT, message, &req)),
    }
}

async fn delete(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    state.delete_reply(&req, &id, NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Record {
        Record {
            id: name.to_owned(),
            fields: json!({"name": name})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            secrets: Default::default(),
            secret_writes: Default::default(),
            counts: Counts::default(),
            deleted: false,
        }
    }

    /// Every range of a page-by-page read is the same slice a full sort gives.
    #[test]
    fn a_page_in_name_order_is_that_slice_of_the_sorted_users() {
        let names: Vec<String> = (0..37).map(|i| format!("u{:02}", (i * 17) % 37)).collect();
        let records: Vec<Record> = names.iter().map(|name| user(name)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        for (start, end) in [
            (0, 10),
            (10, 20),
            (30, 40),
            (36, 37),
            (37, 50),
            (40, 45),
            (5, 5),
            (0, usize::MAX),
        ] {
            let mut users: Vec<&Record> = records.iter().collect();
            let page: Vec<&str> = in_name_order(&mut users, start, end)
                .iter()
                .map(|record| record.id.as_str())
                .collect();
            let expected: Vec<&str> = sorted
                .iter()
                .skip(start)
                .take(end.saturating_sub(start))
                .map(String::as_str)
                .collect();
            assert_eq!(page, expected, "{start}-{end}");
        }
    }
}
