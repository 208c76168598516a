//! Emulator of Kibo Commerce admin-user accounts: OAuth client-credentials tokens, the
//! `x-vol-tenant`/`x-vol-site` context headers, email, names and password required on
//! create and on PUT, 409 on a duplicate email or user name, Kibo's error body, and admin
//! roles assigned and removed one call at a time from a small fixed catalogue.

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
use super::{DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_KIBO_SITE, DEV_KIBO_TENANT};

const NOT_FOUND: &str = "Admin user not found";
/// The account's admin roles, which only the role calls change.
const ROLES: &str = "roles";
const EMAIL: Key = Key::ascii("emailAddress");
const INDEXED: &[Key] = &[EMAIL, Key::ascii("userName")];
/// A second account with the same email address or user name is a conflict.
const UNIQUE: &[(&str, &str)] = &[
    (
        "emailAddress",
        "An admin user with this email address already exists",
    ),
    (
        "userName",
        "An admin user with this user name already exists",
    ),
];
const MAX_PAGE_SIZE: usize = 200;

/// The tenant's roles, by id. A real tenant has more (and its own custom roles); these few
/// are enough to grant, remove and refuse an unknown id.
const ROLE_CATALOGUE: &[(i64, &str)] =
    &[(1, "Admin"), (2, "Catalog Manager"), (3, "Order Manager")];

/// An admin-user account as the accounts reference describes it (seed 003): "Required
/// properties: EmailAddress, FirstName, LastName, and Password", on the PUT as on the
/// create. Kibo's platform reads JSON the .NET way, skipping members it does not know, and
/// the reference says nothing of refusing them: an unknown field is dropped.
pub const CONTRACT: Contract = Contract {
    fields: &[
        Field::text("emailAddress").required(),
        Field::text("firstName").required(),
        Field::text("lastName").required(),
        // Listed in answers too (string or null); the emulator never returns it.
        Field::text("password").required().write_only(),
        Field::text("userName"),
        Field::text("phoneNumber"),
        Field::text("externalId"),
        Field::text("localeCode"),
        Field::text("identityProviderId"),
        Field::flag("optInToEmail"),
        Field::flag("optInToTextMessage"),
        Field::flag("isActive"),
        // In the body, but Kibo changes them only through `/accounts/{id}/roles/{roleId}`.
        Field::new(ROLES, Kind::ObjectArray),
        Field::text("id").read_only(),
        Field::new("systemData", Kind::Object).read_only(),
    ],
    unknown: Unknown::Ignore,
};

pub(crate) fn flavor() -> Flavor {
    Flavor {
        contract: &CONTRACT,
        base_path: "/api",
        error_body,
        seed,
        routes,
        indexed: INDEXED,
        console_check,
    }
}

fn error_body(status: StatusCode, message: &str, _path: &str, _at: SystemTime) -> Value {
    let code = match status {
        StatusCode::BAD_REQUEST => "MISSING_OR_INVALID_PARAMETER",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::NOT_FOUND => "ITEM_NOT_FOUND",
        StatusCode::CONFLICT => "ITEM_ALREADY_EXISTS",
        StatusCode::TOO_MANY_REQUESTS => "TOO_MANY_REQUESTS",
        StatusCode::SERVICE_UNAVAILABLE => "SERVICE_UNAVAILABLE",
        _ => "UNEXPECTED_ERROR",
    };
    json!({
        "message": message,
        "errorCode": code,
        "applicationName": "AdminUser",
        "additionalErrorData": [],
        "items": [],
    })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route(
                "/platform/applications/authtickets/oauth",
                web::post().to(token),
            )
            .route("/platform/adminuser/accounts", web::get().to(list))
            .route("/platform/adminuser/accounts", web::post().to(create))
            .route("/platform/adminuser/accounts/{id}", web::get().to(read))
            .route("/platform/adminuser/accounts/{id}", web::put().to(replace))
            .route(
                "/platform/adminuser/accounts/{id}",
                web::delete().to(delete),
            )
            .route(
                "/platform/adminuser/accounts/{id}/roles/{role}",
                web::post().to(assign_role),
            )
            .route(
                "/platform/adminuser/accounts/{id}/roles/{role}",
                web::delete().to(remove_role),
            ),
    );
}

