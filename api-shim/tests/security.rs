//! Connection security on real processes: `rediss://` with a private CA
//! (`[redis] tls_ca_file`), passwords and ACL users for standalone Redis,
//! Cluster and Sentinel (the sentinels' own password and the master's).
//!
//! Certificates come from the `openssl` CLI (scripts/install-deps.sh): a CA
//! and a server certificate for 127.0.0.1, made fresh for every test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_shim::config::Config;
use common::{
    bounded, free_port, loopback_urls, module_path, nodes_with_keys, redis_server_binary,
    three_checks, user_policy, wait_until, InProcessShim, Procs, TempDir, ADMIN_TOKEN,
    BURST_OF_TWO, OK_OK_DENIED,
};
use reqwest::StatusCode;
use rl_testkit::{cluster_port, create_cluster, redis_cli};

/// A private CA and a server certificate (SAN 127.0.0.1) signed by it.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl CLI (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_pki(dir: &Path) -> Pki {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-new", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=rl-test-ca",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new", "-nodes"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("server.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

impl Pki {
    /// `redis-server` arguments: TLS only on `port`, plain TCP off.
    fn server_args(&self, port: u16) -> Vec<String> {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &self.cert.display().to_string(),
            "--tls-key-file",
            &self.key.display().to_string(),
            "--tls-ca-cert-file",
            &self.ca.display().to_string(),
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `redis-cli` arguments to reach a TLS server.
    fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".to_owned(),
            "--cacert".to_owned(),
            self.ca.display().to_string(),
        ]
    }
}

