//! The real [`Backend`]: the `redis` crate over a multiplexed connection.
//!
//! - standalone: a [`ConnectionManager`] (one multiplexed connection that
//!   reconnects by itself in the background);
//! - cluster: the async cluster connection (per-node multiplexed connections,
//!   follows MOVED/ASK, refreshes slots);
//! - sentinel: [`SentinelMaster`] follows the master through failovers: it
//!   fences writes from the first failover event any sentinel publishes until
//!   `+switch-master`, confirms `ROLE` on every new connection, and forgets
//!   its connection on any error that says the master may have moved.
//!
//! No connection is made at start-up, so the shim starts (and answers 503)
//! while Redis is down, and recovers without a restart when it returns. Every
//! operation is bounded by `redis.timeout_ms`, so an outage becomes a 503
//! quickly instead of piling up requests.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisError, Value};
use tokio::sync::RwLock;

use rl_grammar::Quota;

use crate::backend::{
    changed_at_key, classify_server_error, single_command, Backend, BackendError, LimitsReply,
    ModeChange, Readiness, Reply, SystemMode,
};
use crate::config::{Config, LimitCall, RedisTarget};
use crate::connection::{client_for, tls_certs};
use crate::sentinel::SentinelMaster;

/// The module name shown by `MODULE LIST`.
pub const MODULE_NAME: &str = "ratelimit";

enum Conn {
    Standalone(ConnectionManager),
    Cluster {
        // Boxed: the client is large next to the other variants.
        client: Box<redis::cluster::ClusterClient>,
        conn: RwLock<Option<ClusterConnection>>,
    },
    Sentinel(SentinelMaster),
}

/// Redis access for the shim.
pub struct RedisBackend {
    conn: Conn,
    mode_key: String,
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Reconnect quickly; a longer back-off only delays recovery, since
        // each new request triggers a fresh attempt anyway.
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500))
}

fn config_error(e: RedisError) -> String {
    format!("redis configuration: {e}")
}

impl RedisBackend {
    /// Builds the client from configuration without connecting.
    pub fn new(cfg: &Config) -> Result<RedisBackend, String> {
        let timeout = cfg.redis_timeout;
        let conn = match &cfg.redis {
            RedisTarget::Standalone(url) => {
                let client = client_for(url, &cfg.redis_auth, cfg.tls_ca.as_deref())
                    .map_err(config_error)?;
                let mgr = ConnectionManager::new_lazy_with_config(client, manager_config(timeout))
                    .map_err(config_error)?;
                Conn::Standalone(mgr)
            }
            RedisTarget::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2);
                if let Some(password) = &cfg.redis_auth.password {
                    builder = builder.password(password);
                }
                if let Some(user) = &cfg.redis_auth.username {
                    builder = builder.username(user);
                }
                if let Some(ca) = &cfg.tls_ca {
                    builder = builder.certs(tls_certs(ca));
                }
                let client = builder.build().map_err(config_error)?;
                Conn::Cluster {
                    client: Box::new(client),
                    conn: RwLock::new(None),
                }
            }
            RedisTarget::Sentinel { master, nodes } => {
                Conn::Sentinel(SentinelMaster::new(master, nodes, cfg).map_err(config_error)?)
            }
        };
        Ok(RedisBackend {
            conn,
            mode_key: cfg.mode_key.clone(),
        })
    }

    async fn cluster_conn(
        client: &redis::cluster::ClusterClient,
        slot: &RwLock<Option<ClusterConnection>>,
    ) -> Result<ClusterConnection, RedisError> {
        if let Some(c) = slot.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut w = slot.write().await;
        if let Some(c) = w.as_ref() {
            return Ok(c.clone());
        }
        let c = client.get_async_connection().await?;
        *w = Some(c.clone());
        Ok(c)
    }

    /// Runs one command on whatever connection we have.
    async fn exec(&self, cmd: &Cmd) -> Result<Value, BackendError> {
        let fut = async {
            match &self.conn {
                Conn::Standalone(m) => {
                    let mut c = m.clone();
                    cmd.query_async(&mut c).await.map_err(map_error)
                }
                Conn::Cluster { client, conn } => {
                    let mut c = Self::cluster_conn(client, conn).await.map_err(map_error)?;
                    cmd.query_async(&mut c).await.map_err(map_error)
                }
                Conn::Sentinel(master) => {
                    // Fenced (failover under way) or no master: unavailable,
                    // answered without touching Redis.
                    let mut lease = master
                        .connection()
                        .await
                        .map_err(|e| BackendError::Unavailable(e.to_string()))?;
                    let r = cmd.query_async(&mut lease.conn).await;
                    if let Err(e) = &r {
                        if master_may_have_moved(e) {
                            master.forget(&lease, link_broken(e));
                        }
                    }
                    r.map_err(map_error)
                }
            }
        };
        // The caller bounds the whole decision (`http::within`); the
        // connections carry `timeout_ms` as their own response timeout.
        fut.await
    }
}

