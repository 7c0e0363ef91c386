//! Test harness: a real `redis-server` with the module loaded, shims (in
//! process or as the built binary), all on free 127.0.0.1 ports and killed on
//! drop.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses its own part of it
pub use rl_testkit::{free_port, module_path, wait_until, Procs, TempDir};

use api_shim::config::Config;
use api_shim::server::{serve, state_from_config};
use api_shim::AppState;

/// The Redis 7.0.15 server binary (the kit's `Flavor::Redis`).
pub fn redis_server_binary() -> PathBuf {
    rl_testkit::Flavor::Redis.binary()
}

/// A `redis-server` child process, killed on drop.
pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
    pub with_module: bool,
}

impl RedisProc {
    /// Starts Redis with the module on a free port.
    pub fn start() -> RedisProc {
        Self::start_on(free_port(), true)
    }

    /// Starts Redis on `port`; `with_module = false` gives a plain server.
    pub fn start_on(port: u16, with_module: bool) -> RedisProc {
        let mut cmd = Command::new(redis_server_binary());
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--protected-mode", "no"]);
        if with_module {
            cmd.arg("--loadmodule").arg(module_path());
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        let mut r = RedisProc {
            child: Some(child),
            port,
            with_module,
        };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(pong) = self.cmd(&["PING"]) {
                if pong == "PONG" {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("redis-server on port {} exited: {status}", self.port);
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Runs one command, answering its reply as text (for PING, GET, SET).
    pub fn cmd(&self, args: &[&str]) -> Result<String, String> {
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .map_err(|e| e.to_string())?;
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        let v: redis::Value = c.query(&mut con).map_err(|e| e.to_string())?;
        Ok(match v {
            redis::Value::SimpleString(s) => s,
            redis::Value::Okay => "OK".to_owned(),
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::Nil => String::new(),
            other => format!("{other:?}"),
        })
    }

    /// Kills the server (SIGKILL: an outage, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a fresh server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        *self = RedisProc::start_on(self.port, self.with_module);
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The prefix tests put raw-endpoint keys under.
pub const RAW_PREFIX: &str = "t:raw:";

/// Redis command timeout for test shims. A debug build sharing two loaded
/// cores with Redis, other tests and hundreds of client connections can take
/// far longer than a production timeout for one reply; a short one turns load
/// into 503s. Outages still answer fast: a killed server refuses connections.
pub const TEST_REDIS_TIMEOUT_MS: u64 = 10_000;

/// Configuration for tests, pointing at `redis_url`, with the raw endpoints
/// enabled under [`RAW_PREFIX`]; `extra` is TOML whose top-level keys come
/// before its tables.
pub fn config(redis_url: &str, extra: &str) -> Config {
    let text = format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n[redis]\nurl = \"{redis_url}\"\ntimeout_ms = {TEST_REDIS_TIMEOUT_MS}\n[raw]\nenabled = true\nkey_prefix = \"{RAW_PREFIX}\"\n"
    );
    Config::from_toml(&text, |_| None).expect("test config is valid")
}

/// Two requests per user, then 429 ([`OK_OK_DENIED`]).
pub const BURST_OF_TWO: &str =
    r#"{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.001 }"#;

/// The policy the topology and security tests share: `api`, its identity the
/// `X-User` header (a user id, believed from a trusted proxy on 127.0.0.1),
/// `limits` (the items of its free tier's array, e.g. [`BURST_OF_TWO`]), raw
/// endpoints under [`RAW_PREFIX`] and an admin token ([`ADMIN_TOKEN`]).
/// `redis` adds lines to `[redis]`; the file is loaded as the shim loads it,
/// with `env` as the environment.
pub fn user_policy(limits: &str, redis: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    let text = format!(
        r#"listen = "127.0.0.1:0"
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.api]
identity_header = "X-User"
identity_kind = "user"
default_tier = "free"
[policies.api.tiers.free]
limits = [ {limits} ]
[raw]
enabled = true
key_prefix = "{RAW_PREFIX}"
[admin]
token = "{ADMIN_TOKEN}"
[redis]
timeout_ms = {TEST_REDIS_TIMEOUT_MS}
{redis}
"#
    );
    Config::from_toml(&text, |k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .map_err(|e| e.0)
}

/// A TOML array's items: `"{scheme}://127.0.0.1:{port}"` for each port,
/// comma-separated (the seeds of `cluster = [...]`, the sentinels of
/// `nodes = [...]`).
pub fn loopback_urls(scheme: &str, ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("\"{scheme}://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many of the nodes on `ports` hold at least one key (`DBSIZE` through
/// `redis-cli` with `cli_extra`): how far a cluster spread the keys.
pub fn nodes_with_keys(ports: &[u16], cli_extra: &[String]) -> usize {
    ports
        .iter()
        .filter(|p| {
            rl_testkit::redis_cli(**p, cli_extra, &["DBSIZE"])
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                > 0
        })
        .count()
}

/// The admin token of [`user_policy`].
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The sum of the Prometheus samples on `port`'s `/metrics` whose line
/// starts with `prefix` (a metric name and the start of its labels); 0 when
/// there is none.
pub async fn metric_sum(http: &reqwest::Client, port: u16, prefix: &str) -> u64 {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A shim served in this process on a free port; stops on drop.
pub struct InProcessShim {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InProcessShim {
    pub async fn start(cfg: Config) -> InProcessShim {
        let state = state_from_config(cfg).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        tokio::spawn(async move {
            let _ = serve(st, listener, async {
                let _ = rx.await;
            })
            .await;
        });
        InProcessShim {
            addr,
            state,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for InProcessShim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The `api-shim` binary as a child process; killed on drop.
pub struct ShimProc {
    child: Child,
    pub port: u16,
    /// The configuration file it was started with (rewrite it, then SIGHUP).
    pub config_path: PathBuf,
    _dir: TempDir,
}

impl ShimProc {
    pub fn start(redis_url: &str, config_body: &str) -> ShimProc {
        let port = free_port();
        let dir = TempDir::new("shim");
        let path = dir.0.join("shim.toml");
        std::fs::write(&path, config_body).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_api-shim"))
            .arg(&path)
            .env("SHIM_LISTEN", format!("127.0.0.1:{port}"))
            .env("SHIM_REDIS_URL", redis_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn api-shim");
        let s = ShimProc {
            child,
            port,
            config_path: path,
            _dir: dir,
        };
        wait_http(&format!("http://127.0.0.1:{port}/health"));
        s
    }
}

impl ShimProc {
    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ShimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Blocks until `url` answers 200 (plain TCP + HTTP/1.0, no async runtime).
pub fn wait_http(url: &str) {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(host) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
            let mut buf = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut buf).is_ok()
                && (buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200"))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `fut` with a deadline so no test can hang the suite.
pub async fn bounded<F: std::future::Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("test exceeded {secs} s"))
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// What three checks in a row get under a two-per-window test policy.
pub const OK_OK_DENIED: [reqwest::StatusCode; 3] = [
    reqwest::StatusCode::OK,
    reqwest::StatusCode::OK,
    reqwest::StatusCode::TOO_MANY_REQUESTS,
];

/// Three `POST /v1/check/api` calls as `user` (header `X-User`): their
/// statuses, in order.
pub async fn three_checks(shim: &InProcessShim, user: &str) -> Vec<reqwest::StatusCode> {
    let http = reqwest::Client::new();
    let mut out = vec![];
    for _ in 0..3 {
        let r = http
            .post(shim.url("/v1/check/api"))
            .header("x-user", user)
            .send()
            .await
            .expect("check");
        out.push(r.status());
    }
    out
}
