//! Cluster mode: one async cluster connection, built again from the seed
//! nodes whenever a command's link breaks or it does not answer in time.
//!
//! The redis crate refreshes its slot map on `MOVED`, `ASK` or `READONLY`,
//! and reconnects on a refused or dropped connection. A master cut off by a
//! network partition does neither: it just stops answering, and on a timeout
//! the crate retries the same node. The other side promotes its replica after
//! `cluster-node-timeout`, but the client would keep sending to the silent
//! node until the partition heals and it answers `MOVED` (measured: the
//! majority side's shim answered 503 for the whole split,
//! `api-shim/tests/partitions.rs`).
//!
//! So a command that fails on its link, or is abandoned because the
//! decision's budget ran out, starts one rebuild in the background: a new
//! cluster connection from the seeds (connected in parallel; a silent one is
//! left out) with a fresh slot map, swapped in when ready. Requests go on with
//! the old connection meanwhile; at most one rebuild runs at a time, and it
//! finishes even when the request that started it has been answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisError, Value};
use tokio::sync::watch;

use crate::connection::link_broken;

/// The shared connection and its rebuilder.
pub struct ClusterLink {
    inner: Arc<Inner>,
}

struct Inner {
    client: ClusterClient,
    current: watch::Sender<Option<ClusterConnection>>,
    rebuilding: AtomicBool,
}

impl ClusterLink {
    /// Connects lazily: the first command starts the first build.
    pub fn new(client: ClusterClient) -> ClusterLink {
        let (current, _) = watch::channel(None);
        ClusterLink {
            inner: Arc::new(Inner {
                client,
                current,
                rebuilding: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `cmd` on the current connection (waiting for the first one).
    pub async fn query(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        let mut conn = self.connection().await;
        let mut guard = RebuildUnlessDone {
            inner: &self.inner,
            done: false,
        };
        let r = cmd.query_async(&mut conn).await;
        guard.done = !matches!(&r, Err(e) if link_broken(e));
        r
    }

    async fn connection(&self) -> ClusterConnection {
        let mut rx = self.inner.current.subscribe();
        if let Some(c) = rx.borrow().as_ref() {
            return c.clone();
        }
        rebuild(&self.inner);
        loop {
            if let Some(c) = rx.borrow_and_update().as_ref() {
                return c.clone();
            }
            // The sender lives in `inner`, which we hold: `changed` only
            // returns when a new connection was stored. The caller's budget
            // bounds the wait (a failed build is retried by the next call).
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Starts a rebuild when dropped before the command answered, or after it
/// failed on its link.
struct RebuildUnlessDone<'a> {
    inner: &'a Arc<Inner>,
    done: bool,
}

impl Drop for RebuildUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            rebuild(self.inner);
        }
    }
}

/// One background build of a new connection, unless one is under way.
fn rebuild(inner: &Arc<Inner>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if inner.rebuilding.swap(true, Ordering::SeqCst) {
        return;
    }
    let inner = Arc::clone(inner);
    runtime.spawn(async move {
        match inner.client.get_async_connection().await {
            Ok(c) => {
                inner.current.send_replace(Some(c));
            }
            Err(e) => tracing::debug!(error = %e, "cluster connection not rebuilt"),
        }
        inner.rebuilding.store(false, Ordering::SeqCst);
    });
}
