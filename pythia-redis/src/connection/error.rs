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
    let message = format!(
        "cannot connect to Redis at {}: {}",
        config.masked_url(),
        config.scrub(&e.to_string())
    );
    if is_refused_credentials(e) {
        BrokerError::config(message)
    } else {
        BrokerError::connection(message)
    }
}

/// A wrong or missing password, or (TLS) a server certificate this client does not trust: the
/// server answered, and will answer the same on every retry until the configuration changes
/// (so waiting for it is pointless).
pub(super) fn is_refused_credentials(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
        || is_untrusted_certificate(e)
}

/// The TLS handshake failed on the server's certificate (unknown issuer, wrong name, expired):
/// tokio-rustls reports it as an I/O error wrapping a [`rustls::Error::InvalidCertificate`].
#[cfg(feature = "tls")]
fn is_untrusted_certificate(e: &redis::RedisError) -> bool {
    use std::error::Error as _;
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    // redis keeps the I/O error behind an `Arc<dyn Error>`, which is what `source` returns.
    let source = e.source();
    let io = source
        .and_then(|s| s.downcast_ref::<Shared>())
        .and_then(|shared| shared.downcast_ref::<std::io::Error>())
        .or_else(|| source.and_then(|s| s.downcast_ref::<std::io::Error>()));
    io.and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)))
}

#[cfg(not(feature = "tls"))]
fn is_untrusted_certificate(_: &redis::RedisError) -> bool {
    false
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
