//! Who may call the SCIM API (and, with their own tokens, the admin API and `/metrics`):
//! bearer tokens per client, compared in constant time, each client with its own rate limit,
//! and failed attempts limited per client address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::SharedClock;
use crate::config::{ClientSettings, ConfigError, TrustedProxies};
use crate::scim::error::ScimError;

/// The bridge's injected clock, as governor reads time: rate limits move with a test's
/// `ManualClock` instead of the wall clock.
#[derive(Debug, Clone)]
pub(crate) struct LimiterClock(SharedClock);

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let since_epoch = self
            .0
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Nanos::from(since_epoch)
    }
}

type ClientLimiter = RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Nanos>>;
type AddressLimiter =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, LimiterClock, NoOpMiddleware<Nanos>>;

/// Forgotten addresses are dropped from the failure table after this many failures, so a
/// spray from many addresses cannot grow it without bound.
const PRUNE_EVERY: u64 = 1024;

/// Failed authentications per client address, shared by the SCIM API, the admin API and
/// `/metrics`. Only failures are counted: a request with a valid token is never held back
/// by this limit, whatever its address has sent before.
pub(crate) struct FailedAuthLimit {
    limiter: AddressLimiter,
    clock: LimiterClock,
    failures: AtomicU64,
}

impl FailedAuthLimit {
    pub(crate) fn new(per_minute: u32, clock: SharedClock) -> FailedAuthLimit {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let clock = LimiterClock(clock);
        FailedAuthLimit {
            limiter: RateLimiter::dashmap_with_clock(Quota::per_minute(per_minute), clock.clone()),
            clock,
            failures: AtomicU64::new(0),
        }
    }

    /// Counts one failure from `address`; past the budget, the seconds to wait.
    fn failed(&self, address: IpAddr) -> Result<(), u64> {
        if self.failures.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&address).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs().max(1)
        })
    }
}

