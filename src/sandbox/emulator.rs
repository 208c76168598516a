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

use super::console;
use super::contract::Contract;
use super::faults::{inject, Faults};
use super::index::{Index, Key};
use super::EmulatorConfig;
use crate::clock::SharedClock;

/// A JSON object: a request body, or an account's fields.
pub(crate) type Payload = serde_json::Map<String, Value>;

/// What makes an emulator one vendor's: its contract, routes, error bodies and ids.
pub(crate) struct Flavor {
    /// The vendor's user fields as its documentation states them (not as the adapter
    /// declares them): the emulator checks types, required fields and limits against it
    /// and keeps write-only fields apart.
    pub contract: &'static Contract,
    /// The path a `TargetConfig.base_url` ends with.
    pub base_path: &'static str,
    /// The vendor's error body for a status and a message, at a path and a time.
    pub error_body: fn(StatusCode, &str, &str, SystemTime) -> Value,
    /// Stores an account handed in directly (not through the API), with the ids and
    /// defaults a create would give it; returns its id.
    pub seed: fn(&mut Accounts, Payload, SystemTime) -> String,
    pub routes: fn(&mut web::ServiceConfig),
    /// The fields the vendor looks accounts up by (its unique fields among them).
    pub indexed: &'static [Key],
    /// What the vendor refuses in an account a person saves in its console: `account` is
    /// the whole account as it would be (`editing` its id when it already exists), checked
    /// against the vendor's rules and the other accounts, refused with the vendor's status
    /// and words. A console bypasses the API, not the vendor's rules.
    pub console_check: fn(&Accounts, &Payload, Option<&str>) -> Verdict,
}

/// A console's answer to an account a person saves: kept, or refused with the vendor's
/// status and words.
pub(crate) type Verdict = Result<(), (StatusCode, String)>;

/// How many writes the API accepted for one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub creates: u32,
    pub updates: u32,
    pub deletes: u32,
    /// Role assignments and removals (Kibo's `/roles/{roleId}` calls), changing or not.
    pub role_calls: u32,
}

/// The changes made by hand through the control endpoint, as a person in the vendor's
/// console would make them: counted apart from the API's, which the bridge's calls make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleCounts {
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
        role_calls: 0,
    };
}

#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub id: String,
    pub fields: Payload,
    /// Write-only values, kept apart so no read ever returns them.
    pub secrets: BTreeMap<String, String>,
    /// How many accepted writes (a seed included) set each write-only field.
    pub secret_writes: BTreeMap<String, u32>,
    pub counts: Counts,
    /// Deleted accounts stay listed (never served) so their delete count can be seen.
    pub deleted: bool,
}

impl Record {
    /// Takes the write-only values an accepted write set, counting each.
    fn set_secrets(&mut self, secrets: BTreeMap<String, String>) {
        for (name, value) in secrets {
            *self.secret_writes.entry(name.clone()).or_default() += 1;
            self.secrets.insert(name, value);
        }
    }
}

/// An account as the control endpoint and the test handles show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountSnapshot {
    pub id: String,
    pub fields: Payload,
    /// The write-only fields that hold a value (their values are not shown).
    pub secrets_set: Vec<String>,
    /// How many times each write-only field was set, by a seed or an accepted write: a
    /// password set by hand and never by the bridge shows `{"password": 1}`.
    pub secret_writes: BTreeMap<String, u32>,
    pub counts: Counts,
    pub deleted: bool,
}

impl AccountSnapshot {
    fn of(record: &Record) -> Self {
        AccountSnapshot {
            id: record.id.clone(),
            fields: record.fields.clone(),
            secrets_set: record.secrets.keys().cloned().collect(),
            secret_writes: record.secret_writes.clone(),
            counts: record.counts,
            deleted: record.deleted,
        }
    }
}

/// Why an update did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    NotFound,
    /// Another account holds a unique value; the vendor's message.
    Conflict(&'static str),
}

