//! Documentation that cannot drift: every fenced shell block that follows a
//! `<!-- doctest -->` line in README.md and api-shim/README.md is run
//! literally, from the repository root, and must work. (Blocks marked
//! `<!-- doctest: nginx -->` are scripts run whole by api-shim/tests/nginx.rs.)
//!
//! How a marked block runs:
//! - Ports: each documented port (6379, 6380, 8080, 8081, 8088, 9000) is
//!   replaced in the block's text by a free one, and the same free ports are
//!   exported as `PORT` and `SHIM_PORT` (scripts/run.sh), `SHIM_REDIS_URL` and
//!   `SHIM_LISTEN` (the shim), so nothing touches a server of yours.
//!   `RUN_DIR` points `make run`/`make stop` at a scratch directory.
//! - Commands (lines; `\` continues one, `#` comments are skipped) run one
//!   after the other with `bash -c`. Each must exit 0, or keep running and
//!   listen on a TCP port: a server started in the foreground (`cargo run` of
//!   the shim, `nginx -g 'daemon off;'`) keeps running and the next command
//!   follows. Everything a block started is killed when it ends.
//! - Checks: an HTTP status line a command prints (`curl -i`) must be below
//!   500; when the next fenced block after a marked one is a transcript (lines
//!   `$ command` followed by its output), each of its commands must be in the
//!   marked block (compared without `-p <port>`) and have printed the values
//!   the transcript shows (`1) (integer) 10` is redis-cli's `10`).

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

const MARKER: &str = "<!-- doctest -->";
/// Ports the READMEs use: Redis, another Redis, two shims, Nginx, the app.
const DOCUMENTED_PORTS: [u16; 6] = [6379, 6380, 8080, 8081, 8088, 9000];
/// A command may build in release mode (fat LTO) on a loaded machine.
const COMMAND_LIMIT: Duration = Duration::from_secs(30 * 60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Block {
    /// "README.md:12"
    at: String,
    text: String,
    /// The transcript fence right after it, if any.
    transcript: Option<String>,
}

/// The fenced block starting at `lines[i]` (a ``` line): its body and the
/// index after its closing fence.
fn fence_at(lines: &[&str], i: usize) -> Option<(String, usize)> {
    if !lines.get(i)?.trim_start().starts_with("```") {
        return None;
    }
    let end = (i + 1..lines.len()).find(|&j| lines[j].trim_start().starts_with("```"))?;
    Some((lines[i + 1..end].join("\n"), end + 1))
}

fn marked_blocks(file: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join(file)).expect("read README");
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != MARKER {
            continue;
        }
        let start = (i + 1..lines.len())
            .find(|&j| !lines[j].trim().is_empty())
            .unwrap_or(lines.len());
        let (body, after) = fence_at(&lines, start)
            .unwrap_or_else(|| panic!("{file}:{}: {MARKER} is not followed by a fence", i + 1));
        let next = (after..lines.len()).find(|&j| lines[j].trim_start().starts_with("```"));
        let transcript = next
            .and_then(|j| fence_at(&lines, j))
            .map(|(t, _)| t)
            .filter(|t| t.trim_start().starts_with("$ "));
        blocks.push(Block {
            at: format!("{file}:{}", start + 1),
            text: body,
            transcript,
        });
    }
    blocks
}

/// Replaces `from` by `to` where it stands as a whole number.
fn replace_port(text: &str, from: u16, to: u16) -> String {
    let (from, to) = (from.to_string(), to.to_string());
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let whole = text[i..].starts_with(&from)
            && (i == 0 || !bytes[i - 1].is_ascii_digit())
            && !bytes
                .get(i + from.len())
                .is_some_and(|b| b.is_ascii_digit());
        if whole {
            out.push_str(&to);
            i += from.len();
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The block's commands: continuation lines joined, comments and blanks dropped.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head.trim_end());
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Inodes of listening TCP sockets.
fn listening_inodes() -> HashSet<u64> {
    let mut set = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" {
                if let Ok(inode) = f[9].parse() {
                    set.insert(inode);
                }
            }
        }
    }
    set
}

/// Whether a process of group `pgid` listens on a TCP port.
fn group_listens(pgid: u32) -> bool {
    let listening = listening_inodes();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        let path = p.path();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp ...
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(path.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let t = target.to_string_lossy();
            if let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            {
                if listening.contains(&inode) {
                    return true;
                }
            }
        }
    }
    false
}

struct Ran {
    command: String,
    log: PathBuf,
}

