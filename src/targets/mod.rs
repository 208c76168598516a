//! Outbound side of the flow: one adapter per third-party user API behind the `Target` trait.
//! The fan-out worker only ever talks to `dyn Target`.

use std::time::Duration;

use serde_json::{Map, Value};

pub mod appgate;
pub mod config;
pub mod http;
pub mod kibo;
pub mod primavera;
pub mod vendor;
pub mod vikingcloud;

use self::vendor::Vendor;

/// Every vendor the bridge can deliver to. Adding one: its folder under `targets/`, its
/// line here, and its emulator in the sandbox, keyed by its kind.
pub static VENDORS: &[&Vendor] = &[
    &appgate::VENDOR,
    &vikingcloud::VENDOR,
    &kibo::VENDOR,
    &primavera::VENDOR,
];

/// The vendor a target table's `kind` names.
pub(crate) fn vendor(kind: &str) -> Option<&'static Vendor> {
    VENDORS.iter().copied().find(|vendor| vendor.kind == kind)
}

/// A payload in the target's own field names, as the mapping engine rendered it.
pub type Payload = Map<String, Value>;

/// An account as the target holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAccount {
    /// The target's own id for the account (Appgate uuid, Kibo id, Primavera userId, ...).
    pub id: String,
    /// The account's fields as the target returned them (write-only fields absent).
    pub fields: Payload,
}

/// Why a call did not deliver. Every outbound answer is classified into exactly one of
/// delivered (`Ok`), retryable or rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// Worth trying again later: 429, 408, 5xx, timeouts, connection errors.
    #[error("retryable: {reason}")]
    Retryable {
        /// The HTTP status the target answered; `None` when no answer came (a timeout, a
        /// connection error) or the failure is the bridge's own.
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Permanent until the data or the mapping changes: other 4xx, with the target's own text.
    #[error("rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Refused by the adapter before anything was sent: a mapping mistake (a missing natural
    /// key) or a setting the target needs. Permanent like a rejection, but no target spoke.
    #[error("not sent: {message}")]
    Unusable { message: String },
}

pub(crate) type TargetResult<T> = Result<T, TargetError>;

impl TargetError {
    /// A call the adapter refuses without the target deciding it.
    pub(crate) fn unusable(message: impl Into<String>) -> Self {
        TargetError::Unusable {
            message: message.into(),
        }
    }
}

/// A copy of `payload` with `field` set to `value` (how adapters disable an account).
pub(crate) fn with_field(payload: &Payload, field: &str, value: Value) -> Payload {
    let mut payload = payload.clone();
    payload.insert(field.to_owned(), value);
    payload
}

/// A JSON object literal as a payload, for tests.
#[cfg(test)]
pub(crate) fn object(value: Value) -> Payload {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}

/// A non-empty string field the adapter cannot do without (a natural key); its absence is a
/// mapping mistake, so the payload is refused before anything is sent.
pub(crate) fn required_str<'a>(payload: &'a Payload, field: &str) -> TargetResult<&'a str> {
    match payload.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        _ => Err(TargetError::unusable(format!(
            "payload has no `{field}`, which this target needs"
        ))),
    }
}

impl RemoteAccount {
    /// An account from a target's JSON object, its id read from `id_field` (a string or a
    /// number). A delivered answer without an id is retryable: the next attempt adopts the
    /// account by its natural key.
    pub(crate) fn from_object(fields: Payload, id_field: &str) -> TargetResult<Self> {
        let id = match fields.get(id_field) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => {
                return Err(TargetError::Retryable {
                    status: None,
                    reason: format!("answer carries no `{id_field}`"),
                    retry_after: None,
                })
            }
        };
        Ok(Self { id, fields })
    }
}

/// One page of a target's accounts, read in the vendor's own paging.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountPage {
    pub accounts: Vec<RemoteAccount>,
    /// Where the next page starts (`None` on the last page), handed back to `Target::list`.
    pub next: Option<String>,
}

impl AccountPage {
    /// Where a page starts for the vendors that page by position: 0 for the first page,
    /// else the number a previous page's `next` holds.
    pub(crate) fn offset(cursor: Option<&str>) -> TargetResult<usize> {
        match cursor {
            None => Ok(0),
            Some(cursor) => cursor.parse().map_err(|_| {
                TargetError::unusable(format!("{cursor:?} is not a page this target gave"))
            }),
        }
    }

    /// The page of the accounts read from `start` on, of `total` on the target; the next
    /// page starts where this one ends, unless it was empty or reached the total.
    pub(crate) fn at_offset(
        start: usize,
        accounts: Vec<Payload>,
        total: usize,
    ) -> TargetResult<AccountPage> {
        let end = start + accounts.len();
        let accounts = accounts
            .into_iter()
            .map(|account| RemoteAccount::from_object(account, "id"))
            .collect::<TargetResult<_>>()?;
        let next = (end > start && end < total).then(|| end.to_string());
        Ok(AccountPage { accounts, next })
    }
}

/// The type of a target field, as the target API declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Boolean,
    Integer,
    /// Any JSON number, where the API types a field `number` (Appgate `failedLoginAttempts`).
    Number,
    StringArray,
    /// A JSON object or an array of objects (e.g. Primavera `userProducts`).
    Object,
    ObjectArray,
}

