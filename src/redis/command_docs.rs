//! What each command tells the server about itself: summary, complexity,
//! arity, key spec and the full argument tree, so `COMMAND DOCS`,
//! `COMMAND INFO`, `COMMAND GETKEYS` and redis-cli's inline hints know the
//! `RL.*` commands as well as the built-in ones.
//!
//! One table ([`DOCS`]) is the source: [`usage`] renders a command's tree as
//! the usage line the README and the arity errors show (a unit test holds it
//! to `args::USAGE_*`), and `tests/command_docs.rs` renders what every server
//! answers to `COMMAND DOCS` the same way and holds it to the README.
//!
//! `RedisModule_SetCommandInfo` exists from Redis 7.0 (and in Valkey). On a
//! server without it the commands load undocumented, exactly as before.
//! The module API has no reply schema (Redis keeps those for its own
//! commands), so the replies are documented in the summary and the README.

use std::ffi::{c_int, CStr};
use std::ptr;

use redis_module::{raw, Context};

/// What one argument is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    Key,
    Integer,
    Double,
    String,
    /// A keyword alone (`EXACT`); its `token` is the word.
    Token,
    /// Exactly one of `sub`.
    OneOf,
    /// `sub` in order: with a token, a keyword followed by its values
    /// (`TOKENBUCKET capacity rate`); without, a named group (`spec`).
    Block,
}

/// One node of a command's argument tree.
#[derive(Debug)]
pub struct Arg {
    pub name: &'static CStr,
    pub kind: ArgKind,
    pub token: Option<&'static CStr>,
    pub optional: bool,
    pub multiple: bool,
    pub sub: &'static [Arg],
}

impl Arg {
    const fn value(name: &'static CStr, kind: ArgKind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
            sub: &[],
        }
    }
    const fn word(name: &'static CStr, token: &'static CStr) -> Arg {
        Arg {
            token: Some(token),
            ..Arg::value(name, ArgKind::Token)
        }
    }
    const fn group(name: &'static CStr, kind: ArgKind, sub: &'static [Arg]) -> Arg {
        Arg {
            sub,
            ..Arg::value(name, kind)
        }
    }
    const fn after(self, token: &'static CStr) -> Arg {
        Arg {
            token: Some(token),
            ..self
        }
    }
    const fn optional(self) -> Arg {
        Arg {
            optional: true,
            ..self
        }
    }
    const fn multiple(self) -> Arg {
        Arg {
            multiple: true,
            ..self
        }
    }
}

/// How a command uses its key (`REDISMODULE_CMD_KEY_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    /// Reads the state and writes the next one (every client command).
    ReadWrite,
    /// Replaces the state with one a master computed (`RL.SETSTATE`).
    Overwrite,
    /// Edits the stored log in place (`RL.EXACTADD`).
    Update,
}

/// Everything the server learns about one command.
#[derive(Debug)]
pub struct Doc {
    pub name: &'static CStr,
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    /// Replication and AOF only: ordinary clients are refused.
    pub internal: bool,
    pub key: KeyUse,
    pub args: &'static [Arg],
}

/// The module version that brought the commands (`since`).
const SINCE: &CStr = c"0.1.0";

/// At least the key: the handlers check the rest themselves, so a wrong
/// count still answers with the command's usage line.
const ARITY: c_int = -2;

/// The reply depends on the server's clock.
const TIPS: &CStr = c"nondeterministic_output";

const KEY: Arg = Arg::value(c"key", ArgKind::Key);
const COST: Arg = Arg::value(c"cost", ArgKind::Integer);
const LIMIT: Arg = Arg::value(c"limit", ArgKind::Integer);
const WINDOW: Arg = Arg::value(c"window", ArgKind::Double);
const TTL: Arg = Arg::value(c"ttl", ArgKind::Double);
const LEASE_ID: Arg = Arg::value(c"id", ArgKind::String);
const MODE: Arg = Arg::group(
    c"mode",
    ArgKind::OneOf,
    &[
        Arg::word(c"exact", c"EXACT"),
        Arg::word(c"approx", c"APPROX"),
    ],
)
.optional();

