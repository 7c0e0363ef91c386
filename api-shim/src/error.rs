//! The one error type of the HTTP layer.
//!
//! Every non-success answer is an RFC 9457 `application/problem+json` body.
//! Messages in variants are written for the client; internal causes (Redis
//! errors, reply shapes) travel in the response as an [`ErrorCause`]
//! extension, which the edge middleware logs and strips: never sent, and no
//! logging in conversions.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::BackendError;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// The IANA problem type of a denied request (draft-ietf-httpapi-ratelimit-headers).
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

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
    #[error("conflict: {0}")]
    Conflict(String),
    /// Redis (or the module) cannot be reached in time; the cause is logged.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
    /// A bug or version skew; the cause is logged.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The internal cause of an error answer, for the log line only.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

/// The outcome label of a decision endpoint's answer, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct Outcome(pub &'static str);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Unauthorized(m) => {
                m.clone()
            }
            ApiError::Conflict(_) => {
                "the key holds another Redis type or another limiter's state".to_owned()
            }
            ApiError::Unavailable(_) => "the rate limiter's storage is unavailable".to_owned(),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }

    fn cause(&self) -> Option<&str> {
        match self {
            ApiError::Conflict(c) | ApiError::Unavailable(c) | ApiError::Internal(c) => Some(c),
            _ => None,
        }
    }

    /// Short machine-readable label, also used as a metrics outcome.
    pub fn label(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// For the raw endpoints, whose parameters the caller chose: the module's
/// refusal is the caller's to fix, so its message (written for users) is
/// passed on. Policy decisions map `Refused` themselves (see `http::check`).
impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unavailable(m) => ApiError::Unavailable(m),
            BackendError::WrongType(m) => ApiError::Conflict(m),
            BackendError::Refused(m) => {
                ApiError::BadRequest(m.strip_prefix("ERR ").unwrap_or(&m).to_owned())
            }
            BackendError::Protocol(m) => ApiError::Internal(m),
        }
    }
}

/// A problem+json response with extra members and headers.
pub fn problem(
    status: StatusCode,
    kind: &str,
    detail: &str,
    extra: serde_json::Value,
    headers: HeaderMap,
) -> Response {
    let mut body = json!({
        "type": kind,
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

impl ApiError {
    /// The problem response, sent with `status` instead of the error's own
    /// (Nginx's `auth_request` passes only 2xx, 401 and 403 on); the body's
    /// `status` always says the status sent.
    pub fn into_response_as(self, status: StatusCode) -> Response {
        let mut headers = HeaderMap::new();
        if matches!(self, ApiError::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let mut resp = problem(status, "about:blank", &self.detail(), json!({}), headers);
        if let Some(c) = self.cause() {
            resp.extensions_mut().insert(ErrorCause(c.to_owned()));
        }
        resp.extensions_mut().insert(Outcome(self.label()));
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.into_response_as(status)
    }
}
