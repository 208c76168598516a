//! Emulator of the VikingCloud user-service: a login issuing an access and an id token
//! (checked in `x-jwt-assertion` and `Authorization: Bearer`), users named by `userKey`,
//! update by `POST /user-service/v1/user`, the phone/country-code rule, Spring-style errors.
//! Paths the public docs leave open follow the adapter's defaults.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::contract::{Contract, Field, Kind, Unknown};
use super::emulator::{
    bearer, header, json_object, timestamp, Accounts, Counts, EmulatorState, Flavor, Payload,
    Record, Refusal, Refused, Reply, Verdict,
};
use super::index::Key;
use super::{DEV_PASSWORD, DEV_USERNAME};

/// Another user with the same email address is a conflict.
const UNIQUE_EMAIL: &[(&str, &str)] = &[("email", "Email already in use")];
const USERNAME: Key = Key::ascii("userKey.username");
const INDEXED: &[Key] = &[Key::ascii("email"), USERNAME];
const NOT_FOUND: &str = "User not found";
const MALFORMED: &str = "Malformed JSON request";

/// The lists the update request marks required with a default of `[]`: left out, each
/// becomes empty.
const LISTS: [&str; 2] = ["roles", "privileges"];

/// A user as the "Update user" request body describes it (seed 002). The service is Spring
/// Boot, whose JSON reader ignores properties it does not know unless told otherwise, and
/// nothing in the reference says it was: an unknown field is dropped, not refused.
pub const CONTRACT: Contract = Contract {
    fields: &[
        // Names the user: username plus authenticator.
        Field::new("userKey", Kind::Object).required(),
        Field::text("orgId"),
        Field::text("email"),
        Field::text("notes"),
        Field::text("firstName"),
        Field::text("lastName"),
        Field::text("primaryPhone"),
        Field::text("primaryPhoneCountryCode"),
        Field::text("primaryPhoneExtension"),
        Field::text("timeZone"),
        Field::text("locale"),
        Field::flag("enabled"),
        Field::flag("locked"),
        Field::flag("forcePasswordChange"),
        Field::flag("expired"),
        Field::flag("credentialsExpired"),
        Field::flag("usingMfa"),
        Field::flag("isSsoUser"),
        // Secrets: taken on a write, never shown.
        Field::text("password").write_only(),
        Field::text("mfaSecret").write_only(),
        Field::text("sharedSecret").write_only(),
        // Marked required but defaulting to `[]`, so a body may leave them out (see LISTS).
        Field::new("roles", Kind::ObjectArray),
        Field::new("privileges", Kind::ObjectArray),
        // The roles and privileges a user holds in effect (the sample shows them filled):
        // the service works them out, so a write does not set them.
        Field::new("allRoles", Kind::ObjectArray).read_only(),
        Field::new("allPrivileges", Kind::ObjectArray).read_only(),
        // In the request body, but kept by the service.
        Field::text("id").read_only(),
        Field::text("createdInstant").read_only(),
        Field::text("lastUpdatedInstant").read_only(),
        Field::text("createdBy").read_only(),
        Field::text("lastUpdatedBy").read_only(),
        Field::text("lastSuccessfulAuthAttempt").read_only(),
        Field::text("lastFailedAuthAttempt").read_only(),
    ],
    unknown: Unknown::Ignore,
};

pub(crate) fn flavor() -> Flavor {
    Flavor {
        contract: &CONTRACT,
        base_path: "",
        error_body,
        seed,
        routes,
        indexed: INDEXED,
        console_check,
    }
}

/// Spring Boot's error body.
fn error_body(status: StatusCode, message: &str, path: &str, at: SystemTime) -> Value {
    json!({
        "message": message,
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "timestamp": timestamp(at),
        "path": path,
    })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user-service/v1/login", web::post().to(login))
        .route(
            "/user-service/internal/user/{authenticator}/{username}",
            web::get().to(lookup),
        )
        .route("/user-service/v1/user", web::post().to(update))
        .route("/user-service/v1/user/create", web::post().to(create))
        .route(
            "/user-service/v1/user/{authenticator}/{username}",
            web::delete().to(delete),
        );
}