/// Server error codes after which the node we wrote to may not be the
/// master any more (demoted, a replica that lost its master, loading, cut off
/// from its replicas): the connection is dropped and the master found again.
const MASTER_MAY_HAVE_MOVED: [&str; 4] = ["READONLY", "MASTERDOWN", "NOREPLICAS", "LOADING"];

/// The connection itself failed (as opposed to a server's error reply).
fn link_broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped()
}

/// A connection error, or one of the [`MASTER_MAY_HAVE_MOVED`] codes (by
/// code, never by wording).
fn master_may_have_moved(e: &RedisError) -> bool {
    link_broken(e) || e.code().is_some_and(|c| MASTER_MAY_HAVE_MOVED.contains(&c))
}

/// Sorts a client error by kind and server error code, never by wording.
fn map_error(e: RedisError) -> BackendError {
    if matches!(e.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType) {
        return BackendError::Protocol(e.to_string());
    }
    if let Some(code) = e.code() {
        let message = match e.detail() {
            Some(d) => format!("{code} {d}"),
            None => code.to_owned(),
        };
        return classify_server_error(code, message);
    }
    let text = e.to_string();
    // No server error code: the connection, a timeout, the cluster or
    // Sentinel plumbing. Redis is not there for us.
    BackendError::Unavailable(text)
}

/// Reads the five fields from a RESP2 array or a RESP3 map.
fn parse_reply(v: &Value) -> Option<Reply> {
    let ints: Vec<i64> = match v {
        Value::Array(items) => items.iter().map(as_int).collect::<Option<_>>()?,
        Value::Map(pairs) => {
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| as_text(k).as_deref() == Some(name))
                    .and_then(|(_, v)| as_int(v))
            };
            [
                "allowed",
                "limit",
                "remaining",
                "retry_after_ms",
                "reset_after_ms",
            ]
            .iter()
            .map(|n| get(n))
            .collect::<Option<_>>()?
        }
        _ => return None,
    };
    Reply::from_values(&ints)
}

