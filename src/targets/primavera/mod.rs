//! Oracle Primavera Cloud users: the adapter the fan-out worker drives for
//! `kind = "primavera"`. Users are matched by email; an update is a PUT answering 204, so the
//! account is read back afterwards.

pub mod client;
pub mod config;
pub mod payload;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde_json::Value;

use self::client::{Listing, PrimaveraAuth, PrimaveraClient};
pub(crate) use self::config::PrimaveraConfig;
use self::payload::{EMAIL, USER_ID};
use crate::targets::http::{endpoint, found, Session};
use crate::targets::vendor::{
    keys, mark_field, parse_url, Built, TargetConfigError, Vendor, VendorKeys,
};
use crate::targets::{
    required_str, AccountPage, Payload, RemoteAccount, Target, TargetError, TargetResult,
    TargetSchema,
};

/// Primavera answers 429 without `Retry-After` and asks callers to wait at least a second.
pub(crate) const THROTTLE_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) struct PrimaveraTarget {
    name: String,
    schema: TargetSchema,
    client: PrimaveraClient,
    list_page_size: usize,
    mark_field: String,
}

/// `https://<server>/primediscovery/apitoken/request?scope=http://<server>/api`, as the API
/// reference spells it (the scope says http even for an https server).
fn token_url_for(base: &Url) -> Url {
    let mut server = base.host_str().unwrap_or_default().to_owned();
    if let Some(port) = base.port() {
        server = format!("{server}:{port}");
    }
    let mut url = base.clone();
    url.set_path("/primediscovery/apitoken/request");
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("scope", &format!("http://{server}/api"));
    url
}

fn user_id(id: &str) -> TargetResult<i64> {
    id.parse()
        .map_err(|_| TargetError::unusable(format!("`{id}` is not a Primavera userId")))
}

/// Primavera's entry in `targets::VENDORS`.
pub static VENDOR: Vendor = Vendor {
    kind: "primavera",
    schema: payload::schema,
    keys: keys::<PrimaveraConfig>,
    throttle_default: Some(THROTTLE_BACKOFF),
    first_delivery: config::FIRST_DELIVERY,
};

impl VendorKeys for PrimaveraConfig {
    fn build(&self, built: Built) -> Result<Arc<dyn Target>, TargetConfigError> {
        Ok(Arc::new(PrimaveraTarget::build(built, self)?))
    }
}

impl PrimaveraTarget {
    pub(crate) fn build(built: Built, cfg: &PrimaveraConfig) -> Result<Self, TargetConfigError> {
        let header = |field: &str, value: String| {
            HeaderValue::try_from(value)
                .map_err(|err| TargetConfigError::invalid(built.key(field), err.to_string()))
        };
        let token_url = match &cfg.token_url {
            Some(url) => parse_url(&built.key("token_url"), url)?,
            None => token_url_for(&built.base_url),
        };
        let auth = PrimaveraAuth {
            token_url,
            username: cfg.username.clone(),
            password: cfg.password.resolve(&built.key("password"))?,
            tenant: cfg
                .tenant_code
                .clone()
                .map(|code| header("tenant_code", code))
                .transpose()?,
            version: cfg
                .api_version
                .map(|version| header("api_version", version.to_string()))
                .transpose()?,
        };
        let filter_header = HeaderName::try_from(cfg.filter_header.as_str()).map_err(|err| {
            TargetConfigError::invalid(built.key("filter_header"), err.to_string())
        })?;
        let list_path: Vec<&str> = cfg.list_path.split('/').filter(|s| !s.is_empty()).collect();
        if list_path.is_empty() {
            return Err(TargetConfigError::invalid(
                built.key("list_path"),
                "empty path",
            ));
        }
        if cfg.list_page_size == 0 {
            let message = "must be at least 1";
            return Err(TargetConfigError::invalid(
                built.key("list_page_size"),
                message,
            ));
        }
        let schema = payload::schema();
        let mark_field = mark_field(&schema, &built.key("mark_field"), &cfg.mark_field)?;
        Ok(Self {
            client: PrimaveraClient {
                users: endpoint(&built.base_url, &["user"]),
                list: endpoint(&built.base_url, &list_path),
                session: Session::new(built.transport, auth),
                filter_header,
            },
            name: built.name,
            schema,
            list_page_size: cfg.list_page_size,
            mark_field,
        })
    }

