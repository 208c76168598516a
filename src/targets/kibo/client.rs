//! The Kibo Commerce API on the wire: an OAuth client-credentials token, the tenant and site
//! context headers, then the admin-user account calls.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::targets::http::{
    data_endpoint, Auth, Issued, Session, Transport, UNSTATED_TOKEN_LIFETIME,
};
use crate::targets::{Payload, TargetResult};

/// The tenant and site context every Kibo call carries.
pub(crate) const TENANT_HEADER: &str = "x-vol-tenant";
pub(crate) const SITE_HEADER: &str = "x-vol-site";

pub(crate) struct KiboAuth {
    pub auth_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub tenant: HeaderValue,
    pub site: HeaderValue,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
    expires_in: Option<u64>,
}

#[async_trait::async_trait]
impl Auth for KiboAuth {
    type Token = Arc<SecretString>;

    async fn login(&self, transport: &Transport) -> TargetResult<Issued<Self::Token>> {
        let request = transport.client().post(self.auth_url.clone()).json(&json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose_secret(),
            "grant_type": "client_credentials",
        }));
        let answer: TokenAnswer = transport.send(request).await?.json()?;
        let lifetime = answer
            .expires_in
            .map_or(UNSTATED_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Issued {
            token: Arc::new(answer.access_token),
            expires_at: transport.now() + lifetime,
        })
    }

    fn authorize(&self, request: RequestBuilder, token: &Self::Token) -> RequestBuilder {
        request
            .bearer_auth(token.expose_secret())
            .header(TENANT_HEADER, self.tenant.clone())
            .header(SITE_HEADER, self.site.clone())
    }
}

/// One page of `GET /platform/adminuser/accounts`.
#[derive(Debug, Deserialize)]
pub(crate) struct Collection {
    #[serde(default)]
    pub items: Vec<Payload>,
    #[serde(rename = "totalCount", default)]
    pub total_count: usize,
}

pub(crate) struct KiboClient {
    pub session: Session<KiboAuth>,
    pub accounts: Url,
}

impl KiboClient {
    fn account(&self, id: &str) -> TargetResult<Url> {
        data_endpoint(&self.accounts, &[id])
    }

    fn role(&self, id: &str, role: i64) -> TargetResult<Url> {
        data_endpoint(&self.accounts, &[id, "roles", &role.to_string()])
    }

    pub(crate) async fn by_email(&self, email: &str) -> TargetResult<Collection> {
        self.session
            .call(|client| {
                client.get(self.accounts.clone()).query(&[
                    ("emailAddress", email),
                    ("startIndex", "0"),
                    ("pageSize", "20"),
                ])
            })
            .await?
            .json()
    }

    /// Every account, `page_size` from `start`.
    pub(crate) async fn page(&self, start: usize, page_size: usize) -> TargetResult<Collection> {
        let (start, page_size) = (start.to_string(), page_size.to_string());
        self.session
            .call(|client| {
                client.get(self.accounts.clone()).query(&[
                    ("startIndex", start.as_str()),
                    ("pageSize", page_size.as_str()),
                ])
            })
            .await?
            .json()
    }

    pub(crate) async fn create(&self, body: &Payload) -> TargetResult<Payload> {
        self.session
            .call(|client| client.post(self.accounts.clone()).json(body))
            .await?
            .json()
    }

    pub(crate) async fn get(&self, id: &str) -> TargetResult<Payload> {
        let url = self.account(id)?;
        self.session
            .call(|client| client.get(url.clone()))
            .await?
            .json()
    }

    pub(crate) async fn replace(&self, id: &str, body: &Payload) -> TargetResult<Payload> {
        let url = self.account(id)?;
        self.session
            .call(|client| client.put(url.clone()).json(body))
            .await?
            .json()
    }

    /// `POST .../{id}/roles/{roleId}`: Kibo assigns one role per call.
    pub(crate) async fn assign_role(&self, id: &str, role: i64) -> TargetResult<()> {
        let url = self.role(id, role)?;
        self.session
            .call(|client| client.post(url.clone()))
            .await
            .map(drop)
    }

    /// `DELETE .../{id}/roles/{roleId}`.
    pub(crate) async fn remove_role(&self, id: &str, role: i64) -> TargetResult<()> {
        let url = self.role(id, role)?;
        self.session
            .call(|client| client.delete(url.clone()))
            .await
            .map(drop)
    }

    pub(crate) async fn delete(&self, id: &str) -> TargetResult<()> {
        let url = self.account(id)?;
        self.session
            .call(|client| client.delete(url.clone()))
            .await
            .map(drop)
    }
}
