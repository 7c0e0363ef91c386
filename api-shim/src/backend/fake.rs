//! In-memory backend for HTTP-layer tests: counters that never refill, with
//! `RL.LIMITS`' all-or-nothing rule, which is enough to drive every allow,
//! deny, outage and hang path deterministically. Every command is recorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use rl_grammar::Quota;

use super::{
    limits_args, single_command, Backend, BackendError, LimitsReply, ModeChange, Readiness, Reply,
    SystemMode,
};
use crate::model::LimitCall;

/// Fixed retry/reset the fake reports, so tests can check rounding.
pub const FAKE_RETRY_MS: i64 = 1_001;
pub const FAKE_RESET_MS: i64 = 59_500;

/// One command as a Redis client would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub command: String,
    pub key: String,
    pub args: Vec<String>,
}

#[derive(Default)]
pub struct FakeBackend {
    used: Mutex<HashMap<(String, String), u64>>,
    mode: Mutex<SystemMode>,
    /// When the mode last changed (Unix ms; 0: never).
    changed_at: AtomicU64,
    down: AtomicBool,
    hang: AtomicBool,
    max_log: AtomicU64,
    /// Leases handed out and not released: (key, id) -> (limit name, slots).
    leases: Mutex<HashMap<(String, String), (String, u64)>>,
    next_lease: AtomicU64,
    /// Every command seen, in order (mode reads included).
    pub sent: Mutex<Vec<Sent>>,
}

