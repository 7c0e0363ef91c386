//! Network partitions: what a split can over-grant, measured on real nodes in
//! network namespaces (see `netns/`), with an api-shim on each side.
//!
//! The partition cuts one master, with the shim beside it, from every other
//! node for [`PARTITION`], then heals. Clients on both sides send one request
//! per [`PACE`] per limiter to their side's shim: `RL.TOKENBUCKET`,
//! `RL.FIXEDWINDOW`, `RL.SLIDING` EXACT and APPROX (raw endpoints) and a
//! two-limit `RL.LIMITS` policy (`/v1/check`), every one of [`LIMIT`] units
//! that neither refill nor expire during a test.
//!
//! At the split every grant so far is on the replicas (`WAIT`), and `R`, the
//! units left, is read. What is asserted — the bound, never a timing:
//! - each side grants at most `R` during the partition, so the over-grant
//!   (grants on both sides beyond `R`) is at most what the isolated side
//!   grants in its window, never more than `R`;
//! - once the isolated side answers 503 (its master refuses: `NOREPLICAS`,
//!   `CLUSTERDOWN`) it grants nothing more until the heal; where the setting
//!   or the topology stops an isolated master (Cluster; `min-replicas-to-write`)
//!   it does stop before the heal;
//! - the healed state is the majority side's, exactly: `R` minus the majority's
//!   grants since the split, read the same through both shims (the isolated
//!   master's writes are discarded when it rejoins as a replica, never mixed in).
//!
//! Each scenario prints its rows of the table in docs/partitions.md.

mod common;
mod netns;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bounded;
use netns::{cli, role, Group, Topology, DOWN_AFTER_MS, MAX_LAG_S, NODE_TIMEOUT_MS};
use reqwest::StatusCode;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One request per limiter per side this often.
const PACE: Duration = Duration::from_millis(100);
/// How long the split holds.
const PARTITION: Duration = Duration::from_secs(7);
/// Traffic before the split.
const WARM_UP: Duration = Duration::from_millis(600);
/// Every limiter's size.
const LIMIT: i64 = 60;
/// The shims' Redis timeout: long enough that a loaded machine does not turn
/// a grant into a 503 (which would blur the books), short enough to measure.
const TIMEOUT_MS: u64 = 1_000;

/// One limiter the clients hammer.
struct Subject {
    name: &'static str,
    /// Path and query without `cost`.
    path: String,
    /// `X-User` header for the policy.
    user: Option<&'static str>,
}

const USER: &str = "partition-user";

fn subjects(tag: &str) -> Vec<Subject> {
    // Every raw key carries the policy key's hash tag: one slot, one master.
    let k = |s: &str| format!("%7B{tag}%7D{s}");
    let raw = |name, path: String| Subject {
        name,
        path,
        user: None,
    };
    vec![
        raw(
            "tokenbucket",
            format!("/v1/tokenbucket/{}?capacity={LIMIT}&rate=0.001", k("tb")),
        ),
        raw(
            "fixedwindow",
            format!("/v1/fixedwindow/{}?limit={LIMIT}&window=10000000", k("fw")),
        ),
        raw(
            "sliding exact",
            format!(
                "/v1/sliding/{}?limit={LIMIT}&window=3600&mode=exact",
                k("sx")
            ),
        ),
        raw(
            "sliding approx",
            format!(
                "/v1/sliding/{}?limit={LIMIT}&window=10000000&mode=approx",
                k("sa")
            ),
        ),
        Subject {
            name: "RL.LIMITS policy",
            path: "/v1/check/pt?".to_owned(),
            user: Some(USER),
        },
    ]
}

/// Both shims' configuration: fail closed, raw endpoints on, a two-limit
/// policy whose binding limit is a [`LIMIT`]-token bucket.
fn shim_config(redis: &str) -> String {
    format!(
        r#"fail_open = false
[raw]
enabled = true
key_prefix = "raw:"
[identity]
trusted_proxies = ["10.231.0.0/16"]
[policies.pt]
identity_header = "X-User"
identity_kind = "user"
default_tier = "free"
[policies.pt.tiers.free]
limits = [
  {{ name = "burst", algorithm = "tokenbucket", capacity = {LIMIT}, rate = 0.001 }},
  {{ name = "year", algorithm = "fixedwindow", limit = 100000, window = 10000000 }},
]
[redis]
timeout_ms = {TIMEOUT_MS}
{redis}
"#
    )
}

/// One answer a client saw.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    status: StatusCode,
    remaining: Option<i64>,
}

