//! Errors of the console, rendered as a short HTML page; a missing or expired session sends
//! the browser to the sign-in page instead.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::ledger::LedgerError;
use crate::mapping::MappingError;
use crate::reconcile::ReconcileError;
use crate::scim::error::ScimError;
use crate::scim::service::UNAVAILABLE_RETRY_AFTER_SECS;
use crate::telemetry::error_chain;

use super::layout;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// No session, or one that expired: the answer is the sign-in page.
    #[error("sign in to use the console")]
    SignedOut,
    /// A changing request without the session's CSRF token.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The action cannot happen now (a reconcile already running).
    #[error("{0}")]
    Conflict(String),
    /// A target answered a read or a sync with an error.
    #[error("{0}")]
    Upstream(String),
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    #[error("the database cannot take writes now; retry later")]
    Unavailable(LedgerError),
    #[error("internal error")]
    Ledger(LedgerError),
    #[error("internal error")]
    Scim(ScimError),
    #[error("internal error")]
    Mapping(MappingError),
    #[error("cannot write the mapping file: {0}")]
    Write(std::io::Error),
}

impl From<LedgerError> for ConsoleError {
    fn from(err: LedgerError) -> Self {
        if err.is_unavailable() {
            ConsoleError::Unavailable(err)
        } else {
            ConsoleError::Ledger(err)
        }
    }
}

impl From<ScimError> for ConsoleError {
    fn from(err: ScimError) -> Self {
        match err {
            ScimError::NotFound(detail) => ConsoleError::NotFound(detail),
            other => ConsoleError::Scim(other),
        }
    }
}

impl From<MappingError> for ConsoleError {
    fn from(err: MappingError) -> Self {
        ConsoleError::Mapping(err)
    }
}

impl From<ReconcileError> for ConsoleError {
    fn from(err: ReconcileError) -> Self {
        match err {
            ReconcileError::UnknownTarget { .. }
            | ReconcileError::UnknownUser(_)
            | ReconcileError::UnknownRun(_) => ConsoleError::NotFound(err.to_string()),
            ReconcileError::UnknownKind(_) => ConsoleError::BadRequest(err.to_string()),
            ReconcileError::Busy(_) | ReconcileError::Cancelled => {
                ConsoleError::Conflict(err.to_string())
            }
            ReconcileError::Target { .. } => ConsoleError::Upstream(err.to_string()),
            ReconcileError::Ledger(err) => ConsoleError::from(err),
        }
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::SignedOut => StatusCode::SEE_OTHER,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ConsoleError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Ledger(_)
            | ConsoleError::Scim(_)
            | ConsoleError::Mapping(_)
            | ConsoleError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ConsoleError::SignedOut => {
                // htmx follows this header for a partial request; a browser follows Location.
                return response
                    .insert_header((header::LOCATION, layout::SIGN_IN))
                    .insert_header(("HX-Redirect", layout::SIGN_IN))
                    .finish();
            }
            ConsoleError::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ConsoleError::Unavailable(cause) => {
                tracing::warn!(error = %error_chain(cause), "console request refused: the database cannot take writes");
                response.insert_header((
                    header::RETRY_AFTER,
                    UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
                ));
            }
            ConsoleError::Ledger(cause) => {
                tracing::error!(error = %error_chain(cause), "console request failed")
            }
            ConsoleError::Scim(cause) => {
                tracing::error!(error = %error_chain(cause), "console request failed")
            }
            ConsoleError::Mapping(cause) => {
                tracing::error!(error = %error_chain(cause), "console request failed")
            }
            ConsoleError::Write(cause) => {
                tracing::error!(error = %error_chain(cause), "console could not write a mapping file")
            }
            ConsoleError::Forbidden(_)
            | ConsoleError::NotFound(_)
            | ConsoleError::BadRequest(_)
            | ConsoleError::Conflict(_)
            | ConsoleError::Upstream(_) => {}
        }
        let detail = match self {
            ConsoleError::Ledger(_) | ConsoleError::Scim(_) | ConsoleError::Mapping(_) => {
                "internal error; see the bridge log".to_owned()
            }
            other => other.to_string(),
        };
        response
            .content_type("text/html; charset=utf-8")
            .body(layout::error_page(self.status_code(), &detail).into_string())
    }
}
