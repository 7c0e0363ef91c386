//! Sentinel mode: write only to the master Sentinel names, and stop writing
//! the moment a failover starts.
//!
//! Asking Sentinel again after an I/O error or `READONLY` is not enough: in a
//! graceful failover (`SENTINEL FAILOVER`, or a replica promoted while the old
//! master is merely unreachable from the sentinels) the old master keeps
//! accepting writes for seconds after a replica was promoted. Every grant it
//! hands out in that time vanishes when it is demoted and resyncs.
//! `+switch-master` alone also comes too late: the leader publishes it only
//! after reconfiguring the other replicas, while the promoted one already
//! serves.
//!
//! So we subscribe on *every* sentinel (only the leader announces a failover)
//! and keep one fence per sentinel:
//!
//! - a start event (`+try-failover`, `+elected-leader`, `+selected-slave`,
//!   `+failover-state-*`, `+promoted-slave`) about the master we write to
//!   raises that sentinel's fence: requests answer "unavailable" (503, or
//!   fail-open) without touching Redis;
//! - `-failover-abort-*` lowers that sentinel's fence;
//! - `+switch-master` names the new master and lowers every fence.
//!
//! A (re)subscription asks the sentinel `SENTINEL MASTER` whether a failover
//! is in progress, so a shim started mid-failover, or a sentinel link that
//! dropped and came back, starts with the right fence. A sentinel whose link
//! is down keeps its fence as it was: lowering it could let us write to a
//! demoted master.
//!
//! Every new master connection is confirmed with `ROLE` before its first
//! write; the backend drops the connection on `READONLY`, `MASTERDOWN`,
//! `NOREPLICAS`, `LOADING` or a connection error and resolves again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Value};

use crate::config::{Config, RedisAuth};
use crate::connection::client_for;

/// Sentinel events that start (or advance) a failover of a master.
const START_EVENTS: [&str; 9] = [
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+failover-end",
];
/// A finished failover: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
const SWITCH_EVENT: &str = "+switch-master";
/// `-failover-abort-not-elected`, `-no-good-slave`, `-slave-timeout`, …
const ABORT_PATTERN: &str = "-failover-abort-*";
const ABORT_PREFIX: &str = "-failover-abort-";

/// Pause between attempts to (re)subscribe to a sentinel.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);
/// How often a live subscription is pinged (and the backend's liveness checked).
const PING_EVERY: Duration = Duration::from_secs(1);
/// After a failed attempt to reach the master, requests fail at once for this
/// long instead of each asking every sentinel again (a dead master would
/// otherwise cost a connection storm); a failover event ends it early.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// `host:port` of a Redis node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl Addr {
    fn parse(host: &str, port: &str) -> Option<Addr> {
        Some(Addr {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What one Sentinel message means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A failover of the master at this address started or advanced
    /// (`None`: the payload named no address we could read).
    Start(Option<Addr>),
    /// That sentinel gave up its failover attempt.
    Abort,
    /// The failover finished: this is the master now.
    Switch(Addr),
}

/// Reads a Sentinel pub/sub message; `None` if it is not about `master`.
///
/// Instance payloads are `master <name> <ip> <port> …` or
/// `<type> <id> <ip> <port> @ <name> <master-ip> <master-port> …`.
pub fn parse_event(channel: &str, payload: &str, master: &str) -> Option<Event> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    if channel == SWITCH_EVENT {
        return match words.as_slice() {
            [name, _, _, ip, port, ..] if *name == master => {
                Addr::parse(ip, port).map(Event::Switch)
            }
            _ => None,
        };
    }
    let about = match words.iter().position(|w| *w == "@") {
        Some(at) => words.get(at + 1..),
        None => match words.first() {
            Some(&"master") => words.get(1..),
            _ => None,
        },
    }?;
    let (name, addr) = match about {
        [name, ip, port, ..] => (*name, Addr::parse(ip, port)),
        [name, ..] => (*name, None),
        [] => return None,
    };
    if name != master {
        return None;
    }
    if START_EVENTS.contains(&channel) {
        Some(Event::Start(addr))
    } else if channel.starts_with(ABORT_PREFIX) {
        Some(Event::Abort)
    } else {
        None
    }
}

/// Why no master connection can be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoMaster {
    #[error("failover of `{0}` in progress")]
    Fenced(String),
    /// The group, then why each sentinel that failed did (may be empty).
    #[error("no sentinel named a master for `{0}`{1}")]
    Unknown(String, String),
    #[error("{0} is not a master (role {1})")]
    NotMaster(Addr, String),
    #[error("master changed while connecting")]
    Moved,
    #[error("{0}")]
    Redis(String),
    /// The error of the attempt that started the pause.
    #[error("master unreachable a moment ago ({0}); retrying shortly")]
    Paused(String),
}

