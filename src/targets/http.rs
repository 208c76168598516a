//! Outbound HTTP shared by every adapter: the pooled client with its limits, the token cache
//! with its 401 re-login, and the one function that classifies a target's answer.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::{TargetError, TargetResult};
use crate::clock::SharedClock;

/// How much of a non-JSON error body is kept for the admin.
const MAX_ERROR_TEXT_CHARS: usize = 500;

/// A cached token is renewed this long before it expires, so a request never leaves with a
/// token that dies in flight. Short-lived tokens renew at 90% of their lifetime instead.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// A token whose lifetime the target does not state is renewed after this long. Guessing
/// too long costs one 401 and a fresh login, never a failed delivery.
pub(crate) const UNSTATED_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// An answer as it came off the wire.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body of a delivered answer as JSON. An unreadable success is retryable: the next
    /// attempt looks the account up by its natural key first, so it adopts rather than
    /// duplicates whatever the target did.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> TargetResult<T> {
        serde_json::from_slice(&self.body).map_err(|err| TargetError::Retryable {
            status: Some(self.status.as_u16()),
            reason: format!("unreadable {} answer: {err}", self.status.as_u16()),
            retry_after: None,
        })
    }
}

/// Sorts one answer into delivered (`Ok`), retryable or rejected. `throttle_default` is the
/// wait to suggest after a 429 that names none (an API may document a minimum back-off).
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    throttle_default: Option<Duration>,
) -> TargetResult<()> {
    if status.is_success() {
        return Ok(());
    }
    let text = error_text(body).unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    });
    // 501 says the target does not implement the call at all: asking again cannot help.
    let retryable = status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
    if retryable {
        let named = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, now));
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS => named.or(throttle_default),
            _ => named,
        };
        return Err(TargetError::Retryable {
            status: Some(status.as_u16()),
            reason: format!("{}: {text}", status.as_u16()),
            retry_after,
        });
    }
    // Other 4xx, 501, and 1xx/3xx too: the client follows redirects itself, so one that reaches
    // here points at a misconfigured base URL, which retrying will not fix.
    Err(TargetError::Rejected {
        status: status.as_u16(),
        message: text,
    })
}

/// Reads a `Retry-After` value: delay seconds or an HTTP date (a date in the past means now).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The target's own words from an error body: the usual message keys (Appgate `message`,
/// Spring `message`, OAuth `error_description`, problem+json `detail`) followed by any
/// per-field `errors[]`; the raw text when the body is not JSON.
pub(crate) fn error_text(body: &[u8]) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        let raw = String::from_utf8_lossy(body);
        let raw = raw.trim();
        return (!raw.is_empty()).then(|| raw.chars().take(MAX_ERROR_TEXT_CHARS).collect());
    };
    let head = [
        "message",
        "detail",
        "error_description",
        "title",
        "error",
        "errorCode",
    ]
    .iter()
    .filter_map(|key| map.get(*key).and_then(Value::as_str))
    .find(|text| !text.trim().is_empty());
    let details: Vec<String> = map
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| match entry {
            Value::String(text) => Some(text.clone()),
            Value::Object(fields) => {
                let message = fields.get("message").and_then(Value::as_str)?;
                Some(match fields.get("field").and_then(Value::as_str) {
                    Some(field) => format!("{field}: {message}"),
                    None => message.to_owned(),
                })
            }
            _ => None,
        })
        .collect();
    match (head, details.is_empty()) {
        (Some(head), true) => Some(head.to_owned()),
        (Some(head), false) => Some(format!("{head} ({})", details.join("; "))),
        (None, false) => Some(details.join("; ")),
        (None, true) => None,
    }
}

