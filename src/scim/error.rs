//! SCIM layer errors, rendered as RFC 7644 section 3.12 error bodies.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::telemetry::error_chain;

pub(crate) const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(crate) const SCIM_CONTENT_TYPE: &str = "application/scim+json";
const MAX_DETAIL_BYTES: usize = 1024;

/// Every way a SCIM request can fail. The `status` / `scim_type` matches below have no
/// wildcard arm, so a new variant forces a decision about how it renders.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    #[error("{0}")]
    InvalidFilter(String),
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    Mutability(String),
    #[error("{0}")]
    Uniqueness(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    InvalidVersion(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("authentication required: {0}")]
    Unauthorized(String),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The store cannot take writes now (full disk, I/O error, read-only file): the client
    /// should send the same request again later. The cause goes to the log.
    #[error("the service cannot store changes right now; retry after {retry_after_secs} seconds")]
    Unavailable {
        retry_after_secs: u64,
        #[source]
        cause: anyhow::Error,
    },
    /// Anything the client cannot fix. The cause goes to the log, never to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ScimError {
    pub(crate) fn internal(err: impl Into<anyhow::Error>) -> Self {
        ScimError::Internal(err.into())
    }

    pub(crate) fn scim_type(&self) -> Option<&'static str> {
        match self {
            ScimError::InvalidFilter(_) => Some("invalidFilter"),
            ScimError::InvalidSyntax(_) => Some("invalidSyntax"),
            ScimError::InvalidPath(_) => Some("invalidPath"),
            ScimError::NoTarget(_) => Some("noTarget"),
            ScimError::InvalidValue(_) => Some("invalidValue"),
            ScimError::Mutability(_) => Some("mutability"),
            ScimError::Uniqueness(_) => Some("uniqueness"),
            ScimError::TooMany(_) => Some("tooMany"),
            ScimError::InvalidVersion(_) => Some("invalidVers"),
            ScimError::NotFound(_)
            | ScimError::PreconditionFailed(_)
            | ScimError::Unauthorized(_)
            | ScimError::RateLimited { .. }
            | ScimError::PayloadTooLarge(_)
            | ScimError::MethodNotAllowed(_)
            | ScimError::NotImplemented(_)
            | ScimError::UnsupportedMediaType(_)
            | ScimError::Unavailable { .. }
            | ScimError::Internal(_) => None,
        }
    }

    /// What the client is told, cut to `MAX_DETAIL_BYTES`: details quote the offending path,
    /// filter or id, and a client sending megabytes should not get them back.
    fn detail(&self) -> String {
        let mut detail = match self {
            ScimError::Internal(_) => "internal error; see the bridge log".to_owned(),
            other => other.to_string(),
        };
        if detail.len() > MAX_DETAIL_BYTES {
            let mut cut = MAX_DETAIL_BYTES;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push_str("...");
        }
        detail
    }

    /// The RFC 7644 error body, also used inside Bulk responses.
    pub(crate) fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status_code().as_u16().to_string(),
            "detail": self.detail(),
        });
        if let Some(scim_type) = self.scim_type() {
            body["scimType"] = json!(scim_type);
        }
        body
    }
}

impl ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        match self {
            ScimError::InvalidFilter(_)
            | ScimError::InvalidSyntax(_)
            | ScimError::InvalidPath(_)
            | ScimError::NoTarget(_)
            | ScimError::InvalidValue(_)
            | ScimError::Mutability(_)
            | ScimError::TooMany(_)
            | ScimError::InvalidVersion(_) => StatusCode::BAD_REQUEST,
            ScimError::Uniqueness(_) => StatusCode::CONFLICT,
            ScimError::NotFound(_) => StatusCode::NOT_FOUND,
            ScimError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ScimError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ScimError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ScimError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ScimError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ScimError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ScimError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ScimError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ScimError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ScimError::Internal(cause) => {
                tracing::error!(error = %error_chain(cause.as_ref()), "request failed")
            }
            ScimError::Unavailable { cause, .. } => tracing::warn!(
                error = %error_chain(cause.as_ref()),
                "write refused: the store cannot take it now"
            ),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, SCIM_CONTENT_TYPE));
        match self {
            ScimError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"scim-bridge\""));
            }
            ScimError::RateLimited { retry_after_secs }
            | ScimError::Unavailable {
                retry_after_secs, ..
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.body(self.body().to_string())
    }
}