/// `spec := [NAME name] (TOKENBUCKET … | FIXEDWINDOW … | SLIDING … | CONCURRENCY …) [COST n] [SHADOW]`
const SPEC: Arg = Arg::group(
    c"spec",
    ArgKind::Block,
    &[
        Arg::value(c"name", ArgKind::String)
            .after(c"NAME")
            .optional(),
        Arg::group(
            c"algorithm",
            ArgKind::OneOf,
            &[
                Arg::group(
                    c"tokenbucket",
                    ArgKind::Block,
                    &[
                        Arg::value(c"capacity", ArgKind::Integer),
                        Arg::value(c"rate", ArgKind::Double),
                    ],
                )
                .after(c"TOKENBUCKET"),
                Arg::group(c"fixedwindow", ArgKind::Block, &[LIMIT, WINDOW]).after(c"FIXEDWINDOW"),
                Arg::group(c"sliding", ArgKind::Block, &[LIMIT, WINDOW, MODE]).after(c"SLIDING"),
                Arg::group(c"concurrency", ArgKind::Block, &[LIMIT, TTL]).after(c"CONCURRENCY"),
            ],
        ),
        Arg::value(c"n", ArgKind::Integer).after(c"COST").optional(),
        Arg::word(c"shadow", c"SHADOW").optional(),
    ],
)
.multiple();

/// Every command the module registers, client commands first.
pub static DOCS: [Doc; 10] = [
    Doc {
        name: c"RL.TOKENBUCKET",
        summary: c"Takes cost tokens from a bucket of capacity tokens refilled at rate per second; replies allowed, limit, remaining, retry_after_ms, reset_after_ms",
        complexity: c"O(1)",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[
            KEY,
            Arg::value(c"capacity", ArgKind::Integer),
            Arg::value(c"rate", ArgKind::Double),
            COST,
        ],
    },
    Doc {
        name: c"RL.FIXEDWINDOW",
        summary: c"Counts cost against at most limit units per window of window seconds, aligned to the Unix epoch; replies allowed, limit, remaining, retry_after_ms, reset_after_ms",
        complexity: c"O(1)",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[KEY, LIMIT, WINDOW, COST],
    },
    Doc {
        name: c"RL.SLIDING",
        summary: c"Counts cost against at most limit units in any trailing window of window seconds, EXACT (a log) or APPROX (two counters); replies allowed, limit, remaining, retry_after_ms, reset_after_ms",
        complexity: c"O(1) with APPROX; with EXACT O(N), N the log entries that leave the window",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[KEY, LIMIT, WINDOW, COST, MODE],
    },
    Doc {
        name: c"RL.LIMITS",
        summary: c"Several limits on one key, all or nothing: granted only if every non-SHADOW limit grants, else nothing is consumed; replies the binding limit's five fields, binding, limits",
        complexity: c"O(L) for L limits, plus O(N) per EXACT log as in RL.SLIDING",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[KEY, COST, SPEC],
    },
    Doc {
        name: c"RL.ACQUIRE",
        summary: c"Takes n slots (COST, default 1) if at most limit are then held, as a lease that expires by itself after ttl seconds; replies the five fields, the lease id and its expiry (Unix ms)",
        complexity: c"O(L), L the leases held",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[
            KEY,
            LIMIT,
            TTL,
            Arg::value(c"id", ArgKind::String).after(c"ID").optional(),
            Arg::value(c"n", ArgKind::Integer).after(c"COST").optional(),
        ],
    },
    Doc {
        name: c"RL.RELEASE",
        summary: c"Frees a lease: 1 freed, 0 unknown or expired (never an error)",
        complexity: c"O(L), L the leases held",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[KEY, LEASE_ID],
    },
    Doc {
        name: c"RL.RENEW",
        summary: c"Extends a held lease to expire ttl seconds from now: 1 renewed, 0 unknown or expired (an expired lease is not renewed)",
        complexity: c"O(L), L the leases held",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[KEY, LEASE_ID, TTL],
    },
    Doc {
        name: c"CL.THROTTLE",
        summary: c"redis-cell's command: a bucket of max_burst + 1 tokens refilled at count per period seconds; replies limited, limit, remaining, retry_after_s, reset_after_s",
        complexity: c"O(1)",
        internal: false,
        key: KeyUse::ReadWrite,
        args: &[
            KEY,
            Arg::value(c"max_burst", ArgKind::Integer),
            Arg::value(c"count", ArgKind::Integer),
            Arg::value(c"period", ArgKind::Double),
            Arg::value(c"quantity", ArgKind::Integer).optional(),
        ],
    },
    Doc {
        name: c"RL.SETSTATE",
        summary: c"Internal (replication and AOF only; ordinary clients are refused): stores a limiter state a master computed, with its absolute expiry",
        complexity: c"O(N), N the size of the state",
        internal: true,
        key: KeyUse::Overwrite,
        args: &[
            KEY,
            Arg::value(c"payload", ArgKind::String),
            Arg::value(c"at_ms", ArgKind::Integer).optional(),
        ],
    },
    Doc {
        name: c"RL.EXACTADD",
        summary: c"Internal (replication and AOF only; ordinary clients are refused): applies a grant on an EXACT log as its master made it",
        complexity: c"O(N), N the log entries that leave the window",
        internal: true,
        key: KeyUse::Update,
        args: &[
            KEY,
            Arg::value(c"keep_from_ms", ArgKind::Integer),
            Arg::value(c"ts_ms", ArgKind::Integer),
            Arg::value(c"units", ArgKind::Integer),
            Arg::value(c"len", ArgKind::Integer),
            Arg::value(c"total", ArgKind::Integer),
            Arg::value(c"at_ms", ArgKind::Integer),
        ],
    },
];

