//! Glue between the pure limiters and the server: argument parsing, the
//! custom data type, the clock, replication and `INFO`.
//!
//! Nothing here may panic: a panic inside a module aborts the server.

// A panic inside a module aborts the whole server: no unwrap, expect,
// panic or unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod args;
pub mod clock;
pub mod command;
pub mod config;
pub mod datatype;
pub mod info;