/// The address a request comes from: the peer, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    proxies: &TrustedProxies,
) -> IpAddr {
    let peer = peer
        .map(|p| p.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !proxies.trusts(peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|hop| !proxies.trusts(**hop))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

struct Client {
    name: Arc<str>,
    digest: [u8; 32],
    limiter: ClientLimiter,
}

pub(crate) struct Authenticator {
    clients: Vec<Client>,
    failures: Arc<FailedAuthLimit>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.clients.iter().map(|c| &*c.name).collect();
        f.debug_struct("Authenticator")
            .field("clients", &names)
            .finish()
    }
}

pub(crate) fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    /// Builds the client list: the configured clients (`section` names their config key),
    /// a development token, and one more token (`SCIM_BRIDGE_TOKEN`) as a client named `env`.
    /// Failures count against `failures`, which the SCIM and admin APIs share.
    pub(crate) fn new(
        section: &str,
        configured: &[ClientSettings],
        dev_token: Option<&str>,
        extra_token: Option<&str>,
        default_rate: u32,
        failures: Arc<FailedAuthLimit>,
    ) -> Result<Authenticator, ConfigError> {
        let mut clients = Vec::new();
        let clock = failures.clock.clone();
        let mut add = |name: &str, digest: [u8; 32], rate: u32| {
            let per_second = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
            clients.push(Client {
                name: Arc::from(name),
                digest,
                limiter: RateLimiter::direct_with_clock(
                    Quota::per_second(per_second),
                    clock.clone(),
                ),
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
        Ok(Authenticator { clients, failures })
    }

    /// Checks an `Authorization` header value from `address` and the client's rate limit.
    /// A failure is answered 401 until `address` has failed too often, then 429.
    pub(crate) fn authenticate(
        &self,
        address: IpAddr,
        authorization: Option<&str>,
    ) -> Result<Arc<str>, ScimError> {
        let outcome = self.check(authorization);
        if let Err(ScimError::Unauthorized(reason)) = &outcome {
            if let Err(retry_after_secs) = self.failures.failed(address) {
                // Debug only: the request's own log line already carries the address and the
                // 429, and a spray must not double the log.
                tracing::debug!(
                    address = %address,
                    reason = %reason,
                    "too many failed authentications from this address"
                );
                return Err(ScimError::RateLimited { retry_after_secs });
            }
        }
        outcome
    }

    fn check(&self, authorization: Option<&str>) -> Result<Arc<str>, ScimError> {
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
            let wait = not_until.wait_time_from(self.failures.clock.now());
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
pub(crate) struct ScimAuth(pub Authenticator);

/// Middleware in front of every SCIM route.
pub(crate) async fn require_bearer(
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
    auth.authenticate(request_address(&req), header)?;
    next.call(req).await
}

/// The client address of a request, with the trusted proxies the app was given.
pub(crate) fn request_address(req: &ServiceRequest) -> IpAddr {
    match req.app_data::<web::Data<TrustedProxies>>() {
        Some(proxies) => client_address(req.peer_addr(), req.headers(), proxies),
        None => client_address(req.peer_addr(), req.headers(), &TrustedProxies::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::{Duration, SystemTime};

    const HERE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const THERE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn limit(per_minute: u32) -> (Arc<FailedAuthLimit>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        (
            Arc::new(FailedAuthLimit::new(per_minute, clock.clone())),
            clock,
        )
    }

    fn authenticator(rate: u32) -> Authenticator {
        let (failures, _) = limit(1000);
        Authenticator::new(
            "scim",
            &[],
            Some("secret"),
            Some("from-env"),
            rate,
            failures,
        )
        .unwrap()
    }

    #[test]
    fn accepts_known_tokens_and_names_the_client() {
        let auth = authenticator(100);
        assert_eq!(
            &*auth.authenticate(HERE, Some("Bearer secret")).unwrap(),
            "development"
        );
        assert_eq!(
            &*auth.authenticate(HERE, Some("bearer from-env")).unwrap(),
            "env"
        );
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
            let err = auth.authenticate(HERE, header).unwrap_err();
            assert!(matches!(err, ScimError::Unauthorized(_)), "{header:?}");
        }
    }

    #[test]
    fn rate_limits_per_client() {
        let auth = authenticator(1);
        auth.authenticate(HERE, Some("Bearer secret")).unwrap();
        let err = auth.authenticate(HERE, Some("Bearer secret")).unwrap_err();
        assert!(matches!(
            err,
            ScimError::RateLimited {
                retry_after_secs: 1
            }
        ));
        // Another client has its own budget.
        auth.authenticate(HERE, Some("Bearer from-env")).unwrap();
    }

    #[test]
    fn failed_attempts_are_limited_per_address_and_valid_tokens_still_pass() {
        let (failures, clock) = limit(5);
        let auth = Authenticator::new("scim", &[], Some("secret"), None, 1000, failures).unwrap();
        for _ in 0..5 {
            let err = auth.authenticate(HERE, Some("Bearer guess")).unwrap_err();
            assert!(matches!(err, ScimError::Unauthorized(_)), "{err:?}");
        }
        let err = auth.authenticate(HERE, Some("Bearer guess")).unwrap_err();
        let ScimError::RateLimited { retry_after_secs } = err else {
            panic!("{err:?}");
        };
        assert!((1..=12).contains(&retry_after_secs), "{retry_after_secs}");
        // The valid token from the same address, and failures from elsewhere, are unaffected.
        auth.authenticate(HERE, Some("Bearer secret")).unwrap();
        let elsewhere = auth.authenticate(THERE, Some("Bearer guess")).unwrap_err();
        assert!(matches!(elsewhere, ScimError::Unauthorized(_)));
        // The budget refills with time (the injected clock, not a sleep).
        clock.advance(Duration::from_secs(60));
        let later = auth.authenticate(HERE, Some("Bearer guess")).unwrap_err();
        assert!(matches!(later, ScimError::Unauthorized(_)), "{later:?}");
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies: TrustedProxies =
            serde_json::from_value(serde_json::json!(["127.0.0.1", "10.0.0.0/8"])).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HeaderName::from_static("x-forwarded-for"),
            header::HeaderValue::from_static("198.51.100.7, 203.0.113.9, 10.1.2.3"),
        );
        let from = |peer: &str| client_address(Some(peer.parse().unwrap()), &headers, &proxies);
        // Behind the trusted hops, the nearest untrusted one: the rest could be forged.
        assert_eq!(
            from("127.0.0.1:5000"),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            from("10.9.9.9:5000"),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // From anyone else the header is ignored.
        assert_eq!(
            from("192.0.2.1:5000"),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address(
                Some("[::ffff:10.0.0.1]:1".parse().unwrap()),
                &HeaderMap::new(),
                &proxies
            ),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
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
        let (failures, _) = limit(10);
        let err = Authenticator::new("scim", &clients, None, None, 10, failures).unwrap_err();
        assert!(
            err.to_string().contains("scim.clients[0].token_sha256"),
            "{err}"
        );
    }
}
