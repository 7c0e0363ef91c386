//! Wiring: configuration + Redis backend + router + listener, and reloads.
//!
//! Connections are served by hyper's HTTP/1 builder directly (not
//! `axum::serve`) so that a client must send each request's header within
//! `http.header_read_timeout_ms`: a half-open or trickling connection is
//! closed instead of holding a slot for minutes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::{Config, Loader};
use crate::http::{app, AppState};
use crate::redis_backend::RedisBackend;

/// Builds the state with the real Redis backend (no connection is made yet).
pub fn state_from_config(cfg: Config) -> Result<AppState, String> {
    let backend = RedisBackend::new(&cfg)?;
    AppState::new(cfg, Arc::new(backend)).map_err(|e| format!("metrics: {e}"))
}

/// Loads the configuration, asks the server for `ratelimit.exact-max-log`
/// (when permitted; else the module's default), and validates the whole
/// configuration against it. Errors name the field.
pub async fn start(loader: &Loader) -> Result<AppState, String> {
    // First pass: everything but the EXACT bound, to learn where Redis is.
    let first = loader.load(u64::MAX).map_err(|e| e.to_string())?;
    let backend = Arc::new(RedisBackend::new(&first)?);
    let budget = first.redis_timeout.max(Duration::from_secs(1));
    let max_log = match tokio::time::timeout(
        budget,
        crate::backend::Backend::exact_max_log(backend.as_ref()),
    )
    .await
    {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => {
            tracing::info!(
                "CONFIG GET ratelimit.exact-max-log not permitted or empty: assuming the default"
            );
            rl_grammar::EXACT_MAX_LOG_DEFAULT
        }
        Ok(Err(e)) => {
            // Also how a wrong password or an untrusted TLS certificate shows
            // at start-up; decisions answer 503 until Redis accepts us.
            tracing::warn!(
                error = %e,
                "cannot use redis at start-up (decisions answer 503 until it works); \
                 assuming the default ratelimit.exact-max-log"
            );
            rl_grammar::EXACT_MAX_LOG_DEFAULT
        }
        Err(_) => {
            tracing::warn!(
                "redis did not answer CONFIG GET in time: assuming the default exact-max-log"
            );
            rl_grammar::EXACT_MAX_LOG_DEFAULT
        }
    };
    let cfg = loader.load(max_log).map_err(|e| e.to_string())?;
    AppState::new(cfg, backend).map_err(|e| format!("metrics: {e}"))
}

/// Reloads on every SIGHUP and, if configured, every `reload_interval_ms`.
/// A bad file keeps the running configuration (logged, counted in /metrics).
pub fn spawn_reloader(state: AppState, loader: Loader) {
    let interval = state.config().reload_interval;
    #[cfg(unix)]
    {
        let (state, loader) = (state.clone(), loader.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot install the SIGHUP handler: reload by SIGHUP is off");
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = state.reload(&loader);
            }
        });
    }
    if let Some(every) = interval {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let _ = state.reload(&loader);
            }
        });
    }
}

/// Serves until `shutdown` resolves, then lets open requests finish (10 s at
/// most). Each request carries its TCP peer as `ConnectInfo` for the
/// trusted-proxy check.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.config().header_read_timeout;
    let router = app(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            router.clone().oneshot(req)
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}