/// Reads a 404 as "no such account" for lookups and read-backs.
pub(crate) fn found<T>(result: TargetResult<T>) -> TargetResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(TargetError::Rejected { status: 404, .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A failure before any HTTP answer. A request that could not even be built (a value no
/// header can carry) fails the same way every time, so it is refused rather than retried;
/// anything else is worth another try later.
fn transport_error(err: &reqwest::Error) -> TargetError {
    if err.is_builder() {
        return TargetError::unusable(format!("the request could not be built: {err}"));
    }
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "broken response"
    } else {
        "request failed"
    };
    TargetError::Retryable {
        status: None,
        reason: format!("{kind}: {err}"),
        retry_after: None,
    }
}

/// Appends path segments to a base URL, percent-encoding each one.
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // Base URLs are checked to be hierarchical when the target is built, so this only fails
    // for URLs that never get here.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// `endpoint` for segments that carry data (a user name, an id the target gave). `endpoint`
/// escapes `/`, `?`, `#`, `%` and non-ASCII text in a segment, but silently drops a `.` or
/// `..` segment and strips tabs and line breaks, and an empty segment names the collection
/// instead of a member. Such a value would address another resource, so it is refused
/// before anything is sent.
pub(crate) fn data_endpoint(base: &Url, segments: &[&str]) -> TargetResult<Url> {
    let unplaceable = |segment: &&&str| {
        matches!(**segment, "" | "." | "..") || segment.chars().any(char::is_control)
    };
    if let Some(segment) = segments.iter().find(unplaceable) {
        return Err(TargetError::unusable(format!(
            "{segment:?} cannot be placed in a URL path (empty, a dot segment or a control \
             character)"
        )));
    }
    Ok(endpoint(base, segments))
}

/// How hard one target may be driven.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub timeout: Duration,
    pub concurrency: usize,
    pub rate_per_second: NonZeroU32,
    /// The wait to suggest after a 429 without `Retry-After`.
    pub throttle_default: Option<Duration>,
}

/// One target's side of the wire: a pooled client, its concurrency and rate limits, and
/// the classification of what comes back.
#[derive(Debug)]
pub struct Transport {
    name: String,
    client: reqwest::Client,
    clock: SharedClock,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    throttle_default: Option<Duration>,
}

impl Transport {
    pub(crate) fn new(
        name: &str,
        limits: Limits,
        clock: SharedClock,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(limits.timeout)
            .connect_timeout(limits.timeout)
            .build()?;
        Ok(Self {
            name: name.to_owned(),
            client,
            clock,
            // No burst: requests are spread evenly, so no one-second window of the target
            // (Primavera counts per second) ever sees more than the configured rate.
            limiter: RateLimiter::direct(
                Quota::per_second(limits.rate_per_second).allow_burst(NonZeroU32::MIN),
            ),
            in_flight: Semaphore::new(limits.concurrency.max(1)),
            throttle_default: limits.throttle_default,
        })
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Sends one request within the target's limits and reads the whole answer, without
    /// judging it.
    pub(crate) async fn exchange(&self, request: RequestBuilder) -> TargetResult<Answer> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| TargetError::Retryable {
                status: None,
                reason: "target is shutting down".to_owned(),
                retry_after: None,
            })?;
        self.limiter.until_ready().await;
        let request = request.build().map_err(|err| transport_error(&err))?;
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let started = Instant::now();
        let outcome = async {
            let response = self.client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body: body.into(),
            })
        }
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(answer) => {
                tracing::debug!(target_name = %self.name, %method, path, status = answer.status.as_u16(), elapsed_ms, "target answered");
                Ok(answer)
            }
            Err(err) => {
                let err = transport_error(&err);
                tracing::debug!(target_name = %self.name, %method, path, elapsed_ms, error = %err, "target did not answer");
                Err(err)
            }
        }
    }

    /// Judges an answer with [`classify`], handing it back when it was delivered.
    pub(crate) fn classify(&self, answer: Answer) -> TargetResult<Answer> {
        classify(
            answer.status,
            &answer.headers,
            &answer.body,
            self.clock.now(),
            self.throttle_default,
        )?;
        Ok(answer)
    }

    /// Sends a request that needs no token (logins) and judges the answer.
    pub(crate) async fn send(&self, request: RequestBuilder) -> TargetResult<Answer> {
        let answer = self.exchange(request).await?;
        self.classify(answer)
    }
}

/// A token as the target issued it.
#[derive(Debug, Clone)]
pub(crate) struct Issued<T> {
    pub token: T,
    pub expires_at: SystemTime,
}

/// A token handed out by the cache, remembering which login produced it.
#[derive(Debug, Clone)]
pub(crate) struct Lease<T> {
    pub token: T,
    generation: u64,
}

#[derive(Debug)]
struct Slot<T> {
    current: Option<(T, SystemTime)>,
    generation: u64,
}

/// Keeps one token until shortly before it expires. The lock is held across a login, so
/// concurrent callers wait for one login instead of each starting their own.
#[derive(Debug)]
pub(crate) struct TokenCache<T> {
    slot: Mutex<Slot<T>>,
    clock: SharedClock,
}

