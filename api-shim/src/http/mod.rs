//! The HTTP layer, a file per job:
//!
//! - [`router`]: the route table, [`app`], and the edge middleware (metrics,
//!   logging of internal causes);
//! - [`params`]: query-string and path extraction, peer address;
//! - [`raw`]: `POST /v1/{tokenbucket,fixedwindow,sliding}/{key}`;
//! - [`check`]: policy decisions (`/v1/check/{policy}`, `/v1/auth/{policy}`);
//! - [`status`]: `GET /v1/status/{policy}` (the caller's state, nothing consumed);
//! - [`admin`]: the `/admin/mode` endpoints;
//! - [`docs`]: `/docs`, Swagger UI compiled into the binary;
//! - [`state`]: [`AppState`] and the helpers every handler shares;
//! - [`ops`]: `/health`, `/ready`, `/metrics`, `/openapi.json`.
//!
//! Handlers return `Result<Response, ApiError>` and use `?`.

pub mod admin;
pub mod check;
pub mod docs;
pub mod leases;
pub mod ops;
pub mod params;
pub mod raw;
pub mod router;
pub mod state;
pub mod status;

pub use router::{app, route_table};
pub use state::AppState;
