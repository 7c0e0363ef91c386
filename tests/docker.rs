//! The module inside the official Redis image, started with testcontainers.
//!
//! This needs a Docker engine and the `redis:7.2-bookworm` image (Debian 12,
//! the same glibc the module is built against). Without an engine, as on
//! machines that only have the Docker client, the test says so and skips.

mod common;

use std::time::Duration;

use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{GenericImage, ImageExt};

fn docker_answers() -> bool {
    std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn module_loads_in_the_redis_image() {
    if !docker_answers() {
        eprintln!("skipped: no Docker engine answers (docker version failed)");
        return;
    }
    let module = common::module_path();
    let container = GenericImage::new("redis", "7.2-bookworm")
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_mount(Mount::bind_mount(
            module.to_string_lossy().to_string(),
            "/opt/libredis_ratelimit.so",
        ))
        .with_cmd(["redis-server", "--loadmodule", "/opt/libredis_ratelimit.so"])
        .with_startup_timeout(Duration::from_secs(120))
        .start()
        .expect("start redis:7.2-bookworm with the module");
    let port = container
        .get_host_port_ipv4(6379.tcp())
        .expect("mapped port");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    let mut c = client.get_connection().expect("connect");
    common::readme_first_call(&mut c);
}
