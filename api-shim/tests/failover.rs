//! Failovers lose no grant: real masters, replicas, sentinels and cluster
//! nodes on 127.0.0.1, one in-process shim that is never restarted, and a
//! client per limiter sending one request every 20 ms through the event.
//!
//! Every limiter is large (nothing refills or expires during a test), so the
//! books must balance exactly: after recovery, `limit - remaining` read
//! through the shim (`cost=0`) equals the grants the clients counted, and the
//! grants after the event equal the drop in `remaining` since the last answer
//! before it. A grant handed out by a master that is then demoted (lost when
//! the replica takes over, so the caller gets a fresh budget) shows up as
//! `remaining` higher than the books say: docs/commands.md ("Correctness
//! across nodes") says limits continue through a failover.
//!
//! Covered for each of `RL.TOKENBUCKET`, `RL.FIXEDWINDOW`, `RL.SLIDING`
//! EXACT and APPROX (raw endpoints under the `raw:` prefix) and a two-limit
//! policy decision (`/v1/check`), through:
//! - Sentinel: graceful `SENTINEL FAILOVER`, SIGKILL of the master;
//! - Cluster: `CLUSTER FAILOVER` on a replica, SIGKILL of a master.
//!
//! The tests run one at a time (a process-wide lock): each starts up to six
//! servers and depends on failure detectors with one-second timeouts, which a
//! neighbour test hogging both cores would make slower, not more thorough.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, loopback_urls, wait_until, InProcessShim};
use reqwest::StatusCode;
use rl_testkit::{
    field, redis_cli, role, sentinel_master_port, Cluster, Flavor, SentinelGroup, Server,
};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One request every this often, per limiter.
const PACE: Duration = Duration::from_millis(20);
/// The shim's Redis timeout: a production-like 250 ms, so a dead master
/// answers 503 quickly instead of holding the caller.
const TIMEOUT_MS: u64 = 250;
/// No answer may take longer than this, outage or not.
const SLOWEST_ALLOWED: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- the limiters under test

/// One limiter a client hammers: its check URL path and its full size.
struct Subject {
    name: &'static str,
    /// Path and query without `cost`.
    path: String,
    /// `X-User` header for the policy subject.
    user: Option<&'static str>,
    full: i64,
}

fn subjects(tag: &str) -> Vec<Subject> {
    // `tag` is a cluster hash tag (or any string): every raw key shares it.
    let k = |s: &str| format!("%7B{tag}%7D{s}");
    vec![
        Subject {
            name: "tokenbucket",
            path: format!("/v1/tokenbucket/{}?capacity=100000&rate=0.001", k("tb")),
            user: None,
            full: 100_000,
        },
        Subject {
            name: "fixedwindow",
            path: format!("/v1/fixedwindow/{}?limit=100000&window=10000000", k("fw")),
            user: None,
            full: 100_000,
        },
        Subject {
            name: "sliding exact",
            path: format!("/v1/sliding/{}?limit=4000&window=3600&mode=exact", k("sx")),
            user: None,
            full: 4_000,
        },
        Subject {
            name: "sliding approx",
            path: format!(
                "/v1/sliding/{}?limit=100000&window=10000000&mode=approx",
                k("sa")
            ),
            user: None,
            full: 100_000,
        },
        Subject {
            name: "policy (RL.LIMITS)",
            path: "/v1/check/fo?".to_owned(),
            user: Some("failover-user"),
            full: 100_000,
        },
    ]
}

/// The shim's configuration: fail closed, raw endpoints on under `raw:`, and
/// a policy whose binding limit is the large bucket.
fn shim_config(redis: &str) -> api_shim::config::Config {
    let text = format!(
        r#"listen = "127.0.0.1:0"
fail_open = false
[raw]
enabled = true
key_prefix = "raw:"
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.fo]
identity_header = "X-User"
identity_kind = "user"
default_tier = "free"
[policies.fo.tiers.free]
limits = [
  {{ name = "burst", algorithm = "tokenbucket", capacity = 100000, rate = 0.001 }},
  {{ name = "year", algorithm = "fixedwindow", limit = 200000, window = 10000000 }},
]
[redis]
timeout_ms = {TIMEOUT_MS}
{redis}
"#
    );
    api_shim::config::Config::from_toml(&text, |_| None).expect("config")
}