impl From<RedisError> for NoMaster {
    fn from(e: RedisError) -> Self {
        NoMaster::Redis(e.to_string())
    }
}

/// A master connection and the generation it was made in.
#[derive(Clone)]
pub struct Lease {
    pub conn: MultiplexedConnection,
    generation: u64,
    made: Instant,
}

#[derive(Default)]
struct Watch {
    /// Per sentinel: it announced a failover that has not ended.
    fenced: Vec<bool>,
    /// The master we write to (or last wrote to): start events about another
    /// address are stale and ignored.
    master: Option<Addr>,
    /// The master `+switch-master` named, used before asking the sentinels.
    announced: Option<Addr>,
    /// Bumped by every fence and switch: older leases are never used again.
    generation: u64,
    lease: Option<Lease>,
    /// No new attempt to connect before this (see [`RETRY_PAUSE`]).
    paused_until: Option<Instant>,
    /// Why the last connection attempt failed (shown while paused).
    last_error: String,
}

impl Watch {
    fn fenced(&self) -> bool {
        self.fenced.iter().any(|f| *f)
    }

    fn apply(&mut self, sentinel: usize, event: Event) {
        match event {
            Event::Start(addr) => {
                // Only a failover of the master we write to fences us; an old
                // sentinel's late attempt on a master already replaced does not.
                let ours = match (&addr, &self.master) {
                    (Some(a), Some(m)) => a == m,
                    _ => true,
                };
                if ours {
                    self.set_fence(sentinel, true);
                }
            }
            Event::Abort => self.set_fence(sentinel, false),
            Event::Switch(addr) => {
                self.fenced.iter_mut().for_each(|f| *f = false);
                self.master = Some(addr.clone());
                self.announced = Some(addr);
                self.bump();
            }
        }
    }

    fn set_fence(&mut self, sentinel: usize, on: bool) {
        if let Some(f) = self.fenced.get_mut(sentinel) {
            if *f != on {
                *f = on;
                self.bump();
            }
        }
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.lease = None;
        self.paused_until = None;
    }
}

struct Inner {
    name: String,
    sentinels: Vec<Client>,
    /// Credentials of the master (the sentinels' own are in their clients).
    master_auth: RedisAuth,
    /// `rediss://` to the master (the sentinels were given as `rediss://`).
    master_tls: bool,
    tls_ca: Option<Vec<u8>>,
    timeout: Duration,
    watch: Mutex<Watch>,
    /// Serializes (re)connects so a burst of requests makes one connection.
    connecting: tokio::sync::Mutex<()>,
    watching: AtomicBool,
}

impl Inner {
    fn watch(&self) -> MutexGuard<'_, Watch> {
        // A poisoned lock only means a panic elsewhere; the data is plain.
        self.watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn conn_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }
}

/// The master of one Sentinel-monitored group, followed through failovers.
pub struct SentinelMaster {
    inner: Arc<Inner>,
}

