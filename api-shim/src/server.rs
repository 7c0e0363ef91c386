//! Wiring: configuration + Redis backend + router + listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{app, AppState};
use crate::redis_backend::RedisBackend;

/// Builds the state with the real Redis backend (no connection is made yet).
pub fn state_from_config(cfg: Config) -> Result<AppState, String> {
    let backend = RedisBackend::new(&cfg)?;
    AppState::new(cfg, Arc::new(backend)).map_err(|e| format!("metrics: {e}"))
}

/// Serves until `shutdown` resolves. Connect info is attached so handlers can
/// see the TCP peer (for the trusted-proxy check).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
