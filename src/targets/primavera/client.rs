//! The Primavera Cloud API on the wire: a token request with Basic auth, the tenant-code
//! header, then the user calls (a PUT names its user in the body and answers 204).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::targets::http::{endpoint, Answer, Auth, Issued, Session, Transport};
use crate::targets::{Payload, TargetError, TargetResult};

pub(crate) const TENANT_HEADER: &str = "x-prime-tenant-code";
pub(crate) const VERSION_HEADER: &str = "version";

pub(crate) struct PrimaveraAuth {
    pub token_url: Url,
    pub username: String,
    pub password: SecretString,
    /// The configured tenant code, which wins over the one the token request names.
    pub tenant: Option<HeaderValue>,
    pub version: Option<HeaderValue>,
}

pub(crate) struct PrimaveraToken {
    access: SecretString,
    tenant: HeaderValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    #[serde(rename = "access_token")]
    access_token: SecretString,
    expires_in: u64,
    prime_tenant_code: Option<String>,
}

#[async_trait::async_trait]
impl Auth for PrimaveraAuth {
    type Token = Arc<PrimaveraToken>;

    async fn login(&self, transport: &Transport) -> TargetResult<Issued<Self::Token>> {
        let request = transport
            .client()
            .post(self.token_url.clone())
            .basic_auth(&self.username, Some(self.password.expose_secret()));
        let answer: TokenAnswer = transport.send(request).await?.json()?;
        let tenant = match (&self.tenant, answer.prime_tenant_code) {
            (Some(configured), _) => configured.clone(),
            (None, Some(code)) => {
                HeaderValue::try_from(code).map_err(|_| TargetError::Retryable {
                    status: None,
                    reason: "token answer names an unusable tenant code".to_owned(),
                    retry_after: None,
                })?
            }
            (None, None) => {
                return Err(TargetError::unusable(
                    "token answer names no primeTenantCode; set tenant_code",
                ))
            }
        };
        Ok(Issued {
            token: Arc::new(PrimaveraToken {
                access: answer.access_token,
                tenant,
            }),
            expires_at: transport.now() + Duration::from_secs(answer.expires_in),
        })
    }

    fn authorize(&self, request: RequestBuilder, token: &Self::Token) -> RequestBuilder {
        let request = request
            .bearer_auth(token.access.expose_secret())
            .header(TENANT_HEADER, token.tenant.clone());
        match &self.version {
            Some(version) => request.header(VERSION_HEADER, version.clone()),
            None => request,
        }
    }
}

/// An answer of the list call: one page, or (from a service that does not page) the whole
/// list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Listing {
    Page {
        items: Vec<Payload>,
        /// The link to the next page; null on the last.
        next: Option<String>,
    },
    All(Vec<Payload>),
}

pub(crate) struct PrimaveraClient {
    pub session: Session<PrimaveraAuth>,
    pub users: Url,
    pub filter_header: HeaderName,
    pub list: Url,
}

impl PrimaveraClient {
    fn user(&self, id: i64) -> Url {
        endpoint(&self.users, &[&id.to_string()])
    }

    /// `GET /user` with the filter header `email=<address>`. A header carries only visible
    /// ASCII safely: an address with a line break could add headers of its own, and other
    /// characters are read differently by different servers, so such an address is refused
    /// before anything is sent.
    pub(crate) async fn by_email(&self, email: &str) -> TargetResult<Vec<Payload>> {
        if !email.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TargetError::unusable(format!(
                "email {email:?} cannot be sent in the `{}` header: only visible ASCII \
                 characters are allowed there (no spaces, line breaks or non-ASCII letters)",
                self.filter_header
            )));
        }
        let filter = HeaderValue::try_from(format!("email={email}"))
            .map_err(|err| TargetError::unusable(format!("email {email:?}: {err}")))?;
        self.session
            .call(|client| {
                client
                    .get(self.users.clone())
                    .header(self.filter_header.clone(), filter.clone())
            })
            .await?
            .json()
    }

    /// Every user, `limit` from `offset`.
    pub(crate) async fn page(&self, offset: usize, limit: usize) -> TargetResult<Listing> {
        let (offset, limit) = (offset.to_string(), limit.to_string());
        self.session
            .call(|client| {
                client
                    .get(self.list.clone())
                    .query(&[("offset", offset.as_str()), ("limit", limit.as_str())])
            })
            .await?
            .json()
    }

    pub(crate) async fn get(&self, id: i64) -> TargetResult<Payload> {
        self.session
            .call(|client| client.get(self.user(id)))
            .await?
            .json()
    }

    pub(crate) async fn create(&self, body: &Payload) -> TargetResult<Answer> {
        self.session
            .call(|client| client.post(self.users.clone()).json(body))
            .await
    }

    /// `PUT /user`: 204 and no body; the user is the one the body's `userId` names.
    pub(crate) async fn update(&self, body: &Payload) -> TargetResult<()> {
        self.session
            .call(|client| client.put(self.users.clone()).json(body))
            .await
            .map(drop)
    }

    pub(crate) async fn delete(&self, id: i64) -> TargetResult<()> {
        self.session
            .call(|client| client.delete(self.user(id)))
            .await
            .map(drop)
    }
}
