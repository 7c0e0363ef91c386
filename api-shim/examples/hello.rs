//! A bare axum "hello world", the baseline (and the protected app behind
//! Nginx) for `bench/shim.sh`.
//!
//! ```sh
//! cargo run --release -p api-shim --example hello -- 127.0.0.1:8090
//! ```

use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    // Every path and method: it also stands in for the app behind Nginx.
    let app = Router::new().fallback(|| async { "hello" });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hello listening on {addr}");
    axum::serve(listener, app).await
}
