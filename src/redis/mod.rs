//! Glue between the pure limiters and the server: argument parsing, the
//! custom data type, the clock, replication and `INFO`.
//!
//! Nothing here may panic: a panic inside a module aborts the server.

pub mod args;
pub mod clock;
pub mod command;
pub mod command_docs;
pub mod config;
pub mod datatype;
pub mod info;
pub mod leases;
pub mod propagation;
pub mod value;
