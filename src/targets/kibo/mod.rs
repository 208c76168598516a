//! Kibo Commerce admin-user accounts: the adapter the fan-out worker drives for
//! `kind = "kibo"`. Accounts are matched by email address; every PUT carries the email, the
//! names and the password, as Kibo requires.

pub mod client;
pub mod config;
pub mod payload;

use reqwest::header::HeaderValue;
use serde_json::Value;

use self::client::{KiboAuth, KiboClient};
pub use self::config::KiboConfig;
use crate::targets::config::{parse_url, Built, TargetConfigError};
use crate::targets::http::{endpoint, found, Session};
use crate::targets::{required_str, Payload, RemoteAccount, Target, TargetResult, TargetSchema};

pub struct KiboTarget {
    name: String,
    schema: TargetSchema,
    client: KiboClient,
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
        Ok(Self {
            client: KiboClient {
                accounts: endpoint(&built.base_url, &["platform", "adminuser", "accounts"]),
                session: Session::new(built.transport, auth),
            },
            name: built.name,
            schema: payload::schema(),
        })
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
        let account = self.client.create(&self.schema.writable(payload)).await?;
        RemoteAccount::from_object(account, "id")
    }

    async fn update(&self, id: &str, payload: &Payload) -> TargetResult<RemoteAccount> {
        let account = self
            .client
            .replace(id, &self.schema.writable(payload))
            .await?;
        RemoteAccount::from_object(account, "id")
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
}