/// The accounts one emulator holds, in creation order.
#[derive(Debug)]
pub(crate) struct Accounts {
    records: Vec<Record>,
    sequence: u64,
    /// The fields no read returns.
    write_only: Vec<&'static str>,
    /// Live accounts by id, and by the flavor's indexed fields: positions in `records`,
    /// which only ever grows (deleted accounts stay listed).
    by_id: HashMap<String, usize>,
    index: Index,
}

impl Accounts {
    fn new(flavor: &Flavor) -> Self {
        Self {
            records: Vec::new(),
            sequence: 0,
            write_only: flavor.contract.write_only().collect(),
            by_id: HashMap::new(),
            index: Index::new(flavor.indexed),
        }
    }

    /// A fresh number, for ids the vendor assigns in sequence.
    pub(crate) fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    pub(crate) fn live(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|record| !record.deleted)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Record> {
        self.by_id.get(id).map(|position| &self.records[*position])
    }

    /// A live account to change in place; the caller must not change its indexed fields.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        let position = *self.by_id.get(id)?;
        Some(&mut self.records[position])
    }

    /// The live accounts whose `key` equals `text` (as the key compares), in creation order.
    pub(crate) fn find(&self, key: Key, text: &str) -> Vec<&Record> {
        match self.index.equal(key, text) {
            Some(positions) => positions.iter().map(|p| &self.records[*p]).collect(),
            None => {
                let folded = key.fold.apply(text);
                self.live()
                    .filter(|record| {
                        key.text(&record.fields)
                            .is_some_and(|held| key.fold.apply(held) == folded)
                    })
                    .collect()
            }
        }
    }

    /// The live accounts, in creation order, where one of `keys` (each folded by
    /// `str::to_lowercase`) contains `needle` (already lowercased).
    pub(crate) fn search(&self, keys: &[Key], needle: &str) -> Vec<&Record> {
        // A value no longer than the needle contains it only by being equal to it, and
        // equal values are what the index holds.
        let only_equal = keys.iter().all(|key| {
            self.index
                .longest(*key)
                .is_some_and(|longest| longest <= needle.len())
        });
        if !only_equal {
            return self
                .live()
                .filter(|record| {
                    keys.iter().any(|key| {
                        key.text(&record.fields)
                            .is_some_and(|text| key.fold.apply(text).contains(needle))
                    })
                })
                .collect();
        }
        let mut positions: Vec<usize> = keys
            .iter()
            .filter_map(|key| self.index.equal(*key, needle))
            .flatten()
            .copied()
            .collect();
        positions.sort_unstable();
        positions.dedup();
        positions.iter().map(|p| &self.records[*p]).collect()
    }

    /// The message paired with the first of `unique` fields whose value in `account` a live
    /// account other than `except` already holds (compared without regard to case, as the
    /// vendors compare names and addresses).
    pub(crate) fn clash(
        &self,
        account: &Payload,
        unique: &[(&'static str, &'static str)],
        except: Option<&str>,
    ) -> Option<&'static str> {
        unique
            .iter()
            .find(|(field, _)| {
                account
                    .get(*field)
                    .and_then(Value::as_str)
                    .is_some_and(|value| !value.is_empty() && self.taken(field, value, except))
            })
            .map(|(_, message)| *message)
    }

    /// `clash` as a verdict: a 409 with the vendor's message.
    pub(crate) fn check_unique(
        &self,
        account: &Payload,
        unique: &[(&'static str, &'static str)],
        except: Option<&str>,
    ) -> Verdict {
        match self.clash(account, unique, except) {
            Some(message) => Err((StatusCode::CONFLICT, message.to_owned())),
            None => Ok(()),
        }
    }

    fn taken(&self, field: &'static str, value: &str, except: Option<&str>) -> bool {
        let holds = |record: &Record| {
            Some(record.id.as_str()) != except
                && record
                    .fields
                    .get(field)
                    .and_then(Value::as_str)
                    .is_some_and(|held| held.eq_ignore_ascii_case(value))
        };
        // An index by the ASCII-folded value compares the way `eq_ignore_ascii_case` does.
        match self.index.equal(Key::ascii(field), value) {
            Some(positions) => positions.iter().any(|p| holds(&self.records[*p])),
            None => self.live().any(holds),
        }
    }

    /// A live account as the control endpoint shows it.
    pub(crate) fn snapshot_of(&self, id: &str) -> Option<AccountSnapshot> {
        self.get(id).map(AccountSnapshot::of)
    }

    /// The fields of a live account, as the API returns them.
    pub(crate) fn fields(&self, id: &str) -> Option<Payload> {
        self.get(id).map(|record| record.fields.clone())
    }

    /// What an account keeps of `fields`: no nulls, and the write-only values apart.
    pub(crate) fn to_store(&self, fields: Payload) -> (Payload, BTreeMap<String, String>) {
        let mut secrets = BTreeMap::new();
        let mut kept = Payload::new();
        for (name, value) in fields {
            match value {
                Value::Null => {}
                Value::String(secret) if self.write_only.contains(&name.as_str()) => {
                    secrets.insert(name, secret);
                }
                value => {
                    kept.insert(name, value);
                }
            }
        }
        (kept, secrets)
    }

    /// Stores a new account.
    pub(crate) fn insert(&mut self, id: &str, fields: Payload, counts: Counts) -> &Record {
        let (fields, secrets) = self.to_store(fields);
        let position = self.records.len();
        self.by_id.entry(id.to_owned()).or_insert(position);
        self.index.add(position, &fields);
        let secret_writes = secrets.keys().map(|name| (name.clone(), 1)).collect();
        self.records.push(Record {
            id: id.to_owned(),
            fields,
            secrets,
            secret_writes,
            counts,
            deleted: false,
        });
        &self.records[self.records.len() - 1]
    }

    /// A PUT: the account's fields become `fields`, except the `kept` ones the body does not
    /// set (what the vendor assigns), and write-only values it leaves out stay. The caller
    /// may go on to change the record's fields, but not the indexed ones.
    pub(crate) fn replace(
        &mut self,
        id: &str,
        fields: Payload,
        unique: &[(&'static str, &'static str)],
        kept: &[&str],
    ) -> Result<&mut Record, Refused> {
        self.check_update(id, &fields, unique)?;
        let (mut fields, secrets) = self.to_store(fields);
        let position = self.position(id)?;
        let record = &mut self.records[position];
        for name in kept {
            if let (false, Some(value)) = (fields.contains_key(*name), record.fields.get(*name)) {
                fields.insert((*name).to_owned(), value.clone());
            }
        }
        self.index.remove(position, &record.fields);
        self.index.add(position, &fields);
        record.fields = fields;
        record.set_secrets(secrets);
        record.counts.updates += 1;
        Ok(record)
    }

    /// A partial update: the fields sent change, a null clears one, the rest stay. The
    /// caller may go on to change the record's fields, but not the indexed ones.
    pub(crate) fn merge(
        &mut self,
        id: &str,
        changes: Payload,
        unique: &[(&'static str, &'static str)],
    ) -> Result<&mut Record, Refused> {
        self.check_update(id, &changes, unique)?;
        let cleared: Vec<String> = changes
            .iter()
            .filter(|(_, value)| value.is_null())
            .map(|(name, _)| name.clone())
            .collect();
        let position = self.position(id)?;
        self.apply(position, changes, cleared);
        let record = &mut self.records[position];
        record.counts.updates += 1;
        Ok(record)
    }

    /// An edit by hand: the fields sent change, a null clears one, the rest stay; no API
    /// count moves. The caller has checked the result against the vendor's rules.
    pub(crate) fn edit(&mut self, id: &str, changes: Payload) -> Result<&Record, Refused> {
        let position = self.position(id)?;
        let cleared = changes
            .iter()
            .filter(|(_, value)| value.is_null())
            .map(|(name, _)| name.clone())
            .collect();
        self.apply(position, changes, cleared);
        Ok(&self.records[position])
    }

    fn apply(&mut self, position: usize, changes: Payload, cleared: Vec<String>) {
        let (set, secrets) = self.to_store(changes);
        let record = &mut self.records[position];
        self.index.remove(position, &record.fields);
        for name in cleared {
            record.fields.remove(&name);
        }
        record.fields.extend(set);
        self.index.add(position, &record.fields);
        record.set_secrets(secrets);
    }

    fn position(&self, id: &str) -> Result<usize, Refused> {
        self.by_id.get(id).copied().ok_or(Refused::NotFound)
    }

    fn check_update(
        &self,
        id: &str,
        fields: &Payload,
        unique: &[(&'static str, &'static str)],
    ) -> Result<(), Refused> {
        if self.get(id).is_none() {
            return Err(Refused::NotFound);
        }
        match self.clash(fields, unique, Some(id)) {
            Some(message) => Err(Refused::Conflict(message)),
            None => Ok(()),
        }
    }

    /// Marks a live account deleted through the API; false when there is none.
    pub(crate) fn delete(&mut self, id: &str) -> bool {
        match self.remove(id) {
            Some(position) => {
                self.records[position].counts.deletes += 1;
                true
            }
            None => false,
        }
    }

    /// Marks a live account deleted, its position in `records`; no count moves.
    pub(crate) fn remove(&mut self, id: &str) -> Option<usize> {
        let position = self.by_id.remove(id)?;
        let record = &mut self.records[position];
        self.index.remove(position, &record.fields);
        record.deleted = true;
        Some(position)
    }

    fn snapshot(&self) -> Vec<AccountSnapshot> {
        self.records.iter().map(AccountSnapshot::of).collect()
    }
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
    console: ConsoleCounts,
    /// The second being counted for the rate limit, and the requests in it so far.
    window: (u64, u32),
}

