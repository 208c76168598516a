//! The control endpoint's hand edits: what a person in the vendor's console does to its
//! accounts (create, edit, delete), past the API's auth and faults but held to the vendor's
//! own rules, and counted apart from what the API was asked to do.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::emulator::{json_object, EmulatorState, Payload, Refusal, Reply};

const NOT_AN_OBJECT: &str =
    "the body must be a JSON object of the account's fields, named as the vendor names them";

/// The fields of a body. A console offers only the vendor's fields, and none of those it
/// assigns itself, so a body naming another is refused rather than partly applied.
fn fields(state: &EmulatorState, req: &HttpRequest, body: &[u8]) -> Result<Payload, Refusal> {
    let fields = json_object(state, req, body, NOT_AN_OBJECT)?;
    let contract = state.flavor.contract;
    for name in fields.keys() {
        let message = match contract.field(name) {
            None => format!("`{name}` is not a field of this vendor's accounts"),
            Some(field) if field.read_only => {
                format!("`{name}` is assigned by the vendor and cannot be set by hand")
            }
            Some(_) => continue,
        };
        return Err(state.refuse(StatusCode::BAD_REQUEST, &message, req));
    }
    Ok(fields)
}

fn no_such_account(state: &EmulatorState, req: &HttpRequest, id: &str) -> Refusal {
    let message = format!("no live account has the id {id:?}");
    state.refuse(StatusCode::NOT_FOUND, &message, req)
}

/// `POST /_sandbox/accounts`: an account made by hand, with what the vendor assigns on a
/// create (its id among it), answered as `GET /_sandbox/accounts` shows it.
pub(crate) async fn create(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Reply {
    let account = fields(&state, &req, &body)?;
    let (check, seed, now) = (state.flavor.console_check, state.flavor.seed, state.now());
    let made = state.by_hand(|accounts, counts| {
        check(accounts, &account, None)?;
        let id = seed(accounts, account, now);
        counts.creates += 1;
        Ok(accounts.snapshot_of(&id))
    });
    match made {
        Ok(account) => Ok(HttpResponse::Created().json(account)),
        Err((status, message)) => Err(state.refuse(status, &message, &req)),
    }
}

/// `PATCH /_sandbox/accounts/{id}`: the fields sent change (null clears one), the rest
/// stay, and the account that results must still be one the vendor would keep.
pub(crate) async fn edit(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    let changes = fields(&state, &req, &body)?;
    let check = state.flavor.console_check;
    let edited = state.by_hand(|accounts, counts| {
        let Some(record) = accounts.get(&id) else {
            return Ok(None);
        };
        let mut account = record.fields.clone();
        for (name, value) in &changes {
            if value.is_null() {
                account.remove(name);
            } else {
                account.insert(name.clone(), value.clone());
            }
        }
        check(accounts, &account, Some(&id))?;
        if accounts.edit(&id, changes).is_err() {
            return Ok(None);
        }
        counts.updates += 1;
        Ok(accounts.snapshot_of(&id))
    });
    match edited {
        Ok(Some(account)) => Ok(HttpResponse::Ok().json(account)),
        Ok(None) => Err(no_such_account(&state, &req, &id)),
        Err((status, message)) => Err(state.refuse(status, &message, &req)),
    }
}

/// `DELETE /_sandbox/accounts/{id}`: gone from the API; the account stays listed as
/// deleted, with no API delete counted.
pub(crate) async fn delete(
    state: web::Data<EmulatorState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Reply {
    let removed = state.by_hand(|accounts, counts| {
        let removed = accounts.remove(&id).is_some();
        if removed {
            counts.deletes += 1;
        }
        removed
    });
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_such_account(&state, &req, &id))
    }
}
