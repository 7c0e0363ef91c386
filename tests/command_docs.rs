//! Every command documents itself to the server (`COMMAND DOCS`, `COMMAND
//! INFO`, `COMMAND GETKEYS`, redis-cli's hints), on every server of the
//! matrix, and the argument tree the server answers is the README's usage
//! line: what the server says is rendered in the README's syntax and
//! compared line for line.

mod common;

use std::collections::BTreeMap;

use common::{Flavor, Server};
use redis::Value;

/// The client commands and the README heading each usage block follows.
const CLIENT_COMMANDS: [&str; 8] = [
    "RL.TOKENBUCKET",
    "RL.FIXEDWINDOW",
    "RL.SLIDING",
    "RL.LIMITS",
    "RL.ACQUIRE",
    "RL.RELEASE",
    "RL.RENEW",
    "CL.THROTTLE",
];
const INTERNAL_COMMANDS: [&str; 2] = ["RL.SETSTATE", "RL.EXACTADD"];

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => s.clone(),
        Value::Int(i) => i.to_string(),
        other => panic!("not text: {other:?}"),
    }
}

fn list(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        other => panic!("not a list: {other:?}"),
    }
}

/// A RESP2 flat `[name, value, …]` array or a RESP3 map, by name.
fn fields(v: &Value) -> BTreeMap<String, &Value> {
    match v {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v)).collect(),
        _ => list(v).chunks(2).map(|kv| (text(&kv[0]), &kv[1])).collect(),
    }
}

/// One argument as the server documents it.
struct Arg {
    name: String,
    kind: String,
    token: Option<String>,
    optional: bool,
    multiple: bool,
    sub: Vec<Arg>,
}

fn arg(v: &Value) -> Arg {
    let f = fields(v);
    let flags: Vec<String> = f
        .get("flags")
        .map_or(Vec::new(), |v| list(v).iter().map(text).collect());
    Arg {
        name: text(f["name"]),
        kind: text(f["type"]),
        token: f.get("token").map(|v| text(v)),
        optional: flags.iter().any(|x| x == "optional"),
        multiple: flags.iter().any(|x| x == "multiple"),
        sub: f
            .get("arguments")
            .map_or(Vec::new(), |v| list(v).iter().map(arg).collect()),
    }
}

/// The README's usage syntax: `[…]` optional, `x [x ...]` repeated, `a|b`
/// between words, `(a | b)` between groups, a group without a token shown by
/// name and defined on its own `name := …` line.
fn render(a: &Arg, defs: &mut Vec<String>) -> String {
    let subs =
        |defs: &mut Vec<String>| -> Vec<String> { a.sub.iter().map(|s| render(s, defs)).collect() };
    let body = match (a.kind.as_str(), &a.token) {
        ("pure-token", Some(t)) => t.clone(),
        ("oneof", _) => {
            let alts = subs(defs);
            if alts.iter().all(|s| !s.contains(' ')) {
                alts.join("|")
            } else if a.optional {
                alts.join(" | ")
            } else {
                format!("({})", alts.join(" | "))
            }
        }
        ("block", None) => {
            let def = format!("{} := {}", a.name, subs(defs).join(" "));
            defs.insert(0, def);
            a.name.clone()
        }
        ("block", Some(t)) => format!("{t} {}", subs(defs).join(" ")),
        (_, Some(t)) => format!("{t} {}", a.name),
        (_, None) => a.name.clone(),
    };
    match (a.optional, a.multiple) {
        (true, _) => format!("[{body}]"),
        (false, true) => format!("{body} [{body} ...]"),
        (false, false) => body,
    }
}

/// `COMMAND DOCS name`: the command's fields.
fn docs(c: &mut redis::Connection, name: &str) -> Value {
    let reply: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg(name)
        .query(c)
        .expect("COMMAND DOCS");
    let all = fields(&reply);
    let (_, doc) = all
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("COMMAND DOCS {name} is empty: {reply:?}"));
    doc.clone()
}

/// The command's usage as the server documents it, in the README's syntax.
fn served_usage(c: &mut redis::Connection, name: &str) -> String {
    let doc = docs(c, name);
    let f = fields(&doc);
    let args: Vec<Arg> = list(
        f.get("arguments")
            .unwrap_or_else(|| panic!("{name} documents no arguments")),
    )
    .iter()
    .map(arg)
    .collect();
    let mut defs = Vec::new();
    let mut line = name.to_string();
    for a in &args {
        line.push(' ');
        line.push_str(&render(a, &mut defs));
    }
    for d in defs {
        line.push('\n');
        line.push_str(&d);
    }
    line
}

/// The README's usage block of a command: the fenced line that starts with
/// the command's name, and the `name := …` lines after it in that block.
fn readme_usage(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let at = lines
        .windows(2)
        .position(|w| w[0] == "```" && w[1].starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("README has no usage block for {name}"));
    let mut usage = vec![lines[at + 1]];
    usage.extend(
        lines[at + 2..]
            .iter()
            .take_while(|l| **l != "```")
            .filter(|l| l.contains(" := ")),
    );
    usage.join("\n")
}

