//! Glue between the pure limiters and the server.

pub mod args;
