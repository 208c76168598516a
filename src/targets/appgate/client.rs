//! The Appgate SDP Admin API on the wire: login with the versioned `Accept` header, then the
//! local-users calls, each one request through the shared session.

use std::sync::Arc;
use std::time::SystemTime;

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::targets::http::{
    data_endpoint, Auth, Issued, Session, Transport, UNSTATED_TOKEN_LIFETIME,
};
use crate::targets::{Payload, TargetResult};

/// How the bridge logs in to the controller.
pub(crate) struct AppgateAuth {
    pub login_url: Url,
    pub accept: HeaderValue,
    pub provider_name: String,
    pub device_id: String,
    pub username: String,
    pub password: SecretString,
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: SecretString,
    expires: Option<String>,
}

#[async_trait::async_trait]
impl Auth for AppgateAuth {
    type Token = Arc<SecretString>;

    async fn login(&self, transport: &Transport) -> TargetResult<Issued<Self::Token>> {
        let request = transport
            .client()
            .post(self.login_url.clone())
            .header(ACCEPT, self.accept.clone())
            .json(&json!({
                "providerName": self.provider_name,
                "deviceId": self.device_id,
                "username": self.username,
                "password": self.password.expose_secret(),
            }));
        let answer: LoginAnswer = transport.send(request).await?.json()?;
        let expires_at = answer
            .expires
            .and_then(|at| OffsetDateTime::parse(&at, &Rfc3339).ok())
            .map(SystemTime::from)
            .unwrap_or_else(|| transport.now() + UNSTATED_TOKEN_LIFETIME);
        Ok(Issued {
            token: Arc::new(answer.token),
            expires_at,
        })
    }

    fn authorize(&self, request: RequestBuilder, token: &Self::Token) -> RequestBuilder {
        request
            .header(ACCEPT, self.accept.clone())
            .bearer_auth(token.expose_secret())
    }
}

/// One page of `GET /local-users`.
#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    pub data: Vec<Payload>,
    #[serde(rename = "totalCount", default)]
    pub total_count: usize,
}

pub(crate) struct AppgateClient {
    pub session: Session<AppgateAuth>,
    pub users: Url,
}

impl AppgateClient {
    fn user(&self, id: &str) -> TargetResult<Url> {
        data_endpoint(&self.users, &[id])
    }

    /// Local users whose fields contain `query`, ordered by name, `count` from `start`.
    pub(crate) async fn search(
        &self,
        query: &str,
        start: usize,
        count: usize,
    ) -> TargetResult<Page> {
        let range = format!("{start}-{}", start + count);
        self.session
            .call(|client| {
                client.get(self.users.clone()).query(&[
                    ("query", query),
                    ("range", range.as_str()),
                    ("orderBy", "name"),
                ])
            })
            .await?
            .json()
    }

    /// Every local user, ordered by name, `count` from `start`.
    pub(crate) async fn page(&self, start: usize, count: usize) -> TargetResult<Page> {
        let range = format!("{start}-{}", start + count);
        self.session
            .call(|client| {
                client
                    .get(self.users.clone())
                    .query(&[("range", range.as_str()), ("orderBy", "name")])
            })
            .await?
            .json()
    }

    /// `POST /local-users`; Appgate answers 200 with the stored user.
    pub(crate) async fn create(&self, body: &Payload) -> TargetResult<Payload> {
        self.session
            .call(|client| client.post(self.users.clone()).json(body))
            .await?
            .json()
    }

    pub(crate) async fn get(&self, id: &str) -> TargetResult<Payload> {
        let url = self.user(id)?;
        self.session
            .call(|client| client.get(url.clone()))
            .await?
            .json()
    }

    /// `PUT /local-users/{id}`: replaces the whole user.
    pub(crate) async fn replace(&self, id: &str, body: &Payload) -> TargetResult<Payload> {
        let url = self.user(id)?;
        self.session
            .call(|client| client.put(url.clone()).json(body))
            .await?
            .json()
    }

    pub(crate) async fn delete(&self, id: &str) -> TargetResult<()> {
        let url = self.user(id)?;
        self.session
            .call(|client| client.delete(url.clone()))
            .await
            .map(drop)
    }
}
