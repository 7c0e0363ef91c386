//! The one error configuration loading returns.

/// A configuration error; the message names the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);
