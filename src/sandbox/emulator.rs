//! What every emulator shares: the accounts it holds (with per-account write counts), the
//! tokens it issued, its faults, the `/_sandbox` control endpoint, and the listener that
//! serves one vendor's routes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::faults::{inject, Faults};
use super::EmulatorConfig;
use crate::clock::SharedClock;
use crate::targets::Payload;

/// What makes an emulator one vendor's: its routes, its error bodies, its secrets.
pub(crate) struct Flavor {
    /// The path a `TargetConfig.base_url` ends with.
    pub base_path: &'static str,
    /// The vendor's error body for a status and a message, at a path and a time.
    pub error_body: fn(StatusCode, &str, &str, SystemTime) -> Value,
    /// Stores an account handed in directly (not through the API), with the ids and
    /// defaults a create would give it; returns its id.
    pub seed: fn(&mut Accounts, Payload, SystemTime) -> String,
    pub routes: fn(&mut web::ServiceConfig),
}

/// How many writes the API accepted for one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub creates: u32,
    pub updates: u32,
    pub deletes: u32,
}

impl Counts {
    /// An account that arrived through the API's create.
    pub(crate) const CREATED: Counts = Counts {
        creates: 1,
        updates: 0,
        deletes: 0,
    };
}

#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub id: String,
    pub fields: Payload,
    /// Write-only values, kept apart so no read ever returns them.
    pub secrets: BTreeMap<String, String>,
    pub counts: Counts,
    /// Deleted accounts stay listed (never served) so their delete count can be seen.
    pub deleted: bool,
}

/// An account as the control endpoint and the test handles show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountSnapshot {
    pub id: String,
    pub fields: Payload,
    /// The write-only fields that hold a value (their values are not shown).
    pub secrets_set: Vec<String>,
    pub counts: Counts,
    pub deleted: bool,
}

/// The accounts one emulator holds, in creation order.
#[derive(Debug, Default)]
pub(crate) struct Accounts {
    records: Vec<Record>,
    sequence: u64,
}

impl Accounts {
    /// A fresh number, for ids the vendor assigns in sequence.
    pub fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    pub fn live(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|record| !record.deleted)
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.live().find(|record| record.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        self.records
            .iter_mut()
            .find(|record| !record.deleted && record.id == id)
    }

    /// Whether a live account other than `except` holds `value` in `field` (compared without
    /// regard to case, as the vendors compare names and addresses).
    pub fn taken(&self, field: &str, value: &str, except: Option<&str>) -> bool {
        self.live().any(|record| {
            Some(record.id.as_str()) != except
                && record
                    .fields
                    .get(field)
                    .and_then(Value::as_str)
                    .is_some_and(|held| held.eq_ignore_ascii_case(value))
        })
    }

    /// The fields of a live account, as the API returns them.
    pub fn fields(&self, id: &str) -> Option<Payload> {
        self.get(id).map(|record| record.fields.clone())
    }

    /// Stores a new account, moving its write-only fields out of `fields`.
    pub fn insert(
        &mut self,
        id: &str,
        fields: Payload,
        write_only: &[&str],
        counts: Counts,
    ) -> &Record {
        let (fields, secrets) = split_secrets(fields, write_only);
        self.records.push(Record {
            id: id.to_owned(),
            fields,
            secrets,
            counts,
            deleted: false,
        });
        &self.records[self.records.len() - 1]
    }

    /// Marks a live account deleted; false when there is none.
    pub fn delete(&mut self, id: &str) -> bool {
        match self.get_mut(id) {
            Some(record) => {
                record.deleted = true;
                record.counts.deletes += 1;
                true
            }
            None => false,
        }
    }

    fn snapshot(&self) -> Vec<AccountSnapshot> {
        self.records
            .iter()
            .map(|record| AccountSnapshot {
                id: record.id.clone(),
                fields: record.fields.clone(),
                secrets_set: record.secrets.keys().cloned().collect(),
                counts: record.counts,
                deleted: record.deleted,
            })
            .collect()
    }
}

/// Separates the write-only fields (non-null strings) from the rest.
pub(crate) fn split_secrets(
    mut fields: Payload,
    write_only: &[&str],
) -> (Payload, BTreeMap<String, String>) {
    let mut secrets = BTreeMap::new();
    for name in write_only {
        if let Some(Value::String(secret)) = fields.remove(*name) {
            secrets.insert((*name).to_owned(), secret);
        }
    }
    (fields, secrets)
}

/// A refusal in the vendor's own error shape; handlers return it with `?`.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub body: Value,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.body)
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(&self.body)
    }
}

pub(crate) type Reply = Result<HttpResponse, Refusal>;

struct Inner {
    accounts: Accounts,
    /// Every token issued, with its expiry.
    tokens: HashMap<String, SystemTime>,
    faults: Faults,
    requests: u64,
    logins: u64,
    /// The second being counted for the rate limit, and the requests in it so far.
    window: (u64, u32),
}

/// One emulator's state, shared by its handlers and by the handle tests hold.
pub(crate) struct EmulatorState {
    pub clock: SharedClock,
    pub flavor: Flavor,
    token_ttl: Duration,
    rate_limit: Option<u32>,
    configured_faults: Faults,
    inner: Mutex<Inner>,
}

