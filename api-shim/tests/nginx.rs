//! A real Nginx, configured from the shipped `docker/nginx/` files, in front
//! of two `api-shim` processes and a stub app: auth_request turns the shim's
//! 403-with-marker into 429 (with Retry-After) or 503, and recovers.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use common::{bounded, free_port, header, wait_http, RedisProc, ShimProc, TempDir};
use reqwest::StatusCode;

fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX") {
        return PathBuf::from(p);
    }
    let candidate = PathBuf::from("/usr/sbin/nginx");
    assert!(
        candidate.exists(),
        "nginx not found at /usr/sbin/nginx: install it (apt-get install nginx) or set NGINX"
    );
    candidate
}

fn repo_nginx_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/nginx")
}

/// Renders `local.conf.template` exactly as `render-local.sh` does.
fn render(prefix: &Path, listen: &str, app: &str, shims: &[u16]) -> PathBuf {
    let dir = repo_nginx_dir();
    let template =
        std::fs::read_to_string(dir.join("local.conf.template")).expect("read nginx template");
    let servers: String = shims
        .iter()
        .map(|p| format!("server 127.0.0.1:{p};"))
        .collect();
    let locations = dir
        .join("ratelimit.locations.conf")
        .canonicalize()
        .expect("locations file");
    let conf = template
        .replace("@PREFIX@", &prefix.display().to_string())
        .replace("@LISTEN@", listen)
        .replace("@APP_SERVER@", app)
        .replace("@SHIM_SERVERS@", &servers)
        .replace("@LOCATIONS@", &locations.display().to_string())
        .replace("@WORKERS@", "1")
        .replace("@CONN_PER_CLIENT@", "100");
    assert!(!conf.contains('@'), "unreplaced placeholder in template");
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    path
}

/// Nginx in the foreground; stopped with SIGTERM (so its workers exit too).
struct NginxProc {
    child: Child,
    prefix: PathBuf,
}

impl NginxProc {
    fn start(prefix: &Path, conf: &Path) -> NginxProc {
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        NginxProc {
            child,
            prefix: prefix.to_owned(),
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }
}

impl Drop for NginxProc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The protected app (a stub answering `/api/hello`) and, in front of it and
/// `shims`, Nginx rendered from the shipped template, up and answering at
/// `base`. Fields drop in order: Nginx stops before its directory goes.
struct Front {
    nginx: NginxProc,
    base: String,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Front {
    async fn start(name: &str, shims: &[u16]) -> Front {
        let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind app");
        let app_addr = app_listener.local_addr().expect("app addr");
        let app = axum::Router::new().route("/api/hello", get(|| async { "hello from app" }));
        tokio::spawn(async move {
            let _ = axum::serve(app_listener, app).await;
        });
        let dir = TempDir::new(name);
        let port = free_port();
        let conf = render(
            &dir.0,
            &format!("127.0.0.1:{port}"),
            &app_addr.to_string(),
            shims,
        );
        let nginx = NginxProc::start(&dir.0, &conf);
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/ratelimit/health");
        tokio::task::spawn_blocking(move || wait_http(&health))
            .await
            .expect("nginx up");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Front {
            nginx,
            base,
            http,
            _dir: dir,
        }
    }
}

const SHIM_CONFIG: &str = r#"
[raw]
enabled = true
key_prefix = "raw:"
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 3, rate = 0.01 }]
# Generous for a debug build on a loaded machine (see common::TEST_REDIS_TIMEOUT_MS).
[redis]
timeout_ms = 10000
"#;