/// Starts `redis-server` (module loaded) in `dir` with `args` and waits for
/// PING through `redis-cli` with `cli_extra`.
fn spawn_redis(dir: &Path, port: u16, args: &[String], cli_extra: &[String]) -> Child {
    let node_dir = dir.join(format!("node-{port}"));
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let child = Command::new(redis_server_binary())
        .current_dir(&node_dir)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .arg("--loadmodule")
        .arg(module_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    wait_until("redis PING", Duration::from_secs(15), || {
        redis_cli(port, cli_extra, &["PING"]).contains("PONG")
    });
    child
}

/// The shared test policy with one limit, [`BURST_OF_TWO`], over `redis`
/// (lines of `[redis]`) with `env` as the environment. One limit keeps an
/// unauthenticated `RL.LIMITS` under the 10 arguments Redis answers with
/// `NOAUTH`: beyond that it drops the connection ("unauthenticated multibulk
/// length"), and the shim then reports a broken pipe.
fn load(redis: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    user_policy(BURST_OF_TWO, redis, env)
}

async fn status(shim: &InProcessShim, path: &str) -> StatusCode {
    reqwest::get(shim.url(path)).await.expect("GET").status()
}

/// One check as `user` that must fail with 503 (Redis unusable for us).
async fn check_is_503(shim: &InProcessShim, user: &str) {
    let r = reqwest::Client::new()
        .post(shim.url("/v1/check/api"))
        .header("x-user", user)
        .send()
        .await
        .expect("check");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// What the backend itself says when it cannot use Redis (the text an
/// operator reads in the log of a 503).
async fn backend_error(shim: &InProcessShim) -> String {
    match shim.state.backend.readiness().await {
        Ok(r) => panic!("readiness succeeded: {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

// ------------------------------------------------------------------ TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_configured_ca_decides_and_an_untrusted_server_is_refused() {
    bounded(60, async {
        let dir = TempDir::new("tls");
        let pki = make_pki(&dir.0);
        let port = free_port();
        let _redis = Procs(vec![spawn_redis(
            &dir.0,
            port,
            &pki.server_args(port),
            &pki.cli_args(),
        )]);
        let url = format!("url = \"rediss://127.0.0.1:{port}/\"");

        let trusted = load(
            &format!("{url}\ntls_ca_file = \"{}\"", toml_path(&pki.ca)),
            &[],
        )
        .expect("config");
        let shim = InProcessShim::start(trusted).await;
        assert_eq!(status(&shim, "/ready").await, StatusCode::OK);
        assert_eq!(three_checks(&shim, "alice").await, OK_OK_DENIED);
        let keys = redis_cli(port, &pki.cli_args(), &["KEYS", "rl:{api:*"]);
        assert!(
            keys.contains("rl:{api:u:"),
            "no policy key over TLS: {keys}"
        );
        drop(shim);

        // The system roots do not include our private CA: refused, 503.
        let untrusted = load(&url, &[]).expect("config");
        let shim = InProcessShim::start(untrusted).await;
        assert_eq!(
            status(&shim, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        check_is_503(&shim, "bob").await;
        let e = backend_error(&shim).await;
        assert!(e.contains("certificate"), "unclear TLS error: {e}");

        // Plain redis:// to a TLS-only port: nothing answers in RESP.
        let plain = load(&format!("url = \"redis://127.0.0.1:{port}/\""), &[]).expect("config");
        let shim = InProcessShim::start(plain).await;
        assert_eq!(
            status(&shim, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    })
    .await;
}

/// Runs the shim binary on `config` (written to `dir/shim.toml`) with `env`;
/// it must exit on its own within 20 s. Its exit code and stderr.
fn refused_start(dir: &Path, config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let path = dir.join("shim.toml");
    std::fs::write(&path, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_api-shim"))
        .arg(&path)
        .env("SHIM_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SHIM_LOG_FORMAT", "text")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn api-shim");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the shim started with {config}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), err)
}

#[test]
fn a_missing_or_bad_tls_ca_file_refuses_to_start_with_the_field_named() {
    let dir = TempDir::new("tls-bad-ca");
    std::fs::write(dir.0.join("not-pem.txt"), "hello\n").expect("write");
    std::fs::write(
        dir.0.join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    for (file, want) in [
        ("missing.pem", "cannot read"),
        ("not-pem.txt", "holds no PEM certificate"),
        ("broken.pem", "not a PEM certificate"),
    ] {
        let config =
            format!("[redis]\nurl = \"rediss://127.0.0.1:1/\"\ntls_ca_file = \"{file}\"\n");
        let (code, err) = refused_start(&dir.0, &config, &[]);
        assert_eq!(code, Some(78), "{file}: {err}");
        assert!(
            err.contains("redis.tls_ca_file") && err.contains(file) && err.contains(want),
            "{file}: unclear message: {err}"
        );
    }
}

// ------------------------------------------------------------ passwords

fn pass(pw: &str) -> Vec<String> {
    vec!["-a".to_owned(), pw.to_owned()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_from_env_file_or_url_authenticates_and_a_wrong_one_is_a_clear_503() {
    bounded(90, async {
        let dir = TempDir::new("requirepass");
        let port = free_port();
        let args: Vec<String> = ["--port", &port.to_string(), "--requirepass", "s3cret-pw"]
            .map(str::to_owned)
            .to_vec();
        let _redis = Procs(vec![spawn_redis(&dir.0, port, &args, &pass("s3cret-pw"))]);
        let url = format!("url = \"redis://127.0.0.1:{port}/\"");
        let pw_file = dir.0.join("redis-password");
        std::fs::write(&pw_file, "s3cret-pw\n").expect("password file");

        let good = [
            load(&url, &[("SHIM_REDIS_PASSWORD", "s3cret-pw")]),
            load(
                &format!("{url}\npassword_file = \"{}\"", toml_path(&pw_file)),
                &[],
            ),
            load(
                &format!("url = \"redis://:s3cret-pw@127.0.0.1:{port}/\""),
                &[],
            ),
        ];
        for (i, cfg) in good.into_iter().enumerate() {
            let shim = InProcessShim::start(cfg.expect("config")).await;
            assert_eq!(status(&shim, "/ready").await, StatusCode::OK, "source {i}");
            assert_eq!(
                three_checks(&shim, &format!("user-{i}")).await,
                OK_OK_DENIED,
                "source {i}"
            );
        }

        for (env, code) in [
            (
                &[("SHIM_REDIS_PASSWORD", "wrong-pw")][..],
                "authentication failed",
            ),
            (&[][..], "NOAUTH"),
        ] {
            let shim = InProcessShim::start(load(&url, env).expect("config")).await;
            assert_eq!(
                status(&shim, "/ready").await,
                StatusCode::SERVICE_UNAVAILABLE
            );
            check_is_503(&shim, "mallory").await;
            let e = backend_error(&shim).await;
            assert!(
                e.to_lowercase().contains(&code.to_lowercase()),
                "want {code}, got: {e}"
            );
        }
    })
    .await;
}

/// The ACL rule README.md documents for the shim's user, with the test's raw
/// prefix (`t:raw:`) in place of the default `raw:`: the module's commands on
/// the policy and raw keys, GET/SET on the mode key only (a Redis 7 selector).
const SHIM_ACL: [&str; 15] = [
    "on",
    ">shim-user-pw",
    "resetkeys",
    "resetchannels",
    "-@all",
    "+ping",
    "+module|list",
    "+config|get",
    "~rl:*",
    "~t:raw:*",
    "+rl.limits",
    "+rl.tokenbucket",
    "+rl.fixedwindow",
    "+rl.sliding",
    "(~ratelimit:shim:mode ~ratelimit:shim:mode:changed_at +get +set)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_only_the_documented_rule_serves_every_endpoint() {
    bounded(90, async {
        let dir = TempDir::new("acl");
        let port = free_port();
        let args: Vec<String> = ["--port", &port.to_string(), "--requirepass", "admin-pw"]
            .map(str::to_owned)
            .to_vec();
        let admin = pass("admin-pw");
        let _redis = Procs(vec![spawn_redis(&dir.0, port, &args, &admin)]);
        let mut setuser = vec!["ACL", "SETUSER", "shim"];
        setuser.extend(SHIM_ACL);
        assert_eq!(redis_cli(port, &admin, &setuser).trim(), "OK");

        let cfg = load(
            &format!("url = \"redis://127.0.0.1:{port}/\"\nusername = \"shim\""),
            &[("SHIM_REDIS_PASSWORD", "shim-user-pw")],
        )
        .expect("config");
        let shim = InProcessShim::start(cfg).await;
        let http = reqwest::Client::new();
        assert_eq!(status(&shim, "/ready").await, StatusCode::OK);
        assert_eq!(three_checks(&shim, "alice").await, OK_OK_DENIED);
        for (path, want) in [
            ("/v1/tokenbucket/k1?capacity=1&rate=1", StatusCode::OK),
            ("/v1/fixedwindow/k2?limit=1&window=60", StatusCode::OK),
            ("/v1/sliding/k3?limit=1&window=60", StatusCode::OK),
        ] {
            let r = http.post(shim.url(path)).send().await.expect("raw");
            assert_eq!(r.status(), want, "{path}");
        }
        let r = http
            .put(shim.url("/admin/mode"))
            .bearer_auth(ADMIN_TOKEN)
            .body(r#"{"mode":"DEGRADED"}"#)
            .send()
            .await
            .expect("mode");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            redis_cli(port, &admin, &["GET", "ratelimit:shim:mode"]).trim(),
            "DEGRADED"
        );
        // Nothing else: the user cannot read other keys or run other commands.
        let as_shim = ["--user", "shim", "--pass", "shim-user-pw"].map(str::to_owned);
        assert!(redis_cli(port, &as_shim, &["GET", "other"]).contains("NOPERM"));
        assert!(redis_cli(port, &as_shim, &["FLUSHALL"]).contains("NOPERM"));
        assert!(redis_cli(port, &as_shim, &["SET", "rl:x", "1"]).contains("NOPERM"));
        assert!(redis_cli(port, &as_shim, &["DEL", "ratelimit:shim:mode"]).contains("NOPERM"));
    })
    .await;
}

// ------------------------------------------------- cluster and sentinel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_an_acl_user_serves_every_slot() {
    bounded(120, async {
        let dir = TempDir::new("tls-cluster");
        let pki = make_pki(&dir.0);
        let mut cli_extra = pki.cli_args();
        cli_extra.extend(pass("cluster-pw"));
        let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
        let mut procs = Procs(vec![]);
        for p in &ports {
            let mut args = pki.server_args(*p);
            args.extend(
                [
                    "--tls-cluster",
                    "yes",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--requirepass",
                    "cluster-pw",
                    "--masterauth",
                    "cluster-pw",
                ]
                .map(str::to_owned),
            );
            procs.0.push(spawn_redis(&dir.0, *p, &args, &cli_extra));
        }
        create_cluster(&ports, 0, &cli_extra);
        let seeds = loopback_urls("rediss", &ports);
        let redis = format!(
            "cluster = [{seeds}]\ntls_ca_file = \"{}\"",
            toml_path(&pki.ca)
        );

        // The shim as the documented ACL user, plus CLUSTER SLOTS.
        for p in &ports {
            let mut setuser = vec!["ACL", "SETUSER", "shim"];
            setuser.extend(SHIM_ACL);
            setuser.push("+cluster|slots");
            assert_eq!(redis_cli(*p, &cli_extra, &setuser).trim(), "OK");
        }
        let cfg = load(
            &format!("{redis}\nusername = \"shim\""),
            &[("SHIM_REDIS_PASSWORD", "shim-user-pw")],
        )
        .expect("config");
        let shim = InProcessShim::start(cfg).await;
        assert_eq!(status(&shim, "/ready").await, StatusCode::OK);
        for u in 0..20 {
            assert_eq!(
                three_checks(&shim, &format!("user-{u}")).await,
                OK_OK_DENIED,
                "user {u}"
            );
        }
        let populated = nodes_with_keys(&ports, &cli_extra);
        assert!(populated >= 2, "keys on {populated} masters");
        drop(shim);

        let cfg = load(&redis, &[("SHIM_REDIS_PASSWORD", "wrong-pw")]).expect("config");
        let shim = InProcessShim::start(cfg).await;
        assert_eq!(
            status(&shim, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        check_is_503(&shim, "mallory").await;
        let e = backend_error(&shim).await.to_lowercase();
        assert!(e.contains("authentication failed"), "unclear: {e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_with_its_own_password_and_the_masters() {
    bounded(90, async {
        let dir = TempDir::new("tls-sentinel");
        let pki = make_pki(&dir.0);
        let mport = free_port();
        let mut args = pki.server_args(mport);
        args.extend(["--requirepass", "master-pw"].map(str::to_owned));
        let mut master_cli = pki.cli_args();
        master_cli.extend(pass("master-pw"));
        let mut procs = Procs(vec![spawn_redis(&dir.0, mport, &args, &master_cli)]);

        let sport = free_port();
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\ntls-port {sport}\nbind 127.0.0.1\ndir {dir}\n\
                 tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
                 tls-auth-clients no\ntls-replication yes\nrequirepass sentinel-pw\n\
                 sentinel monitor mymaster 127.0.0.1 {mport} 1\n\
                 sentinel auth-pass mymaster master-pw\n",
                dir = dir.0.display(),
                cert = pki.cert.display(),
                key = pki.key.display(),
                ca = pki.ca.display(),
            ),
        )
        .expect("sentinel.conf");
        procs.0.push(
            Command::new(redis_server_binary())
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sentinel"),
        );
        let mut sentinel_cli = pki.cli_args();
        sentinel_cli.extend(pass("sentinel-pw"));
        // The sentinel reached the master over TLS with its password: it
        // sees it as a healthy master (no s_down / disconnected flag).
        wait_until("sentinel sees the master", Duration::from_secs(20), || {
            let m = redis_cli(sport, &sentinel_cli, &["SENTINEL", "MASTER", "mymaster"]);
            m.contains("flags\nmaster\n")
        });

        let redis = format!(
            "tls_ca_file = \"{}\"\n[redis.sentinel]\nmaster = \"mymaster\"\n\
             nodes = [\"rediss://127.0.0.1:{sport}\"]",
            toml_path(&pki.ca)
        );
        let good = [
            ("SHIM_REDIS_PASSWORD", "master-pw"),
            ("SHIM_SENTINEL_PASSWORD", "sentinel-pw"),
        ];
        let shim = InProcessShim::start(load(&redis, &good).expect("config")).await;
        assert_eq!(status(&shim, "/ready").await, StatusCode::OK);
        assert_eq!(three_checks(&shim, "alice").await, OK_OK_DENIED);
        assert!(redis_cli(mport, &master_cli, &["KEYS", "rl:{api:*"]).contains("rl:{api:u:"));
        drop(shim);

        // A wrong password for the sentinels, then for the master: 503s.
        for (env, what) in [
            (
                [
                    ("SHIM_REDIS_PASSWORD", "master-pw"),
                    ("SHIM_SENTINEL_PASSWORD", "wrong-pw"),
                ],
                "sentinel 0: password authentication failed",
            ),
            (
                [
                    ("SHIM_REDIS_PASSWORD", "wrong-pw"),
                    ("SHIM_SENTINEL_PASSWORD", "sentinel-pw"),
                ],
                "(password authentication failed",
            ),
        ] {
            let shim = InProcessShim::start(load(&redis, &env).expect("config")).await;
            assert_eq!(
                status(&shim, "/ready").await,
                StatusCode::SERVICE_UNAVAILABLE,
                "{what}"
            );
            check_is_503(&shim, "mallory").await;
            let e = backend_error(&shim).await.to_lowercase();
            assert!(e.contains(what), "want {what}, got: {e}");
        }
    })
    .await;
}
