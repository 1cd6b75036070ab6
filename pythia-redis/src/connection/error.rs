//! Redis errors as [`BrokerError`]s: which are transient, which are configuration errors, and
//! messages that name the server by its masked URL and never carry its password.

use pythia_core::{BrokerError, BrokerErrorKind};

use super::config::RedisConfig;

pub(super) fn invalid(config: &RedisConfig, e: &redis::RedisError) -> BrokerError {
    BrokerError::config(format!(
        "invalid Redis URL {}: {}",
        config.masked_url(),
        config.scrub(&e.to_string())
    ))
}

pub(super) fn unreachable(config: &RedisConfig, e: &redis::RedisError) -> BrokerError {
    BrokerError::connection(format!(
        "cannot connect to Redis at {}: {}",
        config.masked_url(),
        config.scrub(&e.to_string())
    ))
}

/// Classifies a Redis error: I/O, timeouts, dropped connections and a cluster or master in
/// transition are retryable [`BrokerErrorKind::Connection`] errors; a key of the wrong type
/// (WRONGTYPE, also from Pythia's scripts, which check every key's type before their first
/// write) is a [`BrokerErrorKind::Config`] error, fatal for a worker (another program, or
/// another queue's configuration, owns that key); other server replies (NOPERM, CROSSSLOT,
/// script errors) are [`BrokerErrorKind::Backend`].
pub(crate) fn redis_error(config: &RedisConfig, op: &str, e: redis::RedisError) -> BrokerError {
    // A pipeline's error carries each failed command's reply (its own `code()` is `None`): a
    // WRONGTYPE or a LOADING inside a heartbeat pipeline is classified like a lone one.
    let mut codes: Vec<String> = e.code().map(str::to_owned).into_iter().collect();
    if let Some(errors) = e.clone().into_server_errors() {
        codes.extend(errors.iter().map(|(_, se)| se.code().to_owned()));
    }
    let has = |wanted: &[&str]| codes.iter().any(|c| wanted.contains(&c.as_str()));
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || has(&[
            "LOADING",
            "BUSY",
            "TRYAGAIN",
            "MASTERDOWN",
            "READONLY",
            "CLUSTERDOWN",
            "MOVED",
            "ASK",
        ])
        || e.kind() == redis::ErrorKind::ClusterConnectionNotFound;
    let kind = if transient {
        BrokerErrorKind::Connection
    } else if has(&["WRONGTYPE"]) {
        BrokerErrorKind::Config
    } else {
        BrokerErrorKind::Backend
    };
    BrokerError::new(
        kind,
        format!(
            "Redis {op} failed ({}): {}",
            config.masked_url(),
            config.scrub(&e.to_string())
        ),
    )
}