/// Reads the seven-element `RL.LIMITS` reply (RESP2) or its RESP3 map; with
/// a `concurrency` limit, an eighth element (`lease`): its id or nil.
fn parse_limits_reply(v: &Value, n: usize) -> Option<LimitsReply> {
    let (allowed, binding, limits, lease) = match v {
        Value::Array(items) => match items.as_slice() {
            [allowed, _, _, _, _, binding, Value::Array(limits)] => {
                (allowed, binding, limits, None)
            }
            [allowed, _, _, _, _, binding, Value::Array(limits), lease] => {
                (allowed, binding, limits, as_text(lease))
            }
            _ => return None,
        },
        Value::Map(pairs) => {
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| as_text(k).as_deref() == Some(name))
                    .map(|(_, v)| v)
            };
            match (get("allowed"), get("binding"), get("limits")) {
                (Some(a), Some(b), Some(Value::Array(l))) => {
                    (a, b, l, get("lease").and_then(as_text))
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    let limits = limits.iter().map(parse_reply).collect::<Option<Vec<_>>>()?;
    let binding = usize::try_from(as_int(binding)?).ok()?;
    if limits.len() != n || binding >= n {
        return None;
    }
    Some(LimitsReply {
        allowed: as_int(allowed)? == 1,
        binding,
        limits,
        lease,
    })
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Boolean(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// `true` if a `MODULE LIST` reply names `name` (RESP2 flat pairs or RESP3 maps).
fn module_listed(v: &Value, name: &str) -> bool {
    let entries: &[Value] = match v {
        Value::Array(e) | Value::Set(e) => e,
        _ => return false,
    };
    entries.iter().any(|entry| match entry {
        Value::Array(kv) => kv.chunks(2).any(|pair| match pair {
            [k, v] => as_text(k).as_deref() == Some("name") && as_text(v).as_deref() == Some(name),
            _ => false,
        }),
        Value::Map(pairs) => pairs.iter().any(|(k, v)| {
            as_text(k).as_deref() == Some("name") && as_text(v).as_deref() == Some(name)
        }),
        _ => false,
    })
}

#[async_trait]
impl Backend for RedisBackend {
    async fn limits(
        &self,
        key: &str,
        cost: u64,
        calls: &[LimitCall],
    ) -> Result<LimitsReply, BackendError> {
        let mut cmd = redis::cmd("RL.LIMITS");
        cmd.arg(key).arg(cost);
        for c in calls {
            for w in c.words() {
                cmd.arg(w.as_str());
            }
        }
        let v = self.exec(&cmd).await?;
        parse_limits_reply(&v, calls.len())
            .ok_or_else(|| BackendError::Protocol(format!("RL.LIMITS answered {v:?}")))
    }

    async fn release(&self, key: &str, id: &str) -> Result<bool, BackendError> {
        let mut cmd = redis::cmd("RL.RELEASE");
        cmd.arg(key).arg(id);
        let v = self.exec(&cmd).await?;
        as_int(&v)
            .map(|n| n == 1)
            .ok_or_else(|| BackendError::Protocol(format!("RL.RELEASE answered {v:?}")))
    }

    async fn single(&self, key: &str, quota: &Quota, cost: u64) -> Result<Reply, BackendError> {
        let (name, args) = single_command(quota, cost);
        let mut cmd = redis::cmd(name);
        cmd.arg(key).arg(args);
        let v = self.exec(&cmd).await?;
        parse_reply(&v).ok_or_else(|| BackendError::Protocol(format!("{name} answered {v:?}")))
    }

    async fn get_mode(&self) -> Result<SystemMode, BackendError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(&self.mode_key);
        let v = self.exec(&cmd).await?;
        Ok(match as_text(&v) {
            Some(s) => SystemMode::parse_lenient(&s),
            None => SystemMode::Normal,
        })
    }

    async fn set_mode(&self, mode: SystemMode, now_ms: u64) -> Result<ModeChange, BackendError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.mode_key).arg(mode.as_str()).arg("GET");
        let previous = as_text(&self.exec(&cmd).await?)
            .map_or(SystemMode::Normal, |s| SystemMode::parse_lenient(&s));
        let changed_at_ms = if previous == mode {
            self.mode_changed_at().await?
        } else {
            // A second key (not a hash at the mode key) keeps the mode key a
            // plain string, as operators and older shims read and write it.
            let mut cmd = redis::cmd("SET");
            cmd.arg(changed_at_key(&self.mode_key)).arg(now_ms);
            self.exec(&cmd).await?;
            Some(now_ms)
        };
        Ok(ModeChange {
            previous,
            changed_at_ms,
        })
    }

    async fn mode_changed_at(&self) -> Result<Option<u64>, BackendError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(changed_at_key(&self.mode_key));
        let v = self.exec(&cmd).await?;
        Ok(as_text(&v).and_then(|s| s.parse::<u64>().ok()))
    }

    async fn exact_max_log(&self) -> Result<Option<u64>, BackendError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("ratelimit.exact-max-log");
        let v = match self.exec(&cmd).await {
            Ok(v) => v,
            // NOPERM (ACL) or a refused CONFIG: fall back to the default.
            Err(BackendError::Refused(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let value = match &v {
            Value::Array(kv) => kv.get(1),
            Value::Map(pairs) => pairs.first().map(|(_, v)| v),
            _ => None,
        };
        Ok(value.and_then(as_text).and_then(|s| s.parse::<u64>().ok()))
    }

    async fn readiness(&self) -> Result<Readiness, BackendError> {
        let ping = redis::cmd("PING");
        self.exec(&ping).await?;
        let mut list = redis::cmd("MODULE");
        list.arg("LIST");
        let v = self.exec(&list).await?;
        Ok(Readiness {
            module_loaded: module_listed(&v, MODULE_NAME),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn resp2_and_resp3_replies_parse_alike() {
        let resp2 = Value::Array(vec![
            Value::Int(1),
            Value::Int(10),
            Value::Int(9),
            Value::Int(0),
            Value::Int(100),
        ]);
        let resp3 = Value::Map(vec![
            (bulk("reset_after_ms"), Value::Int(100)),
            (bulk("allowed"), Value::Int(1)),
            (bulk("limit"), Value::Int(10)),
            (bulk("remaining"), Value::Int(9)),
            (bulk("retry_after_ms"), Value::Int(0)),
        ]);
        let want = Reply {
            allowed: true,
            limit: 10,
            remaining: 9,
            retry_after_ms: 0,
            reset_after_ms: 100,
        };
        assert_eq!(parse_reply(&resp2), Some(want));
        assert_eq!(parse_reply(&resp3), Some(want));
        assert_eq!(parse_reply(&Value::Array(vec![Value::Int(1)])), None);
        assert_eq!(parse_reply(&bulk("OK")), None);
    }

    #[test]
    fn module_list_is_searched_by_name() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("ratelimit"),
            bulk("ver"),
            Value::Int(1),
        ])]);
        assert!(module_listed(&v, "ratelimit"));
        assert!(!module_listed(&v, "other"));
        assert!(!module_listed(&Value::Array(vec![]), "ratelimit"));
    }
}