impl Ran {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Everything one block started; killed (process groups) and stopped
/// (`make stop` with the block's RUN_DIR) on drop, even when a check fails.
struct Session {
    groups: Vec<Child>,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("scripts/stop.sh")
            .current_dir(repo())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for c in &mut self.groups {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_block(block: &Block) {
    let ports: HashMap<u16, u16> = DOCUMENTED_PORTS
        .iter()
        .map(|&p| (p, common::free_port()))
        .collect();
    let subst = |text: &str| {
        DOCUMENTED_PORTS
            .iter()
            .fold(text.to_string(), |t, p| replace_port(&t, *p, ports[p]))
    };
    let dir = std::env::temp_dir().join(format!(
        "rl-doctest-{}-{}",
        std::process::id(),
        ports[&6379]
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let env = vec![
        ("PORT".to_string(), ports[&6379].to_string()),
        ("SHIM_PORT".to_string(), ports[&8080].to_string()),
        (
            "SHIM_REDIS_URL".to_string(),
            format!("redis://127.0.0.1:{}/", ports[&6379]),
        ),
        (
            "SHIM_LISTEN".to_string(),
            format!("127.0.0.1:{}", ports[&8080]),
        ),
        ("RUN_DIR".to_string(), dir.join("run").display().to_string()),
    ];
    let mut session = Session {
        groups: Vec::new(),
        env: env.clone(),
        dir: dir.clone(),
    };
    let mut ran = Vec::new();
    for (n, command) in commands(&subst(&block.text)).into_iter().enumerate() {
        let log = dir.join(format!("{n}.out"));
        let out = File::create(&log).expect("log file");
        let child = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .current_dir(repo())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("bash");
        let pgid = child.id();
        session.groups.push(child);
        let started = Instant::now();
        let child = session.groups.last_mut().expect("just pushed");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(
                    status.success(),
                    "{}: `{command}` failed ({status}):\n{output}",
                    block.at
                );
                break;
            }
            if group_listens(pgid) {
                break; // a server in the foreground: it keeps running
            }
            assert!(
                started.elapsed() < COMMAND_LIMIT,
                "{}: `{command}` neither ended nor listened in {COMMAND_LIMIT:?}",
                block.at
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Read at the end: a server keeps appending to its log.
        ran.push(Ran { command, log });
    }

    for r in &ran {
        let output = r.output();
        for status in output
            .lines()
            .filter(|l| l.starts_with("HTTP/"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u16>().ok())
        {
            assert!(
                status < 500,
                "{}: `{}` answered {status}:\n{output}",
                block.at,
                r.command
            );
        }
    }
    if let Some(t) = &block.transcript {
        check_transcript(block, &subst(t), &ran);
    }
}

/// A command without its `-p <port>` option, words single-spaced.
fn without_port(command: &str) -> String {
    let mut words = Vec::new();
    let mut it = command.split_whitespace();
    while let Some(w) = it.next() {
        if w == "-p" {
            it.next();
        } else {
            words.push(w);
        }
    }
    words.join(" ")
}

/// The value a transcript line shows: `1) (integer) 10` -> `10`.
fn shown_value(line: &str) -> String {
    let mut v = line.trim();
    if let Some((n, rest)) = v.split_once(") ") {
        if n.chars().all(|c| c.is_ascii_digit()) {
            v = rest;
        }
    }
    v.trim_start_matches("(integer) ")
        .trim_matches('"')
        .to_string()
}

fn check_transcript(block: &Block, transcript: &str, ran: &[Ran]) {
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    for line in transcript.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            entries.push((cmd.to_string(), Vec::new()));
        } else if let Some((_, shown)) = entries.last_mut() {
            if !line.trim().is_empty() {
                shown.push(shown_value(line));
            }
        }
    }
    for (cmd, shown) in entries {
        let r = ran
            .iter()
            .find(|r| without_port(&r.command) == without_port(&cmd))
            .unwrap_or_else(|| {
                panic!(
                    "{}: the transcript's `{cmd}` is not in the marked block",
                    block.at
                )
            });
        let printed: Vec<String> = r
            .output()
            .lines()
            .map(shown_value)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            printed, shown,
            "{}: `{cmd}` printed other values than the README shows",
            block.at
        );
    }
}

fn run_marked_blocks(file: &str) {
    let blocks = marked_blocks(file);
    assert!(!blocks.is_empty(), "{file} has no {MARKER} block");
    for b in &blocks {
        run_block(b);
    }
}

#[test]
fn readme_marked_blocks_run_as_documented() {
    run_marked_blocks("README.md");
}

#[test]
fn api_shim_readme_marked_blocks_run_as_documented() {
    run_marked_blocks("api-shim/README.md");
}

#[test]
fn the_quick_start_has_a_transcript_and_a_wrong_value_fails_it() {
    let blocks = marked_blocks("README.md");
    let quick = &blocks[0];
    let transcript = quick
        .transcript
        .as_deref()
        .expect("the quick start is followed by a transcript");
    let cmd = transcript
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("$ "))
        .expect("$ command");
    let shown: Vec<String> = transcript.lines().skip(1).map(shown_value).collect();
    // What redis-cli prints without a terminal: one raw value per line.
    let log = std::env::temp_dir().join(format!("rl-doctest-unit-{}", std::process::id()));
    let ran = |output: String| {
        std::fs::write(&log, output).expect("write log");
        vec![Ran {
            command: cmd.replace("6379", "7001"),
            log: log.clone(),
        }]
    };
    check_transcript(quick, transcript, &ran(shown.join("\n")));
    let mut wrong = shown.clone();
    wrong[2] = "8".to_string();
    let caught = std::panic::catch_unwind(|| {
        check_transcript(quick, transcript, &ran(wrong.join("\n")));
    });
    let _ = std::fs::remove_file(&log);
    assert!(caught.is_err(), "a different remaining must fail the check");
}

#[test]
fn ports_are_replaced_only_as_whole_numbers() {
    assert_eq!(
        replace_port("-p 6379 :6379/ 63790 16379 6379", 6379, 7001),
        "-p 7001 :7001/ 63790 16379 7001"
    );
    assert_eq!(replace_port("6379", 6379, 7001), "7001");
    assert_eq!(
        without_port("redis-cli -p 7001 RL.TOKENBUCKET  user:1 10 1 1"),
        "redis-cli RL.TOKENBUCKET user:1 10 1 1"
    );
    assert_eq!(shown_value("1) (integer) 10"), "10");
    assert_eq!(
        commands("# c\nredis-server --port 1 \\\n  --save '' &\n\ncurl x # y\n"),
        vec!["redis-server --port 1 --save '' &", "curl x # y"]
    );
}
