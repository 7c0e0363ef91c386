//! The Kubernetes manifests in `deploy/kubernetes/` are what users deploy:
//! they must be valid resources, secure by default, and carry a shim
//! configuration the shim itself accepts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

use common::{wait_until, Procs};

use api_shim::config::{Loader, RedisTarget};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn manifests() -> Vec<PathBuf> {
    let dir = manifests_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "no manifests in {}", dir.display());
    files
}

fn text(p: &Path) -> String {
    std::fs::read_to_string(p).expect("read manifest")
}

/// The `shim.toml: |` block of the ConfigMap, unindented.
fn configmap_shim_toml() -> String {
    let all =
        text(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/api-shim.yaml"));
    let mut lines = all
        .lines()
        .skip_while(|l| l.trim() != "shim.toml: |")
        .skip(1);
    let mut out = String::new();
    for l in lines.by_ref() {
        if l.starts_with("---") || (!l.is_empty() && !l.starts_with("    ")) {
            break;
        }
        out.push_str(l.strip_prefix("    ").unwrap_or(l));
        out.push('\n');
    }
    assert!(out.contains("[policies."), "no shim.toml in the ConfigMap");
    out
}

#[test]
fn the_configmap_holds_a_configuration_the_shim_accepts() {
    let dir = std::env::temp_dir().join(format!("rl-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("shim.toml");
    std::fs::write(&path, configmap_shim_toml()).expect("write shim.toml");
    let loaded = Loader::new(Some(path), |_| None).load(rl_grammar::EXACT_MAX_LOG_DEFAULT);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = loaded {
        panic!("the shim refuses the ConfigMap's configuration: {}", e.0);
    }
}

#[test]
fn the_manifests_are_secure_by_default() {
    for p in manifests() {
        let t = text(&p);
        let name = p.display();
        // Nothing exposed outside the cluster, no secret shipped, every
        // workload non-root and locked down, and a NetworkPolicy per file.
        for banned in [
            "kind: Secret",
            "type: LoadBalancer",
            "type: NodePort",
            "hostNetwork: true",
            "privileged: true",
        ] {
            assert!(!t.contains(banned), "{name}: {banned}");
        }
        assert!(
            t.contains("kind: NetworkPolicy"),
            "{name}: no NetworkPolicy"
        );
        let workloads =
            t.matches("kind: Deployment").count() + t.matches("kind: StatefulSet").count();
        assert!(workloads >= 1, "{name}: no workload");
        for want in [
            "runAsNonRoot: true",
            "allowPrivilegeEscalation: false",
            "readOnlyRootFilesystem: true",
            "automountServiceAccountToken: false",
        ] {
            assert_eq!(
                t.matches(want).count(),
                workloads,
                "{name}: {want} on every workload"
            );
        }
    }
    // The Redis password never goes on a command line.
    let redis = text(&manifests_dir().join("redis.yaml"));
    assert!(
        !redis.contains("--requirepass"),
        "redis.yaml: password in argv"
    );
    assert!(redis.contains("requirepass \"$REDIS_PASSWORD\""));
    let shim = configmap_shim_toml();
    assert!(
        shim.contains("[raw]\n") && shim.contains("enabled = false"),
        "raw endpoints must stay off"
    );
}

#[test]
fn the_shim_deployment_takes_the_redis_password_from_the_secret() {
    let t = text(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/api-shim.yaml"));
    let after = t
        .split("- name: SHIM_REDIS_PASSWORD")
        .nth(1)
        .expect("SHIM_REDIS_PASSWORD in the Deployment");
    let entry: String = after.lines().take(5).collect::<Vec<_>>().join("\n");
    assert!(
        entry.contains("secretKeyRef:") && entry.contains("key: redis-password"),
        "SHIM_REDIS_PASSWORD must come from the Secret: {entry}"
    );
    assert!(!t.contains("redis://:"), "no password in a URL");
}

/// Schema validation against Kubernetes' own OpenAPI schemas, offline, with
/// `kubernetes-validate` (PyPI, installed by scripts/install-deps.sh).
#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    let out = match Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("skipped: kubernetes-validate is not installed ({e}); pip install kubernetes-validate");
            return;
        }
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    assert!(report.contains("passed"), "nothing validated:\n{report}");
    assert!(!report.contains("ERROR"), "{report}");
}

// ------------------------------------------------------------ Docker Compose

/// The compose files users run (no Docker engine here: checked as data, and
/// their Redis commands run on real local processes below).
const COMPOSE_FILES: [&str; 2] = ["compose.yaml", "compose.sentinel.yaml"];

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker")
}

/// A compose file as JSON through PyYAML (anchors and `<<` merges resolved,
/// as Compose resolves them), before Compose's `${…}` interpolation.
fn compose(file: &str) -> serde_json::Value {
    let path = docker_dir().join(file);
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(&path)
        .output()
        .expect("python3 (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{file} does not parse as YAML (PyYAML missing? scripts/install-deps.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from PyYAML")
}

fn services(c: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    c["services"]
        .as_object()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A service's `command` (or its one shell script) as one text.
fn command_text(svc: &serde_json::Value) -> String {
    strings(&svc["command"]).join(" ")
}

fn env_of(svc: &serde_json::Value, name: &str) -> Option<String> {
    svc["environment"][name].as_str().map(str::to_owned)
}

/// `true` for a value Compose refuses to start without (`${VAR:?message}`).
fn required(value: Option<String>, var: &str) -> bool {
    value.is_some_and(|v| v.starts_with(&format!("${{{var}:?")) && v.ends_with('}'))
}

#[test]
fn the_compose_files_are_secure_by_default() {
    for file in COMPOSE_FILES {
        let c = compose(file);
        let text = std::fs::read_to_string(docker_dir().join(file)).expect("read");
        for var in ["REDIS_PASSWORD", "SENTINEL_PASSWORD"] {
            assert!(
                !text.contains(&format!("${{{var}:-")) && !text.contains(&format!("${{{var}-")),
                "{file}: {var} must have no default"
            );
        }
        let named_volumes: Vec<String> = c["volumes"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut redis_nodes = 0;
        for (name, svc) in services(&c) {
            let at = format!("{file}: service {name}");
            assert!(svc.get("privileged").is_none(), "{at}: privileged");
            assert!(svc.get("network_mode").is_none(), "{at}: network_mode");
            let ports = strings(&svc["ports"]);
            if name == "nginx" {
                assert!(!ports.is_empty(), "{at}: Nginx publishes nothing");
            } else {
                assert!(ports.is_empty(), "{at}: only Nginx may publish a port");
            }
            for p in &ports {
                assert!(
                    p.starts_with("127.0.0.1:"),
                    "{at}: {p} is not loopback-only"
                );
            }
            assert!(svc.get("expose").is_none(), "{at}: expose");
            let cmd = command_text(&svc);
            match svc["image"].as_str() {
                Some("redis-ratelimit:local") if cmd.contains("redis-server") => {
                    redis_nodes += 1;
                    assert_eq!(svc["user"].as_str(), Some("redis"), "{at}: runs as root");
                    if cmd.contains("--sentinel") {
                        assert!(required(
                            env_of(&svc, "SENTINEL_PASSWORD"),
                            "SENTINEL_PASSWORD"
                        ));
                        assert!(cmd.contains("requirepass \"$$SENTINEL_PASSWORD\""), "{at}");
                        assert!(
                            cmd.contains("auth-pass mymaster \"$$REDIS_PASSWORD\""),
                            "{at}"
                        );
                    } else {
                        assert!(cmd.contains("requirepass \"$$REDIS_PASSWORD\""), "{at}");
                        assert!(cmd.contains("masterauth \"$$REDIS_PASSWORD\""), "{at}");
                    }
                    assert!(
                        required(env_of(&svc, "REDIS_PASSWORD"), "REDIS_PASSWORD"),
                        "{at}"
                    );
                    // The password reaches redis-server through stdin or a
                    // file, never its command line.
                    assert!(!cmd.contains("--requirepass"), "{at}: password in argv");
                    let data = strings(&svc["volumes"])
                        .into_iter()
                        .find(|v| v.ends_with(":/data"))
                        .unwrap_or_else(|| panic!("{at}: no volume on /data"));
                    let vol = data.trim_end_matches(":/data");
                    assert!(
                        named_volumes.iter().any(|n| n == vol),
                        "{at}: /data is not a named volume ({data})"
                    );
                    if let Some(test) = svc["healthcheck"]["test"].as_array() {
                        let t = test.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>();
                        assert!(t.join(" ").contains("REDISCLI_AUTH"), "{at}: healthcheck");
                    }
                }
                Some("redis-ratelimit:local") => {
                    // One-shot jobs talk to Redis with the password too.
                    assert!(
                        required(env_of(&svc, "REDISCLI_AUTH"), "REDIS_PASSWORD"),
                        "{at}"
                    );
                }
                Some("api-shim:local") => {
                    assert!(
                        required(env_of(&svc, "SHIM_REDIS_PASSWORD"), "REDIS_PASSWORD"),
                        "{at}"
                    );
                    if file.contains("sentinel") {
                        assert!(
                            required(env_of(&svc, "SHIM_SENTINEL_PASSWORD"), "SENTINEL_PASSWORD"),
                            "{at}"
                        );
                    }
                }
                _ => {}
            }
        }
        assert!(redis_nodes >= 6, "{file}: {redis_nodes} Redis processes");
    }
}

/// A Compose value with `${VAR:?…}` as `secret` and `${VAR:-}` as empty.
fn interpolated(v: &str, secret: &str) -> String {
    if v.starts_with("${") && v.contains(":?") {
        secret.to_owned()
    } else if v.starts_with("${") && v.ends_with(":-}") {
        String::new()
    } else {
        v.to_owned()
    }
}

#[test]
fn the_compose_shim_configs_load_through_the_shims_loader() {
    for file in COMPOSE_FILES {
        let c = compose(file);
        for (name, svc) in services(&c) {
            if svc["image"].as_str() != Some("api-shim:local") {
                continue;
            }
            let at = format!("{file}: service {name}");
            let mount = strings(&svc["volumes"])
                .into_iter()
                .find(|v| v.contains(":/etc/api-shim/shim.toml"))
                .unwrap_or_else(|| panic!("{at}: no shim.toml mounted"));
            assert!(mount.ends_with(":ro"), "{at}: config mounted writable");
            let source = mount.split(':').next().unwrap_or_default();
            let path = docker_dir().join(source);
            let env: Vec<(String, String)> = svc["environment"]
                .as_object()
                .expect("environment")
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        interpolated(v.as_str().unwrap_or_default(), "compose-test-secret"),
                    )
                })
                .collect();
            let loaded = Loader::new(Some(path.clone()), |k| {
                env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
            .load(rl_grammar::EXACT_MAX_LOG_DEFAULT);
            let cfg = match loaded {
                Ok(c) => c,
                Err(e) => panic!("{at}: the shim refuses {}: {}", path.display(), e.0),
            };
            assert_eq!(
                cfg.redis_auth.password.as_deref(),
                Some("compose-test-secret"),
                "{at}"
            );
            assert!(!cfg.raw_enabled, "{at}: raw endpoints must stay off");
            assert!(
                cfg.admin_token.is_none(),
                "{at}: /admin must be off by default"
            );
            match &cfg.redis {
                RedisTarget::Cluster(nodes) => {
                    assert!(
                        file == "compose.yaml" && nodes.len() == 3,
                        "{at}: {nodes:?}"
                    );
                }
                RedisTarget::Sentinel { master, nodes } => {
                    assert!(file.contains("sentinel"), "{at}");
                    assert_eq!((master.as_str(), nodes.len()), ("mymaster", 3), "{at}");
                    assert_eq!(
                        cfg.sentinel_auth.password.as_deref(),
                        Some("compose-test-secret"),
                        "{at}"
                    );
                }
                other => panic!("{at}: {other:?}"),
            }
            // Nginx's fixed address, and only it, is trusted.
            let nginx_ip = c["services"]["nginx"]["networks"]["rl"]["ipv4_address"]
                .as_str()
                .expect("nginx address");
            let trusted: Vec<String> = cfg.trusted_proxies.iter().map(|n| n.to_string()).collect();
            assert_eq!(trusted, vec![format!("{nginx_ip}/32")], "{at}");
        }
    }
}

/// Runs a compose service's shell `command` locally: `$$` unescaped, the
/// service's environment with `secret` for required values plus `extra`, and
/// `edits` (compose addresses and paths → local ones) applied to the script.
fn run_service(
    svc: &serde_json::Value,
    dir: &Path,
    edits: &[(&str, String)],
    extra: &[(&str, &str)],
    secret: &str,
) -> std::process::Child {
    let mut script = command_text(svc).replace("$$", "$");
    for (from, to) in edits {
        assert!(script.contains(from), "{from} not in {script}");
        script = script.replace(from, to);
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(&script).current_dir(dir);
    if let Some(env) = svc["environment"].as_object() {
        for (k, v) in env {
            cmd.env(k, interpolated(v.as_str().unwrap_or_default(), secret));
        }
    }
    cmd.envs(extra.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh")
}

fn cli_on(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut c = Command::new("redis-cli");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    if let Some(p) = password {
        c.env("REDISCLI_AUTH", p);
    }
    let out = c.output().expect("redis-cli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Sentinel stack's own Redis and sentinel scripts, run on local
/// processes (compose host names and ports mapped to 127.0.0.1 ports), with
/// the compose's shim configuration in front: the passwords are required and
/// work end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_compose_scripts_run_a_password_protected_group_the_shim_uses() {
    common::bounded(90, async {
        let c = compose("compose.sentinel.yaml");
        let svc = |n: &str| c["services"][n].clone();
        let secret = "compose-secret-0123";
        let dir = common::TempDir::new("compose-sentinel");
        let mut procs = Procs(vec![]);
        let base = |port: u16| {
            let conf = dir.0.join(format!("redis-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "loadmodule {}\nport {port}\nbind 127.0.0.1\nsave \"\"\n",
                    common::module_path().display()
                ),
            )
            .expect("base conf");
            conf.display().to_string()
        };

        let mport = common::free_port();
        let node_dir = |name: &str| {
            let d = dir.0.join(name);
            std::fs::create_dir_all(&d).expect("dir");
            d
        };
        let conf_path = "/usr/local/etc/redis/redis.conf";
        procs.0.push(run_service(
            &svc("redis-master"),
            &node_dir("master"),
            &[(conf_path, base(mport))],
            &[],
            secret,
        ));
        wait_until("master", Duration::from_secs(20), || {
            cli_on(mport, Some(secret), &["PING"]).contains("PONG")
        });
        assert!(
            cli_on(mport, None, &["PING"]).contains("NOAUTH"),
            "no password needed"
        );
        let mut replica_ports = vec![];
        for name in ["redis-replica1", "redis-replica2"] {
            let p = common::free_port();
            procs.0.push(run_service(
                &svc(name),
                &node_dir(name),
                &[(conf_path, base(p)), (" 6379}", format!(" {mport}}}"))],
                &[("REPLICA_OF", "127.0.0.1")],
                secret,
            ));
            replica_ports.push(p);
        }
        for p in &replica_ports {
            wait_until("replica in sync", Duration::from_secs(20), || {
                cli_on(*p, Some(secret), &["INFO", "replication"]).contains("master_link_status:up")
            });
        }

        let mut sentinel_ports = vec![];
        for name in ["sentinel1", "sentinel2", "sentinel3"] {
            let sp = common::free_port();
            let d = node_dir(name);
            procs.0.push(run_service(
                &svc(name),
                &d,
                &[
                    ("/data", d.display().to_string()),
                    ("port 26379", format!("port {sp}\nbind 127.0.0.1")),
                    ("redis-master 6379", format!("127.0.0.1 {mport}")),
                ],
                &[],
                secret,
            ));
            sentinel_ports.push(sp);
        }
        for sp in &sentinel_ports {
            wait_until(
                "sentinel sees master and replicas",
                Duration::from_secs(20),
                || {
                    let m = cli_on(*sp, Some(secret), &["SENTINEL", "MASTER", "mymaster"]);
                    m.contains("flags\nmaster\n") && m.contains("num-slaves\n2\n")
                },
            );
            assert!(cli_on(*sp, None, &["PING"]).contains("NOAUTH"));
        }

        // The compose's shim configuration, sentinel addresses mapped.
        let mut toml = std::fs::read_to_string(docker_dir().join("shim.sentinel.toml"))
            .expect("shim.sentinel.toml");
        for (i, sp) in sentinel_ports.iter().enumerate() {
            let from = format!("redis://sentinel{}:26379", i + 1);
            assert!(toml.contains(&from), "{from}");
            toml = toml.replace(&from, &format!("redis://127.0.0.1:{sp}"));
        }
        let path = dir.0.join("shim.toml");
        std::fs::write(&path, toml).expect("write");
        let env = [
            ("SHIM_LISTEN", "127.0.0.1:0"),
            ("SHIM_REDIS_PASSWORD", secret),
            ("SHIM_SENTINEL_PASSWORD", secret),
        ];
        let cfg = Loader::new(Some(path), |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .load(rl_grammar::EXACT_MAX_LOG_DEFAULT)
        .expect("the compose's shim config");
        let shim = common::InProcessShim::start(cfg).await;
        let r = reqwest::get(shim.url("/ready")).await.expect("ready");
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let r = reqwest::Client::new()
            .post(shim.url("/v1/check/api"))
            .header("x-api-key", "demo-pro-key-0001")
            .send()
            .await
            .expect("check");
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        assert!(cli_on(mport, Some(secret), &["KEYS", "rl:{api:*"]).contains("rl:{api:"));
    })
    .await;
}

/// compose.yaml's cluster node script on a local process: password required
/// (and set as masterauth for its replica role), AOF on, healthcheck passes.
#[test]
fn the_cluster_compose_node_script_requires_its_password() {
    let c = compose("compose.yaml");
    let node = c["services"]["redis1"].clone();
    let secret = "compose-secret-4567";
    let dir = common::TempDir::new("compose-cluster-node");
    let port = common::free_port();
    let conf = dir.0.join("base.conf");
    std::fs::write(
        &conf,
        format!(
            "loadmodule {}\nport {port}\nbind 127.0.0.1\nsave \"\"\n",
            common::module_path().display()
        ),
    )
    .expect("conf");
    let _p = Procs(vec![run_service(
        &node,
        &dir.0,
        &[(
            "/usr/local/etc/redis/redis.conf",
            conf.display().to_string(),
        )],
        &[],
        secret,
    )]);
    wait_until("node", Duration::from_secs(20), || {
        cli_on(port, Some(secret), &["PING"]).contains("PONG")
    });
    assert!(cli_on(port, None, &["PING"]).contains("NOAUTH"));
    assert!(cli_on(port, Some("wrong"), &["PING"]).contains("WRONGPASS"));
    let masterauth = cli_on(port, Some(secret), &["CONFIG", "GET", "masterauth"]);
    assert!(masterauth.contains(secret), "{masterauth}");
    let info = cli_on(port, Some(secret), &["INFO"]);
    assert!(info.contains("cluster_enabled:1") && info.contains("aof_enabled:1"));
    // The healthcheck, pointed at the local port.
    let test = strings(&node["healthcheck"]["test"]);
    assert_eq!(test.first().map(String::as_str), Some("CMD-SHELL"));
    let check = test[1]
        .replace("$$", "$")
        .replace("redis-cli ", &format!("redis-cli -p {port} "));
    let ok = Command::new("/bin/sh")
        .arg("-c")
        .arg(&check)
        .env("REDIS_PASSWORD", secret)
        .status()
        .expect("sh");
    assert!(ok.success(), "healthcheck failed: {check}");
    let bad = Command::new("/bin/sh")
        .arg("-c")
        .arg(&check)
        .env("REDIS_PASSWORD", "wrong")
        .status()
        .expect("sh");
    assert!(!bad.success(), "healthcheck passes with a wrong password");
}