/// One answer the client saw.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    status: StatusCode,
    remaining: Option<i64>,
    took: Duration,
}

async fn ask(
    http: &reqwest::Client,
    shim: &InProcessShim,
    s: &Subject,
    cost: u64,
) -> Result<Seen, reqwest::Error> {
    let sep = if s.path.ends_with('?') { "" } else { "&" };
    let mut req = http.post(shim.url(&format!("{}{sep}cost={cost}", s.path)));
    if let Some(u) = s.user {
        req = req.header("x-user", u);
    }
    let start = Instant::now();
    let r = req.send().await?;
    let took = start.elapsed();
    let remaining = r
        .headers()
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok(Seen {
        at: start,
        status: r.status(),
        remaining,
        took,
    })
}

/// Sends one request every [`PACE`] until `stop`; answers in order.
async fn hammer(
    http: reqwest::Client,
    shim: Arc<InProcessShim>,
    s: Arc<Subject>,
    stop: Arc<AtomicBool>,
    gate: Arc<tokio::sync::RwLock<()>>,
) -> Vec<Seen> {
    let mut seen = vec![];
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bounded in count as well as by `stop`: 3,000 × 20 ms = 60 s.
    for _ in 0..3_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        tick.tick().await;
        let _between_events = gate.read().await;
        match ask(&http, &shim, &s, 1).await {
            Ok(x) => seen.push(x),
            Err(e) => panic!("{}: the shim itself failed: {e}", s.name),
        }
    }
    seen
}

/// Traffic on every subject while `event` runs, then the books.
struct Run {
    shim: Arc<InProcessShim>,
    subjects: Vec<Arc<Subject>>,
    /// Grants counted so far per subject, over every event of the test.
    spent: std::sync::Mutex<Vec<i64>>,
}

/// What makes the moment of an event clean: the node we write to and how
/// many replicas must hold every write made so far (`WAIT n 2000` before each
/// event, as an operator running a planned failover would).
///
/// Without it a SIGKILL can land between a master answering a grant and its
/// replica receiving it, the asynchronous-replication window that only `WAIT`
/// after every grant closes (see the README); or while a request is in
/// flight, whose 503 then may or may not have been counted by Redis. Neither
/// says anything about how the shim follows a failover, which is what these
/// tests check to the unit.
struct Quiesce {
    port: u16,
    /// A key on `port` (same slot as the limiters under Cluster).
    probe_key: String,
    replicas: u32,
}

impl Quiesce {
    fn run(&self) {
        // WAIT counts acknowledgements of this connection's last write, so
        // write first, on the same connection: every earlier write is before
        // it in the stream.
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to the node to quiesce");
        let acked: redis::RedisResult<i64> = redis::pipe()
            .cmd("SET")
            .arg(&self.probe_key)
            .arg(1)
            .ignore()
            .cmd("WAIT")
            .arg(self.replicas)
            .arg(2000)
            .query::<(i64,)>(&mut c)
            .map(|(n,)| n);
        assert_eq!(
            acked.as_ref().ok(),
            Some(&i64::from(self.replicas)),
            "WAIT {}: {acked:?}",
            self.replicas
        );
    }
}

/// What one failover looked like from one client.
#[derive(Debug)]
struct Figures {
    granted: i64,
    requests: usize,
    unavailable: usize,
    /// From the first 503 to the first grant after it.
    window: Duration,
    slowest: Duration,
    /// Median time to answer a 503.
    median_503: Duration,
}