fn text(s: &CStr) -> std::borrow::Cow<'_, str> {
    s.to_string_lossy()
}

/// A command's usage as the README writes it: the command line, then one
/// `name := …` line per named group (`spec`).
pub fn usage(doc: &Doc) -> String {
    let mut defs = Vec::new();
    let mut line = text(doc.name).into_owned();
    for a in doc.args {
        line.push(' ');
        line.push_str(&render(a, &mut defs));
    }
    for d in defs {
        line.push('\n');
        line.push_str(&d);
    }
    line
}

/// One argument in usage syntax: `[…]` optional, `x [x ...]` repeated,
/// `a|b` between words, `(a | b)` between groups; a named group (a block
/// without a token) shows its name and is defined on a line of its own.
fn render(a: &Arg, defs: &mut Vec<String>) -> String {
    let name = text(a.name);
    let body = match a.kind {
        ArgKind::Token => text(a.token.unwrap_or(a.name)).into_owned(),
        ArgKind::OneOf => {
            let alts: Vec<String> = a.sub.iter().map(|s| render(s, defs)).collect();
            if alts.iter().all(|s| !s.contains(' ')) {
                alts.join("|")
            } else if a.optional {
                alts.join(" | ")
            } else {
                format!("({})", alts.join(" | "))
            }
        }
        ArgKind::Block if a.token.is_none() => {
            let parts: Vec<String> = a.sub.iter().map(|s| render(s, defs)).collect();
            defs.insert(0, format!("{name} := {}", parts.join(" ")));
            name.into_owned()
        }
        ArgKind::Block => {
            let parts: Vec<String> = a.sub.iter().map(|s| render(s, defs)).collect();
            parts.join(" ")
        }
        _ => name.into_owned(),
    };
    let body = match (a.kind, a.token) {
        (ArgKind::Token, _) | (_, None) => body,
        (_, Some(t)) => format!("{} {body}", text(t)),
    };
    match (a.optional, a.multiple) {
        (true, _) => format!("[{body}]"),
        (false, true) => format!("{body} [{body} ...]"),
        (false, false) => body,
    }
}

