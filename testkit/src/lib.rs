//! The test kit both integration suites use: the module's (`tests/`) and the
//! shim's (`api-shim/tests/`). Servers with the module loaded, killed on drop
//! ([`Server`], for each [`Flavor`] of the server matrix), free loopback
//! ports, the 3-master cluster ([`Cluster`]) and the Sentinel group
//! ([`SentinelGroup`]), waits, and readers of `INFO`-style text.
//!
//! The module: `RL_MODULE`, or the cdylib cargo built into the target
//! directory of the running test binary.

mod basics;
mod cluster;
mod sentinel;
mod server;

pub use basics::{
    cluster_port, field, free_port, info, info_int, module_path, profile_dir, redis_cli, role,
    wait_until, Procs, TempDir,
};
pub use cluster::{create_cluster, node_id, Cluster};
pub use sentinel::{sentinel_master_port, Sentinel, SentinelGroup};
pub use server::{Flavor, Server};