async fn ask(
    http: &reqwest::Client,
    base: &str,
    s: &Subject,
    cost: u64,
) -> Result<Seen, reqwest::Error> {
    let sep = if s.path.ends_with('?') { "" } else { "&" };
    let mut req = http.post(format!("{base}{}{sep}cost={cost}", s.path));
    if let Some(u) = s.user {
        req = req.header("x-user", u);
    }
    let at = Instant::now();
    let r = req.send().await?;
    let remaining = r
        .headers()
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok(Seen {
        at,
        status: r.status(),
        remaining,
    })
}

/// A cost-0 inspect, asked again while it answers 503 (up to `secs`).
async fn inspect(http: &reqwest::Client, base: &str, s: &Subject, secs: u64) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let x = ask(http, base, s, 0).await.expect("the shim answers");
        if x.status == StatusCode::OK || Instant::now() > deadline {
            return x;
        }
        tokio::time::sleep(PACE).await;
    }
}

/// One request per [`PACE`] until `stop`; the answers in order.
async fn hammer(
    http: reqwest::Client,
    base: String,
    s: Arc<Subject>,
    stop: Arc<AtomicBool>,
    gate: Arc<tokio::sync::RwLock<()>>,
) -> Vec<Seen> {
    let mut seen = vec![];
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bounded in count as well: 1,000 × 100 ms = 100 s.
    for _ in 0..1_000 {
        tick.tick().await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let _no_split_meanwhile = gate.read().await;
        match ask(&http, &base, &s, 1).await {
            Ok(x) => seen.push(x),
            Err(e) => panic!("{}: the shim itself failed: {e}", s.name),
        }
    }
    seen
}

/// Clients on one side: one task per subject.
struct Side {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Seen>>>,
}

impl Side {
    fn start(
        http: &reqwest::Client,
        base: &str,
        subjects: &[Arc<Subject>],
        gate: &Arc<tokio::sync::RwLock<()>>,
    ) -> Side {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = subjects
            .iter()
            .map(|s| {
                tokio::spawn(hammer(
                    http.clone(),
                    base.to_owned(),
                    s.clone(),
                    stop.clone(),
                    gate.clone(),
                ))
            })
            .collect();
        Side { stop, tasks }
    }

    async fn finish(self) -> Vec<Vec<Seen>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = vec![];
        for t in self.tasks {
            all.push(t.await.expect("client task"));
        }
        all
    }
}

/// One row of the table.
struct Row {
    subject: &'static str,
    /// Units left at the split.
    left: i64,
    isolated: i64,
    majority: i64,
    /// From the split to the isolated side's last answer other than 503
    /// (None: it never stopped before the heal).
    isolated_window: Option<Duration>,
    /// From the split to the majority side's first answer other than 503.
    majority_outage: Duration,
}

