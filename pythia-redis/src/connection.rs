//! [`RedisConnection`]: one shared auto-reconnecting connection for everything non-blocking,
//! and dedicated connections for blocking reads.

use std::sync::Arc;

use pythia_core::{BrokerError, BrokerErrorKind};
use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use crate::config::RedisConfig;

/// A handle on one Redis server, cheap to clone.
///
/// * [`manager`](Self::manager): a multiplexed [`ConnectionManager`] shared by every
///   non-blocking command (acks, produces, heartbeats, scripts). It reconnects by itself after
///   a restart or a dropped connection; the command that failed returns its error, and the
///   caller's own backoff retries it.
/// * [`blocking`](Self::blocking): a fresh connection for one consumer's blocking reads
///   (BRPOP, BLMOVE, XREADGROUP BLOCK). A blocking command on the shared connection would stall
///   every other command behind it; and its reply timeout is set above the block time, since a
///   client that gives up before the server answers can lose a popped item.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    client: redis::Client,
    manager: ConnectionManager,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.inner.config.masked_url())
            .finish()
    }
}

impl RedisConnection {
    /// Connects to the server in `config` and checks it answers `PING`.
    ///
    /// Fails with a [`BrokerErrorKind::Connection`] error naming the (masked) URL when the
    /// server is unreachable, and [`BrokerErrorKind::Config`] when the URL is unusable.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        #[cfg(feature = "tls")]
        {
            // rustls needs a process-wide crypto provider; installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = open_client(&config)?;
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(Some(config.response_timeout()))
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_secs(2));
        let connect = tokio::time::timeout(
            config.connect_timeout() * 3,
            ConnectionManager::new_with_config(client.clone(), mgr_cfg),
        );
        let mut manager = match connect.await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                return Err(BrokerError::connection(format!(
                    "cannot connect to Redis at {}: {}",
                    config.masked_url(),
                    config.scrub(&e.to_string())
                )));
            }
            Err(_) => {
                return Err(BrokerError::connection(format!(
                    "cannot connect to Redis at {}: timed out after {:?}",
                    config.masked_url(),
                    config.connect_timeout() * 3
                )));
            }
        };
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut manager).await;
        if let Err(e) = pong {
            return Err(redis_error(&config, "PING", e));
        }
        tracing::debug!(url = %config.masked_url(), "connected to Redis");
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                manager,
            }),
        })
    }

    /// The shared, auto-reconnecting connection for non-blocking commands.
    pub fn manager(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    /// The settings this connection was made with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// A new dedicated connection for blocking reads, with a reply timeout of
    /// [`RedisConfig::blocking_response_timeout`].
    pub async fn blocking(&self) -> Result<MultiplexedConnection, BrokerError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.config.connect_timeout()))
            .set_response_timeout(Some(self.inner.config.blocking_response_timeout()));
        self.inner
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| self.error("connect", e))
    }

    /// A new dedicated pub/sub connection: it carries only `SUBSCRIBE`/`PSUBSCRIBE`, `PING`
    /// and the messages the server pushes. A connection in subscribed mode cannot run other
    /// commands, so it is never shared. Opening it (TCP, TLS, `AUTH`, `SELECT`) fails after
    /// [`RedisConfig::connect_timeout`].
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, BrokerError> {
        let limit = self.inner.config.connect_timeout();
        match tokio::time::timeout(limit, self.inner.client.get_async_pubsub()).await {
            Ok(res) => res.map_err(|e| self.error("connect (pub/sub)", e)),
            Err(_) => Err(BrokerError::connection(format!(
                "cannot open a pub/sub connection to {}: timed out after {limit:?}",
                self.inner.config.masked_url()
            ))),
        }
    }

    /// Maps a Redis error from `op` to a [`BrokerError`] with the password scrubbed.
    pub fn error(&self, op: &str, e: redis::RedisError) -> BrokerError {
        redis_error(&self.inner.config, op, e)
    }
}

fn open_client(config: &RedisConfig) -> Result<redis::Client, BrokerError> {
    let invalid = |e: redis::RedisError| {
        BrokerError::config(format!(
            "invalid Redis URL {}: {}",
            config.masked_url(),
            config.scrub(&e.to_string())
        ))
    };
    match config.tls_ca_file() {
        None => redis::Client::open(config.url()).map_err(invalid),
        #[cfg(feature = "tls")]
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                BrokerError::config(format!("cannot read TLS CA file {}: {e}", path.display()))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(config.url(), certs).map_err(invalid)
        }
        #[cfg(not(feature = "tls"))]
        Some(path) => Err(BrokerError::config(format!(
            "a TLS CA file ({}) needs pythia-redis built with the `tls` feature",
            path.display()
        ))),
    }
}

/// Classifies a Redis error: I/O, timeouts and dropped connections are retryable
/// [`BrokerErrorKind::Connection`] errors; server replies (WRONGTYPE, NOPERM, script errors) are
/// [`BrokerErrorKind::Backend`].
pub(crate) fn redis_error(config: &RedisConfig, op: &str, e: redis::RedisError) -> BrokerError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "READONLY")
        );
    let kind = if transient {
        BrokerErrorKind::Connection
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
