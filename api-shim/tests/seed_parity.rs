//! What users of the seed systems rely on (docs/http.md), against a
//! real `redis-server` with the module: GET decisions, the status read,
//! identity rules, Unix `X-RateLimit-Reset`, `retry_after`, the mode in
//! `/ready` and the mode-change reply, metrics labels and the decision log,
//! and `/docs`.

mod common;

use std::time::Duration;

use common::{bounded, config, header, InProcessShim, RedisProc};
use reqwest::StatusCode;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

const ONE_POLICY: &str = r#"
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 3, rate = 0.001 }]
"#;

/// GET answers wherever POST does for decisions, and takes from the same
/// bucket: `/v1/check/{policy}`, the raw endpoints (enabled in tests) and the
/// auth_request endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_decides_like_post_on_check_raw_and_auth() {
    bounded(60, async {
        let redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), ONE_POLICY)).await;
        let http = client();
        let check = shim.url("/v1/check/api");
        let r = http.get(&check).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("2"));
        let r = http.post(&check).send().await.expect("send");
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("1"), "one bucket");
        let r = http
            .get(shim.url("/v1/auth/api"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));
        let r = http.get(&check).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(header(&r, "retry-after").is_some());

        for (path, limit) in [
            ("/v1/tokenbucket/g?capacity=2&rate=0.001", "2"),
            ("/v1/fixedwindow/g?limit=2&window=3600", "2"),
            ("/v1/sliding/g?limit=2&window=3600&mode=approx", "2"),
        ] {
            let url = shim.url(path);
            let r = http.get(&url).send().await.expect("send");
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, "x-ratelimit-limit"), Some(limit));
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some("1"));
            let r = http.post(&url).send().await.expect("send");
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"), "{path}");
            let r = http.get(&url).send().await.expect("send");
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
            // Each kind keeps its own key (the three share the name `g`, so
            // the next would be WRONGTYPE): clear it.
            redis.cmd(&["DEL", "t:raw:g"]).expect("DEL");
        }
    })
    .await;
}