fn arg_type(kind: ArgKind) -> raw::RedisModuleCommandArgType {
    match kind {
        ArgKind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
        ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
        ArgKind::Double => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
        ArgKind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        ArgKind::Token => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
        ArgKind::OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
        ArgKind::Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
    }
}

fn opt(s: Option<&'static CStr>) -> *const std::ffi::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// The all-zero entry that ends every C array the server reads.
fn arg_end() -> raw::RedisModuleCommandArg {
    // SAFETY: a plain C struct of pointers and integers; all-zero is its
    // documented terminator (NULL name).
    unsafe { std::mem::zeroed() }
}

/// Lays `args` out as a terminated C array in `store` (which keeps every
/// level alive until the server has copied them) and returns its address.
fn raw_args(
    args: &[Arg],
    store: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
) -> *mut raw::RedisModuleCommandArg {
    let mut level = Vec::with_capacity(args.len() + 1);
    for a in args {
        let subargs = if a.sub.is_empty() {
            ptr::null_mut()
        } else {
            raw_args(a.sub, store)
        };
        let mut flags = raw::REDISMODULE_CMD_ARG_NONE;
        if a.optional {
            flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
        }
        if a.multiple {
            flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
        }
        level.push(raw::RedisModuleCommandArg {
            name: a.name.as_ptr(),
            type_: arg_type(a.kind),
            // The only key is the first argument, the command's only key spec.
            key_spec_index: if a.kind == ArgKind::Key { 0 } else { -1 },
            token: opt(a.token),
            summary: ptr::null(),
            since: ptr::null(),
            flags: c_int::try_from(flags).unwrap_or(0),
            deprecated_since: ptr::null(),
            subargs,
            display_text: ptr::null(),
        });
    }
    level.push(arg_end());
    // The Vec's buffer does not move when `store` grows.
    let at = level.as_mut_ptr();
    store.push(level);
    at
}

/// The key spec of every command: one key, the first argument.
fn key_specs(key: KeyUse) -> [raw::RedisModuleCommandKeySpec; 2] {
    let flags = match key {
        KeyUse::ReadWrite => {
            raw::REDISMODULE_CMD_KEY_RW
                | raw::REDISMODULE_CMD_KEY_ACCESS
                | raw::REDISMODULE_CMD_KEY_UPDATE
        }
        KeyUse::Overwrite => raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE,
        KeyUse::Update => raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE,
    };
    // SAFETY: as for `arg_end`: the zeroed spec ends the array.
    let mut spec: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
    spec.flags = u64::from(flags);
    spec.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    spec.bs.index.pos = 1;
    spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
    spec.fk.range = raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
        lastkey: 0,
        keystep: 1,
        limit: 0,
    };
    // SAFETY: as above.
    [spec, unsafe { std::mem::zeroed() }]
}

