use std::time::Duration;

use super::*;
use crate::backend::SystemMode;

fn no_env(_: &str) -> Option<String> {
    None
}

const GOOD: &str = r#"
listen = "127.0.0.1:9000"
[redis]
url = "redis://127.0.0.1:6379"
[admin]
token = "0123456789abcdef"
[identity]
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
[api_keys]
"key-pro" = "pro"
[policies.api]
identity_header = "X-API-Key"
default_tier = "free"
[policies.api.tiers.free]
limits = [
  { name = "second", algorithm = "tokenbucket", capacity = 5, rate = 5 },
  { name = "day", algorithm = "fixedwindow", limit = 1000, window = 86400 },
]
degraded_limits = [
  { name = "second", algorithm = "tokenbucket", capacity = 1, rate = 0.5 },
  { name = "minute", algorithm = "sliding", limit = 10, window = 60, mode = "approx" },
]
[policies.api.tiers.pro]
limits = [{ name = "second", algorithm = "tokenbucket", capacity = 50, rate = 50 }]
"#;

fn error_of(text: &str) -> String {
    match Config::from_toml(text, no_env) {
        Ok(_) => String::from("<accepted>"),
        Err(e) => e.to_string(),
    }
}

fn names(calls: &[LimitCall]) -> Vec<(String, bool)> {
    calls.iter().map(|c| (c.name.clone(), c.shadow())).collect()
}

#[test]
fn shipped_configs_are_valid_and_keep_raw_endpoints_off() {
    for (file, text) in [
        (
            "config.example.toml",
            include_str!("../../config.example.toml"),
        ),
        (
            "docker/shim.toml",
            include_str!("../../../docker/shim.toml"),
        ),
    ] {
        let cfg =
            Config::from_toml(text, no_env).unwrap_or_else(|e| panic!("{file} must be valid: {e}"));
        assert!(!cfg.raw_enabled, "{file} must not enable the raw endpoints");
    }
}

#[test]
fn tiers_send_the_same_named_limits_in_both_modes() {
    let cfg = Config::from_toml(GOOD, no_env).expect("GOOD parses");
    let free = &cfg.policies["api"].tiers["free"];
    // NORMAL: the normal limits, plus the degraded-only name as SHADOW.
    assert_eq!(
        names(free.calls(SystemMode::Normal)),
        [
            ("second".to_owned(), false),
            ("day".to_owned(), false),
            ("minute".to_owned(), true)
        ]
    );
    // DEGRADED: `second` overridden by name, `day` still in force.
    let degraded = free.calls(SystemMode::Degraded);
    assert_eq!(
        names(degraded),
        [
            ("second".to_owned(), false),
            ("day".to_owned(), false),
            ("minute".to_owned(), false)
        ]
    );
    assert_eq!(
        degraded[0].words(),
        ["NAME", "second", "TOKENBUCKET", "1", "0.5"]
    );
    // pro defines no degraded limits: the same calls in both modes.
    let pro = &cfg.policies["api"].tiers["pro"];
    assert_eq!(
        pro.calls(SystemMode::Normal),
        pro.calls(SystemMode::Degraded)
    );
    assert_eq!(cfg.trusted_proxies.len(), 2);
    assert_eq!(cfg.redis_timeout, Duration::from_millis(250));
    assert_eq!(cfg.policy_key("api", "ip:1.2.3.4"), "rl:{api:ip:1.2.3.4}");
}