/// Raw endpoints stay off by default, for GET as for POST.
#[tokio::test]
async fn raw_endpoints_stay_off_by_default_for_get() {
    let cfg = api_shim::config::Config::from_toml(ONE_POLICY, |_| None).expect("config");
    let state = api_shim::AppState::new(
        cfg,
        std::sync::Arc::new(api_shim::backend::fake::FakeBackend::new()),
    )
    .expect("state");
    use tower::ServiceExt;
    for method in ["GET", "POST"] {
        let req = axum::http::Request::builder()
            .method(method)
            .uri("/v1/tokenbucket/k?capacity=1&rate=1")
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = api_shim::app(state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        assert_eq!(resp.status(), axum::http::StatusCode::NOT_FOUND, "{method}");
    }
}

const TWO_LIMITS: &str = r#"
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [
  { name = "burst", algorithm = "tokenbucket", capacity = 5, rate = 0.001 },
  { name = "hour", algorithm = "fixedwindow", limit = 3, window = 3600 },
]
"#;

/// `rdb_changes_since_last_save`: every write dirties the dataset.
fn dirty(redis: &RedisProc) -> String {
    let info = redis.cmd(&["INFO", "persistence"]).expect("INFO");
    info.lines()
        .find(|l| l.starts_with("rdb_changes_since_last_save:"))
        .expect("dirty counter")
        .to_owned()
}

/// `GET /v1/status/{policy}` reads without consuming: no key created for a
/// new caller, the stored state byte-for-byte unchanged (DUMP) and nothing
/// dirtied for a known one, never 429 when exhausted, and a decision's headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_without_writing_and_never_429s() {
    bounded(60, async {
        let redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), TWO_LIMITS)).await;
        let http = client();
        let status = shim.url("/v1/status/api");
        let key = "rl:{api:ip:127.0.0.1}";

        let before = dirty(&redis);
        let r = http.get(&status).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-tier"), Some("free"));
        assert_eq!(header(&r, "x-system-health"), Some("NORMAL"));
        assert_eq!(
            header(&r, "ratelimit-policy"),
            Some("\"burst\";q=5;w=5000, \"hour\";q=3;w=3600")
        );
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["binding"], "hour", "{body}");
        assert_eq!(body["remaining"], 3, "{body}");
        assert_eq!(body["limits"][0]["name"], "burst");
        assert_eq!(body["limits"][0]["remaining"], 5);
        assert_eq!(body["limits"][0]["limit"], 5);
        assert_eq!(body["limits"][1]["remaining"], 3);
        assert_eq!(body["tier"], "free");
        assert_eq!(body["mode"], "NORMAL");
        assert_eq!(redis.cmd(&["EXISTS", key]).expect("EXISTS"), "int(0)");
        assert_eq!(dirty(&redis), before, "a status read writes nothing");

        // Exhaust the hour limit.
        for _ in 0..3 {
            let r = http
                .post(shim.url("/v1/check/api"))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), StatusCode::OK);
        }
        let dump = redis.cmd(&["DUMP", key]).expect("DUMP");
        assert!(!dump.is_empty());
        let before = dirty(&redis);
        for _ in 0..3 {
            let r = http.get(&status).send().await.expect("send");
            assert_eq!(r.status(), StatusCode::OK, "never 429");
            assert_eq!(header(&r, "x-ratelimit-limit"), Some("3"));
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));
            assert_eq!(header(&r, "retry-after"), None);
            assert!(header(&r, "ratelimit").is_some_and(|v| v.contains("\"hour\";r=0;")));
            let body: serde_json::Value = r.json().await.expect("json");
            assert_eq!(body["binding"], "hour");
            assert_eq!(body["remaining"], 0);
            assert_eq!(body["limits"][0]["remaining"], 2, "{body}");
        }
        assert_eq!(
            redis.cmd(&["DUMP", key]).expect("DUMP"),
            dump,
            "state unchanged"
        );
        assert_eq!(dirty(&redis), before, "nothing dirtied");
        // The decision still denies: the status read gave nothing back.
        let r = http
            .post(shim.url("/v1/check/api"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

        // A status read takes no cost.
        let r = http
            .get(format!("{status}?cost=1"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = http
            .get(shim.url("/v1/status/nope"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

/// Policies with the identity in a query parameter: `user` ids (believed
/// from trusted proxies only), API keys, `require_identity` and
/// `anonymous_tier`. `trusted` is the `trusted_proxies` list.
fn identity_policies(trusted: &str) -> String {
    format!(
        r#"
[identity]
trusted_proxies = [{trusted}]
[api_keys]
"key-pro-0001" = "pro"
[policies.users]
identity_query = "user_id"
identity_kind = "user"
default_tier = "member"
anonymous_tier = "anon"
[policies.users.tiers.member]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.001 }}]
[policies.users.tiers.anon]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 1, rate = 0.001 }}]
[policies.strict]
identity_query = "user_id"
identity_kind = "user"
require_identity = true
default_tier = "member"
[policies.strict.tiers.member]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.001 }}]
[policies.keys]
identity_query = "api_key"
require_identity = true
default_tier = "free"
anonymous_tier = "anon"
[policies.keys.tiers.free]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 3, rate = 0.001 }}]
[policies.keys.tiers.anon]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 1, rate = 0.001 }}]
[policies.keys.tiers.pro]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 10, rate = 0.001 }}]
"#
    )
}

async fn get(http: &reqwest::Client, url: String) -> reqwest::Response {
    http.get(url).send().await.expect("send")
}

async fn problem_detail(r: reqwest::Response) -> String {
    assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
    let body: serde_json::Value = r.json().await.expect("json");
    body["detail"].as_str().expect("detail").to_owned()
}

