//! Errors of the admin API, as `{"error": ..., "detail": ...}` JSON.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::ledger::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Too many failed authentications from this address, or this client's rate exceeded.
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[from] LedgerError),
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (kind, detail) = match self {
            AdminError::Unauthorized(d) => ("unauthorized", d.clone()),
            AdminError::NotFound(d) => ("not_found", d.clone()),
            AdminError::BadRequest(d) => ("bad_request", d.clone()),
            AdminError::RateLimited { .. } => ("rate_limited", self.to_string()),
            AdminError::Internal(cause) => {
                tracing::error!(error = %cause, "admin request failed");
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
        if let AdminError::RateLimited { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        response.json(json!({"error": kind, "detail": detail}))
    }
}
