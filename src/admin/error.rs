//! Errors of the admin API, as `{"error": ..., "detail": ...}` JSON.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::ledger::LedgerError;
use crate::scim::service::UNAVAILABLE_RETRY_AFTER_SECS;
use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The request clashes with work in progress (a reconcile run already running).
    #[error("{0}")]
    Conflict(String),
    /// A target answered a call the request made with an error.
    #[error("{0}")]
    Upstream(String),
    /// Too many failed authentications from this address, or this client's rate exceeded.
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    /// The store cannot take writes now (full disk, I/O error, a file turned read-only):
    /// the operator's request may be retried once it can.
    #[error("the database cannot take writes now; retry later")]
    Unavailable(LedgerError),
    #[error("internal error")]
    Internal(LedgerError),
}

impl From<LedgerError> for AdminError {
    fn from(err: LedgerError) -> Self {
        if err.is_unavailable() {
            AdminError::Unavailable(err)
        } else {
            AdminError::Internal(err)
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Upstream(_) => StatusCode::BAD_GATEWAY,
            AdminError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (kind, detail) = match self {
            AdminError::Unauthorized(d) => ("unauthorized", d.clone()),
            AdminError::NotFound(d) => ("not_found", d.clone()),
            AdminError::BadRequest(d) => ("bad_request", d.clone()),
            AdminError::Conflict(d) => ("conflict", d.clone()),
            AdminError::Upstream(d) => ("upstream", d.clone()),
            AdminError::RateLimited { .. } => ("rate_limited", self.to_string()),
            AdminError::Unavailable(cause) => {
                tracing::warn!(
                    error = %error_chain(cause),
                    "admin request refused: the database cannot take writes"
                );
                ("unavailable", self.to_string())
            }
            AdminError::Internal(cause) => {
                tracing::error!(error = %error_chain(cause), "admin request failed");
                ("internal", "internal error; see the bridge log".to_owned())
            }
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, AdminError::Unauthorized(_)) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"scim-bridge-admin\"",
            ));
        }
        match self {
            AdminError::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            AdminError::Unavailable(_) => {
                response.insert_header((
                    header::RETRY_AFTER,
                    UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
                ));
            }
            _ => {}
        }
        response.json(json!({"error": kind, "detail": detail}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_trouble_is_a_503_to_retry_and_anything_else_a_500() {
        let full = AdminError::from(LedgerError::Unavailable("database or disk is full".into()));
        let response = full.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).unwrap(),
            &UNAVAILABLE_RETRY_AFTER_SECS.to_string()
        );
        let bug = AdminError::from(LedgerError::WriterGone);
        assert_eq!(
            bug.error_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