/// identity_query with identity_kind = "user" from a trusted peer: each
/// `?user_id=` is its own bucket; callers without one are counted by address
/// in `anonymous_tier`; `require_identity` refuses a missing id with a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_user_ids_from_a_trusted_peer_get_their_own_buckets() {
    bounded(60, async {
        let redis = RedisProc::start();
        let cfg = config(&redis.url(), &identity_policies("\"127.0.0.1\""));
        let shim = InProcessShim::start(cfg).await;
        let http = client();
        let u = |q: &str| shim.url(&format!("/v1/check/users{q}"));
        for want in ["1", "0"] {
            let r = get(&http, u("?user_id=alice")).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(header(&r, "x-ratelimit-tier"), Some("member"));
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some(want));
        }
        assert_eq!(
            get(&http, u("?user_id=alice")).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let r = get(&http, u("?user_id=bob")).await;
        assert_eq!(r.status(), StatusCode::OK, "bob has his own bucket");
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("1"));
        // The status read takes the same parameter.
        let r = get(&http, shim.url("/v1/status/users?user_id=alice")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));
        // No id: the address, in the anonymous tier.
        let r = get(&http, u("")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-tier"), Some("anon"));
        assert_eq!(header(&r, "x-ratelimit-limit"), Some("1"));
        assert_eq!(
            get(&http, u("")).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // Ids are hashed into the key; the address stands for anonymous callers.
        let keys = redis.cmd(&["KEYS", "rl:{users:*"]).expect("KEYS");
        assert_eq!(keys.matches("rl:{users:u:").count(), 2, "{keys}");
        assert!(keys.contains("rl:{users:ip:127.0.0.1}"), "{keys}");
        assert!(
            !keys.contains("alice"),
            "ids are not stored verbatim: {keys}"
        );
        // Given twice: refused, never first- or last-wins.
        let r = get(&http, u("?user_id=alice&user_id=carol")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // require_identity: a missing (or empty) id is a 400 that says what to send.
        for q in ["", "?user_id="] {
            let r = get(&http, shim.url(&format!("/v1/check/strict{q}"))).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
            let detail = problem_detail(r).await;
            assert_eq!(
                detail, "this policy requires an identity in query parameter `user_id`",
                "{q}"
            );
        }
        let r = get(&http, shim.url("/v1/status/strict")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "status too");
        let r = get(&http, shim.url("/v1/check/strict?user_id=alice")).await;
        assert_eq!(r.status(), StatusCode::OK);

        // API keys in a query parameter: a known key selects its tier, an
        // unknown one counts as the address in the anonymous tier, none is a
        // 400 with require_identity.
        let r = get(&http, shim.url("/v1/check/keys?api_key=key-pro-0001")).await;
        assert_eq!(header(&r, "x-ratelimit-tier"), Some("pro"));
        assert_eq!(header(&r, "x-ratelimit-limit"), Some("10"));
        for k in ["fresh-1", "fresh-2"] {
            let r = get(&http, shim.url(&format!("/v1/check/keys?api_key={k}"))).await;
            assert_eq!(header(&r, "x-ratelimit-tier"), Some("anon"), "{k}");
            if k == "fresh-2" {
                assert_eq!(
                    r.status(),
                    StatusCode::TOO_MANY_REQUESTS,
                    "a fresh unknown key per request gains nothing"
                );
            }
        }
        let r = get(&http, shim.url("/v1/check/keys")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            problem_detail(r).await,
            "this policy requires an identity in query parameter `api_key`"
        );
    })
    .await;
}

/// Secure by default: a stranger (a peer not in trusted_proxies) cannot pick
/// an identity with `?user_id=`, neither a fresh bucket per request nor
/// someone else's; with require_identity its ids are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_user_ids_from_a_stranger_are_not_believed() {
    bounded(60, async {
        let redis = RedisProc::start();
        let cfg = config(&redis.url(), &identity_policies("\"10.9.9.9\""));
        let shim = InProcessShim::start(cfg).await;
        let http = client();
        let r = get(&http, shim.url("/v1/check/users?user_id=u1")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-tier"), Some("anon"));
        let r = get(&http, shim.url("/v1/check/users?user_id=u2")).await;
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "a new id does not give a new bucket"
        );
        let keys = redis.cmd(&["KEYS", "rl:*"]).expect("KEYS");
        assert!(!keys.contains(":u:"), "no user key was made: {keys}");
        let r = get(&http, shim.url("/v1/check/strict?user_id=alice")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            problem_detail(r).await,
            "this policy requires an identity in query parameter `user_id`; a user id is accepted only through a trusted proxy"
        );
    })
    .await;
}