impl<T: Clone> TokenCache<T> {
    pub(crate) fn new(clock: SharedClock) -> Self {
        Self {
            slot: Mutex::new(Slot {
                current: None,
                generation: 0,
            }),
            clock,
        }
    }

    /// The cached token, or a fresh one from `login` when there is none or it is due.
    pub(crate) async fn lease<F, Fut>(&self, login: F) -> TargetResult<Lease<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = TargetResult<Issued<T>>>,
    {
        let mut slot = self.slot.lock().await;
        let now = self.clock.now();
        if let Some((token, refresh_at)) = &slot.current {
            if now < *refresh_at {
                return Ok(Lease {
                    token: token.clone(),
                    generation: slot.generation,
                });
            }
        }
        let issued = login().await?;
        let lifetime = issued.expires_at.duration_since(now).unwrap_or_default();
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        let refresh_at = issued.expires_at.checked_sub(margin).unwrap_or(now);
        slot.generation += 1;
        slot.current = Some((issued.token.clone(), refresh_at));
        Ok(Lease {
            token: issued.token,
            generation: slot.generation,
        })
    }

    /// Forgets the token of `lease` after the target refused it, unless a newer login has
    /// already replaced it.
    pub(crate) async fn invalidate(&self, lease: &Lease<T>) {
        let mut slot = self.slot.lock().await;
        if slot.generation == lease.generation {
            slot.current = None;
        }
    }
}

/// How one API authenticates: how to log in, and how a token goes onto a request.
#[async_trait::async_trait]
pub(crate) trait Auth: Send + Sync {
    type Token: Clone + Send + Sync;

    async fn login(&self, transport: &Transport) -> TargetResult<Issued<Self::Token>>;

    /// Adds the token and the API's fixed headers (version, tenant) to a request.
    fn authorize(&self, request: RequestBuilder, token: &Self::Token) -> RequestBuilder;
}

/// An authenticated conversation with one target.
#[derive(Debug)]
pub(crate) struct Session<A: Auth> {
    transport: Transport,
    auth: A,
    tokens: TokenCache<A::Token>,
}

impl<A: Auth> Session<A> {
    pub(crate) fn new(transport: Transport, auth: A) -> Self {
        let tokens = TokenCache::new(transport.clock.clone());
        Self {
            transport,
            auth,
            tokens,
        }
    }