impl Row {
    fn over_grant(&self) -> i64 {
        (self.isolated + self.majority - self.left).max(0)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn granted(xs: &[Seen], from: Instant, to: Instant) -> i64 {
    xs.iter()
        .filter(|x| x.at >= from && x.at < to && x.status == StatusCode::OK)
        .count() as i64
}

/// The policy key's hash tag and the namespace of its master: under Cluster
/// found from a grant through `shim` (the key is on one master); under
/// Sentinel the first node.
async fn policy_home(group: &Group, http: &reqwest::Client, shim: &str) -> (String, usize) {
    if group.topology == Topology::Sentinel {
        return ("pt".to_owned(), 0);
    }
    let policy = subjects("x").pop().expect("policy subject");
    let x = ask(http, shim, &policy, 1).await.expect("probe");
    assert_eq!(x.status, StatusCode::OK, "probe grant");
    for &i in &group.nodes {
        let admin = &group.lab.ns[i].admin;
        if let Some(key) = cli(admin, 6379, &["KEYS", "rl:*"])
            .lines()
            .find(|k| k.contains('{'))
        {
            let tag = key
                .split_once('{')
                .and_then(|(_, r)| r.split_once('}'))
                .map(|(t, _)| t.to_owned())
                .expect("hash tag");
            let slot: u16 = cli(admin, 6379, &["CLUSTER", "KEYSLOT", key])
                .trim()
                .parse()
                .expect("slot");
            let home = group.master_of_slot(slot).expect("the slot's master");
            return (tag, home);
        }
    }
    panic!("the policy key is on no node");
}

/// One scenario: a group, a split of the policy key's master, the books.
/// `None` when the kernel refuses network namespaces here.
async fn scenario(topology: Topology, min_replicas: bool) -> Option<Vec<Row>> {
    let label = format!(
        "{topology:?} / {}",
        if min_replicas {
            "min-replicas"
        } else {
            "defaults"
        }
    );
    let mut group = match tokio::task::spawn_blocking(move || Group::start(topology, min_replicas))
        .await
        .expect("start")
    {
        Ok(g) => g,
        Err(e) if e.contains("Operation not permitted") || e.contains("Permission denied") => {
            println!("skipped: network namespaces are not permitted here: {e}");
            return None;
        }
        Err(e) => panic!("{label}: the lab: {e}"),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let config = shim_config(&group.shim_redis());
    let spare = group.spare;
    let majority = group.start_shim(spare, &config);
    let (tag, home) = policy_home(&group, &http, &majority).await;
    let isolated = group.start_shim(home, &config);
    let subjects: Vec<Arc<Subject>> = subjects(&tag).into_iter().map(Arc::new).collect();
    for s in &subjects {
        for base in [&isolated, &majority] {
            let x = inspect(&http, base, s, 20).await;
            assert_eq!(x.status, StatusCode::OK, "{label} / {}: ready", s.name);
        }
    }

    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let side_a = Side::start(&http, &isolated, &subjects, &gate);
    let side_b = Side::start(&http, &majority, &subjects, &gate);
    tokio::time::sleep(WARM_UP).await;

    // The split: between two requests of every client, every grant so far on
    // the replicas, the units left read once.
    let mut left = vec![];
    let split = {
        let _no_request_in_flight = gate.write().await;
        let probe = format!("{{{tag}}}probe");
        let replicas = group.replicas_per_master();
        let group_ref = &group;
        tokio::task::block_in_place(|| group_ref.quiesce(home, &probe, replicas));
        for s in &subjects {
            let x = inspect(&http, &majority, s, 5).await;
            assert_eq!(
                x.status,
                StatusCode::OK,
                "{label} / {}: at the split",
                s.name
            );
            left.push(x.remaining.expect("remaining"));
        }
        group.lab.partition(home);
        Instant::now()
    };
    tokio::time::sleep(PARTITION).await;
    // The isolated side's clients stop before the heal: whatever they were
    // granted was granted by the isolated master alone.
    let seen_a = side_a.finish().await;
    group.lab.heal(home);
    let healed = Instant::now();

    // The isolated side rejoins: its old master demoted, its shim answering
    // from the healed group.
    let home_admin = group.lab.ns[home].admin.clone();
    let deadline = Instant::now() + Duration::from_secs(40);
    while role(&home_admin) != "slave" {
        assert!(
            Instant::now() < deadline,
            "{label}: old master never demoted"
        );
        tokio::time::sleep(PACE).await;
    }
    for s in &subjects {
        let x = inspect(&http, &isolated, s, 40).await;
        assert_eq!(
            x.status,
            StatusCode::OK,
            "{label} / {}: isolated side rejoins",
            s.name
        );
    }
    let rejoined = healed.elapsed();
    for s in &subjects {
        let x = inspect(&http, &majority, s, 30).await;
        assert_eq!(
            x.status,
            StatusCode::OK,
            "{label} / {}: majority serves",
            s.name
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen_b = side_b.finish().await;

    let mut rows = vec![];
    for (i, s) in subjects.iter().enumerate() {
        let who = format!("{label} / {}", s.name);
        let (a, b) = (&seen_a[i], &seen_b[i]);
        for x in a.iter().chain(b) {
            assert!(
                [
                    StatusCode::OK,
                    StatusCode::TOO_MANY_REQUESTS,
                    StatusCode::SERVICE_UNAVAILABLE
                ]
                .contains(&x.status),
                "{who}: only grants, denials and 503 are expected, got {x:?}"
            );
        }
        let after_split: Vec<Seen> = a.iter().filter(|x| x.at >= split).copied().collect();
        // The isolated master's window: until the isolated side's last
        // answer other than 503 (a grant or a denial from its own copy). A
        // single 503 inside it can be the shim's own: under Cluster the
        // cached NORMAL/DEGRADED flag lives on another master, and the one
        // request that refreshes it spends its whole timeout.
        let last_answer = after_split
            .iter()
            .rev()
            .find(|x| x.status != StatusCode::SERVICE_UNAVAILABLE)
            .map_or(split, |x| x.at);
        let stopped = after_split
            .last()
            .is_some_and(|x| x.status == StatusCode::SERVICE_UNAVAILABLE);
        if min_replicas || topology == Topology::Cluster {
            assert!(
                stopped,
                "{who}: the isolated master kept answering through the whole partition: {}",
                after_split
                    .iter()
                    .map(|x| format!(
                        "{}@{}",
                        x.status.as_u16(),
                        x.at.duration_since(split).as_millis()
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let row = Row {
            subject: s.name,
            left: left[i],
            isolated: granted(a, split, healed),
            majority: granted(b, split, healed),
            isolated_window: stopped.then(|| last_answer.duration_since(split)),
            majority_outage: b
                .iter()
                .find(|x| x.at >= split && x.status != StatusCode::SERVICE_UNAVAILABLE)
                .map(|x| x.at.duration_since(split))
                .unwrap_or_else(|| split.elapsed()),
        };
        // The majority side follows the failover while the split lasts,
        // except where the promoted master has no replica of its own and the
        // setting makes it refuse (Cluster with one replica per master).
        if !(min_replicas && topology == Topology::Cluster) {
            assert!(
                row.majority_outage < healed.duration_since(split),
                "{who}: the majority side answered only 503 until the heal"
            );
        }
        // The bound: neither side grants beyond what was left at the split.
        assert!(
            row.isolated <= row.left,
            "{who}: isolated side over its budget"
        );
        assert!(
            row.majority <= row.left,
            "{who}: majority side over its budget"
        );
        assert!(
            row.over_grant() <= row.isolated,
            "{who}: over-grant beyond the isolated side's"
        );

        // The healed state is the majority's, read alike on both sides.
        let now_b = inspect(&http, &majority, s, 10).await;
        let now_a = inspect(&http, &isolated, s, 10).await;
        assert_eq!(now_b.status, StatusCode::OK, "{who}: final inspect");
        let remaining = now_b.remaining.expect("remaining");
        let since_split = granted(b, split, Instant::now());
        assert_eq!(
            row.left - remaining,
            since_split,
            "{who}: after the heal the state must be the majority's exactly \
             (isolated grants discarded: {})",
            row.isolated
        );
        assert_eq!(
            (now_a.status, now_a.remaining),
            (StatusCode::OK, Some(remaining)),
            "{who}: both sides read the same healed state"
        );
        rows.push(row);
    }
    for r in &rows {
        println!(
            "| {:?} | {} | {} | {} | {} | {} | {} | {} | {} | majority's; isolated side back {} after the heal |",
            topology,
            if min_replicas {
                "min-replicas-to-write 1"
            } else {
                "defaults"
            },
            r.subject,
            r.left,
            r.isolated,
            r.majority,
            r.over_grant(),
            r.isolated_window
                .map_or_else(|| format!("whole split ({})", ms(PARTITION)), ms),
            ms(r.majority_outage),
            ms(rejoined),
        );
    }
    Some(rows)
}

fn table_header() {
    println!(
        "settings: cluster-node-timeout {NODE_TIMEOUT_MS} ms, down-after-milliseconds {DOWN_AFTER_MS} ms, \
         min-replicas-max-lag {MAX_LAG_S} s; split {} s; one request per {} ms per limiter per side",
        PARTITION.as_secs(),
        PACE.as_millis()
    );
    println!(
        "| topology | setting | limiter | left at split (of {LIMIT}) | isolated side granted (discarded at heal) | majority side granted | over-grant beyond what was left | isolated window | majority 503 window | state after heal |"
    );
}

async fn both_settings(topology: Topology) {
    let _one = SERIAL.lock().await;
    bounded(200, async {
        table_header();
        for min_replicas in [false, true] {
            if scenario(topology, min_replicas).await.is_none() {
                return;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_partition_over_grants_at_most_what_the_isolated_master_grants_in_its_window() {
    both_settings(Topology::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_partition_over_grants_at_most_what_the_isolated_master_grants_in_its_window() {
    both_settings(Topology::Sentinel).await;
}

/// The word after `name` in `text` (a flag's or a directive's value).
fn value_after(text: &str, name: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == name)?;
    words.next()?.parse().ok()
}

/// The shipped compose files carry the setting measured above, with a lag
/// that stops an isolated master (within lag + 1 s: replicas acknowledge once
/// a second) no later than its failure timeout would.
#[test]
fn the_shipped_configs_stop_an_isolated_master_within_its_failure_timeout() {
    let docker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
    for (file, timeout) in [
        ("compose.yaml", "--cluster-node-timeout"),
        ("compose.sentinel.yaml", "down-after-milliseconds"),
    ] {
        let text = std::fs::read_to_string(docker.join(file)).expect("compose file");
        let text = text.replace("mymaster", "");
        assert_eq!(
            value_after(&text, "--min-replicas-to-write"),
            Some(1),
            "{file}: min-replicas-to-write"
        );
        let lag = value_after(&text, "--min-replicas-max-lag").expect("min-replicas-max-lag");
        let timeout_ms = value_after(&text, timeout).expect("failure timeout");
        assert!(
            (lag + 1) * 1_000 <= timeout_ms,
            "{file}: max-lag {lag} s does not stop an isolated master before {timeout} {timeout_ms} ms"
        );
    }
}