async fn auth_decisions(http: &reqwest::Client, shim_port: u16) -> u64 {
    common::metric_sum(http, shim_port, "shim_decisions_total{endpoint=\"auth\"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_limits_an_app_through_two_shims() {
    bounded(120, async {
        let mut redis = RedisProc::start();
        let shim_a = ShimProc::start(&redis.url(), SHIM_CONFIG);
        let shim_b = ShimProc::start(&redis.url(), SHIM_CONFIG);

        let Front {
            nginx,
            base,
            http,
            _dir,
        } = Front::start("nginx", &[shim_a.port, shim_b.port]).await;
        let url = format!("{base}/api/hello");
        for want in ["2", "1", "0"] {
            let r = http.get(&url).send().await.expect("send");
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "nginx log: {}",
                nginx.error_log()
            );
            assert_eq!(header(&r, "x-ratelimit-limit"), Some("3"));
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some(want));
            assert_eq!(header(&r, "ratelimit-policy"), Some("\"burst\";q=3;w=300"));
            assert!(header(&r, "ratelimit").is_some());
            assert_eq!(header(&r, "x-ratelimit-tier"), Some("free"));
            assert_eq!(header(&r, "x-system-health"), Some("NORMAL"));
            assert_eq!(header(&r, "retry-after"), None);
            assert_eq!(r.text().await.expect("body"), "hello from app");
        }
        let r = http.get(&url).send().await.expect("send");
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "nginx log: {}",
            nginx.error_log()
        );
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));
        let retry: u64 = header(&r, "retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in whole seconds");
        assert!((90..=100).contains(&retry), "{retry}");
        let body = r.text().await.expect("body");
        assert!(body.contains("\"status\":429"), "{body}");
        assert!(body.contains("quota-exceeded"), "{body}");

        // Nginx spread the subrequests over both shims.
        let (a, b) = (
            auth_decisions(&http, shim_a.port).await,
            auth_decisions(&http, shim_b.port).await,
        );
        assert_eq!(a + b, 4);
        assert!(a >= 1 && b >= 1, "load balancing: a={a} b={b}");

        // The app's own pages outside /api/ are not rate-limited headers-wise.
        let r = http
            .get(format!("{base}/ratelimit/ready"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let r = http
            .get(format!("{base}/ratelimit/admin/mode"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "admin is not public");
        // The raw endpoints (even when a shim enables them), auth
        // and metrics are never routed through the shipped config.
        for path in [
            "/ratelimit/v1/sliding/rl:%7Bapi:ip:127.0.0.1%7D?limit=5&window=600&cost=4",
            "/ratelimit/v1/tokenbucket/x?capacity=1&rate=1",
            "/ratelimit/v1/fixedwindow/x?limit=1&window=1",
            "/ratelimit/v1/auth/api",
            "/ratelimit/metrics",
            "/ratelimit/admin/mode",
        ] {
            let r = http
                .post(format!("{base}{path}"))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path} is routed");
            assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        }
        let r = http
            .post(format!("{base}/ratelimit/v1/check/api?cost=0"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "policy checks are public");

        // Redis outage: fail-closed shims make Nginx answer 503.
        redis.kill();
        let r = http.get(&url).send().await.expect("send");
        assert_eq!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "nginx log: {}",
            nginx.error_log()
        );
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));

        // Back on the same port: recovery without restarting anything else.
        redis.restart();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = http.get(&url).send().await.expect("send");
            if r.status() == StatusCode::OK {
                assert_eq!(header(&r, "x-ratelimit-limit"), Some("3"));
                break;
            }
            assert!(Instant::now() < deadline, "no recovery: {}", r.status());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every shim gone: a JSON 503, never a bare text 500.
        drop(shim_a);
        drop(shim_b);
        for (method, path) in [
            (reqwest::Method::GET, "/api/hello"),
            (reqwest::Method::POST, "/ratelimit/v1/check/api"),
            (reqwest::Method::GET, "/ratelimit/ready"),
        ] {
            let r = http
                .request(method, format!("{base}{path}"))
                .send()
                .await
                .expect("send");
            assert_eq!(
                r.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{path}; nginx log: {}",
                nginx.error_log()
            );
            assert_eq!(
                header(&r, "content-type"),
                Some("application/problem+json"),
                "{path}"
            );
        }
        drop(nginx);
    })
    .await;
}

/// The `<!-- doctest: nginx -->` shell blocks of one section of a README, in
/// order (each runs as one script; `tests/docs.rs` runs the plain
/// `<!-- doctest -->` blocks line by line).
fn doctest_blocks(readme: &str, section: &str) -> Vec<String> {
    let start = readme.find(section).expect("section in README");
    let rest = &readme[start + section.len()..];
    let end = rest
        .find("\n## ")
        .or_else(|| rest.find("\n### "))
        .unwrap_or(rest.len());
    let mut blocks = vec![];
    let mut lines = rest[..end].lines();
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- doctest: nginx -->" {
            continue;
        }
        let fence = lines.next().expect("a fenced block after the marker");
        assert!(
            fence.starts_with("```sh"),
            "marker not followed by ```sh: {fence}"
        );
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push(body.join("\n"));
    }
    blocks
}

/// Stops what the README's blocks started if the test fails half-way.
struct DemoGuard(PathBuf);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        let pid_of = |f: &str| std::fs::read_to_string(self.0.join(f)).ok();
        for f in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pid") {
                if let Some(pid) = pid_of(&name) {
                    let _ = Command::new("kill").arg(pid.trim()).status();
                }
            }
        }
        if let Some(pid) = pid_of("nginx/nginx.pid") {
            let _ = Command::new("kill").args(["-QUIT", pid.trim()]).status();
        }
    }
}