#[test]
fn a_limit_keeps_its_algorithm_across_modes() {
    let bad = GOOD.replace(
        r#"{ name = "second", algorithm = "tokenbucket", capacity = 1, rate = 0.5 }"#,
        r#"{ name = "second", algorithm = "fixedwindow", limit = 1, window = 1 }"#,
    );
    let e = error_of(&bad);
    assert!(
        e.contains("policies.api.tiers.free.degraded_limits[0]") && e.contains("algorithm"),
        "{e}"
    );
    let exact_vs_approx = GOOD
        .replace(
            r#"{ name = "day", algorithm = "fixedwindow", limit = 1000, window = 86400 }"#,
            r#"{ name = "day", algorithm = "sliding", limit = 1000, window = 86400, mode = "approx" }"#,
        )
        .replace(
            r#"{ name = "minute", algorithm = "sliding", limit = 10, window = 60, mode = "approx" }"#,
            r#"{ name = "day", algorithm = "sliding", limit = 10, window = 60 }"#,
        );
    assert!(error_of(&exact_vs_approx).contains("degraded_limits[1]"));
}

/// Defect 3: values the module refuses must stop the shim at start-up, with
/// the field named and the module's own reason.
#[test]
fn limits_the_module_refuses_do_not_load() {
    let cases = [
        (
            GOOD.replace(
                "limit = 1000, window = 86400",
                "limit = 1000, window = 0.0005",
            ),
            "policies.api.tiers.free.limits[1].window",
        ),
        (
            GOOD.replace(
                "capacity = 5, rate = 5",
                "capacity = 5, rate = 0.0000000001",
            ),
            "policies.api.tiers.free.limits[0].rate",
        ),
        (
            GOOD.replace(
                r#"limit = 10, window = 60, mode = "approx""#,
                r#"limit = 100000, window = 60, mode = "exact""#,
            ),
            "policies.api.tiers.free.degraded_limits[1].limit",
        ),
        (
            GOOD.replace("capacity = 5, rate = 5", "capacity = 5.5, rate = 5"),
            "policies.api.tiers.free.limits[0].capacity",
        ),
        (
            GOOD.replace("capacity = 5, rate = 5", "capacity = 0, rate = 5"),
            "policies.api.tiers.free.limits[0].capacity",
        ),
        (
            GOOD.replace(
                "capacity = 5, rate = 5",
                "capacity = 9223372036854775807, rate = 5",
            ),
            "policies.api.tiers.free.limits[0].capacity",
        ),
    ];
    for (text, field) in cases {
        let e = error_of(&text);
        assert!(e.contains(field), "want {field}: {e}");
        assert!(!e.contains("ERR "), "the Redis code is dropped: {e}");
    }
    // The server's own exact-max-log is honoured both ways.
    let big = GOOD.replace(
        r#"limit = 10, window = 60, mode = "approx""#,
        r#"limit = 100000, window = 60, mode = "exact""#,
    );
    assert!(Config::from_toml_in(&big, no_env, std::path::Path::new(""), 1_000_000).is_ok());
    let exact = GOOD.replace(r#"mode = "approx""#, r#"mode = "exact""#);
    assert!(Config::from_toml_in(&exact, no_env, std::path::Path::new(""), 10).is_ok());
    assert!(Config::from_toml_in(&exact, no_env, std::path::Path::new(""), 5).is_err());
}

#[test]
fn errors_name_the_bad_field() {
    let bad_rate = GOOD.replace("capacity = 5, rate = 5", "capacity = 5, rate = 0");
    assert!(
        error_of(&bad_rate).contains("policies.api.tiers.free.limits[0].rate"),
        "{}",
        error_of(&bad_rate)
    );
    let missing = GOOD.replace(", capacity = 50", "");
    assert!(error_of(&missing).contains("policies.api.tiers.pro.limits[0].capacity is required"));
    let typo = GOOD.replace("default_tier = \"free\"", "default_tier = \"fre\"");
    assert!(error_of(&typo).contains("policies.api.default_tier"));
    let unknown = format!("{GOOD}\n[bogus]\nx = 1\n");
    assert!(
        error_of(&unknown).contains("bogus"),
        "{}",
        error_of(&unknown)
    );
    let proxy = GOOD.replace("10.0.0.0/8", "10.0.0.0/99");
    assert!(error_of(&proxy).contains("identity.trusted_proxies[1]"));
    let both = GOOD.replace("[redis]\n", "[redis]\ncluster = [\"redis://a:1\"]\n");
    assert!(error_of(&both).contains("only one of"));
    let tier = GOOD.replace("\"key-pro\" = \"pro\"", "\"key-pro\" = \"gold\"");
    let e = error_of(&tier);
    assert!(e.contains("api_keys") && !e.contains("key-pro"), "{e}");
    let kind = GOOD.replace(
        "identity_header = \"X-API-Key\"",
        "identity_header = \"X-API-Key\"\nidentity_kind = \"robot\"",
    );
    assert!(error_of(&kind).contains("policies.api.identity_kind"));
}

/// Defect 1: raw keys can never land on policy keys or the mode key.
#[test]
fn raw_endpoints_are_off_by_default_and_confined_to_a_disjoint_prefix() {
    let cfg = Config::from_toml(GOOD, no_env).expect("GOOD parses");
    assert!(!cfg.raw_enabled);
    let with = |raw: &str| format!("{GOOD}\n[raw]\nenabled = true\n{raw}\n");
    let cfg = Config::from_toml(&with(""), no_env).expect("default prefix");
    assert_eq!(cfg.raw_key_prefix, "raw:");
    for bad in ["", "r", "rl:", "rl:{", "rl:{api", "ratelimit:"] {
        let e = error_of(&with(&format!("key_prefix = \"{bad}\"")));
        assert!(e.contains("raw.key_prefix"), "prefix `{bad}` accepted: {e}");
    }
    assert!(Config::from_toml(&with("key_prefix = \"rl:raw:\""), no_env).is_ok());
}

#[test]
fn user_identities_need_trusted_proxies() {
    let user = GOOD.replace(
        "identity_header = \"X-API-Key\"",
        "identity_header = \"X-User\"\nidentity_kind = \"user\"",
    );
    let cfg = Config::from_toml(&user, no_env).expect("user kind");
    assert_eq!(cfg.policies["api"].identity_kind, IdentityKind::User);
    let untrusted = user.replace(r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]"#, "");
    assert!(error_of(&untrusted).contains("trusted_proxies"));
}

#[test]
fn api_keys_may_come_from_their_own_file() {
    let dir = std::env::temp_dir().join(format!("shim-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("keys.json"), r#"{"json-key-0001": "pro"}"#).expect("write");
    std::fs::write(dir.join("keys.toml"), "\"toml-key-0001\" = \"pro\"\n").expect("write");
    for file in ["keys.json", "keys.toml"] {
        let text = format!("api_keys_file = \"{file}\"\n{GOOD}");
        let cfg = Config::from_toml_in(&text, no_env, &dir, 4096).expect("keys file");
        assert_eq!(cfg.api_keys.len(), 2, "{file}");
    }
    let missing = format!("api_keys_file = \"nope.json\"\n{GOOD}");
    let e = Config::from_toml_in(&missing, no_env, &dir, 4096)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("api_keys_file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn env_overrides_win() {
    let env = |k: &str| match k {
        "SHIM_REDIS_CLUSTER" => Some("redis://a:7000, redis://b:7000".to_owned()),
        "SHIM_LISTEN" => Some("0.0.0.0:1234".to_owned()),
        "SHIM_FAIL_OPEN" => Some("true".to_owned()),
        _ => None,
    };
    let cfg = Config::from_toml(GOOD, env).expect("GOOD parses");
    assert_eq!(
        cfg.redis,
        RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7000".into()])
    );
    assert_eq!(cfg.listen.port(), 1234);
    assert!(cfg.fail_open);
}

#[test]
fn empty_env_values_are_ignored() {
    let env = |k: &str| match k {
        "SHIM_ADMIN_TOKEN" | "SHIM_REDIS_URL" => Some(String::new()),
        _ => None,
    };
    let cfg = Config::from_toml(GOOD, env).expect("GOOD parses");
    assert_eq!(cfg.admin_token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(
        cfg.redis,
        RedisTarget::Standalone("redis://127.0.0.1:6379".into())
    );
}

/// GOOD with its `[redis]` table replaced by `redis` (a `[redis]` table).
fn with_redis(redis: &str) -> String {
    GOOD.replace("[redis]\nurl = \"redis://127.0.0.1:6379\"\n", redis)
}

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn credentials_come_from_the_environment_or_a_file_and_never_twice() {
    let url = "[redis]\nurl = \"redis://127.0.0.1:6379\"\n";
    let cfg = Config::from_toml(
        &with_redis(&format!("{url}username = \"shim\"\n")),
        env_of(&[("SHIM_REDIS_PASSWORD", "pw")]),
    )
    .expect("env password");
    assert_eq!(cfg.redis_auth.username.as_deref(), Some("shim"));
    assert_eq!(cfg.redis_auth.password.as_deref(), Some("pw"));
    assert!(
        !format!("{cfg:?}").contains("\"pw\""),
        "Debug prints no password"
    );

    // In the TOML itself a password is refused: only a file or the env.
    assert!(error_of(&with_redis(&format!("{url}password = \"pw\"\n"))).contains("password"));
    assert!(
        error_of(&with_redis(&format!("{url}username = \"shim\"\n")))
            .contains("redis.username needs a password")
    );
    let both = Config::from_toml(
        &with_redis(&format!("{url}password_file = \"/nonexistent\"\n")),
        env_of(&[("SHIM_REDIS_PASSWORD", "pw")]),
    )
    .expect_err("file and env");
    assert!(both.0.contains("both set"), "{}", both.0);
    assert!(error_of(&with_redis(&format!(
        "{url}password_file = \"/nonexistent/pw\"\n"
    )))
    .contains("redis.password_file: cannot read /nonexistent/pw"));
    let twice = Config::from_toml(
        &with_redis("[redis]\nurl = \"redis://:a@127.0.0.1:6379\"\n"),
        env_of(&[("SHIM_REDIS_PASSWORD", "pw")]),
    )
    .expect_err("URL and env");
    assert!(twice.0.contains("carries a password"), "{}", twice.0);
    assert!(!twice.0.contains(":a@"), "the URL's password is not echoed");

    let sentinel = "[redis.sentinel]\nmaster = \"m\"\nnodes = [\"redis://127.0.0.1:26379\"]\n";
    let cfg = Config::from_toml(
        &with_redis(&format!("{sentinel}username = \"sentinel-user\"\n")),
        env_of(&[
            ("SHIM_SENTINEL_PASSWORD", "spw"),
            ("SHIM_REDIS_PASSWORD", "mpw"),
        ]),
    )
    .expect("sentinel credentials");
    assert_eq!(cfg.sentinel_auth.password.as_deref(), Some("spw"));
    assert_eq!(cfg.sentinel_auth.username.as_deref(), Some("sentinel-user"));
    assert_eq!(cfg.redis_auth.password.as_deref(), Some("mpw"));
    let stray = Config::from_toml(GOOD, env_of(&[("SHIM_SENTINEL_PASSWORD", "spw")]))
        .expect_err("no sentinel configured");
    assert!(stray.0.contains("SHIM_SENTINEL_PASSWORD"), "{}", stray.0);
}

#[test]
fn rediss_is_accepted_and_tls_settings_are_checked() {
    let cfg = Config::from_toml(
        &with_redis("[redis]\nurl = \"rediss://cache.example:6380\"\n"),
        no_env,
    )
    .expect("rediss");
    assert_eq!(
        cfg.redis,
        RedisTarget::Standalone("rediss://cache.example:6380".into())
    );
    assert!(cfg.tls_ca.is_none());
    assert!(error_of(&with_redis(
        "[redis]\nurl = \"rediss://cache.example:6380/#insecure\"\n"
    ))
    .contains("would skip the certificate check"));
    assert!(error_of(&with_redis(
        "[redis]\ncluster = [\"rediss://a:1\", \"redis://b:1\"]\n"
    ))
    .contains("redis.cluster: mixes rediss:// and redis://"));
    assert!(error_of(&with_redis(
        "[redis]\nurl = \"redis://a:1\"\ntls_ca_file = \"ca.pem\"\n"
    ))
    .contains("no Redis URL uses rediss://"));
    assert!(error_of(&with_redis(
        "[redis]\nurl = \"rediss://a:1\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n"
    ))
    .contains("redis.tls_ca_file: /nonexistent/ca.pem: cannot read"));
}

/// Identity rules (issue #15): identity_query, require_identity and
/// anonymous_tier are checked at start-up, each error naming its field.
#[test]
fn identity_rules_are_validated_at_start_up() {
    let base = |policy_extra: &str, top: &str| {
        format!(
            "{top}\n[policies.api]\ndefault_tier = \"free\"\n{policy_extra}\n[policies.api.tiers.free]\nlimits = [{{ name = \"s\", algorithm = \"tokenbucket\", capacity = 5, rate = 5 }}]\n[policies.api.tiers.anon]\nlimits = [{{ name = \"s\", algorithm = \"tokenbucket\", capacity = 1, rate = 1 }}]\n"
        )
    };
    let trusted = "[identity]\ntrusted_proxies = [\"127.0.0.1\"]";
    let ok = Config::from_toml(
        &base(
            "identity_query = \"user_id\"\nidentity_kind = \"user\"\nanonymous_tier = \"anon\"",
            trusted,
        ),
        no_env,
    )
    .expect("valid");
    let p = &cfg_policy(&ok);
    assert_eq!(p.identity_query.as_deref(), Some("user_id"));
    assert_eq!(p.anonymous_tier, "anon");
    assert!(!p.require_identity);
    // Without anonymous_tier, address-based callers get the default tier.
    let ok = Config::from_toml(&base("", ""), no_env).expect("valid");
    assert_eq!(cfg_policy(&ok).anonymous_tier, "free");

    for (extra, top, want) in [
        (
            "anonymous_tier = \"gold\"",
            "",
            "policies.api.anonymous_tier `gold` is not one of its tiers",
        ),
        (
            "identity_query = \"user_id\"\nidentity_header = \"X-API-Key\"",
            "",
            "policies.api: set one of identity_header and identity_query, not both",
        ),
        (
            "identity_query = \"cost\"",
            "",
            "policies.api.identity_query must be",
        ),
        (
            "identity_query = \"user id\"",
            "",
            "policies.api.identity_query must be",
        ),
        (
            "require_identity = true",
            "",
            "policies.api.require_identity needs identity_header or identity_query",
        ),
        (
            "identity_kind = \"user\"",
            trusted,
            "policies.api.identity_kind = \"user\" needs identity_header or identity_query",
        ),
        (
            "identity_query = \"user_id\"\nidentity_kind = \"user\"",
            "",
            "needs identity.trusted_proxies",
        ),
        (
            "identity_query = \"k\"\nreject_unknown_keys = true\nanonymous_tier = \"anon\"",
            "",
            "anonymous_tier never applies with reject_unknown_keys",
        ),
        (
            "identity_query = \"user_id\"\nidentity_kind = \"user\"\nrequire_identity = true\nanonymous_tier = \"anon\"",
            trusted,
            "anonymous_tier never applies with require_identity",
        ),
        ("require_identity = \"yes\"", "", "invalid type"),
    ] {
        let e = error_of(&base(extra, top));
        assert!(e.contains(want), "{extra}: {e}");
    }
}

fn cfg_policy(cfg: &Config) -> Policy {
    cfg.policies["api"].clone()
}
