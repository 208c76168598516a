//! Sign-in with an admin token, the session cookie that follows, and the CSRF token every
//! changing form carries. Sessions live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};

use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use rand::RngCore;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::admin::AdminAuth;
use crate::clock::{unix_millis, SharedClock};
use crate::config::TrustedProxies;
use crate::ledger::Actor;
use crate::scim::auth::{client_address, sha256};
use crate::scim::error::ScimError;

use super::{layout, Console, ConsoleError};

const COOKIE: &str = "scim_bridge_console";
/// A session unused this long is over.
const IDLE_MS: i64 = 30 * 60 * 1000;
/// However busy, a session ends this long after sign-in.
const LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// Bounds the memory that sign-ins can take; past it the oldest session ends.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    client: Arc<str>,
    csrf: String,
    started: i64,
    last_seen: i64,
}

impl Session {
    fn live(&self, now: i64) -> bool {
        now - self.last_seen < IDLE_MS && now - self.started < LIFETIME_MS
    }
}

/// The signed-in sessions, keyed by the SHA-256 of their cookie value.
pub(super) struct Sessions {
    clock: SharedClock,
    by_id: Mutex<HashMap<[u8; 32], Session>>,
}

/// A request from a signed-in admin: who, and the CSRF token their forms carry.
pub(super) struct Admin {
    pub client: Arc<str>,
    pub csrf: String,
}

impl Admin {
    /// Who the audit trail names for this admin's actions: the same client as on the admin API.
    pub(super) fn actor(&self) -> Actor {
        Actor::Admin(self.client.to_string())
    }

    /// Refuses a changing request whose form did not carry this session's token.
    pub(super) fn verify(&self, csrf: &str) -> Result<(), ConsoleError> {
        if bool::from(self.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(
                "this form is stale or came from elsewhere (CSRF token mismatch); reload the \
                 page and try again"
                    .into(),
            ))
        }
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    pub(super) fn new(clock: SharedClock) -> Sessions {
        Sessions {
            clock,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> i64 {
        unix_millis(self.clock.as_ref())
    }

    /// Starts a session for `client`; returns the cookie value.
    fn start(&self, client: Arc<str>) -> String {
        let id = random_hex();
        let now = self.now();
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, session| session.live(now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(key, _)| *key)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            sha256(&id),
            Session {
                client,
                csrf: random_hex(),
                started: now,
                last_seen: now,
            },
        );
        id
    }

    /// The live session behind a cookie value, its idle time reset.
    fn find(&self, id: &str) -> Option<Admin> {
        let now = self.now();
        let key = sha256(id);
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get_mut(&key)?;
        if !session.live(now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(Admin {
            client: Arc::clone(&session.client),
            csrf: session.csrf.clone(),
        })
    }

    fn end(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sha256(id));
    }
}

impl FromRequest for Admin {
    type Error = ConsoleError;
    type Future = Ready<Result<Admin, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = req
            .app_data::<web::Data<Console>>()
            .zip(req.cookie(COOKIE))
            .and_then(|(console, cookie)| console.sessions.find(cookie.value()));
        ready(found.ok_or(ConsoleError::SignedOut))
    }
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sign-in", web::get().to(sign_in_page))
        .route("/sign-in", web::post().to(sign_in))
        .route("/sign-out", web::post().to(sign_out));
}

async fn sign_in_page() -> HttpResponse {
    layout::sign_in(None, StatusCode::OK)
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

fn session_cookie(req: &HttpRequest, value: String, age: CookieAge) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(age)
        .finish()
}

async fn sign_in(
    req: HttpRequest,
    form: web::Form<SignIn>,
    console: web::Data<Console>,
    auth: web::Data<AdminAuth>,
    proxies: web::Data<TrustedProxies>,
) -> Result<HttpResponse, ConsoleError> {
    let address = client_address(req.peer_addr(), req.headers(), &proxies);
    let bearer = format!("Bearer {}", form.token.trim());
    let client = match auth.0.authenticate(address, Some(&bearer)) {
        Ok(client) => client,
        Err(ScimError::RateLimited { retry_after_secs }) => {
            return Err(ConsoleError::RateLimited { retry_after_secs })
        }
        Err(_) => {
            tracing::warn!(address = %address, "console sign-in refused");
            return Ok(layout::sign_in(
                Some("That is not an admin token. Sign in with a token of [[admin.clients]]."),
                StatusCode::UNAUTHORIZED,
            ));
        }
    };
    tracing::info!(client = %client, address = %address, "console: signed in");
    let id = console.sessions.start(client);
    Ok(HttpResponse::SeeOther()
        .cookie(session_cookie(
            &req,
            id,
            CookieAge::milliseconds(LIFETIME_MS),
        ))
        .insert_header((header::LOCATION, layout::HOME))
        .finish())
}

#[derive(Deserialize)]
struct SignOut {
    csrf: String,
}

async fn sign_out(
    req: HttpRequest,
    admin: Admin,
    form: web::Form<SignOut>,
    console: web::Data<Console>,
) -> Result<HttpResponse, ConsoleError> {
    admin.verify(&form.csrf)?;
    if let Some(cookie) = req.cookie(COOKIE) {
        console.sessions.end(cookie.value());
    }
    tracing::info!(client = %admin.client, "console: signed out");
    Ok(HttpResponse::SeeOther()
        .cookie(session_cookie(&req, String::new(), CookieAge::ZERO))
        .insert_header((header::LOCATION, layout::SIGN_IN))
        .finish())
}