impl SentinelMaster {
    /// Parses the sentinel URLs; connects to nothing yet. The sentinels get
    /// `cfg.sentinel_auth`, the master `cfg.redis_auth`; both trust
    /// `cfg.tls_ca`, and the master is reached over TLS when the sentinels are.
    pub fn new(name: &str, nodes: &[String], cfg: &Config) -> Result<Self, RedisError> {
        let tls_ca = cfg.tls_ca.as_deref();
        let sentinels = nodes
            .iter()
            .map(|n| client_for(n, &cfg.sentinel_auth, tls_ca))
            .collect::<Result<Vec<_>, _>>()?;
        let master_tls = nodes.iter().all(|n| n.starts_with("rediss://"));
        let watch = Watch {
            fenced: vec![false; sentinels.len()],
            ..Watch::default()
        };
        Ok(SentinelMaster {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                sentinels,
                master_auth: cfg.redis_auth.clone(),
                master_tls,
                tls_ca: cfg.tls_ca.clone(),
                timeout: cfg.redis_timeout,
                watch: Mutex::new(watch),
                connecting: tokio::sync::Mutex::new(()),
                watching: AtomicBool::new(false),
            }),
        })
    }

    /// Subscribes to every sentinel (once, on the first use inside a runtime).
    fn start_watching(&self) {
        if self.inner.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        for i in 0..self.inner.sentinels.len() {
            tokio::spawn(watch_sentinel(Arc::downgrade(&self.inner), i));
        }
    }

    /// A connection to the current master, confirmed by `ROLE`; an error
    /// while a failover is under way or no master is known.
    pub async fn connection(&self) -> Result<Lease, NoMaster> {
        self.start_watching();
        let inner = &self.inner;
        if let Some(l) = self.usable()? {
            return Ok(l);
        }
        let _one = inner.connecting.lock().await;
        if let Some(l) = self.usable()? {
            return Ok(l);
        }
        let (generation, announced) = {
            let w = inner.watch();
            if w.paused_until.is_some_and(|t| Instant::now() < t) {
                return Err(NoMaster::Paused(w.last_error.clone()));
            }
            (w.generation, w.announced.clone())
        };
        let conn = match self.connect_master(announced).await {
            Ok(c) => c,
            Err(e) => {
                let mut w = inner.watch();
                if w.generation == generation {
                    w.paused_until = Some(Instant::now() + RETRY_PAUSE);
                    w.last_error = e.to_string();
                }
                return Err(e);
            }
        };
        let (addr, conn) = conn;
        let mut w = inner.watch();
        if w.fenced() {
            return Err(NoMaster::Fenced(inner.name.clone()));
        }
        if w.generation != generation {
            return Err(NoMaster::Moved);
        }
        let lease = Lease {
            conn,
            generation,
            made: Instant::now(),
        };
        w.master = Some(addr);
        w.lease = Some(lease.clone());
        Ok(lease)
    }

    /// Connects to the announced master, or the one the sentinels name, and
    /// checks with `ROLE` that it is one.
    async fn connect_master(
        &self,
        announced: Option<Addr>,
    ) -> Result<(Addr, MultiplexedConnection), NoMaster> {
        let addr = match announced {
            Some(a) => a,
            None => self.ask_sentinels().await?,
        };
        let inner = &self.inner;
        let scheme = if inner.master_tls { "rediss" } else { "redis" };
        let client = client_for(
            &format!("{scheme}://{addr}/"),
            &inner.master_auth,
            inner.tls_ca.as_deref(),
        )?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&self.inner.conn_config())
            .await?;
        let role: Value = redis::cmd("ROLE").query_async(&mut conn).await?;
        let role = first_text(&role).unwrap_or_default();
        if role != "master" {
            return Err(NoMaster::NotMaster(addr, role));
        }
        Ok((addr, conn))
    }

    /// The cached lease, `None` if there is none, an error while fenced.
    fn usable(&self) -> Result<Option<Lease>, NoMaster> {
        let w = self.inner.watch();
        if w.fenced() {
            return Err(NoMaster::Fenced(self.inner.name.clone()));
        }
        Ok(w.lease.clone())
    }

    /// `true` while a failover announced by some sentinel has not ended.
    pub fn fenced(&self) -> bool {
        self.inner.watch().fenced()
    }

    /// Drops `lease` after an error that says the master may have moved; the
    /// next request asks the sentinels again. A live connection (`READONLY`,
    /// `NOREPLICAS`, … rather than a broken link) is dropped at most once per
    /// [`RETRY_PAUSE`]: a master below `min-replicas-to-write` answers every
    /// request `NOREPLICAS`, and each must not cost a round of new
    /// connections to every sentinel.
    pub fn forget(&self, lease: &Lease, link_broken: bool) {
        let mut w = self.inner.watch();
        if w.generation == lease.generation && (link_broken || lease.made.elapsed() >= RETRY_PAUSE)
        {
            w.announced = None;
            w.lease = None;
        }
    }

    /// Asks every sentinel at once; the address most of them name wins.
    async fn ask_sentinels(&self) -> Result<Addr, NoMaster> {
        let inner = &self.inner;
        let asks = inner.sentinels.iter().map(|s| async move {
            let fut = async {
                let mut c = s
                    .get_multiplexed_async_connection_with_config(&inner.conn_config())
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&inner.name)
                    .query_async::<Option<(String, String)>>(&mut c)
                    .await
            };
            match tokio::time::timeout(inner.timeout, fut).await {
                Ok(Ok(Some((host, port)))) => {
                    Addr::parse(&host, &port).ok_or_else(|| format!("bad address {host}:{port}"))
                }
                Ok(Ok(None)) => Err("does not know the master".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut named = Vec::with_capacity(answers.len());
        let mut why = Vec::new();
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Ok(addr) => named.push(addr),
                Err(e) => why.push(format!("sentinel {i}: {e}")),
            }
        }
        let best = named
            .iter()
            .max_by_key(|a| named.iter().filter(|b| b == a).count())
            .cloned();
        best.ok_or_else(|| {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            };
            NoMaster::Unknown(inner.name.clone(), why)
        })
    }
}