fn command_docs_are_the_readme_usage(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    for name in CLIENT_COMMANDS {
        assert_eq!(served_usage(&mut c, name), readme_usage(name), "{f:?}");
        let doc = docs(&mut c, name);
        let d = fields(&doc);
        for field in ["summary", "since", "complexity"] {
            let v = d.get(field).map(|v| text(v)).unwrap_or_default();
            assert!(!v.is_empty(), "{name} has no {field} on {f:?}");
        }
        assert_eq!(
            d.get("module").map(|v| text(v)).as_deref(),
            Some("ratelimit")
        );
        // The key is an argument of type key, tied to the key spec.
        let key = fields(&list(d["arguments"])[0])
            .into_iter()
            .map(|(k, v)| (k, text_or_list(v)))
            .collect::<BTreeMap<_, _>>();
        assert_eq!(key.get("type").map(String::as_str), Some("key"), "{name}");
        assert_eq!(
            key.get("key_spec_index").map(String::as_str),
            Some("0"),
            "{name}"
        );
    }
}

fn text_or_list(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Set(_) | Value::Map(_) => format!("{v:?}"),
        _ => text(v),
    }
}

fn internal_commands_say_so(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    for name in INTERNAL_COMMANDS {
        let doc = docs(&mut c, name);
        let summary = text(fields(&doc)["summary"]);
        assert!(summary.starts_with("Internal"), "{name}: {summary}");
        assert!(served_usage(&mut c, name).starts_with(&format!("{name} key ")));
    }
}

fn command_info_and_getkeys(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    for name in CLIENT_COMMANDS.iter().chain(&INTERNAL_COMMANDS) {
        let info: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(*name)
            .query(&mut c)
            .expect("COMMAND INFO");
        let entry = list(&list(&info)[0]);
        // name, arity, flags, first key, last key, step, ACL categories,
        // tips, key specs, subcommands.
        assert_eq!(text(&entry[1]), "-2", "{name} arity on {f:?}");
        let flags: Vec<String> = list(&entry[2]).iter().map(text).collect();
        // Client commands: `write deny-oom fast`; the internal ones `write`.
        let wanted: &[&str] = if INTERNAL_COMMANDS.contains(name) {
            &["write"]
        } else {
            &["write", "denyoom", "fast"]
        };
        for flag in wanted {
            assert!(flags.contains(&flag.to_string()), "{name} flags {flags:?}");
        }
        let keys: Vec<String> = entry[3..6].iter().map(text).collect();
        assert_eq!(keys, ["1", "1", "1"], "{name} key positions on {f:?}");
        let specs = list(&entry[8]);
        assert_eq!(specs.len(), 1, "{name} key specs on {f:?}");
        let spec_flags: Vec<String> = list(fields(&specs[0])["flags"]).iter().map(text).collect();
        assert!(
            spec_flags.contains(&"RW".to_string()) || spec_flags.contains(&"OW".to_string()),
            "{name} key spec flags {spec_flags:?}"
        );
    }
    for line in [
        "COMMAND GETKEYS RL.TOKENBUCKET user:1 10 1 1",
        "COMMAND GETKEYS RL.SLIDING user:1 10 1 1 APPROX",
        "COMMAND GETKEYS RL.LIMITS user:1 1 NAME burst TOKENBUCKET 2 0.5 NAME day FIXEDWINDOW 1000 86400",
        "COMMAND GETKEYS CL.THROTTLE user:1 15 30 60",
    ] {
        let keys: Vec<String> = common::cmd(line).query(&mut c).expect(line);
        assert_eq!(keys, ["user:1"], "{line} on {f:?}");
    }
    // The server checks "at least a key" itself; the handlers still answer a
    // short call with the usage line.
    let e = common::err(&mut c, "RL.TOKENBUCKET tb 10 1");
    assert!(
        e.contains("usage RL.TOKENBUCKET key capacity rate cost"),
        "{e}"
    );
    assert!(common::err(&mut c, "RL.TOKENBUCKET").starts_with("ERR wrong number of arguments"));
}

/// `INFO ratelimit` shows exactly the fields the README's table lists.
fn info_fields_are_the_readme_table(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let info: String = redis::cmd("INFO")
        .arg("ratelimit")
        .query(&mut c)
        .expect("INFO");
    let served: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| {
            assert!(
                value.trim().parse::<u64>().is_ok(),
                "{name}:{value} is not an integer"
            );
            name
        })
        .collect();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `ratelimit_"))
        .filter_map(|l| l.split_once('`'))
        .map(|(rest, _)| rest)
        .collect();
    let served: Vec<String> = served
        .iter()
        .map(|n| n.trim_start_matches("ratelimit_").to_string())
        .collect();
    assert_eq!(served, documented, "{f:?}");
}

on_both_servers!(
    info_fields_are_the_readme_table,
    command_docs_are_the_readme_usage,
    internal_commands_say_so,
    command_info_and_getkeys
);
