//! Reading a JSON request body with errors that say what is wrong: 415 for another media type,
//! 413 past the size limit, 400 for broken JSON, 422 (with the field's path) for JSON that breaks
//! the schema.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: BODY_LIMIT },
        _ => ApiError::MalformedJson(rejection.body_text()),
    })?;
    // Trailing bytes after the value are rejected: serde_json::from_slice-style strictness.
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = value.map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner())
    });
    let value = value.and_then(|v| de.end().map(|()| v).map_err(|e| (".".to_owned(), e)));
    value.map_err(|(path, inner)| match inner.classify() {
        serde_json::error::Category::Data => {
            if path == "." {
                ApiError::Invalid(inner.to_string())
            } else {
                ApiError::Invalid(format!("{path}: {inner}"))
            }
        }
        _ => ApiError::MalformedJson(inner.to_string()),
    })
}
