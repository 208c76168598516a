//! Logging: human-readable or JSON lines, level from `RUST_LOG` (default `info`), and the
//! span every HTTP request is logged in, whose target never carries a credential.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::scim::auth::request_address;

pub(crate) fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests that build several apps) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Query parameters whose values are logged as sent: paging, sorting, projection and the
/// admin API's filters. Any other value is replaced, because a client may put a token in
/// the query (`?access_token=`) and a SCIM filter names people (`userName eq "ana@..."`).
const LOGGED_PARAMETERS: &[&str] = &[
    "attributes",
    "excludedattributes",
    "sortby",
    "sortorder",
    "startindex",
    "count",
    "state",
    "target",
    "action",
    "kind",
    "before",
    "limit",
];

/// The request target as logged: the path, and the query with every value not known to be
/// harmless replaced by `[redacted]`.
pub(crate) fn loggable_target(path: &str, query: &str) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if LOGGED_PARAMETERS
                .iter()
                .any(|known| name.eq_ignore_ascii_case(known))
            {
                format!("{name}={value}")
            } else {
                format!("{name}=[redacted]")
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// The root span of every request: tracing-actix-web's default fields, except that the
/// target is `loggable_target`, the client address believes forwarding headers only from
/// trusted proxies, and the host (which a client may forge) is left out.
pub(crate) struct RedactedRootSpan;

impl RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let method = request.method().as_str().to_owned();
        let route = request.match_pattern().unwrap_or_default();
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %method,
            http.route = %route,
            http.target = %loggable_target(request.path(), request.query_string()),
            http.client_ip = %request_address(request),
            http.user_agent = %user_agent,
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// An error with its causes, `outer: inner: root`: the one way the SCIM and the admin side
/// log a failure, so the cause of a 500 or a 503 is in the log whichever API answered it.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // thiserror's `{0}` messages already carry their source's text: say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Log lines written while a test runs, to assert what an operator would read.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    /// Everything logged so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::{test as actix_test, web, App, HttpResponse};

    #[test]
    fn credentials_and_filters_never_reach_the_log() {
        let cases = [
            ("/scim/v2/Users", "", "/scim/v2/Users"),
            (
                "/scim/v2/Users",
                "access_token=s3cr3t&count=10",
                "/scim/v2/Users?access_token=[redacted]&count=10",
            ),
            (
                "/scim/v2/Users",
                "filter=userName%20eq%20%22ana%40example.com%22&startIndex=1",
                "/scim/v2/Users?filter=[redacted]&startIndex=1",
            ),
            (
                "/admin/deliveries",
                "Token=x&state=failed",
                "/admin/deliveries?Token=[redacted]&state=failed",
            ),
            ("/metrics", "x", "/metrics?x=[redacted]"),
        ];
        for (path, query, logged) in cases {
            assert_eq!(loggable_target(path, query), logged);
        }
    }

    #[actix_web::test]
    async fn a_refused_request_is_logged_without_its_query_token() {
        let log = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = actix_test::init_service(
            App::new()
                .wrap(tracing_actix_web::TracingLogger::<RedactedRootSpan>::new())
                .route(
                    "/scim/v2/Users",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(actix_web::error::ErrorUnauthorized("no token"))
                    }),
                ),
        )
        .await;
        let request = actix_test::TestRequest::get()
            .uri("/scim/v2/Users?access_token=s3cr3t-t0ken&count=5")
            .to_request();
        let response = actix_test::call_service(&app, request).await;
        assert_eq!(response.status(), 401);
        let text = log.text();
        assert!(text.contains("access_token=[redacted]&count=5"), "{text}");
        assert!(!text.contains("s3cr3t-t0ken"), "{text}");
    }

    #[test]
    fn an_error_is_logged_with_its_causes_each_said_once() {
        let root = std::io::Error::other("disk full");
        let outer = anyhow::Error::new(root).context("writing the batch");
        assert_eq!(error_chain(outer.as_ref()), "writing the batch: disk full");
        let ledger = crate::ledger::LedgerError::Unavailable("database or disk is full".into());
        assert_eq!(
            error_chain(&ledger),
            "the database cannot take writes now: database or disk is full"
        );
    }
}
