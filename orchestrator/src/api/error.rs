//! The API's one error type and its single mapping to RFC 9457 problem+json.
//!
//! Every error has a stable machine `code`, an HTTP status and a human `detail`.
//! Internal errors answer with a generic message and are logged with their whole chain;
//! their detail never reaches the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;
use crate::validate::Invalid;

/// One invalid input field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    /// The field, as a JSON pointer-ish path (`ssh_keys[1]`) or a parameter name.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable error code, e.g. `not_found`, `pi_busy`.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For `pi_busy` and `idempotency_key_reused`: the job in the way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this action needs an operator token")]
    Forbidden,
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    /// A query parameter that cannot be understood at all (a garbled `cursor`): 400,
    /// where a well-formed but unacceptable value is 422 [`ApiError::Invalid`].
    #[error("invalid parameter {}: {}", .0.field, .0.message)]
    InvalidParameter(FieldError),
    #[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("Pi is busy with job {running}")]
    PiBusy { running: String },
    #[error("Idempotency-Key was already used for a different request (job {existing})")]
    KeyReused { existing: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Past `[power]`'s limit of power cycles: 429 with `Retry-After` (seconds).
    #[error("{message}")]
    TooManyPowerCycles { message: String, retry_after_seconds: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound { what: what.into() }
    }

    /// A garbled query parameter (400).
    pub fn bad_parameter(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter(FieldError { field: field.to_string(), message: message.into() })
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError { field: field.to_string(), message: message.into() }])
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            ApiError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::PiBusy { .. } => (StatusCode::CONFLICT, "pi_busy"),
            ApiError::KeyReused { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::TooManyPowerCycles { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_power_cycles")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        let errs = e.0.into_iter().map(|b| FieldError { field: b.field, message: b.message });
        ApiError::Invalid(errs.collect())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let problem = Problem {
            type_: format!("https://bramble.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: code.to_string(),
            errors: match &self {
                ApiError::Invalid(errs) => errs.clone(),
                ApiError::InvalidParameter(e) => vec![e.clone()],
                _ => Vec::new(),
            },
            job: match &self {
                ApiError::PiBusy { running } => Some(running.clone()),
                ApiError::KeyReused { existing } => Some(existing.clone()),
                _ => None,
            },
        };
        let mut resp = (status, Json(problem)).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let ApiError::TooManyPowerCycles { retry_after_seconds, .. } = &self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::BadField;

    #[tokio::test]
    async fn validation_errors_become_the_422_problem() {
        let bad =
            |field: &str, message: &str| BadField { field: field.into(), message: message.into() };
        let invalid =
            Invalid(vec![bad("serial", "must be 8 lowercase hex digits"), bad("mac", "bad")]);
        let resp = ApiError::from(invalid).into_response();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/problem+json");
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let want = concat!(
            r#"{"type":"https://bramble.dev/problems/invalid_input","title":"Unprocessable Entity","#,
            r#""status":422,"detail":"invalid input: serial: must be 8 lowercase hex digits; mac: bad","#,
            r#""code":"invalid_input","errors":[{"field":"serial","message":"must be 8 lowercase hex digits"},"#,
            r#"{"field":"mac","message":"bad"}]}"#
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), want);
    }
}
