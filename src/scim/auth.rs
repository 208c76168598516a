//! Who may call the SCIM API: bearer tokens per identity-provider client, compared in
//! constant time, each client with its own rate limit.

use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ClientSettings, ConfigError};
use crate::scim::error::ScimError;

/// The authenticated client's configured name, stored in the request extensions.
#[derive(Debug, Clone)]
pub struct ClientName(pub Arc<str>);

struct Client {
    name: Arc<str>,
    digest: [u8; 32],
    limiter: DefaultDirectRateLimiter,
}

pub struct Authenticator {
    clients: Vec<Client>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.clients.iter().map(|c| &*c.name).collect();
        f.debug_struct("Authenticator")
            .field("clients", &names)
            .finish()
    }
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    /// Builds the client list: the configured clients (`section` names their config key),
    /// a development token, and one more token (`SCIM_BRIDGE_TOKEN`) as a client named `env`.
    pub fn new(
        section: &str,
        configured: &[ClientSettings],
        dev_token: Option<&str>,
        extra_token: Option<&str>,
        default_rate: u32,
    ) -> Result<Authenticator, ConfigError> {
        let mut clients = Vec::new();
        let mut add = |name: &str, digest: [u8; 32], rate: u32| {
            let per_second = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
            clients.push(Client {
                name: Arc::from(name),
                digest,
                limiter: RateLimiter::direct(Quota::per_second(per_second)),
            });
        };
        for (index, client) in configured.iter().enumerate() {
            let key = format!("{section}.clients[{index}]");
            let digest = client_digest(client, &key)?;
            add(
                &client.name,
                digest,
                client.requests_per_second.unwrap_or(default_rate),
            );
        }
        if let Some(token) = dev_token {
            add("development", sha256(token), default_rate);
        }
        if let Some(token) = extra_token.filter(|t| !t.is_empty()) {
            add("env", sha256(token), default_rate);
        }
        Ok(Authenticator {
            clients,
            clock: DefaultClock::default(),
        })
    }

    /// Checks an `Authorization` header value and the client's rate limit.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<str>, ScimError> {
        let Some(value) = authorization else {
            return Err(ScimError::Unauthorized("no bearer token given".into()));
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return Err(ScimError::Unauthorized(
                "malformed Authorization header".into(),
            ));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ScimError::Unauthorized(
                "only Bearer authentication is accepted".into(),
            ));
        }
        let presented = sha256(token.trim());
        // Look at every client so the time taken does not reveal which one matched.
        let mut found = None;
        for client in &self.clients {
            if bool::from(client.digest.ct_eq(&presented)) {
                found = Some(client);
            }
        }
        let Some(client) = found else {
            return Err(ScimError::Unauthorized("unknown bearer token".into()));
        };
        if let Err(not_until) = client.limiter.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(ScimError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        Ok(Arc::clone(&client.name))
    }
}

fn client_digest(client: &ClientSettings, key: &str) -> Result<[u8; 32], ConfigError> {
    if let Some(hex_digest) = &client.token_sha256 {
        let bytes = hex::decode(hex_digest.trim())
            .map_err(|_| ConfigError::key(&format!("{key}.token_sha256"), "is not hex"))?;
        return bytes.try_into().map_err(|_| {
            ConfigError::key(
                &format!("{key}.token_sha256"),
                "must be 64 hex digits (a SHA-256)",
            )
        });
    }
    let token = if let Some(var) = &client.token_env {
        std::env::var(var).map_err(|_| {
            ConfigError::key(
                &format!("{key}.token_env"),
                format!("environment variable {var} is not set"),
            )
        })?
    } else if let Some(path) = &client.token_file {
        std::fs::read_to_string(path).map_err(|err| {
            ConfigError::key(
                &format!("{key}.token_file"),
                format!("cannot read {}: {err}", path.display()),
            )
        })?
    } else {
        return Err(ConfigError::key(key, "no token source"));
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(ConfigError::key(key, "the token is empty"));
    }
    Ok(sha256(token))
}

/// The authenticator of the SCIM API, as application data.
pub struct ScimAuth(pub Authenticator);

/// Middleware in front of every SCIM route.
pub async fn require_bearer(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(ScimAuth(auth)) = req.app_data::<web::Data<ScimAuth>>().map(|d| d.get_ref()) else {
        return Err(ScimError::internal(anyhow::anyhow!("no authenticator configured")).into());
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let client = auth.authenticate(header)?;
    req.extensions_mut().insert(ClientName(client));
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(rate: u32) -> Authenticator {
        Authenticator::new("scim", &[], Some("secret"), Some("from-env"), rate).unwrap()
    }

    #[test]
    fn accepts_known_tokens_and_names_the_client() {
        let auth = authenticator(100);
        assert_eq!(
            &*auth.authenticate(Some("Bearer secret")).unwrap(),
            "development"
        );
        assert_eq!(&*auth.authenticate(Some("bearer from-env")).unwrap(), "env");
    }

    #[test]
    fn refuses_missing_wrong_and_basic_credentials() {
        let auth = authenticator(100);
        for header in [
            None,
            Some("Bearer nope"),
            Some("Basic c2VjcmV0"),
            Some("secret"),
        ] {
            let err = auth.authenticate(header).unwrap_err();
            assert!(matches!(err, ScimError::Unauthorized(_)), "{header:?}");
        }
    }

    #[test]
    fn rate_limits_per_client() {
        let auth = authenticator(1);
        auth.authenticate(Some("Bearer secret")).unwrap();
        let err = auth.authenticate(Some("Bearer secret")).unwrap_err();
        assert!(matches!(
            err,
            ScimError::RateLimited {
                retry_after_secs: 1
            }
        ));
        // Another client has its own budget.
        auth.authenticate(Some("Bearer from-env")).unwrap();
    }

    #[test]
    fn configured_hash_must_be_a_sha256() {
        let clients = [ClientSettings {
            name: "okta".into(),
            token_sha256: Some("abc".into()),
            token_env: None,
            token_file: None,
            requests_per_second: None,
        }];
        let err = Authenticator::new("scim", &clients, None, None, 10).unwrap_err();
        assert!(
            err.to_string().contains("scim.clients[0].token_sha256"),
            "{err}"
        );
    }
}
