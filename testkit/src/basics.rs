//! The kit's basic pieces, which the topologies build on: the module's path,
//! free ports, waits, processes killed on drop, temp dirs, `redis-cli`, and
//! readers of `INFO`-style text.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `target/<profile>/`, where cargo builds the libraries and examples of the
/// running test binary (which lives in its `deps/`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("test binary lives in target/<profile>/deps")
}

/// The module to load: `RL_MODULE`, else `libredis_ratelimit.so` in
/// [`profile_dir`].
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RL_MODULE") {
        return PathBuf::from(p);
    }
    let so = profile_dir().join("libredis_ratelimit.so");
    assert!(
        so.exists(),
        "module not built at {}: run `cargo build` at the workspace root (or set RL_MODULE)",
        so.display()
    );
    so
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A free port whose cluster bus port (+10000) is free as well.
pub fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// Polls `f` until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Child processes killed (and reaped) on drop.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(fresh_dir(tag))
    }
}

/// A new, empty directory `rl-<tag>-<pid>-<n>` under the system temp dir,
/// unique within this process. [`TempDir`] and [`Server`] remove it, each on
/// its own terms.
pub(crate) fn fresh_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "rl-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create temp dir");
    p
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `redis-cli` on `port` with `extra` (TLS, `--user`/`--pass`) before
/// `args`: its standard output, then its standard error.
pub fn redis_cli(port: u16, extra: &[String], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--no-auth-warning",
        ])
        .args(extra)
        .args(args)
        .output()
        .expect("redis-cli (is redis-tools installed?)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first line of `ROLE` on `port`: `master`, `slave` or `sentinel`.
pub fn role(port: u16) -> String {
    redis_cli(port, &[], &["ROLE"])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A field of `INFO`/`SENTINEL MASTER`-style text (`name:value` lines or
/// alternating name/value lines).
pub fn field(text: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(v) = l.strip_prefix(&format!("{name}:")) {
            return Some(v.trim().to_owned());
        }
        if *l == name {
            return lines.get(i + 1).map(|v| v.trim().to_owned());
        }
    }
    None
}

/// One `INFO` section as text; empty when the server does not answer.
pub fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(c).unwrap_or_default()
}

/// An integer field of an `INFO` section.
pub fn info_int(c: &mut redis::Connection, section: &str, field_name: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg(section).query(c).expect("INFO");
    field(&info, field_name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field_name} not in INFO {section}"))
}