/// A configuration naming a tier the policy does not define refuses to start
/// (the real binary, exit code 78 = EX_CONFIG, the field named on stderr).
#[test]
fn unknown_anonymous_tier_refuses_to_start() {
    let dir = common::TempDir::new("anon-tier");
    let path = dir.0.join("shim.toml");
    std::fs::write(
        &path,
        "[policies.api]\ndefault_tier = \"free\"\nanonymous_tier = \"guest\"\n[policies.api.tiers.free]\nlimits = [{ name = \"b\", algorithm = \"tokenbucket\", capacity = 1, rate = 1 }]\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_api-shim"))
        .arg(&path)
        .env("SHIM_LISTEN", format!("127.0.0.1:{}", common::free_port()))
        .env("SHIM_REDIS_URL", "redis://127.0.0.1:1/")
        .output()
        .expect("run api-shim");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policies.api.anonymous_tier `guest` is not one of its tiers"),
        "{stderr}"
    );
}

fn unix_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(d.as_secs()).expect("secs")
}

/// `X-RateLimit-Reset` is a Unix time in seconds by default and seconds from
/// now with `http.x_ratelimit_reset = "delta"`; the IETF `t` is a delta in
/// both. Checked against the module's own `reset_after_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_ratelimit_reset_is_unix_by_default_and_delta_on_request() {
    bounded(60, async {
        let redis = RedisProc::start();
        let policy = r#"
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ name = "hour", algorithm = "fixedwindow", limit = 5, window = 3600 }]
"#;
        let http = client();
        for (style, extra) in [
            ("unix", policy.to_owned()),
            (
                "delta",
                format!("[http]\nx_ratelimit_reset = \"delta\"\n{policy}"),
            ),
        ] {
            redis.cmd(&["FLUSHALL"]).expect("FLUSHALL");
            let shim = InProcessShim::start(config(&redis.url(), &extra)).await;
            let before = unix_now();
            let r = get(&http, shim.url("/v1/check/api")).await;
            let after = unix_now();
            assert_eq!(r.status(), StatusCode::OK);
            let reset: i64 = header(&r, "x-ratelimit-reset")
                .and_then(|v| v.parse().ok())
                .expect("whole seconds");
            let t: i64 = header(&r, "ratelimit")
                .and_then(|v| v.rsplit("t=").next()?.parse().ok())
                .expect("t");
            let body: serde_json::Value = r.json().await.expect("json");
            let reset_ms = body["reset_after_ms"].as_i64().expect("reset_after_ms");
            let delta = (reset_ms + 999) / 1000;
            assert_eq!(t, delta, "{style}: the IETF t is always a delta");
            match style {
                "unix" => assert!(
                    (before + delta..=after + delta + 1).contains(&reset),
                    "{reset} not within [{before}, {after}] + {delta}"
                ),
                _ => assert_eq!(reset, delta),
            }
        }
    })
    .await;
}

