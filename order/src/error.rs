//! API errors: JSON `{"error": "..."}` whose text names the field and the rule, with the
//! status that fits.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("body must be at most {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    /// Well-formed JSON that breaks a rule (unknown field, wrong type, out of range...).
    #[error("{0}")]
    Invalid(String),
    #[error("orderId {order_id} was already used for different items (order {id})")]
    Conflict { order_id: String, id: String },
    #[error("{0}")]
    NotFound(String),
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<protocol::order::ValidationError> for ApiError {
    fn from(e: protocol::order::ValidationError) -> Self {
        ApiError::Invalid(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let mut body = json!({ "error": self.to_string() });
        if let ApiError::Conflict { id, .. } = &self {
            body["id"] = json!(id);
        }
        (status, Json(body)).into_response()
    }
}
