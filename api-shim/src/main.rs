//! `api-shim [CONFIG.toml]` — or set `SHIM_CONFIG`. See README.md.
//! SIGHUP reloads the configuration (and its API-key file); a bad one is
//! refused and the running one kept.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::ExitCode;

use api_shim::config::Loader;
use api_shim::server::{serve, spawn_reloader, start};
use tracing_subscriber::EnvFilter;

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // JSON lines for log shippers unless a human asked for text.
    if std::env::var("SHIM_LOG_FORMAT").is_ok_and(|v| v == "text") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    }
}

fn config_path() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    match (args.next(), args.next()) {
        (Some(flag), Some(p)) if flag == "--config" || flag == "-c" => Ok(Some(p.into())),
        (Some(flag), None) if flag == "--help" || flag == "-h" => {
            Err("usage: api-shim [--config] CONFIG.toml   (or SHIM_CONFIG=…)".to_owned())
        }
        (Some(p), None) => Ok(Some(p.into())),
        (None, _) => Ok(std::env::var_os("SHIM_CONFIG").map(PathBuf::from)),
        _ => Err("usage: api-shim [--config] CONFIG.toml   (or SHIM_CONFIG=…)".to_owned()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let path = match config_path() {
        Ok(p) => p,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    if path.is_none() {
        tracing::warn!("no configuration file given: defaults and SHIM_* variables only");
    }
    let loader = Loader::new(path, |k| std::env::var(k).ok());
    let state = match start(&loader).await {
        Ok(s) => s,
        Err(e) => {
            // Also on stderr in plain text: this is what an operator reads.
            eprintln!("api-shim: {e}");
            tracing::error!(error = %e, "refusing to start");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    let listen = state.config().listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("api-shim: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    spawn_reloader(state.clone(), loader);
    tracing::info!(%listen, "api-shim listening");
    match serve(state, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-shim: server error: {e}");
            ExitCode::from(1)
        }
    }
}