/// 429 problem+json bodies carry `retry_after` (whole seconds, rounded up,
/// equal to `Retry-After`) beside `retry_after_ms`; -1 when waiting cannot
/// help (and then no `Retry-After`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_carry_retry_after_in_whole_seconds_beside_the_ms() {
    bounded(60, async {
        let redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), ONE_POLICY)).await;
        let http = client();
        let ok = get(&http, shim.url("/v1/check/api")).await;
        let body: serde_json::Value = ok.json().await.expect("json");
        assert_eq!(body["retry_after"], 0, "allowed: {body}");
        for _ in 0..2 {
            get(&http, shim.url("/v1/check/api")).await;
        }
        for url in [
            shim.url("/v1/check/api"),
            // 1 token per 2.5 s: 2500 ms -> 3 s, rounded up.
            shim.url("/v1/tokenbucket/r?capacity=1&rate=0.4"),
        ] {
            let mut r = get(&http, url.clone()).await;
            if r.status() == StatusCode::OK {
                r = get(&http, url.clone()).await;
            }
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{url}");
            let retry: i64 = header(&r, "retry-after")
                .and_then(|v| v.parse().ok())
                .expect("Retry-After");
            let body: serde_json::Value = r.json().await.expect("json");
            let ms = body["retry_after_ms"].as_i64().expect("ms");
            assert!(ms > 0, "{body}");
            assert_eq!(body["retry_after"], retry, "{body}");
            assert_eq!(retry, (ms + 999) / 1000, "rounded up: {body}");
        }
        // A cost above the limit can never be granted.
        let r = get(
            &http,
            shim.url("/v1/fixedwindow/n?limit=2&window=60&cost=3"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, "retry-after"), None);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["retry_after_ms"], -1);
        assert_eq!(body["retry_after"], -1);
    })
    .await;
}

const ADMIN: &str = "0123456789abcdef-admin";

fn unix_ms() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    u64::try_from(d.as_millis()).expect("ms")
}

async fn set_mode(http: &reqwest::Client, shim: &InProcessShim, mode: &str) -> serde_json::Value {
    let r = http
        .put(shim.url("/admin/mode"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "mode": mode }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

async fn ready_mode(http: &reqwest::Client, shim: &InProcessShim) -> serde_json::Value {
    let r = get(http, shim.url("/ready")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    body["mode"].clone()
}

/// `/ready` shows the mode; a mode change answers `previous`, `mode` and
/// `changed_at` (Unix ms), kept in Redis so that every shim reports the same
/// time; the mode key still holds the bare mode (operators' `SET` works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_shows_the_mode_and_a_mode_change_says_what_changed_and_when() {
    bounded(60, async {
        let redis = RedisProc::start();
        let extra = format!("mode_cache_ms = 0\n[admin]\ntoken = \"{ADMIN}\"\n{ONE_POLICY}");
        let a = InProcessShim::start(config(&redis.url(), &extra)).await;
        let b = InProcessShim::start(config(&redis.url(), &extra)).await;
        let http = client();
        assert_eq!(ready_mode(&http, &a).await, "NORMAL");

        let before = unix_ms();
        let r = set_mode(&http, &a, "DEGRADED").await;
        let after = unix_ms();
        assert_eq!(r["previous"], "NORMAL", "{r}");
        assert_eq!(r["mode"], "DEGRADED");
        assert_eq!(r["changed"], true);
        let at = r["changed_at"].as_u64().expect("changed_at is Unix ms");
        assert!(
            (before..=after).contains(&at),
            "{at} not in [{before}, {after}]"
        );
        // The other shim agrees on the mode and on the time.
        assert_eq!(ready_mode(&http, &b).await, "DEGRADED");
        let r = http
            .get(b.url("/admin/mode"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["mode"], "DEGRADED");
        assert_eq!(body["changed_at"].as_u64(), Some(at));
        // Setting the same mode again changes nothing, the time included.
        let r = set_mode(&http, &b, "DEGRADED").await;
        assert_eq!(r["previous"], "DEGRADED");
        assert_eq!(r["changed"], false);
        assert_eq!(r["changed_at"].as_u64(), Some(at));
        // Back-compat: the mode key holds the bare name, and an operator's
        // plain SET is what the shims apply.
        let mode_key = &a.state.config().mode_key;
        assert_eq!(redis.cmd(&["GET", mode_key]).expect("GET"), "DEGRADED");
        redis.cmd(&["SET", mode_key, "NORMAL"]).expect("SET");
        assert_eq!(ready_mode(&http, &a).await, "NORMAL");
        let r = set_mode(&http, &a, "DEGRADED").await;
        assert_eq!(r["previous"], "NORMAL");
        assert!(r["changed_at"].as_u64().expect("ms") >= at);
    })
    .await;
}

const SECRET_KEY: &str = "sk-live-9f8e7d6c5b4a-do-not-log";

fn keyed_policy(decision_log: &str) -> String {
    format!(
        r#"
[observability]
decision_log = "{decision_log}"
[api_keys]
"{SECRET_KEY}" = "pro"
[policies.api]
identity_header = "X-API-Key"
default_tier = "free"
[policies.api.tiers.free]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 1, rate = 0.001 }}]
[policies.api.tiers.pro]
limits = [
  {{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.001 }},
  {{ name = "day", algorithm = "fixedwindow", limit = 100, window = 86400 }},
]
"#
    )
}