/// A valid token, and the tenant and site the application was installed for.
fn authorize(state: &EmulatorState, req: &HttpRequest) -> Result<(), Refusal> {
    if !bearer(req).is_some_and(|token| state.token_valid(token)) {
        return Err(state.refuse(
            StatusCode::UNAUTHORIZED,
            "Invalid or expired access token",
            req,
        ));
    }
    for (name, expected) in [
        ("x-vol-tenant", DEV_KIBO_TENANT),
        ("x-vol-site", DEV_KIBO_SITE),
    ] {
        match header(req, name) {
            None => {
                let message = format!("Missing or invalid parameter: {name} header is required");
                return Err(state.refuse(StatusCode::BAD_REQUEST, &message, req));
            }
            Some(value) if value != expected => {
                let message = format!("The application is not installed for {name} {value}");
                return Err(state.refuse(StatusCode::FORBIDDEN, &message, req));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn token(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body = json_object(&state, &req, &body, "Missing or invalid parameter: body")?;
    let text = |field: &str| body.get(field).and_then(Value::as_str).unwrap_or_default();
    if text("grant_type") != "client_credentials" {
        return Err(state.refuse(
            StatusCode::BAD_REQUEST,
            "Missing or invalid parameter: grant_type",
            &req,
        ));
    }
    if text("client_id") != DEV_CLIENT_ID || text("client_secret") != DEV_CLIENT_SECRET {
        return Err(state.refuse(
            StatusCode::UNAUTHORIZED,
            "Invalid application credentials",
            &req,
        ));
    }
    let ([access], _) = state.issue_tokens();
    Ok(HttpResponse::Ok().json(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": state.token_ttl_secs(),
    })))
}

/// The first rule a create or PUT body breaks. `password_optional` lifts the reference's
/// rule that a PUT carries the password.
fn violation(
    contract: &Contract,
    account: &Payload,
    creating: bool,
    password_optional: bool,
) -> Option<String> {
    let text = |field: &str| {
        account
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let missing = contract
        .required(creating)
        .filter(|spec| !(password_optional && spec.name == "password"))
        .find(|spec| text(spec.name).is_empty());
    if let Some(spec) = missing {
        return Some(format!(
            "Missing or invalid parameter: {} is required",
            spec.name
        ));
    }
    if let Some(spec) = contract.mistyped(account).next() {
        let kind = spec.kind.described();
        return Some(format!(
            "Missing or invalid parameter: {} must be {kind}",
            spec.name
        ));
    }
    if !text("emailAddress").contains('@') {
        return Some("Missing or invalid parameter: emailAddress is not an email address".into());
    }
    None
}

/// The console holds an account to the API's rules, except that nobody types a password
/// for someone else: Kibo's admin console invites the person to set their own.
fn console_check(accounts: &Accounts, account: &Payload, editing: Option<&str>) -> Verdict {
    if let Some(message) = violation(&CONTRACT, account, true, true) {
        return Err((StatusCode::BAD_REQUEST, message));
    }
    accounts.check_unique(account, UNIQUE, editing)
}

/// The fields a body sets that Kibo keeps: roles in the body are ignored, as Kibo changes
/// them only through the role calls.
fn accept_account(
    state: &EmulatorState,
    req: &HttpRequest,
    body: &[u8],
    creating: bool,
) -> Result<Payload, Refusal> {
    let account = json_object(state, req, body, "Missing or invalid parameter: body")?;
    let contract = state.flavor.contract;
    let password_optional = !creating && state.keeps_password_when_omitted;
    match violation(contract, &account, creating, password_optional) {
        Some(message) => Err(state.refuse(StatusCode::BAD_REQUEST, &message, req)),
        None => {
            let mut kept = contract.writable_fields(&account);
            kept.remove(ROLES);
            Ok(kept)
        }
    }
}

fn store_new(
    accounts: &mut Accounts,
    mut account: Payload,
    now: SystemTime,
    counts: Counts,
) -> &Record {
    let id = uuid::Uuid::new_v4().simple().to_string();
    account.insert("id".to_owned(), json!(id));
    account.entry("isActive").or_insert(Value::Bool(true));
    account.insert(
        "systemData".to_owned(),
        json!({
            "isPasswordChangeRequired": false,
            "isLocked": false,
            "failedLoginAttemptCount": 0,
            "remainingLoginAttempts": 6,
            "createdOn": timestamp(now),
            "updatedOn": timestamp(now),
        }),
    );
    // A seeded account may come with roles assigned by hand; a created one has none, as
    // `accept_account` dropped any the body carried.
    account.entry(ROLES).or_insert(json!([]));
    accounts.insert(&id, account, counts)
}

fn seed(accounts: &mut Accounts, account: Payload, now: SystemTime) -> String {
    store_new(accounts, account, now, Counts::default())
        .id
        .clone()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    email_address: Option<String>,
    #[serde(default)]
    start_index: usize,
    page_size: Option<usize>,
    filter: Option<String>,
}

async fn list(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    params: web::Query<ListQuery>,
) -> Reply {
    authorize(&state, &req)?;
    if params
        .filter
        .as_deref()
        .is_some_and(|filter| !filter.is_empty())
    {
        return Err(state.refuse(
            StatusCode::BAD_REQUEST,
            "Missing or invalid parameter: filter (the sandbox filters by emailAddress only)",
            &req,
        ));
    }
    let page_size = params.page_size.unwrap_or(20).clamp(1, MAX_PAGE_SIZE);
    // Only the page is copied out: a listing of a large tenant costs each page its own size.
    let (items, total) = state.with_accounts(|accounts| {
        let found = match &params.email_address {
            Some(email) => accounts.find(EMAIL, email),
            None => accounts.live().collect(),
        };
        let items: Vec<Payload> = found
            .iter()
            .skip(params.start_index)
            .take(page_size)
            .map(|record| record.fields.clone())
            .collect();
        (items, found.len())
    });
    Ok(HttpResponse::Ok().json(json!({
        "startIndex": params.start_index,
        "pageSize": page_size,
        "pageCount": total.div_ceil(page_size),
        "totalCount": total,
        "items": items,
    })))
}

async fn create(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let account = accept_account(&state, &req, &body, true)?;
    let now = state.now();
    let account = state.create_unique(&req, account, UNIQUE, |accounts, account| {
        store_new(accounts, account, now, Counts::CREATED)
            .fields
            .clone()
    })?;
    Ok(HttpResponse::Ok().json(account))
}

async fn read(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    state.read_reply(&req, &id, NOT_FOUND)
}

/// PUT replaces the account's fields; what Kibo assigns (id, system data, roles) stays, and
/// `isActive` stays as it was when left out.
async fn replace(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    authorize(&state, &req)?;
    let account = accept_account(&state, &req, &body, false)?;
    let now = state.now();
    let outcome = state.with_accounts(|accounts| {
        let kept = ["id", "systemData", "roles", "isActive"];
        let record = accounts.replace(&id, account, UNIQUE, &kept)?;
        if let Some(system) = record
            .fields
            .get_mut("systemData")
            .and_then(Value::as_object_mut)
        {
            system.insert("updatedOn".to_owned(), json!(timestamp(now)));
        }
        Ok(record.fields.clone())
    });
    match outcome {
        Ok(account) => Ok(HttpResponse::Ok().json(account)),
        Err(Refused::NotFound) => Err(state.refuse(StatusCode::NOT_FOUND, NOT_FOUND, &req)),
        Err(Refused::Conflict(message)) => Err(state.refuse(StatusCode::CONFLICT, message, &req)),
    }
}

async fn delete(state: web::Data<EmulatorState>, req: HttpRequest, id: web::Path<String>) -> Reply {
    authorize(&state, &req)?;
    state.delete_reply(&req, &id, NOT_FOUND)
}

/// Whether a role call assigns or removes.
#[derive(Clone, Copy)]
enum RoleCall {
    Assign,
    Remove,
}

async fn assign_role(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Reply {
    role_call(&state, &req, &path, RoleCall::Assign)
}

async fn remove_role(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Reply {
    role_call(&state, &req, &path, RoleCall::Remove)
}

/// Both calls are idempotent: assigning a held role or removing one not held succeeds and
/// changes nothing. An unknown account is a 404, a role id outside the catalogue a 400.
fn role_call(
    state: &EmulatorState,
    req: &HttpRequest,
    path: &(String, String),
    call: RoleCall,
) -> Reply {
    authorize(state, req)?;
    let (id, role) = path;
    let Some((role_id, role_name)) = role
        .parse::<i64>()
        .ok()
        .and_then(|wanted| ROLE_CATALOGUE.iter().find(|(known, _)| *known == wanted))
    else {
        let message =
            format!("Missing or invalid parameter: roleId {role} is not a role of this tenant");
        return Err(state.refuse(StatusCode::BAD_REQUEST, &message, req));
    };
    let changed = state.with_accounts(|accounts| {
        let record = accounts.get_mut(id)?;
        let held = record.fields.entry(ROLES).or_insert(json!([]));
        if let Value::Array(roles) = held {
            let holds =
                |entry: &Value| entry.get("roleId").and_then(Value::as_i64) == Some(*role_id);
            match call {
                RoleCall::Assign if !roles.iter().any(holds) => {
                    roles.push(json!({"roleId": role_id, "roleName": role_name}));
                }
                RoleCall::Assign => {}
                RoleCall::Remove => roles.retain(|entry| !holds(entry)),
            }
        }
        record.counts.role_calls += 1;
        Some(())
    });
    match (changed, call) {
        (None, _) => Err(state.refuse(StatusCode::NOT_FOUND, NOT_FOUND, req)),
        (Some(()), RoleCall::Assign) => Ok(HttpResponse::Ok().json(json!({
            "roleId": role_id,
            "roleName": role_name,
            "userId": id,
        }))),
        (Some(()), RoleCall::Remove) => Ok(HttpResponse::NoContent().finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kibo's reader skips members it does not know: the account is taken without them.
    #[test]
    fn a_field_kibo_does_not_know_is_dropped_not_refused() {
        let Value::Object(account) = json!({
            "emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima",
            "password": "p", "department": "Finance",
        }) else {
            unreachable!("a JSON object literal")
        };
        assert_eq!(violation(&CONTRACT, &account, true, false), None);
        let kept = CONTRACT.writable_fields(&account);
        assert!(!kept.contains_key("department"), "{kept:?}");
        assert_eq!(kept.len(), 4);
    }
}
