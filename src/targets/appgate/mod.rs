//! Appgate SDP local users: the adapter the fan-out worker drives for `kind = "appgate"`.
//! Accounts are matched by `name` (in any case, unless configured otherwise); a PUT replaces
//! the whole user.

pub mod client;
pub mod config;
pub mod payload;

use std::sync::Arc;

use reqwest::header::HeaderValue;
use serde_json::Value;

use self::client::{AppgateAuth, AppgateClient};
pub(crate) use self::config::AppgateConfig;
use crate::targets::http::{endpoint, found, Session};
use crate::targets::vendor::{keys, Built, TargetConfigError, Vendor, VendorKeys};
use crate::targets::{
    required_str, AccountPage, Payload, RemoteAccount, Target, TargetResult, TargetSchema,
};

/// Users fetched per page while looking for an exact name among substring matches.
const PAGE_SIZE: usize = 50;

/// Users per page when listing them all. The Admin API states no maximum for `range`; a
/// hundred keeps each answer small and a large controller's listing to few calls.
const LIST_PAGE_SIZE: usize = 100;

pub(crate) struct AppgateTarget {
    name: String,
    schema: TargetSchema,
    client: AppgateClient,
    name_ignores_case: bool,
    mark_tag: String,
}

/// Appgate SDP's entry in `targets::VENDORS`.
pub static VENDOR: Vendor = Vendor {
    kind: "appgate",
    schema: payload::schema,
    keys: keys::<AppgateConfig>,
    throttle_default: None,
    first_delivery: config::FIRST_DELIVERY,
};

impl VendorKeys for AppgateConfig {
    fn build(&self, built: Built) -> Result<Arc<dyn Target>, TargetConfigError> {
        Ok(Arc::new(AppgateTarget::build(built, self)?))
    }
}

impl AppgateTarget {
    pub(crate) fn build(built: Built, cfg: &AppgateConfig) -> Result<Self, TargetConfigError> {
        let password = cfg.password.resolve(&built.key("password"))?;
        let device_id = match &cfg.device_id {
            Some(id) => uuid::Uuid::parse_str(id).map_err(|err| {
                TargetConfigError::invalid(built.key("device_id"), err.to_string())
            })?,
            None => uuid::Uuid::new_v4(),
        };
        let accept = HeaderValue::try_from(format!(
            "application/vnd.appgate.peer-v{}+json",
            cfg.api_version
        ))
        .map_err(|err| TargetConfigError::invalid(built.key("api_version"), err.to_string()))?;
        let auth = AppgateAuth {
            login_url: endpoint(&built.base_url, &["login"]),
            accept,
            provider_name: cfg.provider_name.clone(),
            device_id: device_id.to_string(),
            username: cfg.username.clone(),
            password,
        };
        Ok(Self {
            client: AppgateClient {
                users: endpoint(&built.base_url, &["local-users"]),
                session: Session::new(built.transport, auth),
            },
            name: built.name,
            schema: payload::schema(),
            name_ignores_case: cfg.name_ignores_case,
            mark_tag: cfg.mark_tag.clone(),
        })
    }
}

impl AppgateTarget {
    /// PUTs the user `id`, its held tags kept: from `held` (the user as just read) when
    /// given, else read now, and only when the mapping sets tags at all.
    async fn replace(
        &self,
        id: &str,
        payload: &Payload,
        held: Option<&Payload>,
    ) -> TargetResult<RemoteAccount> {
        let mut body = payload::shape(&self.schema, payload);
        payload::with_mark(&mut body, &self.mark_tag);
        if body.contains_key(payload::TAGS) {
            match held {
                Some(current) => payload::keep_held_tags(&mut body, current),
                None => payload::keep_held_tags(&mut body, &self.client.get(id).await?),
            }
        }
        let user = self.client.replace(id, &body).await?;
        RemoteAccount::from_object(user, "id")
    }
}

#[async_trait::async_trait]
impl Target for AppgateTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> &TargetSchema {
        &self.schema
    }

    /// `query` matches substrings of several fields, so pages are searched for the name: the
    /// exact one first, else (where the controller ignores case) the one account whose name
    /// differs only in case. Several such accounts mean the controller tells case apart
    /// after all, and none of them is taken for this user.
    async fn find(&self, payload: &Payload) -> TargetResult<Option<RemoteAccount>> {
        let name = required_str(payload, payload::NAME)?;
        let folded = name.to_lowercase();
        let mut in_other_case = Vec::new();
        let mut start = 0;
        loop {
            let page = self.client.search(name, start, PAGE_SIZE).await?;
            for user in &page.data {
                let Some(held) = user.get(payload::NAME).and_then(Value::as_str) else {
                    continue;
                };
                if held == name {
                    return RemoteAccount::from_object(user.clone(), "id").map(Some);
                }
                if self.name_ignores_case && held.to_lowercase() == folded {
                    in_other_case.push(user.clone());
                }
            }
            start += page.data.len();
            if page.data.is_empty() || start >= page.total_count {
                break;
            }
        }
        match <[Payload; 1]>::try_from(in_other_case) {
            Ok([user]) => RemoteAccount::from_object(user, "id").map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn create(&self, payload: &Payload) -> TargetResult<RemoteAccount> {
        let mut body = payload::shape(&self.schema, payload);
        payload::with_mark(&mut body, &self.mark_tag);
        let user = self.client.create(&body).await?;
        RemoteAccount::from_object(user, "id")
    }

    /// A PUT replaces the whole user, tags included, so when the body carries tags (the
    /// mapping's, or the bridge's mark) the user is read first and the tags it holds (given
    /// by hand, used by policies) are sent back beside them.
    async fn update(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        self.replace(id, payload, None).await
    }

    async fn disable(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        self.update(id, &payload::disabled(payload)).await
    }

    async fn update_held(
        &self,
        account: &RemoteAccount,
        payload: &Payload,
    ) -> TargetResult<RemoteAccount> {
        self.replace(&account.id, payload, Some(&account.fields))
            .await
    }

    async fn disable_held(
        &self,
        account: &RemoteAccount,
        payload: &Payload,
    ) -> TargetResult<RemoteAccount> {
        self.update_held(account, &payload::disabled(payload)).await
    }

    /// An account that is already gone counts as deleted.
    async fn delete(&self, id: &str) -> TargetResult<()> {
        found(self.client.delete(id).await).map(drop)
    }

    async fn read(&self, id: &str) -> TargetResult<Option<RemoteAccount>> {
        found(self.client.get(id).await)?
            .map(|user| RemoteAccount::from_object(user, "id"))
            .transpose()
    }

    fn can_list(&self) -> bool {
        true
    }

    /// Pages of `range`, ordered by name; the cursor is where the next page starts. A user
    /// created or deleted while the pages are read moves the later ones by one, so a user
    /// can show on two pages or be missed until the next run.
    async fn list(&self, cursor: Option<&str>) -> TargetResult<AccountPage> {
        let start = AccountPage::offset(cursor)?;
        let page = self.client.page(start, LIST_PAGE_SIZE).await?;
        AccountPage::at_offset(start, page.data, page.total_count)
    }

    fn marked(&self, account: &RemoteAccount) -> bool {
        payload::carries_mark(&account.fields, &self.mark_tag)
    }

    fn as_stored(&self, payload: &Payload) -> Payload {
        payload::as_stored(&self.schema, payload)
    }
}