fn authorize(state: &EmulatorState, req: &HttpRequest) -> Result<(), Refusal> {
    let access = header(req, "x-jwt-assertion").is_some_and(|token| state.token_valid(token));
    let id = bearer(req).is_some_and(|token| state.token_valid(token));
    if access && id {
        Ok(())
    } else {
        Err(state.refuse(StatusCode::UNAUTHORIZED, "Unauthorized", req))
    }
}

async fn login(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body = json_object(&state, &req, &body, MALFORMED)?;
    let text = |field: &str| body.get(field).and_then(Value::as_str).unwrap_or_default();
    if text("username") != DEV_USERNAME || text("password") != DEV_PASSWORD {
        return Err(state.refuse(StatusCode::UNAUTHORIZED, "Bad credentials", &req));
    }
    let ([access, id], _) = state.issue_tokens();
    Ok(HttpResponse::Ok().json(json!({
        "access_token": access,
        "id_token": id,
        "token_type": "Bearer",
        "expires_in": state.token_ttl_secs(),
    })))
}

fn user_key(user: &Payload) -> Option<(&str, &str)> {
    let key = user.get("userKey")?.as_object()?;
    let part = |name| {
        key.get(name)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    Some((part("authenticator")?, part("username")?))
}

/// The first rule a body breaks, worded as the service words it.
fn violation(contract: &Contract, user: &Payload) -> Option<String> {
    let Some(key) = user.get("userKey").and_then(Value::as_object) else {
        return Some("Field \"userKey\" cannot be null".to_owned());
    };
    for part in ["username", "authenticator"] {
        if key
            .get(part)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Some(format!("Field \"userKey.{part}\" cannot be null"));
        }
    }
    if let Some(spec) = contract.mistyped(user).next() {
        return Some(format!(
            "Field \"{}\" must be {}",
            spec.name,
            spec.kind.described()
        ));
    }
    let lists = contract
        .writable()
        .filter(|spec| spec.kind == Kind::ObjectArray);
    for spec in lists {
        let items = user.get(spec.name).and_then(Value::as_array);
        let repeats = items.is_some_and(|items| {
            items
                .iter()
                .enumerate()
                .any(|(i, item)| items[..i].contains(item))
        });
        if repeats {
            return Some(format!("Field \"{}\" must hold unique items", spec.name));
        }
    }
    let present = |field: &str| user.get(field).filter(|value| !value.is_null());
    let filled = |field: &str| {
        present(field)
            .and_then(Value::as_str)
            .is_some_and(|text| !text.is_empty())
    };
    if filled("primaryPhone") && !filled("primaryPhoneCountryCode") {
        return Some("primaryPhoneCountryCode is mandatory when primaryPhone is sent".to_owned());
    }
    None
}

fn accept_user(state: &EmulatorState, req: &HttpRequest, body: &[u8]) -> Result<Payload, Refusal> {
    let user = json_object(state, req, body, MALFORMED)?;
    let contract = state.flavor.contract;
    match violation(contract, &user) {
        Some(message) => Err(state.refuse(StatusCode::BAD_REQUEST, &message, req)),
        None => Ok(contract.writable_fields(&user)),
    }
}

/// The console holds a user to the service's rules: a full `userKey` no other user has, and
/// an email no other user has.
fn console_check(accounts: &Accounts, user: &Payload, editing: Option<&str>) -> Verdict {
    if let Some(message) = violation(&CONTRACT, user) {
        return Err((StatusCode::BAD_REQUEST, message));
    }
    let (authenticator, username) = user_key(user).unwrap_or_default();
    let holder = find_id(accounts, authenticator, username);
    if holder.is_some_and(|holder| Some(holder.as_str()) != editing) {
        return Err((StatusCode::CONFLICT, "User already exists".to_owned()));
    }
    accounts.check_unique(user, UNIQUE_EMAIL, editing)
}

fn find_id(accounts: &Accounts, authenticator: &str, username: &str) -> Option<String> {
    accounts
        .find(USERNAME, username)
        .into_iter()
        .find(|record| {
            user_key(&record.fields).is_some_and(|(held_authenticator, held_username)| {
                held_authenticator == authenticator && held_username.eq_ignore_ascii_case(username)
            })
        })
        .map(|record| record.id.clone())
}

