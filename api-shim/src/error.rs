//! The one error type of the HTTP layer.
//!
//! Every non-success answer is an RFC 9457 `application/problem+json` body.
//! Messages in variants are written for the client; internal causes (Redis
//! errors, reply shapes) are logged where they are converted and never sent.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::{BackendError, RejectKind};

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Client input is wrong; the message says what to fix.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Unknown policy or disabled endpoint.
    #[error("not found: {0}")]
    NotFound(String),
    /// Missing or wrong credentials (admin token, unknown API key).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The key holds another Redis type or another limiter's state.
    #[error("conflict")]
    Conflict,
    /// Redis (or the module) cannot be reached; the cause was logged.
    #[error("rate limiter unavailable")]
    Unavailable,
    /// A bug or version skew; the cause was logged.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Unauthorized(m) => {
                m.clone()
            }
            ApiError::Conflict => {
                "the key holds another Redis type or another limiter's state".to_owned()
            }
            ApiError::Unavailable => "the rate limiter's storage is unavailable".to_owned(),
            ApiError::Internal => "internal error".to_owned(),
        }
    }

    /// Short machine-readable label, also used as a metrics outcome.
    pub fn label(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Conflict => "conflict",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match &e {
            BackendError::Unavailable(_) => {
                tracing::warn!(error = %e, "redis unavailable");
                ApiError::Unavailable
            }
            BackendError::Rejected(RejectKind::ModuleMissing, _) => {
                tracing::error!(error = %e, "RL.* commands unknown: is the module loaded?");
                ApiError::Unavailable
            }
            BackendError::Rejected(RejectKind::WrongType, _) => {
                tracing::info!(error = %e, "limiter key conflict");
                ApiError::Conflict
            }
            BackendError::Rejected(RejectKind::Invalid, _) => {
                // We validate every argument first, so this means the module
                // and the shim disagree about what is valid.
                tracing::warn!(error = %e, "module refused arguments the shim accepted");
                ApiError::BadRequest("the rate limiter refused these parameters".to_owned())
            }
            BackendError::Protocol(_) => {
                tracing::error!(error = %e, "unexpected reply");
                ApiError::Internal
            }
        }
    }
}

/// A problem+json response with extra members and headers.
pub fn problem(
    status: StatusCode,
    detail: &str,
    extra: serde_json::Value,
    headers: HeaderMap,
) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(b), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    let mut resp = (status, headers, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        if matches!(self, ApiError::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        problem(self.status(), &self.detail(), json!({}), headers)
    }
}