/// The api-shim README's "Nginx in front" section, run as written
/// (its blocks in order, through bash), on free ports with the debug build.
#[test]
fn readme_nginx_section_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("api-shim/README.md")).expect("README");
    let blocks = doctest_blocks(&readme, "### Nginx in front");
    assert_eq!(blocks.len(), 3, "start, try, stop");
    let dir = TempDir::new("readme");
    let _guard = DemoGuard(dir.0.clone());
    let bin = Path::new(env!("CARGO_BIN_EXE_api-shim"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let nginx_dir = nginx_binary().parent().expect("nginx dir").to_owned();
    let path = format!(
        "{}:{}",
        nginx_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let redis_port = free_port();
    let env = [
        ("RL_DEMO", dir.0.display().to_string()),
        ("REDIS_PORT", redis_port.to_string()),
        ("SHIM_PORT", free_port().to_string()),
        ("SHIM2_PORT", free_port().to_string()),
        ("APP_PORT", free_port().to_string()),
        ("NGINX_PORT", free_port().to_string()),
        ("BIN_DIR", bin.display().to_string()),
        ("MODULE", common::module_path().display().to_string()),
        ("PATH", path),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut outputs = vec![];
    for (i, block) in blocks.iter().enumerate() {
        let out = Command::new("timeout")
            .args(["60", "bash", "-euo", "pipefail", "-c", block])
            .current_dir(&root)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "block {i} failed ({}):\n{block}\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(stdout);
    }
    let tried = &outputs[1];
    assert!(tried.contains("\"status\":\"ready\""), "{tried}");
    assert!(tried.contains("HTTP/1.1 200 OK"), "{tried}");
    assert!(tried.contains("hello from the app"), "{tried}");
    assert!(
        tried
            .to_ascii_lowercase()
            .contains("ratelimit-policy: \"burst\";q=10;w=10"),
        "{tried}"
    );
    assert!(
        tried.contains("HTTP/1.1 404"),
        "raw endpoints not routed: {tried}"
    );
    // The stop block stopped Redis.
    assert!(std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err());
}

const USER_ID_CONFIG: &str = r#"
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.api]
identity_header = "user_id"
identity_kind = "user"
default_tier = "member"
require_identity = true
[policies.api.tiers.member]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.01 }]
[redis]
timeout_ms = 10000
"#;

/// The seeds identify users by a `user_id` header. Through the rendered Nginx
/// template (`underscores_in_headers on`), two users behind one address get
/// separate buckets, on the auth_request path, on GET decisions and on the
/// status read; without the header (require_identity) Nginx answers 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_user_id_so_users_behind_one_address_get_separate_buckets() {
    bounded(120, async {
        let redis = RedisProc::start();
        let shim = ShimProc::start(&redis.url(), USER_ID_CONFIG);
        let Front {
            nginx,
            base,
            http,
            _dir,
        } = Front::start("nginx-user-id", &[shim.port]).await;
        let hello = format!("{base}/api/hello");
        let call = |user: Option<&'static str>| {
            let mut req = http.get(&hello);
            if let Some(u) = user {
                req = req.header("user_id", u);
            }
            req.send()
        };
        // alice spends her two units, then is limited...
        for want in ["1", "0"] {
            let r = call(Some("alice")).await.expect("send");
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "nginx log: {}",
                nginx.error_log()
            );
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some(want));
        }
        let r = call(Some("alice")).await.expect("send");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        // ...while bob, from the same address, has his own bucket.
        let r = call(Some("bob")).await.expect("send");
        assert_eq!(r.status(), StatusCode::OK, "bob is not alice");
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("1"));
        // Without the header: require_identity's 400, through auth_request.
        let r = call(None).await.expect("send");
        assert_eq!(
            r.status(),
            StatusCode::BAD_REQUEST,
            "nginx log: {}",
            nginx.error_log()
        );
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        let keys = redis.cmd(&["KEYS", "rl:{api:*"]).expect("KEYS");
        assert_eq!(keys.matches("rl:{api:u:").count(), 2, "{keys}");
        assert!(!keys.contains(":ip:"), "{keys}");

        // The public decision (GET) and status read see the same buckets.
        let r = http
            .get(format!("{base}/ratelimit/v1/status/api"))
            .header("user_id", "bob")
            .send()
            .await
            .expect("send");
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "nginx log: {}",
            nginx.error_log()
        );
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("1"));
        let r = http
            .get(format!("{base}/ratelimit/v1/check/api"))
            .header("user_id", "bob")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));
        let r = http
            .get(format!("{base}/ratelimit/v1/status/api"))
            .header("user_id", "alice")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "a status read is never 429");
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));

        // The interactive docs work under the /ratelimit/ prefix: the
        // relative redirect and asset links keep it.
        let r = http
            .get(format!("{base}/ratelimit/docs"))
            .send()
            .await
            .expect("send");
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "nginx log: {}",
            nginx.error_log()
        );
        assert_eq!(r.url().path(), "/ratelimit/docs/");
        assert!(r
            .text()
            .await
            .expect("html")
            .contains("swagger-ui-bundle.js"));
        for asset in [
            "docs/swagger-ui-bundle.js",
            "docs/swagger-initializer.js",
            "openapi.json",
        ] {
            let r = http
                .get(format!("{base}/ratelimit/{asset}"))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), StatusCode::OK, "{asset}");
        }
        drop(nginx);
    })
    .await;
}