/// Decision metrics carry policy, tier and mode (from configuration only:
/// an unknown policy name or an API key never becomes a label value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_metrics_are_labelled_by_policy_tier_and_mode() {
    bounded(60, async {
        let redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), &keyed_policy("off"))).await;
        let http = client();
        let keyed = || {
            http.get(shim.url("/v1/check/api"))
                .header("x-api-key", SECRET_KEY)
                .send()
        };
        for _ in 0..3 {
            keyed().await.expect("send");
        }
        get(&http, shim.url("/v1/check/api")).await;
        get(&http, shim.url("/v1/status/api")).await;
        get(&http, shim.url("/v1/check/made-up-policy-name")).await;
        get(&http, shim.url("/v1/tokenbucket/x?capacity=1&rate=1")).await;
        let text = get(&http, shim.url("/metrics")).await.text().await.expect("text");
        for line in [
            r#"shim_decisions_total{endpoint="check",mode="NORMAL",outcome="allowed",policy="api",tier="pro"} 2"#,
            r#"shim_decisions_total{endpoint="check",mode="NORMAL",outcome="denied",policy="api",tier="pro"} 1"#,
            r#"shim_decisions_total{endpoint="check",mode="NORMAL",outcome="allowed",policy="api",tier="free"} 1"#,
            r#"shim_decisions_total{endpoint="status",mode="NORMAL",outcome="read",policy="api",tier="free"} 1"#,
            r#"shim_decisions_total{endpoint="check",mode="",outcome="not_found",policy="",tier=""} 1"#,
            r#"shim_decisions_total{endpoint="raw",mode="",outcome="allowed",policy="",tier=""} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("made-up-policy-name"), "{text}");
        assert!(!text.contains(SECRET_KEY), "{text}");
    })
    .await;
}

/// Runs the real binary with `config_body`, makes a few decisions, stops it
/// and returns its JSON log lines (stdout).
async fn decision_log_lines(redis: &RedisProc, config_body: &str) -> Vec<serde_json::Value> {
    let dir = common::TempDir::new("decision-log");
    let path = dir.0.join("shim.toml");
    std::fs::write(&path, config_body).expect("write config");
    let log_path = dir.0.join("stdout.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_api-shim"))
        .arg(&path)
        .env("SHIM_LISTEN", format!("127.0.0.1:{port}"))
        .env("SHIM_REDIS_URL", redis.url())
        .env("RUST_LOG", "info")
        .env_remove("SHIM_LOG_FORMAT")
        .stdout(log)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn api-shim");
    let health = format!("http://127.0.0.1:{port}/health");
    tokio::task::spawn_blocking(move || common::wait_http(&health))
        .await
        .expect("up");
    let http = client();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..3 {
        let r = http
            .get(format!("{base}/v1/check/api"))
            .header("x-api-key", SECRET_KEY)
            .send()
            .await
            .expect("send");
        assert!(r.status() == StatusCode::OK || r.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    // The auth_request path too, with the key in the header.
    let r = http
        .get(format!("{base}/v1/auth/api"))
        .header("x-api-key", SECRET_KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).expect("read log");
    assert!(
        !text.contains(SECRET_KEY),
        "the API key reached the log:\n{text}"
    );
    assert!(
        !text.contains("9f8e7d6c5b4a"),
        "part of the key reached the log"
    );
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "decision")
        .collect()
}