fn first_text(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.first().and_then(text),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `true` if a `SENTINEL MASTER` reply's flags say a failover is under way.
fn failover_in_progress(v: &Value) -> bool {
    let flags = match v {
        Value::Array(kv) => kv
            .chunks(2)
            .find(|p| p.first().and_then(text).as_deref() == Some("flags"))
            .and_then(|p| p.get(1).and_then(text)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some("flags"))
            .and_then(|(_, v)| text(v)),
        _ => None,
    };
    flags.is_some_and(|f| f.split(',').any(|x| x == "failover_in_progress"))
}

/// Keeps one sentinel's subscription alive until the backend is dropped.
async fn watch_sentinel(inner: Weak<Inner>, index: usize) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let client = match strong.sentinels.get(index) {
            Some(c) => c.clone(),
            None => return,
        };
        let timeout = strong.timeout;
        drop(strong);
        if let Err(e) = follow(&inner, index, &client, timeout).await {
            tracing::warn!(sentinel = index, error = %e, "sentinel subscription lost; retrying");
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

/// Subscribes, reads this sentinel's view of the failover, then applies its
/// events until the link fails (`Err`) or the backend is dropped (`Ok`).
async fn follow(
    inner: &Weak<Inner>,
    index: usize,
    client: &Client,
    timeout: Duration,
) -> Result<(), RedisError> {
    let bounded = |what: &'static str| RedisError::from((redis::ErrorKind::Io, what));
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| bounded("sentinel connect timed out"))??;
    let mut channels: Vec<&str> = START_EVENTS.to_vec();
    channels.push(SWITCH_EVENT);
    pubsub.subscribe(channels).await?;
    pubsub.psubscribe(ABORT_PATTERN).await?;
    let (mut sink, mut stream) = pubsub.split();

    // Subscribed first, asked second: no event can fall in between.
    let name = match inner.upgrade() {
        Some(i) => i.name.clone(),
        None => return Ok(()),
    };
    let mut c = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| bounded("sentinel connect timed out"))??;
    let view: Value = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(&name)
        .query_async(&mut c)
        .await?;
    drop(c);
    match inner.upgrade() {
        Some(i) => i.watch().set_fence(index, failover_in_progress(&view)),
        None => return Ok(()),
    }
    tracing::info!(sentinel = index, master = %name, "following sentinel events");

    let mut tick = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Err(bounded("sentinel closed the subscription"));
                };
                let Some(inner) = inner.upgrade() else { return Ok(()) };
                let payload: String = msg.get_payload().unwrap_or_default();
                let channel = msg.get_channel_name();
                if let Some(event) = parse_event(channel, &payload, &inner.name) {
                    tracing::info!(sentinel = index, channel, payload = %payload, "sentinel event");
                    inner.watch().apply(index, event);
                }
            }
            _ = tick.tick() => {
                if inner.strong_count() == 0 {
                    return Ok(());
                }
                tokio::time::timeout(timeout, sink.ping::<Value>())
                    .await
                    .map_err(|_| bounded("sentinel ping timed out"))??;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Addr {
        Addr {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn start_events_name_the_master_whatever_instance_they_describe() {
        assert_eq!(
            parse_event(
                "+try-failover",
                "master mymaster 127.0.0.1 6379",
                "mymaster"
            ),
            Some(Event::Start(Some(addr(6379))))
        );
        assert_eq!(
            parse_event(
                "+selected-slave",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
                "mymaster"
            ),
            Some(Event::Start(Some(addr(6379))))
        );
        assert_eq!(
            parse_event("+try-failover", "master other 127.0.0.1 6379", "mymaster"),
            None
        );
        assert_eq!(
            parse_event("+sdown", "master mymaster 127.0.0.1 6379", "mymaster"),
            None
        );
    }

    #[test]
    fn aborts_and_switches_are_read() {
        assert_eq!(
            parse_event(
                "-failover-abort-not-elected",
                "master mymaster 127.0.0.1 6379",
                "mymaster"
            ),
            Some(Event::Abort)
        );
        assert_eq!(
            parse_event(
                "+switch-master",
                "mymaster 127.0.0.1 6379 127.0.0.1 6380",
                "mymaster"
            ),
            Some(Event::Switch(addr(6380)))
        );
        assert_eq!(
            parse_event(
                "+switch-master",
                "other 127.0.0.1 6379 127.0.0.1 6380",
                "mymaster"
            ),
            None
        );
    }

    #[test]
    fn a_fence_holds_until_its_sentinel_aborts_or_any_switch_names_the_master() {
        let mut w = Watch {
            fenced: vec![false; 3],
            master: Some(addr(6379)),
            ..Watch::default()
        };
        w.apply(0, Event::Start(Some(addr(6379))));
        w.apply(1, Event::Start(Some(addr(6379))));
        assert!(w.fenced());
        // Sentinel 0 lost the election; sentinel 1 still fails over.
        w.apply(0, Event::Abort);
        assert!(w.fenced());
        w.apply(1, Event::Switch(addr(6380)));
        assert!(!w.fenced());
        assert_eq!(w.announced, Some(addr(6380)));
        // A late start event about the replaced master is stale.
        w.apply(2, Event::Start(Some(addr(6379))));
        assert!(!w.fenced());
        // One about the new master fences again.
        w.apply(2, Event::Start(Some(addr(6380))));
        assert!(w.fenced());
    }

    #[test]
    fn every_fence_or_switch_retires_the_connection_generation() {
        let mut w = Watch {
            fenced: vec![false; 2],
            ..Watch::default()
        };
        let g0 = w.generation;
        w.apply(0, Event::Start(None));
        assert_ne!(w.generation, g0);
        let g1 = w.generation;
        w.apply(0, Event::Start(None));
        assert_eq!(w.generation, g1, "a repeated start changes nothing");
        w.apply(1, Event::Switch(addr(1)));
        assert_ne!(w.generation, g1);
    }

    #[test]
    fn sentinel_master_flags_show_a_failover_in_progress() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let busy = Value::Array(vec![
            bulk("name"),
            bulk("mymaster"),
            bulk("flags"),
            bulk("master,failover_in_progress"),
        ]);
        let calm = Value::Array(vec![bulk("flags"), bulk("master")]);
        assert!(failover_in_progress(&busy));
        assert!(!failover_in_progress(&calm));
    }
}
