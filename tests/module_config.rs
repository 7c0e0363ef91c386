//! The module's settings are real server configs on every server of the
//! matrix: `CONFIG GET/SET ratelimit.*` with the server's range check,
//! persisted by `CONFIG REWRITE`, given at load time by `MODULE LOADEX …
//! CONFIG …` or as a module argument, and a refused value never leaves a
//! half-loaded module behind.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Flavor, Server};

const CONFIG: &str = "ratelimit.exact-max-log";

fn config_get(c: &mut redis::Connection) -> i64 {
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(CONFIG)
        .query(c)
        .expect("CONFIG GET");
    assert_eq!(v.len(), 2, "CONFIG GET {CONFIG}: {v:?}");
    v[1].parse().expect("an integer")
}

fn config_set(c: &mut redis::Connection, value: &str) -> Result<(), String> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(CONFIG)
        .arg(value)
        .query::<()>(c)
        .map_err(|e| common::error_text(&e))
}

/// `MODULE <verb> <our module> <rest…>`: `words` are the verb, then what
/// follows the path.
fn module(c: &mut redis::Connection, words: &[&str]) -> Result<(), String> {
    let mut cmd = redis::cmd("MODULE");
    cmd.arg(words[0])
        .arg(common::module_path().to_string_lossy().as_ref());
    cmd.arg(&words[1..]);
    cmd.query::<()>(c).map_err(|e| common::error_text(&e))
}

fn module_loaded(c: &mut redis::Connection) -> bool {
    // Each entry: name, <name>, ver, <ver>, path, <path>, args, <args>.
    let list: Vec<Vec<redis::Value>> = redis::cmd("MODULE")
        .arg("LIST")
        .query(c)
        .expect("MODULE LIST");
    list.iter()
        .any(|entry| entry.get(1) == Some(&redis::Value::BulkString(b"ratelimit".to_vec())))
}

/// A server started from a config file, with the module loaded only if the
/// file or a later `MODULE LOAD` says so; killed on drop.
struct FromFile {
    flavor: Flavor,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl FromFile {
    fn start(flavor: Flavor, with_module: bool) -> FromFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rl-config-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let port = common::free_port();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\ndir {}\nlogfile server.log\nenable-module-command yes\n",
            dir.display()
        );
        // Redis Stack's modules first, as the matrix loads them.
        // (`--loadmodule path args…` on a command line: one line each here.)
        for word in flavor.other_modules() {
            if word == "--loadmodule" {
                conf.push_str("\nloadmodule");
            } else {
                conf.push_str(&format!(" {word}"));
            }
        }
        conf.push('\n');
        if with_module {
            conf.push_str(&format!("loadmodule {}\n", common::module_path().display()));
        }
        std::fs::write(dir.join("redis.conf"), conf).expect("write redis.conf");
        let mut s = FromFile {
            flavor,
            dir,
            port,
            child: None,
        };
        s.boot();
        s
    }

    fn conf(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.conf")).expect("redis.conf")
    }

    fn boot(&mut self) {
        let child = Command::new(self.flavor.binary())
            .arg(self.dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        self.child = Some(child);
        let url = format!("redis://127.0.0.1:{}/", self.port);
        common::wait_until(
            "server from its config file",
            Duration::from_secs(20),
            || {
                redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            },
        );
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .expect("connect")
    }

    /// `SHUTDOWN NOSAVE`, then start again from the (rewritten) file.
    fn restart(&mut self) {
        let _: redis::RedisResult<()> =
            redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut self.conn());
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.boot();
    }
}

impl Drop for FromFile {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn config_set_is_checked_and_takes_effect(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    assert_eq!(config_get(&mut c), 4096);
    // A pattern finds it too, as for the server's own configs.
    let all: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("ratelimit.*")
        .query(&mut c)
        .expect("CONFIG GET");
    let mut pairs: Vec<(String, String)> = all
        .chunks(2)
        .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            (CONFIG.to_owned(), "4096".to_owned()),
            ("ratelimit.max-leases".to_owned(), "1024".to_owned())
        ]
    );

    config_set(&mut c, "100").expect("CONFIG SET 100");
    assert_eq!(config_get(&mut c), 100);
    // An EXACT log that could hold 200 entries is now refused, pointing to APPROX.
    let e = common::err(&mut c, "RL.SLIDING k 200 60 1 EXACT");
    assert!(e.starts_with("ERR") && e.contains("APPROX"), "{e}");
    common::ok(&mut c, "RL.SLIDING k 100 60 1 EXACT");

    for (bad, why) in [
        ("0", "argument must be between 1 and 1000000 inclusive"),
        (
            "1000001",
            "argument must be between 1 and 1000000 inclusive",
        ),
        ("-5", "argument must be between 1 and 1000000 inclusive"),
        ("many", "argument couldn't be parsed into an integer"),
    ] {
        let e = config_set(&mut c, bad).expect_err(bad);
        assert!(
            e.starts_with("ERR") && e.contains(CONFIG) && e.contains(why),
            "{bad}: {e}"
        );
        assert_eq!(config_get(&mut c), 100, "{bad} changed nothing");
    }
}

fn config_rewrite_persists_across_a_restart(f: Flavor) {
    let mut s = FromFile::start(f, true);
    assert_eq!(config_get(&mut s.conn()), 4096);
    config_set(&mut s.conn(), "2048").expect("CONFIG SET");
    let _: () = redis::cmd("CONFIG")
        .arg("REWRITE")
        .query(&mut s.conn())
        .expect("CONFIG REWRITE");
    let conf = s.conf();
    assert!(
        conf.lines().any(|l| l == format!("{CONFIG} 2048")),
        "{conf}"
    );
    s.restart();
    assert_eq!(config_get(&mut s.conn()), 2048);
}

fn module_loadex_config_sets_it_and_a_bad_value_loads_nothing(f: Flavor) {
    let s = FromFile::start(f, false);
    let mut c = s.conn();
    let loadex =
        |c: &mut redis::Connection, value: &str| module(c, &["LOADEX", "CONFIG", CONFIG, value]);
    assert!(loadex(&mut c, "0").is_err());
    assert!(
        !module_loaded(&mut c),
        "a refused config left the module loaded"
    );
    loadex(&mut c, "77").expect("MODULE LOADEX … CONFIG … 77");
    assert!(module_loaded(&mut c));
    assert_eq!(config_get(&mut c), 77);
    common::ok(&mut c, "RL.SLIDING k 77 60 1 EXACT");
}

fn module_argument_sets_it_and_is_checked(f: Flavor) {
    let s = FromFile::start(f, false);
    let mut c = s.conn();
    let load =
        |c: &mut redis::Connection, value: &str| module(c, &["LOAD", "exact-max-log", value]);
    for bad in ["0", "1000001", "x"] {
        assert!(load(&mut c, bad).is_err(), "exact-max-log {bad} loaded");
        assert!(
            !module_loaded(&mut c),
            "exact-max-log {bad} left the module loaded"
        );
    }
    load(&mut c, "55").expect("MODULE LOAD … exact-max-log 55");
    assert_eq!(config_get(&mut c), 55);
}

on_both_servers!(
    config_set_is_checked_and_takes_effect,
    config_rewrite_persists_across_a_restart,
    module_loadex_config_sets_it_and_a_bad_value_loads_nothing,
    module_argument_sets_it_and_is_checked,
);
