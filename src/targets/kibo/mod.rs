//! Kibo Commerce admin-user accounts: the adapter the fan-out worker drives for
//! `kind = "kibo"`. Accounts are matched by email address; every PUT carries the email and
//! the names, and the password where the tenant requires it. Roles go through their own
//! calls after the account is written.

pub mod client;
pub mod config;
pub mod payload;

use std::sync::Arc;

use reqwest::header::HeaderValue;
use serde_json::Value;

use self::client::{KiboAuth, KiboClient};
pub use self::config::KiboConfig;
use crate::targets::http::{endpoint, found, Session};
use crate::targets::vendor::{
    keys, mark_field, parse_url, Built, TargetConfigError, Vendor, VendorKeys,
};
use crate::targets::{
    required_str, AccountPage, Payload, RemoteAccount, Target, TargetResult, TargetSchema,
};

/// Accounts per page when listing them all: the most Kibo's collections return.
const LIST_PAGE_SIZE: usize = 200;

pub(crate) struct KiboTarget {
    name: String,
    schema: TargetSchema,
    client: KiboClient,
    mark_field: String,
}

/// Kibo Commerce's entry in `targets::VENDORS`.
pub static VENDOR: Vendor = Vendor {
    kind: "kibo",
    schema: payload::schema,
    keys: keys::<KiboConfig>,
    throttle_default: None,
    first_delivery: config::FIRST_DELIVERY,
};

impl VendorKeys for KiboConfig {
    fn build(&self, built: Built) -> Result<Arc<dyn Target>, TargetConfigError> {
        Ok(Arc::new(KiboTarget::build(built, self)?))
    }
}

impl KiboTarget {
    pub(crate) fn build(built: Built, cfg: &KiboConfig) -> Result<Self, TargetConfigError> {
        let header = |field: &str, value: &str| {
            HeaderValue::try_from(value)
                .map_err(|err| TargetConfigError::invalid(built.key(field), err.to_string()))
        };
        let auth = KiboAuth {
            auth_url: parse_url(&built.key("auth_url"), &cfg.auth_url)?,
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.resolve(&built.key("client_secret"))?,
            tenant: header("tenant_id", &cfg.tenant_id)?,
            site: header("site_id", &cfg.site_id)?,
        };
        let schema = payload::schema_with(cfg.password_required_on_update);
        let mark_field = mark_field(&schema, &built.key("mark_field"), &cfg.mark_field)?;
        Ok(Self {
            client: KiboClient {
                accounts: endpoint(&built.base_url, &["platform", "adminuser", "accounts"]),
                session: Session::new(built.transport, auth),
            },
            name: built.name,
            schema,
            mark_field,
        })
    }
}

impl KiboTarget {
    /// Assigns the wanted roles the account lacks and removes the released ones it holds,
    /// starting from the roles the create or PUT answer reports. A failed call fails the
    /// delivery; the retry writes the account again and picks up where this stopped, since
    /// every call is idempotent and the plan is made afresh from what Kibo reports.
    async fn bring_roles(
        &self,
        account: RemoteAccount,
        goal: Option<payload::RoleGoal>,
    ) -> TargetResult<RemoteAccount> {
        let Some(goal) = goal else {
            return Ok(account);
        };
        let changes = payload::role_changes(&goal, &payload::held_roles(&account.fields));
        if changes.is_empty() {
            return Ok(account);
        }
        for role in &changes.assign {
            self.client.assign_role(&account.id, *role).await?;
        }
        for role in &changes.remove {
            self.client.remove_role(&account.id, *role).await?;
        }
        // Read back so the account the ledger records shows the roles Kibo now holds.
        RemoteAccount::from_object(self.client.get(&account.id).await?, "id")
    }
}

#[async_trait::async_trait]
impl Target for KiboTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> &TargetSchema {
        &self.schema
    }

    /// Kibo compares addresses without regard to case, and so does this match.
    async fn find(&self, payload: &Payload) -> TargetResult<Option<RemoteAccount>> {
        let email = required_str(payload, payload::EMAIL)?;
        let page = self.client.by_email(email).await?;
        page.items
            .into_iter()
            .find(|account| {
                account
                    .get(payload::EMAIL)
                    .and_then(Value::as_str)
                    .is_some_and(|held| held.eq_ignore_ascii_case(email))
            })
            .map(|account| RemoteAccount::from_object(account, "id"))
            .transpose()
    }

    async fn create(&self, payload: &Payload) -> TargetResult<RemoteAccount> {
        // Read before anything is sent, so a mapping mistake in the roles creates nothing.
        let goal = payload::role_goal(payload)?;
        let body = payload::account_body(&self.schema, payload);
        let account = RemoteAccount::from_object(self.client.create(&body).await?, "id")?;
        self.bring_roles(account, goal).await
    }

    async fn update(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        let goal = payload::role_goal(payload)?;
        let body = payload::account_body(&self.schema, payload);
        let account = RemoteAccount::from_object(self.client.replace(id, &body).await?, "id")?;
        self.bring_roles(account, goal).await
    }

    async fn disable(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        self.update(id, &payload::disabled(payload)).await
    }

    /// An account that is already gone counts as deleted.
    async fn delete(&self, id: &str) -> TargetResult<()> {
        found(self.client.delete(id).await).map(drop)
    }

    async fn read(&self, id: &str) -> TargetResult<Option<RemoteAccount>> {
        found(self.client.get(id).await)?
            .map(|account| RemoteAccount::from_object(account, "id"))
            .transpose()
    }

    fn can_list(&self) -> bool {
        true
    }

    /// Pages of `startIndex`/`pageSize`; the cursor is the next `startIndex`. An account
    /// created or deleted while the pages are read moves the later ones by one.
    async fn list(&self, cursor: Option<&str>) -> TargetResult<AccountPage> {
        let start = AccountPage::offset(cursor)?;
        let page = self.client.page(start, LIST_PAGE_SIZE).await?;
        AccountPage::at_offset(start, page.items, page.total_count)
    }

    fn listing_page_size(&self) -> Option<usize> {
        Some(LIST_PAGE_SIZE)
    }

    /// The email address, in ASCII lower case as `find` compares it.
    fn lookup_key(&self, fields: &Payload) -> Option<String> {
        fields
            .get(payload::EMAIL)
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