impl EmulatorState {
    pub fn new(flavor: Flavor, cfg: &EmulatorConfig, clock: SharedClock) -> Self {
        Self {
            clock,
            flavor,
            token_ttl: Duration::from_secs(cfg.token_ttl_secs),
            rate_limit: cfg.rate_limit_per_second,
            configured_faults: cfg.faults.clone(),
            inner: Mutex::new(Inner {
                accounts: Accounts::default(),
                tokens: HashMap::new(),
                faults: cfg.faults.clone(),
                requests: 0,
                logins: 0,
                window: (0, 0),
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A handler that panicked mid-update leaves at worst one odd account; the sandbox
        // keeps serving rather than failing every later request.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Runs `f` over the accounts under the lock.
    pub fn with_accounts<T>(&self, f: impl FnOnce(&mut Accounts) -> T) -> T {
        f(&mut self.inner().accounts)
    }

    pub fn refuse(&self, status: StatusCode, message: &str, req: &HttpRequest) -> Refusal {
        Refusal {
            status,
            body: (self.flavor.error_body)(status, message, req.path(), self.now()),
        }
    }

    /// One login: issues `N` tokens valid for the configured lifetime, returned with their
    /// expiry.
    pub fn issue_tokens<const N: usize>(&self) -> ([String; N], SystemTime) {
        let tokens: [String; N] =
            std::array::from_fn(|_| uuid::Uuid::new_v4().simple().to_string());
        let expires_at = self.now() + self.token_ttl;
        let mut inner = self.inner();
        for token in &tokens {
            inner.tokens.insert(token.clone(), expires_at);
        }
        inner.logins += 1;
        (tokens, expires_at)
    }

    /// The token lifetime in whole seconds, as the vendors state it.
    pub fn token_ttl_secs(&self) -> u64 {
        self.token_ttl.as_secs()
    }

    pub fn token_valid(&self, token: &str) -> bool {
        let now = self.now();
        self.inner()
            .tokens
            .get(token)
            .is_some_and(|expires_at| now < *expires_at)
    }

    /// Notes an arriving API request and hands back the faults in force for it.
    pub(crate) fn arrive(&self) -> Faults {
        let mut inner = self.inner();
        inner.requests += 1;
        inner.faults.clone()
    }

    /// Counts the request against the per-second limit, when the vendor has one.
    pub(crate) fn over_rate_limit(&self) -> bool {
        let Some(limit) = self.rate_limit else {
            return false;
        };
        let second = self
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut inner = self.inner();
        if inner.window.0 != second {
            inner.window = (second, 0);
        }
        inner.window.1 += 1;
        inner.window.1 > limit
    }

    pub fn snapshot(&self) -> Vec<AccountSnapshot> {
        self.inner().accounts.snapshot()
    }

    pub fn faults(&self) -> Faults {
        self.inner().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.inner().faults = faults;
    }

    pub fn expire_tokens(&self) {
        self.inner().tokens.clear();
    }

    pub fn requests(&self) -> u64 {
        self.inner().requests
    }

    pub fn logins(&self) -> u64 {
        self.inner().logins
    }

    pub fn secret(&self, id: &str, name: &str) -> Option<String> {
        let inner = self.inner();
        inner.accounts.get(id)?.secrets.get(name).cloned()
    }

    pub fn seed(&self, fields: Payload) -> String {
        let now = self.now();
        let mut inner = self.inner();
        (self.flavor.seed)(&mut inner.accounts, fields, now)
    }

    /// Back to the state at start: no accounts, tokens or counts, the configured faults.
    pub fn reset(&self) {
        let mut inner = self.inner();
        inner.accounts = Accounts::default();
        inner.tokens.clear();
        inner.faults = self.configured_faults.clone();
        inner.requests = 0;
        inner.logins = 0;
        inner.window = (0, 0);
    }
}

/// RFC 3339 time, as the vendors write timestamps.
pub(crate) fn timestamp(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The body as a JSON object, or the vendor's 400.
pub(crate) fn json_object(
    state: &EmulatorState,
    req: &HttpRequest,
    body: &[u8],
    message: &str,
) -> Result<Payload, Refusal> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(state.refuse(StatusCode::BAD_REQUEST, message, req)),
    }
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// A request header as text.
pub(crate) fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name)?.to_str().ok()
}

async fn list_accounts(state: web::Data<EmulatorState>) -> HttpResponse {
    HttpResponse::Ok().json(state.snapshot())
}

async fn get_faults(state: web::Data<EmulatorState>) -> HttpResponse {
    HttpResponse::Ok().json(state.faults())
}

async fn put_faults(state: web::Data<EmulatorState>, faults: web::Json<Faults>) -> HttpResponse {
    state.set_faults(faults.into_inner());
    HttpResponse::Ok().json(state.faults())
}

async fn expire_tokens(state: web::Data<EmulatorState>) -> HttpResponse {
    state.expire_tokens();
    HttpResponse::NoContent().finish()
}

async fn reset(state: web::Data<EmulatorState>) -> HttpResponse {
    state.reset();
    HttpResponse::NoContent().finish()
}

/// The control endpoint: outside the vendor's API, so faults never touch it.
fn control(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sandbox")
            .route("/accounts", web::get().to(list_accounts))
            .route("/faults", web::get().to(get_faults))
            .route("/faults", web::put().to(put_faults))
            .route("/expire-tokens", web::post().to(expire_tokens))
            .route("/reset", web::post().to(reset)),
    );
}

/// Binds `host:port` and builds the server for one emulator; the caller spawns it.
pub(crate) fn serve(
    host: IpAddr,
    port: u16,
    state: web::Data<EmulatorState>,
) -> std::io::Result<(SocketAddr, Server)> {
    let listener = TcpListener::bind((host, port))?;
    let addr = listener.local_addr()?;
    let routes = state.flavor.routes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(control)
            .service(web::scope("").wrap(from_fn(inject)).configure(routes))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((addr, server))
}