fn quota_of(q: &Quota) -> u64 {
    match q {
        Quota::TokenBucket(t) => t.capacity(),
        Quota::FixedWindow(w) | Quota::SlidingExact(w) | Quota::SlidingApprox(w) => w.limit(),
        Quota::Concurrency(c) => c.limit(),
    }
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates an outage (`true`) or recovery (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Simulates a hung server (SIGSTOP): every call waits forever.
    pub fn set_hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    /// What `CONFIG GET ratelimit.exact-max-log` answers (0: not permitted).
    pub fn set_exact_max_log(&self, v: u64) {
        self.max_log.store(v, Ordering::SeqCst);
    }

    /// The commands sent so far, without the mode reads.
    pub fn decisions(&self) -> Vec<Sent> {
        self.sent
            .lock()
            .map(|s| s.iter().filter(|c| c.command != "GET").cloned().collect())
            .unwrap_or_default()
    }

    async fn enter(&self, command: &str, key: &str, args: Vec<String>) -> Result<(), BackendError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("fake outage".into()));
        }
        if let Ok(mut s) = self.sent.lock() {
            s.push(Sent {
                command: command.to_owned(),
                key: key.to_owned(),
                args,
            });
        }
        Ok(())
    }

    /// The verdict of one limit on its stored use, without consuming.
    fn judge(used: u64, limit: u64, cost: u64) -> Reply {
        let (allowed, retry) = if cost > limit {
            (false, -1)
        } else if used + cost <= limit {
            (true, 0)
        } else {
            (false, FAKE_RETRY_MS)
        };
        let after = if allowed { used + cost } else { used };
        Reply {
            allowed,
            limit: signed(limit),
            remaining: signed(limit.saturating_sub(after)),
            retry_after_ms: retry,
            reset_after_ms: FAKE_RESET_MS,
        }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    async fn limits(
        &self,
        key: &str,
        cost: u64,
        calls: &[LimitCall],
    ) -> Result<LimitsReply, BackendError> {
        self.enter("RL.LIMITS", key, limits_args(cost, calls))
            .await?;
        let mut used = self
            .used
            .lock()
            .map_err(|_| BackendError::Protocol("poisoned".into()))?;
        let replies: Vec<Reply> = calls
            .iter()
            .map(|c| {
                let u = used
                    .get(&(key.to_owned(), c.name.clone()))
                    .copied()
                    .unwrap_or(0);
                Self::judge(u, quota_of(c.quota()), cost)
            })
            .collect();
        let allowed = calls
            .iter()
            .zip(&replies)
            .all(|(c, r)| c.shadow() || r.allowed);
        if allowed {
            for c in calls {
                let limit = quota_of(c.quota());
                let u = used.entry((key.to_owned(), c.name.clone())).or_insert(0);
                *u = (*u + cost).min(limit);
            }
        }
        // The module's rule: denied -> longest wait among denying enforced
        // limits; allowed -> fewest remaining.
        let enforced = || {
            calls
                .iter()
                .zip(&replies)
                .enumerate()
                .filter(|(_, (c, _))| !c.shadow())
        };
        let binding = if allowed {
            enforced()
                .min_by_key(|(_, (_, r))| r.remaining)
                .map(|(i, _)| i)
        } else {
            enforced()
                .filter(|(_, (_, r))| !r.allowed)
                .max_by_key(|(_, (_, r))| {
                    if r.retry_after_ms < 0 {
                        i64::MAX
                    } else {
                        r.retry_after_ms
                    }
                })
                .map(|(i, _)| i)
        }
        .unwrap_or(0);
        let limits = if allowed {
            // Report the state after consumption, as the module does.
            calls
                .iter()
                .zip(replies)
                .map(|(c, mut r)| {
                    let u = used
                        .get(&(key.to_owned(), c.name.clone()))
                        .copied()
                        .unwrap_or(0);
                    r.remaining = signed(quota_of(c.quota()).saturating_sub(u));
                    r
                })
                .collect()
        } else {
            replies
        };
        // A granted call with a `concurrency` limit holds a lease until
        // `release` (the fake never expires leases).
        let lease = match calls
            .iter()
            .find(|c| matches!(c.quota(), Quota::Concurrency(_)) && !c.shadow())
        {
            Some(c) if allowed && cost > 0 => {
                let id = format!("fake-{}", self.next_lease.fetch_add(1, Ordering::SeqCst));
                self.leases
                    .lock()
                    .map_err(|_| BackendError::Protocol("poisoned".into()))?
                    .insert((key.to_owned(), id.clone()), (c.name.clone(), cost));
                Some(id)
            }
            _ => None,
        };
        Ok(LimitsReply {
            allowed,
            binding,
            limits,
            lease,
        })
    }

    async fn release(&self, key: &str, id: &str) -> Result<bool, BackendError> {
        self.enter("RL.RELEASE", key, vec![id.to_owned()]).await?;
        let held = self
            .leases
            .lock()
            .map_err(|_| BackendError::Protocol("poisoned".into()))?
            .remove(&(key.to_owned(), id.to_owned()));
        let Some((name, slots)) = held else {
            return Ok(false);
        };
        let mut used = self
            .used
            .lock()
            .map_err(|_| BackendError::Protocol("poisoned".into()))?;
        if let Some(u) = used.get_mut(&(key.to_owned(), name)) {
            *u = u.saturating_sub(slots);
        }
        Ok(true)
    }

    async fn single(&self, key: &str, quota: &Quota, cost: u64) -> Result<Reply, BackendError> {
        let (command, args) = single_command(quota, cost);
        self.enter(command, key, args).await?;
        let mut used = self
            .used
            .lock()
            .map_err(|_| BackendError::Protocol("poisoned".into()))?;
        let u = used.entry((key.to_owned(), String::new())).or_insert(0);
        let r = Self::judge(*u, quota_of(quota), cost);
        if r.allowed {
            *u += cost;
        }
        Ok(r)
    }

    async fn get_mode(&self) -> Result<SystemMode, BackendError> {
        self.enter("GET", "mode", vec![]).await?;
        self.mode
            .lock()
            .map(|m| *m)
            .map_err(|_| BackendError::Protocol("poisoned".into()))
    }

    async fn set_mode(&self, mode: SystemMode, now_ms: u64) -> Result<ModeChange, BackendError> {
        self.enter("SET", "mode", vec![mode.as_str().to_owned()])
            .await?;
        let mut m = self
            .mode
            .lock()
            .map_err(|_| BackendError::Protocol("poisoned".into()))?;
        let previous = std::mem::replace(&mut *m, mode);
        if previous != mode {
            self.changed_at.store(now_ms, Ordering::SeqCst);
        }
        Ok(ModeChange {
            previous,
            changed_at_ms: Some(self.changed_at.load(Ordering::SeqCst)).filter(|t| *t != 0),
        })
    }

    async fn mode_changed_at(&self) -> Result<Option<u64>, BackendError> {
        self.enter("GET", "mode:changed_at", vec![]).await?;
        Ok(Some(self.changed_at.load(Ordering::SeqCst)).filter(|t| *t != 0))
    }

    async fn readiness(&self) -> Result<Readiness, BackendError> {
        self.enter("PING", "", vec![]).await?;
        Ok(Readiness {
            module_loaded: true,
        })
    }

    async fn exact_max_log(&self) -> Result<Option<u64>, BackendError> {
        self.enter("CONFIG", "", vec![]).await?;
        Ok(match self.max_log.load(Ordering::SeqCst) {
            0 => None,
            v => Some(v),
        })
    }
}