    /// Sends the request `build` makes with a valid token and judges the answer. A 401 gets
    /// one fresh login and one more try; a second 401 is a rejection.
    pub(crate) async fn call<F>(&self, build: F) -> TargetResult<Answer>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder + Send + Sync,
    {
        let lease = self.lease().await?;
        let mut answer = self.send_with(&build, &lease).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            tracing::info!(target_name = %self.transport.name, "token refused, logging in again");
            self.tokens.invalidate(&lease).await;
            let lease = self.lease().await?;
            answer = self.send_with(&build, &lease).await?;
        }
        self.transport.classify(answer)
    }

    async fn lease(&self) -> TargetResult<Lease<A::Token>> {
        self.tokens.lease(|| self.auth.login(&self.transport)).await
    }

    async fn send_with<F>(&self, build: &F, lease: &Lease<A::Token>) -> TargetResult<Answer>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder + Send + Sync,
    {
        let request = self
            .auth
            .authorize(build(self.transport.client()), &lease.token);
        self.transport.exchange(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use reqwest::header::HeaderValue;

    use super::*;
    use crate::clock::ManualClock;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(value) = retry_after {
            map.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_refused_not_retried() {
        let limits = Limits {
            timeout: Duration::from_secs(1),
            concurrency: 1,
            rate_per_second: NonZeroU32::MIN,
            throttle_default: None,
        };
        let clock = Arc::new(ManualClock::new(at(1_700_000_000)));
        let transport = Transport::new("t", limits, clock).unwrap();
        let request = transport
            .client()
            .get("http://127.0.0.1:9/")
            .header("filters", "email=a@b\r\nx-admin: 1");
        match transport.exchange(request).await {
            Err(TargetError::Unusable { message }) => {
                assert!(
                    message.starts_with("the request could not be built"),
                    "{message}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn data_segments_are_escaped_whole_and_dot_segments_refused() {
        let base = Url::parse("http://h/user-service/internal/user").unwrap();
        let url = data_endpoint(&base, &["local", "a/b?c#d%2Fe é"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h/user-service/internal/user/local/a%2Fb%3Fc%23d%252Fe%20%C3%A9"
        );
        assert_eq!(url.path_segments().unwrap().count(), 5);
        for bad in ["", ".", "..", "ana\r\nx-admin: 1", "tab\there"] {
            assert!(
                matches!(
                    data_endpoint(&base, &["local", bad]),
                    Err(TargetError::Unusable { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn classification_table() {
        let now = at(1_700_000_000);
        let one_sec = Some(Duration::from_secs(1));
        let http_date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let appgate_422 = br#"{"id":"unprocessable","message":"Request validation error.","errors":[{"field":"lastName","message":"may not be null"}]}"#;
        let spring_400 = br#"{"message":"Field \"name\" cannot be null","status":400,"error":"Bad Request","timestamp":"2023-12-13T19:02:31.5897497","path":"/user-service/v1"}"#;
        // status, Retry-After, body, default wait after a bare 429, verdict
        type Row<'a> = (
            u16,
            Option<&'a str>,
            &'a [u8],
            Option<Duration>,
            TargetResult<()>,
        );
        let table: Vec<Row> = vec![
            (200, None, b"{}", None, Ok(())),
            (204, None, b"", None, Ok(())),
            (
                429,
                Some("7"),
                b"",
                one_sec,
                Err(TargetError::Retryable {
                    status: Some(429),
                    reason: "429: Too Many Requests".into(),
                    retry_after: Some(Duration::from_secs(7)),
                }),
            ),
            (
                429,
                Some(http_date.as_str()),
                b"",
                None,
                Err(TargetError::Retryable {
                    status: Some(429),
                    reason: "429: Too Many Requests".into(),
                    retry_after: Some(Duration::from_secs(90)),
                }),
            ),
            (
                429,
                None,
                b"",
                one_sec,
                Err(TargetError::Retryable {
                    status: Some(429),
                    reason: "429: Too Many Requests".into(),
                    retry_after: one_sec,
                }),
            ),
            (
                429,
                Some("soon"),
                b"",
                None,
                Err(TargetError::Retryable {
                    status: Some(429),
                    reason: "429: Too Many Requests".into(),
                    retry_after: None,
                }),
            ),
            (
                408,
                None,
                b"",
                one_sec,
                Err(TargetError::Retryable {
                    status: Some(408),
                    reason: "408: Request Timeout".into(),
                    retry_after: None,
                }),
            ),
            (
                503,
                Some("120"),
                br#"{"id":"unavailable","message":"Maintenance"}"#,
                None,
                Err(TargetError::Retryable {
                    status: Some(503),
                    reason: "503: Maintenance".into(),
                    retry_after: Some(Duration::from_secs(120)),
                }),
            ),
            (
                500,
                None,
                b"upstream exploded",
                None,
                Err(TargetError::Retryable {
                    status: Some(500),
                    reason: "500: upstream exploded".into(),
                    retry_after: None,
                }),
            ),
            (
                501,
                None,
                b"",
                None,
                Err(TargetError::Rejected {
                    status: 501,
                    message: "Not Implemented".into(),
                }),
            ),
            (
                422,
                None,
                appgate_422,
                None,
                Err(TargetError::Rejected {
                    status: 422,
                    message: "Request validation error. (lastName: may not be null)".into(),
                }),
            ),
            (
                400,
                None,
                spring_400,
                None,
                Err(TargetError::Rejected {
                    status: 400,
                    message: "Field \"name\" cannot be null".into(),
                }),
            ),
            (
                409,
                None,
                br#"{"message":"","errorCode":"VALIDATION_CONFLICT"}"#,
                None,
                Err(TargetError::Rejected {
                    status: 409,
                    message: "VALIDATION_CONFLICT".into(),
                }),
            ),
            (
                404,
                None,
                b"",
                None,
                Err(TargetError::Rejected {
                    status: 404,
                    message: "Not Found".into(),
                }),
            ),
            (
                401,
                None,
                br#"{"error":"invalid_client","error_description":"Bad client secret"}"#,
                None,
                Err(TargetError::Rejected {
                    status: 401,
                    message: "Bad client secret".into(),
                }),
            ),
            (
                302,
                None,
                b"",
                None,
                Err(TargetError::Rejected {
                    status: 302,
                    message: "Found".into(),
                }),
            ),
        ];
        for (status, retry_after, body, throttle_default, expected) in table {
            let status = StatusCode::from_u16(status).unwrap();
            let got = classify(status, &headers(retry_after), body, now, throttle_default);
            assert_eq!(got, expected, "status {status} retry-after {retry_after:?}");
        }
    }

    #[test]
    fn retry_after_in_the_past_means_now() {
        let now = at(1_700_000_000);
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn error_text_is_bounded_for_raw_bodies() {
        let body = "x".repeat(2 * MAX_ERROR_TEXT_CHARS);
        assert_eq!(
            error_text(body.as_bytes()).map(|text| text.len()),
            Some(MAX_ERROR_TEXT_CHARS)
        );
        assert_eq!(error_text(b"  "), None);
        assert_eq!(
            error_text(br#"{"errors":["a","b"]}"#),
            Some("a; b".to_owned())
        );
    }

    #[test]
    fn endpoint_encodes_segments() {
        let base = Url::parse("http://127.0.0.1:1/user-service/").unwrap();
        let url = endpoint(&base, &["internal", "user", "local", "a b/c"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/user-service/internal/user/local/a%20b%2Fc"
        );
    }

    fn issued(token: &str, expires_at: SystemTime) -> TargetResult<Issued<String>> {
        Ok(Issued {
            token: token.to_owned(),
            expires_at,
        })
    }

    #[tokio::test]
    async fn token_cache_renews_shortly_before_expiry() {
        let clock = Arc::new(ManualClock::new(at(1_000)));
        let cache = TokenCache::new(clock.clone());
        let first = cache
            .lease(|| async { issued("one", at(1_000 + 3_600)) })
            .await
            .unwrap();
        assert_eq!(first.token, "one");
        clock.advance(Duration::from_secs(3_600 - 31));
        let kept = cache
            .lease(|| async { issued("two", at(9_999)) })
            .await
            .unwrap();
        assert_eq!(kept.token, "one");
        clock.advance(Duration::from_secs(1));
        let renewed = cache
            .lease(|| async { issued("two", at(20_000)) })
            .await
            .unwrap();
        assert_eq!(renewed.token, "two");
    }

    #[tokio::test]
    async fn short_lived_tokens_renew_at_ninety_percent() {
        let clock = Arc::new(ManualClock::new(at(1_000)));
        let cache = TokenCache::new(clock.clone());
        cache
            .lease(|| async { issued("one", at(1_100)) })
            .await
            .unwrap();
        clock.advance(Duration::from_secs(89));
        let kept = cache.lease(|| async { issued("two", at(2_000)) }).await;
        assert_eq!(kept.unwrap().token, "one");
        clock.advance(Duration::from_secs(1));
        let renewed = cache.lease(|| async { issued("two", at(2_000)) }).await;
        assert_eq!(renewed.unwrap().token, "two");
    }

    #[tokio::test]
    async fn invalidating_a_stale_lease_keeps_the_newer_token() {
        let clock = Arc::new(ManualClock::new(at(1_000)));
        let cache = TokenCache::new(clock);
        let old = cache
            .lease(|| async { issued("one", at(5_000)) })
            .await
            .unwrap();
        cache.invalidate(&old).await;
        let new = cache
            .lease(|| async { issued("two", at(5_000)) })
            .await
            .unwrap();
        // A second caller that also held the old token must not throw away the new one.
        cache.invalidate(&old).await;
        let still = cache
            .lease(|| async { issued("three", at(5_000)) })
            .await
            .unwrap();
        assert_eq!((new.token.as_str(), still.token.as_str()), ("two", "two"));
    }

    #[tokio::test]
    async fn failed_login_leaves_the_cache_empty() {
        let clock = Arc::new(ManualClock::new(at(1_000)));
        let cache: TokenCache<String> = TokenCache::new(clock);
        let failed = cache
            .lease(|| async {
                Err(TargetError::Rejected {
                    status: 401,
                    message: "bad credentials".into(),
                })
            })
            .await;
        assert!(failed.is_err());
        let next = cache.lease(|| async { issued("one", at(5_000)) }).await;
        assert_eq!(next.unwrap().token, "one");
    }
}