static INFO_VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Gives the server every command's documentation. Called from `OnLoad`
/// after the commands exist. A server without `RedisModule_SetCommandInfo`
/// (before 7.0) keeps the commands undocumented; a server that refuses a
/// command's docs logs it and keeps the command (the docs test fails).
pub fn document(ctx: &Context) {
    // SAFETY: the API table is filled once by RedisModule_Init, before
    // OnLoad runs on the main thread; it is only read here.
    let api = unsafe { (raw::RedisModule_SetCommandInfo, raw::RedisModule_GetCommand) };
    let (Some(set_info), Some(get)) = api else {
        ctx.log_notice(
            "ratelimit: this server has no RedisModule_SetCommandInfo; COMMAND DOCS stays empty",
        );
        return;
    };
    for doc in &DOCS {
        // SAFETY: called from OnLoad with the module's context; the name is
        // 'static.
        let cmd = unsafe { get(ctx.ctx, doc.name.as_ptr()) };
        if cmd.is_null() {
            ctx.log_warning(&format!("ratelimit: no command {:?} to document", doc.name));
            continue;
        }
        let mut store = Vec::new();
        let args = raw_args(doc.args, &mut store);
        let mut specs = key_specs(doc.key);
        let info = raw::RedisModuleCommandInfo {
            version: &INFO_VERSION,
            summary: doc.summary.as_ptr(),
            complexity: doc.complexity.as_ptr(),
            since: SINCE.as_ptr(),
            history: ptr::null_mut(),
            tips: if doc.internal {
                ptr::null()
            } else {
                TIPS.as_ptr()
            },
            arity: ARITY,
            key_specs: specs.as_mut_ptr(),
            args,
        };
        // SAFETY: `info` and everything it points to (statics, `specs`,
        // `store`) outlive the call; the server copies what it keeps.
        let set = unsafe { set_info(cmd, &info) };
        if set != raw::REDISMODULE_OK as c_int {
            ctx.log_warning(&format!(
                "ratelimit: the server refused the docs of {:?}",
                doc.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::args;

    fn doc(name: &str) -> &'static Doc {
        DOCS.iter()
            .find(|d| d.name.to_str() == Ok(name))
            .unwrap_or_else(|| panic!("no docs for {name}"))
    }

    #[test]
    fn usage_lines_are_the_ones_arity_errors_show() {
        for (name, line) in [
            ("RL.TOKENBUCKET", args::USAGE_TOKENBUCKET),
            ("RL.FIXEDWINDOW", args::USAGE_FIXEDWINDOW),
            ("RL.SLIDING", args::USAGE_SLIDING),
            ("CL.THROTTLE", args::USAGE_THROTTLE),
            ("RL.ACQUIRE", rl_grammar::USAGE_ACQUIRE),
            ("RL.RELEASE", rl_grammar::USAGE_RELEASE),
            ("RL.RENEW", rl_grammar::USAGE_RENEW),
        ] {
            assert_eq!(usage(doc(name)), line);
        }
    }

    #[test]
    fn limits_usage_defines_spec_on_its_own_line() {
        let u = usage(doc("RL.LIMITS"));
        assert_eq!(
            u,
            "RL.LIMITS key cost spec [spec ...]\n\
             spec := [NAME name] (TOKENBUCKET capacity rate | FIXEDWINDOW limit window | SLIDING limit window [EXACT|APPROX] | CONCURRENCY limit ttl) [COST n] [SHADOW]"
        );
        // The arity error's one-line form says the same.
        let first = u.lines().next().unwrap_or_default();
        assert!(rl_grammar::USAGE_LIMITS.starts_with(first));
        for part in [
            "[NAME name]",
            "TOKENBUCKET capacity rate",
            "FIXEDWINDOW limit window",
            "SLIDING limit window [EXACT|APPROX]",
            "CONCURRENCY limit ttl",
            "[COST n]",
            "[SHADOW]",
        ] {
            assert!(rl_grammar::USAGE_LIMITS.contains(part), "{part}");
        }
    }

    #[test]
    fn every_command_documents_its_key_first_and_internal_ones_say_so() {
        for d in &DOCS {
            assert_eq!(
                d.args.first().map(|a| a.kind),
                Some(ArgKind::Key),
                "{:?}",
                d.name
            );
            let internal = d.summary.to_string_lossy().starts_with("Internal");
            assert_eq!(internal, d.internal, "{:?}", d.name);
        }
    }

    #[test]
    fn raw_tree_is_terminated_at_every_level() {
        let mut store = Vec::new();
        let root = raw_args(doc("RL.LIMITS").args, &mut store);
        // key, cost, spec + end; spec: name, algorithm, COST, SHADOW + end;
        // algorithm: four blocks + end; four blocks' own levels; MODE.
        assert_eq!(store.len(), 8);
        assert_eq!(store.last().map(|l| l.as_ptr()), Some(root.cast_const()));
        for level in &store {
            assert!(level.last().is_some_and(|a| a.name.is_null()));
        }
    }
}
