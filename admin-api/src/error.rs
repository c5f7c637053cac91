//! The one place where errors become HTTP responses: `{"error": {"code", "message", "details"}}`
//! with stable snake_case codes. Internal detail (store errors, paths) never reaches a client.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use parla_engine::{EngineError, store::StoreError};
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

/// The one mapping of the engine's errors onto HTTP, every variant by name (no catch-all: a new
/// variant must be given its status here). The code is the engine's wire code; store failures
/// keep [`From<StoreError>`]'s answers.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::BotNotFound | EngineError::ConversationNotFound => StatusCode::NOT_FOUND,
            EngineError::BotUnavailable
            | EngineError::AlreadyClaimed(_)
            | EngineError::NotAssigned => StatusCode::CONFLICT,
            EngineError::OriginNotAllowed | EngineError::InvalidResumeToken => {
                StatusCode::FORBIDDEN
            }
            EngineError::InvalidForm(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::TenantAtCapacity
            | EngineError::ConversationBusy
            | EngineError::ShuttingDown
            | EngineError::NotStored => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Internal => {
                tracing::error!("an engine operation failed in the admin API");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            EngineError::NotConfirmed => StatusCode::GATEWAY_TIMEOUT,
            // Input out of shape is a validation failure like any other body's.
            EngineError::InvalidInput(input) => return Self::invalid(input.field, &input.problem),
            EngineError::Store(store) => return store.clone().into(),
            EngineError::PlanLimitReached(limit) => {
                let mut refused =
                    Self::new(StatusCode::PAYMENT_REQUIRED, e.code(), e.public_message());
                refused.details = json!({
                    "limit": limit.as_str(),
                    "upgrade": "GET /api/billing/plans, then POST /api/billing/checkout",
                });
                return refused;
            }
        };
        Self::new(status, e.code(), e.public_message())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine error has one status wherever the admin API meets it (handlers used to map
    /// them apart, with `_ => 500` arms that disagreed), and keeps the engine's wire code.
    #[test]
    fn each_engine_error_has_one_status_and_its_wire_code() {
        let cases = [
            (EngineError::BotNotFound, 404),
            (EngineError::ConversationNotFound, 404),
            (EngineError::BotUnavailable, 409),
            (EngineError::AlreadyClaimed("Ann".into()), 409),
            (EngineError::NotAssigned, 409),
            (EngineError::OriginNotAllowed, 403),
            (EngineError::InvalidResumeToken, 403),
            (EngineError::InvalidForm("email: required".into()), 422),
            (EngineError::TenantAtCapacity, 503),
            (EngineError::ConversationBusy, 503),
            (EngineError::ShuttingDown, 503),
            (EngineError::Internal, 500),
            (EngineError::NotConfirmed, 504),
            (EngineError::NotStored, 503),
        ];
        for (error, status) in cases {
            let code = error.code();
            let api = ApiError::from(error);
            assert_eq!((api.status.as_u16(), api.code), (status, code));
        }
        let long = parla_domain::input::VisitorInput::text("m1", "too long").check(3);
        let long = ApiError::from(EngineError::from(long.expect_err("refused")));
        assert_eq!((long.status.as_u16(), long.code), (422, "validation_failed"));
        assert_eq!(long.details, json!({"field": "text"}));
        let taken = ApiError::from(EngineError::Store(StoreError::EmailTaken));
        assert_eq!((taken.status.as_u16(), taken.code), (409, "email_taken"));
        let broken = ApiError::from(EngineError::Store(StoreError::Backend("disk".into())));
        assert_eq!(
            (broken.status.as_u16(), broken.code, broken.message.as_str()),
            (500, "internal", "internal error")
        );
    }
}
