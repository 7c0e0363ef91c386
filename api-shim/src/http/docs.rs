//! `/docs`: interactive API documentation (Swagger UI), served offline.
//!
//! The Swagger UI files are compiled into the binary (`utoipa-swagger-ui`
//! with its `vendored` feature: no download at build or run time) and fed by
//! the same `/openapi.json` the service answers, so the page cannot drift
//! from the document. Every asset is same-origin and relative (`docs/x.js`,
//! `../openapi.json`), so the page also works under a path prefix such as
//! the shipped Nginx's `/ratelimit/`; the validator badge (which would call
//! validator.swagger.io) is off, and a Content-Security-Policy keeps the
//! browser to this origin.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Swagger UI's configuration: the document, relative to `/docs/`.
static CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new(["../openapi.json"])
            .validator_url("none")
            .try_it_out_enabled(true),
    )
});

/// Same-origin only; Swagger UI needs inline styles and `data:` images.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// `GET /docs`: to `/docs/`, relatively (so a path prefix is kept), where
/// the page's relative asset links resolve.
pub async fn redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, HeaderValue::from_static("docs/"))],
    )
        .into_response()
}

/// `GET /docs/`: the page.
pub async fn index() -> Result<Response, ApiError> {
    file("index.html")
}

/// `GET /docs/{file}`: one of the page's assets.
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    file(&name)
}

fn file(name: &str) -> Result<Response, ApiError> {
    let f = utoipa_swagger_ui::serve(name, CONFIG.clone())
        .map_err(|e| ApiError::Internal(format!("swagger ui: {e}")))?
        .ok_or_else(|| ApiError::NotFound(format!("no such documentation file `{name}`")))?;
    let content_type = HeaderValue::from_str(&f.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let mut resp = (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        f.bytes.into_owned(),
    )
        .into_response();
    if f.gzpipped {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(resp)
}
