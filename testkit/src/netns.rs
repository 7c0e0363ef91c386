//! A network lab made of Linux network namespaces, for real partitions.
//!
//! Every namespace `rlpart-<i>` gets two links:
//! - `net0` (10.231.0.<i+1>/24), a veth whose root end `rlpart<i>b` is a port
//!   of the bridge `rlpartbr` (10.231.0.254/24 in the root namespace): the
//!   network the nodes and shims talk on. A partition sets the root end down,
//!   so the namespace keeps its address and its loopback (a shim beside its
//!   master still reaches it) but nothing crosses to the bridge; healing sets
//!   it up again. (`nomaster` would leave a routed path through the root
//!   namespace whenever it forwards.)
//! - `cli0` (10.231.<10+i>.2/30, root end `rlpart<i>c` = .1): the test's own
//!   path to that namespace, never cut, so the test keeps talking to both
//!   sides (clients to the shims, `redis-cli` to the nodes) while the bridge
//!   is split. No namespace has a default route, so nothing routes between
//!   two `cli0` links.
//!
//! Every address is made here and lives only on these links; no traffic
//! leaves the machine. The lab removes its processes, namespaces and links on
//! drop, and whatever a crashed run left behind before it starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Names of everything the lab creates start with this.
const PREFIX: &str = "rlpart";
const BRIDGE: &str = "rlpartbr";

/// One namespace of the lab.
#[derive(Debug, Clone)]
pub struct Ns {
    pub name: String,
    /// Its address on the bridge (what nodes announce and shims dial).
    pub addr: String,
    /// Its address on the test's own link (reachable during a partition).
    pub admin: String,
    /// The root end of its bridge link (cut by a partition).
    port: String,
}

/// The namespaces, the bridge and every process started inside them.
pub struct Lab {
    pub ns: Vec<Ns>,
    procs: Vec<Child>,
}

/// Runs `ip` with `args`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_out(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Removes every namespace and link whose name starts with [`PREFIX`], and
/// kills the processes still inside those namespaces (ours, from a run that
/// crashed before its drop).
pub fn clean_up() {
    for line in ip_out(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with(PREFIX) {
            continue;
        }
        for pid in ip_out(&["netns", "pids", name]).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let _ = ip(&["netns", "del", name]);
    }
    for line in ip_out(&["-br", "link"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        // Veth names show as `name@peer`.
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(PREFIX) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

impl Lab {
    /// `n` namespaces on one bridge. `Err` says why the kernel (or the
    /// sandbox) refused; callers skip with that message.
    pub fn create(n: usize) -> Result<Lab, String> {
        clean_up();
        let mut lab = Lab {
            ns: vec![],
            procs: vec![],
        };
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["addr", "add", "10.231.0.254/24", "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        for i in 0..n {
            lab.ns.push(Self::add_ns(i)?);
        }
        Ok(lab)
    }

    fn add_ns(i: usize) -> Result<Ns, String> {
        let name = format!("{PREFIX}-{i}");
        let port = format!("{PREFIX}{i}b");
        let link = format!("{PREFIX}{i}c");
        let addr = format!("10.231.0.{}", i + 1);
        let admin = format!("10.231.{}.2", 10 + i);
        let n = name.as_str();
        ip(&["netns", "add", n])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "net0", "netns", n,
        ])?;
        ip(&["link", "set", &port, "master", BRIDGE, "up"])?;
        ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", "net0"])?;
        ip(&["-n", n, "link", "set", "net0", "up"])?;
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "cli0", "netns", n,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("10.231.{}.1/30", 10 + i),
            "dev",
            &link,
        ])?;
        ip(&["link", "set", &link, "up"])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{admin}/30"),
            "dev",
            "cli0",
        ])?;
        ip(&["-n", n, "link", "set", "cli0", "up"])?;
        Ok(Ns {
            name,
            addr,
            admin,
            port,
        })
    }

    /// Cuts namespace `i` from the bridge (it keeps its test link).
    pub fn partition(&self, i: usize) {
        ip(&["link", "set", &self.ns[i].port, "down"]).expect("partition");
    }

    /// Reconnects namespace `i` to the bridge.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.ns[i].port, "up"]).expect("heal");
    }

    /// Starts `program args` inside namespace `i`, its output appended to
    /// `log`; killed when the lab drops.
    pub fn spawn(
        &mut self,
        i: usize,
        program: &Path,
        args: &[String],
        envs: &[(&str, String)],
        log: &Path,
    ) {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns[i].name])
            .arg(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("ip netns exec");
        self.procs.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        clean_up();
    }
}

/// `redis-cli` against `host:port` (a lab address), its stdout.
pub fn redis_cli_at(host: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (is redis-tools installed?)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first line of `ROLE` of the Redis on `host:port`: `master` or `slave`.
pub fn role_at(host: &str, port: u16) -> String {
    redis_cli_at(host, port, &["ROLE"])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A directory for one node's files and log under `root`.
pub fn node_dir(root: &Path, what: &str) -> PathBuf {
    let d = root.join(what);
    std::fs::create_dir_all(&d).expect("node dir");
    d
}