/// One emulator's state, shared by its handlers and by the handle tests hold.
pub(crate) struct EmulatorState {
    pub clock: SharedClock,
    pub flavor: Flavor,
    /// An update without the password keeps the one held (see `EmulatorConfig`).
    pub keeps_password_when_omitted: bool,
    token_ttl: Duration,
    rate_limit: Option<u32>,
    configured_faults: Faults,
    inner: Mutex<Inner>,
}

impl EmulatorState {
    pub(crate) fn new(flavor: Flavor, cfg: &EmulatorConfig, clock: SharedClock) -> Self {
        let accounts = Accounts::new(&flavor);
        Self {
            clock,
            flavor,
            keeps_password_when_omitted: cfg.keeps_password_when_omitted,
            token_ttl: Duration::from_secs(cfg.token_ttl_secs),
            rate_limit: cfg.rate_limit_per_second,
            configured_faults: cfg.faults.clone(),
            inner: Mutex::new(Inner {
                accounts,
                tokens: HashMap::new(),
                faults: cfg.faults.clone(),
                requests: 0,
                logins: 0,
                console: ConsoleCounts::default(),
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

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Runs `f` over the accounts under the lock.
    pub(crate) fn with_accounts<T>(&self, f: impl FnOnce(&mut Accounts) -> T) -> T {
        f(&mut self.inner().accounts)
    }

    pub(crate) fn refuse(&self, status: StatusCode, message: &str, req: &HttpRequest) -> Refusal {
        Refusal {
            status,
            body: (self.flavor.error_body)(status, message, req.path(), self.now()),
        }
    }

    /// A create: `store` keeps the account unless a live one already holds one of its
    /// `unique` values, which is refused with a 409 in the vendor's words. Answers what was
    /// stored; the vendor's success status is the caller's.
    pub(crate) fn create_unique(
        &self,
        req: &HttpRequest,
        account: Payload,
        unique: &[(&'static str, &'static str)],
        store: impl FnOnce(&mut Accounts, Payload) -> Payload,
    ) -> Result<Payload, Refusal> {
        self.with_accounts(|accounts| match accounts.clash(&account, unique, None) {
            Some(message) => Err(message),
            None => Ok(store(accounts, account)),
        })
        .map_err(|message| self.refuse(StatusCode::CONFLICT, message, req))
    }

    /// `GET .../{id}`: the account, or a 404 in the vendor's words.
    pub(crate) fn read_reply(&self, req: &HttpRequest, id: &str, missing: &str) -> Reply {
        match self.with_accounts(|accounts| accounts.fields(id)) {
            Some(fields) => Ok(HttpResponse::Ok().json(fields)),
            None => Err(self.refuse(StatusCode::NOT_FOUND, missing, req)),
        }
    }

    /// `DELETE .../{id}`: 204, or a 404 in the vendor's words.
    pub(crate) fn delete_reply(&self, req: &HttpRequest, id: &str, missing: &str) -> Reply {
        if self.with_accounts(|accounts| accounts.delete(id)) {
            Ok(HttpResponse::NoContent().finish())
        } else {
            Err(self.refuse(StatusCode::NOT_FOUND, missing, req))
        }
    }

    /// One login: issues `N` tokens valid for the configured lifetime, returned with their
    /// expiry.
    pub(crate) fn issue_tokens<const N: usize>(&self) -> ([String; N], SystemTime) {
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
    pub(crate) fn token_ttl_secs(&self) -> u64 {
        self.token_ttl.as_secs()
    }

    pub(crate) fn token_valid(&self, token: &str) -> bool {
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

    pub(crate) fn snapshot(&self) -> Vec<AccountSnapshot> {
        self.inner().accounts.snapshot()
    }

    /// Runs a change by hand over the accounts and the console's counts, under the lock.
    pub(crate) fn by_hand<T>(&self, f: impl FnOnce(&mut Accounts, &mut ConsoleCounts) -> T) -> T {
        let inner = &mut *self.inner();
        f(&mut inner.accounts, &mut inner.console)
    }

    pub(crate) fn faults(&self) -> Faults {
        self.inner().faults.clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.inner().faults = faults;
    }

    pub(crate) fn expire_tokens(&self) {
        self.inner().tokens.clear();
    }

    pub(crate) fn requests(&self) -> u64 {
        self.inner().requests
    }

    pub(crate) fn logins(&self) -> u64 {
        self.inner().logins
    }

    pub(crate) fn secret(&self, id: &str, name: &str) -> Option<String> {
        let inner = self.inner();
        inner.accounts.get(id)?.secrets.get(name).cloned()
    }

    pub(crate) fn seed(&self, fields: Payload) -> String {
        let now = self.now();
        let mut inner = self.inner();
        (self.flavor.seed)(&mut inner.accounts, fields, now)
    }

    /// Back to the state at start: no accounts, tokens or counts, the configured faults.
    pub(crate) fn reset(&self) {
        let mut inner = self.inner();
        inner.accounts = Accounts::new(&self.flavor);
        inner.tokens.clear();
        inner.faults = self.configured_faults.clone();
        inner.requests = 0;
        inner.logins = 0;
        inner.console = ConsoleCounts::default();
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

/// Totals for load tests, which cannot afford to list every account: API requests
/// received, logins, live accounts, and the changes made by hand, apart.
async fn stats(state: web::Data<EmulatorState>) -> HttpResponse {
    let (requests, logins, accounts, console) = {
        let inner = state.inner();
        let accounts = inner.accounts.live().count();
        (inner.requests, inner.logins, accounts, inner.console)
    };
    HttpResponse::Ok().json(serde_json::json!({
        "requests": requests,
        "logins": logins,
        "accounts": accounts,
        "console": console,
    }))
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
            .route("/accounts", web::post().to(console::create))
            .route("/accounts/{id}", web::patch().to(console::edit))
            .route("/accounts/{id}", web::delete().to(console::delete))
            .route("/stats", web::get().to(stats))
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