fn store_new(accounts: &mut Accounts, user: Payload, now: SystemTime, counts: Counts) -> &Record {
    let id = uuid::Uuid::new_v4().to_string();
    let mut fields = user;
    fields.insert("id".to_owned(), json!(id));
    fields.insert("createdInstant".to_owned(), json!(timestamp(now)));
    fields.insert("lastUpdatedInstant".to_owned(), json!(timestamp(now)));
    fields.entry("enabled").or_insert(Value::Bool(true));
    for list in ["roles", "privileges"] {
        fields.entry(list).or_insert_with(|| json!([]));
    }
    accounts.insert(&id, fields, counts)
}

fn seed(accounts: &mut Accounts, user: Payload, now: SystemTime) -> String {
    store_new(accounts, user, now, Counts::default()).id.clone()
}

async fn lookup(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    key: web::Path<(String, String)>,
) -> Reply {
    authorize(&state, &req)?;
    let (authenticator, username) = key.into_inner();
    let user = state.with_accounts(|accounts| {
        find_id(accounts, &authenticator, &username).and_then(|id| accounts.fields(&id))
    });
    user.map(|user| HttpResponse::Ok().json(user))
        .ok_or_else(|| state.refuse(StatusCode::NOT_FOUND, NOT_FOUND, &req))
}

async fn create(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body)?;
    let now = state.now();
    let created = state.with_accounts(|accounts| {
        let (authenticator, username) = user_key(&user).unwrap_or_default();
        if find_id(accounts, authenticator, username).is_some() {
            return Err("User already exists");
        }
        if let Some(message) = accounts.clash(&user, UNIQUE_EMAIL, None) {
            return Err(message);
        }
        Ok(store_new(accounts, user, now, Counts::CREATED)
            .fields
            .clone())
    });
    match created {
        Ok(user) => Ok(HttpResponse::Created().json(user)),
        Err(message) => Err(state.refuse(StatusCode::CONFLICT, message, &req)),
    }
}

/// Updates the user the body's `userKey` names with the fields sent; a field sent as null
/// is cleared, and `roles` and `privileges` become what was sent (empty when left out).
async fn update(state: web::Data<EmulatorState>, req: HttpRequest, body: web::Bytes) -> Reply {
    authorize(&state, &req)?;
    let user = accept_user(&state, &req, &body)?;
    let now = state.now();
    let (authenticator, username) = user_key(&user).unwrap_or_default();
    let (authenticator, username) = (authenticator.to_owned(), username.to_owned());
    let mut changes = user;
    // The key names the user; it is not one of the fields that change.
    changes.remove("userKey");
    // The lists are required with a default of [] (seed 002): the service replaces each with
    // what is sent, and an update that leaves one out empties it.
    for list in LISTS {
        changes.entry(list).or_insert_with(|| json!([]));
    }
    let outcome = state.with_accounts(|accounts| {
        let id = find_id(accounts, &authenticator, &username).ok_or(Refused::NotFound)?;
        let record = accounts.merge(&id, changes, UNIQUE_EMAIL)?;
        record
            .fields
            .insert("lastUpdatedInstant".to_owned(), json!(timestamp(now)));
        Ok(record.fields.clone())
    });
    match outcome {
        Ok(user) => Ok(HttpResponse::Ok().json(user)),
        Err(Refused::NotFound) => Err(state.refuse(StatusCode::NOT_FOUND, NOT_FOUND, &req)),
        Err(Refused::Conflict(message)) => Err(state.refuse(StatusCode::CONFLICT, message, &req)),
    }
}

async fn delete(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    key: web::Path<(String, String)>,
) -> Reply {
    authorize(&state, &req)?;
    let (authenticator, username) = key.into_inner();
    let deleted = state.with_accounts(|accounts| {
        find_id(accounts, &authenticator, &username).is_some_and(|id| accounts.delete(&id))
    });
    if deleted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(state.refuse(StatusCode::NOT_FOUND, NOT_FOUND, &req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spring Boot's reader ignores properties it does not know: the user is taken without
    /// them.
    #[test]
    fn a_field_the_service_does_not_know_is_dropped_not_refused() {
        let Value::Object(user) = json!({
            "userKey": {"username": "ana", "authenticator": "local"},
            "email": "ana@example.com", "department": "Finance",
        }) else {
            unreachable!("a JSON object literal")
        };
        assert_eq!(violation(&CONTRACT, &user), None);
        let kept = CONTRACT.writable_fields(&user);
        assert!(!kept.contains_key("department"), "{kept:?}");
        assert_eq!(kept.len(), 2);
    }
}