/// One field of a target's user schema. Mapping files are validated against these.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required_on_create: bool,
    pub required_on_update: bool,
    pub max_len: Option<usize>,
    /// Allowed values for an enumerated string field; empty when any value is allowed.
    pub allowed: &'static [&'static str],
    /// Never returned by the target (passwords, secrets).
    pub write_only: bool,
    /// Assigned by the target; a mapping must not set it.
    pub read_only: bool,
}

impl FieldSpec {
    /// A field the target accepts and returns, required nowhere, with no limits; vendors
    /// start from it and set what differs.
    pub const fn optional(name: &'static str, kind: FieldKind) -> Self {
        Self {
            name,
            kind,
            required_on_create: false,
            required_on_update: false,
            max_len: None,
            allowed: &[],
            write_only: false,
            read_only: false,
        }
    }
}

/// The user schema of one target API.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSchema {
    pub fields: Vec<FieldSpec>,
    /// The payload field(s) that form the natural key used to adopt existing accounts.
    pub natural_key: &'static [&'static str],
}

impl TargetSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The payload without the fields the target assigns itself (ids, timestamps, counters),
    /// which a write must not carry.
    pub(crate) fn writable(&self, payload: &Payload) -> Payload {
        payload
            .iter()
            .filter(|(name, _)| !self.field(name).is_some_and(|spec| spec.read_only))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// The contract every vendor adapter implements. Each method authenticates as needed
/// (logging in again once on 401) and classifies the answer.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// The configured name of this target (`appgate`, `kibo`, ...).
    fn name(&self) -> &str;

    fn schema(&self) -> &TargetSchema;

    /// Looks an account up by the natural key found in `payload`, to adopt it rather than
    /// create a duplicate.
    async fn find(&self, payload: &Payload) -> TargetResult<Option<RemoteAccount>>;

    async fn create(&self, payload: &Payload) -> TargetResult<RemoteAccount>;

    /// Brings the account `id` to `payload`, respecting the API's update semantics.
    async fn update(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount>;

    /// Disables the account `id`; `payload` is the latest full state, for APIs whose update
    /// replaces the whole object.
    async fn disable(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount>;

    /// `update` of `account`, whose fields were read moments ago: an adapter that reads an
    /// account before writing it (to send back what its API would otherwise clear) takes
    /// them instead of reading again.
    async fn update_held(
        &self,
        account: &RemoteAccount,
        payload: &Payload,
    ) -> TargetResult<RemoteAccount> {
        self.update(&account.id, payload).await
    }

    /// `disable` of `account`, whose fields were read moments ago (see `update_held`).
    async fn disable_held(
        &self,
        account: &RemoteAccount,
        payload: &Payload,
    ) -> TargetResult<RemoteAccount> {
        self.disable(&account.id, payload).await
    }

    async fn delete(&self, id: &str) -> TargetResult<()>;

    /// Reads the account back; `Ok(None)` when it no longer exists.
    async fn read(&self, id: &str) -> TargetResult<Option<RemoteAccount>>;

    /// Whether the vendor has a call that lists every account. Without one, a reconcile reads
    /// each account the ledger knows by id and cannot see accounts made elsewhere.
    fn can_list(&self) -> bool {
        false
    }

    /// One page of the target's accounts; `cursor` is `None` for the first page, then the
    /// previous page's `next`.
    async fn list(&self, _cursor: Option<&str>) -> TargetResult<AccountPage> {
        Err(TargetError::unusable(
            "this target has no call that lists accounts",
        ))
    }

    /// Accounts per page of `list`, when a listing can stand for the look-ups of many first
    /// deliveries (`first_delivery = "list_first"`): the target lists every account, and
    /// `find` matches one key that `lookup_key` gives. `None` otherwise.
    fn listing_page_size(&self) -> Option<usize> {
        None
    }

    /// The key `find` would match `fields` by (a payload, or an account's fields), folded
    /// as the vendor compares it; `None` when the fields lack it.
    fn lookup_key(&self, _fields: &Payload) -> Option<String> {
        None
    }

    /// Whether an account carries the mark the bridge puts on the accounts it makes, so a
    /// reconcile can tell its own orphans from accounts made by hand.
    fn marked(&self, _account: &RemoteAccount) -> bool {
        false
    }

    /// `payload` as the target would store it (its own normalisations), so a reconcile
    /// compares what was delivered with what the target holds like for like.
    fn as_stored(&self, payload: &Payload) -> Payload {
        payload.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::{AccountPage, TargetError, VENDORS};

    #[test]
    fn a_position_cursor_starts_at_zero_and_refuses_what_no_page_gave() {
        assert_eq!(AccountPage::offset(None), Ok(0));
        assert_eq!(AccountPage::offset(Some("200")), Ok(200));
        for bad in ["", "-1", "two", "1e3"] {
            assert!(
                matches!(
                    AccountPage::offset(Some(bad)),
                    Err(TargetError::Unusable { .. })
                ),
                "{bad:?}"
            );
        }
    }

    /// Adding a vendor is its folder and its line in `VENDORS`; this holds the shipped
    /// mapping files to that line (the sandbox holds its emulators to it).
    #[test]
    fn every_vendor_in_the_table_is_unique_and_shipped_with_a_mapping() {
        let kinds: BTreeSet<_> = VENDORS.iter().map(|vendor| vendor.kind).collect();
        assert_eq!(kinds.len(), VENDORS.len(), "a kind appears twice");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for vendor in VENDORS {
            let mapping = root.join("mappings").join(format!("{}.toml", vendor.kind));
            assert!(mapping.is_file(), "no mapping file {}", mapping.display());
        }
    }
}