    async fn read_back(&self, id: i64) -> TargetResult<RemoteAccount> {
        RemoteAccount::from_object(self.client.get(id).await?, USER_ID)
    }
}

#[async_trait::async_trait]
impl Target for PrimaveraTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> &TargetSchema {
        &self.schema
    }

    async fn find(&self, payload: &Payload) -> TargetResult<Option<RemoteAccount>> {
        let email = required_str(payload, EMAIL)?;
        self.client
            .by_email(email)
            .await?
            .into_iter()
            .find(|user| {
                user.get(EMAIL)
                    .and_then(Value::as_str)
                    .is_some_and(|held| held.eq_ignore_ascii_case(email))
            })
            .map(|user| RemoteAccount::from_object(user, USER_ID))
            .transpose()
    }

    /// The create answer is used when it names the new `userId`; otherwise the user is found
    /// again by email.
    async fn create(&self, payload: &Payload) -> TargetResult<RemoteAccount> {
        let answer = self
            .client
            .create(&payload::shape(&self.schema, payload, None))
            .await?;
        if let Ok(user) = answer.json::<Payload>() {
            if user.contains_key(USER_ID) {
                return RemoteAccount::from_object(user, USER_ID);
            }
        }
        self.find(payload)
            .await?
            .ok_or_else(|| TargetError::Retryable {
                status: None,
                reason: "created user cannot be found by email".to_owned(),
                retry_after: None,
            })
    }

    /// Primavera keeps a licence an update leaves out, so the body carries only what the
    /// mapping manages: the licences granted, and those it takes away (its `revoke` entries,
    /// `action: "DELETE"`). A licence given by hand and not named in the mapping stays. The
    /// PUT answers no body, so the user is read back.
    /// The update answers 204 with no body, and nothing the bridge records needs more than
    /// the id, so the user is not read back: the account it hands on is what was sent, one
    /// request per change.
    async fn update(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        let user_id = user_id(id)?;
        let body = payload::shape(&self.schema, payload, Some(user_id));
        self.client.update(&body).await?;
        RemoteAccount::from_object(body, USER_ID)
    }

    async fn disable(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        self.update(id, &payload::disabled(payload)).await
    }

    /// A user that is already gone counts as deleted.
    async fn delete(&self, id: &str) -> TargetResult<()> {
        found(self.client.delete(user_id(id)?).await).map(drop)
    }

    async fn read(&self, id: &str) -> TargetResult<Option<RemoteAccount>> {
        found(self.read_back(user_id(id)?).await)
    }

    fn can_list(&self) -> bool {
        true
    }

    /// Pages of `offset`/`limit` in `userId` order; the cursor is the next offset, given
    /// while the answer links a next page. An answer that is a bare list is the service
    /// not paging: the whole list, with nothing after it.
    async fn list(&self, cursor: Option<&str>) -> TargetResult<AccountPage> {
        let offset = AccountPage::offset(cursor)?;
        let (users, more) = match self.client.page(offset, self.list_page_size).await? {
            Listing::Page { items, next } => (items, next.is_some()),
            Listing::All(users) => (users, false),
        };
        let end = offset + users.len();
        let accounts = users
            .into_iter()
            .map(|user| RemoteAccount::from_object(user, USER_ID))
            .collect::<TargetResult<_>>()?;
        let next = (more && end > offset).then(|| end.to_string());
        Ok(AccountPage { accounts, next })
    }

    fn listing_page_size(&self) -> Option<usize> {
        Some(self.list_page_size)
    }

    /// The email address, in ASCII lower case as `find` compares it.
    fn lookup_key(&self, fields: &Payload) -> Option<String> {
        fields
            .get(EMAIL)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    }

    fn marked(&self, account: &RemoteAccount) -> bool {
        payload::carries_mark(&account.fields, &self.mark_field)
    }

    fn as_stored(&self, payload: &Payload) -> Payload {
        payload::as_stored(&self.schema, payload)
    }
}