impl Run {
    async fn new(redis: &str, tag: &str) -> Run {
        let shim = Arc::new(InProcessShim::start(shim_config(redis)).await);
        let subjects: Vec<Arc<Subject>> = subjects(tag).into_iter().map(Arc::new).collect();
        let spent = std::sync::Mutex::new(vec![0; subjects.len()]);
        Run {
            shim,
            subjects,
            spent,
        }
    }

    /// Sends traffic, runs `event` once traffic flows (on a blocking thread:
    /// it waits on processes), keeps going until every client has been
    /// granted again for a while after the event, and checks the books.
    async fn through(
        &self,
        label: &str,
        quiesce: Quiesce,
        event: impl FnOnce() + Send + 'static,
        settle: impl FnOnce() + Send + 'static,
    ) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let tasks: Vec<_> = self
            .subjects
            .iter()
            .map(|s| {
                tokio::spawn(hammer(
                    http.clone(),
                    self.shim.clone(),
                    s.clone(),
                    stop.clone(),
                    gate.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let event_at = Instant::now();
        {
            // Between two requests of every client, with every grant so far
            // on the replicas: the event does not land inside a write.
            let _no_request_in_flight = gate.write().await;
            tokio::task::spawn_blocking(move || {
                quiesce.run();
                event();
            })
            .await
            .expect("event");
        }
        tokio::task::spawn_blocking(settle).await.expect("settle");
        // Recovered: every client got a grant after the event (polled on a
        // cost-0 inspect so the hammering clients keep their own books).
        let deadline = Instant::now() + Duration::from_secs(30);
        for s in &self.subjects {
            loop {
                let x = ask(&http, &self.shim, s, 0).await.expect("inspect");
                if x.status == StatusCode::OK {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{label}: {} did not recover",
                    s.name
                );
                tokio::time::sleep(PACE).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        stop.store(true, Ordering::SeqCst);
        let mut all = vec![];
        for t in tasks {
            all.push(t.await.expect("client task"));
        }
        for (i, (s, seen)) in self.subjects.iter().zip(&all).enumerate() {
            let before: i64 = self.spent.lock().expect("books")[i];
            let f = self.books(label, s, seen, before, event_at, &http).await;
            self.spent.lock().expect("books")[i] += f.granted;
            eprintln!(
                "{label} / {}: {} requests, {} answered 503 over {} ms (median 503 in {} ms), slowest {} ms, grants lost 0",
                s.name,
                f.requests,
                f.unavailable,
                f.window.as_millis(),
                f.median_503.as_millis(),
                f.slowest.as_millis()
            );
        }
    }

    async fn books(
        &self,
        label: &str,
        s: &Subject,
        seen: &[Seen],
        spent_before: i64,
        event_at: Instant,
        http: &reqwest::Client,
    ) -> Figures {
        let who = format!("{label} / {}", s.name);
        for x in seen {
            assert!(
                x.status == StatusCode::OK || x.status == StatusCode::SERVICE_UNAVAILABLE,
                "{who}: only grants and 503 are expected, got {x:?}"
            );
        }
        let slowest = seen.iter().map(|x| x.took).max().unwrap_or_default();
        assert!(
            slowest < SLOWEST_ALLOWED,
            "{who}: an answer took {slowest:?}"
        );
        let granted = |xs: &[Seen]| xs.iter().filter(|x| x.status == StatusCode::OK).count() as i64;
        // Requests sent before the event began.
        let split = seen
            .iter()
            .position(|x| x.at >= event_at)
            .unwrap_or(seen.len());
        let (before, after) = seen.split_at(split);
        let last_before = before
            .iter()
            .rev()
            .find(|x| x.status == StatusCode::OK)
            .and_then(|x| x.remaining)
            .unwrap_or_else(|| panic!("{who}: no grant before the event"));
        assert!(granted(after) > 0, "{who}: no grant after the event");

        // A cost-0 inspect changes nothing, so a 503 (a stall of this loaded
        // machine past `timeout_ms`) is simply asked again.
        let mut now = ask(http, &self.shim, s, 0).await.expect("final inspect");
        for _ in 0..50 {
            if now.status != StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            tokio::time::sleep(PACE).await;
            now = ask(http, &self.shim, s, 0).await.expect("final inspect");
        }
        assert_eq!(now.status, StatusCode::OK, "{who}: final inspect");
        let remaining = now.remaining.expect("remaining header");
        assert_eq!(
            last_before - remaining,
            granted(after),
            "{who}: grants after the event must equal the drop in remaining \
             (503s after the event: {})",
            after
                .iter()
                .filter(|x| x.status == StatusCode::SERVICE_UNAVAILABLE)
                .count()
        );
        assert_eq!(
            s.full - remaining,
            spent_before + granted(seen),
            "{who}: every grant the clients counted is on the books"
        );

        let unavailable: Vec<&Seen> = seen
            .iter()
            .filter(|x| x.status == StatusCode::SERVICE_UNAVAILABLE)
            .collect();
        let window = match unavailable.first() {
            Some(first) => seen
                .iter()
                .filter(|x| x.at > first.at && x.status == StatusCode::OK)
                .map(|x| x.at.duration_since(first.at))
                .next()
                .unwrap_or_default(),
            None => Duration::ZERO,
        };
        Figures {
            granted: granted(seen),
            requests: seen.len(),
            unavailable: unavailable.len(),
            window,
            slowest,
            median_503: {
                let mut t: Vec<Duration> = unavailable.iter().map(|x| x.took).collect();
                t.sort();
                t.get(t.len() / 2).copied().unwrap_or_default()
            },
        }
    }
}

// ---------------------------------------------------------------- Sentinel

/// The shim's `[redis.sentinel]` table: the group's three sentinels.
fn sentinel_redis(group: &SentinelGroup) -> String {
    let ports: Vec<u16> = group.sentinels.iter().map(|s| s.port).collect();
    let nodes = loopback_urls("redis", &ports);
    format!("[redis.sentinel]\nmaster = \"mymaster\"\nnodes = [{nodes}]")
}

/// Every write so far on both replicas before the event.
fn sentinel_quiesce(master: u16) -> Quiesce {
    Quiesce {
        port: master,
        probe_key: "failover:probe".to_owned(),
        replicas: 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_graceful_failover_loses_no_grant_on_any_limiter() {
    let _one = SERIAL.lock().await;
    bounded(120, async {
        let group = SentinelGroup::start();
        let old = group.nodes[0].port;
        let run = Run::new(&sentinel_redis(&group), "fo").await;
        let sentinel = group.sentinels[0].port;
        run.through(
            "SENTINEL FAILOVER",
            sentinel_quiesce(old),
            move || {
                let ok = redis_cli(sentinel, &[], &["SENTINEL", "FAILOVER", "mymaster"]);
                assert!(ok.contains("OK"), "SENTINEL FAILOVER: {ok}");
            },
            move || {
                wait_until("a replica promoted", Duration::from_secs(20), || {
                    let m = sentinel_master_port(sentinel);
                    m != 0 && m != old
                })
            },
        )
        .await;
        let new = sentinel_master_port(sentinel);
        assert_ne!(new, old);
        assert_eq!(role(new), "master");
        // The old master is demoted in the end, so what it granted after the
        // promotion would have vanished: the books above prove there was none.
        wait_until("old master demoted", Duration::from_secs(30), || {
            role(old) == "slave"
        });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_sigkill_of_the_master_loses_no_grant_on_any_limiter() {
    let _one = SERIAL.lock().await;
    bounded(120, async {
        let mut group = SentinelGroup::start();
        let old = group.nodes[0].port;
        let run = Run::new(&sentinel_redis(&group), "fo").await;
        let sentinel = group.sentinels[0].port;
        let mut master = group.nodes.remove(0);
        run.through(
            "SIGKILL master (Sentinel)",
            sentinel_quiesce(old),
            move || master.kill(),
            move || {
                wait_until("a replica promoted", Duration::from_secs(30), || {
                    let m = sentinel_master_port(sentinel);
                    m != 0 && m != old
                })
            },
        )
        .await;
        assert_eq!(role(sentinel_master_port(sentinel)), "master");
    })
    .await;
}

// ---------------------------------------------------------------- Cluster

/// The shim's `cluster = [...]` line: every node a seed.
fn cluster_redis(cluster: &Cluster) -> String {
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    format!("cluster = [{}]", loopback_urls("redis", &ports))
}

/// The port of the live master that serves `slot` (0 when none does).
fn master_of(cluster: &Cluster, slot: u16) -> u16 {
    cluster.owner(i64::from(slot)).map_or(0, |m| m.port)
}

/// The hash tag of the policy key the shim writes for the test user, so the
/// raw keys land in the same slot and one failover hits every subject.
async fn policy_tag(cluster: &Cluster) -> (String, u16) {
    let shim = InProcessShim::start(shim_config(&cluster_redis(cluster))).await;
    let http = reqwest::Client::new();
    let s = subjects("x").pop().expect("policy subject");
    let x = ask(&http, &shim, &s, 0).await.expect("policy inspect");
    assert_eq!(x.status, StatusCode::OK);
    let x = ask(&http, &shim, &s, 1).await.expect("policy grant");
    assert_eq!(x.status, StatusCode::OK);
    for n in &cluster.nodes {
        let keys = redis_cli(n.port, &[], &["KEYS", "rl:*"]);
        if let Some(k) = keys.lines().find(|k| k.contains('{')) {
            let tag = k
                .split_once('{')
                .and_then(|(_, r)| r.split_once('}'))
                .map(|(t, _)| t.to_owned())
                .expect("hash tag");
            let slot: u16 = redis_cli(n.port, &[], &["CLUSTER", "KEYSLOT", k])
                .trim()
                .parse()
                .expect("slot");
            return (tag, slot);
        }
    }
    panic!("the policy key was not found on any node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_manual_failover_then_sigkill_of_the_master_lose_no_grant() {
    let _one = SERIAL.lock().await;
    bounded(150, async {
        // Three masters with one replica each; failure detection after 1 s.
        let mut cluster = Cluster::start(Flavor::Redis, 1, 1000);
        let (tag, slot) = policy_tag(&cluster).await;
        let run = Run::new(&cluster_redis(&cluster), &tag).await;
        // The probe in policy_tag granted one; the books start from there.
        if let Some(policy) = run.spent.lock().expect("books").last_mut() {
            *policy = 1;
        }

        // 1. Manual failover: the replica of the slot's master takes over.
        let master = master_of(&cluster, slot);
        let replica = cluster.replica_of(master).map_or(0, |r| r.port);
        assert!(
            master != 0 && replica != 0,
            "slot {slot}: {master}/{replica}"
        );
        let probe_key = format!("{{{tag}}}probe");
        run.through(
            "CLUSTER FAILOVER",
            Quiesce {
                port: master,
                probe_key: probe_key.clone(),
                replicas: 1,
            },
            move || {
                let ok = redis_cli(replica, &[], &["CLUSTER", "FAILOVER"]);
                assert!(ok.contains("OK"), "CLUSTER FAILOVER: {ok}");
            },
            move || {
                // Both sides: the old master may claim the slot until it learns.
                wait_until(
                    "replica promoted, old master demoted",
                    Duration::from_secs(20),
                    || role(replica) == "master" && role(master) == "slave",
                )
            },
        )
        .await;
        assert_eq!(master_of(&cluster, slot), replica);

        // 2. SIGKILL of that (new) master: the old one, now its replica, takes over.
        wait_until(
            "old master follows the new one",
            Duration::from_secs(15),
            || {
                field(
                    &redis_cli(master, &[], &["INFO", "replication"]),
                    "master_link_status",
                )
                .as_deref()
                    == Some("up")
            },
        );
        let idx = cluster
            .nodes
            .iter()
            .position(|n| n.port == replica)
            .expect("node");
        let mut victim = cluster.nodes.remove(idx);
        run.through(
            "SIGKILL master (Cluster)",
            Quiesce {
                port: replica,
                probe_key,
                replicas: 1,
            },
            move || victim.kill(),
            move || {
                wait_until(
                    "replica promoted after the kill",
                    Duration::from_secs(30),
                    || role(master) == "master",
                )
            },
        )
        .await;
        assert_eq!(master_of(&cluster, slot), master);
    })
    .await;
}

// ---------------------------------------------------------------- refusals that mean "not now"

/// The server itself refuses a limiter call with `code` (so the shim's 503
/// below is about that code, not some other failure).
fn assert_refuses(port: u16, code: &str) {
    let said = redis_cli(port, &[], &["RL.TOKENBUCKET", "raw:k", "10", "1", "1"]);
    assert!(
        said.starts_with(code),
        "port {port} said {said:?}, not {code}"
    );
}

/// `POST` a raw token-bucket decision; its status and fail-open marker.
async fn raw_status(shim: &InProcessShim) -> (StatusCode, Option<String>) {
    let r = reqwest::Client::new()
        .post(shim.url("/v1/tokenbucket/k?capacity=10&rate=1"))
        .send()
        .await
        .expect("shim answers");
    let marker = r
        .headers()
        .get("x-ratelimit-fail-open")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (r.status(), marker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noreplicas_readonly_and_masterdown_are_unavailable_not_the_callers_fault() {
    let _one = SERIAL.lock().await;
    bounded(60, async {
        // NOREPLICAS: a master below `min-replicas-to-write`.
        let lonely = Server::start_with(Flavor::Redis, &["--min-replicas-to-write", "1"]);
        assert_refuses(lonely.port, "NOREPLICAS");
        let closed = InProcessShim::start(common::config(&lonely.url(), "")).await;
        assert_eq!(raw_status(&closed).await.0, StatusCode::SERVICE_UNAVAILABLE);
        let open = InProcessShim::start(common::config(&lonely.url(), "fail_open = true")).await;
        assert_eq!(
            raw_status(&open).await,
            (StatusCode::OK, Some("1".to_owned())),
            "fail-open lets the request through, marked"
        );

        // READONLY: a replica.
        let mut master = Server::start(Flavor::Redis);
        let of = master.port.to_string();
        let replica = Server::start_with(Flavor::Redis, &["--replicaof", "127.0.0.1", &of]);
        assert_refuses(replica.port, "READONLY");
        let shim = InProcessShim::start(common::config(&replica.url(), "")).await;
        assert_eq!(raw_status(&shim).await.0, StatusCode::SERVICE_UNAVAILABLE);

        // MASTERDOWN: a writable replica that must not serve stale data, its
        // master gone.
        let stale = Server::start_with(
            Flavor::Redis,
            &[
                "--replicaof",
                "127.0.0.1",
                &of,
                "--replica-read-only",
                "no",
                "--replica-serve-stale-data",
                "no",
            ],
        );
        master.kill();
        wait_until(
            "replica sees its master down",
            Duration::from_secs(15),
            || {
                field(
                    &redis_cli(stale.port, &[], &["INFO", "replication"]),
                    "master_link_status",
                )
                .as_deref()
                    == Some("down")
            },
        );
        assert_refuses(stale.port, "MASTERDOWN");
        let shim = InProcessShim::start(common::config(&stale.url(), "")).await;
        assert_eq!(raw_status(&shim).await.0, StatusCode::SERVICE_UNAVAILABLE);
    })
    .await;
}