/// One structured log line per decision (policy, tier, outcome, binding
/// limit, latency) at the configured level; never the raw API key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_log_line_per_decision_without_the_api_key() {
    bounded(90, async {
        let redis = RedisProc::start();
        let lines = decision_log_lines(&redis, &keyed_policy("info")).await;
        assert_eq!(lines.len(), 4, "{lines:?}");
        let outcomes: Vec<&str> = lines
            .iter()
            .map(|l| l["fields"]["outcome"].as_str().expect("outcome"))
            .collect();
        assert_eq!(outcomes, ["allowed", "allowed", "denied", "denied"]);
        for l in &lines {
            let f = &l["fields"];
            assert_eq!(l["level"], "INFO", "{l}");
            assert_eq!(f["policy"], "api", "{l}");
            assert_eq!(f["tier"], "pro", "{l}");
            assert_eq!(f["mode"], "NORMAL", "{l}");
            assert_eq!(f["binding"], "burst", "{l}");
            assert!(f["latency_ms"].as_f64().is_some_and(|v| v >= 0.0), "{l}");
            assert!(
                f["identity"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("k:") && i.len() == 18),
                "hashed identity: {l}"
            );
        }
        assert_eq!(lines[0]["fields"]["endpoint"], "check");
        assert_eq!(lines[3]["fields"]["endpoint"], "auth");
        assert_eq!(lines[3]["fields"]["status"], 403);

        redis.cmd(&["FLUSHALL"]).expect("FLUSHALL");
        let lines = decision_log_lines(&redis, &keyed_policy("off")).await;
        assert!(lines.is_empty(), "decision_log = off: {lines:?}");
        redis.cmd(&["FLUSHALL"]).expect("FLUSHALL");
        let lines = decision_log_lines(&redis, &keyed_policy("debug")).await;
        assert!(
            lines.is_empty(),
            "debug lines are below RUST_LOG=info: {lines:?}"
        );
    })
    .await;
}

/// The `src`/`href` values of an HTML page.
fn links(html: &str) -> Vec<String> {
    let mut out = vec![];
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').expect("closing quote");
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

/// `/docs` serves interactive docs offline: HTML whose every asset is
/// same-origin (relative, no scheme, no protocol-relative URL), each asset
/// served from the binary, and the page fed by this shim's `/openapi.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_are_served_offline_from_assets_in_the_binary() {
    bounded(60, async {
        let redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), ONE_POLICY)).await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let r = get(&http, shim.url("/docs")).await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&r, "location"), Some("docs/"), "relative");

        let r = get(&http, shim.url("/docs/")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(header(&r, "content-type").is_some_and(|v| v.starts_with("text/html")));
        assert!(header(&r, "content-security-policy")
            .is_some_and(|v| v.starts_with("default-src 'self'")));
        let html = r.text().await.expect("html");
        let assets = links(&html);
        assert!(assets.len() >= 4, "{assets:?}\n{html}");
        let mut initializer = None;
        for a in &assets {
            assert!(
                !a.contains("://") && !a.starts_with("//") && !a.starts_with('/'),
                "not a relative same-origin asset: {a}"
            );
            let name = a.trim_start_matches("./");
            let r = get(&http, shim.url(&format!("/docs/{name}"))).await;
            assert_eq!(r.status(), StatusCode::OK, "{a}");
            let body = r.bytes().await.expect("body");
            assert!(body.len() > 100, "{a} is {} bytes", body.len());
            if name == "swagger-initializer.js" {
                initializer = Some(String::from_utf8_lossy(&body).into_owned());
            }
        }
        for big in ["swagger-ui-bundle.js", "swagger-ui.css"] {
            assert!(
                assets.iter().any(|a| a.ends_with(big)),
                "{big} not referenced: {assets:?}"
            );
        }
        // Fed by the same document, relative to /docs/, with no call to
        // the online validator.
        let init = initializer.expect("swagger-initializer.js is referenced");
        assert!(init.contains("\"../openapi.json\""), "{init}");
        assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
        let r = get(&http, shim.url("/docs/../openapi.json")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let doc: serde_json::Value = r.json().await.expect("openapi.json");
        assert!(doc["paths"]["/docs/"].is_object());
        let r = get(&http, shim.url("/docs/no-such-file.js")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    })
    .await;
}
