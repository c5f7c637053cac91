//! The one place where errors become HTTP responses: `{"error": {"code", "message", "details"}}`
//! with stable snake_case codes. Internal detail (store errors, paths) never reaches a client.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use parla_engine::store::StoreError;
use serde_json::json;

use crate::auth::AuthError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: serde_json::Value,
    /// Sent as `Retry-After` (429s).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: serde_json::Value::Object(serde_json::Map::new()),
            retry_after_secs: None,
        }
    }

    /// A request field failed validation; `details.field` names it.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message);
        e.details = json!({ "field": field });
        e
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        response.json(crate::views::ErrorBody {
            error: crate::views::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        })
    }
}

impl From<StoreError> for ApiError {
    /// Every variant by name (no catch-all): a new one must be given its answer here.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => {
                Self::new(StatusCode::CONFLICT, "email_taken", "this email is already registered")
            }
            StoreError::LastOwner => Self::new(
                StatusCode::CONFLICT,
                "last_owner",
                "a workspace keeps at least one owner",
            ),
            // Only after many rounds of re-reading lost to other writes of the same record.
            StoreError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the record kept changing while this request was applied; retry",
            ),
            StoreError::ConversationNotFound
            | StoreError::BotIdTaken
            | StoreError::ConversationExists
            | StoreError::SeqConflict(_)
            | StoreError::SeqGap { .. }
            | StoreError::Corrupt(_)
            | StoreError::Backend(_)
            | StoreError::Closed => {
                tracing::error!(error = %e, "store error in the admin API");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::WeakPassword => Self::invalid("password", e.to_string()),
            AuthError::TokenExpired => Self::unauthorized("token_expired", e.to_string()),
            AuthError::TokenInvalid => Self::unauthorized("token_invalid", e.to_string()),
            AuthError::Internal => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}
