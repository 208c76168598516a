//! The VikingCloud user-service on the wire: login for an access and an id token sent in
//! configurable headers, then lookup, create, update and delete by `userKey`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::payload::UserKey;
use crate::targets::http::{
    data_endpoint, Answer, Auth, Issued, Session, Transport, UNSTATED_TOKEN_LIFETIME,
};
use crate::targets::vendor::TargetConfigError;
use crate::targets::{Payload, TargetError, TargetResult};

/// A configured path whose `{authenticator}` and `{username}` segments are filled per call.
#[derive(Debug, Clone)]
pub(crate) struct PathTemplate(Vec<String>);

impl PathTemplate {
    pub(crate) fn parse(key: &str, text: &str) -> Result<Self, TargetConfigError> {
        let segments: Vec<String> = text
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_owned)
            .collect();
        let unknown = segments.iter().find(|segment| {
            segment.contains(['{', '}'])
                && !matches!(segment.as_str(), "{authenticator}" | "{username}")
        });
        match unknown {
            Some(segment) => Err(TargetConfigError::invalid(
                key,
                format!("unknown placeholder `{segment}` (use {{authenticator}} and {{username}})"),
            )),
            None if segments.is_empty() => Err(TargetConfigError::invalid(key, "empty path")),
            None => Ok(Self(segments)),
        }
    }

    /// The path for `key`, each part of the key escaped as one segment. A key that cannot
    /// stand in a path (an empty or dot segment, a control character) is refused.
    pub(crate) fn fill(&self, base: &Url, key: Option<&UserKey>) -> TargetResult<Url> {
        let segments: Vec<&str> = self
            .0
            .iter()
            .map(|segment| match (segment.as_str(), key) {
                ("{authenticator}", Some(key)) => key.authenticator.as_str(),
                ("{username}", Some(key)) => key.username.as_str(),
                (segment, _) => segment,
            })
            .collect();
        data_endpoint(base, &segments)
    }
}

/// How the bridge logs in to the user-service.
pub(crate) struct VikingCloudAuth {
    pub login_url: Url,
    pub username: String,
    pub password: SecretString,
    pub access_header: HeaderName,
    pub id_header: HeaderName,
}

/// The two headers a call carries, built once per login and marked sensitive so they never
/// show in debug output.
pub(crate) struct TokenHeaders {
    access: HeaderValue,
    id: HeaderValue,
}

#[derive(Deserialize)]
struct LoginAnswer {
    access_token: SecretString,
    id_token: Option<SecretString>,
    expires_in: Option<u64>,
}

fn sensitive(value: &str) -> TargetResult<HeaderValue> {
    let mut value = HeaderValue::from_str(value).map_err(|_| TargetError::Retryable {
        status: None,
        reason: "login answered a token that cannot be sent in a header".to_owned(),
        retry_after: None,
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[async_trait::async_trait]
impl Auth for VikingCloudAuth {
    type Token = Arc<TokenHeaders>;

    async fn login(&self, transport: &Transport) -> TargetResult<Issued<Self::Token>> {
        let request = transport
            .client()
            .post(self.login_url.clone())
            .json(&json!({
                "username": self.username,
                "password": self.password.expose_secret(),
            }));
        let answer: LoginAnswer = transport.send(request).await?.json()?;
        // A login that issues a single token gets it sent in both headers.
        let id_token = answer.id_token.as_ref().unwrap_or(&answer.access_token);
        let id = if self.id_header == AUTHORIZATION {
            sensitive(&format!("Bearer {}", id_token.expose_secret()))?
        } else {
            sensitive(id_token.expose_secret())?
        };
        let lifetime = answer
            .expires_in
            .map_or(UNSTATED_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Issued {
            token: Arc::new(TokenHeaders {
                access: sensitive(answer.access_token.expose_secret())?,
                id,
            }),
            expires_at: transport.now() + lifetime,
        })
    }

    fn authorize(&self, request: RequestBuilder, token: &Self::Token) -> RequestBuilder {
        request
            .header(self.access_header.clone(), token.access.clone())
            .header(self.id_header.clone(), token.id.clone())
    }
}

pub(crate) struct Paths {
    pub lookup: PathTemplate,
    pub update: PathTemplate,
    pub create: PathTemplate,
    pub delete: PathTemplate,
}

pub(crate) struct VikingCloudClient {
    pub session: Session<VikingCloudAuth>,
    pub base: Url,
    pub paths: Paths,
}

impl VikingCloudClient {
    pub(crate) async fn lookup(&self, key: &UserKey) -> TargetResult<Payload> {
        let url = self.paths.lookup.fill(&self.base, Some(key))?;
        self.session
            .call(|client| client.get(url.clone()))
            .await?
            .json()
    }

    pub(crate) async fn create(&self, body: &Payload) -> TargetResult<Answer> {
        let url = self.paths.create.fill(&self.base, None)?;
        self.session
            .call(|client| client.post(url.clone()).json(body))
            .await
    }

    /// `POST /user-service/v1/user`: the user named by the body's `userKey` is updated.
    pub(crate) async fn update(&self, body: &Payload) -> TargetResult<Answer> {
        let url = self.paths.update.fill(&self.base, None)?;
        self.session
            .call(|client| client.post(url.clone()).json(body))
            .await
    }

    pub(crate) async fn delete(&self, key: &UserKey) -> TargetResult<()> {
        let url = self.paths.delete.fill(&self.base, Some(key))?;
        self.session
            .call(|client| client.delete(url.clone()))
            .await
            .map(drop)
    }
}
